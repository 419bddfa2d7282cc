import { describe, expect, it } from 'vitest';
import { FUZZ_MUTATIONS, fuzzFrontend } from './fuzz';

describe('a hostile vhost-user frontend (short runs; `pnpm fuzz` runs long ones)', () => {
  for (const [offload, cases] of [
    [false, 2000],
    [true, 200],
  ] as const) {
    it(`${offload ? 'worker' : 'in-thread'} datapath: ${cases} cases end in an error or a disconnect; no crash, leak or stray write`, async () => {
      const stats = await fuzzFrontend(cases, 20250307, { offload });
      expect(stats.failure).toBeNull();
      expect(stats.cases).toBe(cases);
      // Every way a case ends was reached, every kind of hostile message sent, and frames
      // went through the device in between.
      expect(stats.outcomes['ack-error']).toBeGreaterThan(0);
      expect(stats.outcomes.disconnect).toBeGreaterThan(0);
      expect(stats.outcomes.served).toBeGreaterThan(0);
      expect(Object.keys(stats.mutations).sort()).toEqual([...FUZZ_MUTATIONS].sort());
      expect(stats.frames).toBeGreaterThan(0);
    });
  }
});

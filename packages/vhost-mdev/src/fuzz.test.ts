import { describe, expect, it } from 'vitest';
import { FUZZ_MUTATIONS, fuzzFrontend } from './fuzz';

describe('a hostile vhost-user frontend (short runs; `pnpm fuzz` runs long ones)', () => {
  for (const [offload, cases] of [
    [false, 3000],
    [true, 300],
  ] as const) {
    const datapath = offload ? 'worker' : 'in-thread';
    it(`${datapath} datapath, ${cases} cases: errors and disconnects, no crash, leak or stray write`, async () => {
      const stats = await fuzzFrontend(cases, 20250307, { offload });
      // A failure names its seed, case and the messages sent, to replay it.
      expect(stats.failure).toBeNull();
      expect(stats.cases).toBe(cases);
      // Every way a case ends was reached, every kind of hostile message sent, and frames
      // went through the device in between.
      expect(stats.outcomes['ack-error']).toBeGreaterThan(0);
      expect(stats.outcomes.disconnect).toBeGreaterThan(0);
      expect(stats.outcomes.served).toBeGreaterThan(0);
      expect(Object.keys(stats.mutations).sort()).toEqual([...FUZZ_MUTATIONS].sort());
      expect(stats.frames).toBeGreaterThan(0);
    }, 120_000);
  }
});

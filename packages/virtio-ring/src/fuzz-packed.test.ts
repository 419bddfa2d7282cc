import { describe, expect, it } from 'vitest';
import { fuzzPackedRings } from './fuzz-packed';

describe('packed ring fuzzer (short run; `pnpm fuzz` runs long ones)', () => {
  it('finds no throw, runaway walk, stray write or disagreement with the reference walker', () => {
    const stats = fuzzPackedRings(3000, 11);
    expect(stats.failure).toBeNull();
    expect(stats.cases).toBe(3000);
    expect(stats.chains).toBeGreaterThan(100);
    // Every kind of rejection is reached: a bad chain (EINVAL), an indirect table longer than
    // the ring (ELOOP), a direction without an iov (EPROTO).
    expect(
      Object.keys(stats.errors)
        .map(Number)
        .sort((a, b) => a - b),
    ).toEqual([-71, -40, -22]);
  });
});

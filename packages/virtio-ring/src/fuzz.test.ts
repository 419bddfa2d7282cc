import { describe, expect, it } from 'vitest';
import { fuzzRings } from './fuzz';

describe('ring fuzzer (short run; `pnpm fuzz` runs long ones)', () => {
  it('finds no throw, runaway walk, stray write or disagreement with the reference walker', () => {
    const stats = fuzzRings(3000, 7);
    expect(stats.failure).toBeNull();
    expect(stats.cases).toBe(3000);
    // The generator reaches both accepted chains and every kind of rejection.
    expect(stats.chains).toBeGreaterThan(100);
    expect(
      Object.keys(stats.errors)
        .map(Number)
        .sort((a, b) => a - b),
    ).toEqual([-71, -40, -22, -14]);
  });
});

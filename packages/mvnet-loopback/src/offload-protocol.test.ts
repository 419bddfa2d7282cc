import { describe, expect, it } from 'vitest';
import {
  CTL_ACK_SEQ,
  CTL_ACK_VALUE,
  CTL_DOORBELL,
  CTL_IRQ,
  CTL_REQ_SEQ,
  CTL_SLEEPING,
  CTL_STOP,
  CTL_WORDS,
  PENDING_BASE,
  PENDING_STRIDE,
  pendingWords,
  STAT_BASE,
  STAT_KEYS,
  STAT_STRIDE,
  statWords,
} from './offload-protocol';

// A store by one thread to a cache line the other polls moves the line between the cores: the
// words each side writes are kept on lines apart (64 bytes), with 128 bytes between them and
// from a buffer's ends, since a SharedArrayBuffer's memory need not start on a line.
describe('the shared words of worker mode', () => {
  const bytes = (words: number[], size: number) => words.map((w) => w * size);
  const apart = (a: number[], b: number[], gap: number) =>
    a.every((x) => b.every((y) => Math.abs(x - y) >= gap));

  it('keeps the main thread’s control words and the worker’s on lines apart', () => {
    const main = bytes([CTL_DOORBELL, CTL_STOP, CTL_REQ_SEQ], 4);
    const worker = bytes([CTL_IRQ, CTL_ACK_SEQ, CTL_ACK_VALUE, CTL_SLEEPING], 4);
    expect(apart(main, worker, 128)).toBe(true);
    for (const b of [...main, ...worker]) {
      expect(b).toBeGreaterThanOrEqual(128);
      expect(CTL_WORDS * 4 - b).toBeGreaterThanOrEqual(128);
    }
  });

  it('gives each slot’s pending word and counters a line of their own', () => {
    const slots = 4;
    const pending = [0, 1, 2, 3].map((s) => (PENDING_BASE + s * PENDING_STRIDE) * 4);
    expect(apart(pending.slice(0, 1), pending.slice(1), 64)).toBe(true);
    expect(pending[0]).toBeGreaterThanOrEqual(128);
    expect(pendingWords(slots) * 4 - pending[3]!).toBeGreaterThanOrEqual(128);
    expect(STAT_STRIDE * 8).toBe(64);
    expect(STAT_KEYS.length).toBeLessThanOrEqual(STAT_STRIDE);
    expect(STAT_BASE * 8).toBeGreaterThanOrEqual(128);
    expect((statWords(slots) - STAT_BASE - slots * STAT_STRIDE) * 8).toBeGreaterThanOrEqual(128);
  });
});

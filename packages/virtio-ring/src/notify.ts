/**
 * Doorbell and interrupt words for a device datapath in another thread (the concurrency model
 * in docs/ARCHITECTURE.md): a 32-bit counter in a SharedArrayBuffer that one side bumps and the
 * other waits on with Atomics.wait (a worker) or Atomics.waitAsync (a main thread that must not
 * block).
 *
 * The race-free wait is: `seen = w.load()`, then re-check the ring (after re-enabling
 * notifications), then `w.wait(seen, ms)`; a signal between the two returns at once.
 */
export class NotifyWord {
  /** The word, as an Int32Array of length 1 (Atomics.wait needs Int32). */
  readonly word: Int32Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(4), byteOffset = 0) {
    this.word = new Int32Array(buffer, byteOffset, 1);
  }

  /** The SharedArrayBuffer and offset to hand to the other thread. */
  get buffer(): SharedArrayBuffer {
    return this.word.buffer as SharedArrayBuffer;
  }
  get byteOffset(): number {
    return this.word.byteOffset;
  }

  /** Bumps the counter and wakes waiters (a doorbell write or an interrupt). */
  signal(): void {
    // Seq-cst add: every ring store made before the signal is visible to whoever sees the new value.
    Atomics.add(this.word, 0, 1);
    Atomics.notify(this.word, 0);
  }

  /** The current count, to give to `wait` after re-checking the ring. */
  load(): number {
    return Atomics.load(this.word, 0);
  }

  /** Blocks (worker threads) until the count differs from `seen` or `timeoutMs` passes. */
  wait(seen: number, timeoutMs: number): 'ok' | 'not-equal' | 'timed-out' {
    return Atomics.wait(this.word, 0, seen, timeoutMs);
  }

  /**
   * Like `wait` without blocking the thread (Atomics.waitAsync, Node >= 16). A pending wait does
   * not keep Node's event loop alive: whoever expects the other thread to signal must hold the
   * process some other way (a ref'd Worker, as mvnet-loopback's offload does while queues run).
   */
  waitAsync(seen: number, timeoutMs: number): Promise<'ok' | 'not-equal' | 'timed-out'> {
    const r = (Atomics as unknown as AtomicsWithWaitAsync).waitAsync(this.word, 0, seen, timeoutMs);
    return r.async ? r.value : Promise.resolve(r.value);
  }
}

type WaitResult = 'ok' | 'not-equal' | 'timed-out';
// Atomics.waitAsync is ES2024; declared here so the package builds against the ES2022 lib.
interface AtomicsWithWaitAsync {
  waitAsync(
    a: Int32Array,
    i: number,
    v: number,
    t: number,
  ): { async: false; value: WaitResult } | { async: true; value: Promise<WaitResult> };
}

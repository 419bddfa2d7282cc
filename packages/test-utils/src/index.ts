/**
 * Waiting in tests, written once for every package's tests: the datapaths under test progress on
 * event-loop turns (workqueues, NAPI polls, interrupts posted with setImmediate) and on worker
 * threads (whose results arrive by message or through shared memory), so a test waits either a
 * number of turns or until what it expects has happened, bounded so a failure never hangs.
 */

/** Resolves on the next turn of the event loop (`setImmediate`), after what is already queued. */
export function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** Gives the event loop `count` turns, one `nextTurn` after another. */
export async function nextTurns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await nextTurn();
}

/** Resolves after `ms` milliseconds (`setTimeout`). */
export function sleep(ms: number): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until `cond` holds, checking it between 1 ms sleeps, so that timers and other threads
 * make progress meanwhile. Resolves true once it holds, false when `ms` milliseconds passed
 * without it: a test asserts the result (`expect(await until(() => rx === 16)).toBe(true)`).
 */
export async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await sleep(1);
  }
  return true;
}

/**
 * Waits until `cond` holds, one event-loop turn at a time, for code that progresses on turns
 * alone (no timer, no other thread). Resolves true once it holds, false after `turns` turns
 * without it.
 */
export async function untilTurns(cond: () => boolean, turns = 20_000): Promise<boolean> {
  for (let i = 0; i < turns; i++) {
    if (cond()) return true;
    await nextTurn();
  }
  return cond();
}

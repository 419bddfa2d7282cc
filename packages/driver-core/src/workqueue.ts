/** A work function; a returned promise keeps the item running until it settles. */
export type WorkFn = (work: Work) => void | Promise<void>;

type Waiter = () => void;

/** What the worker pool keeps of a work item; module-private, so no caller can corrupt it. */
class WorkState {
  readonly work: Work;
  pending = false;
  running = false;
  /**
   * The pool's entries for this item not yet reached. Only the last one queued is live: a
   * cancel leaves its entry behind, and the item queued again must run from its new place,
   * after the items queued before it.
   */
  entries = 0;
  /** Reached by the pool while its previous (async) run goes on: runs after it. */
  deferred = false;
  /** Cancels waiting for the run in progress; queue() refuses the item meanwhile. */
  cancelling = 0;
  /** Flushes waiting for the end of the run in progress. */
  runWaiters: Waiter[] = [];
  /** Flushes waiting for the end of the pending run. */
  pendingWaiters: Waiter[] = [];
  /** The queue it was last queued on (for error reports). */
  queuedOn: Workqueue | null = null;

  constructor(work: Work) {
    this.work = work;
  }
}

/** The pool's state of a work item (set by Work's static block). */
let stateOf: (work: Work) => WorkState;

/** Mirrors struct work_struct: a function that a Workqueue runs off the caller's stack. */
export class Work {
  readonly fn: WorkFn;
  readonly #state: WorkState;

  static {
    stateOf = (work) => work.#state;
  }

  constructor(fn: WorkFn) {
    this.fn = fn;
    this.#state = new WorkState(this);
  }

  /** Whether the item is queued and not yet started (work_pending()). */
  get isPending(): boolean {
    return this.#state.pending;
  }

  /** Whether the item's function is running now. */
  get isRunning(): boolean {
    return this.#state.running;
  }
}

/**
 * The thread's worker pool (the kernel's per-CPU kworker pool): every Workqueue of this thread
 * feeds one FIFO run queue, drained in one `setImmediate` turn. Items queued while the pool
 * drains (a device that requeues itself, the NAPI poll its interrupt scheduled) run in the same
 * turn, so a datapath does not pay an event-loop turn per hop; after `WORK_SLICE_MS` the pool
 * yields to the event loop and goes on in the next turn, so nothing starves timers or I/O.
 */
export const WORK_SLICE_MS = 2;

const pool = {
  items: [] as WorkState[],
  head: 0,
  scheduled: false,
  draining: false,
};

function schedule(): void {
  if (pool.scheduled || pool.draining) return;
  pool.scheduled = true;
  setImmediate(drainPool);
}

/**
 * Interrupt sources the pool polls between work items: devices in other threads whose interrupts
 * arrive by `Atomics.waitAsync`, which resolves only when this thread gets back to the event
 * loop. A CPU takes a pending interrupt between instructions; the pool, between items, so a
 * thread busy with work (a sender requeuing itself) still handles them promptly.
 */
const irqPolls: (() => void)[] = [];

/**
 * Registers `poll`, which delivers the interrupts pending from one source (cheap when there are
 * none: it runs between every two work items). Returns the function that unregisters it.
 */
export function registerIrqPoll(poll: () => void): () => void {
  irqPolls.push(poll);
  return () => {
    const i = irqPolls.indexOf(poll);
    if (i >= 0) irqPolls.splice(i, 1);
  };
}

function pollIrqs(): void {
  for (let i = 0; i < irqPolls.length; i++) {
    try {
      irqPolls[i]!();
    } catch (err) {
      // Like a handler that faults: reported, and the other sources and the work go on.
      process.emitWarning(`interrupt poll failed: ${String(err)}`);
    }
  }
}

function drainPool(): void {
  pool.scheduled = false;
  pool.draining = true;
  const deadline = performance.now() + WORK_SLICE_MS;
  let n = 0;
  try {
    while (pool.head < pool.items.length) {
      const work = pool.items[pool.head++]!;
      runItem(work);
      if (irqPolls.length !== 0) pollIrqs();
      if ((++n & 31) === 0 && performance.now() >= deadline) break;
    }
  } finally {
    pool.draining = false;
    const { items } = pool;
    if (pool.head === items.length) {
      items.length = 0;
      pool.head = 0;
    } else {
      if (pool.head > 1024) {
        items.copyWithin(0, pool.head);
        items.length -= pool.head;
        pool.head = 0;
      }
      schedule();
    }
  }
}

function push(work: WorkState): void {
  work.entries++;
  pool.items.push(work);
  schedule();
}

function runItem(work: WorkState): void {
  // A stale entry (the item was cancelled, then queued again further down) or a cancelled one.
  if (--work.entries !== 0 || !work.pending) return;
  if (work.running) {
    // Its previous run has not settled: like the kernel, never run an item twice at once; it
    // goes back on the pool when that run ends.
    work.deferred = true;
    return;
  }
  const wq = work.queuedOn;
  work.pending = false;
  work.running = true;
  if (work.pendingWaiters.length !== 0) {
    // The run those flushes wait for has started (runWaiters is empty: no run was in progress).
    const started = work.pendingWaiters;
    work.pendingWaiters = work.runWaiters;
    work.runWaiters = started;
  }
  let result: void | Promise<void>;
  try {
    result = work.work.fn(work.work);
  } catch (err) {
    finish(work);
    reportWorkError(wq?.name ?? 'events', err);
    return;
  }
  if (result && typeof (result as Promise<void>).then === 'function') {
    (result as Promise<void>).then(
      () => finish(work),
      (err) => {
        finish(work);
        reportWorkError(wq?.name ?? 'events', err);
      },
    );
  } else {
    finish(work);
  }
}

/**
 * Mirrors a workqueue: `queue()` (queue_work/schedule_work) runs each item once per queuing, off
 * the caller's stack, on the thread's worker pool; an item queued again while pending is not
 * queued twice. No allocation per queuing.
 */
export class Workqueue {
  readonly name: string;

  constructor(name = 'events') {
    this.name = name;
  }

  /**
   * Mirrors queue_work(): false (and nothing done) when the item is already pending, or while a
   * cancelSync() of it waits for its run to end (cancel_work_sync keeps it off the queue).
   */
  queue(item: Work): boolean {
    const work = stateOf(item);
    if (work.pending || work.cancelling !== 0) return false;
    work.pending = true;
    work.queuedOn = this;
    push(work);
    return true;
  }

  /**
   * Mirrors flush_work(): resolves once the run pending or running when it was called has
   * finished; runs queued after the call (an item that requeues itself) are not waited for.
   */
  flush(item: Work): Promise<void> {
    const work = stateOf(item);
    if (work.pending) return new Promise((resolve) => work.pendingWaiters.push(resolve));
    if (work.running) return new Promise((resolve) => work.runWaiters.push(resolve));
    return Promise.resolve();
  }

  /**
   * Mirrors cancel_work_sync(): takes a pending run off the queue and waits for a running one,
   * refusing to queue the item until then, so it works on an item that requeues itself.
   * Resolves to whether the item was pending. An item that is not running is cancelled at once:
   * it can be queued again right after the call, without awaiting it.
   */
  cancelSync(item: Work): Promise<boolean> {
    const work = stateOf(item);
    const wasPending = work.pending;
    if (wasPending) {
      // The pool skips the entry of an item that is no longer pending.
      work.pending = false;
      work.deferred = false;
      // The run those flushes waited for will not happen: they wait for the one in progress.
      const waiters = work.pendingWaiters;
      if (waiters.length !== 0) {
        work.pendingWaiters = [];
        if (work.running) work.runWaiters.push(...waiters);
        else for (const w of waiters) w();
      }
    }
    if (!work.running) return Promise.resolve(wasPending);
    work.cancelling++;
    return new Promise((resolve) => {
      work.runWaiters.push(() => {
        work.cancelling--;
        resolve(wasPending);
      });
    });
  }
}

/** A run has ended: a deferred queuing goes on the pool, and the flushes of this run resolve. */
function finish(work: WorkState): void {
  work.running = false;
  if (work.deferred) {
    work.deferred = false;
    push(work);
  }
  if (work.runWaiters.length === 0) return;
  const waiters = work.runWaiters;
  work.runWaiters = [];
  for (const w of waiters) w();
}

function reportWorkError(queue: string, err: unknown): void {
  // A work function has no caller to throw to; the kernel would print a warning and go on.
  process.emitWarning(`workqueue ${queue}: work item failed: ${String(err)}`);
}

/** The system workqueue (system_wq). */
export const systemWq = new Workqueue('events');

/** Mirrors schedule_work(): queues on the system workqueue; false when already pending. */
export function scheduleWork(work: Work): boolean {
  return systemWq.queue(work);
}

/** Mirrors flush_work() on the system workqueue. */
export function flushWork(work: Work): Promise<void> {
  return systemWq.flush(work);
}

/** Mirrors cancel_work_sync() on the system workqueue. */
export function cancelWorkSync(work: Work): Promise<boolean> {
  return systemWq.cancelSync(work);
}

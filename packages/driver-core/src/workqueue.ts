/** A work function; a returned promise keeps the item running until it settles. */
export type WorkFn = (work: Work) => void | Promise<void>;

type Waiter = () => void;

/** Mirrors struct work_struct: a function that a Workqueue runs off the caller's stack. */
export class Work {
  readonly fn: WorkFn;
  /** @internal */ pending = false;
  /** @internal */ running = false;
  /** @internal */ idleWaiters: Waiter[] = [];

  constructor(fn: WorkFn) {
    this.fn = fn;
  }

  /** Whether the item is queued and not yet started (work_pending()). */
  get isPending(): boolean {
    return this.pending;
  }

  /** Whether the item's function is running now. */
  get isRunning(): boolean {
    return this.running;
  }
}

/**
 * Mirrors a workqueue: `queue()` (queue_work/schedule_work) runs each item once per queuing, on a
 * later turn of the event loop; an item queued again while pending is not queued twice. Every batch
 * of items runs in one `setImmediate` turn, and items queued while a batch runs go to the next
 * turn, so a device that requeues itself cannot starve the event loop. No allocation per queuing.
 */
export class Workqueue {
  readonly name: string;
  private items: Work[] = [];
  private spare: Work[] = [];
  private scheduled = false;
  private readonly drain = () => this.runBatch();

  constructor(name = 'events') {
    this.name = name;
  }

  /** Mirrors queue_work(): false (and nothing done) when the item is already pending. */
  queue(work: Work): boolean {
    if (work.pending) return false;
    work.pending = true;
    this.items.push(work);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drain);
    }
    return true;
  }

  private runBatch(): void {
    this.scheduled = false;
    const batch = this.items;
    this.items = this.spare;
    for (let i = 0; i < batch.length; i++) {
      const work = batch[i]!;
      if (!work.pending) continue; // cancelled after queuing
      work.pending = false;
      work.running = true;
      let result: void | Promise<void>;
      try {
        result = work.fn(work);
      } catch (err) {
        work.running = false;
        settle(work);
        reportWorkError(this.name, err);
        continue;
      }
      if (result && typeof (result as Promise<void>).then === 'function') {
        (result as Promise<void>).then(
          () => finish(work),
          (err) => {
            finish(work);
            reportWorkError(this.name, err);
          },
        );
      } else {
        work.running = false;
        settle(work);
      }
    }
    batch.length = 0;
    this.spare = batch;
  }

  /** Mirrors flush_work(): resolves once the item is neither pending nor running. */
  flush(work: Work): Promise<void> {
    if (!work.pending && !work.running) return Promise.resolve();
    return new Promise((resolve) => work.idleWaiters.push(resolve));
  }

  /**
   * Mirrors cancel_work_sync(): takes a pending run off the queue and waits for a running one.
   * Resolves to whether the item was pending.
   */
  async cancelSync(work: Work): Promise<boolean> {
    const wasPending = work.pending;
    if (wasPending) {
      work.pending = false;
      const i = this.items.indexOf(work);
      if (i >= 0) this.items.splice(i, 1);
      if (!work.running) settle(work);
    }
    if (work.running) await new Promise<void>((resolve) => work.idleWaiters.push(resolve));
    return wasPending;
  }
}

function finish(work: Work): void {
  work.running = false;
  settle(work);
}

function settle(work: Work): void {
  if (work.pending || work.running || work.idleWaiters.length === 0) return;
  const waiters = work.idleWaiters;
  work.idleWaiters = [];
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

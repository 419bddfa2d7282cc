/** The actions of enum kobject_action that this project emits. */
export type UeventAction = 'add' | 'remove' | 'bind' | 'unbind' | 'change';

/** One uevent, as udev would receive it. */
export interface Uevent {
  seqnum: number;
  action: UeventAction;
  /** The device's path below /sys, e.g. `/devices/virtual/mtty/mtty`. */
  devpath: string;
  subsystem: string;
  /** The full environment: ACTION, DEVPATH, SUBSYSTEM, plus the bus's and caller's variables. */
  env: Record<string, string>;
}

export type UeventListener = (event: Uevent) => void;

/**
 * Uevent delivery, in sequence-number order. A listener that throws is reported with
 * `process.emitWarning` and the others still get the event.
 *
 * Events raised inside an operation (`hold()`: every driver-core and mdev-core call that adds,
 * binds, unbinds or removes devices, and every sysfs write) are queued and delivered when the
 * outermost operation returns, whether it succeeded or threw. This is what udev sees: it reads
 * the netlink socket after the kernel's call has finished, and cannot act in the middle of it.
 * A listener run synchronously from inside `device_add()` that unloads the module (removes the
 * parent, the bus, the class) would pull the device out from under the code still creating it:
 * a double put, a vendor remove never called, a class left behind. Delivery at the end of the
 * operation, rather than on a microtask, keeps the events visible to the caller as soon as the
 * call returns, as the tests and tools that read them right after a call expect.
 */
export class UeventBus {
  readonly #listeners = new Set<UeventListener>();
  readonly #queue: Uevent[] = [];
  #seqnum = 0;
  #depth = 0;
  #delivering = false;

  /** Subscribes a listener; returns the function that unsubscribes it. */
  subscribe(listener: UeventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Runs `fn` as one operation: the uevents it raises are delivered, in order, after the
   * outermost operation returns or throws. Operations nest; a listener's own operations are
   * delivered after the event it is handling, in sequence order.
   */
  hold<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      if (--this.#depth === 0) this.#deliver();
    }
  }

  /** Emits an event: delivered now, or when the operation in progress returns. */
  emit(action: UeventAction, devpath: string, subsystem: string, vars: Record<string, string>) {
    const seqnum = ++this.#seqnum;
    const env: Record<string, string> = {
      ACTION: action,
      DEVPATH: devpath,
      SUBSYSTEM: subsystem,
      ...vars,
      SEQNUM: String(seqnum),
    };
    this.#queue.push({ seqnum, action, devpath, subsystem, env });
    if (this.#depth === 0) this.#deliver();
  }

  #deliver(): void {
    // A listener's own operations end inside this loop: their events wait their turn here.
    if (this.#delivering) return;
    this.#delivering = true;
    const queue = this.#queue;
    let i = 0;
    try {
      for (; i < queue.length; i++) {
        const event = queue[i]!;
        for (const listener of [...this.#listeners]) {
          try {
            listener(event);
          } catch (err) {
            // Like a udev rule that fails: the event has happened (the device is added); the
            // other listeners still get it and the emitter's caller does not see the failure.
            process.emitWarning(
              `uevent ${event.action} ${event.devpath}: listener failed: ${String(err)}`,
            );
          }
        }
      }
    } finally {
      queue.splice(0, i);
      this.#delivering = false;
    }
  }
}

/** The uevent stream of this process (the kernel's netlink uevent socket). */
export const uevents = new UeventBus();

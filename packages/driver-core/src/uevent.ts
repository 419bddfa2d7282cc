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
 * Uevent delivery: listeners get every event synchronously, in sequence-number order. A listener
 * that throws is reported with `process.emitWarning` and the others still get the event.
 */
export class UeventBus {
  private readonly listeners = new Set<UeventListener>();
  private seqnum = 0;

  /** Subscribes a listener; returns the function that unsubscribes it. */
  subscribe(listener: UeventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Emits an event to every listener. */
  emit(action: UeventAction, devpath: string, subsystem: string, vars: Record<string, string>) {
    const seqnum = ++this.seqnum;
    const env: Record<string, string> = {
      ACTION: action,
      DEVPATH: devpath,
      SUBSYSTEM: subsystem,
      ...vars,
      SEQNUM: String(seqnum),
    };
    const event: Uevent = { seqnum, action, devpath, subsystem, env };
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        // Like a udev rule that fails: the event has happened (the device is added); the other
        // listeners still get it and the emitter's caller does not see the failure.
        process.emitWarning(`uevent ${action} ${devpath}: listener failed: ${String(err)}`);
      }
    }
  }
}

/** The uevent stream of this process (the kernel's netlink uevent socket). */
export const uevents = new UeventBus();

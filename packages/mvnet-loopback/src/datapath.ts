import { type AddressSpace, Vringh, VringhIov } from '@mdev/virtio-ring';

/** Counters of the loopback datapath, reported as sysfs attributes. */
export interface MvnetStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /** TX frames completed without an RX buffer to land in. */
  txDropped: number;
  /** Frames cut short because the RX buffer was smaller than the frame. */
  rxTruncated: number;
  /** Ring faults (a broken ring). */
  ringErrors: number;
}

/** One virtqueue as the device sees it. */
export class MvnetQueue {
  readonly vrh: Vringh;
  ready = false;
  num = 0;
  descAddr = 0;
  driverAddr = 0;
  deviceAddr = 0;
  /** Interrupt callback (set_vq_cb). */
  cb: ((priv: unknown) => void) | null = null;
  cbPrivate: unknown = null;

  constructor(space: AddressSpace) {
    this.vrh = new Vringh(space);
  }

  /** Drops the queue's state (mvnet_vq_reset). */
  reset(): void {
    this.ready = false;
    this.num = 0;
    this.descAddr = this.driverAddr = this.deviceAddr = 0;
    this.cb = null;
    this.cbPrivate = null;
  }

  /** Raises the queue's interrupt. */
  interrupt(): void {
    this.cb?.(this.cbPrivate);
  }
}

export const emptyStats = (): MvnetStats => ({
  txPackets: 0,
  txBytes: 0,
  rxPackets: 0,
  rxBytes: 0,
  txDropped: 0,
  rxTruncated: 0,
  ringErrors: 0,
});

/**
 * How a datapath run ended: nothing left, the budget used up (run again), a ring fault, or
 * (with `holdWhenNoRx`) a TX frame waiting for a receive buffer.
 */
export type DatapathResult = 'idle' | 'more' | 'broken' | 'starved';

/**
 * The loopback datapath (mvnet_work): every TX chain is copied, virtio-net header and all, into
 * one RX chain. TX completes with length 0, RX with the bytes written. A TX frame with no RX
 * buffer is completed and counted as dropped, unless `holdWhenNoRx` is set: then the frame stays
 * on the TX ring, RX kicks are enabled and the run ends 'starved' (a device in a thread of its
 * own uses this to give the driver a moment to refill, as a NIC's FIFO would, and drops only
 * after that). At most `budget` frames per run; 'more' asks the caller to run again.
 * Interrupts follow the driver's suppression (needNotify). A ring fault returns 'broken'.
 */
export class LoopbackDatapath {
  private readonly r = new VringhIov();
  private readonly w = new VringhIov();

  constructor(
    readonly rx: MvnetQueue,
    readonly tx: MvnetQueue,
    readonly stats: MvnetStats,
  ) {}

  run(budget: number, holdWhenNoRx = false): DatapathResult {
    const { rx, tx, r, w, stats } = this;
    if (tx.ready !== true || rx.ready !== true) return 'idle';
    const txv = tx.vrh;
    const rxv = rx.vrh;
    let n = 0;
    // Counted locally and added to `stats` once per run.
    let txBytes = 0;
    let rxPackets = 0;
    let rxBytes = 0;
    let txDropped = 0;
    let rxTruncated = 0;
    let result: DatapathResult = 'idle';
    txv.notifyDisable();
    for (;;) {
      if (n === budget) {
        result = 'more';
        break;
      }
      const got = txv.getDesc(r, null);
      if (got === 0) {
        // Ask for a kick, then look once more: the driver may have added a buffer meanwhile.
        if (txv.notifyEnable()) break;
        txv.notifyDisable();
        continue;
      }
      if (got < 0) {
        result = 'broken';
        break;
      }
      const len = r.total;
      let rgot = rxv.getDesc(null, w);
      if (rgot === 0 && holdWhenNoRx) {
        // No receive buffer: ask for a kick when the driver adds one, and look once more.
        if (!rxv.notifyEnable()) {
          rxv.notifyDisable();
          rgot = rxv.getDesc(null, w);
        }
        if (rgot === 0) {
          // Still none: give the TX chain back and wait for the driver (see `holdWhenNoRx`).
          txv.abandon(1);
          result = 'starved';
          break;
        }
      }
      if (rgot < 0) {
        txv.abandon(1);
        result = 'broken';
        break;
      }
      n++;
      txBytes += len;
      if (rgot === 0) {
        txv.complete(txv.head, 0);
        txDropped++;
        continue;
      }
      const written = txv.copy(r, w);
      if (written < len) rxTruncated++;
      txv.complete(txv.head, 0);
      rxv.complete(rxv.head, written);
      rxPackets++;
      rxBytes += written;
    }
    stats.txPackets += n;
    stats.txBytes += txBytes;
    stats.rxPackets += rxPackets;
    stats.rxBytes += rxBytes;
    stats.txDropped += txDropped;
    stats.rxTruncated += rxTruncated;
    if (result === 'broken') stats.ringErrors++;
    if (txv.needNotify() === 1) tx.interrupt();
    if (rxv.needNotify() === 1) rx.interrupt();
    return result;
  }
}

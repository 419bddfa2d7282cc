import { type AddressSpace, Vringh, VringhIov } from '@mdev/virtio-ring';

/** Counters of the loopback datapath, reported as sysfs attributes. */
export interface MvnetStats {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  /**
   * TX frames completed without being delivered: no RX buffer to land in, or a chain too short
   * to hold the virtio-net header (a malformed frame).
   */
  txDropped: number;
  /**
   * Frames dropped because they did not fit the RX buffer they found (the buffer is given back,
   * unused). The name is the sample's: such frames were once delivered cut short.
   */
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
  /**
   * A vq state (set_vq_state) given while the queue was not ready, or null. Vringh.init zeroes
   * the ring indices, so the next ready applies this after it (the sample lost it there).
   */
  pendingState: number | null = null;

  constructor(space: AddressSpace) {
    this.vrh = new Vringh(space);
  }

  /** Drops the queue's state (mvnet_vq_reset). */
  reset(): void {
    this.resetRing();
    this.num = 0;
    this.descAddr = this.driverAddr = this.deviceAddr = 0;
    this.cb = null;
    this.cbPrivate = null;
  }

  /**
   * Stops the queue and forgets its place in the ring: the vq state reads 0 again, as after the
   * sample's vringh_init_kern() in mvnet_vq_reset. (A queue only made not ready keeps its place,
   * so a driver can still read where the device stopped.)
   */
  resetRing(): void {
    this.ready = false;
    this.pendingState = null;
    this.vrh.setLastAvailIdx(0);
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
 * Where the virtio-net header's fields are, for the negotiated features (the caller computes it
 * from the uapi layout; the datapath, which also runs in the worker, needs only these numbers).
 */
export interface NetHdrLayout {
  /** Bytes of the header: a TX chain shorter than this is malformed. */
  size: number;
  /** Offset of num_buffers, or -1 when the header has none. */
  numBuffers: number;
}

/**
 * How a datapath run ended: nothing left, the budget used up (run again), a ring fault, or
 * (with `holdWhenNoRx`) a TX frame waiting for a receive buffer.
 */
export type DatapathResult = 'idle' | 'more' | 'broken' | 'starved';

/**
 * The loopback datapath (mvnet_work): every TX chain is copied, virtio-net header and all, into
 * one RX chain; only num_buffers is rewritten (see `run`). TX completes with length 0, RX with
 * the bytes written. A TX chain shorter than the header is completed and counted as dropped,
 * without taking an RX buffer. A frame larger than the RX chain it finds is dropped and counted
 * in rxTruncated, and the RX buffer is given back. A TX frame with no RX buffer is completed and
 * counted as dropped, unless `holdWhenNoRx` is set: then the frame stays on the TX ring, RX kicks
 * are enabled and the run ends 'starved' (a device in a thread of its own uses this to give the
 * driver a moment to refill, as a NIC's FIFO would, and drops only after that). At most `budget`
 * frames per run (an integer >= 1); 'more' asks the caller to run again. Interrupts follow the
 * driver's suppression (needNotify). A ring fault returns 'broken'.
 */
export class LoopbackDatapath {
  private readonly r = new VringhIov();
  private readonly w = new VringhIov();
  /**
   * The header layout of the negotiated features, set when a queue becomes ready; until then
   * none (nothing is checked or rewritten).
   */
  hdr: NetHdrLayout = { size: 0, numBuffers: -1 };

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
    const hdrSize = this.hdr.size;
    const numBuffers = this.hdr.numBuffers;
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
      // `>=`, not `===`: a run must end even if the caller's budget is not a positive integer.
      if (n >= budget) {
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
      if (len < hdrSize) {
        // Not even a virtio-net header (virtio 1.2 5.1.6.2: every packet starts with one): a
        // malformed frame. Complete and drop it; it must not cost the driver a receive buffer.
        n++;
        txBytes += len;
        txv.complete(txv.head, 0);
        txDropped++;
        continue;
      }
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
      if (w.total < len) {
        // The frame does not fit. Delivered cut short, with used.len the buffer's size, it would
        // look like a real shorter frame to the driver: give the buffer back and drop the frame.
        rxv.abandon(1);
        txv.complete(txv.head, 0);
        rxTruncated++;
        continue;
      }
      const written = txv.copy(r, w);
      // Virtio 1.2 5.1.6.4.1: without MRG_RXBUF the device MUST set num_buffers to 1 (and with
      // it, a frame in one buffer says 1 too); the driver's TX header has 0 there. Written
      // before complete() publishes the buffer.
      if (numBuffers >= 0 && written >= numBuffers + 2) w.storeLe16(numBuffers, 1);
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

import {
  type AddressSpace,
  type AnyVringhConfig,
  createVringh,
  type ForwardResult,
  initialVqState,
  RingForward,
  type VringhLike,
  VringhPacked,
} from '@mdev/virtio-ring';

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
  /**
   * The device side of the ring, split or packed; replaced (keeping the queue's place) by
   * `readThrough`, and by `initRing` for the layout the driver negotiated.
   */
  vrh: VringhLike;
  private space: AddressSpace;
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
    this.space = space;
    this.vrh = createVringh(space);
  }

  /**
   * Starts the ring at `config` in its layout (VIRTIO_F_RING_PACKED), from the vq state
   * `lastAvail` (init zeroes the indices: a state set while the queue was down comes after it).
   * Returns init's result (0 or a negative errno).
   */
  initRing(config: AnyVringhConfig, lastAvail: number): number {
    const packed = config.packed === true;
    if (this.vrh instanceof VringhPacked !== packed) this.vrh = createVringh(this.space, packed);
    const err = this.vrh.init(config);
    if (err === 0) this.vrh.restoreState(lastAvail);
    return err;
  }

  /**
   * Reads the ring through `space` from now on (a DMA map set or cleared while the queue is not
   * ready), keeping its place. The queue then holds the memory itself, not a wrapper that would
   * forward every translation: each frame's walk calls `translate` several times.
   */
  readThrough(space: AddressSpace): void {
    const last = this.vrh.getLastAvailIdx();
    this.space = space;
    this.vrh = createVringh(space, this.vrh instanceof VringhPacked);
    this.vrh.setLastAvailIdx(last);
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
    this.vrh.setLastAvailIdx(initialVqState(this.vrh instanceof VringhPacked));
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
 * (with `holdWhenNoRx`) a TX frame waiting for a receive buffer (see `RingForward`).
 */
export type DatapathResult = ForwardResult;

/**
 * The loopback datapath (mvnet_work) on @mdev/virtio-ring's forward step: every TX chain is
 * copied, virtio-net header and all, into one RX chain; only num_buffers is set (to 1, virtio
 * 1.2 5.1.6.4.1). TX completes with length 0, RX with the bytes written. A TX chain shorter than
 * the header is completed and counted in txDropped, without taking an RX buffer. A frame larger
 * than the RX chain it finds is dropped and counted in rxTruncated, and the RX buffer is given
 * back. A TX frame with no RX buffer is completed and counted in txDropped, unless
 * `holdWhenNoRx` is set: then it stays on the TX ring, RX kicks are enabled and the run ends
 * 'starved' (a device in a thread of its own uses this to give the driver a moment to refill, as
 * a NIC's FIFO would, and drops only after that). A run makes at most `budget` looks at the TX
 * ring (an integer >= 1; `RingForward` says what counts); 'more' asks the caller to run again.
 * Interrupts follow the driver's suppression (needNotify). A ring fault returns 'broken'.
 */
export class LoopbackDatapath {
  private readonly fwd = new RingForward();
  private layout: NetHdrLayout = { size: 0, numBuffers: -1 };

  constructor(
    readonly rx: MvnetQueue,
    readonly tx: MvnetQueue,
    readonly stats: MvnetStats,
  ) {}

  /**
   * The header layout of the negotiated features, set when a queue becomes ready; until then
   * none (nothing is checked or rewritten).
   */
  get hdr(): NetHdrLayout {
    return this.layout;
  }
  set hdr(layout: NetHdrLayout) {
    this.layout = layout;
    this.fwd.minLen = layout.size;
    this.fwd.numBuffersAt = layout.numBuffers;
  }

  run(budget: number, holdWhenNoRx = false): DatapathResult {
    const { rx, tx, stats, fwd } = this;
    if (tx.ready !== true || rx.ready !== true) return 'idle';
    const result = fwd.run(tx.vrh, rx.vrh, budget, holdWhenNoRx);
    stats.txPackets += fwd.txChains;
    stats.txBytes += fwd.txBytes;
    stats.rxPackets += fwd.rxFrames;
    stats.rxBytes += fwd.rxBytes;
    stats.txDropped += fwd.noRxBuffer + fwd.malformed;
    stats.rxTruncated += fwd.oversize;
    if (result === 'broken') stats.ringErrors++;
    if (fwd.txNotify === true) tx.interrupt();
    if (fwd.rxNotify === true) rx.interrupt();
    return result;
  }
}

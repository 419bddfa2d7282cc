import { KernelError, Work, Workqueue } from '@mdev/driver-core';
import {
  ETH_ALEN,
  featureSet,
  randomMac,
  registerVirtioDriver,
  unregisterVirtioDriver,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_NET,
  VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MTU,
  VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_MRG_RXBUF_SIZE,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_S_LINK_UP,
  type VirtioDevice,
  type VirtioDriver,
  virtioClearBit,
  virtioCread16,
  virtioCreadBytes,
  virtioDeviceReady,
  virtioFindVqs,
  virtioHasFeature,
  virtioResetDevice,
} from '@mdev/virtio';
import { ENOSPC, type VirtqueueLike } from '@mdev/virtio-ring';
import {
  ETH_DATA_LEN,
  ETH_HLEN,
  ETH_MIN_MTU,
  NETDEV_TX_BUSY,
  NETDEV_TX_OK,
  type NetDevice,
  type NetDeviceStats,
  type NetdevTx,
  netdevAllocName,
  type RxHandler,
  registerNetdev,
  type TxBuilder,
  unregisterNetdev,
  VLAN_HLEN,
} from './netdev';

// What the per-frame paths use, as module constants: an imported binding is loaded through its
// module cell and checked for a hole on every use, where V8 folds a module constant into the code.
const TX_OK = NETDEV_TX_OK;
const TX_BUSY = NETDEV_TX_BUSY;
const MIN_RX_FRAME = ETH_HLEN;

/** Tunables of the driver (the kernel's module parameters and constants). */
export interface VirtioNetParams {
  /** Frames one NAPI poll handles (NAPI_POLL_WEIGHT). */
  napiWeight: number;
  /** Frames one run of the receive softirq handles before yielding (net.core.netdev_budget). */
  netdevBudget: number;
  /** Bytes of each mergeable receive buffer, header included. */
  mergeableBufSize: number;
}

/** The current parameters; change with setVirtioNetParams before a device binds. */
export const virtioNetParams: VirtioNetParams = {
  napiWeight: 64,
  netdevBudget: 300,
  mergeableBufSize: 1536,
};

/** Sets driver parameters for devices probed from now on. RangeError for unusable values. */
export function setVirtioNetParams(params: Partial<VirtioNetParams>): void {
  const next = { ...virtioNetParams, ...params };
  if (!Number.isInteger(next.napiWeight) || next.napiWeight < 1) {
    throw new RangeError(`virtio-net: bad napiWeight ${next.napiWeight}`);
  }
  if (!Number.isInteger(next.netdevBudget) || next.netdevBudget < 1) {
    throw new RangeError(`virtio-net: bad netdevBudget ${next.netdevBudget}`);
  }
  if (!Number.isInteger(next.mergeableBufSize) || next.mergeableBufSize < 64) {
    throw new RangeError(`virtio-net: mergeable buffers need at least 64 bytes`);
  }
  Object.assign(virtioNetParams, next);
}

const SLOT_ALIGN = 64;
/** How long the refill work waits before posting receive buffers an add failed to post. */
const REFILL_RETRY_MS = 10;

/** The workqueue NAPI polls and config work run on (the kernel's softirq and system_wq). */
export const virtnetWq = new Workqueue('virtio-net');

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

let nextIfindex = 1;
/** The next interface index (dev_new_index: never reused while the process lives). */
function allocIfindex(): number {
  return nextIfindex++;
}

// The driver's way into a VirtNet (probe, the config interrupt, remove), bound to #private
// methods by the class below, so none of them is part of the published interface.
let initLinkOf: (vi: VirtNet) => void;
let configChangedOf: (vi: VirtNet) => void;
let teardownOf: (vi: VirtNet) => void;

let warned = false;
function warnOnce(message: string): void {
  if (warned) return;
  warned = true;
  process.emitWarning(message);
}

/**
 * Mirrors struct virtnet_info: one receive/transmit queue pair of a virtio-net device, with
 * receive and transmit buffer pools allocated once in host memory at the first open. Flags are
 * tested with `=== true` on the per-frame paths (see Vringh in @mdev/virtio-ring for why).
 */
export class VirtNet implements NetDevice {
  readonly name: string;
  readonly ifindex: number;
  readonly vdev: VirtioDevice;
  readonly mtu: number;
  readonly maxFrameLen: number;
  /** Bytes of the virtio-net header on both queues (10, or 12 with VERSION_1 or MRG_RXBUF). */
  readonly hdrLen: number;
  readonly mergeable: boolean;
  /** Header and frame go in one descriptor (VERSION_1 or ANY_LAYOUT). */
  readonly anyLayout: boolean;
  onReceive: RxHandler | null = null;
  onTxWake: (() => void) | null = null;
  onLinkChange: ((up: boolean) => void) | null = null;
  private readonly macAddr: Uint8Array;
  private readonly counters: NetDeviceStats = {
    rxPackets: 0,
    rxBytes: 0,
    rxDropped: 0,
    rxErrors: 0,
    txPackets: 0,
    txBytes: 0,
    txDropped: 0,
    txErrors: 0,
  };
  private readonly rvq: VirtqueueLike<number>;
  private readonly svq: VirtqueueLike<number>;
  private up = false;
  private link = true;
  private stopped = false;
  private napiOn = false;
  private removed = false;
  /** Set by open: the next NAPI run wakes the sender (see open). */
  private wakeOnOpen = false;
  private readonly refillWork: Work;
  private refillTimer: ReturnType<typeof setTimeout> | null = null;
  private kickPending = false;
  private readonly napi: Work;
  private readonly configWork: Work;
  // Pools: `slots` fixed-size buffers each, at `base` in host memory, seen through `u8`; `alloc`
  // is where each pool's memory starts (`base` is a little after it, see allocPools).
  private rxAlloc = 0;
  private txAlloc = 0;
  private rxBase = 0;
  private rxSlot = 0;
  private rxU8: Uint8Array = new Uint8Array(0);
  private txBase = 0;
  private txSlot = 0;
  private txU8: Uint8Array = new Uint8Array(0);
  // The free transmit buffers, oldest first: a ring of `txFreeTop` slots from `txFreeHead`. Taken
  // in the order they came back, each buffer goes to the descriptor it had (descriptors are
  // used in order with VIRTIO_F_IN_ORDER), so that descriptor's bytes stay as they are.
  private txFree = new Uint16Array(0);
  private txFreeHead = 0;
  private txFreeTop = 0;
  private txLen = new Uint32Array(0);
  private readonly txNeed: number;
  private readonly chainAddr = new Float64Array(2);
  private readonly chainLen = new Float64Array(2);
  private reasm = new Uint8Array(0);

  constructor(vdev: VirtioDevice) {
    this.vdev = vdev;
    this.mergeable = virtioHasFeature(vdev, VIRTIO_NET_F_MRG_RXBUF);
    const v1 = virtioHasFeature(vdev, VIRTIO_F_VERSION_1);
    this.hdrLen = v1 || this.mergeable ? VIRTIO_NET_HDR_MRG_RXBUF_SIZE : VIRTIO_NET_HDR_SIZE;
    this.anyLayout = v1 || virtioHasFeature(vdev, VIRTIO_F_ANY_LAYOUT);
    this.txNeed = this.anyLayout ? 1 : 2;
    if (virtioHasFeature(vdev, VIRTIO_NET_F_MAC)) {
      this.macAddr = new Uint8Array(ETH_ALEN);
      virtioCreadBytes(vdev, VIRTIO_NET_CONFIG_MAC, this.macAddr);
    } else {
      this.macAddr = randomMac();
    }
    this.mtu = virtioHasFeature(vdev, VIRTIO_NET_F_MTU)
      ? virtioCread16(vdev, VIRTIO_NET_CONFIG_MTU)
      : ETH_DATA_LEN;
    // virtnet_probe checks again what validate checked: the config may have changed between.
    if (this.mtu < ETH_MIN_MTU) {
      throw new KernelError('EINVAL', `virtio-net: device MTU ${this.mtu} is below ${ETH_MIN_MTU}`);
    }
    this.maxFrameLen = this.mtu + ETH_HLEN + VLAN_HLEN;
    this.napi = new Work(() => this.napiRun());
    this.refillWork = new Work(() => this.refill());
    this.configWork = new Work(() => this.configChangedWork());
    const [rvq, svq] = virtioFindVqs<number>(
      vdev,
      ['input.0', 'output.0'],
      [(vq) => this.rxInterrupt(vq), (vq) => this.txInterrupt(vq)],
    );
    if (!rvq || !svq) throw new TypeError('virtio-net: find_vqs gave no queues');
    this.rvq = rvq;
    this.svq = svq;
    // Every add path here ends with kickPrepare, which then publishes the batch's buffers with
    // one store of the avail index: a device on another core reads that line once a burst.
    rvq.batchAvail = true;
    svq.batchAvail = true;
    this.name = netdevAllocName();
    this.ifindex = allocIfindex();
  }

  get mac(): Uint8Array {
    return this.macAddr.slice();
  }
  get carrier(): boolean {
    return this.link;
  }
  get isUp(): boolean {
    return this.up;
  }
  get txStopped(): boolean {
    return this.stopped || !this.up || !this.link;
  }
  get stats(): Readonly<NetDeviceStats> {
    return { ...this.counters };
  }
  /** The receive and transmit virtqueues (for diagnostics and tests). */
  get queues(): { rx: VirtqueueLike<number>; tx: VirtqueueLike<number> } {
    return { rx: this.rvq, tx: this.svq };
  }

  /** Reads the link state from config (VIRTIO_NET_F_STATUS; always up without it). */
  readLink(): boolean {
    if (!virtioHasFeature(this.vdev, VIRTIO_NET_F_STATUS)) return true;
    return (virtioCread16(this.vdev, VIRTIO_NET_CONFIG_STATUS) & VIRTIO_NET_S_LINK_UP) !== 0;
  }

  static {
    initLinkOf = (vi) => vi.#initLink();
    configChangedOf = (vi) => vi.#configChanged();
    teardownOf = (vi) => vi.#teardown();
  }

  /** Called once DRIVER_OK is set. */
  #initLink(): void {
    this.link = this.readLink();
  }

  private allocPools(): void {
    if (this.rxU8.length > 0) return;
    const ram = this.vdev.ram;
    this.rxSlot = alignUp(
      this.mergeable ? virtioNetParams.mergeableBufSize : this.hdrLen + this.maxFrameLen,
      SLOT_ALIGN,
    );
    this.txSlot = alignUp(this.hdrLen + this.maxFrameLen, SLOT_ALIGN);
    const rxBytes = this.rxSlot * this.rvq.num;
    const txBytes = this.txSlot * this.svq.num;
    const rx = ram.alloc(rxBytes + SLOT_ALIGN, 4096);
    const tx = rx === null ? null : ram.alloc(txBytes + SLOT_ALIGN, 4096);
    if (rx === null || tx === null) {
      if (rx !== null) ram.free(rx);
      throw new RangeError(`${this.name}: no host memory for the buffer pools`);
    }
    this.rxAlloc = rx;
    this.txAlloc = tx;
    // Each buffer starts `hdrLen` bytes before a cache line, so that its frame starts on one (as
    // DPDK keeps the virtio-net header in an mbuf's headroom): a 64-byte frame is one line, and
    // with the device on another core each frame moves one line each way, not two. The header's
    // line is written by one side only (zeros by nobody on TX, the device on RX).
    const pad = SLOT_ALIGN - (this.hdrLen % SLOT_ALIGN);
    this.rxBase = rx + pad;
    this.txBase = tx + pad;
    this.rxU8 = ram.memory.view(this.rxBase, rxBytes);
    this.txU8 = ram.memory.view(this.txBase, txBytes);
    // Transmit headers stay zero (no offloads, num_buffers 0): the device only reads them.
    this.txFree = new Uint16Array(this.svq.num);
    this.txLen = new Uint32Array(this.svq.num);
    for (let i = 0; i < this.svq.num; i++) this.txFree[i] = i;
    this.txFreeHead = 0;
    this.txFreeTop = this.svq.num;
    this.reasm = new Uint8Array(this.maxFrameLen + this.hdrLen);
  }

  /** Frees the pools after the device is reset and its queues deleted. */
  #freePools(): void {
    if (this.rxU8.length === 0) return;
    this.vdev.ram.free(this.rxAlloc);
    this.vdev.ram.free(this.txAlloc);
    this.rxU8 = new Uint8Array(0);
    this.txU8 = new Uint8Array(0);
  }

  /** Mirrors virtnet_open(): fills the receive ring and enables NAPI. */
  open(): void {
    if (this.removed) throw new TypeError(`${this.name}: the device is gone`);
    if (this.up) return;
    this.allocPools();
    this.up = true;
    this.stopped = false;
    this.napiOn = true;
    // A sender that got BUSY while the interface was down may send again: the first NAPI run
    // says so (netif_tx_start_all_queues, with the wake the NetDevice contract promises).
    this.wakeOnOpen = true;
    // Transmit completions are reaped from xmit; interrupts only when the ring fills up.
    this.svq.disableCb();
    this.tryFillRecv();
    virtnetWq.queue(this.napi);
  }

  /** Mirrors virtnet_close(): NAPI off, queue stopped; receive buffers stay with the device. */
  stop(): void {
    if (!this.up) return;
    this.up = false;
    this.napiOn = false;
    void virtnetWq.cancelSync(this.napi);
    void virtnetWq.cancelSync(this.refillWork);
    this.flush();
  }

  private tryFillRecv(): void {
    const vq = this.rvq;
    // Every slot whose descriptor is free is a slot the device does not hold.
    while (vq.numFree > 0) {
      const slot = this.nextRxSlot();
      if (slot < 0) break;
      if (!this.postRx(slot)) break;
    }
    if (vq.kickPrepare()) vq.notify();
  }

  /**
   * The refill work (virtnet's refill delayed work): posts the receive buffers an add could not
   * post (a DMA mapping failed), a little later, as long as the interface is up.
   */
  private refill(): void {
    if (this.up === true && this.removed !== true && this.rvq.isBroken !== true) {
      this.tryFillRecv();
    }
  }

  private refillLater(): void {
    if (this.refillTimer !== null || this.removed === true) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = null;
      virtnetWq.queue(this.refillWork);
    }, REFILL_RETRY_MS);
    this.refillTimer.unref?.();
  }

  private rxPosted: Uint8Array | null = null;
  private nextRxSlot(): number {
    // Used only while filling at open: find a slot not posted yet.
    if (this.rxPosted === null) this.rxPosted = new Uint8Array(this.rvq.num);
    for (let i = 0; i < this.rxPosted.length; i++) {
      if (this.rxPosted[i] === 0) {
        this.rxPosted[i] = 1;
        return i;
      }
    }
    return -1;
  }

  xmit(frame: Uint8Array, more = false): NetdevTx {
    const len = frame.length;
    this.checkTxLen(len);
    const slot = this.txBegin();
    if (slot < 0) return TX_BUSY;
    this.txU8.set(frame, slot * this.txSlot + this.hdrLen);
    return this.txCommit(slot, len, more);
  }

  xmitWith(len: number, build: TxBuilder, more = false): NetdevTx {
    this.checkTxLen(len);
    const slot = this.txBegin();
    if (slot < 0) return TX_BUSY;
    try {
      build(this.txU8, slot * this.txSlot + this.hdrLen);
    } catch (err) {
      // Nothing was queued: the buffer goes back and the caller sees its own error.
      this.untakeTx(slot);
      throw err;
    }
    return this.txCommit(slot, len, more);
  }

  private checkTxLen(len: number): void {
    if (!(Number.isInteger(len) && len > 0 && len <= this.maxFrameLen)) {
      throw new RangeError(
        `${this.name}: frame of ${len} bytes (1 to ${this.maxFrameLen} allowed)`,
      );
    }
  }

  /**
   * Takes a free transmit buffer (reclaiming finished ones first when short), or stops the queue
   * and returns -1 (NETDEV_TX_BUSY) when there is none.
   */
  private txBegin(): number {
    if (this.up !== true || this.link !== true || this.stopped === true) return -1;
    const vq = this.svq;
    if (this.txFreeTop === 0 || vq.numFree < this.txNeed) {
      this.freeOldXmit();
      if (this.txFreeTop === 0 || vq.numFree < this.txNeed) {
        this.stopQueue();
        this.flush();
        // stopQueue restarts the queue only when it found room after all.
        if (this.stopped) return -1;
      }
    }
    const slot = this.txFree[this.txFreeHead]!;
    this.txFreeHead = (this.txFreeHead + 1) & (this.txFree.length - 1);
    this.txFreeTop--;
    return slot;
  }

  /** Gives back the buffer txBegin just took, first in line again. */
  private untakeTx(slot: number): void {
    this.txFreeHead = (this.txFreeHead - 1) & (this.txFree.length - 1);
    this.txFree[this.txFreeHead] = slot;
    this.txFreeTop++;
  }

  /** Queues the frame in transmit buffer `slot` (`len` bytes after the header). */
  private txCommit(slot: number, len: number, more: boolean): NetdevTx {
    const vq = this.svq;
    const addr = this.txBase + slot * this.txSlot;
    let err: number;
    if (this.anyLayout === true) {
      err = vq.addOutbuf(addr, this.hdrLen + len, slot);
    } else {
      // Without ANY_LAYOUT the header has a descriptor of its own (virtio 1.2 5.1.6.6, legacy).
      this.chainAddr[0] = addr;
      this.chainLen[0] = this.hdrLen;
      this.chainAddr[1] = addr + this.hdrLen;
      this.chainLen[1] = len;
      err = vq.addChain(this.chainAddr, this.chainLen, 2, 0, slot);
    }
    if (err !== 0) {
      this.untakeTx(slot);
      if (err === -ENOSPC) {
        this.stopQueue();
        this.flush();
        return TX_BUSY;
      }
      // A broken queue: the frame is given up on, and counted.
      this.counters.txDropped++;
      return TX_OK;
    }
    this.txLen[slot] = len;
    this.kickPending = true;
    if (this.txFreeTop === 0 || vq.numFree < this.txNeed) {
      this.freeOldXmit();
      if (this.txFreeTop === 0 || vq.numFree < this.txNeed) this.stopQueue();
    }
    if (more !== true || this.stopped === true) this.flush();
    return TX_OK;
  }

  /**
   * Stops the queue and asks for a transmit interrupt once most in-flight frames are done
   * (virtqueue_enable_cb_delayed); if they already are, restarts at once.
   */
  private stopQueue(): void {
    this.stopped = true;
    if (!this.svq.enableCbDelayed()) {
      // More just got used: free them and check again.
      this.freeOldXmit();
      if (this.txFreeTop > 0 && this.svq.numFree >= this.txNeed) {
        this.stopped = false;
        this.svq.disableCb();
      }
    }
  }

  flush(): void {
    if (this.kickPending !== true) return;
    this.kickPending = false;
    if (this.svq.kickPrepare()) this.svq.notify();
  }

  /** Mirrors free_old_xmit_skbs(): takes back the transmit buffers the device is done with. */
  private freeOldXmit(): number {
    const vq = this.svq;
    let n = 0;
    for (let slot = vq.getBufToken(); slot !== undefined; slot = vq.getBufToken()) {
      this.counters.txPackets++;
      this.counters.txBytes += this.txLen[slot]!;
      this.txFree[(this.txFreeHead + this.txFreeTop++) & (this.txFree.length - 1)] = slot;
      n++;
    }
    return n;
  }

  private rxInterrupt(vq: VirtqueueLike<number>): void {
    // napi_schedule: interrupts stay off until the poll is done.
    vq.disableCb();
    if (this.napiOn) virtnetWq.queue(this.napi);
  }

  private txInterrupt(vq: VirtqueueLike<number>): void {
    vq.disableCb();
    if (this.napiOn) virtnetWq.queue(this.napi);
  }

  /** Mirrors virtnet_poll_cleantx(): reclaims and wakes a stopped queue with room again. */
  private cleanTx(): void {
    this.freeOldXmit();
    if (this.stopped && this.txFreeTop > 0 && this.svq.numFree >= this.txNeed) {
      this.stopped = false;
      this.svq.disableCb();
      this.wakeOnOpen = false;
      if (this.up && this.link) this.onTxWake?.();
    } else if (this.wakeOnOpen === true) {
      this.wakeOnOpen = false;
      if (!this.stopped && this.up && this.link) this.onTxWake?.();
    }
  }

  poll(budget: number): number {
    if (this.up !== true || this.removed === true) return 0;
    this.cleanTx();
    return this.receive(budget);
  }

  /**
   * One softirq run of net_rx_action for this device: the NAPI poll (virtnet_poll) with
   * interrupts off, again while a poll uses its whole weight, up to `netdevBudget` frames (then
   * it yields and runs again later); then virtqueue_napi_complete.
   */
  private napiRun(): void {
    if (!this.napiOn || this.removed) return;
    const { napiWeight, netdevBudget } = virtioNetParams;
    for (let total = 0; ; ) {
      const done = this.poll(napiWeight);
      if (done < napiWeight) break;
      total += done;
      if (total >= netdevBudget || !this.napiOn || this.removed) {
        virtnetWq.queue(this.napi);
        return;
      }
    }
    // A receive handler may have taken the interface down or removed the device.
    if (!this.napiOn || this.removed) return;
    // Re-enable interrupts, then look again: a buffer used between the last getBuf and the
    // enable would otherwise raise no interrupt (the lost wakeup).
    const opaque = this.rvq.enableCbPrepare();
    if (this.rvq.poll(opaque)) {
      this.rvq.disableCb();
      virtnetWq.queue(this.napi);
      return;
    }
    if (this.stopped) {
      const t = this.svq.enableCbPrepare();
      if (this.svq.poll(t)) virtnetWq.queue(this.napi);
    }
  }

  /** Mirrors virtnet_receive(): up to `budget` frames, each buffer given back at once. */
  private receive(budget: number): number {
    const vq = this.rvq;
    const hdrLen = this.hdrLen;
    const size = this.rxSlot;
    let received = 0;
    let refilled = false;
    while (received < budget) {
      const slot = vq.getBufToken();
      if (slot === undefined) break;
      received++;
      let len = vq.lastLen;
      const off = slot * size;
      if (len < hdrLen + MIN_RX_FRAME) {
        // "rx error: len < hdrlen": the device gave a runt; drop it and count.
        this.counters.rxErrors++;
        this.postRx(slot);
        refilled = true;
        continue;
      }
      let numBuf = 1;
      if (this.mergeable === true) {
        numBuf =
          this.rxU8[off + VIRTIO_NET_HDR_NUM_BUFFERS]! |
          (this.rxU8[off + VIRTIO_NET_HDR_NUM_BUFFERS + 1]! << 8);
        if (numBuf < 1) {
          this.counters.rxErrors++;
          this.postRx(slot);
          refilled = true;
          continue;
        }
      }
      if (numBuf === 1) {
        if (len - hdrLen > this.maxFrameLen) {
          // receive_small's "rx error: len exceeds max size": longer than the MTU allows.
          this.counters.rxErrors++;
          this.postRx(slot);
          refilled = true;
          continue;
        }
        this.deliver(this.rxU8, off + hdrLen, len - hdrLen);
        // The handler may have removed the device: its rings are gone.
        if (this.removed === true) return received;
        this.postRx(slot);
        refilled = true;
        continue;
      }
      // A frame in several mergeable buffers: assemble it in one place.
      let total = len - hdrLen;
      let ok = total <= this.reasm.length;
      if (ok) this.reasm.set(this.rxU8.subarray(off + hdrLen, off + len), 0);
      this.postRx(slot);
      refilled = true;
      for (let k = 1; k < numBuf; k++) {
        const next = vq.getBufToken();
        if (next === undefined) {
          // "%d buffers out of %d missing": the device published fewer buffers than it said.
          ok = false;
          this.counters.rxErrors++;
          break;
        }
        len = vq.lastLen;
        const o = next * size;
        if (ok && total + len <= this.reasm.length) {
          this.reasm.set(this.rxU8.subarray(o, o + len), total);
        } else {
          ok = false;
        }
        total += len;
        this.postRx(next);
      }
      if (ok) this.deliver(this.reasm, 0, total);
      else this.counters.rxDropped++;
      if (this.removed === true) return received;
    }
    if (refilled && vq.kickPrepare()) vq.notify();
    return received;
  }

  /**
   * Posts receive buffer `slot`. When the add fails (a DMA mapping failed, or the queue broke)
   * the slot is marked not posted and the refill work tries again, so the buffer is not lost to
   * the ring. False when it was not posted.
   */
  private postRx(slot: number): boolean {
    if (this.rvq.addInbuf(this.rxBase + slot * this.rxSlot, this.rxSlot, slot) === 0) return true;
    this.rxPosted![slot] = 0;
    this.refillLater();
    return false;
  }

  private deliver(buf: Uint8Array, offset: number, length: number): void {
    const handler = this.onReceive;
    if (handler === null) {
      this.counters.rxDropped++;
      return;
    }
    this.counters.rxPackets++;
    this.counters.rxBytes += length;
    try {
      handler(buf, offset, length);
    } catch (err) {
      warnOnce(`${this.name}: receive handler threw: ${String(err)}`);
    }
  }

  /** The config interrupt (virtnet_config_changed): handled in a work item. */
  #configChanged(): void {
    if (!this.removed) virtnetWq.queue(this.configWork);
  }

  private configChangedWork(): void {
    if (this.removed) return;
    const up = this.readLink();
    if (up === this.link) return;
    this.link = up;
    this.onLinkChange?.(up);
    // netif_tx_wake_all_queues on carrier on: whoever got BUSY may send again.
    if (up && this.up && !this.stopped) this.onTxWake?.();
  }

  /** virtnet_remove after the netdev is unregistered: reset, reclaim, delete. */
  #teardown(): void {
    this.stop();
    this.removed = true;
    if (this.refillTimer !== null) clearTimeout(this.refillTimer);
    this.refillTimer = null;
    void virtnetWq.cancelSync(this.refillWork);
    void virtnetWq.cancelSync(this.configWork);
    // Reset first, as remove_vq_common() does: from here the device writes nothing, so what
    // follows sees the rings as they finally are (a device in another thread could otherwise
    // complete a frame between the reaping below and the reset, and it would be counted twice).
    virtioResetDevice(this.vdev);
    // Account for every frame in flight, so a user's counts still add up after a removal:
    // transmitted frames the device finished are reaped as sent, received frames nobody will
    // read any more are dropped.
    this.freeOldXmit();
    while (this.rvq.getBufToken() !== undefined) this.counters.rxDropped++;
    // Every other buffer comes back unused (free_unused_bufs); a frame the device never sent
    // is dropped.
    while (this.rvq.detachUnused() !== undefined);
    while (this.svq.detachUnused() !== undefined) this.counters.txDropped++;
    this.vdev.config.delVqs(this.vdev);
    this.#freePools();
  }
}

/** The features the driver handles (virtnet feature table). */
export const VIRTNET_FEATURES = featureSet(
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_STATUS,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_VERSION_1,
);

const byDevice = new WeakMap<VirtioDevice, VirtNet>();

/** The net device bound to a virtio device, if virtio-net drives it. */
export function virtnetFromVirtioDevice(vdev: VirtioDevice): VirtNet | undefined {
  return byDevice.get(vdev);
}

/** virtnet_remove: the netdev goes, then the device is reset and its buffers come back. */
function unbind(vdev: VirtioDevice): void {
  const vi = byDevice.get(vdev);
  if (!vi) return;
  unregisterNetdev(vi);
  teardownOf(vi);
  byDevice.delete(vdev);
  vdev.priv = null;
}

/** Mirrors the virtio_net driver (struct virtio_driver virtio_net_driver). */
export const virtioNetDriver: VirtioDriver = {
  name: 'virtio_net',
  idTable: [{ device: VIRTIO_ID_NET, vendor: 0xffffffff }],
  featureTable: VIRTNET_FEATURES,
  validate(vdev) {
    // virtnet_validate: an MTU below the minimum is ignored.
    if (
      virtioHasFeature(vdev, VIRTIO_NET_F_MTU) &&
      virtioCread16(vdev, VIRTIO_NET_CONFIG_MTU) < ETH_MIN_MTU
    ) {
      virtioClearBit(vdev, VIRTIO_NET_F_MTU);
    }
  },
  probe(vdev) {
    const vi = new VirtNet(vdev);
    vdev.priv = vi;
    byDevice.set(vdev, vi);
    try {
      // DRIVER_OK before the netdev is visible: from registration on anyone may open it, which
      // posts buffers and kicks, and no notification may come before DRIVER_OK (virtio 1.2
      // 3.1.1; the kernel holds rtnl across both for the same reason).
      virtioDeviceReady(vdev);
      initLinkOf(vi);
      registerNetdev(vi);
    } catch (err) {
      // virtnet_probe's error path: nothing of the device may stay registered or allocated.
      unbind(vdev);
      throw err;
    }
  },
  remove: unbind,
  configChanged(vdev) {
    const vi = byDevice.get(vdev);
    if (vi) configChangedOf(vi);
  },
};

/** Mirrors module_virtio_driver(virtio_net_driver) init. */
export function registerVirtioNetDriver(): void {
  registerVirtioDriver(virtioNetDriver);
}

/** Mirrors the module exit. */
export function unregisterVirtioNetDriver(): void {
  unregisterVirtioDriver(virtioNetDriver);
}

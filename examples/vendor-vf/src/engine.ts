/**
 * The VF's engine: the logic behind its registers and its datapath. It runs in the VF's own
 * thread (vf-worker.ts) and is written against the BAR and link buffers only, so the register
 * tests can also run it in the test's thread.
 *
 * Registers: posted host writes are applied in order (`serviceMmio`); the engine keeps every
 * queue's state and shows the selected queue and feature halves in the BAR windows.
 * Datapath: each TX chain is copied into one RX chain (a loopback), reading the rings in host
 * memory directly, as a VF DMA-ing host memory does.
 */
import {
  hasFeature,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS,
  VIRTIO_NET_CONFIG_MTU,
  VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_S_LINK_UP,
  VIRTIO_RING_F_EVENT_IDX,
} from '@mdev/virtio';
import {
  type AddressSpace,
  createVringh,
  HOST_LITTLE_ENDIAN,
  joinAddr64,
  RingForward,
  type Translation,
  VRING_USED_IDX,
  type VringhLike,
  VringhPacked,
} from '@mdev/virtio-ring';
import { VF_FEATURES } from './features';
import { VfIommu, type VfIommuEntry } from './iommu';
import {
  LINK_FIFO,
  LINK_FIFO_ENTRIES,
  LINK_FIFO_HEAD,
  LINK_FIFO_TAIL,
  LINK_IRQ,
  LINK_IRQ_INTX,
  LINK_IRQ_PENDING,
  VF_BAR_SIZE,
  VF_COMMON_CFG,
  VF_DEVICE_CFG,
  VF_ISR,
  VF_MSIX_VECTORS,
  VF_NOTIFY,
  VF_NOTIFY_OFF_MULTIPLIER,
  VF_NUM_QUEUES,
  VF_QUEUE_STATE,
  VF_QUEUE_STATE_LAST_AVAIL,
  VF_QUEUE_STATE_LAST_USED,
  VF_QUEUE_STATE_STRIDE,
  VF_RX_QUEUE,
  VF_STAT_NAMES,
  VF_STATS,
  VF_STATS_COUNTERS,
  VF_TX_QUEUE,
  type VfShared,
  type VfStatName,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_COMMON_CFGGENERATION,
  VIRTIO_PCI_COMMON_DF,
  VIRTIO_PCI_COMMON_DFSELECT,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_MSIX,
  VIRTIO_PCI_COMMON_NUMQ,
  VIRTIO_PCI_COMMON_Q_AVAILHI,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCHI,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_MSIX,
  VIRTIO_PCI_COMMON_Q_NOFF,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDHI,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
  VIRTIO_PCI_ISR_CONFIG,
  VIRTIO_PCI_ISR_QUEUE,
} from './layout';

/** What a VF is made with (its "EEPROM"). */
export interface VfInit {
  /** The largest queue the VF takes: a power of two from 2 to 32768. */
  queueMax: number;
  /** The station address reported in the device configuration. */
  mac: Uint8Array;
  /** The MTU reported in the device configuration. */
  mtu: number;
  /** Frames the datapath moves per run before it looks at the registers again. */
  budget: number;
  /** Offer VIRTIO_F_RING_PACKED (virtio 1.2 2.8): a driver that takes it gets packed rings. */
  packed?: boolean;
}

/** One queue as the engine keeps it (queue_select picks which one the BAR window shows). */
class EngineQueue {
  size: number;
  msix = VIRTIO_MSI_NO_VECTOR;
  enabled = false;
  desc = [0, 0];
  avail = [0, 0];
  used = [0, 0];
  /**
   * last_avail_idx while the queue is disabled: written by the host, or saved when the queue
   * stopped; applied when it is enabled again.
   */
  lastAvail = 0;
  /**
   * The device side of the ring, split or packed; replaced when the IOMMU table changes (see
   * VfEngine.setMap) and when the queue is enabled in the other layout.
   */
  vrh: VringhLike;

  constructor(
    readonly max: number,
    space: AddressSpace,
  ) {
    this.size = max;
    this.vrh = createVringh(space);
  }

  reset(): void {
    this.size = this.max;
    this.msix = VIRTIO_MSI_NO_VECTOR;
    this.enabled = false;
    this.desc = [0, 0];
    this.avail = [0, 0];
    this.used = [0, 0];
    this.lastAvail = 0;
  }
}

/** A 64-bit area address from its two halves; NaN when it does not fit a JS number exactly. */
function addr64(halves: number[]): number {
  const addr = joinAddr64(halves[0]!, halves[1]!);
  return addr < 0 ? Number.NaN : addr;
}

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

const EBUSY = 16;

/** How long a TX frame may wait for a receive buffer before it is dropped (the FIFO, in time). */
export const RX_GRACE_MS = 5;

/** The VF's register logic and datapath. */
export class VfEngine {
  private readonly link: Int32Array;
  private readonly bar8: Uint8Array;
  private readonly bar16: Uint16Array;
  private readonly bar32: Uint32Array;
  /** Host memory as the VF reaches it without an IOMMU table. */
  private readonly hostSpace: AddressSpace;
  /** What the VF's DMA reads: the host memory, or the IOMMU table set by `setMap`. */
  private space: AddressSpace;
  private readonly t: Translation = { u8: new Uint8Array(0), offset: 0 };
  private readonly dv: DataView;
  private readonly queues: EngineQueue[];
  private readonly init: VfInit;
  /** The features the VF offers: VF_FEATURES, with VIRTIO_F_RING_PACKED when made `packed`. */
  private readonly features: bigint;
  /** Counters, published to the BAR's statistics area by `publish`. */
  readonly stats: Record<VfStatName, number>;
  private tail: number;
  private dfSelect = 0;
  private gfSelect = 0;
  private driverFeatures = 0n;
  private status = 0;
  private generation = 0;
  private msixConfig = VIRTIO_MSI_NO_VECTOR;
  private qSelect = 0;
  private linkUp = true;
  private raised = false;
  private readonly fwd = new RingForward();

  constructor(shared: VfShared, space: AddressSpace, init: VfInit) {
    if (!isPow2(init.queueMax) || init.queueMax < 2 || init.queueMax > 32768) {
      throw new RangeError(`vendor_vf: queue size ${init.queueMax} is not a power of two 2-32768`);
    }
    // The BAR is little-endian and the engine uses typed-array views of it.
    if (!HOST_LITTLE_ENDIAN)
      throw new RangeError('vendor_vf: the VF model needs a little-endian host');
    this.init = init;
    this.features = init.packed ? VF_FEATURES | (1n << BigInt(VIRTIO_F_RING_PACKED)) : VF_FEATURES;
    this.link = new Int32Array(shared.link);
    this.bar8 = new Uint8Array(shared.bar);
    this.bar16 = new Uint16Array(shared.bar);
    this.bar32 = new Uint32Array(shared.bar);
    this.hostSpace = this.space = space;
    this.dv = new DataView(shared.bar);
    this.tail = Atomics.load(this.link, LINK_FIFO_TAIL);
    this.queues = Array.from(
      { length: VF_NUM_QUEUES },
      () => new EngineQueue(init.queueMax, space),
    );
    this.stats = Object.fromEntries(VF_STAT_NAMES.map((n) => [n, 0])) as Record<VfStatName, number>;
    // The header is copied as the driver wrote it, except num_buffers: virtio 1.2 5.1.6.4.1 has
    // the device set it (1: one buffer a frame); a driver's TX header carries 0 there.
    this.fwd.numBuffersAt = VIRTIO_NET_HDR_NUM_BUFFERS;
    this.powerOn();
  }

  // ---- registers -------------------------------------------------------------------------

  /** The power-on state of the BAR: every register at its reset value, the device config set. */
  private powerOn(): void {
    this.bar8.fill(0, 0, VF_BAR_SIZE);
    this.common16(VIRTIO_PCI_COMMON_NUMQ, VF_NUM_QUEUES);
    this.bar8.set(this.init.mac, VF_DEVICE_CFG + VIRTIO_NET_CONFIG_MAC);
    this.dv.setUint16(VF_DEVICE_CFG + VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS, 1, true);
    this.dv.setUint16(VF_DEVICE_CFG + VIRTIO_NET_CONFIG_MTU, this.init.mtu, true);
    this.showLink();
    this.reset();
  }

  private common16(off: number, v: number): void {
    this.dv.setUint16(VF_COMMON_CFG + off, v, true);
  }
  private common32(off: number, v: number): void {
    this.dv.setUint32(VF_COMMON_CFG + off, v >>> 0, true);
  }

  /**
   * Device reset (virtio 1.2, 2.4): queues, features, vectors and status back to their reset
   * values. The datapath does not run again until the driver sets DRIVER_OK, so once a host
   * read has seen this write applied, the engine no longer touches the old rings.
   */
  private reset(): void {
    for (const q of this.queues) q.reset();
    this.dfSelect = this.gfSelect = 0;
    this.driverFeatures = 0n;
    this.msixConfig = VIRTIO_MSI_NO_VECTOR;
    this.qSelect = 0;
    this.status = 0;
    this.starvedSince = 0;
    // Interrupts raised before the reset are withdrawn.
    Atomics.store(this.bar8, VF_ISR, 0);
    Atomics.store(this.link, LINK_IRQ_PENDING, 0);
    this.raised = false;
    this.common32(VIRTIO_PCI_COMMON_DFSELECT, 0);
    this.common32(VIRTIO_PCI_COMMON_GFSELECT, 0);
    this.common16(VIRTIO_PCI_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
    this.showFeatures();
    this.showStatus();
    this.showQueue();
    for (let q = 0; q < VF_NUM_QUEUES; q++) this.showQueueState(q);
  }

  private showFeatures(): void {
    const half = (f: bigint, sel: number) =>
      sel > 1 ? 0 : Number((f >> BigInt(32 * sel)) & 0xffffffffn);
    this.common32(VIRTIO_PCI_COMMON_DF, half(this.features, this.dfSelect));
    this.common32(VIRTIO_PCI_COMMON_GF, half(this.driverFeatures, this.gfSelect));
  }

  private showStatus(): void {
    // Atomic stores: the engine also changes these on its own (NEEDS_RESET, a link change), and
    // the host may be reading them with no write of its own to flush.
    Atomics.store(this.bar8, VF_COMMON_CFG + VIRTIO_PCI_COMMON_CFGGENERATION, this.generation);
    Atomics.store(this.bar8, VF_COMMON_CFG + VIRTIO_PCI_COMMON_STATUS, this.status);
  }

  /** Shows the selected queue's fields; a queue that does not exist reads size 0 (4.1.4.3.2). */
  private showQueue(): void {
    const q = this.queues[this.qSelect];
    this.common16(VIRTIO_PCI_COMMON_Q_SELECT, this.qSelect);
    this.common16(VIRTIO_PCI_COMMON_Q_SIZE, q ? q.size : 0);
    this.common16(VIRTIO_PCI_COMMON_Q_MSIX, q ? q.msix : VIRTIO_MSI_NO_VECTOR);
    this.common16(VIRTIO_PCI_COMMON_Q_ENABLE, q?.enabled ? 1 : 0);
    this.common16(VIRTIO_PCI_COMMON_Q_NOFF, q ? this.qSelect : 0);
    this.common32(VIRTIO_PCI_COMMON_Q_DESCLO, q ? q.desc[0]! : 0);
    this.common32(VIRTIO_PCI_COMMON_Q_DESCHI, q ? q.desc[1]! : 0);
    this.common32(VIRTIO_PCI_COMMON_Q_AVAILLO, q ? q.avail[0]! : 0);
    this.common32(VIRTIO_PCI_COMMON_Q_AVAILHI, q ? q.avail[1]! : 0);
    this.common32(VIRTIO_PCI_COMMON_Q_USEDLO, q ? q.used[0]! : 0);
    this.common32(VIRTIO_PCI_COMMON_Q_USEDHI, q ? q.used[1]! : 0);
  }

  private showQueueState(idx: number): void {
    const q = this.queues[idx]!;
    const base = VF_QUEUE_STATE + idx * VF_QUEUE_STATE_STRIDE;
    const state = q.enabled ? q.vrh.getLastAvailIdx() : q.lastAvail;
    // A packed ring's state has the used half (index and wrap counter) in its high 16 bits.
    const packed = q.vrh instanceof VringhPacked;
    const lastAvail = state & 0xffff;
    // last_used_idx is the used index the VF last published in the ring.
    let lastUsed = packed && q.enabled ? state >>> 16 : 0;
    if (!packed && q.enabled && this.space.translate(addr64(q.used) + VRING_USED_IDX, 2, this.t)) {
      lastUsed = this.t.u8[this.t.offset]! | (this.t.u8[this.t.offset + 1]! << 8);
    }
    Atomics.store(this.bar16, (base + VF_QUEUE_STATE_LAST_AVAIL) >> 1, lastAvail);
    Atomics.store(this.bar16, (base + VF_QUEUE_STATE_LAST_USED) >> 1, lastUsed);
  }

  private showLink(): void {
    const status = this.linkUp ? VIRTIO_NET_S_LINK_UP : 0;
    Atomics.store(this.bar16, (VF_DEVICE_CFG + VIRTIO_NET_CONFIG_STATUS) >> 1, status);
  }

  /**
   * Applies the host's posted writes, in order. Returns how many were applied. Each write is
   * acknowledged (the FIFO tail moves and is notified) once its effect is in the BAR.
   */
  serviceMmio(): number {
    const link = this.link;
    // Acquire: the entries below were written before the head that published them.
    const head = Atomics.load(link, LINK_FIFO_HEAD);
    let n = 0;
    while (this.tail !== head) {
      // The counters are int32 and wrap past 2^31: a mask (the FIFO is a power of two long)
      // keeps the slot in range where `%` would go negative.
      const slot = LINK_FIFO + (this.tail & (LINK_FIFO_ENTRIES - 1)) * 2;
      const word = link[slot]!;
      this.write(word & 0xffff, word >>> 16, link[slot + 1]! >>> 0);
      this.tail = (this.tail + 1) | 0;
      n++;
    }
    if (n > 0) {
      // Every effect above (BAR bytes, engine state) is published before the tail (release).
      Atomics.store(link, LINK_FIFO_TAIL, this.tail);
      Atomics.notify(link, LINK_FIFO_TAIL);
    }
    return n;
  }

  /** One host write of `width` bytes at BAR offset `off`. Writes to read-only fields are dropped. */
  private write(off: number, width: number, v: number): void {
    if (off < VF_COMMON_CFG + 64) {
      this.writeCommon(off - VF_COMMON_CFG, width, v);
    } else if (off >= VF_NOTIFY && off < VF_NOTIFY + VF_NUM_QUEUES * VF_NOTIFY_OFF_MULTIPLIER) {
      // A doorbell: the driver writes the queue's index at its notify address (4.1.4.4).
      const q = (off - VF_NOTIFY) / VF_NOTIFY_OFF_MULTIPLIER;
      if (width === 2 && v === q) this.stats.kicks++;
    } else if (
      off >= VF_QUEUE_STATE &&
      off < VF_QUEUE_STATE + VF_NUM_QUEUES * VF_QUEUE_STATE_STRIDE &&
      width === 2 &&
      (off - VF_QUEUE_STATE) % VF_QUEUE_STATE_STRIDE === VF_QUEUE_STATE_LAST_AVAIL
    ) {
      const idx = (off - VF_QUEUE_STATE) / VF_QUEUE_STATE_STRIDE;
      const q = this.queues[idx]!;
      // The state of a running ring belongs to the datapath; it is set before enabling.
      if (!q.enabled) q.lastAvail = v;
      this.showQueueState(idx);
    }
    // The ISR, device configuration (no writable virtio-net field is offered), statistics and
    // anything else: read-only.
  }

  private writeCommon(off: number, width: number, v: number): void {
    const q = this.queues[this.qSelect];
    switch (off) {
      case VIRTIO_PCI_COMMON_DFSELECT:
        if (width !== 4) return;
        this.dfSelect = v;
        this.common32(off, v);
        this.showFeatures();
        return;
      case VIRTIO_PCI_COMMON_GFSELECT:
        if (width !== 4) return;
        this.gfSelect = v;
        this.common32(off, v);
        this.showFeatures();
        return;
      case VIRTIO_PCI_COMMON_GF: {
        // Features are negotiated before FEATURES_OK; later writes are ignored (3.1.1).
        if (width !== 4 || this.gfSelect > 1 || this.status & VIRTIO_CONFIG_S_FEATURES_OK) return;
        const shift = BigInt(32 * this.gfSelect);
        const mask = 0xffffffffn << shift;
        this.driverFeatures = (this.driverFeatures & ~mask) | (BigInt(v) << shift);
        this.showFeatures();
        return;
      }
      case VIRTIO_PCI_COMMON_MSIX:
        if (width !== 2) return;
        // A vector the VF does not have reads back as NO_VECTOR (4.1.5.1.2.1).
        this.msixConfig = v < VF_MSIX_VECTORS ? v : VIRTIO_MSI_NO_VECTOR;
        this.common16(off, this.msixConfig);
        return;
      case VIRTIO_PCI_COMMON_STATUS:
        if (width === 1) this.writeStatus(v);
        return;
      case VIRTIO_PCI_COMMON_Q_SELECT:
        if (width !== 2) return;
        this.qSelect = v;
        this.showQueue();
        return;
      case VIRTIO_PCI_COMMON_Q_ENABLE:
        if (width !== 2 || !q) return;
        if (v === 1 && !q.enabled) this.enableQueue(this.qSelect);
        else if (v === 0 && q.enabled) {
          // Writing 0 is not allowed by virtio 1.2 (4.1.4.3.2); the VF stops the queue anyway,
          // and keeps where the ring stood, so the state reads right and a later enable resumes
          // there instead of taking the chains it already used again.
          q.lastAvail = q.vrh.getLastAvailIdx();
          q.enabled = false;
        }
        this.showQueue();
        this.showQueueState(this.qSelect);
        return;
      case VIRTIO_PCI_COMMON_Q_MSIX:
        if (width !== 2 || !q) return;
        // A vector the VF does not have, or any vector for a running queue (its fields change
        // only while it is disabled, 4.1.4.3.2), is a mapping that failed: the queue's event is
        // left unmapped, and the read shows it as NO_VECTOR (4.1.5.1.2.1), which is also how
        // the VF then signals it (INTx and the ISR byte).
        q.msix = v < VF_MSIX_VECTORS && !q.enabled ? v : VIRTIO_MSI_NO_VECTOR;
        this.showQueue();
        return;
    }
    // The queue fields below may only change while the queue is disabled (4.1.4.3.2).
    if (!q || q.enabled) return;
    switch (off) {
      case VIRTIO_PCI_COMMON_Q_SIZE:
        // "queue_size ... a power of 2" no larger than the size the device offered (4.1.4.3):
        // any other value is ignored, so the driver's read-back shows the refusal. A packed
        // ring may have any size up to it (2.8).
        if (width === 2 && (isPow2(v) || this.packed()) && v > 0 && v <= q.max) q.size = v;
        break;
      case VIRTIO_PCI_COMMON_Q_DESCLO:
      case VIRTIO_PCI_COMMON_Q_DESCHI:
        if (width === 4) q.desc[(off - VIRTIO_PCI_COMMON_Q_DESCLO) / 4] = v;
        break;
      case VIRTIO_PCI_COMMON_Q_AVAILLO:
      case VIRTIO_PCI_COMMON_Q_AVAILHI:
        if (width === 4) q.avail[(off - VIRTIO_PCI_COMMON_Q_AVAILLO) / 4] = v;
        break;
      case VIRTIO_PCI_COMMON_Q_USEDLO:
      case VIRTIO_PCI_COMMON_Q_USEDHI:
        if (width === 4) q.used[(off - VIRTIO_PCI_COMMON_Q_USEDLO) / 4] = v;
        break;
    }
    this.showQueue();
  }

  private writeStatus(v: number): void {
    if (v === 0) {
      this.reset();
      return;
    }
    // The driver sets bits and never clears one (2.1.2): a write adds to the status, and only 0
    // (a reset) takes bits away. NEEDS_RESET is the device's to set.
    let status = (v | this.status) & ~VIRTIO_CONFIG_S_NEEDS_RESET;
    if (status & VIRTIO_CONFIG_S_FEATURES_OK && !(this.status & VIRTIO_CONFIG_S_FEATURES_OK)) {
      // FEATURES_OK is kept only for a feature set the VF can work with (3.1.1 step 6): a subset
      // of its own, VERSION_1, and ACCESS_PLATFORM (the VF reaches memory through the IOMMU).
      const f = this.driverFeatures;
      const ok =
        (f & ~this.features) === 0n &&
        hasFeature(f, VIRTIO_F_VERSION_1) &&
        hasFeature(f, VIRTIO_F_ACCESS_PLATFORM);
      if (!ok) status &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    }
    // DRIVER_OK comes after FEATURES_OK (3.1.1 steps 5-8): without accepted features the device
    // is unusable, so DRIVER_OK is refused the same way (it reads back clear) and the datapath,
    // which runs on DRIVER_OK, never moves a frame under features it did not accept.
    if (!(status & VIRTIO_CONFIG_S_FEATURES_OK)) status &= ~VIRTIO_CONFIG_S_DRIVER_OK;
    this.status = status | (this.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    this.showStatus();
  }

  private enableQueue(idx: number): void {
    const q = this.queues[idx]!;
    const desc = addr64(q.desc);
    const avail = addr64(q.avail);
    const used = addr64(q.used);
    // q.size is valid: queue_size takes only powers of two up to the maximum (any size, packed).
    const packed = this.packed();
    if (q.vrh instanceof VringhPacked !== packed) q.vrh = createVringh(this.space, packed);
    const ok =
      !Number.isNaN(desc + avail + used) &&
      q.vrh.init({
        num: q.size,
        descAddr: desc,
        availAddr: avail,
        usedAddr: used,
        eventIdx: hasFeature(this.driverFeatures, VIRTIO_RING_F_EVENT_IDX),
      }) === 0;
    if (!ok) {
      // Rings the VF cannot reach: the queue stays disabled and the device needs a reset.
      this.deviceError(`queue ${idx} cannot be enabled (rings out of reach)`);
      return;
    }
    // A packed ring nothing was set for starts at index 0 of lap 1 (its wrap counters set).
    q.vrh.restoreState(packed && q.lastAvail === 0 ? 0x8000 : q.lastAvail);
    q.enabled = true;
  }

  /** Whether the driver accepted VIRTIO_F_RING_PACKED. */
  private packed(): boolean {
    return hasFeature(this.driverFeatures, VIRTIO_F_RING_PACKED);
  }

  /** A link change seen by the VF's PHY: the config changes, its generation moves on (4.1.4.3.1). */
  setLink(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    this.generation = (this.generation + 1) & 0xff;
    this.showLink();
    this.showStatus();
    this.raiseConfig();
  }

  /** DEVICE_NEEDS_RESET (2.1.2): the datapath stops and the driver is told by a config interrupt. */
  private deviceError(reason: string): void {
    this.stats.ring_errors++;
    if (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    // Reported once per reset cycle; the counter keeps the rest.
    process.emitWarning(`vendor_vf: ${reason}; the device needs a reset`);
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    this.showStatus();
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) this.raiseConfig();
  }

  /**
   * Puts the IOMMU table `entries` in front of the VF's DMA (null: back to host memory), as the
   * platform does for a driver outside the host: rings enabled from now on, and their buffers,
   * are read at IOVAs of the table. Refused (-EBUSY) while a queue is enabled: its areas were
   * translated when it was enabled, and would stay on the old memory. Returns 0 or -EBUSY.
   */
  setMap(entries: readonly VfIommuEntry[] | null): number {
    if (this.queues.some((q) => q.enabled)) return -EBUSY;
    this.space = entries === null ? this.hostSpace : new VfIommu(entries);
    // A disabled queue keeps its place in lastAvail, which the next enable restores.
    for (const q of this.queues) q.vrh = createVringh(this.space, q.vrh instanceof VringhPacked);
    return 0;
  }

  // ---- interrupts ------------------------------------------------------------------------

  private raise(vector: number, isr: number): void {
    if (vector === VIRTIO_MSI_NO_VECTOR) {
      Atomics.or(this.bar8, VF_ISR, isr);
      Atomics.or(this.link, LINK_IRQ_PENDING, LINK_IRQ_INTX);
    } else {
      Atomics.or(this.link, LINK_IRQ_PENDING, 1 << vector);
    }
    this.stats.interrupts++;
    this.raised = true;
  }

  private raiseConfig(): void {
    this.raise(this.msixConfig, VIRTIO_PCI_ISR_CONFIG);
  }

  /** Sends the interrupt message for whatever was raised since the last call. */
  flushInterrupts(): void {
    if (!this.raised) return;
    this.raised = false;
    // Every ring and pending-bit store above is visible to whoever sees the new count.
    Atomics.add(this.link, LINK_IRQ, 1);
    Atomics.notify(this.link, LINK_IRQ);
  }

  // ---- datapath --------------------------------------------------------------------------

  /** When TX started waiting for a receive buffer (0 = not waiting). */
  private starvedSince = 0;

  /**
   * Moves frames from TX to RX, each into one receive buffer, with @mdev/virtio-ring's forward
   * step: at most `budget` looks at the TX ring (`RingForward` says what counts; a driver that
   * moves avail->idx back and forth must not keep the VF in here, away from its registers).
   * 'more' when the budget ran out, 'idle' when the TX ring is empty or the device is not running.
   * Only between DRIVER_OK and a reset or DEVICE_NEEDS_RESET (3.1.1: no buffers are used before
   * DRIVER_OK).
   */
  run(budget = this.init.budget): 'idle' | 'more' | 'starved' {
    const rx = this.queues[VF_RX_QUEUE]!;
    const tx = this.queues[VF_TX_QUEUE]!;
    if (
      (this.status & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET)) !==
        VIRTIO_CONFIG_S_DRIVER_OK ||
      !rx.enabled ||
      !tx.enabled
    ) {
      return 'idle';
    }
    const { fwd, stats } = this;
    // The VF's receive FIFO: a frame that finds no receive buffer waits for the driver to post
    // one (it is on another thread and may be a moment late) and is dropped only after
    // RX_GRACE_MS, as a NIC drops when its FIFO overflows.
    const hold = this.starvedSince === 0 || performance.now() - this.starvedSince < RX_GRACE_MS;
    const result = fwd.run(tx.vrh, rx.vrh, budget, hold);
    stats.tx_packets += fwd.txChains;
    stats.tx_bytes += fwd.txBytes;
    // No receive buffer: the frame is dropped on the wire, the TX buffer still comes back.
    stats.tx_dropped += fwd.noRxBuffer;
    // Too large for the receive buffer: cut short, it would look like a real shorter frame.
    stats.rx_truncated += fwd.oversize;
    stats.rx_packets += fwd.rxFrames;
    stats.rx_bytes += fwd.rxBytes;
    if (result === 'broken') {
      this.deviceError(`${fwd.brokenRing.toUpperCase()} ring fault (errno ${fwd.error})`);
    }
    if (fwd.txNotify) this.raise(tx.msix, VIRTIO_PCI_ISR_QUEUE);
    if (fwd.rxNotify) this.raise(rx.msix, VIRTIO_PCI_ISR_QUEUE);
    if (result === 'starved') {
      if (this.starvedSince === 0) this.starvedSince = performance.now();
      return 'starved';
    }
    this.starvedSince = 0;
    return result === 'more' ? 'more' : 'idle';
  }

  /** Copies the counters and queue state into the BAR's vendor areas. */
  publish(): void {
    const seq = VF_STATS >> 2;
    // Odd while the counters change; the seq-cst stores keep the counters between the two bumps.
    Atomics.add(this.bar32, seq, 1);
    for (let i = 0; i < VF_STAT_NAMES.length; i++) {
      const v = this.stats[VF_STAT_NAMES[i]!];
      const word = (VF_STATS_COUNTERS >> 2) + i * 2;
      Atomics.store(this.bar32, word, v % 2 ** 32);
      Atomics.store(this.bar32, word + 1, Math.floor(v / 2 ** 32));
    }
    Atomics.add(this.bar32, seq, 1);
    for (let q = 0; q < VF_NUM_QUEUES; q++) this.showQueueState(q);
  }
}

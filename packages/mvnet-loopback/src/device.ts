import { type AttributeGroup, Class, Device, KernelError, Workqueue } from '@mdev/driver-core';
import { type MdevDevice, mdevGetDrvdata, mdevSetDrvdata } from '@mdev/mdev-core';
import {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  type MdevVirtioMapEntry,
  type MdevVirtioOps,
  mdevVirtioFromDev,
  mdevVirtioRegisterDevice,
  mdevVirtioSetClassId,
  mdevVirtioSetOps,
  mdevVirtioUnregisterDevice,
  type VirtioMdevCallback,
} from '@mdev/mdev-virtio';
import {
  hasFeature,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_HDR_MRG_RXBUF_SIZE,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_RING_F_EVENT_IDX,
} from '@mdev/virtio';
import { type DmaMapOps, type GuestMemory, initialVqState } from '@mdev/virtio-ring';
import {
  buildConfig,
  MVNET_DEFAULT_MTU,
  MVNET_DEVICE_ID,
  MVNET_FEATURES,
  MVNET_NUM_QUEUES,
  MVNET_QUEUE_ALIGN,
  MVNET_QUEUE_MAX,
  MVNET_VENDOR_ID,
  randomMac,
  VIRTIO_MDEV_DEVICE_API_STRING,
} from './config';
import { MvnetQueue, type MvnetStats, type NetHdrLayout } from './datapath';
import { InThreadHost, type MvnetHost } from './host';
import { MvnetOffload } from './offload';

/** MVNET_CLASS_NAME / MVNET_NAME. */
export const MVNET_NAME = 'mvnet_loopback';

/** Frames the datapath handles per work run before it requeues itself. */
export const MVNET_BUDGET = 256;

/** Options of `mvnetLoopbackInit`. */
export interface MvnetOptions {
  /** The host memory the driver's rings and buffers live in; the datapath reads it directly. */
  memory: GuestMemory;
  /**
   * The DMA ops mvnet installs on each mdev: the identity mapping over that memory (the sample's
   * "HVA as IOVA"), so ring and buffer addresses are host addresses.
   */
  dma: DmaMapOps;
  /** How many instances may exist at once (available_instances); default 64. */
  maxInstances?: number;
  /** Frames per work run, an integer >= 1; default MVNET_BUDGET. */
  budget?: number;
  /**
   * The largest queue the device takes (get_vq_num_max): a power of two from 2 to 32768;
   * default MVNET_QUEUE_MAX (256).
   */
  queueSize?: number;
  /**
   * Worker mode: the datapath of every instance runs in a worker thread over the shared host
   * memory (which must be SharedArrayBuffer regions), as a card's hardware would.
   */
  offload?: boolean;
  /**
   * Offer VIRTIO_F_RING_PACKED: a driver that accepts it gets packed rings (virtio 1.2 2.8).
   * Default false (split rings only).
   */
  packed?: boolean;
}

/**
 * The device attributes an instance is created with, as `vdpa dev add ... mac M mtu N` passes
 * them to a management device's dev_add (struct vdpa_dev_set_config, drivers/vdpa/vdpa.c).
 */
export interface MvnetProvision {
  /** The MAC address of the config space: 6 bytes, unicast. Default: a random one. */
  mac?: Uint8Array;
  /** The MTU of the config space, 68 to 65535. Default MVNET_DEFAULT_MTU. */
  mtu?: number;
}

/** The state of one mvnet instance (struct mvnet_state). */
export class MvnetState {
  readonly mdev: MdevDevice;
  readonly vqs: MvnetQueue[];
  /** The instance's row in the parent's table, by which its datapath host knows it. */
  readonly slot: number;
  /** The instance's counters; they stay as they were once the instance is removed. */
  readonly stats: MvnetStats;
  status = 0;
  generation = 0;
  features = 0n;
  config: Uint8Array;
  configCb: VirtioMdevCallback | null = null;
  /** The DMA map set by set_map (the queues read through it while one is set), or null. */
  map: readonly MdevVirtioMapEntry[] | null = null;

  constructor(
    mdev: MdevDevice,
    private readonly owner: MvnetLoopback,
    slot: number,
    provisioned: MvnetProvision = {},
  ) {
    this.mdev = mdev;
    this.slot = slot;
    // Without a map the queues read the host memory directly (see MvnetQueue.readThrough).
    this.vqs = Array.from({ length: MVNET_NUM_QUEUES }, () => new MvnetQueue(owner.options.memory));
    this.config = buildConfig(
      provisioned.mac ?? randomMac(),
      true,
      provisioned.mtu ?? MVNET_DEFAULT_MTU,
    );
    this.stats = owner.host.attach(slot, this.vqs, () => this.needsReset());
  }

  /** A ring fault: set DEVICE_NEEDS_RESET and tell the driver through a config interrupt (2.1.2). */
  needsReset(): void {
    if (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) return;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    for (const vq of this.vqs) vq.ready = false;
    this.configCb?.callback(this.configCb.private);
  }

  /** mvnet_reset: queues, features and status go back to zero; the generation moves on. */
  reset(): void {
    // Every queue of the slot, whatever this thread believes ready (a worker may have stopped
    // them for a fault not yet delivered), and that fault with them. Once this returns the
    // datapath no longer touches the rings.
    this.owner.host.reset(this.slot);
    for (const vq of this.vqs) vq.reset();
    this.features = 0n;
    this.status = 0;
    this.generation++;
  }

  /** Sets the link state reported in the config space and signals a config change. */
  setLink(up: boolean): void {
    const dv = new DataView(this.config.buffer);
    dv.setUint16(6, up ? 1 : 0, true);
    this.generation++;
    this.configCb?.callback(this.configCb.private);
  }
}

function state(mdev: MdevDevice): MvnetState {
  const s = mdevGetDrvdata<MvnetState | null>(mdev);
  if (!s) throw new KernelError('ENODEV', `mvnet: ${mdev.uuid} has no state`);
  return s;
}

function queue(mdev: MdevDevice, idx: number): MvnetQueue {
  const vq = state(mdev).vqs[idx];
  if (!vq) throw new KernelError('EINVAL', `mvnet: no queue ${idx}`);
  return vq;
}

/** Where the virtio-net header's fields are for a feature set (virtio 1.2 5.1.6). */
function netHdrLayout(features: bigint): NetHdrLayout {
  // VERSION_1 always uses the 12-byte header with num_buffers; a legacy driver uses it only with
  // MRG_RXBUF, which mvnet does not offer.
  return hasFeature(features, VIRTIO_F_VERSION_1)
    ? { size: VIRTIO_NET_HDR_MRG_RXBUF_SIZE, numBuffers: VIRTIO_NET_HDR_NUM_BUFFERS }
    : { size: VIRTIO_NET_HDR_SIZE, numBuffers: -1 };
}

/**
 * The ops table of every mvnet mdev (mdev_virtio_ops in the sample, with its defects fixed),
 * the same in both modes: the datapath is reached through the parent's `MvnetHost`.
 */
function makeOps(owner: MvnetLoopback): MdevVirtioOps {
  const host = owner.host;
  return {
    setVqAddress(mdev, idx, desc, driver, device) {
      const vq = queue(mdev, idx);
      vq.descAddr = desc;
      vq.driverAddr = driver;
      vq.deviceAddr = device;
    },
    setVqNum(mdev, idx, num) {
      queue(mdev, idx).num = num;
    },
    kickVq(mdev, idx) {
      const s = state(mdev);
      if (!s.vqs[idx]?.ready) return;
      host.kick(s.slot);
    },
    setVqCb(mdev, idx, cb) {
      const vq = queue(mdev, idx);
      vq.cb = cb ? cb.callback : null;
      vq.cbPrivate = cb ? cb.private : null;
    },
    setVqReady(mdev, idx, ready) {
      const s = state(mdev);
      const vq = queue(mdev, idx);
      if (!ready) {
        if (vq.ready) host.unready(s.slot, idx);
        vq.ready = false;
        return;
      }
      // The sample always used 256; this device uses the size the driver set (set_vq_num), up
      // to its maximum.
      const num = vq.num || owner.queueSize;
      if (num > owner.queueSize) {
        vq.ready = false;
        return;
      }
      const packed = hasFeature(s.features, VIRTIO_F_RING_PACKED);
      const config = {
        num,
        descAddr: vq.descAddr,
        availAddr: vq.driverAddr,
        usedAddr: vq.deviceAddr,
        eventIdx: hasFeature(s.features, VIRTIO_RING_F_EVENT_IDX),
        packed,
        inOrder: hasFeature(s.features, VIRTIO_F_IN_ORDER),
      };
      // Vringh.init zeroes the ring indices: a state set while the queue was down comes after it.
      const lastAvail = vq.pendingState ?? initialVqState(packed);
      const err = host.ready(s.slot, idx, config, lastAvail, netHdrLayout(s.features));
      vq.ready = err === 0;
      if (vq.ready) vq.pendingState = null;
    },
    getVqReady(mdev, idx) {
      return queue(mdev, idx).ready;
    },
    setVqState(mdev, idx, st) {
      const vq = queue(mdev, idx);
      // Not ready: kept for the next ready, whose init would zero it in the ring tracker.
      // A packed ring's state has both halves, 32 bits (see VringhPacked.getLastAvailIdx).
      const packed = hasFeature(state(mdev).features, VIRTIO_F_RING_PACKED);
      if (!vq.ready) vq.pendingState = packed ? st >>> 0 : st & 0xffff;
      else host.setState(state(mdev).slot, idx, st);
    },
    getVqState(mdev, idx) {
      const vq = queue(mdev, idx);
      if (!vq.ready && vq.pendingState !== null) return vq.pendingState;
      return host.getState(state(mdev).slot, idx);
    },
    getVqAlign() {
      return MVNET_QUEUE_ALIGN;
    },
    getFeatures() {
      return owner.features;
    },
    setFeatures(mdev, features) {
      // "DMA mapping must be done by driver": the rings must use mvnet's DMA ops.
      if (!hasFeature(features, VIRTIO_F_ACCESS_PLATFORM)) {
        throw new KernelError('EINVAL', 'mvnet: VIRTIO_F_ACCESS_PLATFORM is required');
      }
      state(mdev).features = features & owner.features;
    },
    setConfigCb(mdev, cb) {
      state(mdev).configCb = cb;
    },
    getVqNumMax() {
      return owner.queueSize;
    },
    getDeviceId() {
      return MVNET_DEVICE_ID;
    },
    getVendorId() {
      return MVNET_VENDOR_ID;
    },
    getStatus(mdev) {
      return state(mdev).status;
    },
    setStatus(mdev, status) {
      const s = state(mdev);
      // device_status is a byte (virtio 1.2 2.1; set_status takes a u8). A wider value or a
      // fraction is no status a driver can write, so it changes nothing: taken as is, 2^32
      // would read back 0 (`|` wraps it to 32 bits) with the queues still live.
      if (!Number.isInteger(status) || status < 0 || status > 0xff) return;
      if (status === 0) s.reset();
      // DEVICE_NEEDS_RESET is the device's, and only a reset clears it: a driver writing back a
      // status it read before the fault must not hide the fault (virtio 1.2 2.1.1 forbids the
      // driver to clear a status bit; 2.1.2 keeps the device in error until the reset).
      else s.status = status | (s.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    },
    getConfig(mdev, offset, buf) {
      // Bytes [offset, offset + len) of the config space; the sample's pointer arithmetic fixed.
      const cfg = state(mdev).config;
      buf.fill(0);
      if (offset < cfg.length)
        buf.set(cfg.subarray(offset, Math.min(cfg.length, offset + buf.length)));
    },
    setConfig() {
      // No writable config field in virtio-net without VIRTIO_NET_F_CTRL_MAC_ADDR.
    },
    getGeneration(mdev) {
      return state(mdev).generation;
    },
    setMap(mdev, map) {
      const s = state(mdev);
      // A ready queue's areas were translated when it was enabled; a new map would leave it on
      // the old memory. The driver stops its queues (or resets) first, as vhost_vdpa requires of
      // a running device.
      if (s.vqs.some((vq) => vq.ready)) {
        throw new KernelError('EBUSY', `mvnet: ${mdev.uuid} has ready queues`);
      }
      host.setMap(s.slot, map);
      s.map = map;
    },
  };
}

/**
 * The mvnet_loopback parent: a class and device `mvnet_loopback` registered on the mediated
 * virtio bus with one type, `mvnet_loopback-virtio`. Each mdev is a virtio-net device whose
 * datapath loops TX frames back to RX on a workqueue.
 */
export class MvnetLoopback {
  readonly options: MvnetOptions;
  readonly cls: Class;
  readonly parent: Device;
  readonly wq = new Workqueue('mvnet');
  readonly budget: number;
  readonly maxInstances: number;
  readonly queueSize: number;
  /** The features offered: MVNET_FEATURES, with VIRTIO_F_RING_PACKED when `options.packed`. */
  readonly features: bigint;
  readonly instances = new Set<MvnetState>();
  /** Where the datapath of every instance runs: `offload` in worker mode, else on `wq`. */
  readonly host: MvnetHost;
  /** The datapath worker (worker mode), or null when the datapath runs on a workqueue. */
  readonly offload: MvnetOffload | null;
  private readonly bySlot: (MvnetState | null)[];
  /** Attributes for the next creation of an mdev, by UUID (see `provision`). */
  private readonly provisions = new Map<string, MvnetProvision>();
  private readonly ops: MdevVirtioOps;

  constructor(options: MvnetOptions) {
    this.options = options;
    this.budget = options.budget ?? MVNET_BUDGET;
    this.maxInstances = options.maxInstances ?? 64;
    this.queueSize = options.queueSize ?? MVNET_QUEUE_MAX;
    this.features = options.packed
      ? MVNET_FEATURES | (1n << BigInt(VIRTIO_F_RING_PACKED))
      : MVNET_FEATURES;
    // A budget of 0 would requeue the work forever without moving a frame.
    if (!Number.isInteger(this.budget) || this.budget < 1) {
      throw new RangeError(`mvnet: budget ${options.budget} must be a positive integer`);
    }
    if (
      !Number.isInteger(this.queueSize) ||
      this.queueSize < 2 ||
      this.queueSize > 32768 ||
      (this.queueSize & (this.queueSize - 1)) !== 0
    ) {
      throw new RangeError(
        `mvnet: queue size ${options.queueSize} is not a power of two from 2 to 32768`,
      );
    }
    if (!Number.isInteger(this.maxInstances) || this.maxInstances < 1) {
      throw new RangeError(
        `mvnet: maxInstances ${options.maxInstances} must be a positive integer`,
      );
    }
    this.bySlot = new Array(this.maxInstances).fill(null);
    this.offload = options.offload
      ? new MvnetOffload(options.memory, this.maxInstances, this.budget)
      : null;
    this.host = this.offload ?? new InThreadHost(this.wq, this.budget, options.memory);
    this.ops = makeOps(this);
    this.cls = new Class(MVNET_NAME);
    this.cls.register();
    this.parent = new Device({ name: MVNET_NAME, class: this.cls });
    try {
      this.parent.add();
      mdevVirtioRegisterDevice(this.parent, {
        devAttrGroups: [
          {
            name: 'mvnet_dev',
            attrs: [
              {
                name: 'sample_mvnet_dev',
                mode: 0o444,
                show: () =>
                  mdevVirtioFromDev(this.parent) ? `This is MDEV ${this.parent.name}` : '',
              },
            ],
          },
        ],
        mdevAttrGroups: [],
        supportedTypeGroups: [
          {
            name: 'virtio',
            attrs: [
              { name: 'name', mode: 0o444, show: () => 'virtio-net' },
              { name: 'device_api', mode: 0o444, show: () => VIRTIO_MDEV_DEVICE_API_STRING },
              {
                name: 'available_instances',
                mode: 0o444,
                show: () => String(this.maxInstances - this.instances.size),
              },
              {
                name: 'description',
                mode: 0o444,
                show: () => 'virtio-net loopback: TX frames come back on RX',
              },
            ],
          },
        ],
        create: (_type, mdev) => this.create(mdev),
        remove: (mdev) => this.remove(mdev),
      });
    } catch (err) {
      this.parent.unregister();
      this.cls.unregister();
      void this.host.close();
      throw err;
    }
  }

  private create(mdev: MdevDevice): void {
    const slot = this.bySlot.indexOf(null);
    if (this.instances.size >= this.maxInstances || slot < 0) {
      throw new KernelError('ENOSPC', `mvnet: all ${this.maxInstances} instances are in use`);
    }
    const provisioned = this.provisions.get(mdev.uuid);
    this.provisions.delete(mdev.uuid);
    const s = new MvnetState(mdev, this, slot, provisioned);
    this.bySlot[slot] = s;
    mdevSetDrvdata(mdev, s);
    this.instances.add(s);
    mdev.dmaOps = this.options.dma; // "HVA as IOVA"
    mdev.groups = [...mdev.groups, this.vendorGroup(mdev), this.statsGroup(s)];
    mdevVirtioSetOps(mdev, this.ops);
    mdevVirtioSetClassId(mdev, MDEV_VIRTIO_CLASS_ID_VIRTIO);
  }

  private vendorGroup(mdev: MdevDevice): AttributeGroup {
    return {
      name: 'vendor',
      attrs: [{ name: 'sample_mdev_dev', mode: 0o444, show: () => `This is MDEV ${mdev.name}` }],
    };
  }

  private statsGroup(s: MvnetState): AttributeGroup {
    const keys: [string, keyof MvnetStats][] = [
      ['tx_packets', 'txPackets'],
      ['tx_bytes', 'txBytes'],
      ['rx_packets', 'rxPackets'],
      ['rx_bytes', 'rxBytes'],
      ['tx_dropped', 'txDropped'],
      ['rx_truncated', 'rxTruncated'],
      ['ring_errors', 'ringErrors'],
    ];
    return {
      name: 'stats',
      attrs: keys.map(([name, key]) => ({ name, mode: 0o444, show: () => String(s.stats[key]) })),
    };
  }

  private remove(mdev: MdevDevice): void {
    const s = mdevGetDrvdata<MvnetState | null>(mdev);
    if (!s || !this.instances.has(s))
      throw new KernelError('EINVAL', `mvnet: unknown ${mdev.uuid}`);
    // Unlike the sample, stop the datapath before the state goes away.
    this.host.detach(s.slot);
    for (const vq of s.vqs) vq.reset();
    this.bySlot[s.slot] = null;
    this.instances.delete(s);
    mdevSetDrvdata(mdev, null);
  }

  /**
   * Sets the MAC and MTU the next mdev created with `uuid` starts with: an mdev's config space
   * is read by the driver that binds while it is created, so its attributes must be known
   * before. Taken by that creation only. EINVAL for a MAC that is not 6 bytes or is multicast,
   * or an MTU outside 68 to 65535 (ETH_MIN_MTU to the 16 bits of the config field).
   */
  provision(uuid: string, attrs: MvnetProvision): void {
    if (attrs.mac !== undefined && (attrs.mac.length !== 6 || (attrs.mac[0]! & 1) !== 0)) {
      throw new KernelError('EINVAL', `mvnet: ${uuid}: the MAC must be 6 bytes and unicast`);
    }
    if (
      attrs.mtu !== undefined &&
      !(Number.isInteger(attrs.mtu) && attrs.mtu >= 68 && attrs.mtu <= 0xffff)
    ) {
      throw new KernelError('EINVAL', `mvnet: ${uuid}: MTU ${attrs.mtu} is not 68 to 65535`);
    }
    this.provisions.set(uuid, { mac: attrs.mac && Uint8Array.from(attrs.mac), mtu: attrs.mtu });
  }

  /** The state of an mvnet mdev (for tests and tools). */
  stateOf(mdev: MdevDevice): MvnetState {
    return state(mdev);
  }

  /** Unregisters the parent: every mvnet mdev is removed first (mvnet_dev_exit). */
  exit(): void {
    mdevVirtioUnregisterDevice(this.parent);
    this.parent.unregister();
    this.cls.unregister();
    void this.host.close();
  }
}

/** Mirrors mvnet_dev_init(): registers the mvnet_loopback parent. */
export function mvnetLoopbackInit(options: MvnetOptions): MvnetLoopback {
  return new MvnetLoopback(options);
}

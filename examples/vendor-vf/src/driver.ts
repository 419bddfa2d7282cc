/**
 * The vendor's parent driver: it registers the card on the mediated virtio bus with one type,
 * `vendor_vf-net`, gives each mdev a VF of the card, and implements every mdev_virtio op by
 * reading and writing that VF's registers, the way an IFC VF driver programs its
 * virtio-pci-style common configuration. The virtio-mdev transport and virtio-net drive it
 * unchanged.
 */
import { type AttributeGroup, Class, Device, type DmaMapOps, KernelError } from '@mdev/driver-core';
import { type MdevDevice, mdevGetDrvdata, mdevSetDrvdata } from '@mdev/mdev-core';
import {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  type MdevVirtioOps,
  mdevVirtioRegisterDevice,
  mdevVirtioSetClassId,
  mdevVirtioSetOps,
  mdevVirtioUnregisterDevice,
  VIRTIO_MDEV_DEVICE_API_STRING,
  type VirtioMdevCallback,
} from '@mdev/mdev-virtio';
import { VIRTIO_CONFIG_S_NEEDS_RESET } from '@mdev/virtio';
import { type GuestMemory, MAX_ADDR } from '@mdev/virtio-ring';
import { VirtioNetVf } from './hardware';
import {
  LINK_IRQ_INTX,
  VF_DEVICE_CFG,
  VF_DEVICE_CFG_SIZE,
  VF_NOTIFY,
  VF_NOTIFY_OFF_MULTIPLIER,
  VF_NUM_QUEUES,
  VF_QUEUE_STATE,
  VF_QUEUE_STATE_LAST_AVAIL,
  VF_QUEUE_STATE_STRIDE,
  VF_STAT_NAMES,
  VF_STATS,
  VF_STATS_COUNTERS,
  type VfStatName,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_COMMON_CFGGENERATION,
  VIRTIO_PCI_COMMON_DF,
  VIRTIO_PCI_COMMON_DFSELECT,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_MSIX,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_MSIX,
  VIRTIO_PCI_COMMON_Q_NOFF,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
  VIRTIO_PCI_ISR_CONFIG,
  VIRTIO_PCI_ISR_QUEUE,
  VIRTIO_PCI_MODERN_DEVICE_BASE,
} from './layout';
import type { VfBar } from './mmio';

/** The driver's name: its class, its parent device and the prefix of its type. */
export const VENDOR_VF_NAME = 'vendor_vf';
/** The sysfs directory of the card's one mdev type. */
export const VENDOR_VF_TYPE_PATH =
  '/sys/devices/virtual/vendor_vf/vendor_vf/mdev_supported_types/vendor_vf-net';
/** The device_api of the type, defined by the bus (re-exported for existing users). */
export { VIRTIO_MDEV_DEVICE_API_STRING };
/** Ring alignment the VF asks for (get_vq_align): a page, as IFC VF drivers report. */
export const VENDOR_VF_QUEUE_ALIGN = 4096;
/** MSI-X vector the driver gives configuration changes; queue q gets vector 1 + q. */
export const VENDOR_VF_CONFIG_VECTOR = 0;
/** How many times a reset reads device_status back before giving up. */
const RESET_POLLS = 100;

/** Options of `vendorVfInit`. */
export interface VendorVfOptions {
  /** Host memory the VFs reach by DMA (SharedArrayBuffer regions, e.g. `hostRam.memory`). */
  memory: GuestMemory;
  /** The host's DMA mapping over that memory (identity, e.g. `hostRam.dma`). */
  dma: DmaMapOps;
  /** VFs on the card (available_instances); default 8. */
  vfs?: number;
  /** The largest queue each VF takes (a power of two, 2-32768); default 256. */
  queueSize?: number;
  /** Frames a VF's datapath moves per run; default 256. */
  budget?: number;
  /** The VFs offer VIRTIO_F_RING_PACKED (virtio 1.2 2.8); default false. */
  packed?: boolean;
  /** Use MSI-X vectors (default) or the INTx line and the ISR byte. */
  msix?: boolean;
  /** Where the VFs import @mdev/vhost-user from (see `VirtioNetVfOptions.vhostUser`). */
  vhostUser?: string;
}

/**
 * What an mdev's VF is set up with when it is created (`provision`): the station address and
 * MTU of its device configuration (struct virtio_net_config, virtio 1.2 section 5.1.4), as a
 * vendor's management tool writes them into a VF before the driver sees it.
 */
export interface VendorVfProvision {
  /** The MAC: 6 bytes, unicast. Default: a random locally administered one. */
  mac?: Uint8Array;
  /** The MTU, 68 to 65535. Default VF_DEFAULT_MTU. */
  mtu?: number;
}

/** The VF counters as the driver reads them from the statistics registers. */
export type VendorVfStats = Record<VfStatName, number>;

/** One mdev: the VF it drives and what the driver keeps about it. */
export class VendorVfInstance {
  readonly mdev: MdevDevice;
  readonly vf: VirtioNetVf;
  readonly bar: VfBar;
  /** The VF slot on the card. */
  readonly index: number;
  /** get_vq_num_max: the smallest queue_size the VF showed after power-on. */
  readonly queueMax: number;
  readonly vqCb: (VirtioMdevCallback | null)[] = new Array(VF_NUM_QUEUES).fill(null);
  configCb: VirtioMdevCallback | null = null;
  /** BAR offset of each enabled queue's doorbell; -1 while the queue is not enabled. */
  readonly notify: number[] = new Array(VF_NUM_QUEUES).fill(-1);

  constructor(mdev: MdevDevice, vf: VirtioNetVf, index: number, msix: boolean) {
    this.mdev = mdev;
    this.vf = vf;
    this.bar = vf.bar;
    this.index = index;
    this.msix = msix;
    let max = Number.POSITIVE_INFINITY;
    for (let q = 0; q < VF_NUM_QUEUES; q++) {
      this.bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, q);
      max = Math.min(max, this.bar.read16(VIRTIO_PCI_COMMON_Q_SIZE));
    }
    if (this.bar.gone) throw new KernelError('EIO', `vendor_vf: VF ${index} does not answer`);
    this.queueMax = max;
    vf.onInterrupt = (bits) => this.interrupt(bits);
  }

  private readonly msix: boolean;

  /** The interrupt handler: MSI-X vectors, or INTx with the ISR byte telling what happened. */
  private interrupt(bits: number): void {
    if (bits & (1 << VENDOR_VF_CONFIG_VECTOR)) this.configInterrupt();
    for (let q = 0; q < VF_NUM_QUEUES; q++) if (bits & (1 << (1 + q))) this.vqInterrupt(q);
    if (bits & LINK_IRQ_INTX) {
      const isr = this.bar.readIsr();
      if (isr & VIRTIO_PCI_ISR_CONFIG) this.configInterrupt();
      if (isr & VIRTIO_PCI_ISR_QUEUE) for (let q = 0; q < VF_NUM_QUEUES; q++) this.vqInterrupt(q);
    }
  }

  private vqInterrupt(q: number): void {
    const cb = this.vqCb[q];
    if (cb && this.notify[q] !== -1) cb.callback(cb.private);
  }

  private configInterrupt(): void {
    // The VF raises this interrupt when it sets DEVICE_NEEDS_RESET: no frame comes until a
    // reset then, so the hold on the process may have to go.
    this.updateHold();
    const cb = this.configCb;
    if (cb) cb.callback(cb.private);
  }

  /** Selects queue `idx` (queue_select); EINVAL for a queue the VF does not have. */
  select(idx: number): void {
    if (!hasQueue(idx)) throw new KernelError('EINVAL', `vendor_vf: no queue ${idx}`);
    this.bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, idx);
  }

  /**
   * Programs an MSI-X vector register (NO_VECTOR with INTx) and reads it back. A vector the VF
   * could not map reads NO_VECTOR (virtio 1.2, 4.1.5.1.2.1) and the VF signals that event by
   * INTx and the ISR byte, which `interrupt` serves too: worth a warning, not a failure.
   */
  programVector(offset: number, vector: number, what: string): number {
    const want = this.msix ? vector : VIRTIO_MSI_NO_VECTOR;
    this.bar.write16(offset, want);
    const got = this.bar.read16(offset);
    if (got !== want) {
      process.emitWarning(
        `vendor_vf: VF ${this.index} refused MSI-X vector ${vector} for ${what}; it uses INTx`,
      );
    }
    return got;
  }

  /**
   * Has the VF's thread hold the process while a queue is enabled (see `holdProcess`), but not
   * once the VF needs a reset: it uses no buffer then (2.1.2), so no frame is in flight. The
   * next enable after the reset takes the hold again.
   */
  updateHold(): void {
    const running =
      this.notify.some((n) => n >= 0) &&
      (this.bar.read8(VIRTIO_PCI_COMMON_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET) === 0;
    this.vf.holdProcess(running);
  }

  /** The VF's counters, read from its statistics registers. */
  readStats(): VendorVfStats | null {
    const values = this.bar.readCounters(VF_STATS, VF_STATS_COUNTERS, VF_STAT_NAMES.length);
    if (!values) return null;
    return Object.fromEntries(VF_STAT_NAMES.map((n, i) => [n, values[i]!])) as VendorVfStats;
  }
}

/** Whether the VF has queue `idx`. */
function hasQueue(idx: number): boolean {
  return Number.isInteger(idx) && idx >= 0 && idx < VF_NUM_QUEUES;
}

function instance(mdev: MdevDevice): VendorVfInstance {
  const inst = mdevGetDrvdata<VendorVfInstance | null>(mdev);
  if (!inst) throw new KernelError('ENODEV', `vendor_vf: ${mdev.uuid} has no VF`);
  return inst;
}

function checkAddr(what: string, addr: number): void {
  if (!Number.isInteger(addr) || addr < 0 || addr > MAX_ADDR) {
    throw new KernelError('EINVAL', `vendor_vf: ${what} address ${addr} is not a 64-bit address`);
  }
}

/** Writes a 64-bit address as the two 32-bit halves of a lo/hi register pair. */
function write64(bar: VfBar, lo: number, value: number): void {
  bar.write32(lo, value % 2 ** 32);
  bar.write32(lo + 4, Math.floor(value / 2 ** 32));
}

/** The ops table: every op is register reads and writes of the mdev's VF. */
export const vendorVfOps: MdevVirtioOps = {
  // ---- virtqueue ops: queue_select, then the queue's fields (virtio 1.2, 4.1.4.3)
  setVqAddress(mdev, idx, desc, driver, device) {
    const inst = instance(mdev);
    checkAddr('descriptor area', desc);
    checkAddr('driver area', driver);
    checkAddr('device area', device);
    inst.select(idx);
    write64(inst.bar, VIRTIO_PCI_COMMON_Q_DESCLO, desc);
    write64(inst.bar, VIRTIO_PCI_COMMON_Q_AVAILLO, driver);
    write64(inst.bar, VIRTIO_PCI_COMMON_Q_USEDLO, device);
  },
  setVqNum(mdev, idx, num) {
    const inst = instance(mdev);
    inst.select(idx);
    inst.bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, num);
    // The VF ignores a size that is not a power of two up to its maximum, and any size while
    // the queue runs: the read-back tells.
    if (inst.bar.read16(VIRTIO_PCI_COMMON_Q_SIZE) !== num) {
      if (inst.bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE) === 1) {
        throw new KernelError('EBUSY', `vendor_vf: queue ${idx} is running; its size is fixed`);
      }
      throw new KernelError('EINVAL', `vendor_vf: queue ${idx} does not take size ${num}`);
    }
  },
  kickVq(mdev, idx) {
    const inst = instance(mdev);
    const doorbell = inst.notify[idx];
    if (doorbell === undefined || doorbell < 0) return;
    // The driver writes the queue's index at its notify address (4.1.4.4); a posted write.
    inst.bar.write16(doorbell, idx);
    // Interrupts that arrived while this thread was busy are handled here too, so a driver
    // that keeps transmitting also keeps receiving.
    inst.vf.pollInterrupts();
  },
  setVqCb(mdev, idx, cb) {
    const inst = instance(mdev);
    // Nothing to clear on a queue the VF does not have (the transport unwinds a failed setup).
    if (!cb && !hasQueue(idx)) return;
    inst.select(idx);
    inst.vqCb[idx] = cb;
    if (cb) inst.programVector(VIRTIO_PCI_COMMON_Q_MSIX, 1 + idx, `queue ${idx}`);
  },
  setVqReady(mdev, idx, ready) {
    const inst = instance(mdev);
    // Nor anything to stop: such a queue never runs.
    if (!ready && !hasQueue(idx)) return;
    inst.select(idx);
    inst.bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, ready ? 1 : 0);
    // The read flushes the write: the VF has taken the queue up (or let it go) when it returns.
    const enabled = inst.bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE) === 1;
    inst.notify[idx] = enabled
      ? VF_NOTIFY + inst.bar.read16(VIRTIO_PCI_COMMON_Q_NOFF) * VF_NOTIFY_OFF_MULTIPLIER
      : -1;
    inst.updateHold();
  },
  getVqReady(mdev, idx) {
    const inst = instance(mdev);
    // A queue the VF does not have reads not enabled, as one past num_queues on virtio-pci.
    if (!hasQueue(idx)) return false;
    inst.select(idx);
    return inst.bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE) === 1;
  },
  setVqState(mdev, idx, state) {
    const inst = instance(mdev);
    inst.select(idx);
    const reg = VF_QUEUE_STATE + idx * VF_QUEUE_STATE_STRIDE + VF_QUEUE_STATE_LAST_AVAIL;
    inst.bar.write16(reg, state & 0xffff);
    // The VF keeps a running ring's state to itself: the write only sticks before enabling.
    if (inst.bar.read16(reg) !== (state & 0xffff)) {
      throw new KernelError('EBUSY', `vendor_vf: queue ${idx} is running; its state is the VF's`);
    }
  },
  getVqState(mdev, idx) {
    const inst = instance(mdev);
    if (!hasQueue(idx)) return 0;
    inst.select(idx);
    return inst.bar.read16(
      VF_QUEUE_STATE + idx * VF_QUEUE_STATE_STRIDE + VF_QUEUE_STATE_LAST_AVAIL,
    );
  },
  // ---- device ops
  getVqAlign() {
    return VENDOR_VF_QUEUE_ALIGN;
  },
  getFeatures(mdev) {
    // device_feature shows 32 bits at a time, picked by device_feature_select (4.1.4.3).
    const { bar } = instance(mdev);
    bar.write32(VIRTIO_PCI_COMMON_DFSELECT, 0);
    const lo = bar.read32(VIRTIO_PCI_COMMON_DF);
    bar.write32(VIRTIO_PCI_COMMON_DFSELECT, 1);
    const hi = bar.read32(VIRTIO_PCI_COMMON_DF);
    return (BigInt(hi) << 32n) | BigInt(lo);
  },
  setFeatures(mdev, features) {
    // The VF judges the set when the driver sets FEATURES_OK (it clears the bit to refuse).
    const { bar } = instance(mdev);
    bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 0);
    bar.write32(VIRTIO_PCI_COMMON_GF, Number(features & 0xffffffffn));
    bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 1);
    bar.write32(VIRTIO_PCI_COMMON_GF, Number((features >> 32n) & 0xffffffffn));
  },
  setConfigCb(mdev, cb) {
    const inst = instance(mdev);
    inst.configCb = cb;
    if (cb) inst.programVector(VIRTIO_PCI_COMMON_MSIX, VENDOR_VF_CONFIG_VECTOR, 'config changes');
  },
  getVqNumMax(mdev) {
    return instance(mdev).queueMax;
  },
  getDeviceId(mdev) {
    // A modern virtio PCI function's device id is 0x1040 + the virtio device id (4.1.2.1).
    const { device } = instance(mdev).vf.pci;
    return device > VIRTIO_PCI_MODERN_DEVICE_BASE ? device - VIRTIO_PCI_MODERN_DEVICE_BASE : 0;
  },
  getVendorId(mdev) {
    return instance(mdev).vf.pci.subsystemVendor;
  },
  getStatus(mdev) {
    return instance(mdev).bar.read8(VIRTIO_PCI_COMMON_STATUS);
  },
  setStatus(mdev, status) {
    // device_status is a byte (4.1.4.3; set_status takes a u8). iowrite8 would keep the low
    // byte of a wider value: 256 or 2^32 would reset the VF behind this driver's back (its
    // reset path below skipped), -1 would set every bit. Such a value changes nothing.
    if (!Number.isInteger(status) || status < 0 || status > 0xff) return;
    const inst = instance(mdev);
    inst.bar.write8(VIRTIO_PCI_COMMON_STATUS, status);
    if (status !== 0) return;
    // A reset is complete when device_status reads back 0 (4.1.4.3.2); from then on the VF
    // no longer touches the rings, which the driver may now free.
    for (let i = 0; i < RESET_POLLS; i++) {
      if (inst.bar.read8(VIRTIO_PCI_COMMON_STATUS) === 0) break;
    }
    inst.notify.fill(-1);
    inst.vf.holdProcess(false);
  },
  getConfig(mdev, offset, buf) {
    const { bar } = instance(mdev);
    for (let i = 0; i < buf.length; i++) {
      const off = offset + i;
      buf[i] = off >= 0 && off < VF_DEVICE_CFG_SIZE ? bar.read8(VF_DEVICE_CFG + off) : 0;
    }
  },
  setConfig(mdev, offset, buf) {
    const { bar } = instance(mdev);
    for (let i = 0; i < buf.length; i++) {
      const off = offset + i;
      if (off >= 0 && off < VF_DEVICE_CFG_SIZE) bar.write8(VF_DEVICE_CFG + off, buf[i]!);
    }
  },
  getGeneration(mdev) {
    return instance(mdev).bar.read8(VIRTIO_PCI_COMMON_CFGGENERATION);
  },
  // ---- DMA map (vDPA's set_map): the IOMMU table in front of the VF
  setMap(mdev, map) {
    const inst = instance(mdev);
    // A running queue's areas were translated when it was enabled; a new table would leave it
    // on the old memory. The reads also flush the writes posted before, so the VF sees the
    // table after every register write the driver made (the VF refuses it too, but cannot say
    // which queue).
    for (let q = 0; q < VF_NUM_QUEUES; q++) {
      inst.select(q);
      if (inst.bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE) === 1) {
        throw new KernelError('EBUSY', `vendor_vf: queue ${q} is enabled`);
      }
    }
    inst.vf.setMap(map);
  },
};

/**
 * The card: a class and device `vendor_vf` registered on the mediated virtio bus with the type
 * `vendor_vf-net`; each mdev created through it drives one VF.
 */
export class VendorVfCard {
  readonly options: VendorVfOptions;
  readonly cls: Class;
  readonly parent: Device;
  readonly vfs: number;
  readonly queueSize: number;
  private readonly slots: (VendorVfInstance | null)[];
  /** The last counters of each removed mdev (read before its VF was powered off). */
  private readonly lastStats = new WeakMap<MdevDevice, VendorVfStats>();
  /** The setup of the next mdev created with each UUID (see `provision`). */
  private readonly provisions = new Map<string, VendorVfProvision>();

  constructor(options: VendorVfOptions) {
    this.options = options;
    this.vfs = options.vfs ?? 8;
    this.queueSize = options.queueSize ?? 256;
    if (!Number.isInteger(this.vfs) || this.vfs < 1) {
      throw new RangeError(`vendor_vf: vfs ${options.vfs} must be a positive integer`);
    }
    const q = this.queueSize;
    if (!Number.isInteger(q) || q < 2 || q > 32768 || (q & (q - 1)) !== 0) {
      throw new RangeError(`vendor_vf: queue size ${q} is not a power of two from 2 to 32768`);
    }
    this.slots = new Array(this.vfs).fill(null);
    this.cls = new Class(VENDOR_VF_NAME);
    this.cls.register();
    this.parent = new Device({ name: VENDOR_VF_NAME, class: this.cls });
    try {
      this.parent.add();
      mdevVirtioRegisterDevice(this.parent, {
        devAttrGroups: [
          {
            name: 'sriov',
            attrs: [
              { name: 'sriov_totalvfs', mode: 0o444, show: () => String(this.vfs) },
              { name: 'sriov_numvfs', mode: 0o444, show: () => String(this.inUse()) },
            ],
          },
        ],
        mdevAttrGroups: [],
        supportedTypeGroups: [
          {
            name: 'net',
            attrs: [
              { name: 'name', mode: 0o444, show: () => 'virtio-net VF' },
              { name: 'device_api', mode: 0o444, show: () => VIRTIO_MDEV_DEVICE_API_STRING },
              {
                name: 'available_instances',
                mode: 0o444,
                show: () => String(this.vfs - this.inUse()),
              },
              {
                name: 'description',
                mode: 0o444,
                show: () => 'a virtio-net VF with its datapath in hardware (loopback cable)',
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
      throw err;
    }
  }

  private inUse(): number {
    return this.slots.filter((s) => s !== null).length;
  }

  private create(mdev: MdevDevice): void {
    const index = this.slots.indexOf(null);
    if (index < 0) throw new KernelError('ENOSPC', `vendor_vf: all ${this.vfs} VFs are in use`);
    const { memory, dma } = this.options;
    const provisioned = this.provisions.get(mdev.uuid);
    this.provisions.delete(mdev.uuid);
    const vf = new VirtioNetVf({
      memory,
      queueMax: this.queueSize,
      budget: this.options.budget,
      packed: this.options.packed,
      vhostUser: this.options.vhostUser,
      mac: provisioned?.mac,
      mtu: provisioned?.mtu,
    });
    let inst: VendorVfInstance;
    try {
      inst = new VendorVfInstance(mdev, vf, index, this.options.msix ?? true);
    } catch (err) {
      void vf.close();
      throw err;
    }
    this.slots[index] = inst;
    mdevSetDrvdata(mdev, inst);
    // The VF is behind the IOMMU: addresses the driver maps for it are host addresses, and each
    // mapping makes sure the VF can reach the memory before the address is handed over.
    mdev.dmaOps = {
      alloc(size, align) {
        const block = dma.alloc(size, align);
        vf.syncMemory();
        return block;
      },
      free: (cpuAddr, size, dmaAddr) => dma.free(cpuAddr, size, dmaAddr),
      map(cpuAddr, len, dir) {
        vf.syncMemory();
        return dma.map(cpuAddr, len, dir);
      },
      unmap: (dmaAddr, len, dir) => dma.unmap(dmaAddr, len, dir),
    };
    mdev.groups = [...mdev.groups, this.vfGroup(inst), this.statsGroup(inst)];
    mdevVirtioSetOps(mdev, vendorVfOps);
    mdevVirtioSetClassId(mdev, MDEV_VIRTIO_CLASS_ID_VIRTIO);
  }

  private vfGroup(inst: VendorVfInstance): AttributeGroup {
    const hex = (n: number) => `0x${n.toString(16).padStart(4, '0')}`;
    const { pci } = inst.vf;
    return {
      name: 'vf',
      attrs: [
        { name: 'index', mode: 0o444, show: () => String(inst.index) },
        { name: 'vendor', mode: 0o444, show: () => hex(pci.vendor) },
        { name: 'device', mode: 0o444, show: () => hex(pci.device) },
        { name: 'subsystem_vendor', mode: 0o444, show: () => hex(pci.subsystemVendor) },
        { name: 'subsystem_device', mode: 0o444, show: () => hex(pci.subsystem) },
      ],
    };
  }

  private statsGroup(inst: VendorVfInstance): AttributeGroup {
    return {
      name: 'stats',
      attrs: VF_STAT_NAMES.map((name) => ({
        name,
        mode: 0o444,
        show: () => {
          const stats = inst.readStats();
          if (!stats) throw new KernelError('EIO', `vendor_vf: VF ${inst.index} does not answer`);
          return String(stats[name]);
        },
      })),
    };
  }

  private remove(mdev: MdevDevice): void {
    const inst = mdevGetDrvdata<VendorVfInstance | null>(mdev);
    if (!inst || this.slots[inst.index] !== inst) {
      throw new KernelError('EINVAL', `vendor_vf: unknown ${mdev.uuid}`);
    }
    const stats = inst.readStats();
    if (stats) this.lastStats.set(mdev, stats);
    // Power the VF off: its engine stops, its interrupts end.
    inst.vf.onInterrupt = () => {};
    void inst.vf.close();
    this.slots[inst.index] = null;
    mdevSetDrvdata(mdev, null);
  }

  /**
   * Sets up the VF of the next mdev created with `uuid`: its MAC and MTU (`{}` forgets an
   * earlier setup). EINVAL for a MAC that is not 6 unicast bytes or an MTU outside 68-65535.
   */
  provision(uuid: string, attrs: VendorVfProvision): void {
    if (attrs.mac !== undefined && (attrs.mac.length !== 6 || (attrs.mac[0]! & 1) !== 0)) {
      throw new KernelError('EINVAL', `vendor_vf: ${uuid}: the MAC must be 6 bytes and unicast`);
    }
    if (
      attrs.mtu !== undefined &&
      !(Number.isInteger(attrs.mtu) && attrs.mtu >= 68 && attrs.mtu <= 0xffff)
    ) {
      throw new KernelError('EINVAL', `vendor_vf: ${uuid}: MTU ${attrs.mtu} is not 68 to 65535`);
    }
    if (attrs.mac === undefined && attrs.mtu === undefined) this.provisions.delete(uuid);
    else
      this.provisions.set(uuid, { mac: attrs.mac && Uint8Array.from(attrs.mac), mtu: attrs.mtu });
  }

  /** The driver state of one of the card's mdevs. */
  instanceOf(mdev: MdevDevice): VendorVfInstance {
    return instance(mdev);
  }

  /** An mdev's VF counters; after the mdev was removed, the last ones read. */
  stats(mdev: MdevDevice): VendorVfStats | null {
    const inst = mdevGetDrvdata<VendorVfInstance | null>(mdev);
    if (inst && this.slots[inst.index] === inst) return inst.readStats();
    return this.lastStats.get(mdev) ?? null;
  }

  /** Unregisters the card: every mdev is removed first, which powers its VF off. */
  exit(): void {
    mdevVirtioUnregisterDevice(this.parent);
    this.parent.unregister();
    this.cls.unregister();
  }
}

/** Registers the card (the module init of a vendor's driver). */
export function vendorVfInit(options: VendorVfOptions): VendorVfCard {
  return new VendorVfCard(options);
}

// What the two display samples, mdpy and mbochs, share: the VFIO file of a PCI display without
// interrupts (its ioctls, read/write split into naturally aligned pieces, mmap of video memory),
// the guest's config-space writes, and the parent driver that registers the sample's types and
// makes one display per mdev. The samples in the kernel carry a copy of this each.
import { type Attribute, Class, Device, KernelError } from '@mdev/driver-core';
import { type MdevDevice, mdevGetDrvdata, mdevSetDrvdata } from '@mdev/mdev-core';
import {
  type MdevVfioOps,
  mdevVfioRegisterDevice,
  mdevVfioSetOps,
  mdevVfioUnregisterDevice,
  PAGE_SIZE,
  VFIO_DEVICE_API_PCI_STRING,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_QUERY_GFX_PLANE,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_PCI_NUM_IRQS,
  type VfioGfxPlaneInfo,
  type VfioInfoCap,
  type VfioVma,
  vfioDeviceInfo,
  vfioGfxPlaneInfo,
  vfioIrqInfo,
  vfioRegionInfo,
  vfioRegionInfoReply,
  vfioSplitAccess,
} from '@mdev/mdev-vfio';
import { checkAccess, checkIoctl, checkVma } from './args';
import { PciConfigSpace } from './pci';

/**
 * A guest write to the config space of a display sample (handle_pci_cfg_write of mdpy and
 * mbochs): a 4-byte write to a BAR register goes through the BAR sizing protocol (an
 * unimplemented BAR stays 0); every other write is ignored. False when the access leaves the
 * space. (The samples read a u32 from the user buffer whatever the write's size; a narrower
 * BAR write is ignored here.)
 */
export function displayConfigWrite(cfg: PciConfigSpace, offset: number, buf: Uint8Array): boolean {
  if (offset < 0 || offset + buf.length > cfg.size) return false;
  const bar = PciConfigSpace.barIndexAt(offset);
  if (bar !== null && buf.length === 4) cfg.writeBar(bar, PciConfigSpace.valueOf(buf));
  return true;
}

/** A region's place in the device file, as GET_REGION_INFO reports it. */
export interface RegionInfo {
  flags: number;
  size: number;
  offset: number;
  /** The capability chain the reply carries (a region type, say); none when absent. */
  caps?: VfioInfoCap[];
}

/** The plane fields QUERY_GFX_PLANE fills in (the rest of the struct is the caller's). */
export type GfxPlane = Omit<VfioGfxPlaneInfo, 'argsz' | 'flags' | 'drmPlaneType'>;

/** The plane QUERY_GFX_PLANE reports for a plane the device does not show: all zero. */
export function disabledPlane(): GfxPlane {
  return {
    drmFormat: 0,
    drmFormatMod: 0,
    width: 0,
    height: 0,
    stride: 0,
    size: 0,
    xPos: 0,
    yPos: 0,
    xHot: 0,
    yHot: 0,
    dmabufId: 0,
  };
}

/** Mirrors the struct mdev_state both display samples keep: one display and its video memory. */
export abstract class DisplayState {
  readonly mdev: MdevDevice;
  /** Times the device is open (the kernel takes a module reference per open). */
  openCount = 0;

  constructor(mdev: MdevDevice) {
    this.mdev = mdev;
  }

  /** The sample's name, which starts its messages. */
  abstract get sample(): string;
  /** The regions the device reports (GET_INFO's num_regions). */
  abstract get numRegions(): number;
  /** Where video memory starts in the device file, page aligned. */
  abstract get memoryBarOffset(): number;
  /** Bytes of video memory. */
  abstract get memsize(): number;
  /** `length` bytes of video memory from `offset`: the memory itself, not a copy. */
  abstract memoryView(offset: number, length: number): Uint8Array;
  /** mdev_access() for one piece at file offset `pos`; false outside every region. */
  abstract access(buf: Uint8Array, pos: number, isWrite: boolean): boolean;
  /** The sample's get_region_info(); EINVAL for an index it does not have. */
  abstract regionInfo(index: number): RegionInfo;
  /** The sample's query_gfx_plane(): null for a probe that is answered "supported". */
  abstract queryGfxPlane(flags: number, drmPlaneType: number): GfxPlane | null;
  /** VFIO_DEVICE_RESET. */
  abstract reset(): void;
  /** The last close of the device file. */
  close(): void {}

  /**
   * read()/write() of the device file: video memory is copied in one go; registers go through
   * naturally aligned pieces. EFAULT for an access outside every region.
   */
  rw(buf: Uint8Array, pos: number, isWrite: boolean): number {
    if (pos >= this.memoryBarOffset && this.access(buf, pos, isWrite)) return buf.length;
    return vfioSplitAccess(buf, pos, (piece, at) => this.access(piece, at, isWrite));
  }

  /**
   * mmap() of the device file: video memory only, from its first page, at most memsize bytes,
   * shared. EINVAL otherwise. The view is video memory itself.
   */
  mmap(vma: VfioVma): Uint8Array {
    const name = this.sample;
    if (vma.pgoff !== this.memoryBarOffset / PAGE_SIZE) {
      throw new KernelError('EINVAL', `${name}: mmap at page ${vma.pgoff} is not video memory`);
    }
    if (vma.length > this.memsize) {
      throw new KernelError(
        'EINVAL',
        `${name}: mmap of ${vma.length} bytes exceeds ${this.memsize}`,
      );
    }
    if (!vma.shared) throw new KernelError('EINVAL', `${name}: mmap must be shared`);
    return this.memoryView(0, vma.length);
  }

  /** ioctl() of the device file. ENOTTY for a request the device does not know. */
  ioctl(cmd: number, arg: Uint8Array | null): number {
    const name = this.sample;
    switch (cmd) {
      case VFIO_DEVICE_GET_INFO: {
        const req = vfioDeviceInfo.copyFromUser(arg);
        if (req.argsz < vfioDeviceInfo.minsz) throw new KernelError('EINVAL', `${name}: argsz`);
        vfioDeviceInfo.copyToUser(arg, {
          argsz: req.argsz,
          flags: VFIO_DEVICE_FLAGS_PCI,
          numRegions: this.numRegions,
          numIrqs: VFIO_PCI_NUM_IRQS,
        });
        return 0;
      }
      case VFIO_DEVICE_GET_REGION_INFO: {
        const req = vfioRegionInfo.copyFromUser(arg);
        if (req.argsz < vfioRegionInfo.minsz) throw new KernelError('EINVAL', `${name}: argsz`);
        const { caps = [], ...info } = this.regionInfo(req.index);
        vfioRegionInfoReply(arg, req, { index: req.index, ...info }, caps);
        return 0;
      }
      case VFIO_DEVICE_GET_IRQ_INFO: {
        const req = vfioIrqInfo.copyFromUser(arg);
        if (req.argsz < vfioIrqInfo.minsz || req.index >= VFIO_PCI_NUM_IRQS) {
          throw new KernelError('EINVAL', `${name}: no irq index ${req.index}`);
        }
        // The display samples have no interrupts: every index has zero vectors.
        vfioIrqInfo.copyToUser(arg, { argsz: req.argsz, index: req.index, flags: 0, count: 0 });
        return 0;
      }
      case VFIO_DEVICE_QUERY_GFX_PLANE: {
        const req = vfioGfxPlaneInfo.copyFromUser(arg);
        if (req.argsz < vfioGfxPlaneInfo.minsz) throw new KernelError('EINVAL', `${name}: argsz`);
        const plane = this.queryGfxPlane(req.flags, req.drmPlaneType);
        if (plane) vfioGfxPlaneInfo.copyToUser(arg, { ...req, ...plane });
        return 0;
      }
      case VFIO_DEVICE_SET_IRQS:
        throw new KernelError('EINVAL', `${name}: no interrupts to set`);
      case VFIO_DEVICE_RESET:
        this.reset();
        return 0;
      default:
        throw new KernelError('ENOTTY', `${name}: unknown ioctl 0x${cmd.toString(16)}`);
    }
  }
}

/** The VFIO ops of a display sample's devices: each op goes to the mdev's DisplayState. */
export function displayVfioOps(sample: string): MdevVfioOps {
  const stateOf = (mdev: MdevDevice): DisplayState => {
    const s = mdevGetDrvdata<DisplayState | null>(mdev);
    if (!s) throw new KernelError('ENODEV', `${sample}: ${mdev.uuid} has no state`);
    return s;
  };
  return {
    open(mdev) {
      stateOf(mdev).openCount++;
    },
    release(mdev) {
      const s = mdevGetDrvdata<DisplayState | null>(mdev);
      if (!s) return;
      if (s.openCount > 0) s.openCount--;
      if (s.openCount === 0) s.close();
    },
    read(mdev, buf, pos) {
      checkAccess(sample, buf, pos);
      return stateOf(mdev).rw(buf, pos, false);
    },
    write(mdev, buf, pos) {
      checkAccess(sample, buf, pos);
      return stateOf(mdev).rw(buf, pos, true);
    },
    ioctl(mdev, cmd, arg) {
      checkIoctl(sample, cmd);
      return stateOf(mdev).ioctl(cmd, arg);
    },
    mmap(mdev, vma) {
      checkVma(sample, vma);
      return stateOf(mdev).mmap(vma);
    },
  };
}

/** A type of a display sample, named by its type group (`mdpy-vga`, `mbochs-small`, ...). */
export interface DisplayTypeDef {
  group: string;
}

/**
 * A display sample's parent driver (the sample's dev_init): a class and a device of the
 * sample's name on the VFIO mediated bus, with one type group per type carrying `name`,
 * `description`, `device_api` and `available_instances`. Creating an mdev makes its state
 * (which refuses what does not fit) and adds the mdev's `vendor` attribute.
 */
export abstract class DisplayParent<T extends DisplayTypeDef, S extends DisplayState> {
  readonly cls: Class;
  readonly parent: Device;
  readonly instances = new Set<S>();
  private readonly sample: string;
  private readonly types: readonly T[];
  private readonly ops: MdevVfioOps;

  constructor(sample: string, types: readonly T[], ops: MdevVfioOps) {
    this.sample = sample;
    this.types = types;
    this.ops = ops;
    this.cls = new Class(sample);
    this.cls.register();
    this.parent = new Device({ name: sample, class: this.cls });
    try {
      this.parent.add();
      mdevVfioRegisterDevice(this.parent, {
        supportedTypeGroups: types.map((t) => ({
          name: t.group,
          attrs: [
            { name: 'name', mode: 0o444, show: (type) => type.name },
            { name: 'description', mode: 0o444, show: () => this.describe(t) },
            { name: 'device_api', mode: 0o444, show: () => VFIO_DEVICE_API_PCI_STRING },
            {
              name: 'available_instances',
              mode: 0o444,
              show: () => String(this.availableInstances(t)),
            },
          ],
        })),
        create: (type, mdev) => this.create(type.group.name, mdev),
        remove: (mdev) => this.remove(mdev),
      });
    } catch (err) {
      this.parent.unregister();
      this.cls.unregister();
      throw err;
    }
  }

  /** The type's `description` attribute. */
  protected abstract describe(type: T): string;
  /** The type's `available_instances`. */
  protected abstract availableInstances(type: T): number;
  /** The state of a new mdev of `type`; ENOMEM (or another error) when it does not fit. */
  protected abstract newState(type: T, mdev: MdevDevice): S;
  /** The one attribute of the mdev's `vendor` group. */
  protected abstract vendorAttribute(type: T): Attribute;

  /** The sample's create(). */
  private create(group: string, mdev: MdevDevice): void {
    const type = this.types.find((t) => t.group === group);
    if (!type) throw new KernelError('EINVAL', `${this.sample}: unknown type ${group}`);
    const s = this.newState(type, mdev);
    this.instances.add(s);
    mdevSetDrvdata(mdev, s);
    mdev.groups = [...mdev.groups, { name: 'vendor', attrs: [this.vendorAttribute(type)] }];
    mdevVfioSetOps(mdev, this.ops);
  }

  /** The sample's remove(). */
  private remove(mdev: MdevDevice): void {
    const s = mdevGetDrvdata<S | null>(mdev);
    if (!s || !this.instances.has(s)) {
      throw new KernelError('EINVAL', `${this.sample}: unknown ${mdev.uuid}`);
    }
    this.instances.delete(s);
    mdevSetDrvdata(mdev, null);
  }

  /** The state of one of this parent's mdevs (for tests and tools). */
  stateOf(mdev: MdevDevice): S {
    const s = mdevGetDrvdata<S | null>(mdev);
    if (!s || !this.instances.has(s)) {
      throw new KernelError('ENODEV', `${this.sample}: ${mdev.uuid} has no state`);
    }
    return s;
  }

  /** The sample's dev_exit(): every device is removed, then the parent and its class. */
  exit(): void {
    mdevVfioUnregisterDevice(this.parent);
    this.parent.unregister();
    this.cls.unregister();
  }
}

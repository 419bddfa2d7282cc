import { Class, Device, KernelError } from '@mdev/driver-core';
import { type MdevDevice, mdevGetDrvdata, mdevSetDrvdata } from '@mdev/mdev-core';
import {
  DRM_PLANE_TYPE_PRIMARY,
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
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_GFX_PLANE_TYPE_REGION,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  type VfioGfxPlaneInfo,
  type VfioVma,
  vfioDeviceInfo,
  vfioGfxPlaneInfo,
  vfioIrqInfo,
  vfioRegionInfo,
  vfioRegionInfoReply,
  vfioSplitAccess,
} from '@mdev/mdev-vfio';
import type { PciConfigSpace } from '../pci';
import { displayConfigWrite, mdpyConfigSpace } from './config';
import {
  MDPY_CONFIG_SPACE_SIZE,
  MDPY_DISPLAY_REGION,
  MDPY_MAX_DEVICES,
  MDPY_MEMORY_BAR_OFFSET,
  MDPY_NAME,
  MDPY_TYPES,
  type MdpyTypeDef,
} from './defs';
import { MdpyFramebuffer } from './framebuffer';

/** A region's place in the device file, as GET_REGION_INFO reports it. */
export interface RegionInfo {
  flags: number;
  size: number;
  offset: number;
}

/** The plane fields QUERY_GFX_PLANE fills in (the rest of the struct is the caller's). */
export type GfxPlane = Omit<VfioGfxPlaneInfo, 'argsz' | 'flags' | 'drmPlaneType'>;

/** Mirrors struct mdev_state of mdpy.c: one display. */
export class MdpyState {
  readonly mdev: MdevDevice;
  readonly type: MdpyTypeDef;
  readonly fb: MdpyFramebuffer;
  readonly config: PciConfigSpace;
  /** Times the device is open (the kernel takes a module reference per open). */
  openCount = 0;

  constructor(mdev: MdevDevice, type: MdpyTypeDef) {
    this.mdev = mdev;
    this.type = type;
    this.fb = new MdpyFramebuffer(type);
    this.config = mdpyConfigSpace(type, this.fb.memsize);
    this.reset();
  }

  get memsize(): number {
    return this.fb.memsize;
  }

  /** mdpy_reset(): redraws the grey gradient. */
  reset(): void {
    this.fb.drawGradient();
  }

  /**
   * mdev_access() for one piece: config space below MDPY_CONFIG_SPACE_SIZE, the framebuffer in
   * [MDPY_MEMORY_BAR_OFFSET, + memsize). False for anything else. The sample copied to and from
   * the start of the framebuffer whatever the offset; here the offset counts.
   */
  access(buf: Uint8Array, pos: number, isWrite: boolean): boolean {
    const count = buf.length;
    if (pos + count <= MDPY_CONFIG_SPACE_SIZE) {
      return isWrite ? displayConfigWrite(this.config, pos, buf) : this.config.read(pos, buf);
    }
    if (pos >= MDPY_MEMORY_BAR_OFFSET && pos + count <= MDPY_MEMORY_BAR_OFFSET + this.memsize) {
      const fb = this.fb.view(pos - MDPY_MEMORY_BAR_OFFSET, count);
      if (isWrite) fb.set(buf);
      else buf.set(fb);
      return true;
    }
    return false;
  }

  /**
   * mdpy_read()/mdpy_write(): the framebuffer is copied in one go; config space goes through
   * naturally aligned pieces. EFAULT for an access outside both.
   */
  rw(buf: Uint8Array, pos: number, isWrite: boolean): number {
    if (pos >= MDPY_MEMORY_BAR_OFFSET && this.access(buf, pos, isWrite)) return buf.length;
    return vfioSplitAccess(buf, pos, (piece, at) => this.access(piece, at, isWrite));
  }

  /** mdpy_get_region_info(): EINVAL for an index past the PCI regions other than the display. */
  regionInfo(index: number): RegionInfo {
    if (index >= VFIO_PCI_NUM_REGIONS && index !== MDPY_DISPLAY_REGION) {
      throw new KernelError('EINVAL', `mdpy: no region ${index}`);
    }
    switch (index) {
      case VFIO_PCI_CONFIG_REGION_INDEX:
        return {
          offset: 0,
          size: MDPY_CONFIG_SPACE_SIZE,
          flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
        };
      case VFIO_PCI_BAR0_REGION_INDEX:
      case MDPY_DISPLAY_REGION:
        return {
          offset: MDPY_MEMORY_BAR_OFFSET,
          size: this.memsize,
          flags:
            VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
        };
      default:
        return { offset: 0, size: 0, flags: 0 };
    }
  }

  /**
   * mdpy_query_gfx_plane(). PROBE|REGION answers "supported" (0); any other PROBE, or a query
   * that is not exactly REGION, is EINVAL. The primary plane is the whole framebuffer region;
   * unlike the sample, which answered every plane type with it, other planes are reported
   * disabled (all zero), as vfio.h describes a plane the device does not show.
   */
  queryGfxPlane(flags: number, drmPlaneType: number): GfxPlane | null {
    if (flags & VFIO_GFX_PLANE_TYPE_PROBE) {
      if (flags === (VFIO_GFX_PLANE_TYPE_PROBE | VFIO_GFX_PLANE_TYPE_REGION)) return null;
      throw new KernelError('EINVAL', `mdpy: plane type probe 0x${flags.toString(16)} refused`);
    }
    if (flags !== VFIO_GFX_PLANE_TYPE_REGION) {
      throw new KernelError('EINVAL', `mdpy: plane flags 0x${flags.toString(16)} refused`);
    }
    const none = { drmFormatMod: 0, xPos: 0, yPos: 0, xHot: 0, yHot: 0 };
    if (drmPlaneType !== DRM_PLANE_TYPE_PRIMARY) {
      return { ...none, drmFormat: 0, width: 0, height: 0, stride: 0, size: 0, dmabufId: 0 };
    }
    return {
      ...none,
      drmFormat: this.type.format,
      width: this.type.width,
      height: this.type.height,
      stride: this.fb.stride,
      size: this.memsize,
      dmabufId: MDPY_DISPLAY_REGION, // the union's region_index
    };
  }

  /**
   * mdpy_mmap(): only the framebuffer, from its first page, at most memsize bytes, shared.
   * EINVAL otherwise. The view is the framebuffer itself.
   */
  mmap(vma: VfioVma): Uint8Array {
    if (vma.pgoff !== MDPY_MEMORY_BAR_OFFSET / PAGE_SIZE) {
      throw new KernelError('EINVAL', `mdpy: mmap at page ${vma.pgoff} is not the framebuffer`);
    }
    if (vma.length > this.memsize) {
      throw new KernelError('EINVAL', `mdpy: mmap of ${vma.length} bytes exceeds ${this.memsize}`);
    }
    if (!vma.shared) throw new KernelError('EINVAL', 'mdpy: mmap must be shared');
    return this.fb.view(0, vma.length);
  }

  /** mdpy_ioctl(). ENOTTY for a request the device does not know. */
  ioctl(cmd: number, arg: Uint8Array | null): number {
    switch (cmd) {
      case VFIO_DEVICE_GET_INFO: {
        const req = vfioDeviceInfo.copyFromUser(arg);
        if (req.argsz < vfioDeviceInfo.minsz) throw new KernelError('EINVAL', 'mdpy: argsz');
        vfioDeviceInfo.copyToUser(arg, {
          argsz: req.argsz,
          flags: VFIO_DEVICE_FLAGS_PCI,
          numRegions: VFIO_PCI_NUM_REGIONS,
          numIrqs: VFIO_PCI_NUM_IRQS,
        });
        return 0;
      }
      case VFIO_DEVICE_GET_REGION_INFO: {
        const req = vfioRegionInfo.copyFromUser(arg);
        if (req.argsz < vfioRegionInfo.minsz) throw new KernelError('EINVAL', 'mdpy: argsz');
        vfioRegionInfoReply(arg, req, { index: req.index, ...this.regionInfo(req.index) });
        return 0;
      }
      case VFIO_DEVICE_GET_IRQ_INFO: {
        const req = vfioIrqInfo.copyFromUser(arg);
        if (req.argsz < vfioIrqInfo.minsz || req.index >= VFIO_PCI_NUM_IRQS) {
          throw new KernelError('EINVAL', `mdpy: no irq index ${req.index}`);
        }
        // mdpy has no interrupts: every index has zero vectors.
        vfioIrqInfo.copyToUser(arg, { argsz: req.argsz, index: req.index, flags: 0, count: 0 });
        return 0;
      }
      case VFIO_DEVICE_QUERY_GFX_PLANE: {
        const req = vfioGfxPlaneInfo.copyFromUser(arg);
        if (req.argsz < vfioGfxPlaneInfo.minsz) throw new KernelError('EINVAL', 'mdpy: argsz');
        const plane = this.queryGfxPlane(req.flags, req.drmPlaneType);
        if (plane) vfioGfxPlaneInfo.copyToUser(arg, { ...req, ...plane });
        return 0;
      }
      case VFIO_DEVICE_SET_IRQS:
        throw new KernelError('EINVAL', 'mdpy: no interrupts to set');
      case VFIO_DEVICE_RESET:
        this.reset();
        return 0;
      default:
        throw new KernelError('ENOTTY', `mdpy: unknown ioctl 0x${cmd.toString(16)}`);
    }
  }
}

function stateOf(mdev: MdevDevice): MdpyState {
  const s = mdevGetDrvdata<MdpyState | null>(mdev);
  if (!s) throw new KernelError('ENODEV', `mdpy: ${mdev.uuid} has no state`);
  return s;
}

/** The VFIO ops of every mdpy device (mdev_vfio_ops of mdpy.c). */
export const mdpyVfioOps: MdevVfioOps = {
  open(mdev) {
    stateOf(mdev).openCount++;
  },
  release(mdev) {
    const s = mdevGetDrvdata<MdpyState | null>(mdev);
    if (s && s.openCount > 0) s.openCount--;
  },
  read: (mdev, buf, pos) => stateOf(mdev).rw(buf, pos, false),
  write: (mdev, buf, pos) => stateOf(mdev).rw(buf, pos, true),
  ioctl: (mdev, cmd, arg) => stateOf(mdev).ioctl(cmd, arg),
  mmap: (mdev, vma) => stateOf(mdev).mmap(vma),
};

/** Options of `mdpyInit`. */
export interface MdpyOptions {
  /** The `count` module parameter: how many mdpy devices may exist at once (default 4). */
  maxDevices?: number;
}

/**
 * The mdpy parent: class and device `mdpy` on the VFIO mediated bus with the types mdpy-vga,
 * mdpy-xga and mdpy-hd. At most `maxDevices` displays exist at once, of all types together.
 */
export class Mdpy {
  readonly cls: Class;
  readonly parent: Device;
  readonly maxDevices: number;
  readonly instances = new Set<MdpyState>();

  constructor(options: MdpyOptions = {}) {
    const max = options.maxDevices ?? MDPY_MAX_DEVICES;
    if (!Number.isInteger(max) || max < 0) throw new RangeError(`mdpy: bad maxDevices ${max}`);
    this.maxDevices = max;
    this.cls = new Class(MDPY_NAME);
    this.cls.register();
    this.parent = new Device({ name: MDPY_NAME, class: this.cls });
    try {
      this.parent.add();
      mdevVfioRegisterDevice(this.parent, {
        supportedTypeGroups: MDPY_TYPES.map((t) => ({
          name: t.group,
          attrs: [
            { name: 'name', mode: 0o444, show: (type) => type.name },
            {
              name: 'description',
              mode: 0o444,
              show: () => `virtual display, ${t.width}x${t.height} framebuffer`,
            },
            { name: 'device_api', mode: 0o444, show: () => VFIO_DEVICE_API_PCI_STRING },
            {
              name: 'available_instances',
              mode: 0o444,
              show: () => String(this.maxDevices - this.instances.size),
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

  /** mdpy_create(): ENOMEM once `maxDevices` displays exist (the sample's check). */
  private create(group: string, mdev: MdevDevice): void {
    if (this.instances.size >= this.maxDevices) {
      throw new KernelError('ENOMEM', `mdpy: all ${this.maxDevices} displays are in use`);
    }
    const type = MDPY_TYPES.find((t) => t.group === group);
    if (!type) throw new KernelError('EINVAL', `mdpy: unknown type ${group}`);
    const s = new MdpyState(mdev, type);
    this.instances.add(s);
    mdevSetDrvdata(mdev, s);
    mdev.groups = [
      ...mdev.groups,
      {
        name: 'vendor',
        attrs: [{ name: 'resolution', mode: 0o444, show: () => `${type.width}x${type.height}` }],
      },
    ];
    mdevVfioSetOps(mdev, mdpyVfioOps);
  }

  /** mdpy_remove(). */
  private remove(mdev: MdevDevice): void {
    const s = mdevGetDrvdata<MdpyState | null>(mdev);
    if (!s || !this.instances.has(s)) throw new KernelError('EINVAL', `mdpy: unknown ${mdev.uuid}`);
    this.instances.delete(s);
    mdevSetDrvdata(mdev, null);
  }

  /** The state of an mdpy mdev (for tests and tools). */
  stateOf(mdev: MdevDevice): MdpyState {
    return stateOf(mdev);
  }

  /** mdpy_dev_exit(): every mdpy device is removed, then the parent and its class. */
  exit(): void {
    mdevVfioUnregisterDevice(this.parent);
    this.parent.unregister();
    this.cls.unregister();
  }
}

/** Mirrors mdpy_dev_init(): registers the mdpy parent. */
export function mdpyInit(options: MdpyOptions = {}): Mdpy {
  return new Mdpy(options);
}

/** Mirrors mdpy_dev_exit(). */
export function mdpyExit(mdpy: Mdpy): void {
  mdpy.exit();
}

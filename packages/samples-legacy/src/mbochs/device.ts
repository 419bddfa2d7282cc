import { Class, Device, KernelError } from '@mdev/driver-core';
import { type MdevDevice, mdevGetDrvdata, mdevSetDrvdata } from '@mdev/mdev-core';
import {
  type DmaBuf,
  DRM_PLANE_TYPE_PRIMARY,
  type MdevVfioOps,
  mdevVfioRegisterDevice,
  mdevVfioSetOps,
  mdevVfioUnregisterDevice,
  PAGE_SIZE,
  VFIO_DEVICE_API_PCI_STRING,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_GET_GFX_DMABUF,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_QUERY_GFX_PLANE,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GFX_PLANE_TYPE_DMABUF,
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR2_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  VFIO_REGION_SUBTYPE_GFX_EDID,
  VFIO_REGION_TYPE_GFX,
  type VfioInfoCap,
  type VfioVma,
  vfioCapType,
  vfioDeviceInfo,
  vfioGfxPlaneInfo,
  vfioIrqInfo,
  vfioRegionInfo,
  vfioRegionInfoReply,
  vfioSplitAccess,
} from '@mdev/mdev-vfio';
import { displayConfigWrite } from '../mdpy/config';
import type { GfxPlane, RegionInfo } from '../mdpy/device';
import type { PciConfigSpace } from '../pci';
import { mbochsConfigSpace } from './config';
import {
  MBOCHS_CONFIG_SPACE_SIZE,
  MBOCHS_EDID_OFFSET,
  MBOCHS_EDID_REGION_INDEX,
  MBOCHS_EDID_SIZE,
  MBOCHS_MAX_MBYTES,
  MBOCHS_MEMORY_BAR_OFFSET,
  MBOCHS_MMIO_BAR_OFFSET,
  MBOCHS_MMIO_BAR_SIZE,
  MBOCHS_MMIO_DISPI_BASE,
  MBOCHS_MMIO_DISPI_END,
  MBOCHS_MMIO_EDID_BASE,
  MBOCHS_MMIO_EDID_END,
  MBOCHS_NAME,
  MBOCHS_NUM_REGIONS,
  MBOCHS_TYPES,
  type MbochsTypeDef,
} from './defs';
import { DispiRegisters } from './dispi';
import { MbochsDmabuf } from './dmabuf';
import { MbochsEdid } from './edid';
import { type MbochsMode, mbochsCheckFramebuffer, mbochsModesEqual } from './framebuffer';
import { MbochsMemory } from './memory';

const RW = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

/** Mirrors struct mdev_state of mbochs.c: one bochs-dispi display with its video memory. */
export class MbochsState {
  readonly mdev: MdevDevice;
  readonly type: MbochsTypeDef;
  readonly memsize: number;
  readonly memory: MbochsMemory;
  readonly config: PciConfigSpace;
  readonly dispi: DispiRegisters;
  readonly edid: MbochsEdid;
  /** dmabufs, in the order QUERY_GFX_PLANE made them. */
  readonly dmabufs: MbochsDmabuf[] = [];
  /** The id the next dmabuf gets (next_id). */
  nextId = 1;
  /** The dmabuf id last reported for the primary plane (active_id); 0 = none. */
  activeId = 0;
  /** Times the device is open. */
  openCount = 0;

  constructor(mdev: MdevDevice, type: MbochsTypeDef) {
    this.mdev = mdev;
    this.type = type;
    this.memsize = type.mbytes * 1024 * 1024;
    this.memory = new MbochsMemory(this.memsize);
    this.config = mbochsConfigSpace(this.memsize);
    this.dispi = new DispiRegisters(this.memsize, { maxX: type.maxX, maxY: type.maxY });
    this.edid = new MbochsEdid(type.maxX, type.maxY);
  }

  /** mbochs_reset(): the dispi registers to their power-on values. Video memory is kept. */
  reset(): void {
    this.dispi.reset();
  }

  /** The MMIO BAR (handle_mmio_read/handle_mmio_write), one naturally aligned piece. */
  private mmio(off: number, buf: Uint8Array, isWrite: boolean): void {
    const dispi = off >= MBOCHS_MMIO_DISPI_BASE && off <= MBOCHS_MMIO_DISPI_END;
    if (isWrite) {
      // The dispi registers take 16-bit writes; vga ioports and qemu extended registers are
      // not emulated and, like every other offset, ignore writes.
      if (dispi && buf.length === 2) {
        this.dispi.write((off - MBOCHS_MMIO_DISPI_BASE) / 2, buf[0]! | (buf[1]! << 8));
      }
      return;
    }
    if (off >= MBOCHS_MMIO_EDID_BASE && off + buf.length - 1 <= MBOCHS_MMIO_EDID_END) {
      this.edid.readForGuest(off - MBOCHS_MMIO_EDID_BASE, buf);
    } else if (dispi && buf.length === 2) {
      const v = this.dispi.read((off - MBOCHS_MMIO_DISPI_BASE) / 2);
      buf[0] = v & 0xff;
      buf[1] = v >> 8;
    } else {
      buf.fill(0);
    }
  }

  /**
   * mdev_access() for one piece at file offset `pos`: config space, the MMIO BAR, the EDID
   * region or video memory. False for anything else. The sample subtracted the MMIO BAR's base
   * from video memory offsets (landing two pages off); here the memory BAR's own base is used.
   */
  access(buf: Uint8Array, pos: number, isWrite: boolean): boolean {
    const count = buf.length;
    if (pos + count <= MBOCHS_CONFIG_SPACE_SIZE) {
      return isWrite ? displayConfigWrite(this.config, pos, buf) : this.config.read(pos, buf);
    }
    if (
      pos >= MBOCHS_MMIO_BAR_OFFSET &&
      pos + count <= MBOCHS_MMIO_BAR_OFFSET + MBOCHS_MMIO_BAR_SIZE
    ) {
      this.mmio(pos - MBOCHS_MMIO_BAR_OFFSET, buf, isWrite);
      return true;
    }
    if (pos >= MBOCHS_EDID_OFFSET && pos + count <= MBOCHS_EDID_OFFSET + MBOCHS_EDID_SIZE) {
      this.edid.access(pos - MBOCHS_EDID_OFFSET, buf, isWrite);
      return true;
    }
    if (pos >= MBOCHS_MEMORY_BAR_OFFSET && pos + count <= MBOCHS_MEMORY_BAR_OFFSET + this.memsize) {
      const mem = this.memory.view(pos - MBOCHS_MEMORY_BAR_OFFSET, count);
      if (isWrite) mem.set(buf);
      else buf.set(mem);
      return true;
    }
    return false;
  }

  /**
   * mbochs_read()/mbochs_write(): video memory is copied in one go; registers go through
   * naturally aligned pieces. EFAULT for an access outside every region.
   */
  rw(buf: Uint8Array, pos: number, isWrite: boolean): number {
    if (pos >= MBOCHS_MEMORY_BAR_OFFSET && this.access(buf, pos, isWrite)) return buf.length;
    return vfioSplitAccess(buf, pos, (piece, at) => this.access(piece, at, isWrite));
  }

  /** mbochs_get_region_info(): EINVAL past the EDID region; the EDID region carries its type. */
  regionInfo(index: number): RegionInfo & { caps: VfioInfoCap[] } {
    if (!Number.isInteger(index) || index < 0 || index >= MBOCHS_NUM_REGIONS) {
      throw new KernelError('EINVAL', `mbochs: no region ${index}`);
    }
    switch (index) {
      case VFIO_PCI_CONFIG_REGION_INDEX:
        return { offset: 0, size: MBOCHS_CONFIG_SPACE_SIZE, flags: RW, caps: [] };
      case VFIO_PCI_BAR0_REGION_INDEX:
        return {
          offset: MBOCHS_MEMORY_BAR_OFFSET,
          size: this.memsize,
          flags: RW | VFIO_REGION_INFO_FLAG_MMAP,
          caps: [],
        };
      case VFIO_PCI_BAR2_REGION_INDEX:
        return { offset: MBOCHS_MMIO_BAR_OFFSET, size: MBOCHS_MMIO_BAR_SIZE, flags: RW, caps: [] };
      case MBOCHS_EDID_REGION_INDEX:
        return {
          offset: MBOCHS_EDID_OFFSET,
          size: MBOCHS_EDID_SIZE,
          flags: RW,
          caps: [vfioCapType(VFIO_REGION_TYPE_GFX, VFIO_REGION_SUBTYPE_GFX_EDID)],
        };
      default:
        return { offset: 0, size: 0, flags: 0, caps: [] };
    }
  }

  /** The mode the guest programmed, or EINVAL (mbochs_check_framebuffer). */
  mode(): MbochsMode {
    return mbochsCheckFramebuffer((i) => this.dispi.regs[i] ?? 0, this.memsize);
  }

  /**
   * mbochs_query_gfx_plane(). PROBE|DMABUF answers "supported"; any other PROBE, or a query that
   * is not exactly DMABUF, is EINVAL. For the primary plane with a valid mode the dmabuf of that
   * mode is found or made (the sample dropped the new one and failed with ENOMEM); a disabled
   * or invalid mode, or another plane, is reported all zero.
   */
  queryGfxPlane(flags: number, drmPlaneType: number): GfxPlane | null {
    if (flags & VFIO_GFX_PLANE_TYPE_PROBE) {
      if (flags === (VFIO_GFX_PLANE_TYPE_PROBE | VFIO_GFX_PLANE_TYPE_DMABUF)) return null;
      throw new KernelError('EINVAL', `mbochs: plane type probe 0x${flags.toString(16)} refused`);
    }
    if (flags !== VFIO_GFX_PLANE_TYPE_DMABUF) {
      throw new KernelError('EINVAL', `mbochs: plane flags 0x${flags.toString(16)} refused`);
    }
    const none = { drmFormatMod: 0, xPos: 0, yPos: 0, xHot: 0, yHot: 0 };
    let mode: MbochsMode | null = null;
    if (drmPlaneType === DRM_PLANE_TYPE_PRIMARY) {
      try {
        mode = this.mode();
      } catch (err) {
        if (!KernelError.is(err, 'EINVAL')) throw err;
      }
    }
    let plane: GfxPlane;
    if (!mode) {
      plane = { ...none, drmFormat: 0, width: 0, height: 0, stride: 0, size: 0, dmabufId: 0 };
    } else {
      const m = mode;
      let buf = this.dmabufs.find((d) => mbochsModesEqual(d.mode, m));
      if (!buf) {
        buf = new MbochsDmabuf(this.nextId++, m, this.memory);
        this.dmabufs.push(buf);
      }
      plane = {
        ...none,
        drmFormat: m.drmFormat,
        width: m.width,
        height: m.height,
        stride: m.stride,
        size: m.size,
        dmabufId: buf.id,
      };
    }
    if (drmPlaneType === DRM_PLANE_TYPE_PRIMARY) this.activeId = plane.dmabufId;
    return plane;
  }

  /**
   * mbochs_get_gfx_dmabuf(): the dma-buf of a dmabuf id QUERY_GFX_PLANE reported. ENOENT for an
   * unknown id, EINVAL when the scanout does not start on a page.
   */
  getGfxDmabuf(id: number): DmaBuf {
    const buf = this.dmabufs.find((d) => d.id === id);
    if (!buf) throw new KernelError('ENOENT', `mbochs: no dmabuf ${id}`);
    return buf.export();
  }

  /**
   * mbochs_mmap(): video memory only, from its first page, at most memsize bytes, shared.
   * EINVAL otherwise. The view is video memory itself.
   */
  mmap(vma: VfioVma): Uint8Array {
    if (vma.pgoff !== MBOCHS_MEMORY_BAR_OFFSET / PAGE_SIZE) {
      throw new KernelError('EINVAL', `mbochs: mmap at page ${vma.pgoff} is not video memory`);
    }
    if (vma.length > this.memsize) {
      throw new KernelError(
        'EINVAL',
        `mbochs: mmap of ${vma.length} bytes exceeds ${this.memsize}`,
      );
    }
    if (!vma.shared) throw new KernelError('EINVAL', 'mbochs: mmap must be shared');
    return this.memory.view(0, vma.length);
  }

  /**
   * mbochs_close(): dmabufs are unlinked (an exported one lives on until its dma-buf closes)
   * and video memory is given back.
   */
  close(): void {
    for (const d of this.dmabufs.splice(0)) d.unlinked = true;
    this.activeId = 0;
    this.memory.drop();
  }

  /** mbochs_ioctl(). ENOTTY for a request the device does not know. */
  ioctl(cmd: number, arg: Uint8Array | null): number {
    switch (cmd) {
      case VFIO_DEVICE_GET_INFO: {
        const req = vfioDeviceInfo.copyFromUser(arg);
        if (req.argsz < vfioDeviceInfo.minsz) throw new KernelError('EINVAL', 'mbochs: argsz');
        vfioDeviceInfo.copyToUser(arg, {
          argsz: req.argsz,
          flags: VFIO_DEVICE_FLAGS_PCI,
          numRegions: MBOCHS_NUM_REGIONS,
          numIrqs: VFIO_PCI_NUM_IRQS,
        });
        return 0;
      }
      case VFIO_DEVICE_GET_REGION_INFO: {
        const req = vfioRegionInfo.copyFromUser(arg);
        if (req.argsz < vfioRegionInfo.minsz) throw new KernelError('EINVAL', 'mbochs: argsz');
        const { caps, ...info } = this.regionInfo(req.index);
        vfioRegionInfoReply(arg, req, { index: req.index, ...info }, caps);
        return 0;
      }
      case VFIO_DEVICE_GET_IRQ_INFO: {
        const req = vfioIrqInfo.copyFromUser(arg);
        if (req.argsz < vfioIrqInfo.minsz || req.index >= VFIO_PCI_NUM_IRQS) {
          throw new KernelError('EINVAL', `mbochs: no irq index ${req.index}`);
        }
        // mbochs has no interrupts: every index has zero vectors.
        vfioIrqInfo.copyToUser(arg, { argsz: req.argsz, index: req.index, flags: 0, count: 0 });
        return 0;
      }
      case VFIO_DEVICE_QUERY_GFX_PLANE: {
        const req = vfioGfxPlaneInfo.copyFromUser(arg);
        if (req.argsz < vfioGfxPlaneInfo.minsz) throw new KernelError('EINVAL', 'mbochs: argsz');
        const plane = this.queryGfxPlane(req.flags, req.drmPlaneType);
        if (plane) vfioGfxPlaneInfo.copyToUser(arg, { ...req, ...plane });
        return 0;
      }
      case VFIO_DEVICE_GET_GFX_DMABUF: {
        // get_user(dmabuf_id, (__u32 __user *)arg)
        if (!arg || arg.length < 4) throw new KernelError('EFAULT', 'mbochs: no dmabuf id');
        const id = new DataView(arg.buffer, arg.byteOffset, 4).getUint32(0, true);
        return this.getGfxDmabuf(id).fd;
      }
      case VFIO_DEVICE_SET_IRQS:
        throw new KernelError('EINVAL', 'mbochs: no interrupts to set');
      case VFIO_DEVICE_RESET:
        this.reset();
        return 0;
      default:
        throw new KernelError('ENOTTY', `mbochs: unknown ioctl 0x${cmd.toString(16)}`);
    }
  }
}

function stateOf(mdev: MdevDevice): MbochsState {
  const s = mdevGetDrvdata<MbochsState | null>(mdev);
  if (!s) throw new KernelError('ENODEV', `mbochs: ${mdev.uuid} has no state`);
  return s;
}

/** The VFIO ops of every mbochs device (mdev_vfio_ops of mbochs.c). */
export const mbochsVfioOps: MdevVfioOps = {
  open(mdev) {
    stateOf(mdev).openCount++;
  },
  release(mdev) {
    const s = mdevGetDrvdata<MbochsState | null>(mdev);
    if (!s) return;
    if (s.openCount > 0) s.openCount--;
    if (s.openCount === 0) s.close();
  },
  read: (mdev, buf, pos) => stateOf(mdev).rw(buf, pos, false),
  write: (mdev, buf, pos) => stateOf(mdev).rw(buf, pos, true),
  ioctl: (mdev, cmd, arg) => stateOf(mdev).ioctl(cmd, arg),
  mmap: (mdev, vma) => stateOf(mdev).mmap(vma),
};

/** Options of `mbochsInit`. */
export interface MbochsOptions {
  /** The `count` module parameter: megabytes of video memory for all devices (default 256). */
  maxMbytes?: number;
}

/**
 * The mbochs parent: class and device `mbochs` on the VFIO mediated bus with the types
 * mbochs-small (4 MB), mbochs-medium (16 MB) and mbochs-large (64 MB), sharing `maxMbytes`.
 */
export class Mbochs {
  readonly cls: Class;
  readonly parent: Device;
  readonly maxMbytes: number;
  readonly instances = new Set<MbochsState>();

  constructor(options: MbochsOptions = {}) {
    const max = options.maxMbytes ?? MBOCHS_MAX_MBYTES;
    if (!Number.isInteger(max) || max < 0) throw new RangeError(`mbochs: bad maxMbytes ${max}`);
    this.maxMbytes = max;
    this.cls = new Class(MBOCHS_NAME);
    this.cls.register();
    this.parent = new Device({ name: MBOCHS_NAME, class: this.cls });
    try {
      this.parent.add();
      mdevVfioRegisterDevice(this.parent, {
        supportedTypeGroups: MBOCHS_TYPES.map((t) => ({
          name: t.group,
          attrs: [
            { name: 'name', mode: 0o444, show: (type) => type.name },
            {
              name: 'description',
              mode: 0o444,
              show: () => `virtual display, ${t.mbytes} MB video memory`,
            },
            { name: 'device_api', mode: 0o444, show: () => VFIO_DEVICE_API_PCI_STRING },
            {
              name: 'available_instances',
              mode: 0o444,
              show: () => String(Math.floor((this.maxMbytes - this.usedMbytes) / t.mbytes)),
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

  /** Megabytes of video memory the existing devices hold (mbochs_used_mbytes). */
  get usedMbytes(): number {
    let used = 0;
    for (const s of this.instances) used += s.type.mbytes;
    return used;
  }

  /** mbochs_create(): ENOMEM when the type's memory does not fit in what is left. */
  private create(group: string, mdev: MdevDevice): void {
    const type = MBOCHS_TYPES.find((t) => t.group === group);
    if (!type) throw new KernelError('EINVAL', `mbochs: unknown type ${group}`);
    if (type.mbytes + this.usedMbytes > this.maxMbytes) {
      throw new KernelError(
        'ENOMEM',
        `mbochs: ${type.mbytes} MB do not fit, ${this.maxMbytes - this.usedMbytes} MB left`,
      );
    }
    const s = new MbochsState(mdev, type);
    this.instances.add(s);
    mdevSetDrvdata(mdev, s);
    mdev.groups = [
      ...mdev.groups,
      {
        name: 'vendor',
        attrs: [{ name: 'memory', mode: 0o444, show: () => `${type.mbytes} MB` }],
      },
    ];
    mdevVfioSetOps(mdev, mbochsVfioOps);
  }

  /** mbochs_remove(). */
  private remove(mdev: MdevDevice): void {
    const s = mdevGetDrvdata<MbochsState | null>(mdev);
    if (!s || !this.instances.has(s)) {
      throw new KernelError('EINVAL', `mbochs: unknown ${mdev.uuid}`);
    }
    this.instances.delete(s);
    mdevSetDrvdata(mdev, null);
  }

  /** The state of an mbochs mdev (for tests and tools). */
  stateOf(mdev: MdevDevice): MbochsState {
    return stateOf(mdev);
  }

  /** mbochs_dev_exit(): every mbochs device is removed, then the parent and its class. */
  exit(): void {
    mdevVfioUnregisterDevice(this.parent);
    this.parent.unregister();
    this.cls.unregister();
  }
}

/** Mirrors mbochs_dev_init(): registers the mbochs parent. */
export function mbochsInit(options: MbochsOptions = {}): Mbochs {
  return new Mbochs(options);
}

/** Mirrors mbochs_dev_exit(). */
export function mbochsExit(mbochs: Mbochs): void {
  mbochs.exit();
}

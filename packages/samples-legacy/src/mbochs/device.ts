import { type Attribute, KernelError } from '@mdev/driver-core';
import type { MdevDevice } from '@mdev/mdev-core';
import {
  type DmaBuf,
  DRM_PLANE_TYPE_PRIMARY,
  type MdevVfioOps,
  VFIO_DEVICE_GET_GFX_DMABUF,
  VFIO_GFX_PLANE_TYPE_DMABUF,
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR2_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  VFIO_REGION_SUBTYPE_GFX_EDID,
  VFIO_REGION_TYPE_GFX,
  vfioCapType,
} from '@mdev/mdev-vfio';
import {
  DisplayParent,
  DisplayState,
  disabledPlane,
  displayConfigWrite,
  displayVfioOps,
  type GfxPlane,
  type RegionInfo,
} from '../display';
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
export class MbochsState extends DisplayState {
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

  constructor(mdev: MdevDevice, type: MbochsTypeDef) {
    super(mdev);
    this.type = type;
    this.memsize = type.mbytes * 1024 * 1024;
    this.memory = new MbochsMemory(this.memsize);
    this.config = mbochsConfigSpace(this.memsize);
    this.dispi = new DispiRegisters(this.memsize, { maxX: type.maxX, maxY: type.maxY });
    this.edid = new MbochsEdid(type.maxX, type.maxY);
  }

  get sample(): string {
    return MBOCHS_NAME;
  }
  get numRegions(): number {
    return MBOCHS_NUM_REGIONS;
  }
  get memoryBarOffset(): number {
    return MBOCHS_MEMORY_BAR_OFFSET;
  }
  memoryView(offset: number, length: number): Uint8Array {
    return this.memory.view(offset, length);
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

  /** mbochs_get_region_info(): EINVAL past the EDID region; the EDID region carries its type. */
  regionInfo(index: number): RegionInfo {
    if (!Number.isInteger(index) || index < 0 || index >= MBOCHS_NUM_REGIONS) {
      throw new KernelError('EINVAL', `mbochs: no region ${index}`);
    }
    switch (index) {
      case VFIO_PCI_CONFIG_REGION_INDEX:
        return { offset: 0, size: MBOCHS_CONFIG_SPACE_SIZE, flags: RW };
      case VFIO_PCI_BAR0_REGION_INDEX:
        return {
          offset: MBOCHS_MEMORY_BAR_OFFSET,
          size: this.memsize,
          flags: RW | VFIO_REGION_INFO_FLAG_MMAP,
        };
      case VFIO_PCI_BAR2_REGION_INDEX:
        return { offset: MBOCHS_MMIO_BAR_OFFSET, size: MBOCHS_MMIO_BAR_SIZE, flags: RW };
      case MBOCHS_EDID_REGION_INDEX:
        return {
          offset: MBOCHS_EDID_OFFSET,
          size: MBOCHS_EDID_SIZE,
          flags: RW,
          caps: [vfioCapType(VFIO_REGION_TYPE_GFX, VFIO_REGION_SUBTYPE_GFX_EDID)],
        };
      default:
        return { offset: 0, size: 0, flags: 0 };
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
      plane = disabledPlane();
    } else {
      const m = mode;
      let buf = this.dmabufs.find((d) => mbochsModesEqual(d.mode, m));
      if (!buf) {
        buf = new MbochsDmabuf(this.nextId++, m, this.memory);
        this.dmabufs.push(buf);
      }
      plane = {
        ...disabledPlane(),
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
   * mbochs_close(): dmabufs are unlinked (an exported one lives on until its dma-buf closes)
   * and video memory is given back.
   */
  override close(): void {
    for (const d of this.dmabufs.splice(0)) d.unlinked = true;
    this.activeId = 0;
    this.memory.drop();
  }

  /** mbochs_ioctl(): the display's requests, and GET_GFX_DMABUF. */
  override ioctl(cmd: number, arg: Uint8Array | null): number {
    if (cmd !== VFIO_DEVICE_GET_GFX_DMABUF) return super.ioctl(cmd, arg);
    // get_user(dmabuf_id, (__u32 __user *)arg)
    if (!arg || arg.length < 4) throw new KernelError('EFAULT', 'mbochs: no dmabuf id');
    const id = new DataView(arg.buffer, arg.byteOffset, 4).getUint32(0, true);
    return this.getGfxDmabuf(id).fd;
  }
}

/** The VFIO ops of every mbochs device (mdev_vfio_ops of mbochs.c). */
export const mbochsVfioOps: MdevVfioOps = displayVfioOps(MBOCHS_NAME);

/** Options of `mbochsInit`. */
export interface MbochsOptions {
  /** The `count` module parameter: megabytes of video memory for all devices (default 256). */
  maxMbytes?: number;
}

/**
 * The mbochs parent: class and device `mbochs` on the VFIO mediated bus with the types
 * mbochs-small (4 MB), mbochs-medium (16 MB) and mbochs-large (64 MB), sharing `maxMbytes`.
 */
export class Mbochs extends DisplayParent<MbochsTypeDef, MbochsState> {
  readonly maxMbytes: number;

  constructor(options: MbochsOptions = {}) {
    const max = options.maxMbytes ?? MBOCHS_MAX_MBYTES;
    if (!Number.isInteger(max) || max < 0) throw new RangeError(`mbochs: bad maxMbytes ${max}`);
    super(MBOCHS_NAME, MBOCHS_TYPES, mbochsVfioOps);
    this.maxMbytes = max;
  }

  /** Megabytes of video memory the existing devices hold (mbochs_used_mbytes). */
  get usedMbytes(): number {
    let used = 0;
    for (const s of this.instances) used += s.type.mbytes;
    return used;
  }

  protected describe(t: MbochsTypeDef): string {
    return `virtual display, ${t.mbytes} MB video memory`;
  }

  protected availableInstances(t: MbochsTypeDef): number {
    return Math.floor((this.maxMbytes - this.usedMbytes) / t.mbytes);
  }

  /** mbochs_create(): ENOMEM when the type's memory does not fit in what is left. */
  protected newState(type: MbochsTypeDef, mdev: MdevDevice): MbochsState {
    if (type.mbytes + this.usedMbytes > this.maxMbytes) {
      throw new KernelError(
        'ENOMEM',
        `mbochs: ${type.mbytes} MB do not fit, ${this.maxMbytes - this.usedMbytes} MB left`,
      );
    }
    return new MbochsState(mdev, type);
  }

  protected vendorAttribute(type: MbochsTypeDef): Attribute {
    return { name: 'memory', mode: 0o444, show: () => `${type.mbytes} MB` };
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

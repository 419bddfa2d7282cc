import { type Attribute, KernelError } from '@mdev/driver-core';
import type { MdevDevice } from '@mdev/mdev-core';
import {
  DRM_PLANE_TYPE_PRIMARY,
  type MdevVfioOps,
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_GFX_PLANE_TYPE_REGION,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_NUM_REGIONS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
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
import { mdpyConfigSpace } from './config';
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

/** Mirrors struct mdev_state of mdpy.c: one display. */
export class MdpyState extends DisplayState {
  readonly type: MdpyTypeDef;
  readonly fb: MdpyFramebuffer;
  readonly config: PciConfigSpace;

  constructor(mdev: MdevDevice, type: MdpyTypeDef) {
    super(mdev);
    this.type = type;
    this.fb = new MdpyFramebuffer(type);
    this.config = mdpyConfigSpace(type, this.fb.memsize);
    this.reset();
  }

  get sample(): string {
    return MDPY_NAME;
  }
  get numRegions(): number {
    return VFIO_PCI_NUM_REGIONS;
  }
  get memoryBarOffset(): number {
    return MDPY_MEMORY_BAR_OFFSET;
  }
  get memsize(): number {
    return this.fb.memsize;
  }
  memoryView(offset: number, length: number): Uint8Array {
    return this.fb.view(offset, length);
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
    if (drmPlaneType !== DRM_PLANE_TYPE_PRIMARY) return disabledPlane();
    return {
      ...disabledPlane(),
      drmFormat: this.type.format,
      width: this.type.width,
      height: this.type.height,
      stride: this.fb.stride,
      size: this.memsize,
      dmabufId: MDPY_DISPLAY_REGION, // the union's region_index
    };
  }
}

/** The VFIO ops of every mdpy device (mdev_vfio_ops of mdpy.c). */
export const mdpyVfioOps: MdevVfioOps = displayVfioOps(MDPY_NAME);

/** Options of `mdpyInit`. */
export interface MdpyOptions {
  /** The `count` module parameter: how many mdpy devices may exist at once (default 4). */
  maxDevices?: number;
}

/**
 * The mdpy parent: class and device `mdpy` on the VFIO mediated bus with the types mdpy-vga,
 * mdpy-xga and mdpy-hd. At most `maxDevices` displays exist at once, of all types together.
 */
export class Mdpy extends DisplayParent<MdpyTypeDef, MdpyState> {
  readonly maxDevices: number;

  constructor(options: MdpyOptions = {}) {
    const max = options.maxDevices ?? MDPY_MAX_DEVICES;
    if (!Number.isInteger(max) || max < 0) throw new RangeError(`mdpy: bad maxDevices ${max}`);
    super(MDPY_NAME, MDPY_TYPES, mdpyVfioOps);
    this.maxDevices = max;
  }

  protected describe(t: MdpyTypeDef): string {
    return `virtual display, ${t.width}x${t.height} framebuffer`;
  }

  protected availableInstances(): number {
    return this.maxDevices - this.instances.size;
  }

  /** mdpy_create(): ENOMEM once `maxDevices` displays exist (the sample's check). */
  protected newState(type: MdpyTypeDef, mdev: MdevDevice): MdpyState {
    if (this.instances.size >= this.maxDevices) {
      throw new KernelError('ENOMEM', `mdpy: all ${this.maxDevices} displays are in use`);
    }
    return new MdpyState(mdev, type);
  }

  protected vendorAttribute(type: MdpyTypeDef): Attribute {
    return { name: 'resolution', mode: 0o444, show: () => `${type.width}x${type.height}` };
  }
}

/** Mirrors mdpy_dev_init(): registers the mdpy parent. */
export function mdpyInit(options: MdpyOptions = {}): Mdpy {
  return new Mdpy(options);
}

/** Mirrors mdpy_dev_exit(): every mdpy device is removed, then the parent and its class. */
export function mdpyExit(mdpy: Mdpy): void {
  mdpy.exit();
}

// The constants of samples/vfio-mdev/mdpy.c and mdpy-defs.h.
import {
  PCI_SUBDEVICE_ID_QEMU,
  PCI_SUBVENDOR_ID_REDHAT_QUMRANET,
  PCI_VENDOR_ID_REDHAT,
} from '../pci';

/** MDPY_CLASS_NAME / MDPY_NAME: the class, the parent device and the type prefix. */
export const MDPY_NAME = 'mdpy';

/** MDPY_PCI_VENDOR_ID: Red Hat. */
export const MDPY_PCI_VENDOR_ID = PCI_VENDOR_ID_REDHAT;
/** MDPY_PCI_DEVICE_ID. */
export const MDPY_PCI_DEVICE_ID = 0x000f;
/** MDPY_PCI_SUBVENDOR_ID = PCI_SUBVENDOR_ID_REDHAT_QUMRANET. */
export const MDPY_PCI_SUBVENDOR_ID = PCI_SUBVENDOR_ID_REDHAT_QUMRANET;
/** MDPY_PCI_SUBDEVICE_ID = PCI_SUBDEVICE_ID_QEMU. */
export const MDPY_PCI_SUBDEVICE_ID = PCI_SUBDEVICE_ID_QEMU;
/** The revision byte the sample writes. */
export const MDPY_PCI_REVISION = 0x01;

/** mdpy-defs.h: the vendor capability in config space carrying the framebuffer format. */
export const MDPY_VENDORCAP_OFFSET = 0x40;
export const MDPY_VENDORCAP_SIZE = 0x10;
/** u32 DRM fourcc of the framebuffer (read-only). */
export const MDPY_FORMAT_OFFSET = MDPY_VENDORCAP_OFFSET + 0x04;
/** u32 width in pixels (read-only). */
export const MDPY_WIDTH_OFFSET = MDPY_VENDORCAP_OFFSET + 0x08;
/** u32 height in pixels (read-only). */
export const MDPY_HEIGHT_OFFSET = MDPY_VENDORCAP_OFFSET + 0x0c;

/** MDPY_CONFIG_SPACE_SIZE: the config region's size as the sample reports it. */
export const MDPY_CONFIG_SPACE_SIZE = 0xff;
/** MDPY_MEMORY_BAR_OFFSET: the framebuffer (BAR0) starts one page into the device file. */
export const MDPY_MEMORY_BAR_OFFSET = 4096;
/** MDPY_DISPLAY_REGION: the extra region index QUERY_GFX_PLANE names; it aliases BAR0. */
export const MDPY_DISPLAY_REGION = 16;

/** The default of the `count` module parameter (max_devices). */
export const MDPY_MAX_DEVICES = 4;

/** DRM_FORMAT_XRGB8888: fourcc_code('X', 'R', '2', '4') from drm_fourcc.h. */
export const DRM_FORMAT_XRGB8888 = 0x34325258;

/** One entry of mdpy_types[]: a fixed display mode. */
export interface MdpyTypeDef {
  /** The supported type group name; the type directory is `mdpy-<group>`. */
  readonly group: string;
  readonly format: number;
  readonly bytepp: number;
  readonly width: number;
  readonly height: number;
}

/** mdpy_types[]: VGA, XGA and full HD, all XRGB8888. */
export const MDPY_TYPES: readonly MdpyTypeDef[] = [
  { group: 'vga', format: DRM_FORMAT_XRGB8888, bytepp: 4, width: 640, height: 480 },
  { group: 'xga', format: DRM_FORMAT_XRGB8888, bytepp: 4, width: 1024, height: 768 },
  { group: 'hd', format: DRM_FORMAT_XRGB8888, bytepp: 4, width: 1920, height: 1080 },
];

/** roundup_pow_of_two(): the smallest power of two >= n (n >= 1). */
export function roundupPowOfTwo(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`roundupPowOfTwo: bad value ${n}`);
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** The framebuffer (BAR0) size of a type: roundup_pow_of_two(width * height * bytepp). */
export function mdpyMemsize(type: MdpyTypeDef): number {
  return roundupPowOfTwo(type.width * type.height * type.bytepp);
}

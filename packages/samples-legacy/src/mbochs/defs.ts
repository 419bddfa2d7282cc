// The constants of samples/vfio-mdev/mbochs.c and the bochs dispi interface it emulates
// (include/drm/bochs / qemu hw/display/vga_int.h).
import { PCI_SUBDEVICE_ID_QEMU, PCI_SUBVENDOR_ID_REDHAT_QUMRANET } from '../pci';

/** The class, the parent device and the type prefix. */
export const MBOCHS_NAME = 'mbochs';

/** Page size of the device file layout, the memory BAR and dma-bufs. */
export const MBOCHS_PAGE_SIZE = 4096;

/** The config region's size as the sample reports it. */
export const MBOCHS_CONFIG_SPACE_SIZE = 0xff;
/** MBOCHS_MMIO_BAR_OFFSET / _SIZE: BAR2, the register page, at file offset one page. */
export const MBOCHS_MMIO_BAR_OFFSET = MBOCHS_PAGE_SIZE;
export const MBOCHS_MMIO_BAR_SIZE = MBOCHS_PAGE_SIZE;
/** MBOCHS_EDID_OFFSET / _SIZE: the EDID region, registers then the blob. */
export const MBOCHS_EDID_OFFSET = MBOCHS_MMIO_BAR_OFFSET + MBOCHS_MMIO_BAR_SIZE;
export const MBOCHS_EDID_SIZE = MBOCHS_PAGE_SIZE;
/** MBOCHS_EDID_BLOB_OFFSET: where the blob starts inside the EDID region. */
export const MBOCHS_EDID_BLOB_OFFSET = MBOCHS_EDID_SIZE / 2;
/** The blob's capacity (edid_max_size). */
export const MBOCHS_EDID_MAX_SIZE = 0x400;
/** MBOCHS_MEMORY_BAR_OFFSET: BAR0, the video memory, after the EDID region. */
export const MBOCHS_MEMORY_BAR_OFFSET = MBOCHS_EDID_OFFSET + MBOCHS_EDID_SIZE;

/** MBOCHS_EDID_REGION_INDEX = VFIO_PCI_NUM_REGIONS: the first device-specific region. */
export const MBOCHS_EDID_REGION_INDEX = 9;
/** MBOCHS_NUM_REGIONS. */
export const MBOCHS_NUM_REGIONS = 10;

/** PCI ids of qemu's stdvga ("qemu -device secondary-vga"). */
export const MBOCHS_PCI_VENDOR_ID = 0x1234;
export const MBOCHS_PCI_DEVICE_ID = 0x1111;
export const MBOCHS_PCI_SUBVENDOR_ID = PCI_SUBVENDOR_ID_REDHAT_QUMRANET;
export const MBOCHS_PCI_SUBDEVICE_ID = PCI_SUBDEVICE_ID_QEMU;
export const MBOCHS_PCI_REVISION = 0x01;

// Layout of the MMIO BAR (qemu's stdvga "mmio" bar, docs/specs/standard-vga.txt).
/** 0x000-0x3ff: the EDID blob, read-only, while the link is up. */
export const MBOCHS_MMIO_EDID_BASE = 0x000;
export const MBOCHS_MMIO_EDID_END = 0x3ff;
/** 0x400-0x41f: vga ioports 0x3c0-0x3df remapped; not emulated (writes ignored, reads 0). */
export const MBOCHS_MMIO_VGA_BASE = 0x400;
export const MBOCHS_MMIO_VGA_END = 0x41f;
/** 0x500-0x515: the bochs dispi registers, 16 bits each, register `i` at 0x500 + 2 * i. */
export const MBOCHS_MMIO_DISPI_BASE = 0x500;
export const MBOCHS_MMIO_DISPI_END = 0x515;
/** 0x600-0x607: qemu extended registers; not emulated (writes ignored, reads 0). */
export const MBOCHS_MMIO_QEXT_BASE = 0x600;
export const MBOCHS_MMIO_QEXT_END = 0x607;

// The bochs dispi register indexes (VBE_DISPI_INDEX_*).
export const VBE_DISPI_INDEX_ID = 0x0;
export const VBE_DISPI_INDEX_XRES = 0x1;
export const VBE_DISPI_INDEX_YRES = 0x2;
export const VBE_DISPI_INDEX_BPP = 0x3;
export const VBE_DISPI_INDEX_ENABLE = 0x4;
export const VBE_DISPI_INDEX_BANK = 0x5;
export const VBE_DISPI_INDEX_VIRT_WIDTH = 0x6;
export const VBE_DISPI_INDEX_VIRT_HEIGHT = 0x7;
export const VBE_DISPI_INDEX_X_OFFSET = 0x8;
export const VBE_DISPI_INDEX_Y_OFFSET = 0x9;
export const VBE_DISPI_INDEX_VIDEO_MEMORY_64K = 0xa;
export const VBE_DISPI_INDEX_COUNT = 0xb;

/** The interface versions the ID register accepts; mbochs reports the newest. */
export const VBE_DISPI_ID0 = 0xb0c0;
export const VBE_DISPI_ID5 = 0xb0c5;

// Bits of the ENABLE register.
export const VBE_DISPI_DISABLED = 0x00;
export const VBE_DISPI_ENABLED = 0x01;
export const VBE_DISPI_GETCAPS = 0x02;
export const VBE_DISPI_8BIT_DAC = 0x20;
export const VBE_DISPI_LFB_ENABLED = 0x40;
export const VBE_DISPI_NOCLEARMEM = 0x80;

/** The limits GETCAPS reports when a type sets none (qemu's VBE_DISPI_MAX_XRES/_YRES/_BPP). */
export const VBE_DISPI_MAX_XRES = 16000;
export const VBE_DISPI_MAX_YRES = 12000;
export const VBE_DISPI_MAX_BPP = 32;

/** The legacy I/O ports of the dispi interface: write an index, then read or write the data. */
export const VBE_DISPI_IOPORT_INDEX = 0x01ce;
export const VBE_DISPI_IOPORT_DATA = 0x01cf;

/** The default of the `count` module parameter: megabytes of video memory for all mdevs. */
export const MBOCHS_MAX_MBYTES = 256;

/** One entry of mbochs_types[]. */
export interface MbochsTypeDef {
  /** The supported type group name; the type directory is `mbochs-<group>`. */
  readonly group: string;
  /** Video memory in MiB. */
  readonly mbytes: number;
  /** Largest mode the EDID region advertises (0 = no limit). */
  readonly maxX: number;
  readonly maxY: number;
}

/** mbochs_types[]. */
export const MBOCHS_TYPES: readonly MbochsTypeDef[] = [
  { group: 'small', mbytes: 4, maxX: 800, maxY: 600 },
  { group: 'medium', mbytes: 16, maxX: 1920, maxY: 1440 },
  { group: 'large', mbytes: 64, maxX: 0, maxY: 0 },
];

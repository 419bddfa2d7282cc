// Constants and binary layouts of include/uapi/linux/vfio.h. Every struct is little-endian, as a
// user on x86/arm64 sees it; offsets and sizes are checked against the system header by
// test/conformance.test.ts.

/** VFIO_TYPE: the ioctl type character ';'. */
export const VFIO_TYPE = 0x3b;
/** VFIO_BASE: the first ioctl number. */
export const VFIO_BASE = 100;
/** VFIO_API_VERSION. */
export const VFIO_API_VERSION = 0;

/** Mirrors _IO(type, nr) of <asm-generic/ioctl.h>: no direction and no size bits. */
export function _IO(type: number, nr: number): number {
  return ((type & 0xff) << 8) | (nr & 0xff);
}

// Request numbers (vfio.h: _IO(VFIO_TYPE, VFIO_BASE + n)). VFIO encodes no size in the request;
// each struct starts with `argsz` instead.
export const VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0);
export const VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1);
export const VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2);
export const VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3);
export const VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4);
export const VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5);
export const VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6);
export const VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7);
export const VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8);
export const VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9);
export const VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10);
export const VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);
export const VFIO_DEVICE_PCI_HOT_RESET = _IO(VFIO_TYPE, VFIO_BASE + 13);
export const VFIO_DEVICE_QUERY_GFX_PLANE = _IO(VFIO_TYPE, VFIO_BASE + 14);
export const VFIO_DEVICE_GET_GFX_DMABUF = _IO(VFIO_TYPE, VFIO_BASE + 15);
export const VFIO_DEVICE_IOEVENTFD = _IO(VFIO_TYPE, VFIO_BASE + 16);

// struct vfio_info_cap_header { __u16 id; __u16 version; __u32 next; }
export const VFIO_INFO_CAP_HEADER_ID = 0;
export const VFIO_INFO_CAP_HEADER_VERSION = 2;
export const VFIO_INFO_CAP_HEADER_NEXT = 4;
export const VFIO_INFO_CAP_HEADER_SIZE = 8;

// struct vfio_device_info { argsz, flags, num_regions, num_irqs, cap_offset } (all __u32)
export const VFIO_DEVICE_INFO_ARGSZ = 0;
export const VFIO_DEVICE_INFO_FLAGS = 4;
export const VFIO_DEVICE_INFO_NUM_REGIONS = 8;
export const VFIO_DEVICE_INFO_NUM_IRQS = 12;
export const VFIO_DEVICE_INFO_CAP_OFFSET = 16;
export const VFIO_DEVICE_INFO_SIZE = 20;
/** offsetofend(struct vfio_device_info, num_irqs): what every driver requires of argsz. */
export const VFIO_DEVICE_INFO_MINSZ = 16;

export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_AMBA = 1 << 3;
export const VFIO_DEVICE_FLAGS_CCW = 1 << 4;
export const VFIO_DEVICE_FLAGS_AP = 1 << 5;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;

/** The `device_api` strings of the mdev type attributes (vfio.h). */
export const VFIO_DEVICE_API_PCI_STRING = 'vfio-pci';
export const VFIO_DEVICE_API_PLATFORM_STRING = 'vfio-platform';
export const VFIO_DEVICE_API_AMBA_STRING = 'vfio-amba';
export const VFIO_DEVICE_API_CCW_STRING = 'vfio-ccw';
export const VFIO_DEVICE_API_AP_STRING = 'vfio-ap';

// struct vfio_region_info { argsz, flags, index, cap_offset (__u32); size, offset (__u64) }
export const VFIO_REGION_INFO_ARGSZ = 0;
export const VFIO_REGION_INFO_FLAGS = 4;
export const VFIO_REGION_INFO_INDEX = 8;
export const VFIO_REGION_INFO_CAP_OFFSET = 12;
export const VFIO_REGION_INFO_SIZE_FIELD = 16;
export const VFIO_REGION_INFO_OFFSET_FIELD = 24;
/** sizeof(struct vfio_region_info); also its minsz (offsetofend(offset)). */
export const VFIO_REGION_INFO_SIZE = 32;

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;

/** Capability id of struct vfio_region_info_cap_sparse_mmap (version 1). */
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
// struct vfio_region_info_cap_sparse_mmap { header; __u32 nr_areas; __u32 reserved; areas[] }
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP_NR_AREAS = 8;
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS = 16;
// struct vfio_region_sparse_mmap_area { __u64 offset; __u64 size; }
export const VFIO_REGION_SPARSE_MMAP_AREA_SIZE = 16;

/** Capability id of struct vfio_region_info_cap_type (version 1). */
export const VFIO_REGION_INFO_CAP_TYPE = 2;
// struct vfio_region_info_cap_type { header; __u32 type; __u32 subtype; }
export const VFIO_REGION_INFO_CAP_TYPE_TYPE = 8;
export const VFIO_REGION_INFO_CAP_TYPE_SUBTYPE = 12;
export const VFIO_REGION_INFO_CAP_TYPE_SIZE = 16;

export const VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 0x80000000;
export const VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xffff;
export const VFIO_REGION_TYPE_GFX = 1;
export const VFIO_REGION_SUBTYPE_GFX_EDID = 1;

// struct vfio_region_gfx_edid (all __u32): the EDID region's register block.
export const VFIO_REGION_GFX_EDID_EDID_OFFSET = 0;
export const VFIO_REGION_GFX_EDID_EDID_MAX_SIZE = 4;
export const VFIO_REGION_GFX_EDID_EDID_SIZE = 8;
export const VFIO_REGION_GFX_EDID_MAX_XRES = 12;
export const VFIO_REGION_GFX_EDID_MAX_YRES = 16;
export const VFIO_REGION_GFX_EDID_LINK_STATE = 20;
export const VFIO_REGION_GFX_EDID_SIZE = 24;
export const VFIO_DEVICE_GFX_LINK_STATE_UP = 1;
export const VFIO_DEVICE_GFX_LINK_STATE_DOWN = 2;

// PCI region and irq indexes (enum in vfio.h).
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR1_REGION_INDEX = 1;
export const VFIO_PCI_BAR2_REGION_INDEX = 2;
export const VFIO_PCI_BAR3_REGION_INDEX = 3;
export const VFIO_PCI_BAR4_REGION_INDEX = 4;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

// struct vfio_irq_info { argsz, flags, index, count } (all __u32)
export const VFIO_IRQ_INFO_ARGSZ = 0;
export const VFIO_IRQ_INFO_FLAGS = 4;
export const VFIO_IRQ_INFO_INDEX = 8;
export const VFIO_IRQ_INFO_COUNT = 12;
export const VFIO_IRQ_INFO_SIZE = 16;

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

// struct vfio_irq_set { argsz, flags, index, start, count (__u32); __u8 data[] }
export const VFIO_IRQ_SET_ARGSZ = 0;
export const VFIO_IRQ_SET_FLAGS = 4;
export const VFIO_IRQ_SET_INDEX = 8;
export const VFIO_IRQ_SET_START = 12;
export const VFIO_IRQ_SET_COUNT = 16;
export const VFIO_IRQ_SET_DATA = 20;
/** sizeof(struct vfio_irq_set): the header before `data`. */
export const VFIO_IRQ_SET_SIZE = 20;

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK =
  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK =
  VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

// struct vfio_device_gfx_plane_info: eight bytes of alignment for drm_format_mod, 64 in all.
export const VFIO_GFX_PLANE_INFO_ARGSZ = 0;
export const VFIO_GFX_PLANE_INFO_FLAGS = 4;
export const VFIO_GFX_PLANE_INFO_DRM_PLANE_TYPE = 8;
export const VFIO_GFX_PLANE_INFO_DRM_FORMAT = 12;
export const VFIO_GFX_PLANE_INFO_DRM_FORMAT_MOD = 16;
export const VFIO_GFX_PLANE_INFO_WIDTH = 24;
export const VFIO_GFX_PLANE_INFO_HEIGHT = 28;
export const VFIO_GFX_PLANE_INFO_STRIDE = 32;
export const VFIO_GFX_PLANE_INFO_SIZE_FIELD = 36;
export const VFIO_GFX_PLANE_INFO_X_POS = 40;
export const VFIO_GFX_PLANE_INFO_Y_POS = 44;
export const VFIO_GFX_PLANE_INFO_X_HOT = 48;
export const VFIO_GFX_PLANE_INFO_Y_HOT = 52;
/** The union { region_index; dmabuf_id; }. */
export const VFIO_GFX_PLANE_INFO_REGION_INDEX = 56;
export const VFIO_GFX_PLANE_INFO_DMABUF_ID = 56;
export const VFIO_GFX_PLANE_INFO_SIZE = 64;
/** offsetofend(struct vfio_device_gfx_plane_info, dmabuf_id): the samples' minsz. */
export const VFIO_GFX_PLANE_INFO_MINSZ = 60;

export const VFIO_GFX_PLANE_TYPE_PROBE = 1 << 0;
export const VFIO_GFX_PLANE_TYPE_DMABUF = 1 << 1;
export const VFIO_GFX_PLANE_TYPE_REGION = 1 << 2;

/** DRM plane types (include/drm/drm_plane.h enum drm_plane_type) as QUERY_GFX_PLANE takes them. */
export const DRM_PLANE_TYPE_OVERLAY = 0;
export const DRM_PLANE_TYPE_PRIMARY = 1;
export const DRM_PLANE_TYPE_CURSOR = 2;

/** The page size the region offsets, mmap and dma-bufs are counted in. */
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

/**
 * The samples' region offset encoding (VFIO_PCI_OFFSET_SHIFT in vfio_pci_private.h and
 * MTTY_VFIO_PCI_OFFSET_SHIFT): region `index` starts at file offset `index << 40`.
 */
export const VFIO_PCI_OFFSET_SHIFT = 40;
const OFFSET_UNIT = 2 ** VFIO_PCI_OFFSET_SHIFT;
/** (1 << VFIO_PCI_OFFSET_SHIFT) - 1: the offset within a region. */
export const VFIO_PCI_OFFSET_MASK = OFFSET_UNIT - 1;

/** VFIO_PCI_INDEX_TO_OFFSET(index): the file offset where a region starts. */
export function vfioPciIndexToOffset(index: number): number {
  return index * OFFSET_UNIT;
}

/** VFIO_PCI_OFFSET_TO_INDEX(off): the region a file offset falls in. */
export function vfioPciOffsetToIndex(offset: number): number {
  return Math.floor(offset / OFFSET_UNIT);
}

/** offset & VFIO_PCI_OFFSET_MASK: the offset within the region. */
export function vfioPciOffsetInRegion(offset: number): number {
  return offset % OFFSET_UNIT;
}

/*
 * Prints the layout and request numbers of <linux/vfio.h> as "name value" lines, for
 * test/conformance.test.ts to compare with src/uapi.ts.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/vfio.h>

#define SIZE(s) printf("sizeof_%s %zu\n", #s, sizeof(struct s))
#define OFF(s, f) printf("offsetof_%s_%s %zu\n", #s, #f, offsetof(struct s, f))
#define VAL(c) printf("%s %u\n", #c, (unsigned int)(c))

static void hex(const char *name, const void *p, size_t n)
{
	const unsigned char *b = p;
	printf("%s ", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

/* Structs filled with fixed values, dumped as hex, for the byte-for-byte encoding check. */
static void images(void)
{
	struct vfio_region_info ri;
	struct vfio_device_gfx_plane_info gp;
	struct {
		struct vfio_irq_set hdr;
		__s32 fds[2];
	} set;
	struct vfio_device_info di;

	memset(&ri, 0, sizeof(ri));
	ri.argsz = sizeof(ri);
	ri.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_CAPS;
	ri.index = VFIO_PCI_CONFIG_REGION_INDEX;
	ri.cap_offset = 32;
	ri.size = 0x123456789ULL;
	ri.offset = (__u64)VFIO_PCI_CONFIG_REGION_INDEX << 40;
	hex("vfio_region_info", &ri, sizeof(ri));

	memset(&set, 0, sizeof(set));
	set.hdr.argsz = sizeof(set);
	set.hdr.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	set.hdr.index = VFIO_PCI_MSI_IRQ_INDEX;
	set.hdr.start = 0;
	set.hdr.count = 2;
	set.fds[0] = 7;
	set.fds[1] = -1;
	hex("vfio_irq_set", &set, sizeof(set));

	memset(&gp, 0, sizeof(gp));
	gp.argsz = sizeof(gp);
	gp.flags = VFIO_GFX_PLANE_TYPE_DMABUF;
	gp.drm_plane_type = 1;
	gp.drm_format = 0x34325258;
	gp.drm_format_mod = 0x0001020304050607ULL;
	gp.width = 1024;
	gp.height = 768;
	gp.stride = 4096;
	gp.size = 4096 * 768;
	gp.x_pos = 1;
	gp.y_pos = 2;
	gp.x_hot = 3;
	gp.y_hot = 4;
	gp.dmabuf_id = 9;
	hex("vfio_device_gfx_plane_info", &gp, sizeof(gp));

	memset(&di, 0, sizeof(di));
	di.argsz = sizeof(di);
	di.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
	di.num_regions = VFIO_PCI_NUM_REGIONS;
	di.num_irqs = VFIO_PCI_NUM_IRQS;
	hex("vfio_device_info", &di, sizeof(di));
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "images") == 0) {
		images();
		return 0;
	}
	SIZE(vfio_info_cap_header);
	OFF(vfio_info_cap_header, id);
	OFF(vfio_info_cap_header, version);
	OFF(vfio_info_cap_header, next);

	SIZE(vfio_device_info);
	OFF(vfio_device_info, argsz);
	OFF(vfio_device_info, flags);
	OFF(vfio_device_info, num_regions);
	OFF(vfio_device_info, num_irqs);
	OFF(vfio_device_info, cap_offset);

	SIZE(vfio_region_info);
	OFF(vfio_region_info, argsz);
	OFF(vfio_region_info, flags);
	OFF(vfio_region_info, index);
	OFF(vfio_region_info, cap_offset);
	OFF(vfio_region_info, size);
	OFF(vfio_region_info, offset);

	SIZE(vfio_region_sparse_mmap_area);
	SIZE(vfio_region_info_cap_sparse_mmap);
	OFF(vfio_region_info_cap_sparse_mmap, nr_areas);
	OFF(vfio_region_info_cap_sparse_mmap, areas);
	SIZE(vfio_region_info_cap_type);
	OFF(vfio_region_info_cap_type, type);
	OFF(vfio_region_info_cap_type, subtype);

	SIZE(vfio_region_gfx_edid);
	OFF(vfio_region_gfx_edid, edid_offset);
	OFF(vfio_region_gfx_edid, edid_max_size);
	OFF(vfio_region_gfx_edid, edid_size);
	OFF(vfio_region_gfx_edid, max_xres);
	OFF(vfio_region_gfx_edid, max_yres);
	OFF(vfio_region_gfx_edid, link_state);

	SIZE(vfio_irq_info);
	OFF(vfio_irq_info, argsz);
	OFF(vfio_irq_info, flags);
	OFF(vfio_irq_info, index);
	OFF(vfio_irq_info, count);

	SIZE(vfio_irq_set);
	OFF(vfio_irq_set, argsz);
	OFF(vfio_irq_set, flags);
	OFF(vfio_irq_set, index);
	OFF(vfio_irq_set, start);
	OFF(vfio_irq_set, count);
	OFF(vfio_irq_set, data);

	SIZE(vfio_device_gfx_plane_info);
	OFF(vfio_device_gfx_plane_info, argsz);
	OFF(vfio_device_gfx_plane_info, flags);
	OFF(vfio_device_gfx_plane_info, drm_plane_type);
	OFF(vfio_device_gfx_plane_info, drm_format);
	OFF(vfio_device_gfx_plane_info, drm_format_mod);
	OFF(vfio_device_gfx_plane_info, width);
	OFF(vfio_device_gfx_plane_info, height);
	OFF(vfio_device_gfx_plane_info, stride);
	OFF(vfio_device_gfx_plane_info, size);
	OFF(vfio_device_gfx_plane_info, x_pos);
	OFF(vfio_device_gfx_plane_info, y_pos);
	OFF(vfio_device_gfx_plane_info, x_hot);
	OFF(vfio_device_gfx_plane_info, y_hot);
	OFF(vfio_device_gfx_plane_info, region_index);
	OFF(vfio_device_gfx_plane_info, dmabuf_id);

	VAL(VFIO_API_VERSION);
	VAL(VFIO_TYPE);
	VAL(VFIO_BASE);
	VAL(VFIO_GET_API_VERSION);
	VAL(VFIO_CHECK_EXTENSION);
	VAL(VFIO_SET_IOMMU);
	VAL(VFIO_GROUP_GET_STATUS);
	VAL(VFIO_GROUP_SET_CONTAINER);
	VAL(VFIO_GROUP_UNSET_CONTAINER);
	VAL(VFIO_GROUP_GET_DEVICE_FD);
	VAL(VFIO_DEVICE_GET_INFO);
	VAL(VFIO_DEVICE_GET_REGION_INFO);
	VAL(VFIO_DEVICE_GET_IRQ_INFO);
	VAL(VFIO_DEVICE_SET_IRQS);
	VAL(VFIO_DEVICE_RESET);
	VAL(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO);
	VAL(VFIO_DEVICE_PCI_HOT_RESET);
	VAL(VFIO_DEVICE_QUERY_GFX_PLANE);
	VAL(VFIO_DEVICE_GET_GFX_DMABUF);
	VAL(VFIO_DEVICE_IOEVENTFD);

	VAL(VFIO_DEVICE_FLAGS_RESET);
	VAL(VFIO_DEVICE_FLAGS_PCI);
	VAL(VFIO_DEVICE_FLAGS_PLATFORM);
	VAL(VFIO_DEVICE_FLAGS_AMBA);
	VAL(VFIO_DEVICE_FLAGS_CCW);
	VAL(VFIO_DEVICE_FLAGS_AP);
	VAL(VFIO_DEVICE_FLAGS_CAPS);
	VAL(VFIO_REGION_INFO_FLAG_READ);
	VAL(VFIO_REGION_INFO_FLAG_WRITE);
	VAL(VFIO_REGION_INFO_FLAG_MMAP);
	VAL(VFIO_REGION_INFO_FLAG_CAPS);
	VAL(VFIO_REGION_INFO_CAP_SPARSE_MMAP);
	VAL(VFIO_REGION_INFO_CAP_TYPE);
	VAL(VFIO_REGION_TYPE_PCI_VENDOR_TYPE);
	VAL(VFIO_REGION_TYPE_PCI_VENDOR_MASK);
	VAL(VFIO_REGION_TYPE_GFX);
	VAL(VFIO_REGION_SUBTYPE_GFX_EDID);
	VAL(VFIO_DEVICE_GFX_LINK_STATE_UP);
	VAL(VFIO_DEVICE_GFX_LINK_STATE_DOWN);
	VAL(VFIO_IRQ_INFO_EVENTFD);
	VAL(VFIO_IRQ_INFO_MASKABLE);
	VAL(VFIO_IRQ_INFO_AUTOMASKED);
	VAL(VFIO_IRQ_INFO_NORESIZE);
	VAL(VFIO_IRQ_SET_DATA_NONE);
	VAL(VFIO_IRQ_SET_DATA_BOOL);
	VAL(VFIO_IRQ_SET_DATA_EVENTFD);
	VAL(VFIO_IRQ_SET_ACTION_MASK);
	VAL(VFIO_IRQ_SET_ACTION_UNMASK);
	VAL(VFIO_IRQ_SET_ACTION_TRIGGER);
	VAL(VFIO_IRQ_SET_DATA_TYPE_MASK);
	VAL(VFIO_IRQ_SET_ACTION_TYPE_MASK);
	VAL(VFIO_GFX_PLANE_TYPE_PROBE);
	VAL(VFIO_GFX_PLANE_TYPE_DMABUF);
	VAL(VFIO_GFX_PLANE_TYPE_REGION);

	VAL(VFIO_PCI_BAR0_REGION_INDEX);
	VAL(VFIO_PCI_BAR1_REGION_INDEX);
	VAL(VFIO_PCI_BAR2_REGION_INDEX);
	VAL(VFIO_PCI_BAR3_REGION_INDEX);
	VAL(VFIO_PCI_BAR4_REGION_INDEX);
	VAL(VFIO_PCI_BAR5_REGION_INDEX);
	VAL(VFIO_PCI_ROM_REGION_INDEX);
	VAL(VFIO_PCI_CONFIG_REGION_INDEX);
	VAL(VFIO_PCI_VGA_REGION_INDEX);
	VAL(VFIO_PCI_NUM_REGIONS);
	VAL(VFIO_PCI_INTX_IRQ_INDEX);
	VAL(VFIO_PCI_MSI_IRQ_INDEX);
	VAL(VFIO_PCI_MSIX_IRQ_INDEX);
	VAL(VFIO_PCI_ERR_IRQ_INDEX);
	VAL(VFIO_PCI_REQ_IRQ_INDEX);
	VAL(VFIO_PCI_NUM_IRQS);
	printf("VFIO_DEVICE_API_PCI_STRING_is_vfio-pci %d\n",
	       VFIO_DEVICE_API_PCI_STRING[0] == 'v' && sizeof(VFIO_DEVICE_API_PCI_STRING) == 9);
	return 0;
}

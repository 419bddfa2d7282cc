// Conformance with the Linux uapi header <linux/vfio.h>: a C program compiled by the system's
// gcc prints the header's struct sizes, field offsets, request numbers and flags, and struct
// images filled with fixed values; this package's constants and encoders must agree byte for byte.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as vfio from '../src/index';

const source = fileURLToPath(new URL('./conformance/vfio_uapi.c', import.meta.url));

function findGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  return existsSync('/usr/include/linux/vfio.h');
}

const skipReason = findGcc()
  ? ''
  : 'gcc or /usr/include/linux/vfio.h is missing (on Debian: apt-get install gcc linux-libc-dev)';
if (skipReason) console.warn(`mdev-vfio conformance tests skipped: ${skipReason}`);

const dir = mkdtempSync(join(tmpdir(), 'vfio-uapi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let binary = '';
function probe(...args: string[]): Map<string, string> {
  if (!binary) {
    binary = join(dir, 'vfio_uapi');
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-O1', '-o', binary, source]);
  }
  const out = new Map<string, string>();
  for (const line of execFileSync(binary, args, { encoding: 'utf8' }).split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) out.set(k, v);
  }
  return out;
}

function hex(buf: Uint8Array): string {
  return Buffer.from(buf).toString('hex');
}

describe.skipIf(skipReason !== '')('<linux/vfio.h> conformance', () => {
  it('agrees on struct sizes and field offsets', () => {
    const c = probe();
    const ours: Record<string, number> = {
      sizeof_vfio_info_cap_header: vfio.VFIO_INFO_CAP_HEADER_SIZE,
      offsetof_vfio_info_cap_header_id: vfio.VFIO_INFO_CAP_HEADER_ID,
      offsetof_vfio_info_cap_header_version: vfio.VFIO_INFO_CAP_HEADER_VERSION,
      offsetof_vfio_info_cap_header_next: vfio.VFIO_INFO_CAP_HEADER_NEXT,
      sizeof_vfio_device_info: vfio.vfioDeviceInfo.size,
      offsetof_vfio_device_info_argsz: vfio.vfioDeviceInfo.fields.argsz[0],
      offsetof_vfio_device_info_flags: vfio.vfioDeviceInfo.fields.flags[0],
      offsetof_vfio_device_info_num_regions: vfio.vfioDeviceInfo.fields.numRegions[0],
      offsetof_vfio_device_info_num_irqs: vfio.vfioDeviceInfo.fields.numIrqs[0],
      offsetof_vfio_device_info_cap_offset: vfio.vfioDeviceInfo.fields.capOffset[0],
      sizeof_vfio_region_info: vfio.vfioRegionInfo.size,
      offsetof_vfio_region_info_argsz: vfio.vfioRegionInfo.fields.argsz[0],
      offsetof_vfio_region_info_flags: vfio.vfioRegionInfo.fields.flags[0],
      offsetof_vfio_region_info_index: vfio.vfioRegionInfo.fields.index[0],
      offsetof_vfio_region_info_cap_offset: vfio.vfioRegionInfo.fields.capOffset[0],
      offsetof_vfio_region_info_size: vfio.vfioRegionInfo.fields.size[0],
      offsetof_vfio_region_info_offset: vfio.vfioRegionInfo.fields.offset[0],
      sizeof_vfio_region_sparse_mmap_area: vfio.VFIO_REGION_SPARSE_MMAP_AREA_SIZE,
      sizeof_vfio_region_info_cap_sparse_mmap: vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS,
      offsetof_vfio_region_info_cap_sparse_mmap_nr_areas:
        vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP_NR_AREAS,
      offsetof_vfio_region_info_cap_sparse_mmap_areas: vfio.VFIO_REGION_INFO_CAP_SPARSE_MMAP_AREAS,
      sizeof_vfio_region_info_cap_type: vfio.VFIO_REGION_INFO_CAP_TYPE_SIZE,
      offsetof_vfio_region_info_cap_type_type: vfio.VFIO_REGION_INFO_CAP_TYPE_TYPE,
      offsetof_vfio_region_info_cap_type_subtype: vfio.VFIO_REGION_INFO_CAP_TYPE_SUBTYPE,
      sizeof_vfio_region_gfx_edid: vfio.vfioRegionGfxEdid.size,
      offsetof_vfio_region_gfx_edid_edid_offset: vfio.vfioRegionGfxEdid.fields.edidOffset[0],
      offsetof_vfio_region_gfx_edid_edid_max_size: vfio.vfioRegionGfxEdid.fields.edidMaxSize[0],
      offsetof_vfio_region_gfx_edid_edid_size: vfio.vfioRegionGfxEdid.fields.edidSize[0],
      offsetof_vfio_region_gfx_edid_max_xres: vfio.vfioRegionGfxEdid.fields.maxXres[0],
      offsetof_vfio_region_gfx_edid_max_yres: vfio.vfioRegionGfxEdid.fields.maxYres[0],
      offsetof_vfio_region_gfx_edid_link_state: vfio.vfioRegionGfxEdid.fields.linkState[0],
      sizeof_vfio_irq_info: vfio.vfioIrqInfo.size,
      offsetof_vfio_irq_info_argsz: vfio.vfioIrqInfo.fields.argsz[0],
      offsetof_vfio_irq_info_flags: vfio.vfioIrqInfo.fields.flags[0],
      offsetof_vfio_irq_info_index: vfio.vfioIrqInfo.fields.index[0],
      offsetof_vfio_irq_info_count: vfio.vfioIrqInfo.fields.count[0],
      sizeof_vfio_irq_set: vfio.vfioIrqSet.size,
      offsetof_vfio_irq_set_argsz: vfio.vfioIrqSet.fields.argsz[0],
      offsetof_vfio_irq_set_flags: vfio.vfioIrqSet.fields.flags[0],
      offsetof_vfio_irq_set_index: vfio.vfioIrqSet.fields.index[0],
      offsetof_vfio_irq_set_start: vfio.vfioIrqSet.fields.start[0],
      offsetof_vfio_irq_set_count: vfio.vfioIrqSet.fields.count[0],
      offsetof_vfio_irq_set_data: vfio.VFIO_IRQ_SET_DATA,
      sizeof_vfio_device_gfx_plane_info: vfio.vfioGfxPlaneInfo.size,
      offsetof_vfio_device_gfx_plane_info_argsz: vfio.vfioGfxPlaneInfo.fields.argsz[0],
      offsetof_vfio_device_gfx_plane_info_flags: vfio.vfioGfxPlaneInfo.fields.flags[0],
      offsetof_vfio_device_gfx_plane_info_drm_plane_type:
        vfio.vfioGfxPlaneInfo.fields.drmPlaneType[0],
      offsetof_vfio_device_gfx_plane_info_drm_format: vfio.vfioGfxPlaneInfo.fields.drmFormat[0],
      offsetof_vfio_device_gfx_plane_info_drm_format_mod:
        vfio.vfioGfxPlaneInfo.fields.drmFormatMod[0],
      offsetof_vfio_device_gfx_plane_info_width: vfio.vfioGfxPlaneInfo.fields.width[0],
      offsetof_vfio_device_gfx_plane_info_height: vfio.vfioGfxPlaneInfo.fields.height[0],
      offsetof_vfio_device_gfx_plane_info_stride: vfio.vfioGfxPlaneInfo.fields.stride[0],
      offsetof_vfio_device_gfx_plane_info_size: vfio.vfioGfxPlaneInfo.fields.size[0],
      offsetof_vfio_device_gfx_plane_info_x_pos: vfio.vfioGfxPlaneInfo.fields.xPos[0],
      offsetof_vfio_device_gfx_plane_info_y_pos: vfio.vfioGfxPlaneInfo.fields.yPos[0],
      offsetof_vfio_device_gfx_plane_info_x_hot: vfio.vfioGfxPlaneInfo.fields.xHot[0],
      offsetof_vfio_device_gfx_plane_info_y_hot: vfio.vfioGfxPlaneInfo.fields.yHot[0],
      offsetof_vfio_device_gfx_plane_info_region_index: vfio.VFIO_GFX_PLANE_INFO_REGION_INDEX,
      offsetof_vfio_device_gfx_plane_info_dmabuf_id: vfio.vfioGfxPlaneInfo.fields.dmabufId[0],
    };
    for (const [name, value] of Object.entries(ours)) {
      expect({ name, value: Number(c.get(name)) }).toEqual({ name, value });
    }
  });

  it('agrees on every request number, flag and index the probe prints', () => {
    const c = probe();
    const table = vfio as unknown as Record<string, unknown>;
    let compared = 0;
    for (const [name, value] of c) {
      if (!/^[A-Z]/.test(name) || name.startsWith('VFIO_DEVICE_API_')) continue;
      expect({ name, value: table[name] }).toEqual({ name, value: Number(value) });
      compared++;
    }
    expect(compared).toBeGreaterThan(60);
    expect(c.get('VFIO_DEVICE_API_PCI_STRING_is_vfio-pci')).toBe('1');
    expect(vfio.VFIO_DEVICE_API_PCI_STRING).toBe('vfio-pci');
  });

  it('encodes structs byte for byte as the C compiler lays them out', () => {
    const c = probe('images');
    const region = vfio.vfioRegionInfo.encode({
      flags:
        vfio.VFIO_REGION_INFO_FLAG_READ |
        vfio.VFIO_REGION_INFO_FLAG_WRITE |
        vfio.VFIO_REGION_INFO_FLAG_CAPS,
      index: vfio.VFIO_PCI_CONFIG_REGION_INDEX,
      capOffset: 32,
      size: 0x123456789,
      offset: vfio.vfioPciIndexToOffset(vfio.VFIO_PCI_CONFIG_REGION_INDEX),
    });
    expect(hex(region)).toBe(c.get('vfio_region_info'));
    const set = vfio.encodeIrqSet({
      flags: vfio.VFIO_IRQ_SET_DATA_EVENTFD | vfio.VFIO_IRQ_SET_ACTION_TRIGGER,
      index: vfio.VFIO_PCI_MSI_IRQ_INDEX,
      data: [7, -1],
    });
    expect(hex(set)).toBe(c.get('vfio_irq_set'));
    const plane = vfio.vfioGfxPlaneInfo.encode({
      flags: vfio.VFIO_GFX_PLANE_TYPE_DMABUF,
      drmPlaneType: vfio.DRM_PLANE_TYPE_PRIMARY,
      drmFormat: 0x34325258,
      drmFormatMod: 0x0001020304050607,
      width: 1024,
      height: 768,
      stride: 4096,
      size: 4096 * 768,
      xPos: 1,
      yPos: 2,
      xHot: 3,
      yHot: 4,
      dmabufId: 9,
    });
    expect(hex(plane)).toBe(c.get('vfio_device_gfx_plane_info'));
    const info = vfio.vfioDeviceInfo.encode({
      flags: vfio.VFIO_DEVICE_FLAGS_PCI | vfio.VFIO_DEVICE_FLAGS_RESET,
      numRegions: vfio.VFIO_PCI_NUM_REGIONS,
      numIrqs: vfio.VFIO_PCI_NUM_IRQS,
    });
    expect(hex(info)).toBe(c.get('vfio_device_info'));
    // And back: decoding the C image gives the values that went in.
    const back = vfio.vfioGfxPlaneInfo.decode(
      Buffer.from(c.get('vfio_device_gfx_plane_info')!, 'hex'),
    );
    expect(back).toMatchObject({
      width: 1024,
      height: 768,
      dmabufId: 9,
      drmFormatMod: 0x0001020304050607,
    });
  });
});

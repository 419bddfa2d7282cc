import { KernelError, sysfs } from '@mdev/driver-core';
import {
  DRM_PLANE_TYPE_CURSOR,
  DRM_PLANE_TYPE_PRIMARY,
  fdget,
  mdevVfioExit,
  VFIO_DEVICE_GET_GFX_DMABUF,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_GFX_LINK_STATE_UP,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GFX_PLANE_TYPE_DMABUF,
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_GFX_PLANE_TYPE_REGION,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR1_REGION_INDEX,
  VFIO_PCI_BAR2_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_VGA_REGION_INDEX,
  VFIO_REGION_GFX_EDID_EDID_SIZE,
  VFIO_REGION_GFX_EDID_LINK_STATE,
  VFIO_REGION_INFO_CAP_TYPE,
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  VFIO_REGION_SUBTYPE_GFX_EDID,
  VFIO_REGION_TYPE_GFX,
  type VfioDevice,
  vfioDecodeCapType,
  vfioDeviceOpen,
  vfioRegionGfxEdid,
} from '@mdev/mdev-vfio';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DRM_FORMAT_XRGB8888 } from '../mdpy/defs';
import {
  MBOCHS_EDID_BLOB_OFFSET,
  MBOCHS_EDID_OFFSET,
  MBOCHS_EDID_REGION_INDEX,
  MBOCHS_MEMORY_BAR_OFFSET,
  MBOCHS_MMIO_BAR_OFFSET,
  MBOCHS_MMIO_DISPI_BASE,
  VBE_DISPI_ENABLED,
  VBE_DISPI_INDEX_BPP,
  VBE_DISPI_INDEX_ENABLE,
  VBE_DISPI_INDEX_ID,
  VBE_DISPI_INDEX_VIDEO_MEMORY_64K,
  VBE_DISPI_INDEX_VIRT_WIDTH,
  VBE_DISPI_INDEX_X_OFFSET,
  VBE_DISPI_INDEX_XRES,
  VBE_DISPI_INDEX_Y_OFFSET,
  VBE_DISPI_INDEX_YRES,
  VBE_DISPI_LFB_ENABLED,
} from './defs';
import { type Mbochs, mbochsExit, mbochsInit } from './device';
import { generateEdid } from './edid';

const TYPES = '/sys/devices/virtual/mbochs/mbochs/mdev_supported_types';
const UUID = '5a6b7c8d-0001-4e2f-8a9b-0c1d2e3f4a01';
const MB = 1024 * 1024;

let mbochs: Mbochs;
const handles: VfioDevice[] = [];

beforeEach(() => {
  mbochs = mbochsInit({ maxMbytes: 24 });
});

afterEach(() => {
  for (const h of handles.splice(0)) h.close();
  mbochsExit(mbochs);
  mdevVfioExit();
});

function create(type: string, uuid = UUID): VfioDevice {
  sysfs.write(`${TYPES}/${type}/create`, uuid);
  const h = vfioDeviceOpen(uuid);
  handles.push(h);
  return h;
}

function errno(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (KernelError.is(err)) return err.code;
    throw err;
  }
  return undefined;
}

const dispi = (index: number) => MBOCHS_MMIO_BAR_OFFSET + MBOCHS_MMIO_DISPI_BASE + 2 * index;

/** Programs a mode through the MMIO BAR as bochs-drm does. */
function setMode(dev: VfioDevice, w: number, h: number, extra: Record<number, number> = {}) {
  dev.writeU16(dispi(VBE_DISPI_INDEX_ENABLE), 0);
  dev.writeU16(dispi(VBE_DISPI_INDEX_BPP), 32);
  dev.writeU16(dispi(VBE_DISPI_INDEX_XRES), w);
  dev.writeU16(dispi(VBE_DISPI_INDEX_YRES), h);
  dev.writeU16(dispi(VBE_DISPI_INDEX_VIRT_WIDTH), w);
  dev.writeU16(dispi(VBE_DISPI_INDEX_X_OFFSET), 0);
  dev.writeU16(dispi(VBE_DISPI_INDEX_Y_OFFSET), 0);
  for (const [i, v] of Object.entries(extra)) dev.writeU16(dispi(Number(i)), v);
  dev.writeU16(dispi(VBE_DISPI_INDEX_ENABLE), VBE_DISPI_ENABLED | VBE_DISPI_LFB_ENABLED);
}

const u16 = (b: Uint8Array, at: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(at, true);

describe('mbochs types', () => {
  it('offers small, medium and large and shares the video memory budget', () => {
    expect(sysfs.list(TYPES).sort()).toEqual(['mbochs-large', 'mbochs-medium', 'mbochs-small']);
    expect(sysfs.read(`${TYPES}/mbochs-medium/description`)).toBe(
      'virtual display, 16 MB video memory\n',
    );
    expect(sysfs.read(`${TYPES}/mbochs-large/device_api`)).toBe('vfio-pci\n');
    expect(sysfs.read(`${TYPES}/mbochs-small/available_instances`)).toBe('6\n');
    expect(sysfs.read(`${TYPES}/mbochs-medium/available_instances`)).toBe('1\n');
    expect(sysfs.read(`${TYPES}/mbochs-large/available_instances`)).toBe('0\n');
    expect(errno(() => sysfs.write(`${TYPES}/mbochs-large/create`, UUID))).toBe('ENOMEM');
    create('mbochs-medium');
    expect(sysfs.read(`/sys/bus/mdev/devices/${UUID}/vendor/memory`)).toBe('16 MB\n');
    expect(sysfs.read(`${TYPES}/mbochs-small/available_instances`)).toBe('2\n');
    expect(sysfs.read(`${TYPES}/mbochs-medium/available_instances`)).toBe('0\n');
    const other = '5a6b7c8d-0001-4e2f-8a9b-0c1d2e3f4a02';
    expect(errno(() => sysfs.write(`${TYPES}/mbochs-medium/create`, other))).toBe('ENOMEM');
    sysfs.write(`${TYPES}/mbochs-small/create`, other);
    expect(sysfs.read(`${TYPES}/mbochs-small/available_instances`)).toBe('1\n');
  });
});

describe('mbochs config space and regions', () => {
  it('holds the stdvga ids, the display class and two memory BARs', () => {
    const dev = create('mbochs-small');
    const cfg = dev.read(0, 0xff);
    expect(u16(cfg, 0x00)).toBe(0x1234);
    expect(u16(cfg, 0x02)).toBe(0x1111);
    expect(u16(cfg, 0x04)).toBe(0x0003);
    expect(u16(cfg, 0x06)).toBe(0x0000); // no capabilities
    expect(cfg[0x08]).toBe(0x01);
    expect(u16(cfg, 0x0a)).toBe(0x0380);
    expect(dev.readU32(0x10)).toBe(0x00000008); // BAR0: 32-bit prefetchable memory
    expect(dev.readU32(0x14)).toBe(0);
    expect(dev.readU32(0x18)).toBe(0x00000000); // BAR2: 32-bit memory
    expect(u16(cfg, 0x2c)).toBe(0x1af4);
    expect(u16(cfg, 0x2e)).toBe(0x1100);
    expect(cfg[0x34]).toBe(0);
  });

  it('sizes BAR0 by the type memory and BAR2 by one page', () => {
    for (const [type, size] of [
      ['mbochs-small', 4 * MB],
      ['mbochs-medium', 16 * MB],
    ] as const) {
      const dev = create(type);
      dev.writeU32(0x10, 0xffffffff);
      expect(dev.readU32(0x10)).toBe(((~size + 1) | 0x8) >>> 0);
      dev.writeU32(0x18, 0xffffffff);
      expect(dev.readU32(0x18)).toBe(0xfffff000);
      dev.writeU32(0x10, 0xe0000000);
      dev.writeU32(0x18, 0xfebf0000);
      expect([dev.readU32(0x10), dev.readU32(0x18)]).toEqual([0xe0000008, 0xfebf0000]);
      dev.writeU32(0x14, 0xffffffff);
      expect(dev.readU32(0x14)).toBe(0);
      handles.pop()!.close();
      sysfs.write(`/sys/bus/mdev/devices/${UUID}/remove`, '1');
    }
  });

  it('reports ten regions, the EDID one with its type capability', () => {
    const dev = create('mbochs-small');
    const info = dev.getInfo();
    expect([info.numRegions, info.numIrqs]).toEqual([10, 5]);
    const rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    const regions = [
      [VFIO_PCI_CONFIG_REGION_INDEX, 0, 0xff, rw],
      [
        VFIO_PCI_BAR0_REGION_INDEX,
        MBOCHS_MEMORY_BAR_OFFSET,
        4 * MB,
        rw | VFIO_REGION_INFO_FLAG_MMAP,
      ],
      [VFIO_PCI_BAR2_REGION_INDEX, MBOCHS_MMIO_BAR_OFFSET, 4096, rw],
      [VFIO_PCI_BAR1_REGION_INDEX, 0, 0, 0],
      [VFIO_PCI_VGA_REGION_INDEX, 0, 0, 0],
    ];
    for (const [index, offset, size, flags] of regions) {
      const r = dev.getRegionInfo(index!);
      expect([r.offset, r.size, r.flags, r.caps.length]).toEqual([offset, size, flags, 0]);
    }
    const edid = dev.getRegionInfo(MBOCHS_EDID_REGION_INDEX);
    expect([edid.offset, edid.size]).toEqual([MBOCHS_EDID_OFFSET, 4096]);
    expect(edid.flags).toBe(rw | VFIO_REGION_INFO_FLAG_CAPS);
    expect(edid.capOffset).toBe(32);
    expect(edid.caps.map((c) => [c.id, c.version])).toEqual([[VFIO_REGION_INFO_CAP_TYPE, 1]]);
    expect(vfioDecodeCapType(edid.caps[0]!)).toEqual({
      type: VFIO_REGION_TYPE_GFX,
      subtype: VFIO_REGION_SUBTYPE_GFX_EDID,
    });
    // With an argsz too small for the chain, the reply asks for more and points at nothing.
    const small = new Uint8Array(32);
    new DataView(small.buffer).setUint32(0, 32, true);
    new DataView(small.buffer).setUint32(8, MBOCHS_EDID_REGION_INDEX, true);
    dev.ioctl(VFIO_DEVICE_GET_REGION_INFO, small);
    const dv = new DataView(small.buffer);
    expect(dv.getUint32(0, true)).toBe(48); // 32 + a 16-byte type capability
    expect(dv.getUint32(12, true)).toBe(0);
  });
});

describe('mbochs dispi registers in the MMIO BAR', () => {
  it('reads ID and memory size and stores the mode registers', () => {
    const dev = create('mbochs-small');
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_ID))).toBe(0xb0c5);
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K))).toBe(64);
    setMode(dev, 800, 600);
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_XRES))).toBe(800);
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_YRES))).toBe(600);
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_ENABLE))).toBe(0x41);
    // Only 16-bit accesses reach the registers; vga ports and qemu registers read as zero.
    expect(dev.readU32(dispi(VBE_DISPI_INDEX_XRES) - 2)).toBe(0);
    dev.writeU8(dispi(VBE_DISPI_INDEX_XRES), 1);
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_XRES))).toBe(800);
    expect(dev.readU32(MBOCHS_MMIO_BAR_OFFSET + 0x400)).toBe(0);
    expect(dev.readU32(MBOCHS_MMIO_BAR_OFFSET + 0x600)).toBe(0);
    dev.reset();
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_XRES))).toBe(0);
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_ID))).toBe(0xb0c5);
  });
});

describe('mbochs video memory', () => {
  it('reads and writes at the memory BAR offset asked for (the sample was two pages off)', () => {
    const dev = create('mbochs-small');
    const mem = dev.mmap(MBOCHS_MEMORY_BAR_OFFSET, 4 * MB);
    expect(mem.buffer).toBeInstanceOf(SharedArrayBuffer);
    dev.write(MBOCHS_MEMORY_BAR_OFFSET + 100, [1, 2, 3]);
    expect([...mem.subarray(100, 103)]).toEqual([1, 2, 3]);
    expect([...mem.subarray(100 + 2 * 4096, 103 + 2 * 4096)]).toEqual([0, 0, 0]);
    mem[4 * MB - 1] = 0x77;
    expect(dev.readU8(MBOCHS_MEMORY_BAR_OFFSET + 4 * MB - 1)).toBe(0x77);
    expect(errno(() => dev.read(MBOCHS_MEMORY_BAR_OFFSET + 4 * MB - 2, 4))).toBe('EFAULT');
    expect(errno(() => dev.mmap(MBOCHS_MMIO_BAR_OFFSET, 4096))).toBe('EINVAL');
    expect(errno(() => dev.mmap(MBOCHS_MEMORY_BAR_OFFSET, 4 * MB + 4096))).toBe('EINVAL');
    expect(errno(() => dev.mmap(MBOCHS_MEMORY_BAR_OFFSET, 4096, { shared: false }))).toBe('EINVAL');
  });

  it('gives video memory back when the device is closed', () => {
    const dev = create('mbochs-small');
    dev.writeU32(MBOCHS_MEMORY_BAR_OFFSET, 0xdeadbeef);
    handles.pop()!.close();
    const again = vfioDeviceOpen(UUID);
    handles.push(again);
    expect(again.readU32(MBOCHS_MEMORY_BAR_OFFSET)).toBe(0);
  });
});

describe('mbochs QUERY_GFX_PLANE and GET_GFX_DMABUF', () => {
  it('reports the programmed mode with a dmabuf id on the first query', () => {
    const dev = create('mbochs-small');
    const none = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    expect([none.drmFormat, none.width, none.height, none.size, none.dmabufId]).toEqual([
      0, 0, 0, 0, 0,
    ]);
    setMode(dev, 640, 480);
    // The sample dropped the dmabuf it made here and failed with ENOMEM.
    const p = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    expect(p.drmFormat).toBe(DRM_FORMAT_XRGB8888);
    expect([p.width, p.height, p.stride, p.size]).toEqual([640, 480, 2560, 2560 * 480]);
    expect(p.dmabufId).toBeGreaterThan(0);
    expect([p.drmFormatMod, p.xPos, p.yPos, p.xHot, p.yHot]).toEqual([0, 0, 0, 0, 0]);
    // Same mode, same dmabuf; a new mode, a new one.
    expect(dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY).dmabufId).toBe(
      p.dmabufId,
    );
    setMode(dev, 800, 600);
    const q = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    expect([q.width, q.height, q.stride]).toEqual([800, 600, 3200]);
    expect(q.dmabufId).not.toBe(p.dmabufId);
    expect(mbochs.stateOf(dev.mdev).activeId).toBe(q.dmabufId);
    // The cursor plane is not there.
    const cursor = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_CURSOR);
    expect([cursor.width, cursor.dmabufId]).toEqual([0, 0]);
  });

  it('exports a dma-buf that shares the framebuffer pages', () => {
    const dev = create('mbochs-small');
    setMode(dev, 64, 64, { [VBE_DISPI_INDEX_Y_OFFSET]: 64 }); // the second 16 KiB
    const p = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    expect([p.width, p.height, p.stride, p.size]).toEqual([64, 64, 256, 16384]);
    // The guest draws: pixel (x, y) = 0x00RRGGBB with R = x, G = y, B = 0x5a.
    const frame = new Uint8Array(16384);
    const fdv = new DataView(frame.buffer);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++)
        fdv.setUint32((y * 64 + x) * 4, (x << 16) | (y << 8) | 0x5a, true);
    dev.write(MBOCHS_MEMORY_BAR_OFFSET + 16384, frame);
    const buf = dev.getGfxDmabuf(p.dmabufId);
    expect(buf.size).toBe(16384);
    const view = buf.mmap();
    expect(view).toEqual(frame);
    // It is a view, not a copy: later drawing shows in it.
    dev.writeU32(MBOCHS_MEMORY_BAR_OFFSET + 16384, 0x00ffffff);
    expect(new DataView(view.buffer, view.byteOffset).getUint32(0, true)).toBe(0x00ffffff);
    // Each GET_GFX_DMABUF is a new fd over the same buffer (get_dma_buf + dma_buf_fd), so
    // closing one leaves the other working; the buffer goes when its last fd closes.
    const dmabuf = mbochs.stateOf(dev.mdev).dmabufs.find((d) => d.id === p.dmabufId)!;
    const second = dev.getGfxDmabuf(p.dmabufId);
    expect(second).not.toBe(buf);
    expect(second.fd).not.toBe(buf.fd);
    expect(dmabuf.openFds).toBe(2);
    buf.close();
    expect(errno(() => buf.mmap())).toBe('EBADF');
    expect(dmabuf.exported).toBe(true);
    expect(new DataView(second.mmap().buffer, second.mmap().byteOffset).getUint32(0, true)).toBe(
      0x00ffffff,
    );
    dev.writeU32(MBOCHS_MEMORY_BAR_OFFSET + 16388, 0x00abcdef);
    expect(second.mmap()[4]).toBe(0xef);
    second.close();
    expect(dmabuf.exported).toBe(false);
    const third = dev.getGfxDmabuf(p.dmabufId);
    expect([third.size, third.mmap()[4], dmabuf.openFds]).toEqual([16384, 0xef, 1]);
    third.close();
  });

  it('refuses to export a scanout that does not start on a page, and unknown ids', () => {
    const dev = create('mbochs-small');
    setMode(dev, 64, 64, { [VBE_DISPI_INDEX_X_OFFSET]: 1 });
    const p = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    expect(p.dmabufId).toBeGreaterThan(0);
    expect(errno(() => dev.getGfxDmabuf(p.dmabufId))).toBe('EINVAL');
    expect(errno(() => dev.getGfxDmabuf(p.dmabufId + 100))).toBe('ENOENT');
    expect(errno(() => dev.ioctl(VFIO_DEVICE_GET_GFX_DMABUF, null))).toBe('EFAULT');
  });

  it('reports a bad mode as a disabled plane and a failed check', () => {
    const dev = create('mbochs-small');
    setMode(dev, 1024, 1025); // needs more than 4 MB
    const p = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    expect([p.width, p.height, p.size, p.dmabufId]).toEqual([0, 0, 0, 0]);
    expect(errno(() => mbochs.stateOf(dev.mdev).mode())).toBe('EINVAL');
    setMode(dev, 800, 600, { [VBE_DISPI_INDEX_BPP]: 16 });
    expect(errno(() => mbochs.stateOf(dev.mdev).mode())).toBe('EINVAL');
  });

  it('answers the probes: dma-buf yes, region no', () => {
    const dev = create('mbochs-small');
    const probe = dev.queryGfxPlane(
      VFIO_GFX_PLANE_TYPE_PROBE | VFIO_GFX_PLANE_TYPE_DMABUF,
      DRM_PLANE_TYPE_PRIMARY,
    );
    expect(probe.dmabufId).toBe(0);
    expect(
      errno(() =>
        dev.queryGfxPlane(
          VFIO_GFX_PLANE_TYPE_PROBE | VFIO_GFX_PLANE_TYPE_REGION,
          DRM_PLANE_TYPE_PRIMARY,
        ),
      ),
    ).toBe('EINVAL');
    expect(errno(() => dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_REGION, DRM_PLANE_TYPE_PRIMARY))).toBe(
      'EINVAL',
    );
  });

  it('unlinks dmabufs at close; an exported one stays readable', () => {
    const dev = create('mbochs-small');
    setMode(dev, 64, 64);
    dev.writeU32(MBOCHS_MEMORY_BAR_OFFSET, 0x123456);
    const p = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    const buf = dev.getGfxDmabuf(p.dmabufId);
    handles.pop()!.close();
    expect(new DataView(buf.mmap().buffer, buf.mmap().byteOffset).getUint32(0, true)).toBe(
      0x123456,
    );
    const again = vfioDeviceOpen(UUID);
    handles.push(again);
    expect(errno(() => again.getGfxDmabuf(p.dmabufId))).toBe('ENOENT');
    buf.close();
  });
});

describe('mbochs EDID region', () => {
  it('takes a blob from the host and shows it to the guest while the link is up', () => {
    const dev = create('mbochs-medium');
    const regs = vfioRegionGfxEdid.decode(dev.read(MBOCHS_EDID_OFFSET, 24));
    expect(regs).toEqual({
      edidOffset: MBOCHS_EDID_BLOB_OFFSET,
      edidMaxSize: 0x400,
      edidSize: 0,
      maxXres: 1920,
      maxYres: 1440,
      linkState: 0,
    });
    // vfio.h's update protocol: link down, blob and size, link up.
    const blob = generateEdid({ width: 1920, height: 1080, name: 'mbochs' });
    dev.writeU32(MBOCHS_EDID_OFFSET + VFIO_REGION_GFX_EDID_LINK_STATE, 2);
    dev.write(MBOCHS_EDID_OFFSET + regs.edidOffset, blob);
    dev.writeU32(MBOCHS_EDID_OFFSET + VFIO_REGION_GFX_EDID_EDID_SIZE, blob.length);
    expect(dev.readU32(MBOCHS_MMIO_BAR_OFFSET)).toBe(0); // link not up yet
    dev.writeU32(
      MBOCHS_EDID_OFFSET + VFIO_REGION_GFX_EDID_LINK_STATE,
      VFIO_DEVICE_GFX_LINK_STATE_UP,
    );
    // Read back by the host, from the region.
    expect(dev.read(MBOCHS_EDID_OFFSET + regs.edidOffset, 128)).toEqual(blob);
    expect(dev.readU32(MBOCHS_EDID_OFFSET + VFIO_REGION_GFX_EDID_EDID_SIZE)).toBe(128);
    // Read by the guest, from the start of the MMIO BAR, in 4-byte pieces.
    expect(dev.read(MBOCHS_MMIO_BAR_OFFSET, 128)).toEqual(blob);
    expect(dev.readU32(MBOCHS_MMIO_BAR_OFFSET + 128)).toBe(0);
    // Registers take only aligned 4-byte accesses; the read-only ones keep their values.
    dev.writeU32(MBOCHS_EDID_OFFSET + 12, 4096);
    expect(dev.readU32(MBOCHS_EDID_OFFSET + 12)).toBe(1920);
    expect(dev.readU16(MBOCHS_EDID_OFFSET + 12)).toBe(0);
  });
});

describe('mbochs bad calls', () => {
  it('answers each with its errno', () => {
    const dev = create('mbochs-small');
    expect(errno(() => dev.getRegionInfo(10))).toBe('EINVAL');
    expect(errno(() => dev.getRegionInfo(0xffffffff))).toBe('EINVAL');
    expect(errno(() => dev.getIrqInfo(VFIO_PCI_NUM_IRQS))).toBe('EINVAL');
    expect(dev.getIrqInfo(0).count).toBe(0);
    expect(errno(() => dev.ioctl(VFIO_DEVICE_SET_IRQS, new Uint8Array(20)))).toBe('EINVAL');
    expect(errno(() => dev.ioctl(VFIO_DEVICE_GET_REGION_INFO + 100, null))).toBe('ENOTTY');
    // Nothing is mapped between config space and the MMIO BAR, nor past video memory.
    expect(errno(() => dev.read(0x800, 4))).toBe('EFAULT');
    expect(errno(() => dev.write(0xfc, [1, 2, 3, 4]))).toBe('EFAULT');
    expect(errno(() => dev.read(MBOCHS_MEMORY_BAR_OFFSET + 4 * MB, 1))).toBe('EFAULT');
  });
});

describe('mbochs under hostile accesses', () => {
  it('answers random reads, writes and ioctls with data or a KernelError, nothing else', () => {
    const dev = create('mbochs-small');
    setMode(dev, 64, 64);
    // dmabuf 1 exists, so GET_GFX_DMABUF has something to find.
    dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY);
    let seed = 0x2019;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    // A field value: mostly small (so handler bodies run: plane types, region and irq
    // indexes, dmabuf ids), sometimes anything.
    const field = () => (rnd(4) === 0 ? (rnd(0x10000) * 0x10000 + rnd(0x10000)) >>> 0 : rnd(12));
    /**
     * An ioctl buffer: a random-garbage one now and then; for GET_GFX_DMABUF a small dmabuf
     * id; else a header with a valid argsz (the buffer's length, at least the request's minsz)
     * and random fields after it.
     */
    const ioctlArg = (cmd: number): Uint8Array => {
      if (rnd(8) === 0) return new Uint8Array(rnd(80)).fill(0xff);
      if (cmd === VFIO_DEVICE_GET_GFX_DMABUF) return Uint8Array.of(rnd(3), 0, 0, 0);
      const buf = new Uint8Array(16 + rnd(64) + 4 * rnd(2));
      const dv = new DataView(buf.buffer);
      for (let at = 4; at + 4 <= buf.length; at += 4) dv.setUint32(at, field(), true);
      dv.setUint32(0, rnd(8) === 0 ? field() : buf.length, true);
      return buf;
    };
    const counts = { ok: 0, failed: 0 };
    const span = MBOCHS_MEMORY_BAR_OFFSET + 4 * MB + 8192;
    const dmabufs: { close(): void }[] = [];
    for (let i = 0; i < 3000; i++) {
      const pos = rnd(3) === 0 ? rnd(0x4000) : rnd(span);
      const len = 1 + rnd(rnd(4) === 0 ? 9000 : 9);
      const op = rnd(3);
      try {
        if (op === 0) dev.read(pos, len);
        else if (op === 1) dev.write(pos, new Uint8Array(len).fill(rnd(256)));
        else {
          const cmd = 0x3b00 + 100 + rnd(20);
          const arg = ioctlArg(cmd);
          const ret = dev.ioctl(cmd, arg);
          if (cmd === VFIO_DEVICE_GET_GFX_DMABUF) dmabufs.push(fdget(ret));
          counts.ok++;
          continue;
        }
      } catch (err) {
        expect(KernelError.is(err), String(err)).toBe(true);
      }
      if (op === 2) counts.failed++;
    }
    // The valid headers reached the handlers: many ioctls succeeded, among them dma-bufs.
    expect(counts.ok).toBeGreaterThan(100);
    expect(counts.failed).toBeGreaterThan(100);
    expect(dmabufs.length).toBeGreaterThan(0);
    for (const b of dmabufs) b.close();
    // The device still answers.
    expect(dev.readU16(dispi(VBE_DISPI_INDEX_VIDEO_MEMORY_64K))).toBe(64);
  });
});

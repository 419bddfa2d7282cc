import { KernelError, sysfs } from '@mdev/driver-core';
import {
  DRM_PLANE_TYPE_CURSOR,
  DRM_PLANE_TYPE_PRIMARY,
  mdevVfioExit,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GFX_PLANE_TYPE_DMABUF,
  VFIO_GFX_PLANE_TYPE_PROBE,
  VFIO_GFX_PLANE_TYPE_REGION,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_BAR1_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  type VfioDevice,
  vfioDeviceOpen,
} from '@mdev/mdev-vfio';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DRM_FORMAT_XRGB8888, MDPY_DISPLAY_REGION, MDPY_MEMORY_BAR_OFFSET } from './defs';
import { type Mdpy, mdpyExit, mdpyInit } from './device';

const TYPES = '/sys/devices/virtual/mdpy/mdpy/mdev_supported_types';
const UUID = '0e2c8a52-1f4d-4c6a-9b1e-6d0c2f3a7b01';
const UUID2 = '0e2c8a52-1f4d-4c6a-9b1e-6d0c2f3a7b02';

let mdpy: Mdpy;
const handles: VfioDevice[] = [];

beforeEach(() => {
  mdpy = mdpyInit({ maxDevices: 2 });
});

afterEach(() => {
  for (const h of handles.splice(0)) h.close();
  mdpyExit(mdpy);
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

const u32 = (b: Uint8Array, at: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const u16 = (b: Uint8Array, at: number) =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(at, true);

describe('mdpy types', () => {
  it('offers vga, xga and hd with their attributes, and enforces available_instances', () => {
    expect(sysfs.list(TYPES).sort()).toEqual(['mdpy-hd', 'mdpy-vga', 'mdpy-xga']);
    expect(sysfs.read(`${TYPES}/mdpy-xga/name`)).toBe('mdpy-xga\n');
    expect(sysfs.read(`${TYPES}/mdpy-hd/description`)).toBe(
      'virtual display, 1920x1080 framebuffer\n',
    );
    expect(sysfs.read(`${TYPES}/mdpy-vga/device_api`)).toBe('vfio-pci\n');
    expect(sysfs.read(`${TYPES}/mdpy-vga/available_instances`)).toBe('2\n');
    create('mdpy-vga');
    // The count is shared by all types.
    expect(sysfs.read(`${TYPES}/mdpy-hd/available_instances`)).toBe('1\n');
    expect(sysfs.read(`/sys/bus/mdev/devices/${UUID}/vendor/resolution`)).toBe('640x480\n');
    create('mdpy-hd', UUID2);
    expect(sysfs.read(`${TYPES}/mdpy-xga/available_instances`)).toBe('0\n');
    expect(
      errno(() => sysfs.write(`${TYPES}/mdpy-xga/create`, '0e2c8a52-1f4d-4c6a-9b1e-6d0c2f3a7b03')),
    ).toBe('ENOMEM');
    sysfs.write(`/sys/bus/mdev/devices/${UUID}/remove`, '1');
    expect(sysfs.read(`${TYPES}/mdpy-xga/available_instances`)).toBe('1\n');
  });
});

describe('mdpy config space', () => {
  it('holds the ids, the display class, BAR0 and the vendor capability with the mode', () => {
    const dev = create('mdpy-xga');
    const cfg = dev.read(0, 0xff);
    expect(cfg.length).toBe(0xff);
    expect(u16(cfg, 0x00)).toBe(0x1b36); // vendor: Red Hat
    expect(u16(cfg, 0x02)).toBe(0x000f);
    expect(u16(cfg, 0x04)).toBe(0x0003); // I/O + memory
    expect(u16(cfg, 0x06)).toBe(0x0010); // capabilities list
    expect(cfg[0x08]).toBe(0x01); // revision
    expect(u16(cfg, 0x0a)).toBe(0x0380); // display, other
    expect(u32(cfg, 0x10)).toBe(0x00000008); // 32-bit prefetchable memory
    expect(u16(cfg, 0x2c)).toBe(0x1af4);
    expect(u16(cfg, 0x2e)).toBe(0x1100);
    expect(cfg[0x34]).toBe(0x40);
    expect([...cfg.subarray(0x40, 0x43)]).toEqual([0x09, 0x00, 0x10]); // vendor cap, last, 16 bytes
    expect(u32(cfg, 0x44)).toBe(DRM_FORMAT_XRGB8888);
    expect(u32(cfg, 0x44)).toBe(0x34325258); // 'XR24'
    expect(u32(cfg, 0x48)).toBe(1024);
    expect(u32(cfg, 0x4c)).toBe(768);
    // Everything else is zero.
    const known = new Set([
      0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x10, 0x2c, 0x2d, 0x2e, 0x2f, 0x34, 0x40, 0x42,
    ]);
    for (let i = 0; i < 0x44; i++)
      if (!known.has(i)) expect(cfg[i], `byte 0x${i.toString(16)}`).toBe(0);
  });

  it('sizes BAR0 by the framebuffer size and keeps its flag bits', () => {
    for (const [type, size] of [
      ['mdpy-vga', 2 << 20],
      ['mdpy-xga', 4 << 20],
      ['mdpy-hd', 8 << 20],
    ] as const) {
      const dev = create(type);
      dev.writeU32(0x10, 0xffffffff);
      expect(dev.readU32(0x10)).toBe(((~size + 1) | 0x8) >>> 0);
      expect(dev.getRegionInfo(VFIO_PCI_BAR0_REGION_INDEX).size).toBe(size);
      dev.writeU32(0x10, 0xfe000003);
      expect(dev.readU32(0x10)).toBe(0xfe000008);
      // Writes elsewhere (command, other BARs, the capability) are ignored.
      dev.writeU32(0x14, 0xffffffff);
      expect(dev.readU32(0x14)).toBe(0);
      dev.writeU32(0x48, 1);
      expect(dev.readU32(0x48)).toBeGreaterThan(1);
      handles.pop()!.close();
      sysfs.write(`/sys/bus/mdev/devices/${UUID}/remove`, '1');
    }
  });
});

describe('mdpy regions and framebuffer', () => {
  it('reports config, BAR0 and the display region', () => {
    const dev = create('mdpy-vga');
    const info = dev.getInfo();
    expect(info.flags).toBe(VFIO_DEVICE_FLAGS_PCI);
    expect(info.numRegions).toBe(9);
    expect(info.numIrqs).toBe(5);
    const cfg = dev.getRegionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
    expect([cfg.offset, cfg.size, cfg.flags]).toEqual([
      0,
      0xff,
      VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
    ]);
    const rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    for (const index of [VFIO_PCI_BAR0_REGION_INDEX, MDPY_DISPLAY_REGION]) {
      const r = dev.getRegionInfo(index);
      expect([r.offset, r.size, r.flags]).toEqual([
        MDPY_MEMORY_BAR_OFFSET,
        2 << 20,
        rw | VFIO_REGION_INFO_FLAG_MMAP,
      ]);
    }
    const bar1 = dev.getRegionInfo(VFIO_PCI_BAR1_REGION_INDEX);
    expect([bar1.size, bar1.flags]).toEqual([0, 0]);
  });

  it('draws the grey gradient at creation and again at reset', () => {
    const dev = create('mdpy-vga');
    const stride = 640 * 4;
    for (const row of [0, 1, 100, 240, 479]) {
      const line = dev.read(MDPY_MEMORY_BAR_OFFSET + row * stride, stride);
      expect(new Set(line)).toEqual(new Set([Math.floor((row * 255) / 480)]));
    }
    dev.write(MDPY_MEMORY_BAR_OFFSET + 479 * stride, new Uint8Array(stride));
    expect(dev.readU32(MDPY_MEMORY_BAR_OFFSET + 479 * stride)).toBe(0);
    dev.reset();
    expect(dev.readU8(MDPY_MEMORY_BAR_OFFSET + 479 * stride)).toBe(Math.floor((479 * 255) / 480));
  });

  it('reads and writes the framebuffer at the offset asked for (the sample ignored it)', () => {
    const dev = create('mdpy-vga');
    const at = 300 * 640 * 4 + 17;
    const before0 = dev.read(MDPY_MEMORY_BAR_OFFSET, 8);
    dev.write(MDPY_MEMORY_BAR_OFFSET + at, [1, 2, 3, 4, 5, 6, 7]);
    expect([...dev.read(MDPY_MEMORY_BAR_OFFSET + at, 7)]).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // The start of the framebuffer did not change.
    expect(dev.read(MDPY_MEMORY_BAR_OFFSET, 8)).toEqual(before0);
    // The last byte of the BAR is reachable, one past it is not.
    dev.writeU8(MDPY_MEMORY_BAR_OFFSET + (2 << 20) - 1, 0xab);
    expect(dev.readU8(MDPY_MEMORY_BAR_OFFSET + (2 << 20) - 1)).toBe(0xab);
    expect(errno(() => dev.read(MDPY_MEMORY_BAR_OFFSET + (2 << 20) - 1, 2))).toBe('EFAULT');
    // Between config space and the BAR nothing is mapped.
    expect(errno(() => dev.read(0x800, 4))).toBe('EFAULT');
    expect(errno(() => dev.read(0xfe, 4))).toBe('EFAULT');
  });

  it('maps the framebuffer as a shared view', () => {
    const dev = create('mdpy-xga');
    const fb = dev.mmap(MDPY_MEMORY_BAR_OFFSET, 4 << 20);
    expect(fb.buffer).toBeInstanceOf(SharedArrayBuffer);
    fb[4096] = 0x5a;
    expect(dev.readU8(MDPY_MEMORY_BAR_OFFSET + 4096)).toBe(0x5a);
    dev.writeU8(MDPY_MEMORY_BAR_OFFSET + 8, 0xc3);
    expect(fb[8]).toBe(0xc3);
    expect(errno(() => dev.mmap(0, 4096))).toBe('EINVAL');
    expect(errno(() => dev.mmap(MDPY_MEMORY_BAR_OFFSET, (4 << 20) + 4096))).toBe('EINVAL');
    expect(errno(() => dev.mmap(MDPY_MEMORY_BAR_OFFSET, 4096, { shared: false }))).toBe('EINVAL');
  });
});

describe('mdpy QUERY_GFX_PLANE', () => {
  it('describes the primary plane as the display region', () => {
    const dev = create('mdpy-hd');
    const p = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_REGION, DRM_PLANE_TYPE_PRIMARY);
    expect(p.drmFormat).toBe(DRM_FORMAT_XRGB8888);
    expect([p.width, p.height, p.stride, p.size]).toEqual([1920, 1080, 1920 * 4, 8 << 20]);
    expect(p.dmabufId).toBe(MDPY_DISPLAY_REGION); // region_index
    expect([p.drmFormatMod, p.xPos, p.yPos, p.xHot, p.yHot]).toEqual([0, 0, 0, 0, 0]);
    const cursor = dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_REGION, DRM_PLANE_TYPE_CURSOR);
    expect([cursor.drmFormat, cursor.width, cursor.height, cursor.size]).toEqual([0, 0, 0, 0]);
  });

  it('answers the probes: region yes, dma-buf no', () => {
    const dev = create('mdpy-vga');
    const probe = dev.queryGfxPlane(
      VFIO_GFX_PLANE_TYPE_PROBE | VFIO_GFX_PLANE_TYPE_REGION,
      DRM_PLANE_TYPE_PRIMARY,
    );
    expect(probe.width).toBe(0); // a probe fills nothing in
    expect(
      errno(() =>
        dev.queryGfxPlane(
          VFIO_GFX_PLANE_TYPE_PROBE | VFIO_GFX_PLANE_TYPE_DMABUF,
          DRM_PLANE_TYPE_PRIMARY,
        ),
      ),
    ).toBe('EINVAL');
    expect(errno(() => dev.queryGfxPlane(VFIO_GFX_PLANE_TYPE_DMABUF, DRM_PLANE_TYPE_PRIMARY))).toBe(
      'EINVAL',
    );
    expect(errno(() => dev.queryGfxPlane(0, DRM_PLANE_TYPE_PRIMARY))).toBe('EINVAL');
  });
});

describe('mdpy bad calls', () => {
  it('answers each with its errno', () => {
    const dev = create('mdpy-vga');
    expect(errno(() => dev.getRegionInfo(9))).toBe('EINVAL');
    expect(errno(() => dev.getRegionInfo(17))).toBe('EINVAL');
    expect(errno(() => dev.getIrqInfo(VFIO_PCI_NUM_IRQS))).toBe('EINVAL');
    expect(dev.getIrqInfo(VFIO_PCI_INTX_IRQ_INDEX).count).toBe(0);
    expect(errno(() => dev.ioctl(VFIO_DEVICE_SET_IRQS, new Uint8Array(20)))).toBe('EINVAL');
    expect(errno(() => dev.ioctl(VFIO_DEVICE_GET_REGION_INFO + 100, null))).toBe('ENOTTY');
    expect(errno(() => dev.ioctl(0x5401, null))).toBe('ENOTTY'); // TCGETS
    // A struct shorter than its minsz faults, an argsz below minsz is EINVAL.
    expect(errno(() => dev.ioctl(VFIO_DEVICE_GET_REGION_INFO, new Uint8Array(8)))).toBe('EFAULT');
    const small = new Uint8Array(32);
    small[8] = VFIO_PCI_CONFIG_REGION_INDEX;
    small[0] = 16; // argsz
    expect(errno(() => dev.ioctl(VFIO_DEVICE_GET_REGION_INFO, small))).toBe('EINVAL');
  });
});

describe('mdpy under hostile accesses', () => {
  it('answers random reads, writes and ioctls with data or a KernelError, nothing else', () => {
    const dev = create('mdpy-vga');
    let seed = 0x2019;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const span = MDPY_MEMORY_BAR_OFFSET + (2 << 20) + 8192;
    for (let i = 0; i < 3000; i++) {
      const pos = rnd(3) === 0 ? rnd(0x2000) : rnd(span);
      const len = 1 + rnd(rnd(4) === 0 ? 9000 : 9);
      const op = rnd(3);
      try {
        if (op === 0) dev.read(pos, len);
        else if (op === 1) dev.write(pos, new Uint8Array(len).fill(rnd(256)));
        else
          dev.ioctl(VFIO_DEVICE_GET_REGION_INFO - 8 + rnd(20), new Uint8Array(rnd(80)).fill(0xff));
      } catch (err) {
        expect(KernelError.is(err), String(err)).toBe(true);
      }
    }
    expect(dev.readU16(0)).toBe(0x1b36);
  });
});

import {
  VFIO_DEVICE_GFX_LINK_STATE_DOWN,
  VFIO_DEVICE_GFX_LINK_STATE_UP,
  vfioRegionGfxEdid,
} from '@mdev/mdev-vfio';
import { describe, expect, it } from 'vitest';
import { DRM_FORMAT_XRGB8888 } from '../mdpy/defs';
import {
  MBOCHS_EDID_BLOB_OFFSET,
  MBOCHS_EDID_MAX_SIZE,
  VBE_DISPI_ENABLED,
  VBE_DISPI_GETCAPS,
  VBE_DISPI_INDEX_BPP,
  VBE_DISPI_INDEX_ENABLE,
  VBE_DISPI_INDEX_ID,
  VBE_DISPI_INDEX_VIDEO_MEMORY_64K,
  VBE_DISPI_INDEX_VIRT_WIDTH,
  VBE_DISPI_INDEX_X_OFFSET,
  VBE_DISPI_INDEX_XRES,
  VBE_DISPI_INDEX_Y_OFFSET,
  VBE_DISPI_INDEX_YRES,
} from './defs';
import { DispiRegisters } from './dispi';
import { generateEdid, MbochsEdid } from './edid';
import { mbochsCheckFramebuffer } from './framebuffer';

const MB = 1024 * 1024;

describe('bochs dispi registers', () => {
  it('resets to ID5 and the memory size in 64K units', () => {
    const d = new DispiRegisters(16 * MB, { maxX: 1920, maxY: 1440 });
    expect(d.read(VBE_DISPI_INDEX_ID)).toBe(0xb0c5);
    expect(d.read(VBE_DISPI_INDEX_VIDEO_MEMORY_64K)).toBe(256);
    expect(d.read(VBE_DISPI_INDEX_XRES)).toBe(0);
    d.write(VBE_DISPI_INDEX_XRES, 800);
    d.reset();
    expect(d.read(VBE_DISPI_INDEX_XRES)).toBe(0);
  });

  it('reaches the registers through the index and data ports', () => {
    const d = new DispiRegisters(4 * MB, { maxX: 800, maxY: 600 });
    d.writeIndex(VBE_DISPI_INDEX_YRES);
    d.writeData(0x1_0258); // only 16 bits are kept
    expect(d.read(VBE_DISPI_INDEX_YRES)).toBe(600);
    expect(d.readData()).toBe(600);
    d.writeIndex(0x42); // past the register file
    d.writeData(1);
    expect(d.readData()).toBe(0);
  });

  it('keeps VIDEO_MEMORY_64K read-only and ID to known versions', () => {
    const d = new DispiRegisters(4 * MB, { maxX: 0, maxY: 0 });
    d.write(VBE_DISPI_INDEX_VIDEO_MEMORY_64K, 1);
    expect(d.read(VBE_DISPI_INDEX_VIDEO_MEMORY_64K)).toBe(64);
    d.write(VBE_DISPI_INDEX_ID, 0xb0c2);
    expect(d.read(VBE_DISPI_INDEX_ID)).toBe(0xb0c2);
    d.write(VBE_DISPI_INDEX_ID, 0x1234);
    expect(d.read(VBE_DISPI_INDEX_ID)).toBe(0xb0c2);
  });

  it('reports the limits with GETCAPS', () => {
    const d = new DispiRegisters(4 * MB, { maxX: 800, maxY: 600 });
    d.write(VBE_DISPI_INDEX_XRES, 640);
    d.write(VBE_DISPI_INDEX_ENABLE, VBE_DISPI_GETCAPS);
    expect([d.read(1), d.read(2), d.read(3)]).toEqual([800, 600, 32]);
    d.write(VBE_DISPI_INDEX_ENABLE, 0);
    expect(d.read(VBE_DISPI_INDEX_XRES)).toBe(640);
    const unlimited = new DispiRegisters(64 * MB, { maxX: 0, maxY: 0 });
    unlimited.write(VBE_DISPI_INDEX_ENABLE, VBE_DISPI_GETCAPS);
    expect([unlimited.read(1), unlimited.read(2)]).toEqual([16000, 12000]);
  });
});

describe('mbochs framebuffer checks', () => {
  function regs(values: Record<number, number>) {
    return (i: number) => values[i] ?? 0;
  }
  const good = {
    [VBE_DISPI_INDEX_ENABLE]: VBE_DISPI_ENABLED,
    [VBE_DISPI_INDEX_BPP]: 32,
    [VBE_DISPI_INDEX_XRES]: 800,
    [VBE_DISPI_INDEX_YRES]: 600,
  };

  it('computes stride, size and offset of a valid mode', () => {
    expect(mbochsCheckFramebuffer(regs(good), 4 * MB)).toEqual({
      drmFormat: DRM_FORMAT_XRGB8888,
      bytepp: 4,
      width: 800,
      height: 600,
      stride: 3200,
      size: 3200 * 600,
      offset: 0,
    });
    const panned = mbochsCheckFramebuffer(
      regs({
        ...good,
        [VBE_DISPI_INDEX_VIRT_WIDTH]: 1024,
        [VBE_DISPI_INDEX_X_OFFSET]: 16,
        [VBE_DISPI_INDEX_Y_OFFSET]: 2,
      }),
      4 * MB,
    );
    expect([panned.stride, panned.size, panned.offset]).toEqual([4096, 4096 * 600, 64 + 8192]);
  });

  it('refuses disabled, non-32bpp, tiny and overflowing modes with EINVAL', () => {
    const bad = [
      { ...good, [VBE_DISPI_INDEX_ENABLE]: 0 },
      { ...good, [VBE_DISPI_INDEX_BPP]: 16 },
      { ...good, [VBE_DISPI_INDEX_XRES]: 63 },
      { ...good, [VBE_DISPI_INDEX_YRES]: 32 },
      { ...good, [VBE_DISPI_INDEX_XRES]: 1024, [VBE_DISPI_INDEX_YRES]: 1025 }, // 4 MB + 4 KiB
      { ...good, [VBE_DISPI_INDEX_Y_OFFSET]: 800 },
    ];
    for (const values of bad) {
      expect(() => mbochsCheckFramebuffer(regs(values), 4 * MB)).toThrowError(
        expect.objectContaining({ code: 'EINVAL' }),
      );
    }
    // Exactly filling video memory is fine.
    const full = { ...good, [VBE_DISPI_INDEX_XRES]: 1024, [VBE_DISPI_INDEX_YRES]: 1024 };
    expect(mbochsCheckFramebuffer(regs(full), 4 * MB).size).toBe(4 * MB);
  });
});

describe('EDID', () => {
  it('generates a base block with header, mode and a valid checksum', () => {
    const e = generateEdid({ width: 1024, height: 768, name: 'mbochs-test' });
    expect(e.length).toBe(128);
    expect([...e.subarray(0, 8)]).toEqual([0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    expect(e.reduce((a, b) => a + b, 0) % 256).toBe(0);
    // "RHT": R=18, H=8, T=20 packed in 5-bit letters, big-endian.
    expect((e[8]! << 8) | e[9]!).toBe((18 << 10) | (8 << 5) | 20);
    expect([e[18], e[19]]).toEqual([1, 4]);
    // The preferred detailed timing: active size in the 12-bit split fields.
    expect(e[56]! | ((e[58]! >> 4) << 8)).toBe(1024);
    expect(e[59]! | ((e[61]! >> 4) << 8)).toBe(768);
    const clock = (e[54]! | (e[55]! << 8)) * 10000;
    const htotal = 1024 + (e[57]! | ((e[58]! & 0xf) << 8));
    const vtotal = 768 + (e[60]! | ((e[61]! & 0xf) << 8));
    expect(Math.round(clock / (htotal * vtotal))).toBe(60);
    // The monitor name descriptor.
    const name = e.findIndex((_, i) => i >= 54 && (i - 54) % 18 === 0 && e[i + 3] === 0xfc);
    expect(Buffer.from(e.subarray(name + 5, name + 16)).toString('latin1')).toBe('mbochs-test');
    expect(() => generateEdid({ width: 5000, height: 100 })).toThrow(RangeError);
  });

  it('keeps the read-only registers, takes link state and size, and bounds the blob', () => {
    const edid = new MbochsEdid(800, 600);
    const regs = new Uint8Array(24);
    for (let off = 0; off < 24; off += 4) edid.access(off, regs.subarray(off, off + 4), false);
    expect(vfioRegionGfxEdid.decode(regs)).toEqual({
      edidOffset: MBOCHS_EDID_BLOB_OFFSET,
      edidMaxSize: MBOCHS_EDID_MAX_SIZE,
      edidSize: 0,
      maxXres: 800,
      maxYres: 600,
      linkState: 0,
    });
    const u32 = (v: number) => new Uint8Array(new Uint32Array([v]).buffer);
    edid.access(12, u32(4096), true); // max_xres is read-only
    edid.access(20, u32(VFIO_DEVICE_GFX_LINK_STATE_DOWN), true);
    edid.access(20, u32(7), true); // not a link state
    edid.access(8, u32(MBOCHS_EDID_MAX_SIZE + 1), true); // larger than the blob
    edid.access(8, u32(128), true);
    expect([edid.maxXres, edid.linkState, edid.edidSize]).toEqual([
      800,
      VFIO_DEVICE_GFX_LINK_STATE_DOWN,
      128,
    ]);
    // Unaligned or narrow register reads return zeros (the sample left the buffer untouched).
    const narrow = new Uint8Array([9, 9]);
    edid.access(4, narrow, false);
    expect([...narrow]).toEqual([0, 0]);
    // The blob: writes past edid_max_size are refused, reads there give zeros.
    const blob = generateEdid({ width: 800, height: 600 });
    edid.access(MBOCHS_EDID_BLOB_OFFSET, blob, true);
    edid.access(
      MBOCHS_EDID_BLOB_OFFSET + MBOCHS_EDID_MAX_SIZE - 2,
      new Uint8Array(4).fill(1),
      true,
    );
    const tail = new Uint8Array(4).fill(9);
    edid.access(MBOCHS_EDID_BLOB_OFFSET + MBOCHS_EDID_MAX_SIZE - 2, tail, false);
    expect([...tail]).toEqual([0, 0, 0, 0]);
    // The guest sees the blob only while the link is up, and only edid_size bytes of it.
    const guest = new Uint8Array(4);
    edid.readForGuest(0, guest);
    expect([...guest]).toEqual([0, 0, 0, 0]);
    edid.linkState = VFIO_DEVICE_GFX_LINK_STATE_UP;
    edid.readForGuest(0, guest);
    expect([...guest]).toEqual([...blob.subarray(0, 4)]);
    edid.readForGuest(126, guest);
    expect([...guest]).toEqual([blob[126], blob[127], 0, 0]);
  });

  it('ignores accesses past the region without throwing', () => {
    const edid = new MbochsEdid(0, 0);
    const before = edid.blob.slice();
    expect(() => edid.access(4000, new Uint8Array(200).fill(7), true)).not.toThrow();
    expect(edid.blob).toEqual(before);
  });
});

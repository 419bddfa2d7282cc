import { describe, expect, it } from 'vitest';
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PciConfigSpace,
} from './pci';

const bar = (i: number) => PCI_BASE_ADDRESS_0 + i * 4;

describe('PciConfigSpace', () => {
  it('answers BAR sizing for I/O and 32-bit prefetchable memory BARs', () => {
    const c = new PciConfigSpace();
    c.defineBar(0, { size: 8, io: true });
    c.defineBar(2, { size: 4 << 20, prefetch: true });
    expect(c.u32(bar(0))).toBe(PCI_BASE_ADDRESS_SPACE_IO);
    expect(c.u32(bar(2))).toBe(PCI_BASE_ADDRESS_MEM_PREFETCH);
    c.writeBar(0, 0xffffffff);
    c.writeBar(2, 0xffffffff);
    expect(c.u32(bar(0))).toBe(0xfffffff9);
    expect(c.u32(bar(2))).toBe(0xffc00008);
    expect(c.barSize(0)).toBe(8);
    expect(c.barSize(2)).toBe(4 << 20);
    // Addresses keep the flags and lose the bits below the size.
    c.writeBar(2, 0xfe123456);
    expect(c.u32(bar(2))).toBe(0xfe000008);
    expect(c.barAddress(2)).toBe(0xfe000000);
    // Unimplemented BARs stay 0.
    c.writeBar(1, 0xffffffff);
    expect(c.u32(bar(1))).toBe(0);
    expect(c.barSize(1)).toBe(0);
  });

  it('sizes a 64-bit memory BAR across its two registers', () => {
    const c = new PciConfigSpace();
    c.defineBar(0, { size: 1 << 20, mem64: true });
    c.writeBar(0, 0xffffffff);
    c.writeBar(1, 0xffffffff);
    expect(c.u32(bar(0))).toBe((0xfff00000 | PCI_BASE_ADDRESS_MEM_TYPE_64) >>> 0);
    expect(c.u32(bar(1))).toBe(0xffffffff);
    const mask = (BigInt(c.u32(bar(1))) << 32n) | BigInt((c.u32(bar(0)) & ~0xf) >>> 0);
    expect(((~mask & 0xffffffffffffffffn) + 1n).toString()).toBe(String(1 << 20));
    expect(() => c.defineBar(5, { size: 4096, mem64: true })).toThrow(RangeError);
  });

  it('reads little-endian fields and bounds user reads', () => {
    const c = new PciConfigSpace(0x40);
    c.setU32(0, 0x32534348);
    expect(c.u16(0)).toBe(0x4348);
    expect(c.u16(2)).toBe(0x3253);
    const buf = new Uint8Array(4);
    expect(c.read(0, buf)).toBe(true);
    expect([...buf]).toEqual([0x48, 0x43, 0x53, 0x32]);
    expect(c.read(0x3e, buf)).toBe(false);
    expect(PciConfigSpace.valueOf(Uint8Array.of(0x78, 0x56, 0x34, 0x12))).toBe(0x12345678);
    expect(PciConfigSpace.barIndexAt(0x14)).toBe(1);
    expect(PciConfigSpace.barIndexAt(0x15)).toBeNull();
    expect(() => c.defineBar(0, { size: 12 })).toThrow(RangeError);
  });
});

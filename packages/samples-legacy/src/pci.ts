// A PCI type-0 configuration header as the VFIO samples emulate it. Offsets and bits are those of
// include/uapi/linux/pci_regs.h; all multi-byte fields are little-endian.

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
/** The programming interface byte. */
export const PCI_CLASS_PROG = 0x09;
/** The 16-bit class code: base class (high byte) and subclass (low byte). */
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_BASE_ADDRESS_1 = 0x14;
export const PCI_BASE_ADDRESS_2 = 0x18;
export const PCI_BASE_ADDRESS_3 = 0x1c;
export const PCI_BASE_ADDRESS_4 = 0x20;
export const PCI_BASE_ADDRESS_5 = 0x24;
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
/** The size of the standard header; vendor-specific bytes follow. */
export const PCI_STD_HEADER_SIZEOF = 0x40;
/** The number of BARs of a type-0 header. */
export const PCI_STD_NUM_BARS = 6;

export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_STATUS_CAP_LIST = 0x10;

export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_SPACE_MEMORY = 0x00;
export const PCI_BASE_ADDRESS_MEM_TYPE_32 = 0x00;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
/** The read-only flag bits of a memory BAR (~PCI_BASE_ADDRESS_MEM_MASK). */
export const PCI_BASE_ADDRESS_MEM_FLAGS = 0x0f;
/** The read-only flag bits of an I/O BAR (~PCI_BASE_ADDRESS_IO_MASK). */
export const PCI_BASE_ADDRESS_IO_FLAGS = 0x03;

export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_FLAGS = 2;

/** Class codes (include/linux/pci_ids.h), as 16-bit base class << 8 | subclass. */
export const PCI_CLASS_DISPLAY_VGA = 0x0300;
export const PCI_CLASS_DISPLAY_OTHER = 0x0380;
export const PCI_CLASS_COMMUNICATION_SERIAL = 0x0700;

export const PCI_VENDOR_ID_REDHAT = 0x1b36;
export const PCI_SUBVENDOR_ID_REDHAT_QUMRANET = 0x1af4;
export const PCI_SUBDEVICE_ID_QEMU = 0x1100;

/** How a BAR decodes: I/O or memory (32/64-bit, prefetchable), and its size (a power of two). */
export interface PciBarSpec {
  size: number;
  io?: boolean;
  prefetch?: boolean;
  mem64?: boolean;
}

function isPow2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/**
 * The configuration space of an emulated PCI function: typed little-endian accessors, BARs that
 * answer the sizing protocol (write all-ones, read back the size mask with the flag bits), and
 * bounds-checked user reads. A sample writes its identity once and decides which writes it keeps.
 */
export class PciConfigSpace {
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  /** Per BAR: the address mask (~(size - 1)), 0 for an unimplemented BAR. */
  private readonly barMask = new Uint32Array(PCI_STD_NUM_BARS);
  private readonly barFlagBits = new Uint8Array(PCI_STD_NUM_BARS);

  constructor(size = 256) {
    this.bytes = new Uint8Array(size);
    this.dv = new DataView(this.bytes.buffer);
  }

  get size(): number {
    return this.bytes.length;
  }

  u8(offset: number): number {
    return this.dv.getUint8(offset);
  }
  u16(offset: number): number {
    return this.dv.getUint16(offset, true);
  }
  u32(offset: number): number {
    return this.dv.getUint32(offset, true);
  }
  setU8(offset: number, value: number): void {
    this.dv.setUint8(offset, value);
  }
  setU16(offset: number, value: number): void {
    this.dv.setUint16(offset, value, true);
  }
  setU32(offset: number, value: number): void {
    this.dv.setUint32(offset, value >>> 0, true);
  }
  /** Writes ASCII bytes (a vendor-specific label, as mtty keeps one at 0x60). */
  setAscii(offset: number, text: string): void {
    for (let i = 0; i < text.length; i++) this.bytes[offset + i] = text.charCodeAt(i) & 0xff;
  }

  /** Declares BAR `index` with its size and decoding; the register gets the flag bits. */
  defineBar(index: number, spec: PciBarSpec): void {
    if (!Number.isInteger(index) || index < 0 || index >= PCI_STD_NUM_BARS) {
      throw new RangeError(`pci: no BAR ${index}`);
    }
    if (!isPow2(spec.size) || spec.size > 0x80000000 || (spec.io && spec.size < 4)) {
      throw new RangeError(`pci: BAR size ${spec.size} is not a supported power of two`);
    }
    const flags = spec.io
      ? PCI_BASE_ADDRESS_SPACE_IO
      : PCI_BASE_ADDRESS_SPACE_MEMORY |
        (spec.mem64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : PCI_BASE_ADDRESS_MEM_TYPE_32) |
        (spec.prefetch ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    if (spec.mem64 && (spec.io || index + 1 >= PCI_STD_NUM_BARS)) {
      throw new RangeError(`pci: BAR ${index} cannot be a 64-bit memory BAR`);
    }
    this.barMask[index] = ~(spec.size - 1) >>> 0;
    this.barFlagBits[index] = spec.io ? PCI_BASE_ADDRESS_IO_FLAGS : PCI_BASE_ADDRESS_MEM_FLAGS;
    this.setU32(PCI_BASE_ADDRESS_0 + index * 4, flags);
    if (spec.mem64) {
      // The next register holds the upper 32 address bits: all writable (sizes below 4 GiB).
      this.barMask[index + 1] = 0xffffffff;
      this.barFlagBits[index + 1] = 0;
      this.setU32(PCI_BASE_ADDRESS_0 + (index + 1) * 4, 0);
    }
  }

  /** Whether `offset` is the first byte of a BAR register (0x10..0x24 step 4). */
  static barIndexAt(offset: number): number | null {
    if (offset < PCI_BASE_ADDRESS_0 || offset > PCI_BASE_ADDRESS_5 || offset % 4 !== 0) return null;
    return (offset - PCI_BASE_ADDRESS_0) / 4;
  }

  /**
   * A guest's 32-bit write to BAR `index`: the address bits below the BAR's size read back as 0
   * and the flag bits never change, so writing all-ones reads back the size mask (the sizing
   * protocol) and an unimplemented BAR stays 0.
   */
  writeBar(index: number, value: number): void {
    const at = PCI_BASE_ADDRESS_0 + index * 4;
    const mask = this.barMask[index] ?? 0;
    if (mask === 0) {
      this.setU32(at, 0);
      return;
    }
    const flagBits = this.barFlagBits[index]!;
    const flags = this.u32(at) & flagBits;
    this.setU32(at, ((value >>> 0) & mask & ~flagBits) | flags);
  }

  /** The address a BAR decodes now (the register without its flag bits). */
  barAddress(index: number): number {
    const flagBits = this.barFlagBits[index] ?? PCI_BASE_ADDRESS_MEM_FLAGS;
    return (this.u32(PCI_BASE_ADDRESS_0 + index * 4) & ~flagBits) >>> 0;
  }

  /** The size a BAR decodes (0 for an unimplemented BAR). */
  barSize(index: number): number {
    const mask = this.barMask[index] ?? 0;
    return mask === 0 ? 0 : (~mask >>> 0) + 1;
  }

  /** Copies config bytes at `offset` into `buf`; false when the range is outside the space. */
  read(offset: number, buf: Uint8Array): boolean {
    if (offset < 0 || offset + buf.length > this.size) return false;
    buf.set(this.bytes.subarray(offset, offset + buf.length));
    return true;
  }

  /** A little-endian value of `buf` (1, 2 or 4 bytes), as the guest wrote it. */
  static valueOf(buf: Uint8Array): number {
    let v = 0;
    for (let i = buf.length - 1; i >= 0; i--) v = v * 256 + buf[i]!;
    return v;
  }
}

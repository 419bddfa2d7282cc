import {
  VBE_DISPI_GETCAPS,
  VBE_DISPI_ID0,
  VBE_DISPI_ID5,
  VBE_DISPI_INDEX_BPP,
  VBE_DISPI_INDEX_COUNT,
  VBE_DISPI_INDEX_ENABLE,
  VBE_DISPI_INDEX_ID,
  VBE_DISPI_INDEX_VIDEO_MEMORY_64K,
  VBE_DISPI_INDEX_XRES,
  VBE_DISPI_INDEX_YRES,
  VBE_DISPI_MAX_BPP,
  VBE_DISPI_MAX_XRES,
  VBE_DISPI_MAX_YRES,
} from './defs';

/** Limits the GETCAPS read reports; 0 means "no limit of the type" (qemu's maximum is used). */
export interface DispiLimits {
  maxX: number;
  maxY: number;
}

/**
 * The bochs dispi (VBE) register file of mbochs: eleven 16-bit registers, reached either directly
 * (the MMIO BAR maps register `i` at 0x500 + 2 * i) or through the legacy index/data port pair.
 *
 * Like the sample, mode registers are plain storage: the guest may write anything and the mode is
 * validated when the host asks for a plane (see `mbochsCheckFramebuffer`). Two registers are not
 * storage, as in qemu's stdvga: VIDEO_MEMORY_64K is read-only, and ID only takes a known interface
 * version (0xB0C0..0xB0C5).
 */
export class DispiRegisters {
  readonly regs = new Uint16Array(VBE_DISPI_INDEX_COUNT);
  /** The index latched by the index port. */
  index = 0;
  private readonly memory64k: number;
  private readonly limits: DispiLimits;

  constructor(memsize: number, limits: DispiLimits) {
    this.memory64k = Math.min(0xffff, Math.floor(memsize / 65536));
    this.limits = limits;
    this.reset();
  }

  /** mbochs_reset(): every register 0, ID = VBE_DISPI_ID5, VIDEO_MEMORY_64K = memsize / 64K. */
  reset(): void {
    this.regs.fill(0);
    this.regs[VBE_DISPI_INDEX_ID] = VBE_DISPI_ID5;
    this.regs[VBE_DISPI_INDEX_VIDEO_MEMORY_64K] = this.memory64k;
    this.index = 0;
  }

  /**
   * Reads register `index`; 0 for an index past the file. With GETCAPS set in ENABLE, XRES, YRES
   * and BPP read as the largest values the device takes (what bochs-drm probes).
   */
  read(index: number): number {
    if (!Number.isInteger(index) || index < 0 || index >= VBE_DISPI_INDEX_COUNT) return 0;
    if (this.regs[VBE_DISPI_INDEX_ENABLE]! & VBE_DISPI_GETCAPS) {
      if (index === VBE_DISPI_INDEX_XRES) return this.limits.maxX || VBE_DISPI_MAX_XRES;
      if (index === VBE_DISPI_INDEX_YRES) return this.limits.maxY || VBE_DISPI_MAX_YRES;
      if (index === VBE_DISPI_INDEX_BPP) return VBE_DISPI_MAX_BPP;
    }
    return this.regs[index]!;
  }

  /** Writes register `index` (the low 16 bits of `value`); ignored for read-only or unknown ones. */
  write(index: number, value: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= VBE_DISPI_INDEX_COUNT) return;
    const v = value & 0xffff;
    if (index === VBE_DISPI_INDEX_VIDEO_MEMORY_64K) return;
    if (index === VBE_DISPI_INDEX_ID && (v < VBE_DISPI_ID0 || v > VBE_DISPI_ID5)) return;
    this.regs[index] = v;
  }

  /** The index port (0x1ce): latches the register the data port reaches. */
  writeIndex(value: number): void {
    this.index = value & 0xffff;
  }

  /** The data port (0x1cf), read: the latched register. */
  readData(): number {
    return this.read(this.index);
  }

  /** The data port (0x1cf), write: the latched register. */
  writeData(value: number): void {
    this.write(this.index, value);
  }
}

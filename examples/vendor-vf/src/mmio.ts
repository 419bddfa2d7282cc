/**
 * The host's view of the VF's BAR: ioread/iowrite of 8, 16 and 32 bits. Writes are posted to the
 * VF's engine through the link FIFO; a read waits until the engine has applied every earlier
 * write, then loads the BAR bytes the engine maintains (a PCI read flushes posted writes).
 */
import {
  LINK_ATTENTION,
  LINK_FIFO,
  LINK_FIFO_ENTRIES,
  LINK_FIFO_HEAD,
  LINK_FIFO_TAIL,
  VF_BAR_SIZE,
  VF_ISR,
  type VfShared,
} from './layout';

/** How long the host waits for the engine before it treats the VF as gone. */
export const VF_MMIO_TIMEOUT_MS = 15_000;

/**
 * A VF's memory BAR as a driver accesses it. With `service` (an engine running in the same
 * thread, as the register tests use it) a read runs the engine instead of waiting for it.
 */
export class VfBar {
  private readonly link: Int32Array;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private head = 0;
  /** Set once the engine stopped answering: reads return all ones, writes go nowhere. */
  private dead = false;

  constructor(
    shared: VfShared,
    private readonly service: (() => void) | null = null,
    private readonly timeoutMs = VF_MMIO_TIMEOUT_MS,
  ) {
    this.link = new Int32Array(shared.link);
    // Typed views are little-endian on the hosts the engine accepts (it checks at power-on).
    this.u8 = new Uint8Array(shared.bar);
    this.u16 = new Uint16Array(shared.bar);
    this.u32 = new Uint32Array(shared.bar);
    this.head = Atomics.load(this.link, LINK_FIFO_HEAD);
  }

  /** Whether the VF stopped answering (a surprise removal: reads see 0xff...). */
  get gone(): boolean {
    return this.dead;
  }

  /** The VF went away (its engine stopped): from now on reads see all ones. */
  markGone(): void {
    this.dead = true;
  }

  /** iowrite8. */
  write8(offset: number, value: number): void {
    this.post(offset, 1, value & 0xff);
  }
  /** iowrite16 (little-endian). */
  write16(offset: number, value: number): void {
    this.post(offset, 2, value & 0xffff);
  }
  /** iowrite32 (little-endian). */
  write32(offset: number, value: number): void {
    this.post(offset, 4, value | 0);
  }

  /** ioread8. */
  // Atomic loads: some registers (status, counters) change on the VF's own account, with no
  // write of the host's to flush, and a load must not be torn or reordered against another.
  read8(offset: number): number {
    if (!this.flush(offset, 1)) return 0xff;
    // Any read of the ISR byte clears it (4.1.4.5.1), as virtio-pci's vp_interrupt reads it.
    return offset === VF_ISR ? this.takeIsr() : Atomics.load(this.u8, offset);
  }
  /** ioread16. */
  read16(offset: number): number {
    return this.flush(offset, 2) ? Atomics.load(this.u16, offset >> 1) : 0xffff;
  }
  /** ioread32. */
  read32(offset: number): number {
    return this.flush(offset, 4) ? Atomics.load(this.u32, offset >> 2) : 0xffffffff;
  }

  /** Reads the ISR status byte, which clears it (virtio 1.2, 4.1.4.5.1). */
  readIsr(): number {
    return this.flush(VF_ISR, 1) ? this.takeIsr() : 0;
  }

  private takeIsr(): number {
    // The engine sets bits with Atomics.or; the exchange makes read-and-clear one step.
    return Atomics.exchange(this.u8, VF_ISR, 0);
  }

  /**
   * Reads `count` 64-bit counters at `offset` that the VF updates under the sequence word at
   * `seqOffset` (odd while it writes): retried until the same even sequence was read before and
   * after. Null when the VF is gone.
   */
  readCounters(seqOffset: number, offset: number, count: number): number[] | null {
    for (let tries = 0; tries < 1000; tries++) {
      const before = this.read32(seqOffset);
      if (this.dead) return null;
      if (before & 1) continue;
      const values: number[] = [];
      for (let i = 0; i < count; i++) {
        const lo = this.read32(offset + i * 8);
        values.push(this.read32(offset + i * 8 + 4) * 2 ** 32 + lo);
      }
      if (this.read32(seqOffset) === before) return values;
    }
    return null;
  }

  private check(offset: number, width: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + width > VF_BAR_SIZE) {
      throw new RangeError(`vendor_vf: BAR access ${offset}+${width} is outside the BAR`);
    }
    if (offset % width !== 0) {
      throw new RangeError(`vendor_vf: ${width * 8}-bit BAR access at ${offset} is unaligned`);
    }
  }

  private post(offset: number, width: number, value: number): void {
    this.check(offset, width);
    if (this.dead) return;
    const link = this.link;
    // A full FIFO stalls the writer until the engine makes room (link back-pressure). The
    // counters are int32 and wrap past 2^31: their difference is taken modulo 2^32 (`| 0`),
    // and the slot with a mask (the FIFO is a power of two long) where `%` would go negative.
    const fill = (this.head - Atomics.load(link, LINK_FIFO_TAIL)) | 0;
    if (fill >= LINK_FIFO_ENTRIES && !this.drain(1)) return;
    const slot = LINK_FIFO + (this.head & (LINK_FIFO_ENTRIES - 1)) * 2;
    link[slot] = offset | (width << 16);
    link[slot + 1] = value;
    this.head = (this.head + 1) | 0;
    // The entry above is written before the head that publishes it (release).
    Atomics.store(link, LINK_FIFO_HEAD, this.head);
    Atomics.add(link, LINK_ATTENTION, 1);
    Atomics.notify(link, LINK_ATTENTION, 1);
  }

  /** Waits until the engine applied every posted write; false when the VF is gone. */
  private flush(offset: number, width: number): boolean {
    this.check(offset, width);
    if (this.dead) return false;
    return Atomics.load(this.link, LINK_FIFO_TAIL) === this.head || this.drain(0);
  }

  /** Waits until at most `left` posted writes are outstanding. */
  private drain(left: number): boolean {
    const link = this.link;
    if (this.service) {
      this.service();
    } else {
      const deadline = performance.now() + this.timeoutMs;
      for (;;) {
        const tail = Atomics.load(link, LINK_FIFO_TAIL);
        if (((this.head - tail) | 0) <= left) break;
        const now = performance.now();
        if (now >= deadline) break;
        Atomics.wait(link, LINK_FIFO_TAIL, tail, Math.min(50, deadline - now));
      }
    }
    if (((this.head - Atomics.load(link, LINK_FIFO_TAIL)) | 0) <= left) return true;
    this.dead = true;
    process.emitWarning(`vendor_vf: the VF did not complete posted writes; it is treated as gone`);
    return false;
  }
}

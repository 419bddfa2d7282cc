/**
 * A driver that writes a split ring byte by byte, as a buggy or hostile guest would, so device
 * code can be tested against rings the real Virtqueue never produces.
 */

import {
  VRING_AVAIL_FLAGS,
  VRING_AVAIL_IDX,
  VRING_AVAIL_RING,
  VRING_DESC_ADDR,
  VRING_DESC_FLAGS,
  VRING_DESC_LEN,
  VRING_DESC_NEXT,
  VRING_DESC_SIZE,
  VRING_USED_ELEM_ID,
  VRING_USED_ELEM_LEN,
  VRING_USED_ELEM_SIZE,
  VRING_USED_IDX,
  VRING_USED_RING,
  vringAvailSize,
  vringDescSize,
} from './layout';
import type { GuestMemory } from './memory';

/** Where a raw ring lives: the three areas, by address. */
export interface RawRingLayout {
  num: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
}

/**
 * A split ring written directly through DataView (little-endian, as 2.4 requires), with no
 * validation at all: any address, length, flag, next or index can be written.
 */
export class RawRing implements RawRingLayout {
  readonly num: number;
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  private readonly memory: GuestMemory;
  /** The avail index this double publishes next. */
  availIdx = 0;

  /**
   * Lays the ring out at `base`: descriptors, then the avail ring, then the used ring at +align.
   * Given a layout in place of `base` (and no `num`), the ring's areas are those addresses.
   */
  constructor(memory: GuestMemory, base: number, num: number);
  constructor(memory: GuestMemory, layout: RawRingLayout);
  constructor(memory: GuestMemory, where: number | RawRingLayout, num?: number) {
    this.memory = memory;
    if (typeof where === 'number') {
      const n = num!;
      this.num = n;
      this.descAddr = where;
      this.availAddr = where + vringDescSize(n);
      this.usedAddr = where + Math.ceil((vringDescSize(n) + vringAvailSize(n)) / 4096) * 4096;
    } else {
      this.num = where.num;
      this.descAddr = where.descAddr;
      this.availAddr = where.availAddr;
      this.usedAddr = where.usedAddr;
    }
  }

  private dv(addr: number, len: number): DataView {
    const v = this.memory.view(addr, len);
    return new DataView(v.buffer, v.byteOffset, v.byteLength);
  }

  /** Writes entry `i` of the descriptor table at `table` (the ring's own table by default). */
  setDesc(
    i: number,
    addr: number,
    len: number,
    flags: number,
    next: number,
    table = this.descAddr,
  ): void {
    const dv = this.dv(table + VRING_DESC_SIZE * i, VRING_DESC_SIZE);
    dv.setUint32(VRING_DESC_ADDR, addr % 2 ** 32, true);
    dv.setUint32(VRING_DESC_ADDR + 4, Math.floor(addr / 2 ** 32) % 2 ** 32, true);
    dv.setUint32(VRING_DESC_LEN, len >>> 0, true);
    dv.setUint16(VRING_DESC_FLAGS, flags & 0xffff, true);
    dv.setUint16(VRING_DESC_NEXT, next & 0xffff, true);
  }

  /** Reads the flags of descriptor `i` of `table`. */
  descFlags(i: number, table = this.descAddr): number {
    return this.dv(table + VRING_DESC_SIZE * i + VRING_DESC_FLAGS, 2).getUint16(0, true);
  }

  /** Puts `head` in the next avail slot and publishes the index. */
  offer(head: number): void {
    const slot = this.availIdx % this.num;
    this.dv(this.availAddr + VRING_AVAIL_RING + 2 * slot, 2).setUint16(0, head & 0xffff, true);
    this.setAvailIdx(this.availIdx + 1);
  }

  /** Publishes an arbitrary avail index. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.dv(this.availAddr + VRING_AVAIL_IDX, 2).setUint16(0, this.availIdx, true);
  }

  /** Writes avail->flags. */
  setAvailFlags(flags: number): void {
    this.dv(this.availAddr + VRING_AVAIL_FLAGS, 2).setUint16(0, flags, true);
  }

  /** used->idx as the device published it. */
  usedIdx(): number {
    return this.dv(this.usedAddr + VRING_USED_IDX, 2).getUint16(0, true);
  }

  /** Used element `slot`: the head and length the device wrote. */
  usedElem(slot: number): { id: number; len: number } {
    const dv = this.dv(
      this.usedAddr + VRING_USED_RING + VRING_USED_ELEM_SIZE * (slot % this.num),
      VRING_USED_ELEM_SIZE,
    );
    return {
      id: dv.getUint32(VRING_USED_ELEM_ID, true),
      len: dv.getUint32(VRING_USED_ELEM_LEN, true),
    };
  }
}

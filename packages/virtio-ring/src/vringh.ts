import { type ByteOps, byteOpsOf } from './bytes';
import { EFAULT, EINVAL, ELOOP, EPROTO } from './errno';
import * as layout from './layout';
import {
  VIRTQUEUE_MAX_SIZE,
  VRING_DESC_SIZE,
  vringAvailSize,
  vringDescSize,
  vringNeedEvent,
  vringUsedSize,
} from './layout';
import type { AddressSpace, Translation } from './memory';
import * as mem from './memory';

// The layout's word offsets and flags, and the memory helpers, copied into module constants:
// every use of an imported binding is a load through its module cell and a hole check (about 7
// instructions), and these are used a few dozen times a frame; a module constant costs next to
// nothing (V8 folds it into the code). The module's own functions called per frame are constants
// too (below): a function declaration is a variable, which optimised code loads and compares on
// every call.
const MAX_ADDR = mem.MAX_ADDR;
const loadIndex = mem.loadIndex;
const storeIndex = mem.storeIndex;
const loadAddr64 = layout.loadAddr64;
const VRING_AVAIL_F_NO_INTERRUPT = layout.VRING_AVAIL_F_NO_INTERRUPT;
const VRING_AVAIL16_FLAGS = layout.VRING_AVAIL16_FLAGS;
const VRING_AVAIL16_IDX = layout.VRING_AVAIL16_IDX;
const VRING_AVAIL16_RING = layout.VRING_AVAIL16_RING;
const VRING_DESC_F_INDIRECT = layout.VRING_DESC_F_INDIRECT;
const VRING_DESC_F_NEXT = layout.VRING_DESC_F_NEXT;
const VRING_DESC_F_WRITE = layout.VRING_DESC_F_WRITE;
const VRING_DESC_WORDS16 = layout.VRING_DESC_WORDS16;
const VRING_DESC_WORDS32 = layout.VRING_DESC_WORDS32;
const VRING_DESC16_FLAGS = layout.VRING_DESC16_FLAGS;
const VRING_DESC16_NEXT = layout.VRING_DESC16_NEXT;
const VRING_DESC32_ADDR_LO = layout.VRING_DESC32_ADDR_LO;
const VRING_DESC32_LEN = layout.VRING_DESC32_LEN;
const VRING_USED_ELEM_WORDS32 = layout.VRING_USED_ELEM_WORDS32;
const VRING_USED_F_NO_NOTIFY = layout.VRING_USED_F_NO_NOTIFY;
const VRING_USED16_FLAGS = layout.VRING_USED16_FLAGS;
const VRING_USED16_IDX = layout.VRING_USED16_IDX;
const VRING_USED32_ELEM_ID = layout.VRING_USED32_ELEM_ID;
const VRING_USED32_ELEM_LEN = layout.VRING_USED32_ELEM_LEN;
const VRING_USED32_RING = layout.VRING_USED32_RING;

const U32 = 0x1_0000_0000;
/** Frames up to this many bytes are copied by words in JS rather than by copyWithin. */
const WORD_COPY_MAX = 256;

/**
 * A list of buffer segments a device got from `getDesc` (the kernel's vringh_kiov): each segment
 * is a view position (`buf[i]`, `off[i]`) and a length. Reused across calls; grows rarely.
 */
export class VringhIov {
  buf: Uint8Array[] = [];
  off: Float64Array;
  len: Float64Array;
  /** Device addresses of the segments (before translation). */
  addr: Float64Array;
  /** Segments filled by the last getDesc. */
  used = 0;
  /** The segment the next pull/push continues in, and the bytes consumed in it. */
  i = 0;
  consumed = 0;
  /** Total bytes of all segments. */
  total = 0;

  constructor(capacity = 8) {
    this.off = new Float64Array(capacity);
    this.len = new Float64Array(capacity);
    this.addr = new Float64Array(capacity);
  }

  /** Empties the list (used before a chain walk). */
  reset(): void {
    this.used = 0;
    this.i = 0;
    this.consumed = 0;
    this.total = 0;
  }

  /**
   * Writes `value` as a little-endian u16 at byte `at` of the chain, across segments if it must
   * (a device rewriting a header field in place, say num_buffers). False, writing nothing, when
   * the chain ends before `at + 2`. Does not move the pull/push position.
   */
  storeLe16(at: number, value: number): boolean {
    if (at < 0 || at + 2 > this.total) return false;
    if (this.len[0]! >= at + 2) {
      // Within the first segment: the common case of a header.
      const o = this.off[0]! + at;
      this.buf[0]![o] = value & 0xff;
      this.buf[0]![o + 1] = (value >> 8) & 0xff;
      return true;
    }
    let start = 0; // the chain offset of segment k
    for (let k = 0; k < this.used && start < at + 2; k++) {
      const len = this.len[k]!;
      for (let b = 0; b < 2; b++) {
        const rel = at + b - start;
        if (rel >= 0 && rel < len) this.buf[k]![this.off[k]! + rel] = (value >> (8 * b)) & 0xff;
      }
      start += len;
    }
    return true;
  }

  /** Bytes not yet consumed by pull/push. */
  get remaining(): number {
    let n = -this.consumed;
    for (let k = this.i; k < this.used; k++) n += this.len[k]!;
    return Math.max(0, n);
  }
}

/** Options of `Vringh.init` (vringh_init_kern). */
export interface VringhConfig {
  /** Queue size: a power of two from 1 to 32768. */
  num: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  /** VIRTIO_RING_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /**
   * VIRTIO_F_IN_ORDER negotiated (virtio 1.2 2.7.9): the caller uses chains in the order they
   * were made available, and `completeDeferred` then writes one used element for each run of
   * chains completed with length 0 (a transmit ring's), naming the run's last chain at the
   * run's first slot. Chains completed with a length each get their element: the driver learns
   * a skipped buffer's length from nothing else.
   */
  inOrder?: boolean;
}

/**
 * The device side of a split virtqueue (the kernel's vringh). The ring and buffers are read
 * through an AddressSpace; ring areas are mapped once at `init`. Nothing here throws on a bad
 * ring: calls return a negative errno, the ring is marked broken and stays broken until `init`
 * (reset).
 *
 * Flags are tested with `=== true` on the per-frame paths: V8 does not track that a field holds
 * only booleans, and compiles a bare `if (flag)` on one to the generic truthiness test, about a
 * dozen instructions.
 */
export class Vringh {
  private readonly space: AddressSpace;
  private readonly t: Translation = { u8: new Uint8Array(0), offset: 0 };
  num = 0;
  eventIdx = false;
  inOrder = false;
  private desc32: Uint32Array = new Uint32Array(0);
  private desc16: Uint16Array = new Uint16Array(0);
  private avail16: Uint16Array = new Uint16Array(0);
  private used16: Uint16Array = new Uint16Array(0);
  private used32: Uint32Array = new Uint32Array(0);
  // Where used_event (driver area) and avail_event (device area) are, in 16-bit words.
  private usedEvent16 = 0;
  private availEvent16 = 0;
  private lastAvail = 0;
  // The avail index as last read (vhost's avail_idx): read again only once the device has
  // caught up with it, so a batch of chains costs one read of the shared word.
  private availShadow = 0;
  private lastUsed = 0;
  private completed = 0;
  // Whether completeDeferred wrote used elements whose index is not published yet.
  private unpublished = false;
  // In order: chains completed with length 0 whose one used element is not written yet, the
  // slot it goes to (the run's first) and the run's last head.
  private batchCount = 0;
  private batchSlot = 0;
  private batchHead = 0;
  private brokenErr = 0;
  /** The head of the chain the last successful getDesc returned. */
  head = 0;
  private ready = false;
  // Views over the whole buffer of the last region an indirect table was found in.
  private wholeView: Uint8Array | null = null;
  private whole32: Uint32Array = new Uint32Array(0);
  private whole16: Uint16Array = new Uint16Array(0);
  // Byte ops of the last region `copy` worked in (null: not a wasm memory's), and the byte
  // offset of that region's view in its buffer.
  private opsView: Uint8Array | null = null;
  private ops: ByteOps | null = null;
  private opsBase = 0;
  // One descriptor of a misaligned indirect table, as the walk reads it.
  private readonly one8 = new Uint8Array(VRING_DESC_SIZE);
  private readonly one32 = new Uint32Array(this.one8.buffer);
  private readonly one16 = new Uint16Array(this.one8.buffer);

  constructor(space: AddressSpace) {
    this.space = space;
  }

  /**
   * Mirrors vringh_init_kern(): maps the three areas. -EINVAL for a bad size ("Sane power of 2
   * please!"), or areas that do not translate or are misaligned for their fields.
   */
  init(cfg: VringhConfig): number {
    this.ready = false;
    this.brokenErr = 0;
    this.lastAvail = this.availShadow = this.lastUsed = this.completed = 0;
    this.unpublished = false;
    this.batchCount = 0;
    const { num } = cfg;
    if (!Number.isInteger(num) || num < 1 || num > VIRTQUEUE_MAX_SIZE || (num & (num - 1)) !== 0) {
      return -EINVAL;
    }
    const d = this.area(cfg.descAddr, vringDescSize(num), 16);
    const a = this.area(cfg.availAddr, vringAvailSize(num), 2);
    const u = this.area(cfg.usedAddr, vringUsedSize(num), 4);
    if (!d || !a || !u) return -EINVAL;
    this.num = num;
    this.eventIdx = cfg.eventIdx;
    this.inOrder = cfg.inOrder === true;
    this.usedEvent16 = layout.vringUsedEvent16(num);
    this.availEvent16 = layout.vringAvailEvent16(num);
    this.desc32 = new Uint32Array(d.buffer, d.byteOffset, d.length >> 2);
    this.desc16 = new Uint16Array(d.buffer, d.byteOffset, d.length >> 1);
    this.avail16 = new Uint16Array(a.buffer, a.byteOffset, a.length >> 1);
    this.used16 = new Uint16Array(u.buffer, u.byteOffset, u.length >> 1);
    this.used32 = new Uint32Array(u.buffer, u.byteOffset, (u.length - 2) >> 2);
    this.ready = true;
    return 0;
  }

  private area(addr: number, len: number, align: number): Uint8Array | null {
    if (!this.space.translate(addr, len, this.t)) return null;
    const start = this.t.u8.byteOffset + this.t.offset;
    // Each area at its own alignment (virtio 1.2 2.7: 16, 2 and 4), which its views need too.
    if (start % align !== 0) return null;
    return new Uint8Array(this.t.u8.buffer, start, len);
  }

  /** Whether the ring is broken (a bad ring was seen); the first error. */
  get broken(): boolean {
    return this.brokenErr !== 0;
  }
  get error(): number {
    return this.brokenErr;
  }

  private fail(err: number): number {
    if (this.brokenErr === 0) this.brokenErr = err;
    return err;
  }

  /** The vq state: the next avail index the device will read (vringh.last_avail_idx). */
  getLastAvailIdx(): number {
    return this.lastAvail;
  }

  /** Sets the vq state (set_vq_state): the next avail index the device will read. */
  setLastAvailIdx(idx: number): void {
    this.lastAvail = this.availShadow = idx & 0xffff;
  }

  /**
   * Starts a freshly initialised ring at vq state `idx` (a queue enabled with a restored state):
   * the device reads avail entries from `idx` and publishes used entries from `idx` too, since a
   * stopped ring had used every chain it took. Without the second half the first completion would
   * rewind the used index to 1. (vdpa_sim does the same when a queue is made ready.)
   */
  restoreState(idx: number): void {
    this.setLastAvailIdx(idx);
    this.lastUsed = idx & 0xffff;
    this.completed = 0;
    this.batchCount = 0;
  }

  /** Whether the driver has made buffers available that the device has not taken. */
  hasAvail(): boolean {
    return (
      this.ready === true &&
      this.brokenErr === 0 &&
      loadIndex(this.space, this.avail16, VRING_AVAIL16_IDX) !== this.lastAvail
    );
  }

  /**
   * Mirrors vringh_getdesc_kern(): takes the next available chain, filling `riov` with its
   * readable segments and `wiov` with its writable ones. Returns 1 (head in `this.head`), 0 when
   * the ring is empty, or a negative errno (the ring is then broken).
   */
  getDesc(riov: VringhIov | null, wiov: VringhIov | null): number {
    if (this.ready !== true) return 0;
    if (this.brokenErr !== 0) return this.brokenErr;
    if (this.availShadow === this.lastAvail) {
      // virtio_rmb: the avail index is read (acquire) before the ring entries it exposes.
      const availIdx = loadIndex(this.space, this.avail16, VRING_AVAIL16_IDX);
      if (availIdx === this.lastAvail) return 0;
      // vhost.c: "Guest moved used index" — more entries than the ring holds is a broken driver.
      if (((availIdx - this.lastAvail) & 0xffff) > this.num) return this.fail(-EFAULT);
      this.availShadow = availIdx;
    }
    const head = this.avail16[VRING_AVAIL16_RING + (this.lastAvail & (this.num - 1))]!;
    if (head >= this.num) return this.fail(-EINVAL); // "Guest says index %u > %u is available"
    const flags = this.desc16[head * VRING_DESC_WORDS16 + VRING_DESC16_FLAGS]!;
    const err =
      (flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT)) === 0
        ? this.walkOne(head, flags, riov, wiov)
        : this.walk(head, riov, wiov);
    if (err < 0) return this.fail(err);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.head = head;
    return 1;
  }

  // walk() for a chain of one direct descriptor (a whole frame or receive buffer), the common
  // case, with the same checks; `flags` are the descriptor's, as getDesc read them.
  private walkOne(
    head: number,
    flags: number,
    riov: VringhIov | null,
    wiov: VringhIov | null,
  ): number {
    riov?.reset();
    wiov?.reset();
    const d = head * VRING_DESC_WORDS32;
    const addr = loadAddr64(this.desc32, d + VRING_DESC32_ADDR_LO);
    const len = this.desc32[d + VRING_DESC32_LEN]!;
    // A 64-bit address above 2^53 - 1 cannot be a valid address here (see MAX_ADDR).
    if (addr < 0) return -EINVAL;
    const iov = flags & VRING_DESC_F_WRITE ? wiov : riov;
    if (iov === null) return -EPROTO; // "Unexpected writable/readable desc"
    return this.pushRange(iov, addr, len);
  }

  // __vringh_iov(): walks the chain at `head`. Direct descriptors are read from the mapped table;
  // an indirect table through a view over its whole region (aligned) or, misaligned, one
  // descriptor at a time as the walk reaches it, so no allocation happens per chain and a chain
  // costs what is walked, not the size of the table it names.
  private walk(head: number, riov: VringhIov | null, wiov: VringhIov | null): number {
    riov?.reset();
    wiov?.reset();
    let table32: Uint32Array = this.desc32;
    let table16: Uint16Array = this.desc16;
    let base = 0; // descriptor index of the table's first entry within table32/table16
    // A misaligned indirect table: its bytes, and where it starts in them (null: read in place).
    let tableU8: Uint8Array | null = null;
    let tableOff = 0;
    let max = this.num;
    let i = head;
    let upNext = -1; // where to resume after an indirect table; -2 = the chain ends there
    let count = 0;
    let readTotal = 0;
    let writeTotal = 0;
    let seenWritable = false;
    for (;;) {
      let d = base + i;
      if (tableU8 !== null) {
        // The 16 bytes of this one descriptor, into words the views below can read (vringh.c
        // likewise copies an indirect descriptor at a time).
        const o = tableOff + i * VRING_DESC_SIZE;
        for (let k = 0; k < VRING_DESC_SIZE; k++) this.one8[k] = tableU8[o + k]!;
        d = 0;
      }
      const addr = loadAddr64(table32, d * VRING_DESC_WORDS32 + VRING_DESC32_ADDR_LO);
      const len = table32[d * VRING_DESC_WORDS32 + VRING_DESC32_LEN]!;
      const flags = table16[d * VRING_DESC_WORDS16 + VRING_DESC16_FLAGS]!;
      const next = table16[d * VRING_DESC_WORDS16 + VRING_DESC16_NEXT]!;
      // A 64-bit address above 2^53 - 1 cannot be a valid address here (see MAX_ADDR; docs/ARCHITECTURE.md §4.4).
      if (addr < 0) return -EINVAL;
      if (flags & VRING_DESC_F_INDIRECT) {
        if (upNext !== -1) return -EINVAL; // "Multilevel indirect"
        if (len % VRING_DESC_SIZE !== 0 || len === 0) return -EINVAL; // "Strange indirect len"
        if (!this.space.translate(addr, len, this.t)) return -EINVAL;
        const start = this.t.u8.byteOffset + this.t.offset;
        if (start % VRING_DESC_SIZE === 0) {
          this.wholeViews(this.t.u8);
          table32 = this.whole32;
          table16 = this.whole16;
          base = start / VRING_DESC_SIZE;
          tableU8 = null;
        } else {
          // Misaligned: no word view fits it, and a copy of the whole table would cost its size
          // (up to 4 GiB) per chain. Read where it lies, a descriptor at a time.
          tableU8 = this.t.u8;
          tableOff = this.t.offset;
          table32 = this.one32;
          table16 = this.one16;
          base = 0;
        }
        upNext = flags & VRING_DESC_F_NEXT ? next : -2;
        max = len / VRING_DESC_SIZE;
        i = 0;
        continue;
      }
      // Every direct and indirect descriptor counts against the ring size, as in the kernel; a
      // longer chain is a loop or breaks "MUST NOT create a descriptor chain longer than the
      // Queue Size" (2.7.5.3.1).
      if (count++ >= this.num) return -ELOOP;
      let iov: VringhIov | null;
      if (flags & VRING_DESC_F_WRITE) {
        iov = wiov;
        writeTotal += len;
        seenWritable = true;
      } else {
        // 2.7.4.2: readable descriptors all come before writable ones. (The 5.4 code tested the
        // consume cursor wiov->i, which is always 0 here, so its check never fired.)
        if (seenWritable) return -EINVAL;
        iov = riov;
        readTotal += len;
      }
      if (iov === null) return -EPROTO; // "Unexpected writable/readable desc"
      if (readTotal >= U32 || writeTotal >= U32) return -EINVAL;
      const err = this.pushRange(iov, addr, len);
      if (err < 0) return err;
      if (flags & VRING_DESC_F_NEXT) {
        i = next;
      } else if (upNext >= 0) {
        i = upNext;
        upNext = -1;
        table32 = this.desc32;
        table16 = this.desc16;
        tableU8 = null;
        base = 0;
        max = this.num;
      } else {
        break;
      }
      if (i >= max) return -EINVAL; // "Chained index %u > %u"
    }
    return 0;
  }

  /**
   * Adds the buffer `[addr, addr + len)` to `iov`: one segment, or one per memory region when
   * the buffer runs over adjacent regions (as vringh.c's iotlb_translate() splits a range into
   * an iov entry per mapping). -EINVAL when any byte of it is unreachable.
   */
  private pushRange(iov: VringhIov, addr: number, len: number): number {
    if (addr > MAX_ADDR - len) return -EINVAL;
    if (this.space.translate(addr, len, this.t) !== true) return this.pushSplit(iov, addr, len);
    pushSegment(iov, this.t.u8, this.t.offset, len, addr);
    return 0;
  }

  // pushRange() for a buffer no one region holds: kept apart so that the common path stays
  // small enough for V8 to inline into the walk.
  private pushSplit(iov: VringhIov, addr: number, len: number): number {
    if (len === 0) return -EINVAL;
    // Region by region: a view holds its whole region, so what is left of it after the offset
    // is the most one segment can take (an address space may end sooner: then it refuses).
    while (len > 0) {
      if (!this.space.translate(addr, 1, this.t)) return -EINVAL;
      const n = Math.min(len, this.t.u8.length - this.t.offset);
      if (!this.space.translate(addr, n, this.t)) return -EINVAL;
      pushSegment(iov, this.t.u8, this.t.offset, n, addr);
      addr += n;
      len -= n;
    }
    return 0;
  }

  /**
   * The byte ops of the buffer behind `u8` (a region's view), kept for the next call with
   * `opsBase`, the view's byte offset: in code V8 optimises in a background thread (Node's
   * default) reading `.byteOffset` is a call, and `copy` needs it per frame.
   */
  private byteOpsFor(u8: Uint8Array): ByteOps | null {
    if (this.opsView !== u8) {
      this.opsView = u8;
      this.opsBase = u8.byteOffset;
      this.ops = byteOpsOf(u8.buffer);
    }
    return this.ops;
  }

  /** Points whole32/whole16 at all of the buffer behind `u8` (a region's view). */
  private wholeViews(u8: Uint8Array): void {
    // Keyed on the view, not its buffer: reading `.buffer` costs a call, and `copy` asks per frame.
    if (this.wholeView === u8) return;
    this.wholeView = u8;
    const buffer = u8.buffer;
    this.whole32 = new Uint32Array(buffer, 0, buffer.byteLength >> 2);
    this.whole16 = new Uint16Array(buffer, 0, buffer.byteLength >> 1);
  }

  /**
   * Mirrors vringh_iov_pull_kern(): copies up to `dst.length` readable bytes, continuing where
   * the last pull stopped. Returns the bytes copied.
   */
  pull(riov: VringhIov, dst: Uint8Array): number {
    return xfer(riov, dst, dst.length, false);
  }

  /** Mirrors vringh_iov_push_kern(): copies `src` into the writable segments. Returns bytes copied. */
  push(wiov: VringhIov, src: Uint8Array): number {
    return xfer(wiov, src, src.length, true);
  }

  /**
   * Copies what is left of `riov` into `wiov` without an intermediate buffer (a device forwarding
   * a chain, like the loopback). Returns the bytes copied (bounded by both).
   */
  copy(riov: VringhIov, wiov: VringhIov): number {
    let total = 0;
    while (riov.i < riov.used && wiov.i < wiov.used) {
      const rLeft = riov.len[riov.i]! - riov.consumed;
      const wLeft = wiov.len[wiov.i]! - wiov.consumed;
      const n = Math.min(rLeft, wLeft);
      const src = riov.buf[riov.i]!;
      const dst = wiov.buf[wiov.i]!;
      const so = riov.off[riov.i]! + riov.consumed;
      const d0 = wiov.off[wiov.i]! + wiov.consumed;
      if (src !== dst) dst.set(src.subarray(so, so + n), d0);
      else if (this.byteOpsFor(src) !== null) {
        // Within a wasm memory's region: wasm's memory.copy (memmove), at any size.
        this.ops!.copy(this.opsBase + d0, this.opsBase + so, n);
      } else if (
        n <= WORD_COPY_MAX &&
        ((so | d0 | this.opsBase) & 3) === 0 &&
        (so + n <= d0 || d0 + n <= so)
      ) {
        // A small frame within one region: by 32-bit words in JS, which costs less than a call
        // into copyWithin's C++ for the 60 to 200 bytes of a small frame.
        this.wholeViews(src);
        const w = this.whole32;
        const sw = (this.opsBase + so) >> 2;
        const dw = (this.opsBase + d0) >> 2;
        const words = n >> 2;
        // Four words a turn: V8 re-checks the array and its bounds on every turn of a loop.
        let k = 0;
        for (; k + 4 <= words; k += 4) {
          w[dw + k] = w[sw + k]!;
          w[dw + k + 1] = w[sw + k + 1]!;
          w[dw + k + 2] = w[sw + k + 2]!;
          w[dw + k + 3] = w[sw + k + 3]!;
        }
        for (; k < words; k++) w[dw + k] = w[sw + k]!;
        for (k = words << 2; k < n; k++) dst[d0 + k] = src[so + k]!;
      } else dst.copyWithin(d0, so, so + n);
      total += n;
      advance(riov, n);
      advance(wiov, n);
    }
    return total;
  }

  /** Mirrors vringh_complete_kern(): returns the chain `head` with `len` bytes written. */
  complete(head: number, len: number): number {
    if (this.ready !== true) return -EINVAL;
    if (this.batchCount !== 0) this.writeBatch();
    const slot = (this.lastUsed + this.completed) & (this.num - 1);
    const e = VRING_USED32_RING + slot * VRING_USED_ELEM_WORDS32;
    this.used32[e + VRING_USED32_ELEM_ID] = head;
    this.used32[e + VRING_USED32_ELEM_LEN] = len;
    this.completed++;
    // virtio_wmb: the used element is written before the index that publishes it (release).
    storeIndex(
      this.space,
      this.used16,
      VRING_USED16_IDX,
      (this.lastUsed + this.completed) & 0xffff,
    );
    return 0;
  }

  /**
   * complete() without the index store: the used element is written, and the used index that
   * makes it visible is stored by the next complete(), completeMulti() or needNotify(), so a
   * batch of chains costs one store of the shared word (as vhost's vhost_add_used_n() and a
   * DPDK burst publish theirs). The caller must end the batch with needNotify().
   */
  completeDeferred(head: number, len: number): number {
    if (this.ready !== true) return -EINVAL;
    if (len === 0 && this.inOrder === true) return this.deferInOrder(head);
    if (this.batchCount !== 0) this.writeBatch();
    const slot = (this.lastUsed + this.completed) & (this.num - 1);
    const e = VRING_USED32_RING + slot * VRING_USED_ELEM_WORDS32;
    // An element that says this already (in order, a ring's lap after lap of same-size frames)
    // is not written when another thread can reach the ring: the store would take the line from
    // the driver's core, which reads it.
    if (this.space.shared === false || !this.usedSays(e, head, len)) {
      this.used32[e + VRING_USED32_ELEM_ID] = head;
      this.used32[e + VRING_USED32_ELEM_LEN] = len;
    }
    this.completed++;
    this.unpublished = true;
    return 0;
  }

  /** Mirrors vringh_complete_multi_kern(): completes `count` chains in one index update. */
  completeMulti(heads: ArrayLike<number>, lens: ArrayLike<number>, count: number): number {
    if (this.ready !== true) return -EINVAL;
    if (this.batchCount !== 0) this.writeBatch();
    for (let k = 0; k < count; k++) {
      const slot = (this.lastUsed + this.completed + k) & (this.num - 1);
      const e = VRING_USED32_RING + slot * VRING_USED_ELEM_WORDS32;
      this.used32[e + VRING_USED32_ELEM_ID] = heads[k]!;
      this.used32[e + VRING_USED32_ELEM_LEN] = lens[k]!;
    }
    this.completed += count;
    // virtio_wmb: all elements above are visible before the index that publishes them.
    storeIndex(
      this.space,
      this.used16,
      VRING_USED16_IDX,
      (this.lastUsed + this.completed) & 0xffff,
    );
    return 0;
  }

  /** Whether the used element at word `e` says `head` and `len` already (completeDeferred). */
  private usedSays(e: number, head: number, len: number): boolean {
    return (
      this.used32[e + VRING_USED32_ELEM_ID] === head &&
      this.used32[e + VRING_USED32_ELEM_LEN] === len
    );
  }

  // completeDeferred() in order, for a chain completed with length 0: one element for the run,
  // written when the run ends (writeBatch). Apart, so that completeDeferred stays small enough
  // for V8 to inline into the forward step.
  private deferInOrder(head: number): number {
    if (this.batchCount++ === 0) this.batchSlot = (this.lastUsed + this.completed) & (this.num - 1);
    this.batchHead = head;
    this.completed++;
    this.unpublished = true;
    return 0;
  }

  /** In order: writes the one used element of the run completeDeferred holds. */
  private writeBatch(): void {
    const e = VRING_USED32_RING + this.batchSlot * VRING_USED_ELEM_WORDS32;
    this.used32[e + VRING_USED32_ELEM_ID] = this.batchHead;
    this.used32[e + VRING_USED32_ELEM_LEN] = 0;
    this.batchCount = 0;
  }

  /** Mirrors vringh_abandon_kern(): gives back the last `num` chains taken by getDesc. */
  abandon(num: number): void {
    this.lastAvail = (this.lastAvail - num) & 0xffff;
  }

  /**
   * Mirrors vringh_need_notify_kern(): whether the driver wants an interrupt for what was
   * completed since the last call (VRING_AVAIL_F_NO_INTERRUPT or used_event). 1 or 0.
   */
  needNotify(): number {
    if (this.ready !== true) return 0;
    const completed = this.completed;
    const oldUsed = this.lastUsed;
    const newUsed = (oldUsed + completed) & 0xffff;
    // Fold the completions in on both paths (the 5.4 code forgot to without event idx).
    this.lastUsed = newUsed;
    this.completed = 0;
    if (this.unpublished === true) {
      this.unpublished = false;
      if (this.batchCount !== 0) this.writeBatch();
      // virtio_wmb: the elements completeDeferred wrote are visible before the index.
      storeIndex(this.space, this.used16, VRING_USED16_IDX, newUsed);
    }
    // virtio_mb (the used index store was atomic): read the driver's suppression state after it.
    if (this.eventIdx !== true) {
      return (loadIndex(this.space, this.avail16, VRING_AVAIL16_FLAGS) &
        VRING_AVAIL_F_NO_INTERRUPT) ===
        0 && completed > 0
        ? 1
        : 0;
    }
    if (completed > 0xffff) return 1;
    const usedEvent = loadIndex(this.space, this.avail16, this.usedEvent16);
    return vringNeedEvent(usedEvent, newUsed, oldUsed) ? 1 : 0;
  }

  /**
   * Mirrors vringh_notify_enable_kern(): asks the driver to kick again; false when buffers
   * became available meanwhile (the caller should process them).
   */
  notifyEnable(): boolean {
    if (this.ready !== true) return true;
    if (this.eventIdx === true)
      storeIndex(this.space, this.used16, this.availEvent16, this.lastAvail);
    else storeIndex(this.space, this.used16, VRING_USED16_FLAGS, 0);
    // virtio_mb: the store above is ordered before re-reading avail->idx.
    return loadIndex(this.space, this.avail16, VRING_AVAIL16_IDX) === this.lastAvail;
  }

  /** Mirrors vringh_notify_disable_kern(): no kicks needed while the device is polling. */
  notifyDisable(): void {
    if (this.ready === true && this.eventIdx !== true)
      storeIndex(this.space, this.used16, VRING_USED16_FLAGS, VRING_USED_F_NO_NOTIFY);
  }
}

/**
 * Appends a segment to `iov`. A module function, not a method: only the chain walk fills an iov,
 * and what is not exported is not in the published types.
 */
const pushSegment = (
  iov: VringhIov,
  buf: Uint8Array,
  off: number,
  len: number,
  addr: number,
): void => {
  if (iov.used === iov.off.length) growIov(iov);
  const n = iov.used++;
  // As in GuestMemory.translate: an object is stored (with its write barrier) only when it changes.
  if (iov.buf[n] !== buf) iov.buf[n] = buf;
  iov.off[n] = off;
  iov.len[n] = len;
  iov.addr[n] = addr;
  iov.total += len;
};

// Apart from pushSegment, which is inlined into the walk: this is rare and not small.
function growIov(iov: VringhIov): void {
  const cap = iov.off.length * 2;
  for (const key of ['off', 'len', 'addr'] as const) {
    const next = new Float64Array(cap);
    next.set(iov[key]);
    iov[key] = next;
  }
}

const advance = (iov: VringhIov, n: number): void => {
  iov.consumed += n;
  if (iov.consumed === iov.len[iov.i]) {
    iov.i++;
    iov.consumed = 0;
  }
};

function xfer(iov: VringhIov, data: Uint8Array, len: number, toIov: boolean): number {
  let done = 0;
  while (done < len && iov.i < iov.used) {
    const left = iov.len[iov.i]! - iov.consumed;
    const n = Math.min(left, len - done);
    const buf = iov.buf[iov.i]!;
    const o = iov.off[iov.i]! + iov.consumed;
    if (toIov) buf.set(data.subarray(done, done + n), o);
    else data.set(buf.subarray(o, o + n), done);
    done += n;
    advance(iov, n);
  }
  return done;
}

import { EINVAL, ELOOP, EPROTO } from './errno';
import * as layout from './layout';
import type { AddressSpace, Translation } from './memory';
import * as mem from './memory';
import * as pl from './packed-layout';
import { Vringh, type VringhConfig, type VringhIov } from './vringh';

const MAX_ADDR = mem.MAX_ADDR;
const loadIndex = mem.loadIndex;
const storeIndex = mem.storeIndex;
const loadAddr64 = layout.loadAddr64;
const vringNeedEvent = layout.vringNeedEvent;
const F_NEXT = layout.VRING_DESC_F_NEXT;
const F_WRITE = layout.VRING_DESC_F_WRITE;
const F_INDIRECT = layout.VRING_DESC_F_INDIRECT;
const F_AVAIL = 1 << pl.VRING_PACKED_DESC_F_AVAIL;
const F_USED = 1 << pl.VRING_PACKED_DESC_F_USED;
const F_BOTH = F_AVAIL | F_USED;
const DESC_SIZE = pl.VRING_PACKED_DESC_SIZE;
const W32 = pl.VRING_PACKED_DESC_WORDS32;
const W16 = pl.VRING_PACKED_DESC_WORDS16;
const D32_ADDR = pl.VRING_PACKED_DESC32_ADDR_LO;
const D32_LEN = pl.VRING_PACKED_DESC32_LEN;
const D16_ID = pl.VRING_PACKED_DESC16_ID;
const D16_FLAGS = pl.VRING_PACKED_DESC16_FLAGS;
const EV_OFF_WRAP = pl.VRING_PACKED_EVENT16_OFF_WRAP;
const EV_FLAGS = pl.VRING_PACKED_EVENT16_FLAGS;
const EV_ENABLE = pl.VRING_PACKED_EVENT_FLAG_ENABLE;
const EV_DISABLE = pl.VRING_PACKED_EVENT_FLAG_DISABLE;
const EV_DESC = pl.VRING_PACKED_EVENT_FLAG_DESC;
const U32 = 0x1_0000_0000;
/** Buffer ids are le16: any value a driver may pick. */
const ID_SPACE = 0x1_0000;

/**
 * The device side of a virtqueue, whichever its layout: what `Vringh` (split) and `VringhPacked`
 * both offer, and what a device datapath (RingForward, a loopback) holds.
 */
export interface VringhLike {
  readonly num: number;
  readonly eventIdx: boolean;
  /** The chain the last successful getDesc returned: its head (split) or buffer id (packed). */
  readonly head: number;
  readonly broken: boolean;
  readonly error: number;
  init(cfg: VringhConfig): number;
  getLastAvailIdx(): number;
  setLastAvailIdx(idx: number): void;
  restoreState(idx: number): void;
  hasAvail(): boolean;
  getDesc(riov: VringhIov | null, wiov: VringhIov | null): number;
  pull(riov: VringhIov, dst: Uint8Array): number;
  push(wiov: VringhIov, src: Uint8Array): number;
  copy(riov: VringhIov, wiov: VringhIov): number;
  complete(head: number, len: number): number;
  completeDeferred(head: number, len: number): number;
  completeMulti(heads: ArrayLike<number>, lens: ArrayLike<number>, count: number): number;
  abandon(num: number): void;
  needNotify(): number;
  notifyEnable(): boolean;
  notifyDisable(): void;
}

/** `VringhConfig` with the layout: `packed` for VIRTIO_F_RING_PACKED. */
export interface AnyVringhConfig extends VringhConfig {
  packed?: boolean;
}

/**
 * The vq state a queue starts from when none was set: index 0 in lap 1 for a packed ring (both
 * wrap counters start set, virtio 1.2 2.8.1), index 0 for a split one.
 */
export function initialVqState(packed: boolean): number {
  return packed ? 0x8000_8000 : 0;
}

/** A device ring of the layout `packed` picks, over `space` (init it with the ring's addresses). */
export function createVringh(space: AddressSpace, packed = false): VringhLike {
  return packed ? new VringhPacked(space) : new Vringh(space);
}

/**
 * The device side of a packed virtqueue (virtio 1.2 section 2.8; the kernel's vhost
 * vhost_get_vq_desc/vhost_add_used for packed rings as DPDK's vhost and QEMU implement them). The
 * same API and the same checks as `Vringh`: a chain longer than the ring (`-ELOOP`), an indirect
 * table of a bad length or nested (`-EINVAL`), readable after writable descriptors, lengths over
 * 4 GiB, addresses that do not translate, a descriptor of the chain that was not made available,
 * and a buffer id the device still holds. A bad ring is never thrown about: the call returns a
 * negative errno and the ring stays broken until `init`.
 *
 * `getLastAvailIdx`/`setLastAvailIdx`/`restoreState` carry the state in one number, each index
 * with its wrap counter in bit 15, the used half in the high 16 bits (VHOST_GET/SET_VRING_BASE's
 * encoding for packed rings); `getState`/`setState` give the halves apart (vDPA's
 * vdpa_vq_state_packed).
 */
export class VringhPacked implements VringhLike {
  private readonly space: AddressSpace;
  private readonly t: Translation = { u8: new Uint8Array(0), offset: 0 };
  // copy/pull/push do not depend on the layout: the split ring end's are used as they are.
  private readonly bytes: Vringh;
  num = 0;
  eventIdx = false;
  head = 0;
  private ready = false;
  private brokenErr = 0;
  private desc32: Uint32Array = new Uint32Array(0);
  private desc16: Uint16Array = new Uint16Array(0);
  private drvEvent16: Uint16Array = new Uint16Array(2);
  private devEvent16: Uint16Array = new Uint16Array(2);
  private lastAvail = 0;
  private availWrap = 1;
  private usedIdx = 0;
  private usedWrap = 1;
  // Where the used position was at the last needNotify, and descriptors completed since.
  private signalledIdx = 0;
  private signalledWrap = 1;
  private completedDescs = 0;
  // A used descriptor whose flags completeDeferred held back: the first of a batch is made
  // visible last, so the driver sees the batch at once (as vhost's vhost_add_used_n for packed).
  private pendingSlot = -1;
  private pendingFlags = 0;
  private kickFlagsShadow = -1;
  // Per buffer id: held by the device, and ring descriptors its chain took.
  private readonly inFlight = new Uint8Array(ID_SPACE);
  private readonly chainDescs = new Uint16Array(ID_SPACE);
  // The positions the last chains were taken from, so `abandon` can give them back.
  private histIdx = new Uint16Array(0);
  private histWrap = new Uint8Array(0);
  private histId = new Uint16Array(0);
  private histTop = 0;
  private histLen = 0;
  // One descriptor of an indirect table, copied out of guest memory.
  private readonly one8 = new Uint8Array(DESC_SIZE);
  private readonly one32 = new Uint32Array(this.one8.buffer);
  private readonly one16 = new Uint16Array(this.one8.buffer);

  constructor(space: AddressSpace) {
    this.space = space;
    this.bytes = new Vringh(space);
  }

  /**
   * Maps the descriptor ring (`descAddr`), the driver event suppression structure (`availAddr`)
   * and the device's (`usedAddr`). -EINVAL for a size outside 1..32768 or areas that do not
   * translate or are misaligned. Starts at index 0 in lap 1 (wrap counters set, 2.8.1).
   */
  init(cfg: VringhConfig): number {
    this.ready = false;
    this.brokenErr = 0;
    this.resetState();
    const { num } = cfg;
    if (!Number.isInteger(num) || num < 1 || num > pl.VIRTQUEUE_PACKED_MAX_SIZE) return -EINVAL;
    const d = this.area(cfg.descAddr, pl.vringPackedDescSize(num), pl.VRING_PACKED_DESC_ALIGN_SIZE);
    const drv = this.area(cfg.availAddr, pl.VRING_PACKED_EVENT_SIZE, 4);
    const dev = this.area(cfg.usedAddr, pl.VRING_PACKED_EVENT_SIZE, 4);
    if (!d || !drv || !dev) return -EINVAL;
    this.num = num;
    this.eventIdx = cfg.eventIdx;
    this.desc32 = new Uint32Array(d.buffer, d.byteOffset, d.length >> 2);
    this.desc16 = new Uint16Array(d.buffer, d.byteOffset, d.length >> 1);
    this.drvEvent16 = new Uint16Array(drv.buffer, drv.byteOffset, 2);
    this.devEvent16 = new Uint16Array(dev.buffer, dev.byteOffset, 2);
    if (this.histIdx.length !== num) {
      this.histIdx = new Uint16Array(num);
      this.histWrap = new Uint8Array(num);
      this.histId = new Uint16Array(num);
    }
    this.ready = true;
    return 0;
  }

  private resetState(): void {
    this.lastAvail = this.usedIdx = this.signalledIdx = 0;
    this.availWrap = this.usedWrap = this.signalledWrap = 1;
    this.completedDescs = 0;
    this.pendingSlot = -1;
    this.kickFlagsShadow = -1;
    this.histTop = this.histLen = 0;
    this.inFlight.fill(0);
  }

  private area(addr: number, len: number, align: number): Uint8Array | null {
    if (!this.space.translate(addr, len, this.t)) return null;
    const start = this.t.u8.byteOffset + this.t.offset;
    if (start % align !== 0) return null;
    return new Uint8Array(this.t.u8.buffer, start, len);
  }

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

  /**
   * The vq state as one number, as vhost's VHOST_GET_VRING_BASE and vhost-user's GET_VRING_BASE
   * give a packed ring's: bits 0-14 the next avail index, bit 15 its wrap counter, bits 16-30
   * the next used index, bit 31 its wrap counter.
   */
  getLastAvailIdx(): number {
    return (
      (pl.packWrapIdx(this.lastAvail, this.availWrap) |
        (pl.packWrapIdx(this.usedIdx, this.usedWrap) << 16)) >>>
      0
    );
  }

  /**
   * Sets the vq state from that number. A value of 16 bits (DPDK's vhost encodes only the avail
   * half) sets the used half to the same: a stopped ring used every chain it took.
   */
  setLastAvailIdx(idx: number): void {
    this.restoreState(idx);
  }

  /**
   * Starts a freshly initialised ring at vq state `idx` (as `setLastAvailIdx` reads it), as
   * VHOST_USER_SET_VRING_BASE does for a packed ring.
   */
  restoreState(idx: number): void {
    const avail = idx & 0xffff;
    const used = idx > 0xffff ? (idx >>> 16) & 0xffff : avail;
    this.setState({
      lastAvailIdx: avail & 0x7fff,
      lastAvailCounter: avail >>> 15,
      lastUsedIdx: used & 0x7fff,
      lastUsedCounter: used >>> 15,
    });
  }

  /** The vq state (vdpa_vq_state_packed). */
  getState(): pl.PackedVqState {
    return {
      lastAvailIdx: this.lastAvail,
      lastAvailCounter: this.availWrap,
      lastUsedIdx: this.usedIdx,
      lastUsedCounter: this.usedWrap,
    };
  }

  /** Sets the vq state (set_vq_state with vdpa_vq_state_packed). */
  setState(s: pl.PackedVqState): void {
    this.lastAvail = s.lastAvailIdx & 0x7fff;
    this.availWrap = s.lastAvailCounter & 1;
    this.usedIdx = this.signalledIdx = s.lastUsedIdx & 0x7fff;
    this.usedWrap = this.signalledWrap = s.lastUsedCounter & 1;
    this.completedDescs = 0;
    this.pendingSlot = -1;
    this.histLen = 0;
    this.inFlight.fill(0);
    this.checkState();
  }

  // A position past the ring is a driver's (or a migration stream's) bad state: the ring breaks.
  private checkState(): void {
    if (this.ready === true && (this.lastAvail >= this.num || this.usedIdx >= this.num)) {
      this.fail(-EINVAL);
    }
  }

  // Whether the descriptor at `i` was made available in lap `wrap` (2.8.1).
  private isAvail(flags: number, wrap: number): boolean {
    // The avail flag equal to the counter and the used flag not: F_AVAIL alone in lap 1,
    // F_USED alone in lap 0 (F_USED shifted down by 8 is F_AVAIL).
    return (flags & F_BOTH) === F_USED >>> (wrap << 3);
  }

  hasAvail(): boolean {
    if (this.ready !== true || this.brokenErr !== 0) return false;
    const flags = loadIndex(this.space, this.desc16, this.lastAvail * W16 + D16_FLAGS);
    return this.isAvail(flags, this.availWrap);
  }

  /**
   * Takes the next available chain (the packed vhost_get_vq_desc): its readable segments into
   * `riov`, writable into `wiov`. 1 (buffer id in `this.head`), 0 when none is available, or a
   * negative errno (the ring is then broken).
   */
  getDesc(riov: VringhIov | null, wiov: VringhIov | null): number {
    if (this.ready !== true) return 0;
    if (this.brokenErr !== 0) return this.brokenErr;
    const start = this.lastAvail;
    // virtio_rmb (the flags load): the descriptor is read after the flags that make it available.
    const flags = loadIndex(this.space, this.desc16, start * W16 + D16_FLAGS);
    if (!this.isAvail(flags, this.availWrap)) return 0;
    if ((flags & (F_NEXT | F_INDIRECT)) === 0) return this.getOne(start, flags, riov, wiov);
    riov?.reset();
    wiov?.reset();
    let i = start;
    let wrap = this.availWrap;
    let f = flags;
    let count = 0;
    let readTotal = 0;
    let writeTotal = 0;
    let seenWritable = false;
    let id = 0;
    for (;;) {
      const d = i * W32;
      const addr = loadAddr64(this.desc32, d + D32_ADDR);
      const len = this.desc32[d + D32_LEN]!;
      if (addr < 0) return this.fail(-EINVAL);
      // A chain of more descriptors than the ring holds runs round it (2.8.18's limit).
      if (++count > this.num) return this.fail(-ELOOP);
      if ((f & F_INDIRECT) !== 0) {
        // 2.8.19: "MUST NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT"; an indirect
        // descriptor is a chain on its own.
        if (count !== 1 || (f & F_NEXT) !== 0) return this.fail(-EINVAL);
        const err = this.walkIndirect(addr, len, riov, wiov);
        if (err < 0) return this.fail(err);
        id = this.desc16[i * W16 + D16_ID]!;
        break;
      }
      let iov: VringhIov | null;
      if ((f & F_WRITE) !== 0) {
        iov = wiov;
        writeTotal += len;
        seenWritable = true;
      } else {
        if (seenWritable === true) return this.fail(-EINVAL);
        iov = riov;
        readTotal += len;
      }
      if (iov === null) return this.fail(-EPROTO);
      if (readTotal >= U32 || writeTotal >= U32) return this.fail(-EINVAL);
      const err = this.pushRange(iov, addr, len);
      if (err < 0) return this.fail(err);
      if ((f & F_NEXT) === 0) {
        // The buffer id is in the last descriptor of the chain (2.8.6).
        id = this.desc16[i * W16 + D16_ID]!;
        break;
      }
      if (++i === this.num) {
        i = 0;
        wrap ^= 1;
      }
      f = this.desc16[i * W16 + D16_FLAGS]!;
      // The rest of a chain is made available with it: a descriptor that is not is no chain.
      if (!this.isAvail(f, wrap)) return this.fail(-EINVAL);
    }
    // A buffer id the device still holds: two buffers could not be told apart when used.
    if (this.inFlight[id] !== 0) return this.fail(-EINVAL);
    this.inFlight[id] = 1;
    this.chainDescs[id] = count;
    const h = this.histTop;
    this.histIdx[h] = start;
    this.histWrap[h] = this.availWrap;
    this.histId[h] = id;
    this.histTop = h + 1 === this.num ? 0 : h + 1;
    if (this.histLen < this.num) this.histLen++;
    if (++i === this.num) {
      i = 0;
      wrap ^= 1;
    }
    this.availWrap = wrap;
    this.lastAvail = i;
    this.head = id;
    return 1;
  }

  // getDesc for a chain of one direct descriptor (a whole frame or receive buffer), the common
  // case, with the same checks; `flags` are the descriptor's, as getDesc read them.
  private getOne(
    start: number,
    flags: number,
    riov: VringhIov | null,
    wiov: VringhIov | null,
  ): number {
    riov?.reset();
    wiov?.reset();
    const d = start * W32;
    const addr = loadAddr64(this.desc32, d + D32_ADDR);
    const len = this.desc32[d + D32_LEN]!;
    if (addr < 0) return this.fail(-EINVAL);
    const iov = (flags & F_WRITE) !== 0 ? wiov : riov;
    if (iov === null) return this.fail(-EPROTO);
    const err = this.pushRange(iov, addr, len);
    if (err < 0) return this.fail(err);
    const id = this.desc16[start * W16 + D16_ID]!;
    if (this.inFlight[id] !== 0) return this.fail(-EINVAL);
    this.inFlight[id] = 1;
    this.chainDescs[id] = 1;
    const h = this.histTop;
    this.histIdx[h] = start;
    this.histWrap[h] = this.availWrap;
    this.histId[h] = id;
    this.histTop = h + 1 === this.num ? 0 : h + 1;
    if (this.histLen < this.num) this.histLen++;
    if (start + 1 === this.num) {
      this.lastAvail = 0;
      this.availWrap ^= 1;
    } else {
      this.lastAvail = start + 1;
    }
    this.head = id;
    return 1;
  }

  // An indirect table (2.8.19): `len / 16` packed descriptors in order, each read out of guest
  // memory a descriptor at a time, so a chain costs what it names and no alignment is needed.
  private walkIndirect(
    addr: number,
    len: number,
    riov: VringhIov | null,
    wiov: VringhIov | null,
  ): number {
    if (len % DESC_SIZE !== 0 || len === 0) return -EINVAL; // "Strange indirect len"
    const n = len / DESC_SIZE;
    if (n > this.num) return -ELOOP;
    if (addr > MAX_ADDR - len || !this.space.translate(addr, len, this.t)) return -EINVAL;
    const u8 = this.t.u8;
    const base = this.t.offset;
    let readTotal = 0;
    let writeTotal = 0;
    let seenWritable = false;
    for (let k = 0; k < n; k++) {
      const o = base + k * DESC_SIZE;
      for (let b = 0; b < DESC_SIZE; b++) this.one8[b] = u8[o + b]!;
      const a = loadAddr64(this.one32, D32_ADDR);
      const l = this.one32[D32_LEN]!;
      const f = this.one16[D16_FLAGS]!;
      if (a < 0) return -EINVAL;
      if ((f & F_INDIRECT) !== 0) return -EINVAL; // "Multilevel indirect"
      let iov: VringhIov | null;
      if ((f & F_WRITE) !== 0) {
        iov = wiov;
        writeTotal += l;
        seenWritable = true;
      } else {
        if (seenWritable) return -EINVAL;
        iov = riov;
        readTotal += l;
      }
      if (iov === null) return -EPROTO;
      if (readTotal >= U32 || writeTotal >= U32) return -EINVAL;
      const err = this.pushRange(iov, a, l);
      if (err < 0) return err;
    }
    return 0;
  }

  // As Vringh's: one segment per memory region the buffer lies in.
  private pushRange(iov: VringhIov, addr: number, len: number): number {
    if (addr > MAX_ADDR - len) return -EINVAL;
    if (this.space.translate(addr, len, this.t) === true) {
      pushSegment(iov, this.t.u8, this.t.offset, len, addr);
      return 0;
    }
    if (len === 0) return -EINVAL;
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

  pull(riov: VringhIov, dst: Uint8Array): number {
    return this.bytes.pull(riov, dst);
  }

  push(wiov: VringhIov, src: Uint8Array): number {
    return this.bytes.push(wiov, src);
  }

  copy(riov: VringhIov, wiov: VringhIov): number {
    return this.bytes.copy(riov, wiov);
  }

  /** Marks the buffer `id` used with `len` bytes written, at once. -EINVAL for an id not held. */
  complete(id: number, len: number): number {
    const err = this.completeDeferred(id, len);
    if (err === 0) this.publish();
    return err;
  }

  /**
   * complete() with the first used descriptor of a batch held back until the next complete(),
   * completeMulti() or needNotify(): the driver sees the batch together. The caller must end the
   * batch with needNotify().
   */
  completeDeferred(id: number, len: number): number {
    if (this.ready !== true) return -EINVAL;
    // Also an id out of range or no integer: the typed array reads undefined there.
    if (this.inFlight[id] !== 1) return -EINVAL;
    const slot = this.usedIdx;
    this.desc32[slot * W32 + D32_LEN] = len;
    this.desc16[slot * W16 + D16_ID] = id;
    const flags = this.usedWrap !== 0 ? F_AVAIL | F_USED : 0;
    if (this.pendingSlot < 0) {
      this.pendingSlot = slot;
      this.pendingFlags = flags;
    } else {
      // Behind the held-back first descriptor: the driver reaches this one only after it.
      this.desc16[slot * W16 + D16_FLAGS] = flags;
    }
    this.inFlight[id] = 0;
    const n = this.chainDescs[id]!;
    this.completedDescs += n;
    this.usedIdx += n;
    if (this.usedIdx >= this.num) {
      this.usedIdx -= this.num;
      this.usedWrap ^= 1;
    }
    return 0;
  }

  private publish(): void {
    if (this.pendingSlot < 0) return;
    // virtio_wmb: every used descriptor of the batch is written before the first one's flags.
    storeIndex(this.space, this.desc16, this.pendingSlot * W16 + D16_FLAGS, this.pendingFlags);
    this.pendingSlot = -1;
  }

  completeMulti(heads: ArrayLike<number>, lens: ArrayLike<number>, count: number): number {
    if (this.ready !== true) return -EINVAL;
    for (let k = 0; k < count; k++) {
      const err = this.completeDeferred(heads[k]!, lens[k]!);
      if (err < 0) {
        this.publish();
        return err;
      }
    }
    this.publish();
    return 0;
  }

  /** Gives back the last `num` chains taken by getDesc (not completed). */
  abandon(num: number): void {
    for (let k = 0; k < num && this.histLen > 0; k++) {
      this.histTop = this.histTop === 0 ? this.num - 1 : this.histTop - 1;
      this.histLen--;
      this.lastAvail = this.histIdx[this.histTop]!;
      this.availWrap = this.histWrap[this.histTop]!;
      this.inFlight[this.histId[this.histTop]!] = 0;
    }
  }

  /**
   * Whether the driver wants an interrupt for what was completed since the last call: its event
   * suppression structure's flags, or with EVENT_IDX the descriptor offset and wrap counter in
   * off_wrap (2.8.10; DPDK's vhost_vring_call_packed). 1 or 0.
   */
  needNotify(): number {
    if (this.ready !== true) return 0;
    this.publish();
    const completed = this.completedDescs;
    let old = this.signalledIdx;
    const oldWrap = this.signalledWrap;
    const newIdx = this.usedIdx;
    this.signalledIdx = newIdx;
    this.signalledWrap = this.usedWrap;
    this.completedDescs = 0;
    if (completed === 0) return 0;
    // virtio_mb: the used flags stored above are ordered before reading the driver's structure.
    const flags = loadIndex(this.space, this.drvEvent16, EV_FLAGS);
    if (flags !== EV_DESC || this.eventIdx !== true) return flags !== EV_DISABLE ? 1 : 0;
    if (completed >= this.num) return 1;
    const offWrap = loadIndex(this.space, this.drvEvent16, EV_OFF_WRAP);
    let event = offWrap & 0x7fff;
    // Positions of the previous lap are `num` behind, so that the three compare on one line.
    if (oldWrap !== this.usedWrap) old -= this.num;
    if (offWrap >>> 15 !== this.usedWrap) event -= this.num;
    return vringNeedEvent(event & 0xffff, newIdx & 0xffff, old & 0xffff) ? 1 : 0;
  }

  /**
   * Asks the driver to kick again (at the next descriptor, with EVENT_IDX); false when a chain
   * became available meanwhile (the caller should process it).
   */
  notifyEnable(): boolean {
    if (this.ready !== true) return true;
    if (this.eventIdx === true) {
      storeIndex(
        this.space,
        this.devEvent16,
        EV_OFF_WRAP,
        pl.packWrapIdx(this.lastAvail, this.availWrap),
      );
    }
    const want = this.eventIdx === true ? EV_DESC : EV_ENABLE;
    if (this.kickFlagsShadow !== want) {
      this.kickFlagsShadow = want;
      storeIndex(this.space, this.devEvent16, EV_FLAGS, want);
    }
    // virtio_mb: the store above is ordered before looking at the ring again.
    return !this.hasAvail();
  }

  /** No kicks needed while the device is polling. */
  notifyDisable(): void {
    if (this.ready !== true || this.kickFlagsShadow === EV_DISABLE) return;
    this.kickFlagsShadow = EV_DISABLE;
    storeIndex(this.space, this.devEvent16, EV_FLAGS, EV_DISABLE);
  }
}

// As vringh.ts's pushSegment (module-private there).
const pushSegment = (
  iov: VringhIov,
  buf: Uint8Array,
  off: number,
  len: number,
  addr: number,
): void => {
  if (iov.used === iov.off.length) growIov(iov);
  const n = iov.used++;
  if (iov.buf[n] !== buf) iov.buf[n] = buf;
  iov.off[n] = off;
  iov.len[n] = len;
  iov.addr[n] = addr;
  iov.total += len;
};

function growIov(iov: VringhIov): void {
  const cap = iov.off.length * 2;
  for (const key of ['off', 'len', 'addr'] as const) {
    const next = new Float64Array(cap);
    next.set(iov[key]);
    iov[key] = next;
  }
}

import { type DmaMapOps, isDirectDma } from './dma';
import { EIO, ENOMEM, ENOSPC } from './errno';
import * as layout from './layout';
import type { GuestMemory } from './memory';
import * as mem from './memory';
import * as pl from './packed-layout';
import { type Sg, type UsedBuf, Virtqueue, type VirtqueueOptions } from './virtqueue';

// Module constants, as in virtqueue.ts: an imported binding costs a load and a check per use.
const HOST_LITTLE_ENDIAN = mem.HOST_LITTLE_ENDIAN;
const MAX_ADDR = mem.MAX_ADDR;
const loadIndex = mem.loadIndex;
const storeIndex = mem.storeIndex;
const storeAddr64 = layout.storeAddr64;
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

/**
 * A queue's interrupt handler. Declared through a method so that its parameter is bivariant: a
 * `Virtqueue`'s handler takes a `Virtqueue`, and still is a handler of a `VirtqueueLike`.
 */
export type VirtqueueCallback<T> = {
  handler(vq: VirtqueueLike<T>): void;
}['handler'];

/**
 * The driver side of a virtqueue, whichever its layout: what `Virtqueue` (split) and
 * `PackedVirtqueue` both offer, and what a transport or a driver holds.
 */
export interface VirtqueueLike<T = unknown> {
  readonly index: number;
  readonly name: string;
  readonly num: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** VIRTIO_F_IN_ORDER was negotiated: the device uses buffers in the order they were made available. */
  readonly inOrder: boolean;
  /**
   * Publish the buffers added since the last `kickPrepare` there, once per batch (split: one
   * store of the avail index). A packed ring publishes each buffer by its descriptor's flags and
   * takes the setting for the same API shape.
   */
  batchAvail: boolean;
  callback: VirtqueueCallback<T> | null;
  lastLen: number;
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  readonly size: number;
  readonly numFree: number;
  readonly isBroken: boolean;
  readonly brokenBecause: string;
  markBroken(reason: string): void;
  addOutbuf(addr: number, len: number, token: T): number;
  addInbuf(addr: number, len: number, token: T): number;
  add(out: readonly Sg[], inp: readonly Sg[], token: T): number;
  addChain(
    addrs: ArrayLike<number>,
    lens: ArrayLike<number>,
    outNum: number,
    inNum: number,
    token: T,
  ): number;
  addSgs(sgs: readonly Sg[], outSgs: number, token: T): number;
  kickPrepare(): boolean;
  notify(): boolean;
  kick(): boolean;
  moreUsed(): boolean;
  getBuf(): UsedBuf<T> | null;
  getBufToken(): T | undefined;
  disableCb(): void;
  enableCbPrepare(): number;
  poll(last: number): boolean;
  enableCb(): boolean;
  enableCbDelayed(): boolean;
  interrupt(): 'handled' | 'none';
  detachUnused(): T | undefined;
  reset(recycle?: (token: T) => void): void;
  delete(recycle?: (token: T) => void): void;
}

/** Options of `PackedVirtqueue.create`: the split ring's, with `notify` and `callback` on this type. */
export interface PackedVirtqueueOptions<T>
  extends Omit<VirtqueueOptions<T>, 'notify' | 'callback' | 'align'> {
  /** VIRTIO_F_IN_ORDER negotiated: a used descriptor may stand for every earlier buffer too. */
  inOrder?: boolean;
  notify: (vq: VirtqueueLike<T>) => boolean;
  callback?: ((vq: VirtqueueLike<T>) => void) | null;
}

/** `VirtqueueOptions` with the layout to pick: `packed` for VIRTIO_F_RING_PACKED. */
export type AnyVirtqueueOptions<T> = Omit<VirtqueueOptions<T>, 'notify' | 'callback'> & {
  packed?: boolean;
  inOrder?: boolean;
  notify: (vq: VirtqueueLike<T>) => boolean;
  callback?: ((vq: VirtqueueLike<T>) => void) | null;
};

/**
 * Creates the driver side of a queue in the layout `opts.packed` asks for (vring_create_virtqueue
 * picking vring_create_virtqueue_packed or _split): null when no size fits in memory.
 */
export function createVirtqueue<T>(opts: AnyVirtqueueOptions<T>): VirtqueueLike<T> | null {
  if (opts.packed === true) return PackedVirtqueue.create<T>(opts);
  return Virtqueue.create<T>(opts);
}

interface Area {
  cpuAddr: number;
  dmaAddr: number;
  size: number;
}

/**
 * The driver side of a packed virtqueue (the kernel's virtio_ring.c, the `_packed` functions;
 * virtio 1.2 section 2.8). The same API as `Virtqueue`: buffers are added as CPU addresses of
 * guest memory, the device is untrusted (a bad used descriptor breaks the queue, never throws).
 *
 * A buffer takes one buffer id (its slot in the per-buffer arrays below) and as many ring
 * descriptors as it has elements (one with an indirect table). `numFree` counts descriptors, as
 * the kernel's num_free: the ids in use are never more than the descriptors in flight.
 */
export class PackedVirtqueue<T = unknown> implements VirtqueueLike<T> {
  readonly index: number;
  readonly name: string;
  readonly num: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly inOrder: boolean;
  /**
   * Taken for the same API shape as the split ring's: each buffer is published by its head
   * descriptor's flags, written last, so there is no index to store once per batch.
   */
  batchAvail = false;
  private readonly dma: DmaMapOps;
  private readonly direct: boolean;
  private readonly memory: GuestMemory;
  private readonly notifyFn: (vq: VirtqueueLike<T>) => boolean;
  callback: ((vq: VirtqueueLike<T>) => void) | null;

  private readonly ringArea: Area;
  private readonly driverArea: Area;
  private readonly deviceArea: Area;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  /** The driver event suppression structure (written here, read by the device). */
  private readonly drvEvent16: Uint16Array;
  /** The device event suppression structure (written by the device). */
  private readonly devEvent16: Uint16Array;

  // Per buffer id: the token, ring descriptors taken, writable bytes, and (not direct DMA) what
  // each of its ring descriptors maps, kept here since the device may rewrite the ring.
  private readonly tokens: (T | undefined)[];
  private readonly descCount: Uint16Array;
  private readonly inBytes: Float64Array;
  private readonly mapAddr: (Float64Array | undefined)[];
  private readonly mapLen: (Float64Array | undefined)[];
  private readonly mapWrite: (Uint8Array | undefined)[];
  private readonly mapCount: Uint16Array;
  // Per buffer id: a cached indirect table (reused by later adds that fit).
  private readonly indirectTable: (Area | undefined)[];
  private readonly indirectCap: Uint16Array;
  private readonly indirect32: (Uint32Array | undefined)[];
  private readonly indirect16: (Uint16Array | undefined)[];
  // Free buffer ids, a stack.
  private readonly freeIds: Uint16Array;
  private freeIdCount: number;
  // In-order: the ids in flight in the order they were made available (a ring of num).
  private readonly order: Uint16Array;
  private orderHead = 0;
  private orderCount = 0;
  // In-order: a used descriptor that stands for buffers up to `batchId`, and its length.
  private batchId = -1;
  private batchLen = 0;

  private sgAddr = new Float64Array(8);
  private sgLen = new Float64Array(8);
  private sgDma = new Float64Array(8);

  private freeCount: number;
  private nextAvail = 0;
  private availWrap = 1;
  private lastUsed = 0;
  private usedWrap = 1;
  private numAdded = 0;
  private eventFlagsShadow = EV_ENABLE;
  private broken = false;
  private deleted = false;
  private brokenReason = '';
  private readonly usedBuf: UsedBuf<T> = { token: undefined as T, len: 0 };
  lastLen = 0;

  private constructor(opts: PackedVirtqueueOptions<T>, num: number, areas: [Area, Area, Area]) {
    this.index = opts.index;
    this.name = opts.name ?? `vq${opts.index}`;
    this.num = num;
    this.eventIdx = opts.eventIdx ?? false;
    this.indirect = opts.indirect ?? false;
    this.inOrder = opts.inOrder ?? false;
    this.dma = opts.dma;
    this.direct = isDirectDma(opts.dma);
    this.memory = opts.memory;
    this.notifyFn = opts.notify;
    this.callback = opts.callback ?? null;
    [this.ringArea, this.driverArea, this.deviceArea] = areas;
    const d = this.memory.view(this.ringArea.cpuAddr, this.ringArea.size);
    const drv = this.memory.view(this.driverArea.cpuAddr, this.driverArea.size);
    const dev = this.memory.view(this.deviceArea.cpuAddr, this.deviceArea.size);
    this.desc32 = new Uint32Array(d.buffer, d.byteOffset, d.length >> 2);
    this.desc16 = new Uint16Array(d.buffer, d.byteOffset, d.length >> 1);
    this.drvEvent16 = new Uint16Array(drv.buffer, drv.byteOffset, 2);
    this.devEvent16 = new Uint16Array(dev.buffer, dev.byteOffset, 2);
    this.tokens = new Array(num).fill(undefined);
    this.descCount = new Uint16Array(num);
    this.inBytes = new Float64Array(num);
    this.mapAddr = new Array(num).fill(undefined);
    this.mapLen = new Array(num).fill(undefined);
    this.mapWrite = new Array(num).fill(undefined);
    this.mapCount = new Uint16Array(num);
    this.indirectTable = new Array(num).fill(undefined);
    this.indirectCap = new Uint16Array(num);
    this.indirect32 = new Array(num).fill(undefined);
    this.indirect16 = new Array(num).fill(undefined);
    this.freeIds = new Uint16Array(num);
    this.order = new Uint16Array(num);
    this.freeIdCount = 0;
    this.freeCount = num;
    this.resetIds();
  }

  /**
   * Mirrors vring_create_virtqueue_packed(): allocates the descriptor ring and the two event
   * suppression structures as coherent DMA memory. Any size from 1 to 32768 (a packed ring need
   * not be a power of two); with `mayReduceNum` a smaller one when memory is short. Null when
   * nothing fits.
   */
  static create<T>(opts: PackedVirtqueueOptions<T>): PackedVirtqueue<T> | null {
    if (!HOST_LITTLE_ENDIAN) throw new Error('virtio-ring: big-endian hosts are not supported');
    let num = opts.num;
    if (!Number.isInteger(num) || num <= 0 || num > pl.VIRTQUEUE_PACKED_MAX_SIZE) {
      throw new RangeError(`virtqueue ${opts.index}: bad packed size ${num}`);
    }
    for (; num >= 1; num >>= 1) {
      const areas = allocAreas(opts.dma, num);
      if (areas) return new PackedVirtqueue(opts, num, areas);
      if (!opts.mayReduceNum) return null;
    }
    return null;
  }

  private resetIds(): void {
    // Lowest ids first: a fresh ring hands out 0, 1, 2... as the kernel's does.
    for (let i = 0; i < this.num; i++) this.freeIds[i] = this.num - 1 - i;
    this.freeIdCount = this.num;
    this.orderHead = this.orderCount = 0;
    this.batchId = -1;
  }

  /** Device address of the descriptor ring. */
  get descAddr(): number {
    return this.ringArea.dmaAddr;
  }
  /** Device address of the driver event suppression structure (the driver area). */
  get availAddr(): number {
    return this.driverArea.dmaAddr;
  }
  /** Device address of the device event suppression structure (the device area). */
  get usedAddr(): number {
    return this.deviceArea.dmaAddr;
  }
  get size(): number {
    return this.num;
  }
  get numFree(): number {
    return this.freeCount;
  }
  get isBroken(): boolean {
    return this.broken;
  }
  get brokenBecause(): string {
    return this.brokenReason;
  }
  /** Where the driver writes next, with its wrap counter in bit 15 (next_avail_idx). */
  get nextAvailIdx(): number {
    return pl.packWrapIdx(this.nextAvail, this.availWrap);
  }
  /** Where the driver reads the next used descriptor, wrap counter in bit 15 (last_used_idx). */
  get lastUsedIdx(): number {
    return pl.packWrapIdx(this.lastUsed, this.usedWrap);
  }

  markBroken(reason: string): void {
    if (!this.broken) {
      this.broken = true;
      this.brokenReason = reason;
    }
  }

  addOutbuf(addr: number, len: number, token: T): number {
    return this.addOne(addr, len, 0, token);
  }

  addInbuf(addr: number, len: number, token: T): number {
    return this.addOne(addr, len, F_WRITE, token);
  }

  // addScratch for one element, the per-frame case (a whole frame, a receive buffer): one
  // descriptor, no indirect table, nothing to loop over.
  private addOne(addr: number, len: number, flags: number, token: T): number {
    if (token === undefined || token === null) throw new TypeError('virtqueue: token must be set');
    checkSg(addr, len);
    if (this.broken === true) return -EIO;
    if (this.freeCount === 0 || this.freeIdCount === 0) return -ENOSPC;
    let dmaAddr = addr;
    if (this.direct !== true) {
      dmaAddr = this.dma.map(addr, len, flags !== 0 ? 'from-device' : 'to-device');
      if (!validDma(dmaAddr)) return -ENOMEM;
      this.sgDma[0] = dmaAddr;
      this.sgLen[0] = len;
      this.recordMaps(this.freeIds[this.freeIdCount - 1]!, 1, flags !== 0 ? 0 : 1);
    }
    const id = this.freeIds[--this.freeIdCount]!;
    const head = this.nextAvail;
    const w = head * W32;
    storeAddr64(this.desc32, w + D32_ADDR, dmaAddr);
    this.desc32[w + D32_LEN] = len;
    this.desc16[head * W16 + D16_ID] = id;
    const wrapFlags = this.availWrap !== 0 ? F_AVAIL : F_USED;
    if (++this.nextAvail === this.num) {
      this.nextAvail = 0;
      this.availWrap ^= 1;
    }
    this.freeCount--;
    this.tokens[id] = token;
    this.descCount[id] = 1;
    this.inBytes[id] = flags !== 0 ? len : 0;
    if (this.inOrder === true) {
      this.order[(this.orderHead + this.orderCount) % this.num] = id;
      this.orderCount++;
    }
    // virtio_wmb: the descriptor is written before the flags that make it available.
    storeIndex(this.memory, this.desc16, head * W16 + D16_FLAGS, flags | wrapFlags);
    if (++this.numAdded >= 0x8000) this.kick();
    return 0;
  }

  add(out: readonly Sg[], inp: readonly Sg[], token: T): number {
    this.ensureScratch(out.length + inp.length);
    for (let k = 0; k < out.length; k++) {
      this.sgAddr[k] = out[k]!.addr;
      this.sgLen[k] = out[k]!.len;
    }
    for (let k = 0; k < inp.length; k++) {
      this.sgAddr[out.length + k] = inp[k]!.addr;
      this.sgLen[out.length + k] = inp[k]!.len;
    }
    return this.addScratch(out.length, inp.length, token);
  }

  addChain(
    addrs: ArrayLike<number>,
    lens: ArrayLike<number>,
    outNum: number,
    inNum: number,
    token: T,
  ): number {
    const total = outNum + inNum;
    if (!(outNum >= 0 && inNum >= 0 && total <= addrs.length && total <= lens.length)) {
      throw new RangeError(`virtqueue: ${outNum}+${inNum} elements but ${addrs.length} given`);
    }
    this.ensureScratch(total);
    for (let k = 0; k < total; k++) {
      this.sgAddr[k] = addrs[k]!;
      this.sgLen[k] = lens[k]!;
    }
    return this.addScratch(outNum, inNum, token);
  }

  addSgs(sgs: readonly Sg[], outSgs: number, token: T): number {
    return this.add(sgs.slice(0, outSgs), sgs.slice(outSgs), token);
  }

  private ensureScratch(n: number): void {
    if (n <= this.sgAddr.length) return;
    let cap = this.sgAddr.length;
    while (cap < n) cap *= 2;
    this.sgAddr = new Float64Array(cap);
    this.sgLen = new Float64Array(cap);
    this.sgDma = new Float64Array(cap);
  }

  // virtqueue_add_packed() and virtqueue_add_indirect_packed(): the elements are in the scratch.
  private addScratch(outNum: number, inNum: number, token: T): number {
    const total = outNum + inNum;
    if (token === undefined || token === null) throw new TypeError('virtqueue: token must be set');
    if (total === 0) throw new RangeError('virtqueue: empty buffer');
    let inLen = 0;
    for (let k = 0; k < total; k++) {
      checkSg(this.sgAddr[k]!, this.sgLen[k]!);
      if (k >= outNum) inLen += this.sgLen[k]!;
    }
    if (this.broken === true) return -EIO;
    // 2.8.18 (as 2.7.5.3.1 for split): no chain longer than the queue, indirect ones included.
    if (total > this.num) {
      throw new RangeError(`virtqueue: ${total} elements exceed the ring size ${this.num}`);
    }
    if (this.freeCount === 0 || this.freeIdCount === 0) return -ENOSPC;
    const id = this.freeIds[this.freeIdCount - 1]!;
    const useIndirect = this.indirect && total > 1 && this.indirectFor(id, total);
    const ringDescs = useIndirect ? 1 : total;
    if (this.freeCount < ringDescs) return -ENOSPC;
    for (let k = 0; k < total; k++) {
      if (this.direct === true) {
        this.sgDma[k] = this.sgAddr[k]!;
        continue;
      }
      const dmaAddr = this.dma.map(
        this.sgAddr[k]!,
        this.sgLen[k]!,
        k < outNum ? 'to-device' : 'from-device',
      );
      if (!validDma(dmaAddr)) {
        for (let j = 0; j < k; j++) {
          this.dma.unmap(this.sgDma[j]!, this.sgLen[j]!, j < outNum ? 'to-device' : 'from-device');
        }
        return -ENOMEM;
      }
      this.sgDma[k] = dmaAddr;
    }
    this.freeIdCount--;
    if (this.direct !== true) this.recordMaps(id, total, outNum);
    const head = this.nextAvail;
    const headFlags = this.availWrap !== 0 ? F_AVAIL : F_USED;
    let headDescFlags: number;
    if (useIndirect) {
      // 2.8.19: the table holds `total` packed descriptors in order, with no next flag.
      const t32 = this.indirect32[id]!;
      const t16 = this.indirect16[id]!;
      for (let k = 0; k < total; k++) {
        storeAddr64(t32, k * W32 + D32_ADDR, this.sgDma[k]!);
        t32[k * W32 + D32_LEN] = this.sgLen[k]!;
        t16[k * W16 + D16_ID] = 0;
        t16[k * W16 + D16_FLAGS] = k < outNum ? 0 : F_WRITE;
      }
      const w = head * W32;
      storeAddr64(this.desc32, w + D32_ADDR, this.indirectTable[id]!.dmaAddr);
      this.desc32[w + D32_LEN] = total * DESC_SIZE;
      this.desc16[head * W16 + D16_ID] = id;
      headDescFlags = F_INDIRECT | headFlags;
      this.advanceAvail(1);
    } else {
      let i = head;
      let wrapFlags = headFlags;
      headDescFlags = 0;
      for (let k = 0; k < total; k++) {
        const flags = (k < outNum ? 0 : F_WRITE) | (k + 1 < total ? F_NEXT : 0);
        const w = i * W32;
        storeAddr64(this.desc32, w + D32_ADDR, this.sgDma[k]!);
        this.desc32[w + D32_LEN] = this.sgLen[k]!;
        // The id goes in every descriptor; the device reads it from the last (2.8.6).
        this.desc16[i * W16 + D16_ID] = id;
        if (k === 0) headDescFlags = flags | wrapFlags;
        else this.desc16[i * W16 + D16_FLAGS] = flags | wrapFlags;
        if (++i === this.num) {
          i = 0;
          wrapFlags ^= F_AVAIL | F_USED;
        }
      }
      this.advanceAvail(total);
    }
    this.freeCount -= ringDescs;
    this.tokens[id] = token;
    this.descCount[id] = ringDescs;
    this.inBytes[id] = inLen;
    if (this.inOrder === true) {
      this.order[(this.orderHead + this.orderCount) % this.num] = id;
      this.orderCount++;
    }
    // virtio_wmb: the rest of the chain is written before the head's flags make it available.
    storeIndex(this.memory, this.desc16, head * W16 + D16_FLAGS, headDescFlags);
    // numAdded counts descriptors (the kernel's num_added). The device's event offset is always
    // within a lap of the driver's position, so kickPrepare's modulo-2^16 compare holds for up to
    // 2^15 descriptors added without a kick; past that, kick now (as the split ring at 0xffff).
    this.numAdded += ringDescs;
    if (this.numAdded >= 0x8000) this.kick();
    return 0;
  }

  private advanceAvail(n: number): void {
    this.nextAvail += n;
    if (this.nextAvail >= this.num) {
      this.nextAvail -= this.num;
      this.availWrap ^= 1;
    }
  }

  private recordMaps(id: number, total: number, outNum: number): void {
    let addr = this.mapAddr[id];
    if (addr === undefined || addr.length < total) {
      let cap = 4;
      while (cap < total) cap *= 2;
      addr = this.mapAddr[id] = new Float64Array(cap);
      this.mapLen[id] = new Float64Array(cap);
      this.mapWrite[id] = new Uint8Array(cap);
    }
    const len = this.mapLen[id]!;
    const write = this.mapWrite[id]!;
    for (let k = 0; k < total; k++) {
      addr[k] = this.sgDma[k]!;
      len[k] = this.sgLen[k]!;
      write[k] = k < outNum ? 0 : 1;
    }
    this.mapCount[id] = total;
  }

  private indirectFor(id: number, total: number): boolean {
    if (this.indirectCap[id]! >= total) return true;
    this.freeIndirect(id);
    let cap = 4;
    while (cap < total) cap *= 2;
    const size = cap * DESC_SIZE;
    const table = this.dma.alloc(size, pl.VRING_PACKED_DESC_ALIGN_SIZE);
    if (!table) return false;
    const view = this.memory.view(table.cpuAddr, size);
    this.indirectTable[id] = { cpuAddr: table.cpuAddr, dmaAddr: table.dmaAddr, size };
    this.indirect32[id] = new Uint32Array(view.buffer, view.byteOffset, size >> 2);
    this.indirect16[id] = new Uint16Array(view.buffer, view.byteOffset, size >> 1);
    this.indirectCap[id] = cap;
    return true;
  }

  private freeIndirect(id: number): void {
    const table = this.indirectTable[id];
    if (table === undefined) return;
    this.dma.free(table.cpuAddr, table.size, table.dmaAddr);
    this.indirectTable[id] = undefined;
    this.indirect32[id] = undefined;
    this.indirect16[id] = undefined;
    this.indirectCap[id] = 0;
  }

  /**
   * Mirrors virtqueue_kick_prepare_packed(): whether the device's event suppression structure
   * asks for a kick for the descriptors made available since the last one.
   */
  kickPrepare(): boolean {
    if (this.deleted) return false;
    const newIdx = this.nextAvail;
    const old = newIdx - this.numAdded;
    this.numAdded = 0;
    // virtio_mb: the head flags stored above are ordered before reading the device's structure.
    const flags = loadIndex(this.memory, this.devEvent16, EV_FLAGS);
    if (flags !== EV_DESC) return flags !== EV_DISABLE;
    const offWrap = loadIndex(this.memory, this.devEvent16, EV_OFF_WRAP);
    let event = offWrap & 0x7fff;
    // An offset in the other lap is `num` behind, so that the three compare on one line.
    if (offWrap >>> 15 !== this.availWrap) event -= this.num;
    return vringNeedEvent(event & 0xffff, newIdx & 0xffff, old & 0xffff);
  }

  notify(): boolean {
    if (this.broken === true) return false;
    if (!this.notifyFn(this)) {
      this.markBroken('notify failed');
      return false;
    }
    return true;
  }

  kick(): boolean {
    if (this.kickPrepare()) return this.notify();
    return true;
  }

  /** Whether the descriptor at `idx` was used in lap `wrap` (is_used_desc_packed). */
  private isUsed(idx: number, wrap: number): boolean {
    const flags = loadIndex(this.memory, this.desc16, idx * W16 + D16_FLAGS);
    // Both flags equal to the counter: both set in lap 1 (-1 & mask), both clear in lap 0.
    return (flags & F_BOTH) === (-wrap & F_BOTH);
  }

  moreUsed(): boolean {
    if (this.deleted) return false;
    if (this.batchId >= 0) return true;
    return this.isUsed(this.lastUsed, this.usedWrap);
  }

  getBuf(): UsedBuf<T> | null {
    const token = this.getBufToken();
    if (token === undefined) return null;
    this.usedBuf.token = token;
    this.usedBuf.len = this.lastLen;
    return this.usedBuf;
  }

  /** Mirrors virtqueue_get_buf_ctx_packed(): the next used buffer's token (length in lastLen). */
  getBufToken(): T | undefined {
    if (this.broken === true || this.deleted) return undefined;
    if (this.batchId >= 0) return this.takeInOrder();
    // virtio_rmb (the flags load): the id and length are read after the flags that cover them.
    if (!this.isUsed(this.lastUsed, this.usedWrap)) return undefined;
    const d = this.lastUsed;
    const id = this.desc16[d * W16 + D16_ID]!;
    const len = this.desc32[d * W32 + D32_LEN]!;
    if (id >= this.num) {
      this.markBroken(`used id ${id} out of range`);
      return undefined;
    }
    if (this.tokens[id] === undefined) {
      this.markBroken(`used id ${id} is not a buffer in flight`);
      return undefined;
    }
    if (this.inOrder === true && this.order[this.orderHead] !== id) {
      // 2.8.23: an in-order device may write one used descriptor for a batch, with the id of
      // its last buffer; every buffer made available before it is used too (length unknown: 0).
      this.batchId = id;
      this.batchLen = len;
      return this.takeInOrder();
    }
    // Stricter than mainline Linux, as the split ring (docs/ARCHITECTURE.md §3.2); a length on a
    // buffer the device only reads is read back by nobody (DPDK's vhost writes the bytes it read
    // there): it counts as 0.
    if (len > this.inBytes[id]!) {
      if (this.inBytes[id] !== 0) {
        this.markBroken(`used len ${len} beyond the ${this.inBytes[id]} writable bytes of ${id}`);
        return undefined;
      }
      return this.finish(id, 0);
    }
    return this.finish(id, len);
  }

  // The next buffer of an in-order batch (oldest first); the batch's last gets its length.
  private takeInOrder(): T | undefined {
    const id = this.order[this.orderHead]!;
    let len = 0;
    if (id === this.batchId) {
      len = this.batchLen;
      this.batchId = -1;
      if (len > this.inBytes[id]!) {
        if (this.inBytes[id] !== 0) {
          this.markBroken(`used len ${len} beyond the ${this.inBytes[id]} writable bytes of ${id}`);
          return undefined;
        }
        len = 0;
      }
    }
    return this.finish(id, len);
  }

  private finish(id: number, len: number): T {
    const token = this.tokens[id]!;
    const n = this.descCount[id]!;
    this.detach(id);
    this.lastUsed += n;
    if (this.lastUsed >= this.num) {
      this.lastUsed -= this.num;
      this.usedWrap ^= 1;
    }
    if (this.eventFlagsShadow === EV_DESC) {
      // virtio_store_mb: ask for the next interrupt once the device passes what was consumed.
      storeIndex(
        this.memory,
        this.drvEvent16,
        EV_OFF_WRAP,
        pl.packWrapIdx(this.lastUsed, this.usedWrap),
      );
    }
    this.lastLen = len;
    return token;
  }

  // detach_buf_packed(): frees the id and its descriptors, unmaps from the driver's own record.
  private detach(id: number): void {
    if (this.inOrder === true && this.orderCount > 0 && this.order[this.orderHead] === id) {
      this.orderHead = (this.orderHead + 1) % this.num;
      this.orderCount--;
    }
    if (this.direct !== true) {
      const addr = this.mapAddr[id]!;
      const len = this.mapLen[id]!;
      const write = this.mapWrite[id]!;
      for (let k = 0; k < this.mapCount[id]!; k++) {
        this.dma.unmap(addr[k]!, len[k]!, write[k] === 1 ? 'from-device' : 'to-device');
      }
      this.mapCount[id] = 0;
    }
    this.freeCount += this.descCount[id]!;
    this.tokens[id] = undefined;
    this.freeIds[this.freeIdCount++] = id;
  }

  /** Mirrors virtqueue_disable_cb_packed(). */
  disableCb(): void {
    if (this.deleted) return;
    if (this.eventFlagsShadow === EV_DISABLE) return;
    this.eventFlagsShadow = EV_DISABLE;
    storeIndex(this.memory, this.drvEvent16, EV_FLAGS, EV_DISABLE);
  }

  /**
   * Mirrors virtqueue_enable_cb_prepare_packed(): the position (index, wrap counter in bit 15)
   * to hand to `poll`.
   */
  enableCbPrepare(): number {
    const pos = pl.packWrapIdx(this.lastUsed, this.usedWrap);
    if (this.deleted) return pos;
    // virtio_wmb: the event offset is written before the flags that make the device read it.
    if (this.eventIdx === true) storeIndex(this.memory, this.drvEvent16, EV_OFF_WRAP, pos);
    if (this.eventFlagsShadow === EV_DISABLE) {
      this.eventFlagsShadow = this.eventIdx === true ? EV_DESC : EV_ENABLE;
      storeIndex(this.memory, this.drvEvent16, EV_FLAGS, this.eventFlagsShadow);
    }
    return pos;
  }

  /** Mirrors virtqueue_poll_packed(): whether the descriptor at `last` was used since. */
  poll(last: number): boolean {
    if (this.broken === true || this.deleted) return false;
    return this.isUsed(last & 0x7fff, last >>> 15);
  }

  enableCb(): boolean {
    return !this.poll(this.enableCbPrepare());
  }

  /** Mirrors virtqueue_enable_cb_delayed_packed(). */
  enableCbDelayed(): boolean {
    if (this.deleted) return true;
    let usedIdx = this.lastUsed;
    let wrap = this.usedWrap;
    if (this.eventIdx === true) {
      // Ask for the interrupt about three quarters through the descriptors in flight.
      usedIdx += ((this.num - this.freeCount) * 3) >> 2;
      if (usedIdx >= this.num) {
        usedIdx -= this.num;
        wrap ^= 1;
      }
      storeIndex(this.memory, this.drvEvent16, EV_OFF_WRAP, pl.packWrapIdx(usedIdx, wrap));
    }
    if (this.eventFlagsShadow === EV_DISABLE) {
      this.eventFlagsShadow = this.eventIdx === true ? EV_DESC : EV_ENABLE;
      storeIndex(this.memory, this.drvEvent16, EV_FLAGS, this.eventFlagsShadow);
    }
    // virtio_mb: the structure is written before the descriptor flags are read again.
    return !this.isUsed(usedIdx, wrap);
  }

  interrupt(): 'handled' | 'none' {
    if (this.deleted) return 'none';
    if (!this.moreUsed()) return 'none';
    if (this.broken === true) return 'handled';
    this.callback?.(this);
    return 'handled';
  }

  /**
   * Mirrors virtqueue_detach_unused_buf_packed(): after the device is reset, takes back one buffer
   * it never used. The ring itself is rewritten by `reset`.
   */
  detachUnused(): T | undefined {
    for (let id = 0; id < this.num; id++) {
      const token = this.tokens[id];
      if (token === undefined) continue;
      this.detach(id);
      return token;
    }
    return undefined;
  }

  /** Mirrors virtqueue_reset() for a packed ring: every unused buffer back, the ring zeroed. */
  reset(recycle?: (token: T) => void): void {
    if (this.deleted) throw new Error(`virtqueue ${this.name}: reset after delete`);
    for (let t = this.detachUnused(); t !== undefined; t = this.detachUnused()) recycle?.(t);
    for (let id = 0; id < this.num; id++) this.freeIndirect(id);
    this.memory.view(this.ringArea.cpuAddr, this.ringArea.size).fill(0);
    this.memory.view(this.driverArea.cpuAddr, this.driverArea.size).fill(0);
    this.memory.view(this.deviceArea.cpuAddr, this.deviceArea.size).fill(0);
    this.resetIds();
    this.freeCount = this.num;
    this.nextAvail = this.lastUsed = 0;
    this.availWrap = this.usedWrap = 1;
    this.numAdded = 0;
    this.eventFlagsShadow = EV_ENABLE;
    this.broken = false;
    this.brokenReason = '';
  }

  delete(recycle?: (token: T) => void): void {
    if (this.deleted) return;
    for (let t = this.detachUnused(); t !== undefined; t = this.detachUnused()) recycle?.(t);
    for (let id = 0; id < this.num; id++) this.freeIndirect(id);
    for (const area of [this.ringArea, this.driverArea, this.deviceArea]) {
      this.dma.free(area.cpuAddr, area.size, area.dmaAddr);
    }
    this.deleted = true;
    this.markBroken('deleted');
  }
}

const U32 = 0x1_0000_0000;

const checkSg = (addr: number, len: number): void => {
  if (!(Number.isInteger(addr) && addr >= 0 && addr <= MAX_ADDR)) {
    throw new RangeError(`virtqueue: bad buffer address ${addr}`);
  }
  if (!(Number.isInteger(len) && len >= 0 && len < U32)) {
    throw new RangeError(`virtqueue: bad buffer length ${len}`);
  }
};

function validDma(addr: number): boolean {
  return Number.isInteger(addr) && addr >= 0 && addr <= MAX_ADDR;
}

function allocAreas(dma: DmaMapOps, num: number): [Area, Area, Area] | null {
  const sizes = [
    pl.vringPackedDescSize(num),
    pl.VRING_PACKED_EVENT_SIZE,
    pl.VRING_PACKED_EVENT_SIZE,
  ];
  const aligns = [
    pl.VRING_PACKED_DESC_ALIGN_SIZE,
    pl.VRING_PACKED_EVENT_ALIGN_SIZE,
    pl.VRING_PACKED_EVENT_ALIGN_SIZE,
  ];
  const areas: Area[] = [];
  for (let i = 0; i < 3; i++) {
    const a = dma.alloc(sizes[i]!, aligns[i]!);
    if (!a) {
      for (const done of areas) dma.free(done.cpuAddr, done.size, done.dmaAddr);
      return null;
    }
    areas.push({ ...a, size: sizes[i]! });
  }
  return areas as [Area, Area, Area];
}

import { type DmaMapOps, isDirectDma } from './dma';
import { EIO, ENOMEM, ENOSPC } from './errno';
import * as layout from './layout';
import {
  VIRTQUEUE_MAX_SIZE,
  VRING_AVAIL_ALIGN_SIZE,
  VRING_DESC_ALIGN_SIZE,
  VRING_DESC_SIZE,
  VRING_USED_ALIGN_SIZE,
  vringAvailSize,
  vringDescSize,
  vringNeedEvent,
  vringUsedSize,
} from './layout';
import type { GuestMemory } from './memory';
import * as mem from './memory';

// The layout's word offsets and flags, and the memory helpers, copied into module constants:
// every use of an imported binding is a load through its module cell and a hole check (about 7
// instructions), and these are used a few dozen times a frame; a module constant costs next to
// nothing (V8 folds it into the code). Functions called per frame are constants too (below): a
// function declaration is a variable, which optimised code loads and compares on every call.
const HOST_LITTLE_ENDIAN = mem.HOST_LITTLE_ENDIAN;
const MAX_ADDR = mem.MAX_ADDR;
const loadIndex = mem.loadIndex;
const storeIndex = mem.storeIndex;
const storeAddr64 = layout.storeAddr64;
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

/** One scatter-gather element: a CPU address in guest memory and a length. */
export interface Sg {
  addr: number;
  len: number;
}

/** What `getBuf` returns: the token given to `add` and the bytes the device wrote. */
export interface UsedBuf<T> {
  token: T;
  len: number;
}

/** Options of `Virtqueue.create` (the kernel's vring_create_virtqueue arguments). */
export interface VirtqueueOptions<T> {
  index: number;
  /** The device's maximum queue size (a power of two up to 32768). */
  num: number;
  /** Allow a smaller queue when memory is short (may_reduce_num). */
  mayReduceNum?: boolean;
  /**
   * The device's ring alignment (vring_align, a power of two; default 4). The kernel lays a split
   * ring out in one block from a page with the device area at this alignment; here the three
   * areas are allocated apart, and the descriptor table and device area both start at it.
   */
  align?: number;
  memory: GuestMemory;
  /** The DMA ops for coherent memory and buffer mapping (identity over a DmaAllocator otherwise). */
  dma: DmaMapOps;
  /** VIRTIO_RING_F_EVENT_IDX negotiated. */
  eventIdx?: boolean;
  /** VIRTIO_RING_F_INDIRECT_DESC negotiated. */
  indirect?: boolean;
  /**
   * VIRTIO_F_IN_ORDER negotiated (virtio 1.2 2.7.9): descriptors are used in ring order, chains
   * take consecutive descriptors, and the device may write one used element for a batch of
   * buffers (naming the batch's last one, at the batch's first slot), as Linux's in-order
   * virtqueue_get_buf reads it.
   */
  inOrder?: boolean;
  /** The transport's kick; returns false when the device is gone. */
  notify: (vq: Virtqueue<T>) => boolean;
  /** The driver's interrupt handler for this queue. */
  callback?: ((vq: Virtqueue<T>) => void) | null;
  name?: string;
}

interface Area {
  cpuAddr: number;
  dmaAddr: number;
  size: number;
}

/**
 * The driver side of a split virtqueue (the kernel's virtio_ring.c). Buffers are added as CPU
 * addresses of guest memory; descriptors carry the device addresses the DMA ops give. The device
 * is untrusted: a bad used entry breaks the queue, it never throws.
 *
 * As in Vringh, flags are tested with `=== true` on the per-frame paths: see there why.
 */
export class Virtqueue<T = unknown> {
  readonly index: number;
  readonly name: string;
  /** The ring size (vring.num). */
  readonly num: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly inOrder: boolean;
  /**
   * The avail index is stored once per batch, by `kickPrepare` (every add path of a driver
   * that kicks ends with it), not by every add: a device polling from another core then reads
   * the index line once per burst, and the driver writes it once per burst (as DPDK's virtio
   * PMD does). Off by default, as in virtio_ring.c, where each add publishes its buffer.
   */
  batchAvail = false;
  private readonly dma: DmaMapOps;
  /** The DMA ops map by identity (`isDirectDma`): no map or unmap per buffer. */
  private readonly direct: boolean;
  private readonly memory: GuestMemory;
  private readonly notifyFn: (vq: Virtqueue<T>) => boolean;
  callback: ((vq: Virtqueue<T>) => void) | null;

  private readonly descArea: Area;
  private readonly availArea: Area;
  private readonly usedArea: Area;
  // Views on the ring areas (little-endian host: typed arrays are the wire format).
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  // Where used_event (driver area) and avail_event (device area) are, in 16-bit words.
  private readonly usedEvent16: number;
  private readonly availEvent16: number;

  // Driver-private shadow of every descriptor (the device may scribble on the table). Address,
  // length and flags are kept only for unmapping, so not with direct DMA; `extraNext` is the free
  // list.
  private readonly extraAddr: Float64Array;
  private readonly extraLen: Uint32Array;
  private readonly extraFlags: Uint16Array;
  private readonly extraNext: Uint16Array;
  // Per head: the token, the number of descriptors, the writable byte count, indirect table.
  private readonly tokens: (T | undefined)[];
  private readonly chainCount: Uint16Array;
  private readonly inBytes: Float64Array;
  // Per head: a cached indirect table (reused by later adds that fit; freed on reset/delete).
  private readonly indirectTable: (Area | undefined)[];
  private readonly indirectCap: Uint16Array;
  private readonly indirect32: (Uint32Array | undefined)[];
  private readonly indirect16: (Uint16Array | undefined)[];
  private readonly indirectInUse: Uint8Array;
  // In order: the head made available at each avail position, and each head's position, kept
  // on the driver's side (the device can write the avail ring).
  private readonly orderHeads: Uint16Array;
  private readonly availPos: Uint16Array;
  // Per head: what the indirect table's entries map (address, length, direction), kept on the
  // driver's side. The table itself is in memory the device can write, so unmapping from it
  // would unmap whatever a device wrote there (the kernel keeps the same private copy).
  private readonly indirectMapAddr: (Float64Array | undefined)[];
  private readonly indirectMapLen: (Uint32Array | undefined)[];
  private readonly indirectMapWrite: (Uint8Array | undefined)[];
  // Scratch of the element being added (grows rarely): CPU address, length, device address.
  private sgAddr = new Float64Array(8);
  private sgLen = new Float64Array(8);
  private sgDma = new Float64Array(8);

  private freeHead = 0;
  private freeCount: number;
  private availIdxShadow = 0;
  private availFlagsShadow = 0;
  private lastUsedIdx = 0;
  // The used index as last read: read again only once the driver has caught up with it, so a
  // batch of used buffers costs one read of the device's line.
  private usedShadow = 0;
  // In order: buffers left in the batch the last used element read named, and its length.
  private batchLeft = 0;
  private batchLen = 0;
  private numAdded = 0;
  private broken = false;
  private deleted = false;
  private brokenReason = '';
  private readonly usedBuf: UsedBuf<T> = { token: undefined as T, len: 0 };
  /** The length of the last buffer `getBufToken` returned. */
  lastLen = 0;

  private constructor(opts: VirtqueueOptions<T>, num: number, areas: [Area, Area, Area]) {
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
    [this.descArea, this.availArea, this.usedArea] = areas;
    const d = this.memory.view(this.descArea.cpuAddr, this.descArea.size);
    const a = this.memory.view(this.availArea.cpuAddr, this.availArea.size);
    const u = this.memory.view(this.usedArea.cpuAddr, this.usedArea.size);
    this.desc32 = new Uint32Array(d.buffer, d.byteOffset, d.length >> 2);
    this.desc16 = new Uint16Array(d.buffer, d.byteOffset, d.length >> 1);
    this.avail16 = new Uint16Array(a.buffer, a.byteOffset, a.length >> 1);
    this.used16 = new Uint16Array(u.buffer, u.byteOffset, u.length >> 1);
    this.used32 = new Uint32Array(u.buffer, u.byteOffset, (u.length - 2) >> 2);
    this.usedEvent16 = layout.vringUsedEvent16(num);
    this.availEvent16 = layout.vringAvailEvent16(num);
    this.extraAddr = new Float64Array(num);
    this.extraLen = new Uint32Array(num);
    this.extraFlags = new Uint16Array(num);
    this.extraNext = new Uint16Array(num);
    this.tokens = new Array(num).fill(undefined);
    this.chainCount = new Uint16Array(num);
    this.inBytes = new Float64Array(num);
    this.indirectTable = new Array(num).fill(undefined);
    this.indirectCap = new Uint16Array(num);
    this.indirect32 = new Array(num).fill(undefined);
    this.indirect16 = new Array(num).fill(undefined);
    this.indirectInUse = new Uint8Array(num);
    this.orderHeads = new Uint16Array(num);
    this.availPos = new Uint16Array(num);
    this.indirectMapAddr = new Array(num).fill(undefined);
    this.indirectMapLen = new Array(num).fill(undefined);
    this.indirectMapWrite = new Array(num).fill(undefined);
    for (let i = 0; i < num - 1; i++) this.extraNext[i] = i + 1;
    this.freeCount = num;
  }

  /**
   * Mirrors vring_create_virtqueue() for a split ring: allocates the descriptor table, driver
   * area and device area as coherent DMA memory. Returns null when no size fits (ENOMEM).
   */
  static create<T>(opts: VirtqueueOptions<T>): Virtqueue<T> | null {
    if (!HOST_LITTLE_ENDIAN) throw new Error('virtio-ring: big-endian hosts are not supported');
    let num = opts.num;
    if (!Number.isInteger(num) || num <= 0 || num > VIRTQUEUE_MAX_SIZE || (num & (num - 1)) !== 0) {
      throw new RangeError(`virtqueue ${opts.index}: bad size ${num}`);
    }
    const align = opts.align ?? 4;
    if (!Number.isInteger(align) || align < 1 || (align & (align - 1)) !== 0) {
      throw new RangeError(`virtqueue ${opts.index}: bad alignment ${align}`);
    }
    for (; num >= 1; num >>= 1) {
      const areas = allocAreas(opts.dma, num, align);
      if (areas) return new Virtqueue(opts, num, areas);
      if (!opts.mayReduceNum) return null;
    }
    return null;
  }

  /** Device address of the descriptor table (virtqueue_get_desc_addr). */
  get descAddr(): number {
    return this.descArea.dmaAddr;
  }
  /** Device address of the driver area (virtqueue_get_avail_addr). */
  get availAddr(): number {
    return this.availArea.dmaAddr;
  }
  /** Device address of the device area (virtqueue_get_used_addr). */
  get usedAddr(): number {
    return this.usedArea.dmaAddr;
  }
  /** Mirrors virtqueue_get_vring_size(). */
  get size(): number {
    return this.num;
  }
  /** Free descriptors (vq->num_free). */
  get numFree(): number {
    return this.freeCount;
  }
  /** Mirrors virtqueue_is_broken(). */
  get isBroken(): boolean {
    return this.broken;
  }
  /** Why the queue broke, for diagnostics. */
  get brokenBecause(): string {
    return this.brokenReason;
  }

  /** Mirrors virtio_break_device() for this queue. */
  markBroken(reason: string): void {
    if (!this.broken) {
      this.broken = true;
      this.brokenReason = reason;
    }
  }

  /** Mirrors virtqueue_add_outbuf() for one element: 0, -ENOSPC when the ring is full, -EIO when broken. */
  addOutbuf(addr: number, len: number, token: T): number {
    return this.addOne(addr, len, 0, token);
  }

  /** Mirrors virtqueue_add_inbuf() for one element: 0, -ENOSPC when the ring is full, -EIO when broken. */
  addInbuf(addr: number, len: number, token: T): number {
    return this.addOne(addr, len, VRING_DESC_F_WRITE, token);
  }

  private addOne(addr: number, len: number, flags: number, token: T): number {
    checkToken(token);
    checkSg(addr, len);
    if (this.broken === true) return -EIO;
    if (this.freeCount === 0) return -ENOSPC;
    let dmaAddr = addr;
    if (this.direct !== true) {
      dmaAddr = this.dma.map(addr, len, flags ? 'from-device' : 'to-device');
      if (!validDma(dmaAddr)) return -ENOMEM;
    }
    const head = this.freeHead;
    this.freeHead = this.extraNext[head]!;
    this.freeCount--;
    this.writeDesc(head, dmaAddr, len, flags, this.freeHead);
    this.tokens[head] = token;
    this.chainCount[head] = 1;
    this.inBytes[head] = flags ? len : 0;
    this.publish(head);
    return 0;
  }

  /**
   * Mirrors virtqueue_add_sgs(): the readable elements `out` then the writable ones `inp`, as one
   * buffer with `token`. Uses an indirect table when negotiated and the chain has more than one
   * element. Returns 0, -ENOSPC when the ring is full, -ENOMEM when an indirect table or a DMA
   * mapping cannot be had, -EIO when the queue is broken. Nothing is consumed on failure.
   */
  add(out: readonly Sg[], inp: readonly Sg[], token: T): number {
    const total = out.length + inp.length;
    this.ensureScratch(total);
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

  /**
   * Allocation-free add for hot loops: elements `0..outNum-1` of `addrs`/`lens` are readable by
   * the device, the next `inNum` writable. Same results as `add`.
   */
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

  /** Mirrors virtqueue_add_sgs() with the kernel's argument names. */
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

  // virtqueue_add_split(): the elements are in the scratch arrays.
  private addScratch(outNum: number, inNum: number, token: T): number {
    const total = outNum + inNum;
    checkToken(token);
    if (total === 0) throw new RangeError('virtqueue: empty buffer');
    let inLen = 0;
    for (let k = 0; k < total; k++) {
      checkSg(this.sgAddr[k]!, this.sgLen[k]!);
      if (k >= outNum) inLen += this.sgLen[k]!;
    }
    if (this.broken === true) return -EIO;
    // 2.7.5.3.1: "A driver MUST NOT create a descriptor chain longer than the Queue Size of the
    // device", indirect tables included (the kernel's driver only warns without indirect; a
    // device checking the rule, like our Vringh, would break the queue).
    if (total > this.num) {
      throw new RangeError(`virtqueue: ${total} elements exceed the ring size ${this.num}`);
    }
    const head = this.freeHead;
    // An indirect table when it can be had; without one (no memory for it) the chain goes into
    // the ring directly, if it fits, as virtqueue_add_split falls back.
    const useIndirect =
      this.indirect && total > 1 && this.freeCount > 0 && this.indirectFor(head, total);
    if (this.freeCount < (useIndirect ? 1 : total)) return -ENOSPC;
    // Map every element first so that a mapping failure leaves the ring untouched.
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
        this.unmapScratch(k, outNum);
        return -ENOMEM;
      }
      this.sgDma[k] = dmaAddr;
    }
    if (useIndirect) {
      const t32 = this.indirect32[head]!;
      const t16 = this.indirect16[head]!;
      const mapAddr = this.indirectMapAddr[head];
      const mapLen = this.indirectMapLen[head];
      const mapWrite = this.indirectMapWrite[head];
      for (let k = 0; k < total; k++) {
        const flags =
          (k < outNum ? 0 : VRING_DESC_F_WRITE) | (k + 1 < total ? VRING_DESC_F_NEXT : 0);
        const dmaAddr = this.sgDma[k]!;
        storeAddr64(t32, k * VRING_DESC_WORDS32 + VRING_DESC32_ADDR_LO, dmaAddr);
        t32[k * VRING_DESC_WORDS32 + VRING_DESC32_LEN] = this.sgLen[k]!;
        t16[k * VRING_DESC_WORDS16 + VRING_DESC16_FLAGS] = flags;
        t16[k * VRING_DESC_WORDS16 + VRING_DESC16_NEXT] = k + 1 < total ? k + 1 : 0;
        if (mapAddr !== undefined) {
          mapAddr[k] = dmaAddr;
          mapLen![k] = this.sgLen[k]!;
          mapWrite![k] = k < outNum ? 0 : 1;
        }
      }
      const table = this.indirectTable[head]!;
      this.freeHead = this.extraNext[head]!;
      this.freeCount--;
      this.writeDesc(
        head,
        table.dmaAddr,
        total * VRING_DESC_SIZE,
        VRING_DESC_F_INDIRECT,
        this.freeHead,
      );
      this.indirectInUse[head] = total;
      this.chainCount[head] = 1;
    } else {
      let i = head;
      for (let k = 0; k < total; k++) {
        const flags =
          (k < outNum ? 0 : VRING_DESC_F_WRITE) | (k + 1 < total ? VRING_DESC_F_NEXT : 0);
        const next = this.extraNext[i]!;
        this.writeDesc(i, this.sgDma[k]!, this.sgLen[k]!, flags, next);
        i = next;
      }
      this.freeHead = i;
      this.freeCount -= total;
      this.chainCount[head] = total;
    }
    this.tokens[head] = token;
    this.inBytes[head] = inLen;
    this.publish(head);
    return 0;
  }

  private unmapScratch(count: number, outNum: number): void {
    if (this.direct === true) return;
    for (let k = 0; k < count; k++) {
      this.dma.unmap(this.sgDma[k]!, this.sgLen[k]!, k < outNum ? 'to-device' : 'from-device');
    }
  }

  /** Makes sure head `head` has an indirect table of at least `total` entries (reused when it fits). */
  private indirectFor(head: number, total: number): boolean {
    if (this.indirectCap[head]! >= total) return true;
    this.freeIndirect(head);
    let cap = 4;
    while (cap < total) cap *= 2;
    const size = cap * VRING_DESC_SIZE;
    const table = this.dma.alloc(size, VRING_DESC_ALIGN_SIZE);
    if (!table) return false;
    const view = this.memory.view(table.cpuAddr, size);
    this.indirectTable[head] = { cpuAddr: table.cpuAddr, dmaAddr: table.dmaAddr, size };
    this.indirect32[head] = new Uint32Array(view.buffer, view.byteOffset, size >> 2);
    this.indirect16[head] = new Uint16Array(view.buffer, view.byteOffset, size >> 1);
    this.indirectCap[head] = cap;
    if (this.direct !== true) {
      this.indirectMapAddr[head] = new Float64Array(cap);
      this.indirectMapLen[head] = new Uint32Array(cap);
      this.indirectMapWrite[head] = new Uint8Array(cap);
    }
    return true;
  }

  private freeIndirect(head: number): void {
    const table = this.indirectTable[head];
    if (table === undefined) return;
    this.dma.free(table.cpuAddr, table.size, table.dmaAddr);
    this.indirectTable[head] = undefined;
    this.indirect32[head] = undefined;
    this.indirect16[head] = undefined;
    this.indirectMapAddr[head] = undefined;
    this.indirectMapLen[head] = undefined;
    this.indirectMapWrite[head] = undefined;
    this.indirectCap[head] = 0;
  }

  private writeDesc(i: number, dmaAddr: number, len: number, flags: number, next: number): void {
    // A descriptor that says this already (a buffer posted again to the descriptor it had, as
    // in order) is not written when another thread can reach the ring: a store, even of the same
    // bytes, would take the line from the cache of a device polling on another core, which then
    // reads it back. Alone, the store costs less than the compare.
    if (this.memory.shared !== true || !this.descSays(i, dmaAddr, len, flags, next)) {
      const w = i * VRING_DESC_WORDS32;
      storeAddr64(this.desc32, w + VRING_DESC32_ADDR_LO, dmaAddr);
      this.desc32[w + VRING_DESC32_LEN] = len;
      this.desc16[i * VRING_DESC_WORDS16 + VRING_DESC16_FLAGS] = flags;
      this.desc16[i * VRING_DESC_WORDS16 + VRING_DESC16_NEXT] = next;
    }
    this.extraNext[i] = next;
    if (this.direct === true) return;
    this.extraAddr[i] = dmaAddr;
    this.extraLen[i] = len;
    this.extraFlags[i] = flags;
  }

  /** Whether descriptor `i` holds these fields already (writeDesc). Apart, to keep it small. */
  private descSays(i: number, dmaAddr: number, len: number, flags: number, next: number): boolean {
    const w = i * VRING_DESC_WORDS32;
    const h = i * VRING_DESC_WORDS16;
    const lo = dmaAddr >>> 0;
    return (
      this.desc32[w + VRING_DESC32_ADDR_LO] === lo &&
      this.desc32[w + VRING_DESC32_ADDR_LO + 1] === (dmaAddr - lo) / U32 &&
      this.desc32[w + VRING_DESC32_LEN] === len &&
      this.desc16[h + VRING_DESC16_FLAGS] === flags &&
      this.desc16[h + VRING_DESC16_NEXT] === next
    );
  }

  private publish(head: number): void {
    const mask = this.num - 1;
    const pos = this.availIdxShadow;
    // As in writeDesc: an entry that names this head already (in order, it does) is not written.
    if (this.memory.shared !== true || this.avail16[VRING_AVAIL16_RING + (pos & mask)] !== head)
      this.avail16[VRING_AVAIL16_RING + (pos & mask)] = head;
    if (this.inOrder === true) {
      this.orderHeads[pos & mask] = head;
      this.availPos[head] = pos;
    }
    this.availIdxShadow = (pos + 1) & 0xffff;
    // virtio_wmb: the descriptor and ring entry above are written before the index that exposes
    // them (here or, batched, in kickPrepare).
    if (this.batchAvail !== true)
      storeIndex(this.memory, this.avail16, VRING_AVAIL16_IDX, this.availIdxShadow);
    // 0xffff adds without a kick would make the index arithmetic of kickPrepare ambiguous:
    // kick now, as virtqueue_add_split does ("very unlikely, but theoretically possible").
    if (++this.numAdded === 0xffff) this.kick();
  }

  /**
   * Mirrors virtqueue_kick_prepare(): whether the device wants a notification for the buffers
   * added since the last kick (VRING_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX).
   */
  kickPrepare(): boolean {
    // A deleted queue's ring memory is freed (and may be someone else's now): no access.
    if (this.deleted) return false;
    const newIdx = this.availIdxShadow;
    const old = (newIdx - this.numAdded) & 0xffff;
    // Batched: the buffers added since the last kick are published now, with one store.
    if (this.batchAvail === true && this.numAdded > 0)
      storeIndex(this.memory, this.avail16, VRING_AVAIL16_IDX, newIdx);
    this.numAdded = 0;
    // virtio_mb: the avail index store above is ordered before reading the device's suppression state.
    if (this.eventIdx === true) {
      const availEvent = loadIndex(this.memory, this.used16, this.availEvent16);
      return vringNeedEvent(availEvent, newIdx, old);
    }
    return (loadIndex(this.memory, this.used16, VRING_USED16_FLAGS) & VRING_USED_F_NO_NOTIFY) === 0;
  }

  /** Mirrors virtqueue_notify(): calls the transport's kick; a failed kick breaks the queue. */
  notify(): boolean {
    if (this.broken === true) return false;
    if (!this.notifyFn(this)) {
      this.markBroken('notify failed');
      return false;
    }
    return true;
  }

  /** Mirrors virtqueue_kick(): kickPrepare() then notify() when needed. */
  kick(): boolean {
    if (this.kickPrepare()) return this.notify();
    return true;
  }

  /** Whether the device has used buffers not yet taken (more_used_split). */
  moreUsed(): boolean {
    if (this.deleted) return false;
    return this.lastUsedIdx !== loadIndex(this.memory, this.used16, VRING_USED16_IDX);
  }

  /**
   * Mirrors virtqueue_get_buf(): the next used buffer's token and length, or null when none (or
   * the queue is broken). The returned object is reused by the next call.
   */
  getBuf(): UsedBuf<T> | null {
    const token = this.getBufToken();
    if (token === undefined) return null;
    this.usedBuf.token = token;
    this.usedBuf.len = this.lastLen;
    return this.usedBuf;
  }

  /** Allocation-free getBuf: the token, with its length in `lastLen`; undefined when none. */
  getBufToken(): T | undefined {
    if (this.broken === true) return undefined;
    const last = this.lastUsedIdx;
    if (this.usedShadow === last) {
      // virtio_rmb: the used index is read (acquire) before the used elements it covers.
      const usedIdx = loadIndex(this.memory, this.used16, VRING_USED16_IDX);
      if (usedIdx === last) return undefined;
      if (((usedIdx - last) & 0xffff) > this.num) {
        // More used than the ring can have had in flight: the device is lying about the index.
        this.markBroken(`used index ${usedIdx} is more than ${this.num} past ${last}`);
        return undefined;
      }
      this.usedShadow = usedIdx;
    }
    const slot = last & (this.num - 1);
    let id: number;
    let len: number;
    if (this.inOrder === true) {
      // In order, the buffer used next is the one made available next.
      id = this.orderHeads[slot]!;
      if (this.batchLeft !== 0) {
        len = --this.batchLeft === 0 ? this.batchLen : this.inBytes[id]!;
      } else {
        const e = VRING_USED32_RING + slot * VRING_USED_ELEM_WORDS32;
        const named = this.used32[e + VRING_USED32_ELEM_ID]!;
        len = this.used32[e + VRING_USED32_ELEM_LEN]!;
        // An element naming another buffer than this one starts a batch (readBatch).
        if (named !== id) {
          if (!this.readBatch(named, len)) return undefined;
          len = this.inBytes[id]!;
        }
      }
    } else {
      const e = VRING_USED32_RING + slot * VRING_USED_ELEM_WORDS32;
      id = this.used32[e + VRING_USED32_ELEM_ID]!;
      len = this.used32[e + VRING_USED32_ELEM_LEN]!;
      if (id >= this.num) {
        this.markBroken(`used id ${id} out of range`);
        return undefined;
      }
    }
    const token = this.tokens[id];
    if (token === undefined) {
      this.markBroken(`used id ${id} is not a head in flight`);
      return undefined;
    }
    // Stricter than mainline Linux, which trusts the length and leaves it to drivers (the 5.16
    // check was reverted): here a device is untrusted (docs/ARCHITECTURE.md §3.2), and a length
    // past what the driver offered to be written would make it read bytes the device never wrote.
    // A buffer the device only reads is read back by nobody: a length on it (DPDK's vhost writes
    // the bytes it read) counts as 0.
    if (len > this.inBytes[id]!) {
      if (this.inBytes[id] !== 0) {
        this.markBroken(`used len ${len} beyond the ${this.inBytes[id]} writable bytes of ${id}`);
        return undefined;
      }
      len = 0;
    }
    this.detach(id);
    this.lastUsedIdx = (last + 1) & 0xffff;
    if ((this.availFlagsShadow & VRING_AVAIL_F_NO_INTERRUPT) === 0 && this.eventIdx === true) {
      // virtio_store_mb: ask for the next interrupt once the device passes what we consumed.
      storeIndex(this.memory, this.avail16, this.usedEvent16, this.lastUsedIdx);
    }
    this.lastLen = len;
    return token;
  }

  /**
   * In order: the used element at the next slot names `id`, a later buffer than the next one:
   * it is the last of a batch (virtio 1.2 2.7.9), whose buffers before it are used too, with
   * their whole writable length (as Linux's virtqueue_get_buf_ctx_split_in_order takes them).
   * A name that is not a buffer in flight among those the used index covers breaks the queue.
   * Counts the next buffer as taken.
   */
  private readBatch(id: number, len: number): boolean {
    if (id >= this.num || this.tokens[id] === undefined) {
      this.markBroken(`used id ${id} is not a head in flight`);
      return false;
    }
    const last = this.lastUsedIdx;
    const n = (this.availPos[id]! - last) & 0xffff;
    if (n >= ((this.usedShadow - last) & 0xffff)) {
      const next = this.orderHeads[last & (this.num - 1)];
      this.markBroken(`used id ${id} is not in order (the next is ${next})`);
      return false;
    }
    // n >= 1: the next buffer is not the named one.
    this.batchLeft = n;
    this.batchLen = len;
    return true;
  }

  private detach(head: number): void {
    const count = this.chainCount[head]!;
    const inTable = this.indirectInUse[head]!;
    if (inTable > 0 && this.direct === true) {
      this.indirectInUse[head] = 0;
    } else if (inTable > 0) {
      // The table stays cached for the next add on this head; only its buffers are unmapped,
      // from the driver's own record of them (the device may have written the table).
      const mapAddr = this.indirectMapAddr[head]!;
      const mapLen = this.indirectMapLen[head]!;
      const mapWrite = this.indirectMapWrite[head]!;
      for (let k = 0; k < inTable; k++) {
        this.dma.unmap(mapAddr[k]!, mapLen[k]!, mapWrite[k] === 1 ? 'from-device' : 'to-device');
      }
      this.indirectInUse[head] = 0;
    }
    let i = head;
    if (this.direct === true) {
      for (let n = 1; n < count; n++) i = this.extraNext[i]!;
    } else {
      for (let n = 1; n < count; n++) {
        this.unmapDesc(i);
        i = this.extraNext[i]!;
      }
      this.unmapDesc(i);
    }
    // In order, chains are freed in the order they were added, so the free descriptors stay
    // the run after the ones in flight, in table order (2.7.9: the driver uses them in order).
    if (this.inOrder !== true) {
      this.extraNext[i] = this.freeHead;
      this.freeHead = head;
    }
    this.freeCount += count;
    this.tokens[head] = undefined;
  }

  private unmapDesc(i: number): void {
    const flags = this.extraFlags[i]!;
    if (flags & VRING_DESC_F_INDIRECT) return;
    this.dma.unmap(
      this.extraAddr[i]!,
      this.extraLen[i]!,
      flags & VRING_DESC_F_WRITE ? 'from-device' : 'to-device',
    );
  }

  /** Mirrors virtqueue_disable_cb(): asks the device not to interrupt (a hint). */
  disableCb(): void {
    if (this.deleted) return;
    if (this.availFlagsShadow & VRING_AVAIL_F_NO_INTERRUPT) return;
    this.availFlagsShadow |= VRING_AVAIL_F_NO_INTERRUPT;
    if (this.eventIdx) {
      // With EVENT_IDX the flag is not read; park used_event as far from the device as possible.
      storeIndex(this.memory, this.avail16, this.usedEvent16, (this.lastUsedIdx + 0x8000) & 0xffff);
    } else {
      storeIndex(this.memory, this.avail16, VRING_AVAIL16_FLAGS, this.availFlagsShadow);
    }
  }

  /**
   * Mirrors virtqueue_enable_cb_prepare(): re-enables interrupts and returns the opaque position
   * to give `poll`, which tells whether buffers arrived in the meantime.
   */
  enableCbPrepare(): number {
    if (this.deleted) return this.lastUsedIdx;
    if (this.availFlagsShadow & VRING_AVAIL_F_NO_INTERRUPT) {
      this.availFlagsShadow &= ~VRING_AVAIL_F_NO_INTERRUPT;
      if (!this.eventIdx)
        storeIndex(this.memory, this.avail16, VRING_AVAIL16_FLAGS, this.availFlagsShadow);
    }
    // virtio_mb (via the atomic store): used_event is visible before poll() reads used->idx.
    storeIndex(this.memory, this.avail16, this.usedEvent16, this.lastUsedIdx);
    return this.lastUsedIdx;
  }

  /** Mirrors virtqueue_poll(): whether buffers were used since `enableCbPrepare` returned `last`. */
  poll(last: number): boolean {
    if (this.broken === true) return false;
    return loadIndex(this.memory, this.used16, VRING_USED16_IDX) !== last;
  }

  /** Mirrors virtqueue_enable_cb(): false when buffers are pending (the caller should poll again). */
  enableCb(): boolean {
    return !this.poll(this.enableCbPrepare());
  }

  /**
   * Mirrors virtqueue_enable_cb_delayed(): re-enables interrupts but asks for one only after about
   * three quarters of the outstanding buffers are used. False when many are already pending.
   */
  enableCbDelayed(): boolean {
    if (this.deleted) return true;
    if (this.availFlagsShadow & VRING_AVAIL_F_NO_INTERRUPT) {
      this.availFlagsShadow &= ~VRING_AVAIL_F_NO_INTERRUPT;
      if (!this.eventIdx)
        storeIndex(this.memory, this.avail16, VRING_AVAIL16_FLAGS, this.availFlagsShadow);
    }
    const bufs = (((this.availIdxShadow - this.lastUsedIdx) & 0xffff) * 3) >> 2;
    storeIndex(this.memory, this.avail16, this.usedEvent16, (this.lastUsedIdx + bufs) & 0xffff);
    return (
      ((loadIndex(this.memory, this.used16, VRING_USED16_IDX) - this.lastUsedIdx) & 0xffff) <= bufs
    );
  }

  /**
   * Mirrors vring_interrupt(): called by the transport when the device signals this queue.
   * Returns 'none' when nothing was used (a spurious interrupt), else runs the callback.
   */
  interrupt(): 'handled' | 'none' {
    if (this.deleted) return 'none';
    if (!this.moreUsed()) return 'none';
    if (this.broken === true) return 'handled';
    this.callback?.(this);
    return 'handled';
  }

  /**
   * Mirrors virtqueue_detach_unused_buf(): after the device is reset, takes back one buffer the
   * device never used; undefined when none is left.
   */
  detachUnused(): T | undefined {
    for (let head = 0; head < this.num; head++) {
      const token = this.tokens[head];
      if (token === undefined) continue;
      this.detach(head);
      this.availIdxShadow = (this.availIdxShadow - 1) & 0xffff;
      storeIndex(this.memory, this.avail16, VRING_AVAIL16_IDX, this.availIdxShadow);
      return token;
    }
    return undefined;
  }

  /**
   * Mirrors virtqueue_reset() after the device was reset: takes back every buffer the device did
   * not use (handing each token to `recycle`), zeroes the ring and starts over; a broken queue
   * becomes usable again.
   */
  reset(recycle?: (token: T) => void): void {
    if (this.deleted) throw new Error(`virtqueue ${this.name}: reset after delete`);
    for (let t = this.detachUnused(); t !== undefined; t = this.detachUnused()) recycle?.(t);
    for (let h = 0; h < this.num; h++) this.freeIndirect(h);
    this.memory.view(this.descArea.cpuAddr, this.descArea.size).fill(0);
    this.memory.view(this.availArea.cpuAddr, this.availArea.size).fill(0);
    this.memory.view(this.usedArea.cpuAddr, this.usedArea.size).fill(0);
    for (let i = 0; i < this.num; i++) this.extraNext[i] = i + 1 < this.num ? i + 1 : 0;
    this.freeHead = 0;
    this.freeCount = this.num;
    this.availIdxShadow = 0;
    this.availFlagsShadow = 0;
    this.lastUsedIdx = 0;
    this.usedShadow = 0;
    this.batchLeft = 0;
    this.numAdded = 0;
    this.broken = false;
    this.brokenReason = '';
  }

  /**
   * Mirrors vring_del_virtqueue(): takes back unused buffers (to `recycle`) and frees the ring
   * memory and indirect tables. The queue is unusable afterwards.
   */
  delete(recycle?: (token: T) => void): void {
    if (this.deleted) return;
    for (let t = this.detachUnused(); t !== undefined; t = this.detachUnused()) recycle?.(t);
    for (let h = 0; h < this.num; h++) this.freeIndirect(h);
    for (const area of [this.descArea, this.availArea, this.usedArea]) {
      this.dma.free(area.cpuAddr, area.size, area.dmaAddr);
    }
    this.deleted = true;
    this.markBroken('deleted');
  }
}

const U32 = 0x1_0000_0000;

const checkToken = (token: unknown): void => {
  if (token === undefined || token === null) throw new TypeError('virtqueue: token must be set');
};

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

function allocAreas(dma: DmaMapOps, num: number, align: number): [Area, Area, Area] | null {
  const sizes = [vringDescSize(num), vringAvailSize(num), vringUsedSize(num)];
  const aligns = [
    Math.max(VRING_DESC_ALIGN_SIZE, align),
    VRING_AVAIL_ALIGN_SIZE,
    Math.max(VRING_USED_ALIGN_SIZE, align),
  ];
  const areas: Area[] = [];
  for (let i = 0; i < 3; i++) {
    // The used area is accessed as 32-bit words and both index words as atomics: align to 4+.
    const a = dma.alloc(sizes[i]!, Math.max(aligns[i]!, 4));
    if (!a) {
      for (const done of areas) dma.free(done.cpuAddr, done.size, done.dmaAddr);
      return null;
    }
    areas.push({ ...a, size: sizes[i]! });
  }
  return areas as [Area, Area, Area];
}

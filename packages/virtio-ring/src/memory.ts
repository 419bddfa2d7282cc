import { adoptWasmMemory, sharedMemoryBuffer, type WasmMemory, wasmMemoryOf } from './bytes';

/** The largest address a 64-bit ring field may carry and still be exact as a JS number. */
export const MAX_ADDR = Number.MAX_SAFE_INTEGER;

/** Whether this host stores typed arrays little-endian (rings are little-endian, 2.4). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One contiguous piece of guest memory. */
export interface MemoryRegion {
  readonly base: number;
  readonly size: number;
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly u8: Uint8Array;
}

/** Where an address range lives: the region's bytes and the offset in them. */
export interface Translation {
  u8: Uint8Array;
  offset: number;
}

/**
 * An address space a device reads rings and buffers through: guest memory itself (identity), or
 * a device's own IOVA view of it.
 */
export interface AddressSpace {
  /** Points `out` at `[addr, addr + len)`; false when the range is not wholly inside one region. */
  translate(addr: number, len: number, out: Translation): boolean;
  /**
   * Whether another thread may reach this memory. A ring end reads and writes its index words
   * with `Atomics` only then; with `false` both ends of the ring run in this thread, where
   * program order already orders them. Left out, it counts as true.
   */
  readonly shared?: boolean;
}

/**
 * Reads a ring's index or suppression word (`a[i]`), which the other end of the ring writes:
 * with `Atomics` when `space` may be reached from another thread (each caller says what is
 * ordered against what, like the kernel's barriers), plainly when both ends run in this thread,
 * where program order is all the ordering there is (and a plain access costs a tenth as much).
 */
export function loadIndex(space: AddressSpace, a: Uint16Array, i: number): number {
  return space.shared !== false ? Atomics.load(a, i) : a[i]!;
}

/** Writes a ring's index or suppression word, as `loadIndex` reads it. */
export function storeIndex(space: AddressSpace, a: Uint16Array, i: number, v: number): void {
  if (space.shared !== false) Atomics.store(a, i, v);
  else a[i] = v;
}

/**
 * One region as it is handed to another thread: its buffer, and the wasm memory behind it when
 * there is one (so the other thread gets its byte ops too).
 */
export interface SharedRegion {
  base: number;
  buffer: SharedArrayBuffer;
  memory?: WasmMemory;
}

/** How a GuestMemory made of SharedArrayBuffer regions is handed to a worker thread. */
export interface SharedMemoryDescriptor {
  regions: SharedRegion[];
}

/** A region as `share()` describes it. TypeError when it is not backed by a SharedArrayBuffer. */
export function sharedRegion(r: MemoryRegion): SharedRegion {
  if (!(r.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError(`GuestMemory: region at ${r.base} is not a SharedArrayBuffer`);
  }
  const memory = wasmMemoryOf(r.buffer);
  return memory ? { base: r.base, buffer: r.buffer, memory } : { base: r.base, buffer: r.buffer };
}

function checkRange(addr: number, len: number): boolean {
  return (
    Number.isInteger(addr) &&
    Number.isInteger(len) &&
    addr >= 0 &&
    len >= 0 &&
    addr <= MAX_ADDR &&
    len <= MAX_ADDR - addr
  );
}

/**
 * Guest ("host") memory: non-overlapping regions backed by ArrayBuffer or SharedArrayBuffer,
 * addressed by numbers. `view(addr, len)` hands out a view (no copy) after bounds and overflow
 * checks; `translate` is the allocation-free form the hot paths use.
 */
export class GuestMemory implements AddressSpace {
  private readonly list: MemoryRegion[] = [];
  private last: MemoryRegion | undefined;
  private readonly added: ((region: MemoryRegion) => void)[] = [];
  private sharedWithThreads: boolean;

  /**
   * `shared`: the memory is reached by another thread or process from the start, as the memory
   * a vhost-user frontend hands over (mmap'd from its fd, not a SharedArrayBuffer, so `share()`
   * can never tell): both ring ends then use `Atomics` on its index words.
   */
  constructor(options: { shared?: boolean } = {}) {
    this.sharedWithThreads = options.shared === true;
  }

  /**
   * Whether the memory was handed to another thread (`share()`, or it was rebuilt there by
   * `fromShared`) or was made `shared`. Once true it stays true: the other thread may keep its view for good. Until
   * then the rings in it are touched by this thread alone, and their ends use plain reads and
   * writes of the index words (the kernel's weak barriers, taken one step further): the
   * `Atomics` calls cost about a fifth of a frame on the pktgen path.
   */
  get shared(): boolean {
    return this.sharedWithThreads;
  }

  /**
   * Calls `listener` with every region added from now on, before `addRegion` returns (so before
   * any address in it can be handed out): how a device in another thread learns that memory
   * grew. Returns the function that stops the calls.
   */
  onRegionAdded(listener: (region: MemoryRegion) => void): () => void {
    this.added.push(listener);
    return () => {
      const i = this.added.indexOf(listener);
      if (i >= 0) this.added.splice(i, 1);
    };
  }

  /**
   * Adds a region at `base` backed by `backing`: a buffer, or a byte count for a new shared one
   * (`sharedMemoryBuffer`: a wasm memory's, with byte ops, when the count is a whole number of
   * 64 KiB pages). RangeError when it overlaps another region or is misaligned.
   */
  addRegion(base: number, backing: number | ArrayBuffer | SharedArrayBuffer): MemoryRegion {
    const buffer = typeof backing === 'number' ? sharedMemoryBuffer(backing) : backing;
    const size = buffer.byteLength;
    if (!checkRange(base, size) || size === 0) {
      throw new RangeError(`GuestMemory: bad region ${base}+${size}`);
    }
    if (base % 4096 !== 0)
      throw new RangeError(`GuestMemory: region base ${base} is not page aligned`);
    for (const r of this.list) {
      if (base < r.base + r.size && r.base < base + size) {
        throw new RangeError(`GuestMemory: region ${base}+${size} overlaps ${r.base}+${r.size}`);
      }
    }
    const region: MemoryRegion = { base, size, buffer, u8: new Uint8Array(buffer) };
    this.list.push(region);
    this.list.sort((a, b) => a.base - b.base);
    for (const listener of this.added) listener(region);
    return region;
  }

  /** The regions, by ascending base. */
  get regions(): readonly MemoryRegion[] {
    return this.list;
  }

  /** The region holding all of `[addr, addr + len)`, or undefined. */
  regionOf(addr: number, len: number): MemoryRegion | undefined {
    const last = this.last;
    if (
      last !== undefined &&
      addr >= last.base &&
      addr + len <= last.base + last.size &&
      len >= 0
    ) {
      return last;
    }
    if (!checkRange(addr, len)) return undefined;
    for (const r of this.list) {
      if (addr >= r.base && addr + len <= r.base + r.size) {
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  translate(addr: number, len: number, out: Translation): boolean {
    const r = this.regionOf(addr, len);
    if (r === undefined) return false;
    // Stored only when it changes (hardly ever: the hot paths keep their `out`): a store of an
    // object costs a write barrier, about ten instructions, and a compare three.
    if (out.u8 !== r.u8) out.u8 = r.u8;
    out.offset = addr - r.base;
    return true;
  }

  /** A view of `[addr, addr + len)` (no copy). RangeError when it is not inside one region. */
  view(addr: number, len: number): Uint8Array {
    const r = this.regionOf(addr, len);
    if (r === undefined) throw new RangeError(`GuestMemory: ${addr}+${len} is not mapped`);
    return r.u8.subarray(addr - r.base, addr - r.base + len);
  }

  /** Copies bytes out of guest memory into a new array. */
  read(addr: number, len: number): Uint8Array {
    return this.view(addr, len).slice();
  }

  /** Copies bytes into guest memory. */
  write(addr: number, bytes: Uint8Array): void {
    this.view(addr, bytes.length).set(bytes);
  }

  /**
   * Describes the SharedArrayBuffer regions for a worker thread (ArrayBuffer regions cannot be
   * shared), and marks the memory `shared`: the way to hand it to another thread (regions
   * added later reach that thread through `onRegionAdded`).
   */
  share(): SharedMemoryDescriptor {
    const regions = this.list.map(sharedRegion);
    this.sharedWithThreads = true;
    return { regions };
  }

  /** Rebuilds, in a worker, the memory another thread shared. */
  static fromShared(desc: SharedMemoryDescriptor): GuestMemory {
    const mem = new GuestMemory({ shared: true });
    mem.addShared(desc);
    return mem;
  }

  /**
   * Adds the regions of `desc` not here yet (by base), as another thread shared them; a region
   * with a wasm memory gets its byte ops in this thread too.
   */
  addShared(desc: SharedMemoryDescriptor): void {
    for (const r of desc.regions) {
      if (this.list.some((m) => m.base === r.base)) continue;
      const adopted = r.memory ? adoptWasmMemory(r.memory) : null;
      this.addRegion(r.base, adopted ?? r.buffer);
    }
  }
}

/**
 * A device's IOVA view of guest memory: device address `iova` is guest address `iova - offset`
 * within `[iovaBase, iovaBase + size)`. A vendor VF uses it with the matching DMA mapping.
 */
export class OffsetAddressSpace implements AddressSpace {
  constructor(
    private readonly memory: GuestMemory,
    readonly iovaBase: number,
    readonly size: number,
    readonly offset: number,
  ) {}

  get shared(): boolean {
    return this.memory.shared;
  }

  translate(addr: number, len: number, out: Translation): boolean {
    if (!(addr >= this.iovaBase && len >= 0 && addr + len <= this.iovaBase + this.size))
      return false;
    return this.memory.translate(addr - this.offset, len, out);
  }
}

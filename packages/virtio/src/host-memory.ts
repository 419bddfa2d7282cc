import {
  DmaAllocator,
  type DmaMapOps,
  directMap,
  directUnmap,
  GuestMemory,
  type MemoryRegion,
  sharedMemoryBuffer,
} from '@mdev/virtio-ring';

/** Options of a HostRam. */
export interface HostRamOptions {
  /** Address of the first region (page aligned). */
  base?: number;
  /** Bytes of each region added when an allocation does not fit (rounded up to pages). */
  regionSize?: number;
  /** Upper bound on the total bytes of all regions; allocations beyond it fail (ENOMEM). */
  limit?: number;
  /**
   * Makes the buffer of each new region (`size` bytes, whole pages): memory another process maps
   * too, such as a memfd a vhost-user backend gets with SET_MEM_TABLE. By default a shared wasm
   * memory (`sharedMemoryBuffer`).
   */
  backing?: (size: number) => ArrayBuffer | SharedArrayBuffer;
  /**
   * The memory is reached by another thread or process from the start (a `backing` of mmap'd
   * memory, which `GuestMemory.share()` cannot see): the rings in it use `Atomics`.
   */
  shared?: boolean;
}

const PAGE_SIZE = 4096;
const DEFAULT_BASE = 0x10_0000;
const DEFAULT_REGION = 16 << 20;
const DEFAULT_LIMIT = 1 << 30;

function pageAlign(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * The host's system RAM as drivers see it (the kernel's kmalloc/DMA-able memory): a GuestMemory
 * of SharedArrayBuffer regions, so a device in a worker thread can reach the same bytes, with a
 * first-fit allocator over it. It grows by adding regions when an allocation does not fit; a
 * region is created on the first allocation, never at import.
 *
 * Regions of whole 64 KiB pages (the default size is) are wasm memories', so copies and compares
 * of buffers in them can use their byte ops (@mdev/virtio-ring `byteOpsOf`).
 *
 * `dma` is the identity mapping (device address = CPU address), what a device sees without
 * VIRTIO_F_ACCESS_PLATFORM; a device with its own IOVA view installs `Device.dmaOps`.
 */
export class HostRam {
  readonly memory: GuestMemory;
  readonly dma: DmaMapOps;
  private readonly allocators: DmaAllocator[] = [];
  private nextBase: number;
  private readonly regionSize: number;
  private readonly limit: number;
  private total = 0;
  private readonly backing: (size: number) => ArrayBuffer | SharedArrayBuffer;

  constructor(options: HostRamOptions = {}) {
    this.memory = new GuestMemory({ shared: options.shared === true });
    this.backing = options.backing ?? sharedMemoryBuffer;
    this.nextBase = options.base ?? DEFAULT_BASE;
    if (this.nextBase % PAGE_SIZE !== 0) throw new RangeError('HostRam: base must be page aligned');
    this.regionSize = pageAlign(options.regionSize ?? DEFAULT_REGION);
    this.limit = options.limit ?? DEFAULT_LIMIT;
    this.dma = {
      alloc: (size, align) => {
        const cpuAddr = this.alloc(size, align);
        return cpuAddr === null ? null : { cpuAddr, dmaAddr: cpuAddr };
      },
      free: (cpuAddr) => this.free(cpuAddr),
      map: directMap,
      unmap: directUnmap,
    };
  }

  /** Adds a region of at least `bytes` (one region size by default). RangeError past the limit. */
  grow(bytes = this.regionSize): MemoryRegion {
    const size = pageAlign(Math.max(bytes, this.regionSize));
    if (this.total + size > this.limit) {
      throw new RangeError(
        `HostRam: growing by ${size} would pass the limit of ${this.limit} bytes`,
      );
    }
    const buffer = this.backing(size);
    if (buffer.byteLength !== size) {
      throw new RangeError(
        `HostRam: a region of ${size} bytes came back with ${buffer.byteLength}`,
      );
    }
    const region = this.memory.addRegion(this.nextBase, buffer);
    // Leave a guard page between regions so a range never spans two of them by accident.
    this.nextBase += size + PAGE_SIZE;
    this.total += size;
    this.allocators.push(new DmaAllocator(this.memory, region.base));
    return region;
  }

  /**
   * Allocates `size` zeroed bytes aligned to `align` (a power of two) and returns their address,
   * adding a region when none has room; null when the limit is reached (the kernel's ENOMEM).
   */
  alloc(size: number, align = 16): number | null {
    for (const a of this.allocators) {
      const addr = a.alloc(size, align);
      if (addr !== null) return addr;
    }
    if (this.total + pageAlign(Math.max(size + align, this.regionSize)) > this.limit) return null;
    const region = this.grow(size + align);
    return this.allocators[this.allocators.length - 1]!.alloc(size, align) ?? regionFail(region);
  }

  /** Frees a block returned by `alloc`. RangeError for an address that is not a live block. */
  free(addr: number): void {
    for (const a of this.allocators) {
      if (addr >= a.region.base && addr < a.region.base + a.region.size) {
        a.release(addr);
        return;
      }
    }
    throw new RangeError(`HostRam: ${addr} is not in host memory`);
  }

  /** Bytes currently allocated. */
  get allocatedBytes(): number {
    let n = 0;
    for (const a of this.allocators) n += a.allocatedBytes;
    return n;
  }

  /** Bytes of all regions. */
  get totalBytes(): number {
    return this.total;
  }
}

function regionFail(region: MemoryRegion): never {
  throw new Error(`HostRam: a fresh region at ${region.base} did not fit its allocation`);
}

/** The system RAM every driver allocates from by default. */
export const hostRam = new HostRam();
/** The memory of `hostRam`: what devices translate the addresses they see through. */
export const hostMemory: GuestMemory = hostRam.memory;
/** The identity DMA ops over `hostRam` (no VIRTIO_F_ACCESS_PLATFORM). */
export const hostDma: DmaMapOps = hostRam.dma;

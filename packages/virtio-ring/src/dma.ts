import { alignUp } from './layout';
import type { GuestMemory, MemoryRegion } from './memory';

/** Direction of a streaming DMA mapping (enum dma_data_direction). */
export type DmaDirection = 'to-device' | 'from-device' | 'bidirectional';

/** Mirrors struct dma_map_ops (the same shape as @mdev/driver-core's DmaMapOps). */
export interface DmaMapOps {
  /** dma_alloc_coherent: zeroed memory; its CPU address and the address the device uses; null when out of memory. */
  alloc(size: number, align: number): { cpuAddr: number; dmaAddr: number } | null;
  /** dma_free_coherent. */
  free(cpuAddr: number, size: number, dmaAddr: number): void;
  /** dma_map_single: the device address of a CPU buffer. */
  map(cpuAddr: number, len: number, dir: DmaDirection): number;
  /** dma_unmap_single. */
  unmap(dmaAddr: number, len: number, dir: DmaDirection): void;
}

/** `map` of direct DMA (the kernel's dma-direct, no IOMMU, no bounce buffer): the CPU address. */
export function directMap(cpuAddr: number): number {
  return cpuAddr;
}

/** `unmap` of direct DMA: nothing to undo. */
export function directUnmap(): void {}

/**
 * Whether `ops` map by identity: their `map` and `unmap` are `directMap` and `directUnmap`. A ring
 * then skips both per buffer, as virtio_ring does when it does not use the DMA API. Ops that wrap
 * or replace either function are not direct, so their calls are never skipped.
 */
export function isDirectDma(ops: DmaMapOps): boolean {
  return ops.map === directMap && ops.unmap === directUnmap;
}

/**
 * A first-fit allocator over one guest memory region: aligned blocks that never overlap, freed
 * blocks coalesce with their neighbours. Allocations are zeroed.
 */
export class DmaAllocator {
  readonly region: MemoryRegion;
  /** Free ranges sorted by address: [start, end). */
  private free: { start: number; end: number }[];
  private readonly live = new Map<number, number>();

  constructor(memory: GuestMemory, base: number) {
    const region = memory.regions.find((r) => r.base === base);
    if (!region) throw new RangeError(`DmaAllocator: no region at ${base}`);
    this.region = region;
    this.free = [{ start: region.base, end: region.base + region.size }];
  }

  /** Allocates `size` bytes aligned to `align` (a power of two); null when no block fits. */
  alloc(size: number, align = 16): number | null {
    if (!Number.isInteger(size) || size <= 0 || align <= 0 || (align & (align - 1)) !== 0) {
      throw new RangeError(`DmaAllocator: bad request ${size} align ${align}`);
    }
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i]!;
      const start = alignUp(f.start, align);
      const end = start + size;
      if (end > f.end) continue;
      const pieces = [];
      if (start > f.start) pieces.push({ start: f.start, end: start });
      if (end < f.end) pieces.push({ start: end, end: f.end });
      this.free.splice(i, 1, ...pieces);
      this.live.set(start, size);
      this.region.u8.fill(0, start - this.region.base, end - this.region.base);
      return start;
    }
    return null;
  }

  /** Frees a block returned by `alloc`. RangeError for an address that is not a live block. */
  release(addr: number): void {
    const size = this.live.get(addr);
    if (size === undefined) throw new RangeError(`DmaAllocator: ${addr} is not allocated`);
    this.live.delete(addr);
    let range = { start: addr, end: addr + size };
    let i = this.free.findIndex((f) => f.start > addr);
    if (i < 0) i = this.free.length;
    const prev = this.free[i - 1];
    if (prev && prev.end === range.start) {
      range = { start: prev.start, end: range.end };
      this.free.splice(--i, 1);
    }
    const next = this.free[i];
    if (next && next.start === range.end) {
      range = { start: range.start, end: next.end };
      this.free.splice(i, 1);
    }
    this.free.splice(i, 0, range);
  }

  /** Bytes currently allocated. */
  get allocatedBytes(): number {
    let n = 0;
    for (const s of this.live.values()) n += s;
    return n;
  }
}

/**
 * DMA ops whose device addresses are CPU addresses plus `offset` (0 = identity, the mvnet
 * sample's "HVA as IOVA"; a vendor VF may present its own IOVA window).
 */
export function offsetDmaOps(allocator: DmaAllocator, offset = 0): DmaMapOps {
  return {
    alloc(size, align) {
      const cpuAddr = allocator.alloc(size, align);
      return cpuAddr === null ? null : { cpuAddr, dmaAddr: cpuAddr + offset };
    },
    free(cpuAddr) {
      allocator.release(cpuAddr);
    },
    map: offset === 0 ? directMap : (cpuAddr) => cpuAddr + offset,
    unmap: directUnmap,
  };
}

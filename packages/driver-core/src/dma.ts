/** Direction of a streaming DMA mapping (the kernel's enum dma_data_direction). */
export type DmaDirection = 'to-device' | 'from-device' | 'bidirectional';

/**
 * Mirrors struct dma_map_ops: how a device sees host memory. Set on `Device.dmaOps`; a driver that
 * allocates rings or maps buffers for the device goes through it (virtio-ring declares the same
 * shape, as it has no dependencies).
 */
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

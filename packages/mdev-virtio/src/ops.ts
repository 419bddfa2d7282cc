import type { MdevDevice } from '@mdev/mdev-core';

/**
 * The memory a map entry points into: its bytes (a MemoryRegion of @mdev/virtio-ring is one; so
 * is a vhost-user frontend's mapped region).
 */
export interface MdevVirtioMapRegion {
  readonly u8: Uint8Array;
  /**
   * How another thread reaches the same bytes, for a device whose datapath runs in a worker:
   * a file whose pages `[0, u8.buffer.byteLength)`, mapped shared (mmap(2) MAP_SHARED), are
   * `u8.buffer` (a vhost-user frontend's memory region is one). The fd stays open while the map
   * is in use; a worker maps it during `setMap` and may close its own mapping when the map is
   * replaced. A region whose `u8` is over a `SharedArrayBuffer` needs none: the buffer itself
   * can be posted.
   */
  readonly fd?: number;
}

/** Access bits of a mapping, as include/uapi/linux/vhost_types.h spells them. */
export const VHOST_ACCESS_RO = 0x1;
export const VHOST_ACCESS_WO = 0x2;
export const VHOST_ACCESS_RW = 0x3;

/**
 * The IOVA page size of a mapping: IOVAs and sizes are whole pages, as an IOMMU and the
 * regions of a vhost-user memory table have them.
 */
export const MDEV_VIRTIO_MAP_PAGE = 4096;

/** Most entries a map may have (vhost's max_iotlb_entries default, drivers/vhost/vhost.c). */
export const MDEV_VIRTIO_MAP_MAX = 2048;

/**
 * One range of a device's DMA map (an entry of struct vhost_iotlb): device addresses
 * `[iova, iova + size)` are the bytes `[offset, offset + size)` of `region`, with access `perm`
 * (VHOST_ACCESS_*). The region need not belong to the device's host memory: a vhost-user
 * frontend's memory is a region of its own.
 */
export interface MdevVirtioMapEntry {
  readonly iova: number;
  readonly size: number;
  readonly region: MdevVirtioMapRegion;
  readonly offset: number;
  readonly perm: number;
}

/**
 * Mirrors struct virtio_mdev_callback: the device calls `callback(private)` to signal the driver
 * (a virtqueue interrupt or a config change).
 */
export interface VirtioMdevCallback {
  callback: (priv: unknown) => void;
  private: unknown;
}

/**
 * Mirrors struct mdev_virtio_ops (V12 include/linux/mdev_virtio.h): what a vendor's parent
 * driver implements for each mdev on the mediated virtio bus. All ops are mandatory except
 * `getGeneration`. Features are 64-bit (`bigint`), status a byte.
 */
export interface MdevVirtioOps {
  // Virtqueue ops
  /** Set the device addresses of a queue's descriptor, driver and device areas. Throw (KernelError) to refuse. */
  setVqAddress(
    mdev: MdevDevice,
    idx: number,
    descArea: number,
    driverArea: number,
    deviceArea: number,
  ): void;
  /** Set the size of a queue. */
  setVqNum(mdev: MdevDevice, idx: number, num: number): void;
  /** Kick a queue (driver -> device notification). */
  kickVq(mdev: MdevDevice, idx: number): void;
  /** Set the interrupt callback of a queue (device -> driver notification); null clears it. */
  setVqCb(mdev: MdevDevice, idx: number, cb: VirtioMdevCallback | null): void;
  /** Set a queue ready (true) or not. */
  setVqReady(mdev: MdevDevice, idx: number, ready: boolean): void;
  /** Whether a queue is ready. */
  getVqReady(mdev: MdevDevice, idx: number): boolean;
  /**
   * Set a queue's state: its last_avail_idx (split ring), or for a packed ring (VIRTIO_F_RING_PACKED
   * negotiated) both halves of struct vdpa_vq_state_packed in one number, as
   * `mdevVirtioPackedVqState` encodes them. Throw (KernelError) to refuse.
   */
  setVqState(mdev: MdevDevice, idx: number, state: number): void;
  /** A queue's state, as `setVqState` takes it. */
  getVqState(mdev: MdevDevice, idx: number): number;
  // Device ops
  /** The alignment the device needs for queue areas. */
  getVqAlign(mdev: MdevDevice): number;
  /** The features the device offers. */
  getFeatures(mdev: MdevDevice): bigint;
  /** The features the driver accepted. Throw (KernelError) to refuse them. */
  setFeatures(mdev: MdevDevice, features: bigint): void;
  /** Set the config-change callback. */
  setConfigCb(mdev: MdevDevice, cb: VirtioMdevCallback | null): void;
  /** The largest queue size the device supports (0: no such queue). */
  getVqNumMax(mdev: MdevDevice): number;
  /** The virtio device id (0 is invalid: the transport refuses the device). */
  getDeviceId(mdev: MdevDevice): number;
  /** The vendor id. */
  getVendorId(mdev: MdevDevice): number;
  /** The device status byte. */
  getStatus(mdev: MdevDevice): number;
  /** Set the device status; 0 resets the device. */
  setStatus(mdev: MdevDevice, status: number): void;
  /** Read `buf.length` bytes of the device config space at `offset`. */
  getConfig(mdev: MdevDevice, offset: number, buf: Uint8Array): void;
  /** Write `buf` into the device config space at `offset`. */
  setConfig(mdev: MdevDevice, offset: number, buf: Uint8Array): void;
  /** The config generation (optional; 0 when absent). */
  getGeneration?(mdev: MdevDevice): number;
  /**
   * Replaces the device's DMA map (optional; the vDPA `set_map` of include/linux/vdpa.h, for
   * devices with their own translation): from now on every ring and buffer address the device
   * is given is an IOVA of `map`, and an address outside it is a ring fault. `null` gives the
   * device its own mapping back (the one of its `dmaOps`). Called through `mdevVirtioSetMap`,
   * which has checked the entries: sorted by IOVA, page aligned, non-empty, not overlapping.
   * Throw (KernelError) to refuse, e.g. EBUSY while a queue is ready.
   *
   * The whole table at once rather than `dma_map`/`dma_unmap` range by range: a vhost-user
   * frontend hands its memory as one table (SET_MEM_TABLE), and a table replaced in one call
   * can never be seen half updated by the datapath.
   */
  setMap?(mdev: MdevDevice, map: readonly MdevVirtioMapEntry[] | null): void;
}

/** The names of the mandatory ops, to check a vendor's table. */
export const MDEV_VIRTIO_MANDATORY_OPS = [
  'setVqAddress',
  'setVqNum',
  'kickVq',
  'setVqCb',
  'setVqReady',
  'getVqReady',
  'setVqState',
  'getVqState',
  'getVqAlign',
  'getFeatures',
  'setFeatures',
  'setConfigCb',
  'getVqNumMax',
  'getDeviceId',
  'getVendorId',
  'getStatus',
  'setStatus',
  'getConfig',
  'setConfig',
] as const satisfies readonly (keyof MdevVirtioOps)[];

/**
 * A packed ring's vq state (struct vdpa_vq_state_packed, include/linux/vdpa.h): where the device
 * reads the next available descriptor and writes the next used one, each with its wrap counter.
 */
export interface MdevVirtioVqStatePacked {
  lastAvailIdx: number;
  lastAvailCounter: number;
  lastUsedIdx: number;
  lastUsedCounter: number;
}

/**
 * The number `setVqState`/`getVqState` carry for a packed ring: bits 0-14 the avail index, bit 15
 * its wrap counter, bits 16-30 the used index, bit 31 its wrap counter (how vhost's
 * VHOST_GET_VRING_BASE and vhost-user's GET_VRING_BASE encode a packed ring's base).
 */
export function mdevVirtioPackedVqState(s: MdevVirtioVqStatePacked): number {
  const avail = (s.lastAvailIdx & 0x7fff) | ((s.lastAvailCounter & 1) << 15);
  const used = (s.lastUsedIdx & 0x7fff) | ((s.lastUsedCounter & 1) << 15);
  return (avail | (used << 16)) >>> 0;
}

/**
 * The halves of a packed ring's vq state number. A number of 16 bits (DPDK's vhost gives the avail
 * half only) stands for both: a stopped ring has used every descriptor it took.
 */
export function mdevVirtioPackedVqStateOf(state: number): MdevVirtioVqStatePacked {
  const avail = state & 0xffff;
  const used = state > 0xffff ? (state >>> 16) & 0xffff : avail;
  return {
    lastAvailIdx: avail & 0x7fff,
    lastAvailCounter: avail >>> 15,
    lastUsedIdx: used & 0x7fff,
    lastUsedCounter: used >>> 15,
  };
}

import type { MdevDevice } from '@mdev/mdev-core';

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
  /** Set a queue's state: its last_avail_idx. Throw (KernelError) to refuse. */
  setVqState(mdev: MdevDevice, idx: number, state: number): void;
  /** A queue's state: its last_avail_idx. */
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

import type { VirtqueueLike } from '@mdev/virtio-ring';
import type { VirtioDevice } from './virtio';

/** A virtqueue callback: the driver's interrupt handler for one queue (vq_callback_t). */
export type VqCallback<T = unknown> = (vq: VirtqueueLike<T>) => void;

/**
 * Mirrors struct virtio_config_ops: what a transport (virtio-mdev, a test double, ...) provides
 * so the virtio core and drivers can drive a device. Feature sets are bigint; status is a byte.
 * Failures are thrown as KernelError with the kernel's errno.
 */
export interface VirtioConfigOps {
  /** Reads `buf.length` bytes of device config at `offset` into `buf` (config->get). */
  get(vdev: VirtioDevice, offset: number, buf: Uint8Array): void;
  /** Writes `buf` into device config at `offset` (config->set). */
  set(vdev: VirtioDevice, offset: number, buf: Uint8Array): void;
  /** The config generation counter; 0 when the device has none (config->generation). */
  generation(vdev: VirtioDevice): number;
  /** The device status byte (config->get_status). */
  getStatus(vdev: VirtioDevice): number;
  /** Writes the device status byte; never 0 (config->set_status). */
  setStatus(vdev: VirtioDevice, status: number): void;
  /** Resets the device; after it the status reads 0 (config->reset). */
  reset(vdev: VirtioDevice): void;
  /**
   * Creates one virtqueue per non-null name, in order (a null name gives a null queue and does
   * not consume a queue index), with the matching callback (config->find_vqs). On failure the
   * queues already created are deleted and the KernelError is thrown.
   */
  findVqs<T = unknown>(
    vdev: VirtioDevice,
    names: readonly (string | null)[],
    callbacks: readonly (VqCallback<T> | null)[],
    ctx?: readonly boolean[],
  ): (VirtqueueLike<T> | null)[];
  /** Deletes every virtqueue of the device (config->del_vqs). */
  delVqs(vdev: VirtioDevice): void;
  /** The features the device offers (config->get_features). */
  getFeatures(vdev: VirtioDevice): bigint;
  /** Gives the device `vdev.features`, the negotiated set; throws when it refuses (config->finalize_features). */
  finalizeFeatures(vdev: VirtioDevice): void;
  /** The name of the transport-level device, e.g. an mdev UUID (config->bus_name). */
  busName(vdev: VirtioDevice): string;
}

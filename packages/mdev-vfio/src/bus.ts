import { type Bus, Bus as BusClass, type Device, KernelError } from '@mdev/driver-core';
import {
  MdevDevice,
  mdevFromDev,
  mdevProbe,
  mdevRegisterBus,
  mdevRemove,
  mdevUnregisterBus,
} from '@mdev/mdev-core';

/**
 * Mirrors struct vm_area_struct as a VFIO mmap sees it: the file offset in pages (`vm_pgoff`),
 * the length (`vm_end - vm_start`) and whether the mapping is shared (`VM_SHARED`).
 */
export interface VfioVma {
  pgoff: number;
  length: number;
  shared: boolean;
}

/**
 * Mirrors struct mdev_vfio_ops (V12 include/linux/mdev_vfio.h): the VFIO callbacks of an mdev,
 * set by the parent in `create` with mdevVfioSetOps(). Every op is optional; vfio_mdev answers
 * EINVAL for a missing one. Errors are thrown as KernelError.
 */
export interface MdevVfioOps {
  /** The user opened the device. */
  open?(mdev: MdevDevice): void;
  /** The user closed it. */
  release?(mdev: MdevDevice): void;
  /** read(2) of `buf.length` bytes at file offset `pos`; returns the bytes read. */
  read?(mdev: MdevDevice, buf: Uint8Array, pos: number): number;
  /** write(2) of `buf` at file offset `pos`; returns the bytes written. */
  write?(mdev: MdevDevice, buf: Uint8Array, pos: number): number;
  /**
   * ioctl(2): `arg` is the user's buffer for the request's struct (null for requests without
   * one, such as VFIO_DEVICE_RESET); returns 0 or a positive value (an fd for GET_GFX_DMABUF).
   */
  ioctl?(mdev: MdevDevice, cmd: number, arg: Uint8Array | null): number;
  /** mmap(2): returns the shared view of `vma.length` bytes the user gets. */
  mmap?(mdev: MdevDevice, vma: VfioVma): Uint8Array;
  /**
   * Mirrors vfio_device_ops.request: the device is being removed while the user holds it open,
   * and the driver asks the user to let go (mtty and vfio-pci signal their REQ eventfd).
   * `count` is how often the user was asked before. Called while the handles still work, just
   * before they are revoked.
   */
  request?(mdev: MdevDevice, count: number): void;
}

/**
 * Mirrors struct mdev_vfio_device: the mdev with the VFIO ops its parent set in `create`
 * (structure composition, V12 patch 2).
 */
export class MdevVfioDevice extends MdevDevice {
  ops: MdevVfioOps | null = null;
}

/** Mirrors mdev_vfio_bus_type: bus `mdev`, no match (every driver matches every device). */
export const mdevVfioBus: Bus = new BusClass({
  name: 'mdev',
  probe: mdevProbe,
  remove: mdevRemove,
});

/** Registers the bus once (module init of mdev_vfio.ko). */
export function mdevVfioBusInit(): void {
  if (!mdevVfioBus.isRegistered) mdevRegisterBus(mdevVfioBus);
}

/** Unregisters the bus (module exit). */
export function mdevVfioBusExit(): void {
  if (mdevVfioBus.isRegistered) mdevUnregisterBus(mdevVfioBus);
}

function asVfio(mdev: MdevDevice): MdevVfioDevice {
  if (!(mdev instanceof MdevVfioDevice)) {
    throw new TypeError(`mdev_vfio: ${mdev.uuid} is not on the mdev bus`);
  }
  return mdev;
}

/** Mirrors mdev_vfio_set_ops(): called by the parent at the end of a successful `create`. */
export function mdevVfioSetOps(mdev: MdevDevice, ops: MdevVfioOps): void {
  if (!ops || typeof ops !== 'object') throw new TypeError('mdev_vfio: ops must be an object');
  asVfio(mdev).ops = ops;
}

/**
 * Mirrors mdev_vfio_get_ops(). Where the kernel would dereference NULL for a parent that never
 * set its ops, this throws ENODEV.
 */
export function mdevVfioGetOps(mdev: MdevDevice): MdevVfioOps {
  const ops = asVfio(mdev).ops;
  if (!ops) throw new KernelError('ENODEV', `mdev_vfio: ${mdev.uuid} has no VFIO ops`);
  return ops;
}

/** Mirrors vfio_mdev_from_dev(): the mdev when `dev` is one on the VFIO mdev bus, else null. */
export function vfioMdevFromDev(dev: Device): MdevVfioDevice | null {
  return mdevFromDev(dev, mdevVfioBus) as MdevVfioDevice | null;
}

import { type Device, type Driver, KernelError } from '@mdev/driver-core';
import {
  type MdevDevice,
  type MdevDeviceInit,
  type MdevParent,
  type MdevParentOps,
  mdevDevices,
  mdevRegisterDevice,
  mdevRegisterDriver,
  mdevUnregisterDevice,
} from '@mdev/mdev-core';
import {
  MdevVfioDevice,
  type MdevVfioOps,
  mdevVfioBus,
  mdevVfioBusExit,
  mdevVfioBusInit,
  mdevVfioGetOps,
} from './bus';
import { DmaBuf, fdget, VfioFile } from './files';
import {
  encodeIrqSet,
  type VfioDeviceInfo,
  type VfioGfxPlaneInfo,
  type VfioInfoCapFound,
  type VfioIrqInfo,
  type VfioIrqSetRequest,
  type VfioRegionInfo,
  vfioDeviceInfo,
  vfioGfxPlaneInfo,
  vfioInfoCaps,
  vfioIrqInfo,
  vfioRegionInfo,
} from './structs';
import {
  PAGE_SIZE,
  VFIO_DEVICE_GET_GFX_DMABUF,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_QUERY_GFX_PLANE,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_REGION_INFO_FLAG_CAPS,
  vfioPciIndexToOffset,
} from './uapi';

/** The name of the VFIO driver of mediated devices. */
export const VFIO_MDEV_DRIVER_NAME = 'vfio_mdev';

/** The devices vfio_mdev added to VFIO (vfio_add_group_dev), with their open handles. */
const groupDevs = new Map<MdevVfioDevice, Set<VfioDevice>>();
let vfioMdevDriver: Driver | null = null;

/** Mirrors vfio_mdev_probe(): vfio_add_group_dev() makes the mdev openable through VFIO. */
function vfioMdevProbe(mdev: MdevDevice): void {
  if (!(mdev instanceof MdevVfioDevice)) {
    throw new KernelError('EINVAL', `vfio_mdev: ${mdev.uuid} is not a VFIO mdev`);
  }
  groupDevs.set(mdev, new Set());
}

/**
 * Mirrors vfio_mdev_remove() (vfio_del_group_dev()). The kernel blocks here until the user
 * closes the device, calling the driver's `request` op to ask for it; a library cannot block,
 * so `request` is called once, while the handles still work (the REQ eventfd is still wired),
 * and then the open handles are revoked: each gets its `release` op once and every later call
 * on it fails with ENODEV.
 */
function vfioMdevRemove(mdev: MdevDevice): void {
  const vdev = mdev as MdevVfioDevice;
  const handles = groupDevs.get(vdev);
  try {
    if (handles?.size) vdev.ops?.request?.(vdev, 0);
  } finally {
    groupDevs.delete(vdev);
    for (const h of handles ?? []) revokeHandle(h);
  }
}

/**
 * Loads the VFIO mediated bus and its driver: registers bus `mdev` and the `vfio_mdev` driver
 * that binds every device on it (mdev_vfio.ko with its softdep on vfio_mdev.ko). Idempotent.
 */
export function mdevVfioInit(): void {
  mdevVfioBusInit();
  // The bus may have been unregistered (and the driver with it) by mdevVfioBusExit().
  if (!vfioMdevDriver || !mdevVfioBus.drivers().includes(vfioMdevDriver)) {
    vfioMdevDriver = mdevRegisterDriver(
      { name: VFIO_MDEV_DRIVER_NAME, probe: vfioMdevProbe, remove: vfioMdevRemove },
      mdevVfioBus,
    );
  }
}

/**
 * Unloads vfio_mdev and the bus. EBUSY while a parent is registered on the bus or an mdev is on
 * it, as mdev_vfio.ko cannot be unloaded while a vendor module uses it: unregister the parents
 * (which removes their mdevs through their own remove) first. Tearing the bus down under live
 * mdevs would skip the vendor's remove and keep their UUIDs reserved for good.
 */
export function mdevVfioExit(): void {
  if (!mdevVfioBus.isRegistered) {
    vfioMdevDriver = null;
    return;
  }
  // mdevUnregisterBus() refuses a bus in use before touching anything; the bus takes vfio_mdev
  // with it.
  mdevVfioBusExit();
  vfioMdevDriver = null;
}

/** The registered vfio_mdev driver, or null before mdevVfioInit(). */
export function vfioMdevDriverOf(): Driver | null {
  return vfioMdevDriver;
}

/**
 * Mirrors mdev_vfio_register_device(): registers a parent whose mdevs are MdevVfioDevices on
 * bus `mdev`; loads the bus and vfio_mdev first.
 */
export function mdevVfioRegisterDevice(dev: Device, ops: MdevParentOps): MdevParent {
  mdevVfioInit();
  return mdevRegisterDevice(
    dev,
    ops,
    mdevVfioBus,
    (init: MdevDeviceInit) => new MdevVfioDevice(init),
  );
}

/** Mirrors mdev_vfio_unregister_device(): removes every mdev of the parent, then the parent. */
export function mdevVfioUnregisterDevice(dev: Device): void {
  mdevUnregisterDevice(dev);
}

/** The mdevs VFIO can open now (bound to vfio_mdev), in creation order. */
export function vfioMdevDevices(): MdevVfioDevice[] {
  return mdevDevices().filter(
    (m): m is MdevVfioDevice => m instanceof MdevVfioDevice && groupDevs.has(m),
  );
}

function findDevice(target: Device | string): MdevVfioDevice {
  if (typeof target === 'string') {
    const uuid = target.toLowerCase();
    const m = mdevDevices().find((d) => d.uuid === uuid);
    if (!m) throw new KernelError('ENODEV', `vfio: no mdev ${target}`);
    target = m;
  }
  if (!(target instanceof MdevVfioDevice) || !groupDevs.has(target)) {
    throw new KernelError(
      'ENODEV',
      `vfio: ${target.name} is not bound to ${VFIO_MDEV_DRIVER_NAME}`,
    );
  }
  return target;
}

/**
 * Mirrors VFIO_GROUP_GET_DEVICE_FD followed by vfio_mdev_open(): opens an mdev (by device or
 * UUID) bound to vfio_mdev. ENODEV when it is not bound; EINVAL when its parent gave no `open`
 * op; the op's own error otherwise.
 */
export function vfioDeviceOpen(target: Device | string): VfioDevice {
  const mdev = findDevice(target);
  const ops = vfioOpsOf(mdev);
  if (typeof ops.open !== 'function') {
    throw new KernelError('EINVAL', `vfio_mdev: ${mdev.uuid} has no open op`);
  }
  ops.open(mdev);
  const handle = newHandle(mdev, ops);
  groupDevs.get(mdev)!.add(handle);
  return handle;
}

function vfioOpsOf(mdev: MdevVfioDevice): MdevVfioOps {
  try {
    return mdevVfioGetOps(mdev);
  } catch {
    throw new KernelError('EINVAL', `vfio_mdev: ${mdev.uuid} has no VFIO ops`);
  }
}

/**
 * The most one read(2) or write(2) moves: the kernel's MAX_RW_COUNT (INT_MAX & PAGE_MASK). A
 * longer read is refused with EINVAL before a buffer is allocated for it.
 */
export const VFIO_MAX_RW_COUNT = 0x7fffffff & ~(PAGE_SIZE - 1);

function checkOffset(what: string, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new KernelError('EINVAL', `vfio ${what}: bad file offset ${offset}`);
  }
}

/**
 * A number the user puts in a __u32 field of an ioctl struct. C cannot pass anything else; here
 * a negative, fractional or too large number is EINVAL, as vfio-pci answers an index it has no
 * region or irq for, rather than a RangeError or a silently wrapped value.
 */
function checkU32(what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new KernelError('EINVAL', `vfio ${what}: ${value} is not a __u32`);
  }
  return value;
}

/** A value for an access of `width` bytes: an integer that fits, signed or unsigned. */
function checkWidth(what: string, width: 1 | 2 | 4, value: number): void {
  const bits = width * 8;
  if (!Number.isInteger(value) || value < -(2 ** (bits - 1)) || value >= 2 ** bits) {
    throw new KernelError('EINVAL', `vfio ${what}: ${value} does not fit in ${width} byte(s)`);
  }
}

/** The handle factory and revocation, for this module only (set by VfioDevice's static block). */
let newHandle: (mdev: MdevVfioDevice, ops: MdevVfioOps) => VfioDevice;
let revokeHandle: (handle: VfioDevice) => void;

/** The result of getRegionInfo(): the struct plus the capabilities found in its chain. */
export interface VfioRegionInfoResult extends VfioRegionInfo {
  caps: VfioInfoCapFound[];
}

/**
 * A VFIO device file as a user of /dev/vfio holds it: read/write at file offsets (region index
 * << 40 for the samples), ioctl by the request numbers of <linux/vfio.h> with byte-encoded
 * structs, mmap of shared views. Each call goes to the parent's MdevVfioOps through vfio_mdev
 * (EINVAL for a missing op). After close(), calls fail with EBADF; after the device was removed,
 * with ENODEV.
 */
export class VfioDevice extends VfioFile {
  readonly mdev: MdevVfioDevice;
  readonly #ops: MdevVfioOps;
  #revoked = false;

  static {
    newHandle = (mdev, ops) => new VfioDevice(mdev, ops);
    revokeHandle = (handle) => handle.#revoke();
  }

  /** Handles come from vfioDeviceOpen(). */
  private constructor(mdev: MdevVfioDevice, ops: MdevVfioOps) {
    super();
    this.mdev = mdev;
    this.#ops = ops;
  }

  /** The mdev's UUID. */
  get uuid(): string {
    return this.mdev.uuid;
  }

  private live(what: string): MdevVfioOps {
    if (this.closed) throw new KernelError('EBADF', `vfio ${what}: device file is closed`);
    if (this.#revoked) throw new KernelError('ENODEV', `vfio ${what}: ${this.uuid} was removed`);
    return this.#ops;
  }

  /** The device was removed while open: `release` once, and ENODEV from then on. */
  #revoke(): void {
    if (this.#revoked || this.closed) return;
    this.#revoked = true;
    this.#ops.release?.(this.mdev);
  }

  /** pread(2): reads `buf.length` bytes at `offset` into `buf`; returns the count. */
  pread(buf: Uint8Array, offset: number): number {
    const ops = this.live('read');
    checkOffset('read', offset);
    if (typeof ops.read !== 'function') throw new KernelError('EINVAL', 'vfio_mdev: no read op');
    return ops.read(this.mdev, buf, offset);
  }

  /**
   * Reads `length` bytes at `offset` (a copy, as read(2) makes one). EINVAL for a length that
   * is negative, not an integer or above VFIO_MAX_RW_COUNT; ENOMEM when the buffer cannot be
   * allocated.
   */
  read(offset: number, length: number): Uint8Array {
    if (!Number.isSafeInteger(length) || length < 0 || length > VFIO_MAX_RW_COUNT) {
      throw new KernelError('EINVAL', `vfio read: bad length ${length}`);
    }
    this.live('read');
    let buf: Uint8Array;
    try {
      buf = new Uint8Array(length);
    } catch (err) {
      throw new KernelError('ENOMEM', `vfio read: no buffer of ${length} bytes: ${err}`);
    }
    const n = this.pread(buf, offset);
    return buf.subarray(0, n);
  }

  /** pwrite(2): writes `data` at `offset`; returns the count. */
  write(offset: number, data: Uint8Array | readonly number[]): number {
    const ops = this.live('write');
    checkOffset('write', offset);
    if (typeof ops.write !== 'function') throw new KernelError('EINVAL', 'vfio_mdev: no write op');
    if (!(data instanceof Uint8Array)) for (const b of data) checkWidth('write', 1, b);
    const buf = data instanceof Uint8Array ? data : Uint8Array.from(data);
    return ops.write(this.mdev, buf, offset);
  }

  private readWidth(offset: number, width: 1 | 2 | 4): number {
    const buf = this.read(offset, width);
    if (buf.length !== width) throw new KernelError('EIO', `vfio read: short read at ${offset}`);
    const dv = new DataView(buf.buffer, buf.byteOffset, width);
    return width === 1
      ? dv.getUint8(0)
      : width === 2
        ? dv.getUint16(0, true)
        : dv.getUint32(0, true);
  }

  private writeWidth(offset: number, width: 1 | 2 | 4, value: number): void {
    checkWidth('write', width, value);
    const buf = new Uint8Array(width);
    const dv = new DataView(buf.buffer);
    if (width === 1) dv.setUint8(0, value);
    else if (width === 2) dv.setUint16(0, value, true);
    else dv.setUint32(0, value >>> 0, true);
    this.write(offset, buf);
  }

  /** One 1-byte read at `offset`. */
  readU8(offset: number): number {
    return this.readWidth(offset, 1);
  }
  /** One 2-byte little-endian read at `offset`. */
  readU16(offset: number): number {
    return this.readWidth(offset, 2);
  }
  /** One 4-byte little-endian read at `offset`. */
  readU32(offset: number): number {
    return this.readWidth(offset, 4);
  }
  /** One 1-byte write at `offset`. */
  writeU8(offset: number, value: number): void {
    this.writeWidth(offset, 1, value);
  }
  /** One 2-byte little-endian write at `offset`. */
  writeU16(offset: number, value: number): void {
    this.writeWidth(offset, 2, value);
  }
  /** One 4-byte little-endian write at `offset`. */
  writeU32(offset: number, value: number): void {
    this.writeWidth(offset, 4, value);
  }

  /**
   * ioctl(2) with a request number of <linux/vfio.h> and the user's buffer for its struct
   * (null when the request takes none). Returns the op's non-negative result.
   */
  ioctl(cmd: number, arg: Uint8Array | null = null): number {
    const ops = this.live('ioctl');
    // An unsigned int request, or its int32 spelling (-1 is 0xffffffff); anything else is EINVAL.
    if (!Number.isInteger(cmd) || cmd < -(2 ** 31) || cmd > 0xffff_ffff) {
      throw new KernelError('EINVAL', `vfio ioctl: ${cmd} is not a request number`);
    }
    if (typeof ops.ioctl !== 'function') throw new KernelError('EINVAL', 'vfio_mdev: no ioctl op');
    return ops.ioctl(this.mdev, cmd >>> 0, arg);
  }

  /**
   * mmap(2) of `length` bytes at file offset `offset` (page aligned): the shared view the
   * parent hands out, no copy. EINVAL for an unaligned offset or empty length.
   */
  mmap(offset: number, length: number, options: { shared?: boolean } = {}): Uint8Array {
    const ops = this.live('mmap');
    checkOffset('mmap', offset);
    if (offset % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `vfio mmap: offset ${offset} is not page aligned`);
    }
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw new KernelError('EINVAL', `vfio mmap: bad length ${length}`);
    }
    if (typeof ops.mmap !== 'function') throw new KernelError('EINVAL', 'vfio_mdev: no mmap op');
    const vma = { pgoff: offset / PAGE_SIZE, length, shared: options.shared ?? true };
    const v = ops.mmap(this.mdev, vma);
    if (!(v instanceof Uint8Array) || v.length !== length) {
      throw new KernelError('EINVAL', `vfio mmap: the device mapped a view of the wrong size`);
    }
    return v;
  }

  /** The file offset of region `index` in the samples' encoding (index << 40). */
  regionOffset(index: number): number {
    // index << 40 stays an exact number up to index 8191.
    if (checkU32('region offset', index) >= 2 ** 13) {
      throw new KernelError('EINVAL', `vfio region offset: index ${index} is beyond 2^53`);
    }
    return vfioPciIndexToOffset(index);
  }

  /** VFIO_DEVICE_GET_INFO. */
  getInfo(): VfioDeviceInfo {
    const buf = vfioDeviceInfo.encode({});
    this.ioctl(VFIO_DEVICE_GET_INFO, buf);
    return vfioDeviceInfo.decode(buf);
  }

  /**
   * VFIO_DEVICE_GET_REGION_INFO with its capability chain: when the reply says the chain needs
   * a larger argsz, asks again with that size, as a user does, and decodes the chain.
   */
  getRegionInfo(index: number): VfioRegionInfoResult {
    checkU32('GET_REGION_INFO index', index);
    let buf = vfioRegionInfo.encode({ index });
    this.ioctl(VFIO_DEVICE_GET_REGION_INFO, buf);
    let info = vfioRegionInfo.decode(buf);
    if (info.flags & VFIO_REGION_INFO_FLAG_CAPS && info.argsz > buf.length) {
      const argsz = info.argsz;
      buf = new Uint8Array(argsz);
      vfioRegionInfo.encode({ index, argsz }, buf);
      this.ioctl(VFIO_DEVICE_GET_REGION_INFO, buf);
      info = vfioRegionInfo.decode(buf);
    }
    const caps = info.capOffset ? vfioInfoCaps(buf, info.capOffset) : [];
    return { ...info, caps };
  }

  /** VFIO_DEVICE_GET_IRQ_INFO. */
  getIrqInfo(index: number): VfioIrqInfo {
    checkU32('GET_IRQ_INFO index', index);
    const buf = vfioIrqInfo.encode({ index });
    this.ioctl(VFIO_DEVICE_GET_IRQ_INFO, buf);
    return vfioIrqInfo.decode(buf);
  }

  /** VFIO_DEVICE_SET_IRQS with its data array (eventfds or bools). */
  setIrqs(req: VfioIrqSetRequest): void {
    checkU32('SET_IRQS flags', req.flags);
    checkU32('SET_IRQS index', req.index);
    checkU32('SET_IRQS start', req.start ?? 0);
    checkU32('SET_IRQS count', req.count ?? req.data?.length ?? 0);
    for (const d of req.data ?? []) {
      // An eventfd's number is an s32 (-1 de-assigns); a bool is true/false or 0/1.
      const n = typeof d === 'object' && d !== null ? d.fd : d;
      if (typeof n === 'boolean') continue;
      checkWidth('SET_IRQS data', 4, n);
      if (n > 0x7fff_ffff)
        throw new KernelError('EINVAL', `vfio SET_IRQS data: ${n} is not an s32`);
    }
    this.ioctl(VFIO_DEVICE_SET_IRQS, encodeIrqSet(req));
  }

  /** VFIO_DEVICE_RESET. */
  reset(): void {
    this.ioctl(VFIO_DEVICE_RESET, null);
  }

  /** VFIO_DEVICE_QUERY_GFX_PLANE with `flags` and a DRM plane type; returns the reply. */
  queryGfxPlane(flags: number, drmPlaneType: number): VfioGfxPlaneInfo {
    checkU32('QUERY_GFX_PLANE flags', flags);
    checkU32('QUERY_GFX_PLANE drm_plane_type', drmPlaneType);
    const buf = vfioGfxPlaneInfo.encode({ flags, drmPlaneType });
    this.ioctl(VFIO_DEVICE_QUERY_GFX_PLANE, buf);
    return vfioGfxPlaneInfo.decode(buf);
  }

  /** VFIO_DEVICE_GET_GFX_DMABUF: the dma-buf of a plane's `dmabufId`. */
  getGfxDmabuf(dmabufId: number): DmaBuf {
    const arg = new Uint8Array(4);
    new DataView(arg.buffer).setUint32(0, checkU32('GET_GFX_DMABUF id', dmabufId), true);
    const fd = this.ioctl(VFIO_DEVICE_GET_GFX_DMABUF, arg);
    const f = fdget(fd);
    if (!(f instanceof DmaBuf)) throw new KernelError('EINVAL', `fd ${fd} is not a dma-buf`);
    return f;
  }

  /** close(2): calls the `release` op (vfio_mdev_release) unless the device was removed. */
  protected override onClose(): void {
    groupDevs.get(this.mdev)?.delete(this);
    if (!this.#revoked) this.#ops.release?.(this.mdev);
  }
}

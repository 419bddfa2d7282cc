import {
  type Bus,
  Bus as BusClass,
  type Device,
  type Driver,
  Driver as DriverClass,
  KernelError,
} from '@mdev/driver-core';
import {
  MdevDevice,
  type MdevDeviceInit,
  type MdevParent,
  type MdevParentOps,
  mdevFromDev,
  mdevProbe,
  mdevRegisterBus,
  mdevRegisterDevice,
  mdevRemove,
  mdevUnregisterBus,
  mdevUnregisterDevice,
  mdevUnregisterDriver,
} from '@mdev/mdev-core';
import {
  MDEV_VIRTIO_MANDATORY_OPS,
  MDEV_VIRTIO_MAP_MAX,
  MDEV_VIRTIO_MAP_PAGE,
  type MdevVirtioMapEntry,
  type MdevVirtioOps,
  VHOST_ACCESS_RW,
} from './ops';

/** Mirrors MDEV_VIRTIO_CLASS_ID_VIRTIO: an mdev driven by the kernel's virtio drivers. */
export const MDEV_VIRTIO_CLASS_ID_VIRTIO = 1;

/**
 * Mirrors VIRTIO_MDEV_DEVICE_API_STRING (include/linux/mdev_virtio.h of the series): what the
 * `device_api` attribute of a supported type on this bus reads.
 */
export const VIRTIO_MDEV_DEVICE_API_STRING = 'virtio-mdev';

/**
 * Mirrors struct mdev_virtio_class_id: one entry of a driver's id table. As in the kernel's id
 * tables, an entry with id 0 ends the table: entries after it are not read.
 */
export interface MdevVirtioClassId {
  id: number;
}

/**
 * Mirrors struct mdev_virtio_device: the mdev with the virtio ops and class id its parent set in
 * `create` (structure composition, patch 2).
 */
export class MdevVirtioDevice extends MdevDevice {
  ops: MdevVirtioOps | null = null;
  classId = 0;
}

const driverIds = new WeakMap<Driver, readonly MdevVirtioClassId[]>();
/** Devices already warned about for having no class id: one warning each, not one per match. */
const warnedUnclassed = new WeakSet<Device>();

function classIdOf(dev: Device): number {
  return dev instanceof MdevVirtioDevice ? dev.classId : 0;
}

/** Mirrors mdev_virtio_bus_type: bus `mdev_virtio`, matching on the class id. */
export const mdevVirtioBus: Bus = new BusClass({
  name: 'mdev_virtio',
  driverOverride: true,
  probe: mdevProbe,
  remove: mdevRemove,
  match(dev, drv) {
    const ids = driverIds.get(drv);
    if (!ids) return false;
    const classId = classIdOf(dev);
    if (classId === 0) {
      if (!warnedUnclassed.has(dev)) {
        warnedUnclassed.add(dev);
        process.emitWarning(`mdev_virtio: ${dev.name} has no class id; it stays unbound`);
      }
      return false;
    }
    return ids.some((e) => e.id === classId);
  },
  uevent(dev, env) {
    env.MODALIAS = `mdev_virtio:c${classIdOf(dev).toString(16).toUpperCase().padStart(2, '0')}`;
  },
});

/** Registers the bus once (the module init of the kernel's mdev_virtio.ko). */
export function mdevVirtioInit(): void {
  if (!mdevVirtioBus.isRegistered) mdevRegisterBus(mdevVirtioBus);
}

/**
 * Unregisters the bus (module exit). EBUSY while a parent is registered on it or an mdev or a
 * driver is still on it: as a module cannot unload while used, its parents (and with them their
 * mdevs, through mdev-core, so that each parent's remove runs and each UUID is released) and
 * its drivers must go first.
 */
export function mdevVirtioExit(): void {
  if (!mdevVirtioBus.isRegistered) return;
  const devices = mdevVirtioBus.devices().length;
  const drivers = mdevVirtioBus.drivers().length;
  if (devices > 0 || drivers > 0) {
    throw new KernelError(
      'EBUSY',
      `mdev_virtio: ${devices} device(s) and ${drivers} driver(s) still on the bus`,
    );
  }
  mdevUnregisterBus(mdevVirtioBus);
}

/** Mirrors mdev_virtio_register_device(): registers a parent whose mdevs are MdevVirtioDevices. */
export function mdevVirtioRegisterDevice(dev: Device, ops: MdevParentOps): MdevParent {
  mdevVirtioInit();
  return mdevRegisterDevice(
    dev,
    ops,
    mdevVirtioBus,
    (init: MdevDeviceInit) => new MdevVirtioDevice(init),
  );
}

/** Mirrors mdev_virtio_unregister_device(). */
export function mdevVirtioUnregisterDevice(dev: Device): void {
  mdevUnregisterDevice(dev);
}

function asVirtio(mdev: MdevDevice): MdevVirtioDevice {
  if (!(mdev instanceof MdevVirtioDevice)) {
    throw new TypeError(`mdev_virtio: ${mdev.uuid} is not on the mdev_virtio bus`);
  }
  return mdev;
}

/** Mirrors mdev_virtio_set_ops(): called in the parent's `create`. EINVAL for an incomplete table. */
export function mdevVirtioSetOps(mdev: MdevDevice, ops: MdevVirtioOps): void {
  const missing = MDEV_VIRTIO_MANDATORY_OPS.filter((name) => typeof ops[name] !== 'function');
  if (missing.length) {
    throw new KernelError('EINVAL', `mdev_virtio: ops table lacks ${missing.join(', ')}`);
  }
  asVirtio(mdev).ops = ops;
}

function checkMapEntry(e: unknown, i: number): MdevVirtioMapEntry {
  const bad = (why: string) => new KernelError('EINVAL', `mdev_virtio: map entry ${i} ${why}`);
  if (typeof e !== 'object' || e === null) throw bad('is not an object');
  const { iova, size, region, offset, perm } = e as Record<string, unknown>;
  const u8 = (region as { u8?: unknown } | null | undefined)?.u8;
  if (!(u8 instanceof Uint8Array)) throw bad('has no region bytes');
  const fd = (region as { fd?: unknown }).fd;
  if (fd !== undefined && !(Number.isInteger(fd) && (fd as number) >= 0)) {
    throw bad(`has a bad region fd ${String(fd)}`);
  }
  if (typeof iova !== 'number' || !Number.isSafeInteger(iova) || iova < 0) {
    throw bad(`has iova ${String(iova)}, not an address`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) {
    throw bad(`has size ${String(size)}`);
  }
  if (iova % MDEV_VIRTIO_MAP_PAGE !== 0 || size % MDEV_VIRTIO_MAP_PAGE !== 0) {
    throw bad(`${iova}+${size} is not page aligned`);
  }
  // The last byte must stay exact: vhost_vdpa refuses `iova + size - 1 < iova` the same way.
  if (!Number.isSafeInteger(iova + size)) throw bad(`${iova}+${size} wraps`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw bad(`has offset ${String(offset)}`);
  }
  if (offset + size > u8.length) throw bad(`${offset}+${size} is outside its region`);
  if (typeof perm !== 'number' || !Number.isInteger(perm) || perm < 1 || perm > VHOST_ACCESS_RW) {
    throw bad(`has access ${String(perm)}, not RO, WO or RW`);
  }
  return Object.freeze({
    iova,
    size,
    region: region as MdevVirtioMapEntry['region'],
    offset,
    perm,
  });
}

/**
 * Sets a device's DMA map (`null` clears it) through its optional `setMap` op, as vhost_vdpa
 * hands an iotlb to a device's set_map (drivers/vhost/vdpa.c). EOPNOTSUPP for a device without
 * the op; EINVAL for a map that is not an array, or with an entry of zero size, not page
 * aligned, wrapping, outside its region, with a bad access, or overlapping another; ENOMEM for
 * more than MDEV_VIRTIO_MAP_MAX entries. The device gets frozen copies sorted by IOVA, so the
 * caller changing its table afterwards changes nothing.
 */
export function mdevVirtioSetMap(
  mdev: MdevDevice,
  map: readonly MdevVirtioMapEntry[] | null,
): void {
  const ops = mdevVirtioGetOps(mdev);
  if (typeof ops.setMap !== 'function') {
    throw new KernelError('EOPNOTSUPP', `mdev_virtio: ${mdev.uuid} takes no DMA map`);
  }
  if (map === null) {
    ops.setMap(mdev, null);
    return;
  }
  if (!Array.isArray(map)) throw new KernelError('EINVAL', 'mdev_virtio: the map is not a list');
  if (map.length > MDEV_VIRTIO_MAP_MAX) {
    throw new KernelError(
      'ENOMEM',
      `mdev_virtio: ${map.length} map entries, most ${MDEV_VIRTIO_MAP_MAX}`,
    );
  }
  const entries = map.map(checkMapEntry).sort((a, b) => a.iova - b.iova);
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]!;
    const e = entries[i]!;
    if (e.iova < prev.iova + prev.size) {
      throw new KernelError(
        'EINVAL',
        `mdev_virtio: map ranges ${prev.iova}+${prev.size} and ${e.iova}+${e.size} overlap`,
      );
    }
  }
  ops.setMap(mdev, Object.freeze(entries));
}

/** Mirrors mdev_virtio_get_ops(). */
export function mdevVirtioGetOps(mdev: MdevDevice): MdevVirtioOps {
  const ops = asVirtio(mdev).ops;
  if (!ops) throw new KernelError('ENODEV', `mdev_virtio: ${mdev.uuid} has no virtio ops`);
  return ops;
}

/**
 * Mirrors mdev_virtio_set_class_id(): called in the parent's `create`. The id is a u16 (the
 * kernel truncates); here anything else is EINVAL.
 */
export function mdevVirtioSetClassId(mdev: MdevDevice, classId: number): void {
  if (!Number.isInteger(classId) || classId < 0 || classId > 0xffff) {
    throw new KernelError('EINVAL', `mdev_virtio: class id ${classId} is not a u16`);
  }
  asVirtio(mdev).classId = classId;
}

/** Mirrors mdev_virtio_from_dev(). */
export function mdevVirtioFromDev(dev: Device): MdevVirtioDevice | null {
  return mdevFromDev(dev, mdevVirtioBus) as MdevVirtioDevice | null;
}

/** Mirrors struct mdev_virtio_driver. */
export interface MdevVirtioDriver {
  name: string;
  idTable: readonly MdevVirtioClassId[];
  probe?(mdev: MdevVirtioDevice): void;
  remove?(mdev: MdevVirtioDevice): void;
}

/**
 * Mirrors mdev_register_driver(&drv->drv, owner, &mdev_virtio_bus_type): registers a driver on
 * the mediated virtio bus; it binds the mdevs whose class id is in its table.
 */
export function mdevVirtioRegisterDriver(drv: MdevVirtioDriver): Driver {
  mdevVirtioInit();
  const driver = new DriverClass({
    name: drv.name,
    bus: mdevVirtioBus,
    probe: drv.probe && ((dev) => drv.probe!(asVirtio(dev as MdevDevice))),
    remove: drv.remove && ((dev) => drv.remove!(asVirtio(dev as MdevDevice))),
  });
  // The id table must be known before registration binds the devices already present. It ends
  // at its `{ id: 0 }` terminator, as mdev_virtio_match() walks `for (; ids->id; ids++)`.
  const end = drv.idTable.findIndex((e) => e.id === 0);
  driverIds.set(driver, end < 0 ? [...drv.idTable] : drv.idTable.slice(0, end));
  driver.register();
  return driver;
}

/** Unregisters a driver of the mediated virtio bus. */
export function mdevVirtioUnregisterDriver(drv: Driver): void {
  mdevUnregisterDriver(drv);
}

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
import { MDEV_VIRTIO_MANDATORY_OPS, type MdevVirtioOps } from './ops';

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

import {
  type AttributeGroup,
  type Bus,
  ClassCompat,
  Device,
  Driver,
  KernelError,
  sysfs,
  uevents,
} from '@mdev/driver-core';
import { guidParse, kstrtoul, UUID_STRING_LEN } from './uuid';

/** A supported type's attribute; show/store receive the type and the parent device. */
export interface MdevTypeAttribute {
  name: string;
  mode: number;
  show?(type: MdevType, parent: Device): string;
  store?(type: MdevType, parent: Device, text: string): number | undefined;
}

/** One entry of supported_type_groups: the group name becomes `<driver string>-<name>`. */
export interface MdevTypeGroup {
  name: string;
  attrs: MdevTypeAttribute[];
}

/** A supported type of a registered parent (struct mdev_type). */
export interface MdevType {
  /** The directory name, `<driver string>-<group name>` (e.g. `mtty-2`). */
  readonly name: string;
  readonly group: MdevTypeGroup;
  readonly parent: MdevParent;
  /** `/sys/.../mdev_supported_types/<name>`. */
  readonly path: string;
}

/** Mirrors struct mdev_parent_ops (V12: the bus-neutral part). */
export interface MdevParentOps {
  /** Attribute groups on the parent device. */
  devAttrGroups?: AttributeGroup[];
  /** Attribute groups on every mdev of this parent. */
  mdevAttrGroups?: AttributeGroup[];
  /** The supported types; mandatory and non-empty. */
  supportedTypeGroups: MdevTypeGroup[];
  /** Allocates the vendor's resources for a new mdev; throw a KernelError to refuse it. */
  create(type: MdevType, mdev: MdevDevice): void;
  /** Frees them; an error is logged and the mdev is removed all the same. */
  remove(mdev: MdevDevice): void;
}

/** What a bus's device factory receives to build its concrete mdev type (patch 2). */
export interface MdevDeviceInit {
  uuid: string;
  parent: MdevParent;
  type: MdevType;
}

/** Builds the bus's concrete mdev device (structure composition, V12 patch 2). */
export type MdevDeviceFactory = (init: MdevDeviceInit) => MdevDevice;

/** Mirrors struct mdev_parent. */
export class MdevParent {
  readonly dev: Device;
  readonly ops: MdevParentOps;
  readonly bus: Bus;
  readonly createDevice: MdevDeviceFactory;
  readonly types = new Map<string, MdevType>();
  /** Set once unregistration starts (the kernel's unreg_sem held for write). */
  unregistering = false;

  constructor(dev: Device, ops: MdevParentOps, bus: Bus, createDevice: MdevDeviceFactory) {
    this.dev = dev;
    this.ops = ops;
    this.bus = bus;
    this.createDevice = createDevice;
  }

  get typesPath(): string {
    return `${this.dev.path}/mdev_supported_types`;
  }
}

/** IOMMU group ids in use (freed ids are handed out again, lowest first). */
const iommuGroupsInUse = new Set<number>();

/** Mirrors struct mdev_device. A bus subclasses it to carry its ops (mdev_vfio, mdev_virtio). */
export class MdevDevice extends Device {
  readonly uuid: string;
  readonly mdevParent: MdevParent;
  readonly type: MdevType;
  /** Fully created and not being removed (the kernel's `active`). */
  active = false;
  /** The private IOMMU group this mdev sits in while bound (mdev_attach_iommu). */
  iommuGroup: number | null = null;
  /** The vendor driver's data (mdev_set_drvdata). */
  vendorData: unknown = null;

  constructor(init: MdevDeviceInit) {
    super({
      name: init.uuid,
      parent: init.parent.dev,
      bus: init.parent.bus,
      groups: init.parent.ops.mdevAttrGroups ?? [],
      release: () => releaseMdev(this),
    });
    this.uuid = init.uuid;
    this.mdevParent = init.parent;
    this.type = init.type;
  }
}

const parents = new Map<Device, MdevParent>();
/** Every mdev of every parent, by UUID, from reservation until release (the kernel's mdev_list). */
const mdevList = new Map<string, MdevDevice | null>();
const compatClasses = new Map<Bus, ClassCompat>();

function releaseMdev(mdev: MdevDevice): void {
  if (mdevList.get(mdev.uuid) === mdev) mdevList.delete(mdev.uuid);
}

/** Mirrors dev_driver_string(): the bound driver, else the bus, else the class name. */
export function devDriverString(dev: Device): string {
  return dev.driver?.name ?? dev.bus?.name ?? dev.class?.name ?? dev.name;
}

/** Mirrors mdev_register_bus() (V12 patch 1): bus_register() for a mediated bus. */
export function mdevRegisterBus(bus: Bus): void {
  bus.register();
}

/**
 * Mirrors mdev_unregister_bus(): drops the bus's `<bus>_bus` class, then the bus. EBUSY while a
 * parent is registered on the bus or a device is still on it: a module cannot unload while its
 * users are loaded, and bus_unregister() would delete the mdevs without their parent's remove,
 * leaving the vendor's resources and the UUIDs reserved. Remove the mdevs and unregister the
 * parents (mdevUnregisterDevice) first.
 */
export function mdevUnregisterBus(bus: Bus): void {
  if (!bus.isRegistered) return;
  const devices = bus.devices().length;
  const users = [...parents.values()].filter((p) => p.bus === bus).length;
  if (devices > 0 || users > 0) {
    throw new KernelError(
      'EBUSY',
      `mdev_unregister_bus: ${users} parent(s) and ${devices} device(s) still on bus ${bus.name}`,
    );
  }
  uevents.hold(() => {
    compatClasses.get(bus)?.unregister();
    compatClasses.delete(bus);
    bus.unregister();
  });
}

function compatFor(bus: Bus): ClassCompat {
  let compat = compatClasses.get(bus);
  if (!compat) {
    try {
      compat = new ClassCompat(`${bus.name}_bus`);
    } catch (err) {
      throw new KernelError('ENOMEM', `mdev: cannot create class ${bus.name}_bus: ${String(err)}`);
    }
    compatClasses.set(bus, compat);
  }
  return compat;
}

/** The default device factory: a plain MdevDevice. */
export const plainMdevDevice: MdevDeviceFactory = (init) => new MdevDevice(init);

function addTypeFiles(parent: MdevParent): void {
  sysfs.mkdir(parent.typesPath);
  const driverString = devDriverString(parent.dev);
  for (const group of parent.ops.supportedTypeGroups) {
    if (!group.name) throw new KernelError('EINVAL', `${driverString}: Type name empty!`);
    const name = `${driverString}-${group.name}`;
    const path = `${parent.typesPath}/${name}`;
    if (sysfs.exists(path)) throw new KernelError('EEXIST', `mdev: type ${name} exists twice`);
    const type: MdevType = { name, group, parent, path };
    sysfs.mkdir(path);
    parent.types.set(name, type);
    sysfs.createFile(path, {
      name: 'create',
      mode: 0o200,
      store: (text) => createStore(parent, type, text),
    });
    sysfs.mkdir(`${path}/devices`);
    try {
      for (const attr of group.attrs) {
        sysfs.createFile(path, {
          name: attr.name,
          mode: attr.mode,
          show: attr.show && (() => attr.show!(type, parent.dev)),
          store: attr.store && ((t) => attr.store!(type, parent.dev, t)),
        });
      }
    } catch (err) {
      throw new KernelError('ENOMEM', `mdev: type ${name} attributes: ${String(err)}`);
    }
  }
}

function removeParentFiles(
  parent: MdevParent,
  groups: readonly AttributeGroup[] = parent.ops.devAttrGroups ?? [],
): void {
  for (const group of groups) sysfs.removeGroup(parent.dev.path, group);
  sysfs.remove(parent.typesPath);
  parent.types.clear();
}

/**
 * Mirrors mdev_register_device() (V12: with the bus and the device factory). EINVAL for missing
 * ops or a type group without a name, EEXIST for a parent registered twice. Emits CHANGE with
 * MDEV_STATE=registered.
 */
export function mdevRegisterDevice(
  dev: Device,
  ops: MdevParentOps,
  bus: Bus,
  createDevice: MdevDeviceFactory = plainMdevDevice,
): MdevParent {
  return uevents.hold(() => registerDevice(dev, ops, bus, createDevice));
}

function registerDevice(
  dev: Device,
  ops: MdevParentOps,
  bus: Bus,
  createDevice: MdevDeviceFactory,
): MdevParent {
  if (!ops || typeof ops.create !== 'function' || typeof ops.remove !== 'function') {
    throw new KernelError('EINVAL', 'mdev_register_device: create and remove ops are mandatory');
  }
  if (!ops.supportedTypeGroups || ops.supportedTypeGroups.length === 0) {
    throw new KernelError('EINVAL', 'mdev_register_device: supported types are mandatory');
  }
  if (!dev.isAdded)
    throw new KernelError('EINVAL', `mdev_register_device: ${dev.name} is not added`);
  if (parents.has(dev)) {
    throw new KernelError('EEXIST', `mdev_register_device: ${dev.name} is already a parent`);
  }
  if (!bus.isRegistered) {
    throw new KernelError('EINVAL', `mdev_register_device: bus ${bus.name} is not registered`);
  }
  const compat = compatFor(bus);
  const parent = new MdevParent(dev, ops, bus, createDevice);
  // Only what this call made is undone on failure: a vendor group that clashes with a file the
  // parent already had must not take that file with it.
  const made: AttributeGroup[] = [];
  try {
    addTypeFiles(parent);
    for (const group of ops.devAttrGroups ?? []) {
      sysfs.createGroup(dev.path, group);
      made.push(group);
    }
  } catch (err) {
    removeParentFiles(parent, made);
    throw err;
  }
  try {
    compat.createLink(dev);
  } catch {
    // The kernel only warns: "Failed to create compatibility class link".
  }
  parents.set(dev, parent);
  dev.get();
  dev.uevent('change', { MDEV_STATE: 'registered' });
  return parent;
}

/**
 * Mirrors mdev_unregister_device(): new creates and removes fail with ENODEV, every child is
 * removed, the type directories go, then CHANGE with MDEV_STATE=unregistered. Unknown parents
 * are ignored.
 */
export function mdevUnregisterDevice(dev: Device): void {
  const parent = parents.get(dev);
  if (!parent) return;
  uevents.hold(() => {
    parents.delete(dev);
    parent.unregistering = true;
    compatClasses.get(parent.bus)?.removeLink(dev);
    for (const child of dev.children()) {
      if (child instanceof MdevDevice && child.mdevParent === parent) removeCommon(child);
    }
    removeParentFiles(parent);
    dev.uevent('change', { MDEV_STATE: 'unregistered' });
    dev.put();
  });
}

/** The parent registered for a device, if any. */
export function mdevParentOf(dev: Device): MdevParent | undefined {
  return parents.get(dev);
}

function createStore(parent: MdevParent, type: MdevType, text: string): number {
  const count = Buffer.byteLength(text);
  if (count < UUID_STRING_LEN || count > UUID_STRING_LEN + 1) {
    throw new KernelError('EINVAL', `create: "${text}" is not a 36-byte UUID`);
  }
  createOnType(parent, type, guidParse(text));
  return count;
}

function createOnType(parent: MdevParent, type: MdevType, uuid: string): MdevDevice {
  // The ADD and BIND of the new mdev reach listeners once it is fully created (or unwound).
  return uevents.hold(() => createHeld(parent, type, uuid));
}

function createHeld(parent: MdevParent, type: MdevType, uuid: string): MdevDevice {
  if (mdevList.has(uuid)) throw new KernelError('EEXIST', `create: mdev ${uuid} already exists`);
  if (parent.unregistering || !parents.has(parent.dev)) {
    throw new KernelError('ENODEV', `create: parent ${parent.dev.name} is going away`);
  }
  mdevList.set(uuid, null); // reserved before the vendor runs, as the kernel's mdev_list
  let mdev: MdevDevice;
  try {
    mdev = parent.createDevice({ uuid, parent, type });
  } catch (err) {
    mdevList.delete(uuid);
    throw err;
  }
  mdevList.set(uuid, mdev);
  try {
    parent.ops.create(type, mdev);
  } catch (err) {
    mdev.put();
    throw err;
  }
  try {
    mdev.add();
  } catch (err) {
    vendorRemove(mdev);
    mdev.put();
    throw err;
  }
  try {
    createMdevFiles(mdev);
  } catch (err) {
    mdev.del();
    vendorRemove(mdev);
    mdev.put();
    throw err;
  }
  mdev.active = true;
  return mdev;
}

function createMdevFiles(mdev: MdevDevice): void {
  const typeLink = `${mdev.type.path}/devices/${mdev.uuid}`;
  sysfs.symlink(typeLink, mdev.path);
  try {
    mdev.createLink('mdev_type', mdev.type.path);
    mdev.createFile({ name: 'remove', mode: 0o200, store: (text) => removeStore(mdev, text) });
  } catch (err) {
    sysfs.remove(typeLink);
    mdev.removeLink('mdev_type');
    throw err;
  }
}

function removeMdevFiles(mdev: MdevDevice): void {
  mdev.removeFile('remove');
  mdev.removeLink('mdev_type');
  sysfs.remove(`${mdev.type.path}/devices/${mdev.uuid}`);
}

function removeStore(mdev: MdevDevice, text: string): number {
  let value: bigint;
  try {
    value = kstrtoul(text);
  } catch {
    // remove_store: any kstrtoul failure (ERANGE included) is EINVAL.
    throw new KernelError('EINVAL', `remove: ${JSON.stringify(text.slice(0, 40))} is not a number`);
  }
  if (value !== 0n) mdevDeviceRemove(mdev);
  return Buffer.byteLength(text);
}

function vendorRemove(mdev: MdevDevice): void {
  try {
    mdev.mdevParent.ops.remove(mdev);
  } catch (err) {
    // mdev_device_remove_common: "Remove failed: err=%d"; the device goes all the same.
    process.emitWarning(`mdev ${mdev.uuid}: Remove failed: ${String(err)}`);
  }
}

function removeCommon(mdev: MdevDevice): void {
  mdev.active = false;
  removeMdevFiles(mdev);
  mdev.del();
  vendorRemove(mdev);
  mdev.put();
}

/**
 * Creates an mdev of a parent's type, as `echo $UUID > .../create` does (mdev_device_create).
 * `typeName` is the directory name (`mtty-2`) or the group name (`2`).
 */
export function mdevDeviceCreate(parentDev: Device, typeName: string, uuid: string): MdevDevice {
  const parent = parents.get(parentDev);
  if (!parent) throw new KernelError('ENODEV', `create: ${parentDev.name} is not an mdev parent`);
  const type =
    parent.types.get(typeName) ?? parent.types.get(`${devDriverString(parentDev)}-${typeName}`);
  if (!type) throw new KernelError('EINVAL', `create: ${parentDev.name} has no type ${typeName}`);
  // A UUID, with at most the newline a shell's echo adds. (The sysfs file keeps create_store's
  // rule: 36 bytes, or 37 whatever the last one is.)
  const exact = uuid.endsWith('\n') ? uuid.slice(0, -1) : uuid;
  if (exact.length !== UUID_STRING_LEN) {
    throw new KernelError('EINVAL', `create: "${uuid}" is not a UUID`);
  }
  return createOnType(parent, type, guidParse(exact));
}

/**
 * Removes an mdev, as `echo 1 > remove` does (mdev_device_remove): ENODEV when it is not known,
 * EAGAIN while it is being created or removed, ENODEV when its parent is going away.
 */
export function mdevDeviceRemove(mdev: MdevDevice): void {
  if (mdevList.get(mdev.uuid) !== mdev)
    throw new KernelError('ENODEV', `remove: ${mdev.uuid} is gone`);
  if (!mdev.active) throw new KernelError('EAGAIN', `remove: ${mdev.uuid} is busy`);
  mdev.active = false;
  if (mdev.mdevParent.unregistering) {
    throw new KernelError('ENODEV', `remove: parent of ${mdev.uuid} is going away`);
  }
  uevents.hold(() => removeCommon(mdev));
}

/** Mirrors mdev_from_dev(dev, bus): the mdev when `dev` is one on `bus`, else null. */
export function mdevFromDev(dev: Device, bus: Bus): MdevDevice | null {
  return dev instanceof MdevDevice && dev.bus === bus ? dev : null;
}

/** Mirrors mdev_uuid(). */
export function mdevUuid(mdev: MdevDevice): string {
  return mdev.uuid;
}

/** Mirrors mdev_parent_dev(). */
export function mdevParentDev(mdev: MdevDevice): Device {
  return mdev.mdevParent.dev;
}

/** Mirrors mdev_get_drvdata(). */
export function mdevGetDrvdata<T = unknown>(mdev: MdevDevice): T {
  return mdev.vendorData as T;
}

/** Mirrors mdev_set_drvdata(). */
export function mdevSetDrvdata(mdev: MdevDevice, data: unknown): void {
  mdev.vendorData = data;
}

/** Every mdev that exists (created and not yet released), by UUID. */
export function mdevDevices(): MdevDevice[] {
  return [...mdevList.values()].filter((m): m is MdevDevice => m !== null);
}

/** UUIDs that are reserved (in use by an mdev that is not yet released). */
export function mdevReservedUuids(): string[] {
  return [...mdevList.keys()];
}

/**
 * Mirrors mdev_probe(): the bus probe of a mediated bus. Puts the mdev in a private IOMMU group,
 * then calls the driver's probe; a failed probe leaves the group.
 */
export function mdevProbe(dev: Device): void {
  if (!(dev instanceof MdevDevice)) throw new KernelError('EINVAL', `${dev.name} is not an mdev`);
  const group = allocIommuGroup();
  dev.iommuGroup = group;
  try {
    sysfs.mkdir(`/sys/kernel/iommu_groups/${group}/devices`);
    sysfs.symlink(`/sys/kernel/iommu_groups/${group}/devices/${dev.name}`, dev.path);
    dev.createLink('iommu_group', `/sys/kernel/iommu_groups/${group}`);
    dev.driver?.options.probe?.(dev);
  } catch (err) {
    detachIommu(dev);
    throw err;
  }
}

/**
 * The lowest free IOMMU group id from 0, as iommu_group_alloc() takes them from its ida
 * (drivers/iommu/iommu.c: ida_simple_get(&iommu_group_ida, 0, 0, ...)) and hands them back.
 */
function allocIommuGroup(): number {
  let id = 0;
  while (iommuGroupsInUse.has(id)) id++;
  iommuGroupsInUse.add(id);
  return id;
}

function detachIommu(dev: MdevDevice): void {
  const group = dev.iommuGroup;
  if (group === null) return;
  if (sysfs.exists(`${dev.path}/iommu_group`)) dev.removeLink('iommu_group');
  sysfs.remove(`/sys/kernel/iommu_groups/${group}`);
  iommuGroupsInUse.delete(group);
  dev.iommuGroup = null;
}

/** The IOMMU device set for an mdev by its parent (mdev_set_iommu_device). */
const iommuDevices = new WeakMap<MdevDevice, Device>();

function toMdev(dev: Device, what: string): MdevDevice {
  // The kernel's to_mdev_device() trusts its caller; a device that is not an mdev is EINVAL here.
  if (!(dev instanceof MdevDevice))
    throw new KernelError('EINVAL', `${what}: ${dev.name} is not an mdev`);
  return dev;
}

/**
 * Mirrors mdev_set_iommu_device(): the parent names the device whose IOMMU isolates this mdev
 * (a PCI function that owns the mdev's DMA), instead of the vendor-defined isolation of its own
 * group. null clears it. vfio_iommu_type1 attaches the mdev's domain to that device when set.
 */
export function mdevSetIommuDevice(dev: Device, iommuDevice: Device | null): void {
  const mdev = toMdev(dev, 'mdev_set_iommu_device');
  if (iommuDevice) iommuDevices.set(mdev, iommuDevice);
  else iommuDevices.delete(mdev);
}

/** Mirrors mdev_get_iommu_device(): the device set with mdevSetIommuDevice(), else null. */
export function mdevGetIommuDevice(dev: Device): Device | null {
  return iommuDevices.get(toMdev(dev, 'mdev_get_iommu_device')) ?? null;
}

/** Mirrors mdev_remove(): the driver's remove, then the IOMMU group goes. */
export function mdevRemove(dev: Device): void {
  dev.driver?.options.remove?.(dev);
  if (dev instanceof MdevDevice) detachIommu(dev);
}

/** A driver for a mediated bus (struct mdev_driver). */
export interface MdevDriverOptions {
  name: string;
  probe?(dev: MdevDevice): void;
  remove?(dev: MdevDevice): void;
}

/** Mirrors mdev_register_driver(drv, owner, bus) (V12). Returns the registered driver. */
export function mdevRegisterDriver(options: MdevDriverOptions, bus: Bus): Driver {
  const drv = new Driver({
    name: options.name,
    bus,
    probe: options.probe && ((dev) => options.probe!(dev as MdevDevice)),
    remove: options.remove && ((dev) => options.remove!(dev as MdevDevice)),
  });
  drv.register();
  return drv;
}

/** Mirrors mdev_unregister_driver(). */
export function mdevUnregisterDriver(drv: Driver): void {
  drv.unregister();
}

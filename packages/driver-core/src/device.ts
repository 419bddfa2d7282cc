import type { DmaMapOps } from './dma';
import { KernelError } from './errors';
import { type Attribute, type AttributeGroup, SYSFS_PAGE_SIZE, sysfs } from './sysfs';
import { type UeventAction, uevents } from './uevent';

/** Options of a bus (the kernel's struct bus_type). */
export interface BusOptions {
  name: string;
  /** bus_type.match: whether the driver can drive the device; every pair matches without it. */
  match?(dev: Device, drv: Driver): boolean;
  /** bus_type.probe: when present it is called instead of the driver's probe. */
  probe?(dev: Device): void;
  /** bus_type.remove: when present it is called instead of the driver's remove. */
  remove?(dev: Device): void;
  /** bus_type.uevent: adds variables to the device's uevents. */
  uevent?(dev: Device, env: Record<string, string>): void;
  /**
   * Gives every device of the bus a `driver_override` attribute (as the platform and PCI buses
   * do): while it names a driver, the bus matches the device to that driver only, in place of
   * `match`.
   */
  driverOverride?: boolean;
}

/** The bus's device and driver lists, for the code of this module (set by Bus's static block). */
let devsOf: (bus: Bus) => Device[];
let drvsOf: (bus: Bus) => Driver[];

/** Mirrors struct bus_type. Register with `register()` (bus_register). */
export class Bus {
  readonly name: string;
  readonly options: BusOptions;
  readonly #devs: Device[] = [];
  readonly #drvs: Driver[] = [];
  #registered = false;

  static {
    devsOf = (bus) => bus.#devs;
    drvsOf = (bus) => bus.#drvs;
  }

  constructor(options: BusOptions) {
    this.name = options.name;
    this.options = options;
  }

  get path(): string {
    return `/sys/bus/${this.name}`;
  }

  get isRegistered(): boolean {
    return this.#registered;
  }

  /** Mirrors bus_register(): creates /sys/bus/<name>/{devices,drivers}. EEXIST for a taken name. */
  register(): void {
    if (this.#registered || sysfs.exists(this.path)) {
      throw new KernelError('EEXIST', `bus_register: bus ${this.name} already exists`);
    }
    sysfs.mkdir(`${this.path}/devices`);
    sysfs.mkdir(`${this.path}/drivers`);
    sysfs.createFile(this.path, {
      name: 'drivers_probe',
      mode: 0o200,
      store: (text) => driversProbeStore(this, text),
    });
    this.#registered = true;
  }

  /** Mirrors bus_unregister(): removes remaining devices and drivers, then the directory. */
  unregister(): void {
    if (!this.#registered) return;
    uevents.hold(() => {
      for (const dev of [...this.#devs].reverse()) dev.del();
      for (const drv of [...this.#drvs].reverse()) drv.unregister();
      sysfs.remove(this.path);
      this.#registered = false;
    });
  }

  /** The devices on the bus, in the order they were added. */
  devices(): Device[] {
    return [...this.#devs];
  }

  /** The drivers on the bus, in registration order. */
  drivers(): Driver[] {
    return [...this.#drvs];
  }
}

function busMatches(bus: Bus, dev: Device, drv: Driver): boolean {
  // As platform_match() and pci_match_device(): an override decides alone.
  if (bus.options.driverOverride && dev.driverOverride !== null) {
    return dev.driverOverride === drv.name;
  }
  return bus.options.match ? bus.options.match(dev, drv) : true;
}

/**
 * The device of the bus that a sysfs write names (bus_find_device_by_name()): the comparison is
 * sysfs_streq()'s, which ends a string at a NUL and ignores one trailing newline on either side.
 */
function deviceByName(bus: Bus, text: string): Device | undefined {
  let name = text;
  const nul = name.indexOf('\0');
  if (nul >= 0) name = name.slice(0, nul);
  if (name.endsWith('\n')) name = name.slice(0, -1);
  return devsOf(bus).find((d) => d.name === name);
}

/**
 * drivers/base/bus.c bind_store(): ENODEV for a device not on the bus or one the driver does not
 * match, EBUSY for a bound device (device_driver_attach()), else the probe's own error.
 */
function bindStore(drv: Driver, text: string): undefined {
  const dev = deviceByName(drv.bus, text);
  if (!dev || !busMatches(drv.bus, dev, drv)) {
    throw new KernelError('ENODEV', `${drv.name}/bind: no matching device ${JSON.stringify(text)}`);
  }
  if (dev.driver) {
    throw new KernelError('EBUSY', `${drv.name}/bind: ${dev.name} is bound to ${dev.driver.name}`);
  }
  // The kernel's probe returns its errno to the writer; a driver that fails in another way has
  // a bug, which is not turned into an errno that would hide it.
  if (!probeWith(dev, drv)) throw dev.lastProbeError;
  return undefined;
}

/** drivers/base/bus.c unbind_store(): ENODEV unless the device is bound to this driver. */
function unbindStore(drv: Driver, text: string): undefined {
  const dev = deviceByName(drv.bus, text);
  if (!dev || dev.driver !== drv) {
    throw new KernelError('ENODEV', `${drv.name}/unbind: ${JSON.stringify(text)} is not bound`);
  }
  dev.releaseDriver();
  return undefined;
}

/**
 * drivers/base/bus.c drivers_probe_store(): ENODEV for a device not on the bus; otherwise an
 * unbound device is offered to every driver (bus_rescan_devices_helper()), and the write
 * succeeds whether or not one bound it.
 */
function driversProbeStore(bus: Bus, text: string): undefined {
  const dev = deviceByName(bus, text);
  if (!dev) {
    throw new KernelError('ENODEV', `${bus.name}/drivers_probe: no device ${JSON.stringify(text)}`);
  }
  if (!dev.driver) busAttach(bus, dev);
  return undefined;
}

/**
 * drivers/base/driver.c driver_set_override(): EINVAL for a write of PAGE_SIZE - 1 bytes or more
 * (what a read could not give back with its newline); the text ends at a NUL or a newline, and an
 * empty name clears the override.
 */
function setDriverOverride(dev: Device, text: string): undefined {
  if (Buffer.byteLength(text) >= SYSFS_PAGE_SIZE - 1) {
    throw new KernelError('EINVAL', `${dev.name}/driver_override: too long`);
  }
  const end = text.search(/[\0\n]/);
  const name = end >= 0 ? text.slice(0, end) : text;
  dev.driverOverride = name === '' ? null : name;
  return undefined;
}

/** Tries every driver of the bus on an unbound device (the kernel's device_attach). */
function busAttach(bus: Bus, dev: Device): boolean {
  for (const drv of drvsOf(bus)) {
    if (dev.driver) return true;
    if (busMatches(bus, dev, drv) && probeWith(dev, drv)) return true;
  }
  return false;
}

/** Binds `drv` to `dev` (really_probe). Returns whether it bound. */
function probeWith(dev: Device, drv: Driver): boolean {
  dev.driver = drv;
  try {
    if (dev.bus?.options.probe) dev.bus.options.probe(dev);
    else drv.options.probe?.(dev);
  } catch (err) {
    dev.driver = null;
    dev.drvdata = null;
    dev.lastProbeError = err;
    return false;
  }
  dev.lastProbeError = null;
  sysfs.symlink(`${dev.path}/driver`, drv.path);
  sysfs.symlink(`${drv.path}/${dev.name}`, dev.path);
  dev.uevent('bind');
  return true;
}

/** Options of a driver (the kernel's struct device_driver). */
export interface DriverOptions {
  name: string;
  bus: Bus;
  /** Binds the driver to a device; throwing a KernelError refuses the device. */
  probe?(dev: Device): void;
  remove?(dev: Device): void;
}

/** Mirrors struct device_driver. Register with `register()` (driver_register). */
export class Driver {
  readonly name: string;
  readonly bus: Bus;
  readonly options: DriverOptions;
  #registered = false;

  constructor(options: DriverOptions) {
    this.name = options.name;
    this.bus = options.bus;
    this.options = options;
  }

  get path(): string {
    return `${this.bus.path}/drivers/${this.name}`;
  }

  /** Mirrors driver_register(): binds every matching unbound device on the bus. */
  register(): void {
    if (!this.bus.isRegistered) {
      throw new KernelError('EINVAL', `driver_register: bus ${this.bus.name} is not registered`);
    }
    if (this.#registered || sysfs.exists(this.path)) {
      throw new KernelError('EBUSY', `driver_register: driver ${this.name} is already registered`);
    }
    uevents.hold(() => {
      sysfs.mkdir(this.path);
      // drivers/base/bus.c add_bind_files().
      sysfs.createFile(this.path, {
        name: 'bind',
        mode: 0o200,
        store: (text) => bindStore(this, text),
      });
      sysfs.createFile(this.path, {
        name: 'unbind',
        mode: 0o200,
        store: (text) => unbindStore(this, text),
      });
      drvsOf(this.bus).push(this);
      this.#registered = true;
      for (const dev of this.bus.devices()) {
        // A device removed by an earlier probe (a driver that unloads another) is skipped.
        if (dev.isAdded && !dev.driver && busMatches(this.bus, dev, this)) probeWith(dev, this);
      }
    });
  }

  /** Mirrors driver_unregister(): unbinds every device bound to it. */
  unregister(): void {
    if (!this.#registered) return;
    uevents.hold(() => {
      for (const dev of this.bus.devices()) if (dev.driver === this) dev.releaseDriver();
      const drvs = drvsOf(this.bus);
      const i = drvs.indexOf(this);
      if (i >= 0) drvs.splice(i, 1);
      sysfs.remove(this.path);
      this.#registered = false;
    });
  }

  /** The devices currently bound to this driver. */
  boundDevices(): Device[] {
    return this.bus.devices().filter((d) => d.driver === this);
  }
}

/** Mirrors struct class: /sys/class/<name> with a link per member device. */
export class Class {
  readonly name: string;
  private registered = false;

  constructor(name: string) {
    this.name = name;
  }

  get path(): string {
    return `/sys/class/${this.name}`;
  }

  /** Mirrors class_register(). EEXIST for a taken name. */
  register(): void {
    if (this.registered || sysfs.exists(this.path)) {
      throw new KernelError('EEXIST', `class_register: class ${this.name} already exists`);
    }
    sysfs.mkdir(this.path);
    this.registered = true;
  }

  /** Mirrors class_unregister(). */
  unregister(): void {
    if (!this.registered) return;
    sysfs.remove(this.path);
    this.registered = false;
  }
}

/**
 * Mirrors struct class_compat: a /sys/class/<name> directory of links to devices that belong to
 * other classes or buses (mdev-core keeps /sys/class/mdev_bus/<parent> this way).
 */
export class ClassCompat {
  readonly name: string;

  /** Mirrors class_compat_register(). */
  constructor(name: string) {
    if (sysfs.exists(`/sys/class/${name}`)) {
      throw new KernelError('EEXIST', `class_compat_register: ${name} already exists`);
    }
    this.name = name;
    sysfs.mkdir(this.path);
  }

  get path(): string {
    return `/sys/class/${this.name}`;
  }

  /** Mirrors class_compat_create_link(). */
  createLink(dev: Device): void {
    sysfs.symlink(`${this.path}/${dev.name}`, dev.path);
  }

  /** Mirrors class_compat_remove_link(). */
  removeLink(dev: Device): void {
    sysfs.remove(`${this.path}/${dev.name}`);
  }

  /** Mirrors class_compat_unregister(). */
  unregister(): void {
    sysfs.remove(this.path);
  }
}

/** Options of a device; all but the name can also be set on the object before `add()`. */
export interface DeviceOptions {
  name: string;
  parent?: Device | null;
  bus?: Bus | null;
  class?: Class | null;
  groups?: AttributeGroup[];
  /** Called when the last reference is dropped (struct device.release). */
  release?(dev: Device): void;
}

/**
 * Mirrors struct device. A device is added with `add()` (device_add), which creates its sysfs
 * node, emits ADD and binds a matching driver; `del()` (device_del) undoes it. References:
 * `get()`/`put()`, with `release` on the last put (the creator holds the first reference).
 * Subclasses carry bus- or driver-specific state.
 */
export class Device {
  name: string;
  parent: Device | null;
  bus: Bus | null;
  class: Class | null;
  groups: AttributeGroup[];
  release: ((dev: Device) => void) | undefined;
  /** The bound driver (null when unbound). */
  driver: Driver | null = null;
  /** The driver's private data (dev_get_drvdata/dev_set_drvdata). */
  drvdata: unknown = null;
  /** The device's view of host memory (struct device.dma_ops); null = direct. */
  dmaOps: DmaMapOps | null = null;
  /** The error of the last failed probe, for diagnostics (the kernel logs it). */
  lastProbeError: unknown = null;
  /**
   * The only driver the bus may match the device to, on a bus with `driverOverride` (the
   * `driver_override` attribute); null matches as the bus does.
   */
  driverOverride: string | null = null;

  private refs = 1;
  private added = false;
  private addedPath = '';
  private readonly kids: Device[] = [];

  constructor(options: DeviceOptions) {
    this.name = options.name;
    this.parent = options.parent ?? null;
    this.bus = options.bus ?? null;
    this.class = options.class ?? null;
    this.groups = options.groups ?? [];
    this.release = options.release;
  }

  /** The sysfs path: under the parent, else /sys/devices/virtual/<class or bus>/, else /sys/devices/. */
  get path(): string {
    if (this.added) return this.addedPath;
    return this.computePath();
  }

  private computePath(): string {
    if (this.parent) return `${this.parent.path}/${this.name}`;
    if (this.class) return `/sys/devices/virtual/${this.class.name}/${this.name}`;
    if (this.bus) return `/sys/devices/${this.name}`;
    return `/sys/devices/virtual/${this.name}`;
  }

  /** The path below /sys, as uevents carry it in DEVPATH. */
  get devpath(): string {
    return this.path.slice('/sys'.length);
  }

  get isAdded(): boolean {
    return this.added;
  }

  /** Mirrors get_device(). */
  get(): this {
    if (this.refs <= 0) throw new TypeError(`get_device on released device ${this.name}`);
    this.refs++;
    return this;
  }

  /** Mirrors put_device(): the last put calls `release`. */
  put(): void {
    if (this.refs <= 0) throw new TypeError(`put_device on released device ${this.name}`);
    if (--this.refs === 0) this.release?.(this);
  }

  /** The current reference count (for tests). */
  get refcount(): number {
    return this.refs;
  }

  /** Mirrors device_add(). EEXIST when the name is taken at the device's place. */
  add(): void {
    uevents.hold(() => this.#add());
  }

  #add(): void {
    if (this.added) throw new KernelError('EEXIST', `device_add: ${this.name} already added`);
    if (this.parent && !this.parent.added) {
      throw new KernelError('ENODEV', `device_add: parent of ${this.name} is not added`);
    }
    if (this.bus && !this.bus.isRegistered) {
      throw new KernelError('EINVAL', `device_add: bus ${this.bus.name} is not registered`);
    }
    const path = this.computePath();
    if (sysfs.exists(path)) throw new KernelError('EEXIST', `device_add: ${path} exists`);
    if (this.bus && sysfs.exists(`${this.bus.path}/devices/${this.name}`)) {
      throw new KernelError('EEXIST', `device_add: ${this.name} exists on bus ${this.bus.name}`);
    }
    sysfs.mkdir(path);
    this.addedPath = path;
    this.added = true;
    this.parent?.kids.push(this);
    try {
      sysfs.createFile(path, {
        name: 'uevent',
        mode: 0o644,
        show: () => this.ueventVars().join('\n'),
        store: (text) => {
          const action = text.trim() as UeventAction;
          if (!['add', 'remove', 'change', 'bind', 'unbind'].includes(action)) {
            throw new KernelError('EINVAL', `uevent: unknown action ${text.trim()}`);
          }
          this.uevent(action);
          return undefined;
        },
      });
      for (const group of this.groups) sysfs.createGroup(path, group);
      if (this.bus?.options.driverOverride) {
        sysfs.createFile(path, {
          name: 'driver_override',
          mode: 0o644,
          show: () => `${this.driverOverride ?? '(null)'}\n`,
          store: (text) => setDriverOverride(this, text),
        });
      }
      if (this.bus) {
        sysfs.symlink(`${path}/subsystem`, this.bus.path);
        devsOf(this.bus).push(this);
        sysfs.symlink(`${this.bus.path}/devices/${this.name}`, path);
      } else if (this.class) {
        sysfs.symlink(`${path}/subsystem`, this.class.path);
      }
      if (this.class) sysfs.symlink(`${this.class.path}/${this.name}`, path);
    } catch (err) {
      this.unlink();
      throw err;
    }
    this.uevent('add');
    if (this.bus) busAttach(this.bus, this);
  }

  /** Mirrors device_register(): device_initialize() + device_add(). */
  register(): void {
    this.add();
  }

  /** Mirrors device_del(): unbinds the driver, removes children's links, emits REMOVE, removes the node. */
  del(): void {
    if (!this.added) return;
    uevents.hold(() => {
      if (this.driver) this.releaseDriver();
      this.uevent('remove');
      this.unlink();
    });
  }

  /** Mirrors device_unregister(): device_del() + put_device(). */
  unregister(): void {
    uevents.hold(() => {
      this.del();
      this.put();
    });
  }

  private unlink(): void {
    const path = this.addedPath;
    if (this.class) sysfs.remove(`${this.class.path}/${this.name}`);
    if (this.bus) {
      const devs = devsOf(this.bus);
      const i = devs.indexOf(this);
      if (i >= 0) devs.splice(i, 1);
      sysfs.remove(`${this.bus.path}/devices/${this.name}`);
    }
    sysfs.remove(path);
    if (this.parent) {
      const i = this.parent.kids.indexOf(this);
      if (i >= 0) this.parent.kids.splice(i, 1);
    }
    this.added = false;
  }

  /** Emits a uevent for this device with the bus's variables and `extra`. */
  uevent(action: UeventAction, extra: Record<string, string> = {}): void {
    const env: Record<string, string> = {};
    if (this.driver) env.DRIVER = this.driver.name;
    this.bus?.options.uevent?.(this, env);
    Object.assign(env, extra);
    const subsystem = this.bus?.name ?? this.class?.name ?? '';
    uevents.emit(action, this.devpath, subsystem, env);
  }

  private ueventVars(): string[] {
    const env: Record<string, string> = {};
    if (this.driver) env.DRIVER = this.driver.name;
    this.bus?.options.uevent?.(this, env);
    return Object.entries(env).map(([k, v]) => `${k}=${v}`);
  }

  /**
   * Mirrors device_release_driver(): the driver's (or bus's) remove, then UNBIND. The kernel's
   * remove returns void, so a remove that throws is reported and the unbind goes on: otherwise
   * the exception would leave the device half removed under whoever is deleting it.
   */
  releaseDriver(): void {
    if (this.driver) uevents.hold(() => this.#releaseDriver());
  }

  #releaseDriver(): void {
    const drv = this.driver;
    if (!drv) return;
    try {
      if (this.bus?.options.remove) this.bus.options.remove(this);
      else drv.options.remove?.(this);
    } catch (err) {
      process.emitWarning(`${drv.name} ${this.name}: remove failed: ${String(err)}`);
    }
    sysfs.remove(`${this.path}/driver`);
    sysfs.remove(`${drv.path}/${this.name}`);
    this.driver = null;
    this.drvdata = null;
    this.uevent('unbind');
  }

  /** Mirrors device_attach(): binds a matching driver if unbound. Returns whether it is bound. */
  attach(): boolean {
    if (this.driver) return true;
    const bus = this.bus;
    return bus ? uevents.hold(() => busAttach(bus, this)) : false;
  }

  /** Mirrors device_create_file(). */
  createFile(attr: Attribute): void {
    sysfs.createFile(this.path, attr);
  }

  /** Mirrors device_remove_file(). */
  removeFile(name: string): void {
    sysfs.removeFile(this.path, name);
  }

  /** Mirrors sysfs_create_link() on the device's node. */
  createLink(name: string, targetPath: string): void {
    sysfs.symlink(`${this.path}/${name}`, targetPath);
  }

  /** Mirrors sysfs_remove_link(). */
  removeLink(name: string): void {
    sysfs.remove(`${this.path}/${name}`);
  }

  /** The added child devices, in the order they were added. */
  children(): Device[] {
    return [...this.kids];
  }
}

/** Mirrors device_for_each_child(): stops at and returns the first non-undefined result. */
export function deviceForEachChild<T>(
  parent: Device,
  fn: (child: Device) => T | undefined,
): T | undefined {
  for (const child of parent.children()) {
    const r = fn(child);
    if (r !== undefined) return r;
  }
  return undefined;
}

import { randomUUID } from 'node:crypto';
import { KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioFromDev } from '@mdev/mdev-virtio';
import type * as VhostMdev from '@mdev/vhost-mdev';
import { virtioMdevExit, virtioMdevInit } from '@mdev/virtio-mdev-transport';
import { registerVirtioNetDriver, unregisterVirtioNetDriver } from '@mdev/virtio-net';
import { type LoadedSamples, loadVfioSamples } from '../commands/lspci';
import { listTypes } from '../commands/types';
import { type PktgenParent, pktgenDeviceList } from '../pktgen/run';
import type { Args, Attr, Verb } from './protocol';
import {
  type Definition,
  DefinitionStore,
  isParentName,
  type LoadProblem,
  parseDefinitionJson,
  UUID_RE,
} from './store';
import { hostPktgen, hostScreenshot, hostTty } from './tools';
import { provisionAttrs, provisionerOf, VdpaDevices } from './vdpa';

/** One device as `list` reports it: active, defined, or both. */
export interface DeviceEntry {
  uuid: string;
  parent: string;
  type: string;
  auto: boolean;
  attrs: Attr[];
  active: boolean;
  defined: boolean;
}

/** One supported type as `types` reports it (the type directory's attribute files). */
export interface TypeEntry {
  parent: string;
  type: string;
  attrs: Record<string, string>;
}

/** Where the host reports what happens (stderr of `mdev host`). */
export type HostLog = (line: string) => void;

const einval = (message: string) => new KernelError('EINVAL', message);

/**
 * The device model `mdev host` holds: the modules a single-shot command loads (the virtio-mdev
 * transport, virtio-net, every registered pktgen parent such as mvnet_loopback, the VFIO samples)
 * loaded once, the mdevs created and removed through their sysfs files as mdevctl does, and the
 * persistent definitions of a `DefinitionStore`.
 */
export class DeviceModel {
  readonly store: DefinitionStore;
  private readonly definitions = new Map<string, Definition>();
  private readonly parents: { name: string; parent: PktgenParent }[] = [];
  private samples: LoadedSamples | null = null;
  private loaded = false;
  /** The devices made with vdpa's `dev add`, by name. */
  readonly vdpa = new VdpaDevices(
    () => this.parents,
    (parent, type, uuid, attrs) => this.create(parent, type, uuid, attrs),
    (mdev) => sysfs.write(`${mdev.path}/remove`, '1\n'),
  );

  constructor(
    configDir: string,
    private readonly log: HostLog,
    /**
     * The vhost_mdev driver module, imported by the caller (`mdev host` loads it with the
     * native addon it needs, so no other command does); without it `bind` has no vhost_mdev.
     */
    readonly vhost?: typeof VhostMdev,
    /** Where devices bound to vhost_mdev without a socket of their own are served. */
    private readonly socketDir?: string,
  ) {
    this.store = new DefinitionStore(configDir);
  }

  /**
   * Loads the modules, as modprobe would: the transport and virtio-net first, then every parent.
   * A parent whose init throws is reported and left out; the others load.
   */
  load(): void {
    virtioMdevInit();
    registerVirtioNetDriver();
    // Second: a new virtio mdev binds to virtio_mdev, and moves to vhost_mdev by `bind`.
    this.vhost?.vhostMdevInit({
      socketDir: this.socketDir,
      onEvent: (mdev, e) => {
        if (e.type === 'connected') this.log(`${mdev.uuid}: frontend connected`);
        else if (e.type === 'disconnected') this.log(`${mdev.uuid}: frontend gone (${e.reason})`);
        else if (e.type === 'refused') this.log(`${mdev.uuid}: refused ${e.request}: ${e.error}`);
      },
    });
    this.loaded = true;
    for (const [name, device] of pktgenDeviceList()) {
      try {
        this.parents.push({ name, parent: device.init({}) });
      } catch (err) {
        this.log(`parent ${name} failed to load: ${errorText(err)}`);
      }
    }
    try {
      this.samples = loadVfioSamples();
    } catch (err) {
      this.log(`the VFIO samples failed to load: ${errorText(err)}`);
    }
  }

  /** Reads the definitions; every file that does not read well is reported by its path. */
  loadDefinitions(): LoadProblem[] {
    const { definitions, problems } = this.store.load();
    for (const def of definitions) this.definitions.set(key(def.parent, def.uuid), def);
    for (const p of problems) this.log(`definition ${p.path} ignored: ${p.reason}`);
    return problems;
  }

  /** Starts every definition with `"start": "auto"`; a failure is reported and the rest go on. */
  autostart(): void {
    for (const def of this.definitions.values()) {
      if (!def.auto) continue;
      try {
        this.create(def.parent, def.type, def.uuid, def.attrs);
        this.log(`started ${def.uuid} (${def.parent} ${def.type})`);
      } catch (err) {
        this.log(`auto start of ${def.uuid} failed: ${errorText(err)}`);
      }
    }
  }

  /**
   * Stops every mdev through its `remove` file, newest first, then unloads the parents and the
   * modules in the reverse order of `load`.
   */
  shutdown(): void {
    for (const mdev of mdevDevices().reverse()) {
      if (!mdev.active) continue;
      try {
        sysfs.write(`${mdev.path}/remove`, '1\n');
        this.log(`stopped ${mdev.uuid}`);
      } catch (err) {
        this.log(`stopping ${mdev.uuid} failed: ${errorText(err)}`);
      }
    }
    this.samples?.unload();
    this.samples = null;
    for (const { name, parent } of this.parents.reverse()) {
      try {
        parent.exit();
      } catch (err) {
        this.log(`parent ${name} failed to unload: ${errorText(err)}`);
      }
    }
    this.parents.length = 0;
    if (this.loaded) {
      this.vhost?.vhostMdevExit();
      unregisterVirtioNetDriver();
      virtioMdevExit();
      mdevVirtioExit();
      this.loaded = false;
    }
  }

  /**
   * Runs one checked request; a KernelError (or another Error) for a request that fails.
   * `signal` is aborted when the client goes away: a pktgen run then stops.
   */
  handle<V extends Verb>(verb: V, args: Args<V>, signal?: AbortSignal): unknown {
    switch (verb) {
      case 'ping':
        return { pid: process.pid };
      case 'list':
        return this.list(args as Args<'list'>);
      case 'types':
        return this.types(args as Args<'types'>);
      case 'define':
        return this.define(args as Args<'define'>);
      case 'undefine':
        return this.undefine(args as Args<'undefine'>);
      case 'modify':
        return this.modify(args as Args<'modify'>);
      case 'start':
        return this.start(args as Args<'start'>);
      case 'stop':
        return this.stop(args as Args<'stop'>);
      case 'bind':
        return this.bind(args as Args<'bind'>);
      case 'mgmtdev-show':
        return this.vdpa.mgmtdevs();
      case 'dev-add':
        return this.vdpa.add(args as Args<'dev-add'>);
      case 'dev-show':
        return this.vdpa.show(args as Args<'dev-show'>);
      case 'dev-config-show':
        return this.vdpa.config(args as Args<'dev-config-show'>);
      case 'dev-del':
        return this.vdpa.del(args as Args<'dev-del'>);
      case 'dev-vstats-show':
        return this.vdpa.vstats(args as Args<'dev-vstats-show'>);
      case 'tty':
        return hostTty(args as Args<'tty'>);
      case 'screenshot':
        return hostScreenshot(args as Args<'screenshot'>);
      case 'pktgen':
        return hostPktgen(args as Args<'pktgen'>, this.parents, signal);
    }
    throw new KernelError('EOPNOTSUPP', `unknown verb ${verb}`);
  }

  /**
   * Hands a virtio device to a driver with the sysfs writes a vDPA user knows
   * (`driver_override`, `unbind`, `drivers_probe`): `vhost_mdev` serves it to a vhost-user
   * frontend on `socket` (default `<socket dir>/vhost-mdev-<uuid>.sock`), `virtio_mdev` gives it
   * back to the host's own virtio-net. ENODEV for no such running device, EINVAL for a device
   * not on the mediated virtio bus or another driver, the probe's error when it cannot bind
   * (EADDRINUSE: the socket is in use); the device is then left unbound.
   */
  bind(args: Args<'bind'>): { uuid: string; driver: string; socket?: string } {
    const uuid = checkUuid(args.uuid);
    if (uuid === undefined) throw einval('bind: give the UUID of a running device');
    const m = activeMdev(uuid);
    if (!m) throw new KernelError('ENODEV', `bind: no running device ${uuid}`);
    if (!mdevVirtioFromDev(m)) throw einval(`bind: ${uuid} is not a virtio device`);
    const driver = args.driver;
    if (driver !== 'virtio_mdev' && driver !== 'vhost_mdev')
      throw einval(`bind: driver ${String(driver)} (virtio_mdev or vhost_mdev)`);
    if (args.socket !== undefined && driver !== 'vhost_mdev')
      throw einval('bind: a socket is for vhost_mdev');
    if (args.socket !== undefined && !args.socket.startsWith('/'))
      throw einval('bind: the socket path must be absolute');
    const bus = '/sys/bus/mdev_virtio';
    const current = m.driver?.name;
    const vhost = this.vhost;
    if (driver === 'vhost_mdev') {
      if (!vhost) throw new KernelError('EOPNOTSUPP', 'bind: this host has no vhost_mdev');
      const wanted = args.socket ?? vhost.vhostMdevSocketOf(uuid).path;
      if (current === driver && vhost.vhostMdevBackendOf(m)?.path === wanted) {
        return { uuid, driver, socket: wanted };
      }
      vhost.vhostMdevSetSocket(uuid, args.socket === undefined ? null : { path: args.socket });
    } else if (current === driver) {
      return { uuid, driver };
    }
    sysfs.write(`${m.path}/driver_override`, `${driver}\n`);
    if (current !== undefined) sysfs.write(`${bus}/drivers/${current}/unbind`, `${uuid}\n`);
    sysfs.write(`${bus}/drivers_probe`, `${uuid}\n`);
    if (m.driver?.name !== driver) {
      const why = (m.lastProbeError as Error | null)?.message ?? 'the driver did not bind';
      throw KernelError.is(m.lastProbeError)
        ? m.lastProbeError
        : new KernelError('EIO', `bind: ${uuid} to ${driver}: ${why}`);
    }
    this.log(`${uuid} bound to ${driver}`);
    const backend = vhost?.vhostMdevBackendOf(m);
    return backend ? { uuid, driver, socket: backend.path } : { uuid, driver };
  }

  list(args: Args<'list'>): DeviceEntry[] {
    const out: DeviceEntry[] = [];
    const activeOf = (parent: string, uuid: string) =>
      mdevDevices().some((m) => m.active && m.uuid === uuid && parentName(m) === parent);
    if (args.defined) {
      // By parent, then UUID, as the definition tree reads: a listing that does not depend on
      // the order the definitions were made in.
      const defs = [...this.definitions.values()].sort(
        (x, y) => cmp(x.parent, y.parent) || cmp(x.uuid, y.uuid),
      );
      for (const def of defs) {
        out.push({
          ...def,
          attrs: [...def.attrs],
          active: activeOf(def.parent, def.uuid),
          defined: true,
        });
      }
    } else {
      for (const m of mdevDevices()) {
        if (!m.active) continue;
        const def = this.definitions.get(key(parentName(m), m.uuid));
        out.push({
          uuid: m.uuid,
          parent: parentName(m),
          type: m.type.name,
          auto: def?.auto ?? false,
          attrs: def ? [...def.attrs] : [],
          active: true,
          defined: def !== undefined,
        });
      }
    }
    return out.filter(
      (e) =>
        (args.uuid === undefined || e.uuid === args.uuid) &&
        (args.parent === undefined || e.parent === args.parent),
    );
  }

  types(args: Args<'types'>): TypeEntry[] {
    return listTypes().filter((t) => args.parent === undefined || t.parent === args.parent);
  }

  define(args: Args<'define'>): Definition {
    const uuid = checkUuid(args.uuid) ?? randomUUID();
    let def: Definition;
    if (args.json !== undefined) {
      if (args.type !== undefined || args.auto !== undefined || args.attrs !== undefined)
        throw einval('define: a JSON definition gives the type, start and attributes itself');
      if (args.parent === undefined) throw einval('define: a JSON definition needs a parent');
      def = { uuid, parent: args.parent, ...jsonDefinition(args.json) };
    } else if (args.parent === undefined && args.type === undefined && args.uuid !== undefined) {
      // Promote a running device to a defined one, as mdevctl does.
      const m = activeMdev(uuid);
      if (!m) throw new KernelError('ENODEV', `define: no running device ${uuid} to define from`);
      def = { uuid, parent: parentName(m), type: m.type.name, auto: args.auto ?? false, attrs: [] };
    } else {
      if (args.parent === undefined || args.type === undefined)
        throw einval('define: give a parent and a type (or the UUID of a running device)');
      def = {
        uuid,
        parent: args.parent,
        type: args.type,
        auto: args.auto ?? false,
        attrs: args.attrs ?? [],
      };
    }
    if (!isParentName(def.parent)) throw einval(`define: "${def.parent}" is not a parent name`);
    const other = [...this.definitions.values()].find((d) => d.uuid === uuid);
    if (other) throw new KernelError('EEXIST', `define: ${uuid} is defined (on ${other.parent})`);
    this.store.write(def);
    this.definitions.set(key(def.parent, uuid), def);
    return def;
  }

  undefine(args: Args<'undefine'>): { removed: number } {
    const uuid = requireUuid('undefine', args.uuid);
    const defs = this.definitionsOf(uuid, args.parent);
    if (!defs.length) throw new KernelError('ENOENT', `undefine: ${uuid} is not defined`);
    for (const def of defs) {
      this.store.remove(def.parent, uuid);
      this.definitions.delete(key(def.parent, uuid));
    }
    return { removed: defs.length };
  }

  modify(args: Args<'modify'>): Definition {
    const uuid = requireUuid('modify', args.uuid);
    const [old] = this.definitionsOf(uuid, args.parent);
    if (!old) throw new KernelError('ENOENT', `modify: ${uuid} is not defined`);
    let def: Definition = { ...old, attrs: [...old.attrs] };
    if (args.json !== undefined) {
      if (args.type !== undefined || args.auto !== undefined || args.addattr || args.delattr)
        throw einval('modify: a JSON definition replaces the whole definition');
      def = { uuid, parent: old.parent, ...jsonDefinition(args.json) };
    }
    if (args.type !== undefined) {
      if (args.type === '') throw einval('modify: the type must not be empty');
      def.type = args.type;
    }
    if (args.auto !== undefined) def.auto = args.auto;
    if (args.addattr !== undefined && args.delattr)
      throw einval('modify: add or delete an attribute, not both');
    if (args.addattr !== undefined) {
      if (args.value === undefined) throw einval('modify: --addattr needs a --value');
      if (args.addattr === '') throw einval('modify: an attribute needs a name');
      const at = args.index ?? def.attrs.length;
      if (at > def.attrs.length)
        throw einval(`modify: index ${at} is past the ${def.attrs.length} attributes`);
      def.attrs.splice(at, 0, [args.addattr, args.value]);
    } else if (args.delattr) {
      if (!def.attrs.length) throw einval(`modify: ${uuid} has no attributes`);
      const at = args.index ?? def.attrs.length - 1;
      if (at >= def.attrs.length) throw einval(`modify: no attribute at index ${at}`);
      def.attrs.splice(at, 1);
    } else if (args.value !== undefined || args.index !== undefined) {
      throw einval('modify: --value and --index go with --addattr or --delattr');
    }
    this.store.write(def);
    this.definitions.set(key(def.parent, uuid), def);
    return def;
  }

  start(args: Args<'start'>): { uuid: string } {
    const uuid = checkUuid(args.uuid);
    if (uuid !== undefined && args.type === undefined && args.json === undefined) {
      const defs = this.definitionsOf(uuid, args.parent);
      if (defs.length > 0) {
        const def = defs[0]!;
        this.create(def.parent, def.type, uuid, def.attrs);
        return { uuid };
      }
      if (args.parent === undefined)
        throw new KernelError('ENOENT', `start: ${uuid} is not defined (give a parent and type)`);
    }
    if (args.parent === undefined) throw einval('start: give a parent and a type, or a UUID');
    let type = args.type;
    let attrs: Attr[] = [];
    if (args.json !== undefined) {
      if (type !== undefined) throw einval('start: a JSON definition gives the type itself');
      ({ type, attrs } = jsonDefinition(args.json));
    }
    if (type === undefined) throw einval('start: give the type of the device');
    const id = uuid ?? randomUUID();
    this.create(args.parent, type, id, attrs);
    return { uuid: id };
  }

  stop(args: Args<'stop'>): { uuid: string } {
    const uuid = requireUuid('stop', args.uuid);
    const m = activeMdev(uuid);
    if (!m) throw new KernelError('ENODEV', `stop: ${uuid} is not running`);
    sysfs.write(`${m.path}/remove`, '1\n');
    return { uuid };
  }

  /**
   * Creates an mdev through its type's `create` file and writes its attributes to the device's
   * sysfs directory, as mdevctl does; the device is removed again when an attribute is refused.
   * The attributes a device takes at creation only (`mac` and `mtu` of mvnet_loopback and of
   * vendor parents that take them, which the driver binding during the creation reads) are
   * given to its parent before.
   */
  create(parent: string, type: string, uuid: string, attrs: readonly Attr[]): MdevDevice {
    const dir = typeDir(parent, type);
    if (activeMdev(uuid)) throw new KernelError('EEXIST', `start: ${uuid} is running`);
    const provisioner = provisionerOf(this.parents, parent);
    if (provisioner) attrs = provisionAttrs(provisioner, uuid, attrs);
    try {
      sysfs.write(`${dir}/create`, `${uuid}\n`);
    } catch (err) {
      // Not created: the next creation of this UUID must not inherit these attributes.
      provisioner?.provision(uuid, {});
      throw err;
    }
    const m = activeMdev(uuid);
    if (!m) throw new KernelError('EIO', `start: ${uuid} did not appear`);
    try {
      for (const [name, value] of attrs) {
        if (!isParentName(name)) throw einval(`start: "${name}" is not an attribute name`);
        sysfs.write(`${m.path}/${name}`, `${value}\n`);
      }
    } catch (err) {
      sysfs.write(`${m.path}/remove`, '1\n');
      throw err;
    }
    return m;
  }

  private definitionsOf(uuid: string, parent: string | undefined): Definition[] {
    return [...this.definitions.values()].filter(
      (d) => d.uuid === uuid && (parent === undefined || d.parent === parent),
    );
  }
}

const key = (parent: string, uuid: string) => `${parent}/${uuid}`;
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function parentName(m: MdevDevice): string {
  return m.mdevParent.dev.name;
}

function activeMdev(uuid: string): MdevDevice | undefined {
  return mdevDevices().find((m) => m.active && m.uuid === uuid);
}

function checkUuid(uuid: string | undefined): string | undefined {
  if (uuid === undefined) return undefined;
  const lower = uuid.toLowerCase();
  if (!UUID_RE.test(lower)) throw einval(`"${uuid}" is not a UUID`);
  return lower;
}

function requireUuid(verb: string, uuid: string | undefined): string {
  const u = checkUuid(uuid);
  if (u === undefined) throw einval(`${verb}: give the UUID of the device`);
  return u;
}

function jsonDefinition(json: Record<string, unknown>): Omit<Definition, 'uuid' | 'parent'> {
  try {
    return parseDefinitionJson(json);
  } catch (err) {
    throw einval(`the JSON definition: ${(err as Error).message}`);
  }
}

/** The sysfs directory of a parent's type; ENODEV for an absent parent, EINVAL for a type. */
function typeDir(parent: string, type: string): string {
  if (!isParentName(parent)) throw einval(`"${parent}" is not a parent name`);
  for (const cls of sysfs.list('/sys/class').filter((c) => /^mdev.*_bus$/.test(c))) {
    const pdir = `/sys/class/${cls}/${parent}`;
    if (!sysfs.exists(pdir)) continue;
    const types = sysfs.list(`${pdir}/mdev_supported_types`);
    if (!types.includes(type)) {
      throw einval(`parent ${parent} does not support type ${type} (it has: ${types.join(', ')})`);
    }
    return `${pdir}/mdev_supported_types/${type}`;
  }
  throw new KernelError('ENODEV', `no parent ${parent} is registered`);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

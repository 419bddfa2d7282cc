/**
 * iproute2 vdpa's view of the host's devices: management devices (the parents on the mediated
 * virtio bus), named devices made with `dev add name N mgmtdev M [mac ...] [mtu ...]`, and
 * their decoded virtio-net config space (drivers/vdpa/vdpa.c, vdpa_dev_net_config_fill).
 */
import { randomUUID } from 'node:crypto';
import { basename, dirname } from 'node:path';
import { KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioGetOps } from '@mdev/mdev-virtio';
import type { MvnetLoopback } from '@mdev/mvnet-loopback';
import * as virtio from '@mdev/virtio';
import {
  VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MTU,
  VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_S_ANNOUNCE,
  VIRTIO_NET_S_LINK_UP,
} from '@mdev/virtio';
import { netdevList, VirtNet } from '@mdev/virtio-net';
import { listTypes } from '../commands/types';
import type { PktgenParent } from '../pktgen/run';
import type { Args, Attr } from './protocol';

/** VIRTIO_ID_NET: the device id of a network device (virtio 1.2 section 5). */
const VIRTIO_ID_NET = 1;
/** Bytes of struct virtio_net_config read: mac, status, max_virtqueue_pairs, mtu. */
const NET_CONFIG_BYTES = VIRTIO_NET_CONFIG_MTU + 2;

/** A vdpa device name: what `vdpa dev add name` takes here (no separators, at most 64). */
const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Feature bit -> name as `vdpa dev config show` prints them (MAC, MTU, VERSION_1, ...). */
const FEATURE_NAMES = new Map<number, string>();
for (const [key, value] of Object.entries(virtio)) {
  // The device-independent bits, the ring bits and virtio-net's; IOMMU_PLATFORM is the old name
  // of ACCESS_PLATFORM.
  const m = /^VIRTIO_(NET_F_|F_|RING_F_)(.+)$/.exec(key);
  if (!m || typeof value !== 'number' || key === 'VIRTIO_F_IOMMU_PLATFORM') continue;
  FEATURE_NAMES.set(value, m[1] === 'RING_F_' ? `RING_${m[2]}` : m[2]!);
}

/** The names of the bits set in `features`, lowest first (`bit_N` for one without a name). */
export function featureNames(features: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((features >> BigInt(bit)) & 1n) out.push(FEATURE_NAMES.get(bit) ?? `bit_${bit}`);
  }
  return out;
}

/** One named device as `vdpa dev show` reports it. */
export interface VdpaDevEntry {
  name: string;
  uuid: string;
  mgmtdev: string;
  type: string;
  device_id: number;
  vendor_id: number;
  max_vq_size: number;
}

/** One device's decoded virtio-net config, as `vdpa dev config show` reports it. */
export interface VdpaConfigEntry {
  name: string;
  mac: string;
  link: 'up' | 'down';
  link_announce: boolean;
  mtu: number;
  negotiated_features: string[];
}

/** One queue's counters, as `vdpa dev vstats show` reports them. */
export interface VdpaVstatsEntry {
  name: string;
  queue_index: number;
  queue_type: 'rx' | 'tx';
  counters: Record<string, number>;
}

const macText = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

/** The named devices of one host, over the parents it loaded. */
export class VdpaDevices {
  private readonly devs = new Map<string, { uuid: string; mgmtdev: string }>();

  constructor(
    private readonly parents: () => { name: string; parent: PktgenParent }[],
    private readonly create: (
      parent: string,
      type: string,
      uuid: string,
      attrs: Attr[],
    ) => MdevDevice,
    private readonly remove: (mdev: MdevDevice) => void,
  ) {}

  /** The parents on the mediated virtio bus, by their device name, with their first type. */
  mgmtdevs(): { name: string; type: string }[] {
    const seen = new Map<string, string>();
    for (const t of listTypes()) {
      if (t.attrs.device_api === 'virtio-mdev' && !seen.has(t.parent)) seen.set(t.parent, t.type);
    }
    return [...seen].map(([name, type]) => ({ name, type }));
  }

  add(args: Args<'dev-add'>): VdpaDevEntry {
    const { name, mgmtdev } = args;
    if (name === undefined || !NAME.test(name))
      throw new KernelError('EINVAL', `dev add: a name of 1 to 64 letters, digits, "_.:-"`);
    if (mgmtdev === undefined) throw new KernelError('EINVAL', 'dev add: give the mgmtdev');
    this.prune();
    if (this.devs.has(name)) throw new KernelError('EEXIST', `dev add: ${name} exists`);
    const m = this.mgmtdevs().find((d) => d.name === mgmtdev);
    if (!m) throw new KernelError('ENODEV', `dev add: no management device ${mgmtdev}`);
    const attrs: Attr[] = [];
    if (args.mac !== undefined) attrs.push(['mac', args.mac]);
    if (args.mtu !== undefined) attrs.push(['mtu', String(args.mtu)]);
    if (attrs.length && !provisionerOf(this.parents(), mgmtdev))
      throw new KernelError('EOPNOTSUPP', `dev add: ${mgmtdev} takes no mac or mtu attribute`);
    const uuid = randomUUID();
    this.create(mgmtdev, m.type, uuid, attrs);
    this.devs.set(name, { uuid, mgmtdev });
    return this.entry(name);
  }

  show(args: Args<'dev-show'>): VdpaDevEntry[] {
    this.prune();
    if (args.name !== undefined) return [this.entry(args.name)];
    return [...this.devs.keys()].map((n) => this.entry(n));
  }

  config(args: Args<'dev-config-show'>): VdpaConfigEntry {
    const { mdev, name } = this.lookup(args.name);
    const ops = mdevVirtioGetOps(mdev);
    if (ops.getDeviceId(mdev) !== VIRTIO_ID_NET)
      throw new KernelError('EOPNOTSUPP', `dev config show: ${name} is not a network device`);
    const cfg = new Uint8Array(NET_CONFIG_BYTES);
    ops.getConfig(mdev, 0, cfg);
    const dv = new DataView(cfg.buffer);
    const status = dv.getUint16(VIRTIO_NET_CONFIG_STATUS, true);
    // The features the bound driver negotiated (vdev->features), none while no driver is bound.
    const net = netdevList().find((d) => d instanceof VirtNet && d.vdev.parent === mdev);
    return {
      name,
      mac: macText(cfg.subarray(VIRTIO_NET_CONFIG_MAC, VIRTIO_NET_CONFIG_MAC + 6)),
      link: status & VIRTIO_NET_S_LINK_UP ? 'up' : 'down',
      link_announce: (status & VIRTIO_NET_S_ANNOUNCE) !== 0,
      mtu: dv.getUint16(VIRTIO_NET_CONFIG_MTU, true),
      negotiated_features: featureNames(net instanceof VirtNet ? net.vdev.features : 0n),
    };
  }

  /**
   * The counters of one queue, as `vdpa dev vstats show NAME qidx Q` prints them: virtio-net's
   * queue 0 is receiveq1 and queue 1 transmitq1 (virtio 1.2 section 5.1.2), and their counters
   * are the device's `stats/rx_*` and `stats/tx_*` sysfs files.
   */
  vstats(args: Args<'dev-vstats-show'>): VdpaVstatsEntry {
    const { mdev, name } = this.lookup(args.name);
    const qidx = args.qidx;
    if (qidx === undefined) throw new KernelError('EINVAL', 'dev vstats show: give qidx');
    if (mdevVirtioGetOps(mdev).getDeviceId(mdev) !== VIRTIO_ID_NET || qidx > 1)
      throw new KernelError('EINVAL', `dev vstats show: ${name} has no queue ${qidx}`);
    const dir = `${mdev.path}/stats`;
    if (!sysfs.exists(dir))
      throw new KernelError('EOPNOTSUPP', `dev vstats show: ${name} keeps no counters`);
    const type = qidx === 0 ? 'rx' : 'tx';
    const counters: Record<string, number> = {};
    for (const file of sysfs.list(dir)) {
      if (file.startsWith(`${type}_`)) counters[file] = Number(sysfs.read(`${dir}/${file}`));
    }
    return { name, queue_index: qidx, queue_type: type, counters };
  }

  del(args: Args<'dev-del'>): { name: string } {
    const { mdev, name } = this.lookup(args.name);
    this.remove(mdev);
    this.devs.delete(name);
    return { name };
  }

  /** A device by its name, or any mdev of a management device by its UUID. */
  private lookup(name: string | undefined): { mdev: MdevDevice; name: string } {
    this.prune();
    const uuid = name === undefined ? undefined : (this.devs.get(name)?.uuid ?? name);
    const mdev = mdevDevices().find(
      (m) =>
        m.active &&
        m.uuid === uuid &&
        this.mgmtdevs().some((d) => d.name === m.mdevParent.dev.name),
    );
    if (!mdev || name === undefined) throw new KernelError('ENODEV', `no vdpa device ${name}`);
    return { mdev, name };
  }

  private entry(name: string): VdpaDevEntry {
    const { mdev } = this.lookup(name);
    const ops = mdevVirtioGetOps(mdev);
    const id = ops.getDeviceId(mdev);
    return {
      name,
      uuid: mdev.uuid,
      mgmtdev: this.devs.get(name)!.mgmtdev,
      type: id === VIRTIO_ID_NET ? 'network' : `virtio-${id}`,
      device_id: id,
      vendor_id: ops.getVendorId(mdev),
      max_vq_size: ops.getVqNumMax(mdev),
    };
  }

  /** Forgets the names of devices removed another way (`mdev stop`, a parent unloaded). */
  private prune(): void {
    for (const [name, dev] of this.devs) {
      if (!mdevDevices().some((m) => m.active && m.uuid === dev.uuid)) this.devs.delete(name);
    }
  }
}

/**
 * What a parent that takes creation attributes offers: the MAC and MTU of the config space of
 * the next mdev created with a UUID, given before the creation (the driver that binds during
 * the creation reads them).
 */
export interface Provisioner {
  provision(uuid: string, attrs: { mac?: Uint8Array; mtu?: number }): void;
}

/** The name of the parent device a pktgen parent's type directory belongs to. */
const parentNameOf = (p: PktgenParent) => basename(dirname(dirname(p.typePath)));

/**
 * The provisioner of the parent named `name` among `parents`: mvnet_loopback, or a vendor
 * parent (examples/vendor-vf) whose pktgen parent has a `provision` method. Null when that
 * parent takes no creation attributes.
 */
export function provisionerOf(
  parents: { parent: PktgenParent }[],
  name: string,
): Provisioner | null {
  for (const { parent } of parents) {
    const p = parent as PktgenParent & Partial<Provisioner> & { mvnet?: MvnetLoopback };
    if (p.mvnet?.parent.name === name) return p.mvnet;
    if (typeof p.provision === 'function' && parentNameOf(p) === name) {
      return { provision: (uuid, attrs) => p.provision!(uuid, attrs) };
    }
  }
  return null;
}

/**
 * Takes the creation attributes (`mac`, `mtu`) out of `attrs` and provisions them for the mdev
 * `uuid`; the other attributes are returned, to be written to the
 * device's sysfs files once it exists. EINVAL for a value that is not a MAC or an MTU.
 */
export function provisionAttrs(
  provisioner: Provisioner,
  uuid: string,
  attrs: readonly Attr[],
): Attr[] {
  const rest: Attr[] = [];
  const provision: { mac?: Uint8Array; mtu?: number } = {};
  for (const [k, v] of attrs) {
    if (k === 'mac') {
      if (!MAC.test(v))
        throw new KernelError('EINVAL', `"${v}" is not a MAC like 02:00:00:00:00:01`);
      provision.mac = Uint8Array.from(v.split(':'), (h) => Number.parseInt(h, 16));
    } else if (k === 'mtu') {
      if (!/^\d{1,5}$/.test(v)) throw new KernelError('EINVAL', `MTU "${v}" is not a number`);
      provision.mtu = Number(v);
    } else {
      rest.push([k, v]);
    }
  }
  if (provision.mac || provision.mtu !== undefined) provisioner.provision(uuid, provision);
  return rest;
}

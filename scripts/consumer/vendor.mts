/**
 * Consumer scenario "vendor": the stack a vendor builds on (mdev-core, mdev-virtio, the
 * virtio-mdev transport, virtio-net; no CLI, no sample device). Runs the root README's vendor
 * skeleton as it stands there (the consumer test copies its code block into skeleton.ts, next to
 * a minimal my-vf-ops.ts), then does what the skeleton's last line says: writes a UUID to the
 * `create` file it names, and checks that the mdev gets a virtio device that virtio-net binds,
 * opens and removes again.
 * Compiled by the consumer test with module "nodenext", then run with node.
 */
import { readFileSync } from 'node:fs';
import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { virtioMdevExit, virtioMdevInit } from '@mdev/virtio-mdev-transport';
import { netdevList, registerVirtioNetDriver, unregisterVirtioNetDriver } from '@mdev/virtio-net';
import { vfState } from './my-vf-ops.js';

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`vendor: ${what}`);
}

// modprobe virtio_mdev; modprobe virtio_net
virtioMdevInit();
registerVirtioNetDriver();
await import('./skeleton.js');

// The README's last line: "// echo $UUID > /sys/.../create".
const skeleton = readFileSync('skeleton.ts', 'utf8');
const create = /^\/\/ echo \$UUID > (\S+)$/m.exec(skeleton)?.[1];
check(create !== undefined, 'the skeleton names no create file');
check(sysfs.exists(create), `${create} does not exist`);

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa2001';
sysfs.write(create, `${UUID}\n`);
const mdev = mdevDevices().find((m) => m.uuid === UUID);
check(mdev !== undefined, 'the mdev was not created');

const vpath = `/sys/bus/mdev_virtio/devices/${UUID}/virtio0`;
check(sysfs.exists(vpath), `no ${vpath}`);
check(
  sysfs.readlink(`${vpath}/driver`) === '/sys/bus/virtio/drivers/virtio_net',
  `virtio0 is bound to ${sysfs.readlink(`${vpath}/driver`)}`,
);
const [eth, ...others] = netdevList();
check(eth !== undefined && others.length === 0, `${netdevList().length} net devices`);
check(
  Array.from(eth.mac, (b) => b.toString(16).padStart(2, '0')).join(':') === '02:00:00:00:00:01',
  'the MAC is not the one of the device config',
);

// Opening the net device posts receive buffers and rings the receive queue's doorbell.
eth.open();
check(vfState(mdev).kicks[0]! > 0, 'open did not kick the receive queue');
const status = Number(sysfs.read(`${vpath}/status`));

sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1\n');
check(netdevList().length === 0, 'the net device outlived its mdev');
check(!mdevDevices().some((m) => m.uuid === UUID), 'the mdev was not removed');
unregisterVirtioNetDriver();
virtioMdevExit();
console.log(
  JSON.stringify({ scenario: 'vendor', createFile: create, netdev: eth.name, status, uuid: UUID }),
);

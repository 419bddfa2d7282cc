/**
 * Our own vhost-user backend in a worker thread (virtio-user's requests block their thread, so
 * the backend must run in another): an mvnet_loopback device bound to vhost_mdev on
 * `workerData.path`. Posts `{ ready }`; on `'stop'` it tears down and posts its counters.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { sysfs } from '@mdev/driver-core';
import { mdevDeviceRemove, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { vhostMdevExit, vhostMdevInit, vhostMdevSetSocket } from '@mdev/vhost-mdev';
import { hostRam } from '@mdev/virtio';

const { path, uuid, offload, client } = workerData as {
  path: string;
  uuid: string;
  offload: boolean;
  client?: boolean;
};
const TYPE =
  '/sys/devices/virtual/mvnet_loopback/mvnet_loopback/mdev_supported_types/mvnet_loopback-virtio';

// Packed rings offered too, as `mdev vhost-user` does: the frontend picks the layout.
const mvnet = mvnetLoopbackInit({
  memory: hostRam.memory,
  dma: hostRam.dma,
  offload,
  packed: true,
});
vhostMdevSetSocket(uuid, { path, client: client === true });
vhostMdevInit();
sysfs.write(`${TYPE}/create`, `${uuid}\n`);
const mdev = mdevDevices().find((m) => m.uuid === uuid)!;
parentPort!.postMessage({ ready: true });
parentPort!.on('message', (m) => {
  if (m !== 'stop') return;
  const stats = { ...mvnet.stateOf(mdev).stats };
  mdevDeviceRemove(mdev);
  vhostMdevSetSocket(uuid, null);
  vhostMdevExit();
  mvnet.exit();
  mdevVirtioExit();
  parentPort!.postMessage({ stats });
  parentPort!.close();
});

/**
 * pktgen over a vhost-user backend (`mdev pktgen --vhost-user PATH`): virtio-net on the
 * virtio-user transport, whose device is another process's (DPDK's `net_vhost` in testpmd, our
 * own `mdev vhost-user`). The transport and its native addon load only when asked for.
 */
import { KernelError } from '@mdev/driver-core';
import {
  type NetDevice,
  netdevList,
  registerVirtioNetDriver,
  unregisterVirtioNetDriver,
  VirtNet,
} from '@mdev/virtio-net';
import type { VirtioUserDevice } from '@mdev/virtio-user';
import type { PktgenTarget } from './run';

export interface VhostUserStackOptions {
  /** The backend's socket. */
  path: string;
  /** Listen on `path` for a backend in client mode instead of connecting. */
  server?: boolean;
  /** The driver's queue size (default 256). */
  queueSize?: number;
  /** The ring layout (default split; packed needs a backend that offers it). */
  ring?: 'split' | 'packed';
  /** How long `server` waits for the backend (default 10 s). */
  acceptTimeoutMs?: number;
  /** How long the backend may take to send a first frame back (default 10 s). */
  liveTimeoutMs?: number;
}

/** A probe: broadcast, the local experimental EtherType (IEEE 802), no payload to check. */
const PROBE = (() => {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  return f;
})();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until a frame comes back: a forwarder may take its time, and testpmd empties its receive
 * queues when it starts forwarding, dropping whatever came before. A probe goes out every 100 ms
 * until one returns; the run's frames go out only then, once the stragglers are in.
 */
async function waitUntilLive(netdev: NetDevice, timeoutMs: number, path: string): Promise<number> {
  let back = false;
  let sent = 0;
  netdev.onReceive = () => {
    back = true;
  };
  try {
    const deadline = performance.now() + timeoutMs;
    while (!back) {
      if (performance.now() > deadline) {
        throw new KernelError(
          'ETIMEDOUT',
          `pktgen: no frame came back from ${path} in ${timeoutMs} ms`,
        );
      }
      if (netdev.xmit(PROBE) === 0) sent++;
      await sleep(100);
    }
    await sleep(100);
    return sent;
  } finally {
    netdev.onReceive = null;
  }
}

/** The stack of a vhost-user run: the virtio-user device and its net device, opened. */
export interface VhostUserStack extends PktgenTarget {
  vdev: VirtioUserDevice;
  teardown(): void;
}

/**
 * Connects to (or waits for) the backend and brings virtio-net up on it. KernelError when the
 * backend is not there, does not answer or refuses the driver.
 */
export async function setupVhostUserStack(options: VhostUserStackOptions): Promise<VhostUserStack> {
  const { virtioUserAdd, virtioUserRemove } = await import('@mdev/virtio-user');
  registerVirtioNetDriver();
  let gone: string | null = null;
  let vdev: VirtioUserDevice;
  try {
    vdev = await virtioUserAdd({
      path: options.path,
      server: options.server,
      queueSize: options.queueSize,
      ring: options.ring,
      acceptTimeoutMs: options.acceptTimeoutMs,
      onDisconnect: (reason) => {
        gone = reason;
      },
    });
  } catch (err) {
    unregisterVirtioNetDriver();
    throw err;
  }
  const netdev = netdevList().find((d) => d instanceof VirtNet && d.vdev === vdev);
  if (!netdev) {
    const why = (vdev.lastProbeError as Error | null)?.message ?? 'virtio-net did not bind';
    virtioUserRemove(vdev);
    unregisterVirtioNetDriver();
    throw new Error(`pktgen: no net device on ${options.path}: ${why}`);
  }
  netdev.open();
  let probes: number;
  try {
    probes = await waitUntilLive(netdev, options.liveTimeoutMs ?? 10_000, options.path);
  } catch (err) {
    netdev.stop();
    virtioUserRemove(vdev);
    unregisterVirtioNetDriver();
    throw err;
  }
  return {
    device: 'vhost-user',
    netdev,
    uuid: '',
    via: `vhost-user ${options.path}`,
    // Whatever the backend drops, it keeps to itself: the window keeps its receive ring from
    // overflowing, and a frame that still does not come back counts as lost.
    deviceDropped: () => 0,
    ram: vdev.ram,
    window: Math.floor((vdev.queueSize * 3) / 4),
    gone: () => gone,
    probes,
    vdev,
    teardown() {
      if (netdev.isUp) netdev.stop();
      if (vdev.isAdded) virtioUserRemove(vdev);
      unregisterVirtioNetDriver();
    },
  };
}

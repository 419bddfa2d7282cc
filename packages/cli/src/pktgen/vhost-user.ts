/**
 * pktgen over a vhost-user backend (`mdev pktgen --vhost-user PATH`): virtio-net on the
 * virtio-user transport, whose device is another process's (DPDK's `net_vhost` in testpmd, our
 * own `mdev vhost-user`). The transport and its native addon load only when asked for.
 */
import {
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
  /** How long `server` waits for the backend (default 10 s). */
  acceptTimeoutMs?: number;
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
    vdev,
    teardown() {
      if (netdev.isUp) netdev.stop();
      if (vdev.isAdded) virtioUserRemove(vdev);
      unregisterVirtioNetDriver();
    },
  };
}

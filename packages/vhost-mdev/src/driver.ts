/**
 * The `vhost_mdev` driver on the mediated virtio bus: the second driver a virtio mdev can be
 * bound to, beside virtio_mdev, as a vDPA device is bound to vhost_vdpa or virtio_vdpa. Bound,
 * the device is served on a vhost-user socket (its "character device") instead of being driven
 * in this process. Both drivers match every virtio mdev; which one a device gets is the sysfs
 * user's choice, with the writes a vDPA user knows:
 *
 *   echo vhost_mdev > /sys/bus/mdev_virtio/devices/<uuid>/driver_override
 *   echo <uuid> > /sys/bus/mdev_virtio/drivers/virtio_mdev/unbind
 *   echo <uuid> > /sys/bus/mdev_virtio/drivers_probe
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Driver } from '@mdev/driver-core';
import type { MdevDevice } from '@mdev/mdev-core';
import {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  type MdevVirtioDevice,
  mdevVirtioRegisterDriver,
  mdevVirtioUnregisterDriver,
} from '@mdev/mdev-virtio';
import { VhostMdevBackend, type VhostMdevEvent } from './backend';

/** The driver's name on the bus. */
export const VHOST_MDEV_DRIVER_NAME = 'vhost_mdev';

/** Where a device is served: set per device before it binds (`vhostMdevSetSocket`). */
export interface VhostMdevSocket {
  path: string;
  /** Connect to a frontend listening on `path` instead of listening. */
  client?: boolean;
}

export interface VhostMdevOptions {
  /**
   * The directory of the default socket paths, `<dir>/vhost-mdev-<uuid>.sock`, for devices
   * bound without a socket of their own; default `$XDG_RUNTIME_DIR`, else the temp directory.
   */
  socketDir?: string;
  /** Every backend's events, with the device they happened to. */
  onEvent?: (mdev: MdevDevice, event: VhostMdevEvent) => void;
}

let driver: Driver | null = null;
let options: VhostMdevOptions = {};
const sockets = new Map<string, VhostMdevSocket>();
const backends = new Map<MdevDevice, VhostMdevBackend>();

function defaultSocketDir(): string {
  return options.socketDir ?? process.env.XDG_RUNTIME_DIR ?? tmpdir();
}

/** The socket a device is (or will be) served on. */
export function vhostMdevSocketOf(uuid: string): VhostMdevSocket {
  return sockets.get(uuid) ?? { path: join(defaultSocketDir(), `vhost-mdev-${uuid}.sock`) };
}

/**
 * Sets where the device with `uuid` is served when it binds to vhost_mdev (`null`: the
 * default path). A device bound already keeps its socket until it is bound again.
 */
export function vhostMdevSetSocket(uuid: string, socket: VhostMdevSocket | null): void {
  if (socket === null) sockets.delete(uuid);
  else sockets.set(uuid, { ...socket });
}

/** The backend serving a bound device, if it is bound to vhost_mdev. */
export function vhostMdevBackendOf(mdev: MdevDevice): VhostMdevBackend | undefined {
  return backends.get(mdev);
}

function probe(mdev: MdevVirtioDevice): void {
  const socket = vhostMdevSocketOf(mdev.uuid);
  const backend = new VhostMdevBackend(mdev, {
    path: socket.path,
    client: socket.client === true,
    onEvent: (event) => options.onEvent?.(mdev, event),
  });
  // Listening fails (EADDRINUSE, EEXIST) before the device counts as bound: the probe fails.
  backend.start();
  backends.set(mdev, backend);
  mdev.createFile({
    name: 'vhost_socket',
    mode: 0o444,
    show: () => `${backend.path}\n`,
  });
}

function remove(mdev: MdevVirtioDevice): void {
  const backend = backends.get(mdev);
  if (!backend) return;
  backends.delete(mdev);
  mdev.removeFile('vhost_socket');
  backend.stop();
}

/** Registers the `vhost_mdev` driver (module init). Idempotent; the options apply from now. */
export function vhostMdevInit(opts: VhostMdevOptions = {}): Driver {
  options = opts;
  driver ??= mdevVirtioRegisterDriver({
    name: VHOST_MDEV_DRIVER_NAME,
    idTable: [{ id: MDEV_VIRTIO_CLASS_ID_VIRTIO }],
    probe,
    remove,
  });
  return driver;
}

/** Unregisters the driver (module exit): every served device is unbound and its device reset. */
export function vhostMdevExit(): void {
  if (!driver) return;
  mdevVirtioUnregisterDriver(driver);
  driver = null;
}

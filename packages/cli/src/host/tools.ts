/**
 * The tools that run on the host's own devices when the CLI names one (`mdev tty -u`,
 * `mdev screenshot -u`, `mdev pktgen -u`): the host does the work in its process, where the
 * devices are, and replies with the result.
 */
import { KernelError } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { type VfioDevice, vfioDeviceOpen } from '@mdev/mdev-vfio';
import { mdevVirtioGetOps } from '@mdev/mdev-virtio';
import { netdevList, VirtNet } from '@mdev/virtio-net';
import { screenshotOf } from '../commands/screenshot';
import { BASE_BAUD, type TtyStats, ttyExchange } from '../commands/tty';
import { MIN_FRAME } from '../pktgen/frame';
import {
  frameSizeLimit,
  type PktgenParent,
  type PktgenResult,
  type PktgenStack,
  runPktgen,
} from '../pktgen/run';
import { UsageError } from '../usage';
import type { Args } from './protocol';

const einval = (message: string) => new KernelError('EINVAL', message);

function requireUuid(verb: string, uuid: string | undefined): string {
  if (uuid === undefined) throw einval(`${verb}: give the uuid of a device`);
  return uuid.toLowerCase();
}

/** The bytes of a base64 argument; EINVAL for text that is not base64. */
function base64(verb: string, text: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0)
    throw einval(`${verb}: data must be base64`);
  return Buffer.from(text, 'base64');
}

/** `tty`: the bytes through an mtty port of the host and their echo, base64 both ways. */
export async function hostTty(
  args: Args<'tty'>,
): Promise<{ uuid: string; data: string; stats: TtyStats }> {
  const uuid = requireUuid('tty', args.uuid);
  const port = args.port ?? 0;
  if (port > 1) throw einval(`tty: an mtty card has ports 0 and 1, not ${port}`);
  const baud = args.baud ?? BASE_BAUD;
  if (baud === 0 || BASE_BAUD % baud !== 0)
    throw einval(`tty: the baud rate must be ${BASE_BAUD} divided by a whole number`);
  const data = base64('tty', args.data ?? '');
  const r = await ttyExchange(uuid, { port, baud, msi: args.msi ?? false }, data);
  return { uuid, data: Buffer.from(r.echo).toString('base64'), stats: r.stats };
}

/**
 * The mbochs displays the host set up, each held open as a guest's driver holds its device:
 * mbochs gives the video memory back when the last user closes the device (mbochs_close()),
 * and the picture drawn would go with it. A removed device's handle is revoked by vfio_mdev.
 */
const held = new WeakMap<MdevDevice, VfioDevice>();

/**
 * `screenshot`: the picture of a display mdev of the host as a PNG (base64). An mbochs display
 * no guest gave a mode yet gets one (`mode`, default 800x600) and the test pattern, and keeps
 * them.
 */
export function hostScreenshot(args: Args<'screenshot'>) {
  const uuid = requireUuid('screenshot', args.uuid);
  const mdev = mdevDevices().find((m) => m.active && m.uuid === uuid);
  if (mdev?.type.name.startsWith('mbochs-') && !held.has(mdev))
    held.set(mdev, vfioDeviceOpen(uuid));
  let shot: ReturnType<typeof screenshotOf>;
  try {
    shot = screenshotOf(uuid, { mode: args.mode, read: args.read, setup: true });
  } catch (err) {
    // A mode the display cannot show, said as the command line says it.
    if (err instanceof UsageError) throw einval(`screenshot: ${err.message}`);
    throw err;
  }
  const { png, ...rest } = shot;
  return { ...rest, png: png.toString('base64') };
}

/** What a pktgen run on the host replies: the figures and how the device runs. */
export interface HostPktgenResult {
  result: PktgenResult;
  queueSize: number;
}

/** The devices a pktgen run goes over now: one run per device at a time. */
const busy = new Set<string>();

/**
 * `pktgen`: a run over a virtio-net device of the host (mvnet_loopback, a vendor parent's),
 * through the net device virtio-net made of it. The device stays when the run ends; its net
 * device is opened for the run when it is down, and taken down again after. `signal` (the
 * client went away or ended its side) stops the run as Ctrl-C does.
 */
export async function hostPktgen(
  args: Args<'pktgen'>,
  parents: { name: string; parent: PktgenParent }[],
  signal?: AbortSignal,
): Promise<HostPktgenResult> {
  const uuid = requireUuid('pktgen', args.uuid);
  const mdev = mdevDevices().find((m) => m.active && m.uuid === uuid);
  if (!mdev) throw new KernelError('ENODEV', `pktgen: no device ${uuid}`);
  const netdev = netdevList().find((d) => d instanceof VirtNet && d.vdev.parent === mdev);
  if (!netdev)
    throw new KernelError('ENODEV', `pktgen: ${uuid} has no net device (virtio-net not bound)`);
  const own = parents.find(({ parent }) =>
    parent.typePath.startsWith(`${mdev.mdevParent.dev.path}/`),
  );
  if (!own) throw new KernelError('ENODEV', `pktgen: ${uuid} is not on a pktgen parent`);
  const size = args.size ?? 64;
  const limit = frameSizeLimit(netdev);
  if (size < MIN_FRAME || size > limit)
    throw einval(`pktgen: the frame size must be from ${MIN_FRAME} to ${limit}`);
  if (args.count !== undefined && args.count < 1)
    throw einval('pktgen: the count must be 1 or more');
  const burst = args.burst ?? 32;
  if (burst < 1) throw einval('pktgen: the burst must be 1 or more');
  if (args.duration !== undefined && args.duration <= 0)
    throw einval('pktgen: the duration must be more than 0 seconds');
  if (busy.has(uuid)) throw new KernelError('EBUSY', `pktgen: a run over ${uuid} goes on`);
  busy.add(uuid);
  const wasUp = netdev.isUp;
  try {
    if (!wasUp) netdev.open();
    const stack: PktgenStack = {
      device: own.name,
      deviceDropped: () => own.parent.txDropped(mdev),
      parent: own.parent,
      mvnet: null,
      mdev,
      netdev,
      uuid,
      teardown() {},
    };
    const result = await runPktgen(stack, {
      count: args.count ?? 1_000_000,
      duration: args.duration,
      size,
      burst,
      verify: args.verify ?? true,
      signal,
    });
    return { result, queueSize: queueSizeOf(mdev) };
  } finally {
    if (!wasUp && netdev.isUp) netdev.stop();
    busy.delete(uuid);
  }
}

function queueSizeOf(mdev: MdevDevice): number {
  return mdevVirtioGetOps(mdev).getVqNumMax(mdev);
}

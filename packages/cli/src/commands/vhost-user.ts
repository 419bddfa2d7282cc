import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sysfs } from '@mdev/driver-core';
import { mdevDeviceRemove, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import type { VhostMdevEvent } from '@mdev/vhost-mdev';
import type { CommandIo } from '../io';
import { pktgenDeviceList } from '../pktgen/run';
import { filePath, UsageError } from '../usage';
import { loadDriverOptions } from './host';

export const summary = 'serve a device to a vhost-user frontend (QEMU, DPDK virtio-user)';

export const usage = `usage: mdev vhost-user --socket PATH [options]
  --socket PATH    the vhost-user socket (listened on; a stale file is replaced)
  --client         connect to a frontend listening on PATH instead (reconnects)
  --device NAME    the parent driver whose device is served (default mvnet_loopback)
  --driver MODULE  load a vendor parent driver first (repeatable; see mdev host --help)
  --offload        run the device's datapath in a worker thread (the "hardware")
  --queue-size N   the device's queue size, a power of two 2-32768 (default 256)
  --json           print events and the final counters as JSON lines

Serves until SIGINT or SIGTERM, then prints the device's counters and exits 0.
`;

const INTEGER = /^\d+$/;

function parseOptions(args: string[], io: CommandIo) {
  const { values } = parseArgs({
    args,
    options: {
      socket: { type: 'string' },
      client: { type: 'boolean', default: false },
      device: { type: 'string' },
      driver: { type: 'string', multiple: true },
      offload: { type: 'boolean', default: false },
      'queue-size': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return { ...values, socket: '', device: '', queueSize: 0 };
  if (values.socket === undefined || values.socket === '')
    throw new UsageError('--socket PATH is required');
  const socket = filePath(io, '--socket', values.socket);
  const q = values['queue-size'];
  const queueSize = q === undefined ? 256 : INTEGER.test(q) ? Number(q) : Number.NaN;
  if (!(queueSize >= 2 && queueSize <= 32768) || (queueSize & (queueSize - 1)) !== 0)
    throw new UsageError('--queue-size must be a power of two from 2 to 32768');
  const device = values.device ?? 'mvnet_loopback';
  const known = pktgenDeviceList().map(([name]) => name);
  if (!known.includes(device))
    throw new UsageError(`no device '${device}' (known: ${known.join(', ')})`);
  return { ...values, socket, device, queueSize };
}

/** One line for a person, or null for events not worth a line. */
function describe(e: VhostMdevEvent): string | null {
  switch (e.type) {
    case 'listening':
      return `listening on ${e.path}`;
    case 'connected':
      return 'frontend connected';
    case 'disconnected':
      return `frontend gone: ${e.reason}`;
    case 'refused':
      return `refused ${e.request}: ${e.error}`;
    case 'ring-started':
      return `ring ${e.index} started (${e.layout})`;
    case 'ring-stopped':
      return `ring ${e.index} stopped at ${e.state}`;
  }
}

/** The device's counters: every file of its sysfs `stats` directory, as numbers. */
function deviceCounters(path: string): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const name of sysfs.list(`${path}/stats`)) {
      const v = Number(sysfs.read(`${path}/stats/${name}`).trim());
      if (Number.isFinite(v)) out[name] = v;
    }
  } catch {
    // A device without a stats directory has only the backend's counters.
  }
  return out;
}

/**
 * `mdev vhost-user`: creates one device of the chosen parent, binds it to vhost_mdev on the
 * socket and serves frontends one after another until SIGINT or SIGTERM. Exit 0 after a clean
 * stop; 1 when the socket cannot be served (in use, not a socket) or a driver fails to load.
 */
export async function run(args: string[], io: CommandIo): Promise<number> {
  if (!(await loadDriverOptions('vhost-user', args, io))) return 1;
  const values = parseOptions(args, io);
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  // Imported here, not at the top: its native addon is needed by this command only.
  let vhost: typeof import('@mdev/vhost-mdev');
  try {
    vhost = await import('@mdev/vhost-mdev');
  } catch (err) {
    io.stderr.write(`mdev vhost-user: ${(err as Error).message}\n`);
    return 1;
  }
  const { vhostMdevBackendOf, vhostMdevExit, vhostMdevInit, vhostMdevSetSocket } = vhost;
  const say = (line: object | string) =>
    io.stdout.write(values.json ? `${JSON.stringify(line)}\n` : `${line as string}\n`);
  const device = new Map(pktgenDeviceList()).get(values.device)!;
  // The device offers packed rings too (VIRTIO_F_RING_PACKED): the frontend picks the layout.
  const parent = device.init({
    offload: values.offload,
    queueSize: values.queueSize,
    ring: 'packed',
  });
  const uuid = randomUUID();
  vhostMdevSetSocket(uuid, { path: values.socket, client: values.client });
  vhostMdevInit({
    onEvent: (_mdev, e) => {
      if (values.json) say({ event: e.type, ...e });
      else {
        const line = describe(e);
        if (line !== null) say(line);
      }
    },
  });
  // Listened for before the socket exists: a SIGTERM sent as soon as it appears must stop the
  // device cleanly, not meet the default action (the process killed, the socket file left).
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = () => resolve();
  });
  io.signal?.addEventListener('abort', stop);
  process.on('SIGTERM', stop);
  try {
    sysfs.write(`${parent.typePath}/create`, `${uuid}\n`);
    const mdev = mdevDevices().find((m) => m.uuid === uuid)!;
    const backend = vhostMdevBackendOf(mdev);
    if (!backend) {
      const why = (mdev.lastProbeError as Error | null)?.message ?? 'the device did not bind';
      io.stderr.write(`mdev vhost-user: ${values.socket}: ${why}\n`);
      return 1;
    }
    if (!values.json)
      say(`serving mdev ${uuid} (${values.device}${values.offload ? ', worker datapath' : ''})`);
    await stopped;
    // The session ends first (its events come before the counters), as the device is reset.
    const rings = backend.stats;
    backend.stop();
    const counters = deviceCounters(mdev.path);
    if (values.json) say({ event: 'stopped', uuid, counters, rings });
    else {
      for (const [k, v] of Object.entries(counters)) say(`${k.padEnd(14)}${v}`);
      for (const r of rings) say(`ring ${r.index}        kicks ${r.kicks}, calls ${r.calls}`);
    }
    return 0;
  } finally {
    io.signal?.removeEventListener('abort', stop);
    process.off('SIGTERM', stop);
    vhostMdevSetSocket(uuid, null);
    for (const m of mdevDevices()) if (m.uuid === uuid && m.isAdded) mdevDeviceRemove(m);
    vhostMdevExit();
    parent.exit();
    mdevVirtioExit();
  }
}

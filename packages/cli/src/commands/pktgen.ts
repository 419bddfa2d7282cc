import { parseArgs } from 'node:util';
import { HostRequestError, HostUnavailableError, hostRequest } from '../host/client';
import type { Args } from '../host/protocol';
import type { HostPktgenResult } from '../host/tools';
import type { CommandIo } from '../io';
import { MAX_FRAME, MIN_FRAME } from '../pktgen/frame';
import { PcapError } from '../pktgen/pcap';
import {
  frameSizeLimit,
  type PktgenResult,
  type PktgenTarget,
  pktgenDeviceList,
  runPktgen,
  setupStack,
} from '../pktgen/run';
import { setupVhostUserStack } from '../pktgen/vhost-user';
import { filePath, integerOption, UsageError, uuidOption } from '../usage';
import { loadDriverOptions } from './host';
import { controlPath } from './mdevctl';

export const summary =
  'send frames through virtio-net over mvnet_loopback and verify what comes back';

export const usage = `usage: mdev pktgen [options]
  --count N        frames to send (default 1000000)
  --duration S     send for S seconds instead of a count (not with --count)
  --size B         frame size, ${MIN_FRAME}-${MAX_FRAME} bytes or the device's maximum (default 64)
  --burst N        frames per doorbell (default 32)
  --queue-size N   the device's queue size, a power of two 2-32768 (default 256)
  --ring LAYOUT    the virtqueue layout, split or packed (VIRTIO_F_RING_PACKED; default split)
  --offload        run the device's datapath in a worker thread (the "hardware")
  --device NAME    the parent driver to run over (default mvnet_loopback)
  --vhost-user PATH
                   run over a vhost-user backend on PATH instead (DPDK's net_vhost in
                   testpmd, 'mdev vhost-user'): virtio-net on the virtio-user transport
  --server         with --vhost-user: listen on PATH for a backend in client mode
  --driver MODULE  load a vendor parent driver first (repeatable; see mdev host --help)
  --pcap FILE      write the received frames to a pcap file (a FIFO: once a reader opens it)
  --no-verify      check order only, not frame contents
  --json           print one JSON line instead of text
  -u, --uuid UUID  run over this virtio-net device of the running host (mdev dev add, mdev
                   start): the host sends and checks the frames, this prints the figures
  --control PATH   the host's control socket (default: as 'mdev host' has it)
`;

// Plain decimals only: Number() also takes "1.5", "0x40", "1e3" and " 8 ", none of which a size
// or a duration should be.
const INTEGER = /^\d+$/;
const DECIMAL = /^(\d+(\.\d*)?|\.\d+)$/;

/** The frame size asked for, checked against what the device takes (known once it is set up). */
function frameSize(text: string | undefined, limit: number): number {
  const n = text === undefined ? 64 : INTEGER.test(text) ? Number(text) : Number.NaN;
  if (!(n >= MIN_FRAME && n <= limit))
    throw new UsageError(`--size must be an integer from ${MIN_FRAME} to ${limit}`);
  return n;
}

/** What the command line asks for; UsageError (or parseArgs' error) when it cannot be run. */
function parseOptions(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      count: { type: 'string' },
      duration: { type: 'string' },
      size: { type: 'string' },
      burst: { type: 'string' },
      'queue-size': { type: 'string' },
      ring: { type: 'string' },
      offload: { type: 'boolean', default: false },
      device: { type: 'string' },
      driver: { type: 'string', multiple: true },
      'vhost-user': { type: 'string' },
      server: { type: 'boolean', default: false },
      pcap: { type: 'string' },
      'no-verify': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      uuid: { type: 'string', short: 'u' },
      control: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.count !== undefined && values.duration !== undefined)
    throw new UsageError('give --count or --duration, not both');
  const count = integerOption('count', values.count, 1_000_000, 1);
  let duration: number | undefined;
  if (values.duration !== undefined) {
    duration = DECIMAL.test(values.duration) ? Number(values.duration) : Number.NaN;
    if (!(duration > 0 && Number.isFinite(duration)))
      throw new UsageError('--duration must be a positive number of seconds');
  }
  const burst = integerOption('burst', values.burst, 32, 1);
  const q = values['queue-size'];
  const queueSize = q === undefined ? 256 : INTEGER.test(q) ? Number(q) : Number.NaN;
  if (!(queueSize >= 2 && queueSize <= 32768) || (queueSize & (queueSize - 1)) !== 0)
    throw new UsageError('--queue-size must be a power of two from 2 to 32768');
  if (values['vhost-user'] !== undefined) {
    if (values['vhost-user'] === '') throw new UsageError('--vhost-user needs a socket path');
    for (const [name, given] of [
      ['--offload', values.offload],
      ['--device', values.device !== undefined],
      ['--driver', values.driver !== undefined],
      ['-u', values.uuid !== undefined],
    ] as const) {
      if (given)
        throw new UsageError(`${name} is about a device of this process: not with --vhost-user`);
    }
  } else if (values.server) {
    throw new UsageError('--server goes with --vhost-user');
  }
  const ring = values.ring ?? 'split';
  if (ring !== 'split' && ring !== 'packed')
    throw new UsageError(`--ring must be split or packed, not '${ring}'`);
  const device = values.device ?? 'mvnet_loopback';
  const known = pktgenDeviceList().map(([name]) => name);
  if (!known.includes(device))
    throw new UsageError(`no device '${device}' (known: ${known.join(', ')})`);
  return { ...values, count, duration, burst, queueSize, device, ring: ring as 'split' | 'packed' };
}

/** What the command line asks for, with the --pcap file and the socket as absolute paths. */
function parseCommandLine(args: string[], io: CommandIo) {
  const values = parseOptions(args);
  const pcap = values.pcap === undefined ? undefined : filePath(io, '--pcap', values.pcap);
  const vhostUser =
    values['vhost-user'] === undefined
      ? undefined
      : filePath(io, '--vhost-user', values['vhost-user']);
  return { ...values, pcap, vhostUser };
}

/** Formats a result for a person. */
export function formatResult(
  r: PktgenResult,
  mode: string,
  queueSize: number,
  ring?: 'split' | 'packed',
): string {
  const rows: [string, string][] = [
    ['parent', r.parent],
    ['device', `${r.netdev} (${r.via ?? `mdev ${r.uuid}`}), ${r.size}-byte frames`],
    ['datapath', `${mode}, ${ring ? `${ring} ` : ''}queues of ${queueSize}`],
    ['tx', `${r.tx}`],
    ['rx', `${r.rx}`],
    ['dropped', `${r.dropped}`],
    ['corrupted', `${r.corrupted}${r.reordered ? ` (out of order ${r.reordered})` : ''}`],
    ['lost', `${r.lost}`],
    ['time', `${r.seconds.toFixed(3)} s`],
    ['rate', `${r.mpps.toFixed(3)} Mpps, ${r.gbps.toFixed(3)} Gbit/s`],
  ];
  if (r.pcap) rows.push(['pcap', `${r.pcap.frames} frames written to ${r.pcap.path}`]);
  const width = Math.max(...rows.map(([label]) => label.length)) + 1;
  const lines = rows.map(([label, value]) => `${label.padEnd(width)}${value}`);
  return `${lines.join('\n')}\n`;
}

/** The options that shape the stack, which the host holds when pktgen runs there. */
const STACK_OPTIONS = ['--offload', '--device', '--driver', '--queue-size', '--ring', '--pcap'];

/**
 * `mdev pktgen -u UUID`: the run goes on in the host, over its device; Ctrl-C ends the
 * request's side of the connection, and the host stops and replies with what it did.
 */
async function runOnHost(
  args: string[],
  values: ReturnType<typeof parseCommandLine>,
  io: CommandIo,
): Promise<number> {
  const uuid = uuidOption(values.uuid)!.toLowerCase();
  for (const a of args) {
    const name = a.split('=')[0]!;
    if (STACK_OPTIONS.includes(name))
      throw new UsageError(`${name} shapes the device, which the host holds: not with -u`);
  }
  const request: Args<'pktgen'> = {
    uuid,
    count: values.count,
    burst: values.burst,
    verify: !values['no-verify'],
  };
  if (values.duration !== undefined) request.duration = values.duration;
  if (values.size !== undefined) {
    request.size = INTEGER.test(values.size) ? Number(values.size) : Number.NaN;
    if (!(request.size >= MIN_FRAME && request.size <= MAX_FRAME))
      throw new UsageError(`--size must be an integer from ${MIN_FRAME} to ${MAX_FRAME}`);
  }
  let reply: HostPktgenResult;
  try {
    reply = (await hostRequest(
      controlPath(io, values.control),
      'pktgen',
      request,
      io.signal,
    )) as HostPktgenResult;
  } catch (err) {
    if (!(err instanceof HostRequestError || err instanceof HostUnavailableError)) throw err;
    io.stderr.write(`mdev pktgen: ${err.message}\n`);
    return 1;
  }
  const { result, queueSize } = reply;
  const mode = 'on the host';
  io.stdout.write(
    values.json
      ? `${JSON.stringify({ name: 'pktgen', mode, queueSize, ...result })}\n`
      : formatResult(result, mode, queueSize),
  );
  if (result.interrupted) {
    io.stderr.write(`mdev pktgen: interrupted after ${result.tx} frames\n`);
    return 130;
  }
  if (result.gone !== undefined) {
    io.stderr.write(
      `mdev pktgen: the device went away after ${result.tx} frames: ${result.gone}\n`,
    );
    return 1;
  }
  return result.lost === 0 && result.corrupted === 0 && result.reordered === 0 ? 0 : 1;
}

/**
 * `mdev pktgen`: the main job. Exit status 1 when a frame was lost, corrupted or out of order;
 * 2 for a command line it cannot run or a pcap file it cannot write; 130 when interrupted
 * (`io.signal`, Ctrl-C), after printing what was sent and received so far.
 */
export async function run(args: string[], io: CommandIo): Promise<number> {
  // Vendor drivers first: the devices they register are what --device is checked against.
  if (!(await loadDriverOptions('pktgen', args, io))) return 1;
  // A command line it cannot run throws (UsageError, parseArgs' errors): `main` reports it with
  // the usage, exit status 2.
  const values = parseCommandLine(args, io);
  if (values.help) {
    io.stdout.write(usage);
    io.stdout.write('\ndevices:\n');
    for (const [name, d] of pktgenDeviceList())
      io.stdout.write(`  ${name.padEnd(16)} ${d.summary}\n`);
    return 0;
  }
  if (values.uuid !== undefined) return runOnHost(args, values, io);
  const { count, duration, burst, queueSize, offload, ring } = values;
  const tty = !values.json && (io.stdout as NodeJS.WriteStream).isTTY === true;
  let progressShown = false;
  let stack: PktgenTarget & { teardown(): void };
  if (values.vhostUser !== undefined) {
    try {
      stack = await setupVhostUserStack({
        path: values.vhostUser,
        server: values.server,
        queueSize,
        ring,
      });
    } catch (err) {
      io.stderr.write(`mdev pktgen: ${(err as Error).message}\n`);
      return 1;
    }
  } else {
    stack = setupStack(undefined, { device: values.device, offload, queueSize, ring });
  }
  let result: PktgenResult;
  try {
    const size = frameSize(values.size, frameSizeLimit(stack.netdev));
    result = await runPktgen(stack, {
      count,
      duration,
      size,
      burst,
      verify: !values['no-verify'],
      pcap: values.pcap,
      onPcapWait: () =>
        io.stderr.write(`mdev pktgen: waiting for a reader of the FIFO ${values.pcap}\n`),
      signal: io.signal,
      onProgress: tty
        ? (sent, received, target, elapsed) => {
            const width = 30;
            // A count fills the bar by frames, a duration by time.
            const frac = Math.min(1, duration ? elapsed / duration : sent / target);
            const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
            io.stdout.write(`\r[${bar}] tx ${sent} rx ${received}`);
            progressShown = true;
          }
        : undefined,
    });
  } catch (err) {
    if (progressShown) io.stdout.write('\r\x1b[K');
    if (err instanceof PcapError) {
      io.stderr.write(`mdev pktgen: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    stack.teardown();
  }
  if (progressShown) io.stdout.write('\r\x1b[K');
  const mode = values.vhostUser !== undefined ? 'vhost-user' : offload ? 'worker' : 'same-thread';
  io.stdout.write(
    values.json
      ? `${JSON.stringify({ name: 'pktgen', mode, ring, queueSize, ...result })}\n`
      : formatResult(result, mode, queueSize, ring),
  );
  if (result.interrupted) {
    io.stderr.write(`mdev pktgen: interrupted after ${result.tx} frames\n`);
    return 130;
  }
  if (result.gone !== undefined) {
    io.stderr.write(
      `mdev pktgen: the device went away after ${result.tx} frames: ${result.gone}\n`,
    );
    return 1;
  }
  return result.lost === 0 && result.corrupted === 0 && result.reordered === 0 ? 0 : 1;
}

import { parseArgs } from 'node:util';
import type { CommandIo } from '../io';
import { MAX_FRAME, MIN_FRAME } from '../pktgen/frame';
import { type PktgenResult, pktgenDeviceList, runPktgen, setupStack } from '../pktgen/run';

export const summary =
  'send frames through virtio-net over mvnet_loopback and verify what comes back';

export const usage = `usage: mdev pktgen [options]
  --count N        frames to send (default 1000000)
  --duration S     send for S seconds instead of a count
  --size B         frame size, ${MIN_FRAME}-${MAX_FRAME} bytes (default 64)
  --burst N        frames per doorbell (default 32)
  --queue-size N   the device's queue size, a power of two 2-32768 (default 256)
  --offload        run the device's datapath in a worker thread (the "hardware")
  --device NAME    the parent driver to run over (default mvnet_loopback)
  --pcap FILE      write the received frames to a pcap file
  --no-verify      check order only, not frame contents
  --json           print one JSON line instead of text
`;

function positive(name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min)
    throw new RangeError(`pktgen: --${name} must be a number >= ${min}`);
  return n;
}

/** Formats a result for a person. */
export function formatResult(r: PktgenResult, mode: string, queueSize: number): string {
  const rows: [string, string][] = [
    ['device', `${r.device} (mdev ${r.uuid}), ${r.size}-byte frames`],
    ['datapath', `${mode}, queues of ${queueSize}`],
    ['tx', `${r.tx}`],
    ['rx', `${r.rx}`],
    ['dropped', `${r.dropped}`],
    ['corrupted', `${r.corrupted}${r.reordered ? ` (out of order ${r.reordered})` : ''}`],
    ['lost', `${r.lost}`],
    ['time', `${r.seconds.toFixed(3)} s`],
    ['rate', `${r.mpps.toFixed(3)} Mpps, ${r.gbps.toFixed(3)} Gbit/s`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 1;
  const lines = rows.map(([label, value]) => `${label.padEnd(width)}${value}`);
  return `${lines.join('\n')}\n`;
}

/** `mdev pktgen`: the main job. Exit code 1 when a frame was lost, corrupted or out of order. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      count: { type: 'string' },
      duration: { type: 'string' },
      size: { type: 'string' },
      burst: { type: 'string' },
      'queue-size': { type: 'string' },
      offload: { type: 'boolean', default: false },
      device: { type: 'string' },
      pcap: { type: 'string' },
      'no-verify': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    io.stdout.write('\ndevices:\n');
    for (const [name, d] of pktgenDeviceList())
      io.stdout.write(`  ${name.padEnd(16)} ${d.summary}\n`);
    return 0;
  }
  const count = positive('count', values.count, 1_000_000);
  const duration =
    values.duration === undefined ? undefined : positive('duration', values.duration, 0, 0.001);
  const size = positive('size', values.size, 64, MIN_FRAME);
  const burst = positive('burst', values.burst, 32);
  const queueSize = positive('queue-size', values['queue-size'], 256, 2);
  if (!Number.isInteger(queueSize) || queueSize > 32768 || (queueSize & (queueSize - 1)) !== 0) {
    throw new RangeError('pktgen: --queue-size must be a power of two from 2 to 32768');
  }
  const tty = !values.json && (io.stdout as NodeJS.WriteStream).isTTY === true;
  const offload = values.offload;
  const stack = setupStack(undefined, { device: values.device, offload, queueSize });
  let result: PktgenResult;
  try {
    result = await runPktgen(stack, {
      count,
      duration,
      size,
      burst,
      verify: !values['no-verify'],
      pcap: values.pcap,
      onProgress: tty
        ? (sent, received, target) => {
            const width = 30;
            const frac = Number.isFinite(target) ? Math.min(1, sent / target) : 0;
            const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
            io.stdout.write(`\r[${bar}] tx ${sent} rx ${received}`);
          }
        : undefined,
    });
  } finally {
    stack.teardown();
  }
  if (tty) io.stdout.write('\r\x1b[K');
  io.stdout.write(
    values.json
      ? `${JSON.stringify({ name: 'pktgen', mode: offload ? 'worker' : 'same-thread', queueSize, ...result })}\n`
      : formatResult(result, offload ? 'worker' : 'same-thread', queueSize),
  );
  return result.lost === 0 && result.corrupted === 0 && result.reordered === 0 ? 0 : 1;
}

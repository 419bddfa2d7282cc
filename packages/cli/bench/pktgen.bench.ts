// `pnpm bench` in @mdev/cli: pktgen over virtio-net + mvnet_loopback for 64, 512 and 1514-byte
// frames with the datapath in the same thread and in a worker, one JSON line per case; then, in
// each mode, a long 64-byte run that reports the heap (after a full GC) before and after, to show
// that the steady state keeps nothing per frame. Each line also gives the CPU time per frame.
// Options: `--frames N` (per case, default 2,000,000), `--long N` (frames of the heap run,
// default 10,000,000; 0 skips it), `--sizes 64,512` (default 64,512,1514), `--modes same-thread`
// (default same-thread,worker), `--rings split` (the ring layouts, default split,packed: each
// case runs split then packed, side by side), `--repeat N` (runs of each case, default 1).
//
// Node runs as it does for `mdev`, with V8's default background compilation. Code compiled in
// the background does not inline a typed array's `byteOffset` (a call of about 7 ns each time);
// the per-frame paths therefore read it once per view, and a test in each package checks that.
import { parseArgs } from 'node:util';
import { type PktgenStack, runPktgen, setupStack } from '../src/pktgen/run';

const { values } = parseArgs({
  options: {
    frames: { type: 'string' },
    long: { type: 'string' },
    sizes: { type: 'string' },
    modes: { type: 'string' },
    rings: { type: 'string' },
    repeat: { type: 'string' },
  },
});
const frames = Number(values.frames ?? 2_000_000);
const long = Number(values.long ?? 10_000_000);
const repeat = Number(values.repeat ?? 1);
const sizes = (values.sizes ?? '64,512,1514').split(',').map(Number);
const modes = (values.modes ?? 'same-thread,worker').split(',');
const rings = (values.rings ?? 'split,packed').split(',') as ('split' | 'packed')[];
if (
  !Number.isInteger(frames) ||
  frames <= 0 ||
  !Number.isInteger(long) ||
  long < 0 ||
  !Number.isInteger(repeat) ||
  repeat < 1 ||
  !sizes.every((n) => Number.isInteger(n) && n >= 60 && n <= 1514) ||
  !modes.every((m) => m === 'same-thread' || m === 'worker') ||
  !rings.every((r) => r === 'split' || r === 'packed')
) {
  console.error(
    'usage: bench [--frames N] [--long N] [--sizes 64,512,1514] [--modes same-thread,worker] [--rings split,packed] [--repeat N]',
  );
  process.exit(2);
}
const gc = (globalThis as { gc?: () => void }).gc;

function heap(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}

async function one(
  size: number,
  offload: boolean,
  count: number,
  heapCheck = false,
  ring: 'split' | 'packed' = 'split',
) {
  const stack = setupStack(undefined, { offload, ring });
  try {
    // A warm-up long enough for the JIT to settle, so the figures are of optimised code.
    await runPktgen(stack, { count: 300_000, size, burst: 32, verify: true });
    for (let run = 1; run < repeat && !heapCheck; run++) {
      await measure(stack, size, offload, count, false, ring);
    }
    await measure(stack, size, offload, count, heapCheck, ring);
  } finally {
    stack.teardown();
  }
}

async function measure(
  stack: PktgenStack,
  size: number,
  offload: boolean,
  count: number,
  heapCheck = false,
  ring: 'split' | 'packed' = 'split',
) {
  const before = heapCheck ? heap() : 0;
  const cpu0 = process.cpuUsage();
  const r = await runPktgen(stack, { count, size, burst: 32, verify: true });
  const cpu = process.cpuUsage(cpu0);
  const after = heapCheck ? heap() : 0;
  console.log(
    JSON.stringify({
      bench: 'pktgen',
      mode: offload ? 'worker' : 'same-thread',
      ring,
      size,
      tx: r.tx,
      rx: r.rx,
      dropped: r.dropped,
      corrupted: r.corrupted,
      lost: r.lost,
      seconds: +r.seconds.toFixed(3),
      mpps: +r.mpps.toFixed(3),
      gbps: +r.gbps.toFixed(3),
      // CPU time of the process (every thread) per frame: steadier than wall-clock rates on a
      // busy machine.
      cpuNsPerFrame: Math.round(((cpu.user + cpu.system) * 1000) / Math.max(1, r.tx)),
      ...(heapCheck
        ? { heapBeforeBytes: before, heapAfterBytes: after, gcForced: gc !== undefined }
        : {}),
    }),
  );
}

// Same-thread cases first, the heap run with them: once a worker mode run has shared host memory
// with another thread, rings use Atomics for their index words for the rest of the process.
if (modes.includes('same-thread')) {
  for (const size of sizes) for (const ring of rings) await one(size, false, frames, false, ring);
  if (long > 0) await one(64, false, long, true);
}
if (modes.includes('worker')) {
  for (const size of sizes) for (const ring of rings) await one(size, true, frames, false, ring);
  if (long > 0) await one(64, true, long, true);
}

// `pnpm bench` in @mdev/cli: pktgen over virtio-net + mvnet_loopback for 64, 512 and 1514-byte
// frames with the datapath in the same thread and in a worker, one JSON line per case; then a
// long 64-byte run that reports the heap (after a full GC) before and after, to show that the
// steady state allocates nothing per frame. Each line also gives the CPU time per frame. Options: `--frames N` (per case, default 2,000,000),
// `--long N` (frames of the heap run, default 10,000,000; 0 skips it).
import { parseArgs } from 'node:util';
import { runPktgen, setupStack } from '../src/pktgen/run';

const { values } = parseArgs({
  options: { frames: { type: 'string' }, long: { type: 'string' } },
});
const frames = Number(values.frames ?? 2_000_000);
const long = Number(values.long ?? 10_000_000);
if (!Number.isInteger(frames) || frames <= 0 || !Number.isInteger(long) || long < 0) {
  console.error('usage: bench [--frames N] [--long N]');
  process.exit(2);
}
const gc = (globalThis as { gc?: () => void }).gc;

function heap(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}

async function one(size: number, offload: boolean, count: number, heapCheck = false) {
  const stack = setupStack(undefined, { offload });
  try {
    // A warm-up long enough for the JIT to settle, so the figures are of optimised code.
    await runPktgen(stack, { count: 300_000, size, burst: 32, verify: true });
    const before = heapCheck ? heap() : 0;
    const cpu0 = process.cpuUsage();
    const r = await runPktgen(stack, { count, size, burst: 32, verify: true });
    const cpu = process.cpuUsage(cpu0);
    const after = heapCheck ? heap() : 0;
    console.log(
      JSON.stringify({
        bench: 'pktgen',
        mode: offload ? 'worker' : 'same-thread',
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
  } finally {
    stack.teardown();
  }
}

// Same-thread cases first, the heap run with them: once a worker mode run has shared host memory
// with another thread, rings use Atomics for their index words for the rest of the process.
for (const size of [64, 512, 1514]) await one(size, false, frames);
if (long > 0) await one(64, false, long, true);
for (const size of [64, 512, 1514]) await one(size, true, frames);

// `pnpm bench` in @mdev/cli, the loop cells side by side in one run (64-byte frames):
//   - DPDK: testpmd virtio-user (io forwarding, --tx-first) <-> testpmd vhost-user (io
//     forwarding), one core each (the vhost side on CPU 0, the virtio-user side on CPU 1); the
//     rate is the virtio-user port's Rx-pps, the median of its periodic samples after a warm-up;
//   - `mdev pktgen`, the datapath in the same thread (one core);
//   - `mdev pktgen --offload`, the datapath in a worker (the other core).
// One JSON line per cell with its Mpps and its ratio to the DPDK loop (null when DPDK is absent:
// that cell is then skipped with the reason). The pktgen cells run in this process after a
// warm-up, same thread first (once host memory is shared with a worker, the rings use Atomics
// for their index words for the rest of the process). Informational, never a test.
// Options: `--seconds N` (DPDK cell, default 10), `--frames N` (pktgen cells, default 4,000,000),
// `--repeat N` (pktgen runs of each mode, the best reported, default 3).
import { parseArgs } from 'node:util';
import { isMissing, peer, startTestpmd } from '@mdev/test-peers';
import { runPktgen, setupStack } from '../src/pktgen/run';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    frames: { type: 'string' },
    repeat: { type: 'string' },
  },
});
const seconds = Number(values.seconds ?? 10);
const frames = Number(values.frames ?? 4_000_000);
const repeat = Number(values.repeat ?? 3);
if (
  !Number.isInteger(seconds) ||
  seconds < 6 ||
  !Number.isInteger(frames) ||
  frames <= 0 ||
  !Number.isInteger(repeat) ||
  repeat < 1
) {
  console.error('usage: loop.bench [--seconds N (>= 6)] [--frames N] [--repeat N]');
  process.exit(2);
}

const STATS_PERIOD = 2;
const MBUF_ARGS = ['--no-mlockall'];

/** The DPDK loop's received Mpps, or the reason it cannot run here. */
async function dpdkLoop(): Promise<number | string> {
  const found = peer('testpmd');
  if (isMissing(found)) return `no DPDK testpmd: ${found.reason}`;
  const sock = `/tmp/mdev-loop-bench-${process.pid}.sock`;
  const vhost = await startTestpmd({
    vdevs: [`net_vhost0,iface=${sock},queues=1`],
    lcores: '0@0,1@0',
    args: [...MBUF_ARGS, '--forward-mode=io', '--auto-start'],
    statsPeriod: STATS_PERIOD,
    timeoutMs: (seconds + 60) * 1000,
  });
  try {
    const user = await startTestpmd({
      vdevs: [`net_virtio_user0,path=${sock},queues=1`],
      lcores: '0@1,1@1',
      args: [...MBUF_ARGS, '--forward-mode=io', '--txpkts=64', '--tx-first', '--auto-start'],
      statsPeriod: STATS_PERIOD,
      timeoutMs: (seconds + 60) * 1000,
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    } finally {
      await user.stop();
    }
    const out = user.process.output;
    const samples = [...out.matchAll(/Rx-pps:\s+(\d+)/g)].map((m) => Number(m[1]));
    // The first period includes the start of forwarding.
    const steady = samples.slice(1).sort((a, b) => a - b);
    if (steady.length === 0) return `no rate samples from testpmd:\n${out.slice(-2000)}`;
    return steady[Math.floor(steady.length / 2)]! / 1e6;
  } finally {
    await vhost.stop();
  }
}

/** The best of `repeat` pktgen runs of `frames` 64-byte frames, after a warm-up. */
async function pktgen(offload: boolean) {
  const stack = setupStack(undefined, { offload });
  try {
    await runPktgen(stack, { count: 300_000, size: 64, burst: 32, verify: true });
    let best = null as Awaited<ReturnType<typeof runPktgen>> | null;
    let cpuNs = 0;
    for (let k = 0; k < repeat; k++) {
      const cpu0 = process.cpuUsage();
      const r = await runPktgen(stack, { count: frames, size: 64, burst: 32, verify: true });
      const cpu = process.cpuUsage(cpu0);
      if (best === null || r.mpps > best.mpps) {
        best = r;
        cpuNs = Math.round(((cpu.user + cpu.system) * 1000) / Math.max(1, r.tx));
      }
    }
    return { r: best!, cpuNs };
  } finally {
    stack.teardown();
  }
}

const dpdk = await dpdkLoop();
const base = typeof dpdk === 'number' ? dpdk : null;
console.log(
  JSON.stringify({
    bench: 'loop',
    cell: 'dpdk testpmd virtio-user <-> testpmd vhost-user, io, one core each',
    ...(typeof dpdk === 'number' ? { mpps: +dpdk.toFixed(3), ratio: 1 } : { skipped: dpdk }),
  }),
);
for (const offload of [false, true]) {
  const { r, cpuNs } = await pktgen(offload);
  console.log(
    JSON.stringify({
      bench: 'loop',
      cell: offload ? 'mdev pktgen --offload' : 'mdev pktgen, same thread',
      mpps: +r.mpps.toFixed(3),
      ratio: base === null ? null : +(r.mpps / base).toFixed(2),
      tx: r.tx,
      rx: r.rx,
      lost: r.lost,
      corrupted: r.corrupted,
      dropped: r.dropped,
      cpuNsPerFrame: cpuNs,
    }),
  );
}

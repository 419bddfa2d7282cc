// `pnpm bench` in @mdev/cli, the vhost-user cells: two frontends against three backends in one
// run, 64-byte frames, each side on a core of its own (the frontend on CPU 1, the backend on
// CPU 0). Frontends:
//   - DPDK's testpmd with a virtio-user port (flowgen; its received Mpps, the median of the
//     per-second samples after a warm-up),
//   - `mdev pktgen --vhost-user`: our virtio-net on the virtio-user transport (every frame
//     verified; its received Mpps over the run).
// Backends:
//   - DPDK's own net_vhost in a second testpmd (io forwarding sends every frame back),
//   - `mdev vhost-user` over mvnet_loopback, datapath in the thread,
//   - `mdev vhost-user --offload`, datapath in a worker (both threads share CPU 0 here).
// One JSON line per cell with its Mpps and the ratio to the all-DPDK cell (testpmd against
// net_vhost) on the same ring layout. Informational, never a test; skipped with the reason where
// testpmd is not installed. Options: `--seconds N` per cell (default 8), `--rings split,packed`
// (the frontend's ring layout: testpmd's `packed_vq=1`, pktgen's `--ring packed`; default both,
// each against the three backends).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { seconds: { type: 'string' }, rings: { type: 'string' } },
});
const seconds = Number(values.seconds ?? 8);
const rings = (values.rings ?? 'split,packed').split(',');
if (
  !Number.isInteger(seconds) ||
  seconds < 4 ||
  !rings.every((r) => r === 'split' || r === 'packed')
) {
  console.error('usage: vhost.bench [--seconds N] (N >= 4) [--rings split,packed]');
  process.exit(2);
}

const TESTPMD = 'dpdk-testpmd';
if (spawnSync(TESTPMD, ['--version'], { stdio: 'ignore' }).error) {
  console.log(JSON.stringify({ bench: 'vhost-user', skipped: `${TESTPMD} is not installed` }));
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'mdev-vhost-bench-'));
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function start(cmd: string, args: string[]): { child: ChildProcess; out: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let text = '';
  child.stdout!.on('data', (b) => (text += b));
  child.stderr!.on('data', (b) => (text += b));
  child.on('exit', () => children.delete(child));
  return { child, out: () => text };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(50);
  }
  return cond();
}

function dpdkArgs(prefix: string, lcores: string): string[] {
  return ['--no-huge', '-m', '1024', '--no-pci', `--file-prefix=${prefix}`, '--lcores', lcores];
}

/** testpmd's received Mpps: the median of its per-second samples after a warm-up. */
async function testpmdFrontend(sock: string, tag: string, packed: boolean): Promise<number> {
  const pmd = start(TESTPMD, [
    ...dpdkArgs(`vu-${tag}-${process.pid}`, '0@1,1@1'),
    '--vdev',
    `net_virtio_user0,path=${sock},queues=1${packed ? ',packed_vq=1' : ''}`,
    '--',
    '--no-mlockall',
    '--total-num-mbufs=16384',
    '--forward-mode=flowgen',
    '--txpkts=64',
    '--stats-period',
    '1',
    '--auto-start',
  ]);
  await sleep(seconds * 1000);
  await stop(pmd.child);
  const samples = [...pmd.out().matchAll(/Rx-pps:\s+(\d+)/g)].map((m) => Number(m[1]));
  const steady = samples.slice(2).sort((a, b) => a - b);
  if (steady.length === 0) throw new Error(`${tag}: no rate samples from testpmd\n${pmd.out()}`);
  return steady[Math.floor(steady.length / 2)]! / 1e6;
}

/** pktgen's received Mpps over a run of `seconds`; a run with a frame lost or corrupted fails. */
async function pktgenFrontend(sock: string, tag: string, packed: boolean): Promise<number> {
  const run = start('taskset', [
    '-c',
    '1',
    process.execPath,
    '--conditions=source',
    '--import',
    'tsx',
    main,
    'pktgen',
    '--vhost-user',
    sock,
    '--ring',
    packed ? 'packed' : 'split',
    '--duration',
    `${seconds}`,
    '--json',
  ]);
  await new Promise((resolve) => run.child.once('exit', resolve));
  const line = run
    .out()
    .split('\n')
    .find((l) => l.startsWith('{'));
  if (run.child.exitCode !== 0 || !line) {
    throw new Error(`${tag}: pktgen exited ${run.child.exitCode}\n${run.out()}`);
  }
  return (JSON.parse(line) as { mpps: number }).mpps;
}

type Frontend = (sock: string, tag: string, packed: boolean) => Promise<number>;

const frontends: [string, Frontend][] = [
  ['testpmd virtio-user flowgen, 64 B', testpmdFrontend],
  ['mdev pktgen --vhost-user, 64 B', pktgenFrontend],
];

async function cell(
  name: string,
  backend: () => { child: ChildProcess; out: () => string },
  sock: string,
  frontend: Frontend,
  packed: boolean,
) {
  // A file left by the cell before would pass for the new backend's socket.
  rmSync(sock, { force: true });
  const b = backend();
  try {
    if (!(await waitFor(() => existsSync(sock), 10_000))) {
      throw new Error(`${name}: the backend made no socket\n${b.out()}`);
    }
    return await frontend(sock, name, packed);
  } finally {
    await stop(b.child);
  }
}

const backends: [string, (frontend: Frontend, packed: boolean) => Promise<number>][] = [
  [
    'dpdk net_vhost',
    (frontend, packed) => {
      const sock = join(dir, 'dpdk.sock');
      return cell(
        'dpdk',
        () =>
          start(TESTPMD, [
            ...dpdkArgs(`vh-${process.pid}`, '0@0,1@0'),
            '--vdev',
            `net_vhost0,iface=${sock},queues=1`,
            '--',
            '--no-mlockall',
            '--total-num-mbufs=16384',
            '--forward-mode=io',
            '--stats-period',
            '1',
            '--auto-start',
          ]),
        sock,
        frontend,
        packed,
      );
    },
  ],
  ...(['in-thread', 'worker'] as const).map(
    (mode): [string, (frontend: Frontend, packed: boolean) => Promise<number>] => [
      `mdev vhost-user (${mode})`,
      (frontend, packed) => {
        const sock = join(dir, `mdev-${mode}.sock`);
        const args = ['vhost-user', '--socket', sock, ...(mode === 'worker' ? ['--offload'] : [])];
        return cell(
          mode,
          () =>
            start('taskset', [
              '-c',
              '0',
              process.execPath,
              '--conditions=source',
              '--import',
              'tsx',
              main,
              ...args,
            ]),
          sock,
          frontend,
          packed,
        );
      },
    ],
  ),
];

for (const ring of rings) {
  // Each layout against its own all-DPDK cell, which comes first: the ratios of a layout are to it.
  let base = 0;
  for (const [frontendName, frontend] of frontends) {
    for (const [name, run] of backends) {
      const mpps = await run(frontend, ring === 'packed');
      if (base === 0) base = mpps;
      console.log(
        JSON.stringify({
          bench: 'vhost-user',
          frontend: frontendName,
          ring,
          backend: name,
          mpps: Number(mpps.toFixed(3)),
          ratio: Number((mpps / base).toFixed(2)),
        }),
      );
    }
  }
}

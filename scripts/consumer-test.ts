/**
 * `pnpm test:consumer`: installs the packages the way a user gets them and runs them.
 *
 * 1. Builds every package and packs it with `pnpm pack` (the tarballs `pnpm publish` uploads).
 * 2. For each scenario, creates a fresh folder under a mktemp directory outside the workspace,
 *    whose package.json depends on the chosen layers only (file: tarballs). Every other @mdev
 *    package is mapped to its tarball through npm `overrides`, so npm itself decides which
 *    layers come along; third-party dependencies come from the npm registry. @mdev packages
 *    never come from a registry: the scope points at a closed port, so a missing tarball fails
 *    the install instead of fetching a stranger's package.
 * 3. Checks which @mdev packages got installed, type-checks the scenario's script against the
 *    published declarations (module "nodenext", skipLibCheck off) and runs it with node.
 *
 * Scenarios: "ring" (virtio-ring alone drives a ring, no other @mdev package), "pktgen" (the
 * whole stack through `npx mdev pktgen`, same-thread and worker datapath, and `mdev vhost-user`
 * serving `mdev pktgen --vhost-user` in another process until SIGTERM), "vhost-user" (the
 * package's prebuilt addon loads: fd passing and mmap), "mtty" (mdev-core + mdev-vfio +
 * samples-legacy, no virtio package), "vendor" (mdev-core + mdev-virtio + the virtio-mdev
 * transport + virtio-net, no CLI: the root README's vendor skeleton, taken from the README
 * itself, creates an mdev through sysfs and virtio-net binds to it).
 *
 * Usage: pnpm test:consumer [--no-build] [--keep] [scenario...]
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAll, packAll, ROOT, run, since } from './lib/workspace';

interface Scenario {
  name: string;
  /** The layers the consumer depends on directly. */
  layers: string[];
  /** Packages that must be installed (their dependencies as npm resolved them included). */
  expect: (installed: string[]) => string | null;
  /** A script in scripts/consumer/ to type-check and run with node. */
  script?: string;
  /** Files the script imports: name in the consumer folder -> its text. */
  files?: () => Record<string, string>;
  /** Extra checks run in the consumer folder after the script. */
  after?: (dir: string) => void;
}

const VIRTIO = /^@mdev\/virtio/;

/**
 * The code block of the root README's "A vendor driver" section, exactly as written there: the
 * vendor scenario runs it, so a wrong path or name in the README fails the scenario.
 */
function readmeVendorSkeleton(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('A vendor driver\n'));
  const block = section === undefined ? null : /^```ts\n([\s\S]*?)^```$/m.exec(section);
  if (!block) throw new Error('README.md: no ts code block in the "A vendor driver" section');
  return block[1]!;
}

const scenarios: Scenario[] = [
  {
    name: 'ring',
    layers: ['@mdev/virtio-ring'],
    expect: (installed) =>
      installed.join() === '@mdev/virtio-ring'
        ? null
        : `expected @mdev/virtio-ring alone, got ${installed.join(', ')}`,
    script: 'ring.mts',
  },
  {
    name: 'pktgen',
    layers: ['@mdev/cli'],
    expect: (installed) => {
      // Every published package: the CLI's host and `mdev vhost-user` use the vhost layers too
      // (imported when those commands run, so pktgen does not load the native addon).
      const missing = [...tarballs.keys()].filter((n) => !installed.includes(n));
      return missing.length === 0 ? null : `not installed: ${missing.join(', ')}`;
    },
    after: (dir) => {
      // Same thread, then the datapath in a worker: the worker entry must load from dist/.
      for (const extra of [[], ['--offload']]) {
        const args = ['--no', '--', 'mdev', 'pktgen', '--count', '20000', '--json', ...extra];
        const r = spawnSync('npx', args, { cwd: dir, encoding: 'utf8' });
        if (r.status !== 0) {
          throw new Error(
            `mdev pktgen ${extra.join(' ')} exited ${r.status}:\n${r.stdout}${r.stderr}`,
          );
        }
        const line = r.stdout.trim().split('\n').pop() ?? '';
        const res = JSON.parse(line) as Record<string, number>;
        const bad = ['lost', 'corrupted', 'reordered'].filter((k) => res[k] !== 0);
        // A frame sent while the device had no receive buffer is dropped and counted: every
        // frame is accounted for, none is lost or damaged.
        if (res.tx !== 20000 || res.rx! + res.dropped! !== 20000 || bad.length > 0) {
          throw new Error(`pktgen: ${line}`);
        }
        console.log(`  ${line}`);
      }
      // `mdev vhost-user` from the packed CLI: it loads the vhost layers and their addon when it
      // runs, serves its socket to `mdev pktgen --vhost-user` (the virtio-user transport, from
      // dist/ too) in another process, and stops cleanly on SIGTERM with its counters.
      const bin = join(dir, 'node_modules', '@mdev', 'cli', 'bin', 'mdev.js');
      const sock = join(dir, 'vu.sock');
      const script = [
        `node ${JSON.stringify(bin)} vhost-user --socket ${JSON.stringify(sock)} --json &`,
        'pid=$!',
        `for i in $(seq 300); do [ -S ${JSON.stringify(sock)} ] && break; sleep 0.1; done`,
        `node ${JSON.stringify(bin)} pktgen --vhost-user ${JSON.stringify(sock)} --count 20000 --json > pktgen.json`,
        'code=$?',
        'kill -TERM $pid',
        'wait $pid',
        'exit $code',
      ].join('\n');
      const r = spawnSync('sh', ['-c', script], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
      const events = r.stdout
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { event: string }).event);
      if (r.status !== 0 || events[0] !== 'listening' || events.at(-1) !== 'stopped') {
        throw new Error(`mdev vhost-user exited ${r.status}:\n${r.stdout}${r.stderr}`);
      }
      const run = JSON.parse(readFileSync(join(dir, 'pktgen.json'), 'utf8')) as Record<
        string,
        number
      >;
      if (run.tx !== 20000 || run.rx !== 20000 || run.lost !== 0 || run.corrupted !== 0) {
        throw new Error(`mdev pktgen --vhost-user: ${JSON.stringify(run)}`);
      }
      console.log(`  mdev vhost-user: ${events.join(', ')}; pktgen --vhost-user: ${run.rx} back`);
    },
  },
  {
    name: 'vhost-user',
    layers: ['@mdev/vhost-user'],
    expect: (installed) =>
      installed.join() === '@mdev/vhost-user'
        ? null
        : `expected @mdev/vhost-user alone, got ${installed.join(', ')}`,
    script: 'vhost-user.mts',
  },
  {
    name: 'mtty',
    layers: ['@mdev/driver-core', '@mdev/mdev-core', '@mdev/mdev-vfio', '@mdev/samples-legacy'],
    expect: (installed) => {
      const virtio = installed.filter((n) => VIRTIO.test(n));
      return virtio.length === 0 ? null : `virtio packages installed: ${virtio.join(', ')}`;
    },
    script: 'mtty.mts',
  },
  {
    name: 'vendor',
    layers: [
      '@mdev/driver-core',
      '@mdev/mdev-core',
      '@mdev/mdev-virtio',
      '@mdev/virtio-mdev-transport',
      '@mdev/virtio-net',
    ],
    expect: (installed) => {
      const want = [
        '@mdev/driver-core',
        '@mdev/mdev-core',
        '@mdev/mdev-virtio',
        '@mdev/virtio',
        '@mdev/virtio-mdev-transport',
        '@mdev/virtio-net',
        '@mdev/virtio-ring',
      ];
      return installed.join() === want.join()
        ? null
        : `expected ${want.join(', ')}, got ${installed.join(', ')}`;
    },
    script: 'vendor.mts',
    files: () => ({
      'skeleton.ts': readmeVendorSkeleton(),
      // Kept as .mts here, out of the workspace's own type-check (it imports published packages).
      'my-vf-ops.ts': readFileSync(join(ROOT, 'scripts', 'consumer', 'my-vf-ops.mts'), 'utf8'),
    }),
  },
];

const args = process.argv.slice(2);
const chosen = args.filter((a) => !a.startsWith('--'));
const keep = args.includes('--keep');
const start = performance.now();
if (!args.includes('--no-build')) buildAll();

const work = mkdtempSync(join(tmpdir(), 'mdev-consumer-'));
const tarballs = packAll(join(work, 'tarballs'));
const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
// A closed port: any @mdev package npm tries to fetch instead of using a tarball fails fast.
const NO_REGISTRY = '--@mdev:registry=http://127.0.0.1:9/';

function installed(dir: string): string[] {
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { resolved?: string; link?: boolean }>;
  };
  const names = new Set<string>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    const m = /(?:^|\/)node_modules\/(@mdev\/[^/]+)$/.exec(path);
    if (!m) continue;
    if (!entry.resolved?.startsWith('file:')) {
      throw new Error(`${m[1]} was not installed from its tarball (${entry.resolved})`);
    }
    names.add(m[1]!);
  }
  return [...names].sort();
}

function runScenario(s: Scenario): 'pass' {
  const t0 = performance.now();
  const dir = join(work, s.name);
  mkdirSync(dir);
  const file = (name: string) => `file:${tarballs.get(name)}`;
  const overrides = Object.fromEntries(
    [...tarballs.keys()].filter((n) => !s.layers.includes(n)).map((n) => [n, file(n)]),
  );
  const manifest = {
    name: `consumer-${s.name}`,
    private: true,
    type: 'module',
    dependencies: Object.fromEntries(s.layers.map((n) => [n, file(n)])),
    overrides,
  };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', NO_REGISTRY], dir);

  const got = installed(dir);
  const problem = s.expect(got);
  if (problem) throw new Error(`${s.name}: ${problem}`);
  console.log(`  installed: ${got.join(', ')}`);

  if (s.script) {
    copyFileSync(join(ROOT, 'scripts', 'consumer', s.script), join(dir, s.script));
    for (const [name, text] of Object.entries(s.files?.() ?? {})) {
      writeFileSync(join(dir, name), text);
    }
    const tsconfig = {
      compilerOptions: {
        target: 'es2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        // The published .d.ts files are checked too, as a consumer's strict build would.
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
        outDir: 'out',
      },
      files: [s.script],
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    run(process.execPath, [tsc, '-p', 'tsconfig.json'], dir);
    run(process.execPath, [join('out', s.script.replace(/\.mts$/, '.mjs'))], dir);
  }
  s.after?.(dir);
  console.log(`ok   ${s.name} (${since(t0)} s)`);
  return 'pass';
}

let failed = 0;
const outcomes: string[] = [];
try {
  for (const s of scenarios) {
    if (chosen.length > 0 && !chosen.includes(s.name)) continue;
    console.log(`---- ${s.name}: ${s.layers.join(' + ')}`);
    try {
      outcomes.push(`${s.name}: ${runScenario(s)}`);
    } catch (err) {
      failed++;
      outcomes.push(`${s.name}: FAIL`);
      console.log(`FAIL ${s.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
} finally {
  if (keep) console.log(`consumer folders kept in ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
console.log(`test:consumer: ${outcomes.join(', ')} (${since(start)} s)`);
process.exitCode = failed === 0 ? 0 : 1;

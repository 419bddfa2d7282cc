/**
 * `pnpm release:dry-run`: runs `changeset version` in a throwaway clone under the system temp
 * folder (never in this working tree) and checks what a release would produce: every package
 * with a changeset gets a higher version and a CHANGELOG.md entry for it, the changeset files
 * are consumed, and internal dependencies keep their `workspace:` ranges.
 *
 * The clone is of HEAD; changesets that are written but not committed yet are copied in, so
 * authors see their own bump. A probe changeset (a patch of @mdev/virtio-ring) is added so the
 * flow is exercised even right after a release, when no changeset is pending.
 *
 * Usage: pnpm release:dry-run [--keep]
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PackageJson, publishablePackages, ROOT, run, since } from './lib/workspace';

const keep = process.argv.includes('--keep');
const start = performance.now();
const work = mkdtempSync(join(tmpdir(), 'mdev-release-'));
const clone = join(work, 'repo');
const problems: string[] = [];

function readJson(file: string): PackageJson {
  return JSON.parse(readFileSync(file, 'utf8')) as PackageJson;
}

/** Compares two x.y.z versions: > 0 when a is higher. */
function compare(a: string, b: string): number {
  const pa = a.split(/[.-]/).map(Number);
  const pb = b.split(/[.-]/).map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

try {
  run('git', ['clone', '--quiet', ROOT, clone]);
  // changeset resolves its changelog generator from the repository's node_modules.
  symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'), 'dir');

  const pending = (dir: string) =>
    readdirSync(join(dir, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md');
  const committed = new Set(pending(clone));
  const uncommitted = pending(ROOT).filter((f) => !committed.has(f));
  for (const f of uncommitted) {
    copyFileSync(join(ROOT, '.changeset', f), join(clone, '.changeset', f));
  }
  writeFileSync(
    join(clone, '.changeset', 'release-dry-run-probe.md'),
    "---\n'@mdev/virtio-ring': patch\n---\n\nRelease dry run probe.\n",
  );
  const changesets = pending(clone);

  const pkgs = publishablePackages();
  const before = new Map(
    pkgs.map((p) => [p.name, readJson(join(clone, 'packages', p.dir, 'package.json'))]),
  );

  const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'changeset'), ['version'], {
    cwd: clone,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`changeset version failed:\n${r.stdout}${r.stderr}`);

  const left = pending(clone);
  if (left.length > 0) problems.push(`changesets not consumed: ${left.join(', ')}`);

  const rows: string[] = [];
  for (const p of pkgs) {
    const old = before.get(p.name)!;
    const now = readJson(join(clone, 'packages', p.dir, 'package.json'));
    for (const [dep, range] of Object.entries(old.dependencies ?? {})) {
      if (range.startsWith('workspace:') && now.dependencies?.[dep] !== range) {
        problems.push(
          `${p.name}: dependency ${dep} changed from ${range} to ${now.dependencies?.[dep]}`,
        );
      }
    }
    if (now.version === old.version) {
      rows.push(`  ${p.name.padEnd(30)} ${old.version} (unchanged)`);
      continue;
    }
    if (compare(now.version, old.version) <= 0) {
      problems.push(`${p.name}: version went from ${old.version} to ${now.version}`);
    }
    const changelog = join(clone, 'packages', p.dir, 'CHANGELOG.md');
    if (!existsSync(changelog)) {
      problems.push(`${p.name}: bumped to ${now.version} without a CHANGELOG.md`);
    } else if (!readFileSync(changelog, 'utf8').includes(`## ${now.version}\n`)) {
      problems.push(`${p.name}: CHANGELOG.md has no "## ${now.version}" section`);
    }
    rows.push(`  ${p.name.padEnd(30)} ${old.version} -> ${now.version}`);
  }
  if (!rows.some((row) => row.includes('@mdev/virtio-ring') && row.includes('->'))) {
    problems.push('the probe changeset did not bump @mdev/virtio-ring');
  }

  console.log(
    `changeset version consumed ${changesets.length} changeset(s)` +
      (uncommitted.length > 0 ? ` (${uncommitted.length} not committed yet)` : '') +
      ', one of them the probe:',
  );
  for (const row of rows) console.log(row);
} catch (err) {
  problems.push(err instanceof Error ? err.message : String(err));
} finally {
  if (keep) console.log(`clone kept in ${clone}`);
  else rmSync(work, { recursive: true, force: true });
}

for (const p of problems) console.log(`FAIL ${p}`);
console.log(
  `release:dry-run: ${problems.length === 0 ? 'ok' : `${problems.length} problem(s)`} (${since(start)} s)`,
);
process.exitCode = problems.length === 0 ? 0 : 1;

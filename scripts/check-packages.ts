/**
 * `pnpm check:packages`: builds every package, packs it as `pnpm publish` would, and lints each
 * tarball (what a user downloads, not the workspace folder) with publint and
 * @arethetypeswrong/cli. Exits non-zero on any finding.
 *
 * publint runs strict and every message fails, suggestions included: the list is short and each
 * one is a real defect of a published package.
 *
 * attw runs with `--profile esm-only`. The packages are ESM only by design ("type": "module",
 * only `types`/`default` conditions, no CJS build), so two of attw's four resolution modes do not
 * apply: `node10` ignores `exports` and cannot see subpaths like `./testing` (TypeScript users
 * need `moduleResolution` node16, nodenext or bundler), and `node16-cjs` reports that a CommonJS
 * `require` gets ESM, which is the intended shape. What is left, and must be clean, is what
 * consumers use: node16/nodenext from ESM and bundler.
 *
 * Then the declarations in each tarball must not carry an `@internal` tag: a member so marked is
 * still part of the published types, callable and relied upon, whatever the tag says. What is
 * internal is made private in the source (`#` members, module-level functions that are not
 * exported), so it does not reach the .d.ts at all.
 *
 * Usage: pnpm check:packages [--no-build]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { buildAll, capture, mapLimit, packAll, ROOT, since } from './lib/workspace';

/** Lines of the tarball's declaration files that carry an `@internal` tag (`file:line: text`). */
function internalTags(tarball: string, scratch: string): string[] {
  mkdirSync(scratch, { recursive: true });
  const r = spawnSync('tar', ['-xzf', tarball, '-C', scratch], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar -xzf ${tarball}: ${r.stderr}`);
  const found: string[] = [];
  const files = readdirSync(scratch, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.d\.[cm]?ts$/.test(f))
    .sort();
  for (const f of files) {
    const lines = readFileSync(join(scratch, f), 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (line.includes('@internal')) {
        found.push(`${relative('package', f)}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  return found;
}

const start = performance.now();
if (!process.argv.includes('--no-build')) buildAll();

const dest = mkdtempSync(join(tmpdir(), 'mdev-check-packages-'));
let failures = 0;
try {
  const tarballs = packAll(dest);
  const attw = join(ROOT, 'node_modules', '.bin', 'attw');
  const reports = await mapLimit([...tarballs], 2, async ([name, file]) => {
    const lines: string[] = [];
    let ok = true;

    const bytes = readFileSync(file);
    const tarball = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const { messages, pkg } = await publint({
      pack: { tarball },
      strict: true,
      level: 'suggestion',
    });
    for (const m of messages) {
      ok = false;
      lines.push(`  publint ${m.type}: ${formatMessage(m, pkg) ?? m.code}`);
    }

    const args = ['--profile', 'esm-only', '--no-color', '--no-emoji', '--format', 'ascii', file];
    const r = await capture(attw, args);
    if (r.code !== 0) {
      ok = false;
      lines.push(r.out.replace(/^/gm, '  attw: '));
    }
    const internal = internalTags(file, join(dest, 'unpacked', basename(file, '.tgz')));
    for (const hit of internal) {
      ok = false;
      lines.push(`  @internal in published types: ${hit}`);
    }
    return { name, file: basename(file), ok, lines };
  });
  for (const r of reports) {
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.file})`);
    for (const l of r.lines) console.log(l);
    if (!r.ok) failures++;
  }
} finally {
  rmSync(dest, { recursive: true, force: true });
}

console.log(
  failures === 0
    ? `check:packages: publint, attw and the @internal check pass for every package (${since(start)} s)`
    : `check:packages: ${failures} package(s) failed (${since(start)} s)`,
);
process.exitCode = failures === 0 ? 0 : 1;

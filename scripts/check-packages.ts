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
 * Usage: pnpm check:packages [--no-build]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { buildAll, capture, mapLimit, packAll, ROOT, since } from './lib/workspace';

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
    ? `check:packages: publint and attw pass for every package (${since(start)} s)`
    : `check:packages: ${failures} package(s) failed (${since(start)} s)`,
);
process.exitCode = failures === 0 ? 0 : 1;

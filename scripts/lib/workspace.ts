/**
 * Helpers the packaging scripts share: the publishable packages of the workspace, building them
 * and packing them into tarballs the way `pnpm publish` would (workspace: ranges rewritten,
 * `publishConfig.exports` replacing the `source`-first workspace exports).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (scripts/lib/../..). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface PackageJson {
  name: string;
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  [key: string]: unknown;
}

export interface WorkspacePackage {
  /** `@mdev/virtio-ring` */
  name: string;
  /** `virtio-ring` (the directory under packages/) */
  dir: string;
  /** Absolute path of the package directory. */
  path: string;
  manifest: PackageJson;
}

/**
 * The publishable packages under packages/ (private ones, like examples/ and packages/test-utils,
 * are left out).
 */
export function publishablePackages(): WorkspacePackage[] {
  const base = join(ROOT, 'packages');
  return readdirSync(base, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(base, d.name, 'package.json')))
    .map((d) => {
      const path = join(base, d.name);
      const manifest = JSON.parse(readFileSync(join(path, 'package.json'), 'utf8')) as PackageJson;
      return { name: manifest.name, dir: d.name, path, manifest };
    })
    .filter((p) => !p.manifest.private)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The file name `pnpm pack` gives a package's tarball: `@mdev/x` 0.1.0 -> `mdev-x-0.1.0.tgz`. */
export function tarballName(pkg: WorkspacePackage): string {
  return `${pkg.name.replace(/^@/, '').replace('/', '-')}-${pkg.manifest.version}.tgz`;
}

/** Runs a command with inherited output; throws when it exits non-zero. */
export function run(cmd: string, args: string[], cwd = ROOT, env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env: env ?? process.env });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited with ${r.status ?? r.signal}`);
  }
}

/** Runs a command and collects its output; never throws for a non-zero exit. */
export function capture(
  cmd: string,
  args: string[],
  cwd = ROOT,
  env?: NodeJS.ProcessEnv,
): Promise<{ code: number; out: string }> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.on('error', fail);
    child.on('close', (code) => done({ code: code ?? 1, out }));
  });
}

/** Maps `items` through `fn` with at most `limit` calls in flight (the machines have 2 cores). */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** `pnpm build` (turbo: cached when sources did not change). */
export function buildAll(): void {
  run('pnpm', ['build']);
}

/**
 * Packs every publishable package into `dest` with `pnpm pack` and returns the tarball path of
 * each package name. Needs a build first: the tarballs carry dist/.
 */
export function packAll(dest: string): Map<string, string> {
  mkdirSync(dest, { recursive: true });
  const pkgs = publishablePackages();
  for (const p of pkgs) {
    if (!existsSync(join(p.path, 'dist'))) {
      throw new Error(`${p.name} has no dist/: run pnpm build first`);
    }
  }
  // By name: a private package under packages/ (test-utils) is never packed.
  const filters = pkgs.flatMap((p) => ['--filter', p.name]);
  const r = spawnSync('pnpm', ['-r', ...filters, 'pack', '--pack-destination', dest], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`pnpm pack failed:\n${r.stdout}\n${r.stderr}`);
  const tarballs = new Map<string, string>();
  for (const p of pkgs) {
    const file = join(dest, tarballName(p));
    if (!existsSync(file)) throw new Error(`pnpm pack did not produce ${file}`);
    tarballs.set(p.name, file);
  }
  return tarballs;
}

/** Seconds since `start` (a `performance.now()` value), one decimal. */
export function since(start: number): string {
  return ((performance.now() - start) / 1000).toFixed(1);
}

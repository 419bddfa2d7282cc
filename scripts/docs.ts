/**
 * `pnpm run docs`: the API reference of every package, generated with TypeDoc into docs/api
 * (gitignored; open docs/api/index.html). `run` is needed: a bare `pnpm docs` is npm's `docs`
 * command, which pnpm passes through before looking at scripts.
 *
 * Each package is documented from exactly what it exports: the entry points are the `source`
 * conditions of its package.json `exports` (`.` and subpaths like `./testing`), converted with
 * the package's own tsconfig, so the reference cannot drift from the published surface. TypeDoc
 * cannot read entry points from `exports` itself, so each package is converted to a JSON model
 * first and the models are merged into one site (what TypeDoc's "packages" strategy does
 * internally, with one fixed entry point list for all packages).
 *
 * Source links are off: the repository has no public URL yet, and TypeDoc would otherwise warn
 * once per package. Every other warning is a real problem of the published API or its docs (a
 * public signature using a type the package does not export, a `{@link}` to nothing, a README
 * link to a missing file), so any warning fails the run, as TypeDoc's `treatWarningsAsErrors`
 * does: CI runs `pnpm run docs` and must not pass with a broken reference.
 *
 * Usage: pnpm run docs
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Application, LogLevel, TSConfigReader, type TypeDocOptions } from 'typedoc';
import { publishablePackages, ROOT, since, type WorkspacePackage } from './lib/workspace';

const start = performance.now();

/** Options both stages share. */
const common: TypeDocOptions = {
  disableSources: true,
  excludePrivate: true,
  excludeInternal: true,
  logLevel: LogLevel.Warn,
  // What is checked, spelt out: exported API that refers to what is not exported, and links
  // that resolve to nothing. Either is a warning, and every warning fails (see the end).
  validation: { notExported: true, invalidLink: true, invalidPath: true, notDocumented: false },
  treatWarningsAsErrors: true,
  treatValidationWarningsAsErrors: true,
};

type ExportTarget = string | { [condition: string]: ExportTarget } | null;

/** The source files a package exports: the `source` condition of every `exports` entry. */
function sourceEntryPoints(pkg: WorkspacePackage): string[] {
  const exports = pkg.manifest.exports as Record<string, ExportTarget> | undefined;
  const found: string[] = [];
  const visit = (t: ExportTarget) => {
    if (t === null || typeof t === 'string') return;
    for (const [cond, sub] of Object.entries(t)) {
      if (cond === 'source' && typeof sub === 'string') found.push(join(pkg.path, sub));
      else visit(sub);
    }
  };
  for (const [subpath, target] of Object.entries(exports ?? {})) {
    if (subpath !== './package.json') visit(target);
  }
  if (found.length === 0) throw new Error(`${pkg.name}: no "source" condition in its exports`);
  return found;
}

let warnings = 0;
let errors = 0;
async function run(app: Application, what: () => Promise<void>): Promise<void> {
  await what();
  warnings += app.logger.warningCount;
  errors += app.logger.errorCount;
}

const models = mkdtempSync(join(tmpdir(), 'mdev-docs-'));
try {
  const jsonFiles: string[] = [];
  for (const pkg of publishablePackages()) {
    const json = join(models, `${pkg.dir}.json`);
    const readme = join(pkg.path, 'README.md');
    // Only the tsconfig reader: the package is described by this script, not by stray config.
    const app = await Application.bootstrapWithPlugins(
      {
        ...common,
        name: pkg.name,
        entryPoints: sourceEntryPoints(pkg),
        tsconfig: join(pkg.path, 'tsconfig.json'),
        readme: existsSync(readme) ? readme : 'none',
      },
      [new TSConfigReader()],
    );
    await run(app, async () => {
      const project = await app.convert();
      if (!project) {
        app.logger.error(`${pkg.name}: conversion failed`);
        return;
      }
      app.validate(project);
      await app.generateJson(project, json);
      jsonFiles.push(json);
    });
  }

  const out = join(ROOT, 'docs', 'api');
  const app = await Application.bootstrapWithPlugins(
    {
      ...common,
      name: 'mdev virtio offload',
      entryPointStrategy: 'merge',
      entryPoints: jsonFiles,
      readme: join(ROOT, 'README.md'),
    },
    [],
  );
  await run(app, async () => {
    const project = await app.convert();
    if (!project) {
      app.logger.error('merging the package models failed');
      return;
    }
    rmSync(out, { recursive: true, force: true });
    await app.generateDocs(project, out);
  });
  console.log(`docs: ${out}/index.html (${since(start)} s)`);
} finally {
  rmSync(models, { recursive: true, force: true });
}

console.log(`docs: ${errors} error(s), ${warnings} warning(s)`);
process.exitCode = errors > 0 || warnings > 0 ? 1 : 0;

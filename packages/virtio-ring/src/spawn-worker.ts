import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Resolves a worker entry that sits beside the calling module: `name.ts` when the caller runs
 * from sources (tests, tsx), `name.js` when it runs from the built `dist/`.
 */
export function siblingModule(name: string, callerUrl: string): URL {
  const ext = callerUrl.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${ext}`, callerUrl);
}

/**
 * Starts a `worker_threads` worker on an ES module URL. A built `.js` entry starts directly;
 * a TypeScript source entry (only when running from sources, e.g. under vitest) boots through
 * tsx's loader with the `source` export condition, so workspace imports resolve to `src/` as
 * they do in the main thread.
 */
export function spawnWorker(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, options);
  // require.resolve gives tsx's CommonJS build of the API; the worker imports the ES module one
  // (under a `--import tsx` parent the CommonJS one fails to load its ESM half).
  const tsxCjs = createRequire(import.meta.url).resolve('tsx/esm/api');
  const tsxApi = pathToFileURL(tsxCjs.replace(/\.cjs$/, '.mjs')).href;
  const boot = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(moduleUrl.href)}); })`;
  const execArgv = [...(options.execArgv ?? []), '--conditions=source'];
  return new Worker(boot, { ...options, eval: true, execArgv });
}

import { defineConfig, type Options } from 'tsup';

/**
 * The one tsup configuration shape every package uses: ESM only, declarations,
 * source maps, Node 22 target. A package passes its entry points (the index and,
 * where it has them, worker entries that `new Worker()` loads by URL).
 */
export function library(entry: string[], overrides: Partial<Options> = {}) {
  return defineConfig({
    entry,
    format: ['esm'],
    target: 'node22',
    platform: 'node',
    dts: true,
    sourcemap: true,
    clean: true,
    splitting: true,
    treeshake: true,
    ...overrides,
  });
}

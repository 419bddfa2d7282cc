import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Tests run on the sources: the `source` export condition resolves every @mdev/* import to
// its package's src/ (see each package.json), so no build is needed before `pnpm test`.
const conditions = ['source', 'import', 'module', 'node', 'default'];

const dirs = ['packages', 'examples'].flatMap((root) => {
  try {
    return readdirSync(root, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => `${root}/${d.name}`);
  } catch {
    return [];
  }
});

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['source'] } },
  test: {
    projects: dirs.map((dir) => ({
      extends: true,
      test: {
        name: dir.split('/')[1],
        root: dir,
        include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
        testTimeout: 60_000,
        hookTimeout: 60_000,
      },
    })),
  },
});

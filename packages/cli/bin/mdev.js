#!/usr/bin/env node
// The `mdev` command. This launcher is in the repository and the package alike, so installing
// the workspace links the bin before anything is built; the command itself is dist/main.js.
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'mdev: @mdev/cli is not built (no dist/main.js): run `pnpm build`, or `pnpm mdev` to run ' +
      'the command from its sources\n',
  );
  process.exit(1);
}
await import(main.href);

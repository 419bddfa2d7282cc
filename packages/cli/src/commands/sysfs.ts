import { posix } from 'node:path';
import { parseArgs } from 'node:util';
import { sysfs } from '@mdev/driver-core';
import type { CommandIo } from '../io';
import { setupStack } from '../pktgen/run';
import { UsageError } from '../usage';

export const summary = 'print the sysfs tree after setting up mvnet_loopback with one mdev';

export const usage = `usage: mdev sysfs [PATH]

Sets up mvnet_loopback with one mdev (virtio0, eth0) and prints every node under PATH (default
/sys): directories, files with their contents, links with their targets.
`;

/**
 * `mdev sysfs [PATH]`: sets the stack up as pktgen does (one mvnet mdev, virtio0, eth0), then
 * prints every node under PATH (default /sys): directories, files with their contents when
 * readable, and links with their targets.
 */
export async function run(args: string[], io: CommandIo): Promise<number> {
  // A misused command line throws (parseArgs, UsageError); `main` reports it with the usage.
  const { values, positionals } = parseArgs({
    args,
    options: { help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError('one PATH at most');
  const arg = positionals[0] ?? '/sys';
  // The tree is the virtual one of this process: there is no working directory in it to take a
  // relative path from.
  if (!arg.startsWith('/')) {
    throw new UsageError(`PATH must be absolute, like /sys/bus, not "${arg}"`);
  }
  // `..`, `.` and repeated or trailing slashes resolved as a shell would: `/sys/..` is `/`.
  const root = posix.normalize(arg).replace(/(.)\/$/, '$1');
  const stack = setupStack();
  try {
    if (!sysfs.exists(root)) {
      io.stderr.write(`mdev sysfs: ${root}: no such file or directory\n`);
      return 1;
    }
    for (const path of sysfs.tree(root)) {
      const { kind, mode } = sysfs.stat(path);
      if (kind === 'link') io.stdout.write(`${path} -> ${sysfs.readlink(path)}\n`);
      else if (kind === 'dir') io.stdout.write(path === '/' ? '/\n' : `${path}/\n`);
      else if (mode & 0o444) {
        let value: string;
        try {
          value = sysfs.read(path).trimEnd().replace(/\n/g, '\\n');
        } catch (err) {
          value = `<${(err as { code?: string }).code ?? 'error'}>`;
        }
        io.stdout.write(`${path} = ${value}\n`);
      } else io.stdout.write(`${path} (write-only)\n`);
    }
    return 0;
  } finally {
    stack.teardown();
  }
}

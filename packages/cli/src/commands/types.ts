import { sysfs } from '@mdev/driver-core';
import type { CommandIo } from '../io';
import { setupStack } from '../pktgen/run';

export const summary = 'list the supported mdev types of every parent, like mdevctl types';

const FIELDS: [string, string][] = [
  ['available_instances', 'Available instances'],
  ['device_api', 'Device API'],
  ['name', 'Name'],
  ['description', 'Description'],
];

/** Lists `/sys/class/mdev_*_bus/<parent>/mdev_supported_types/*` and their attributes. */
export function listTypes(): { parent: string; type: string; attrs: Record<string, string> }[] {
  const out = [];
  for (const cls of sysfs.list('/sys/class').filter((c) => /^mdev.*_bus$/.test(c))) {
    for (const parent of sysfs.list(`/sys/class/${cls}`)) {
      const dir = `/sys/class/${cls}/${parent}/mdev_supported_types`;
      for (const type of sysfs.list(dir)) {
        const attrs: Record<string, string> = {};
        for (const [file] of FIELDS) {
          try {
            attrs[file] = sysfs.read(`${dir}/${type}/${file}`).trimEnd();
          } catch {
            // An optional attribute the vendor does not provide.
          }
        }
        out.push({ parent, type, attrs });
      }
    }
  }
  return out;
}

/** `mdev types [--json]`: the types of the parents this tool registers. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  const stack = setupStack();
  try {
    const types = listTypes();
    if (args.includes('--json')) {
      io.stdout.write(`${JSON.stringify(types)}\n`);
      return 0;
    }
    let lastParent = '';
    for (const t of types) {
      if (t.parent !== lastParent) io.stdout.write(`${t.parent}\n`);
      lastParent = t.parent;
      io.stdout.write(`  ${t.type}\n`);
      for (const [file, label] of FIELDS) {
        if (t.attrs[file] !== undefined) io.stdout.write(`    ${label}: ${t.attrs[file]}\n`);
      }
    }
    return 0;
  } finally {
    stack.teardown();
  }
}

import { parseArgs } from 'node:util';
import { sysfs } from '@mdev/driver-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import type { CommandIo } from '../io';
import { type PktgenParent, pktgenDeviceList } from '../pktgen/run';
import { loadVfioSamples } from './lspci';

export const summary = 'list the supported mdev types of every parent, like mdevctl types';

export const usage = `usage: mdev types [--json]

Lists the supported mdev types of every parent this tool registers: mvnet_loopback and the VFIO
samples (mtty, mdpy, mbochs), each with its attributes as a freshly loaded parent shows them (no
mdev is created), then unloads them again.

  --json   one JSON array of { parent, type, attrs } instead of text
`;

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
  // A misused command line throws out of parseArgs; `main` reports it with the usage (exit 2).
  const { values } = parseArgs({
    args,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  // The parents alone, as `modprobe` leaves them: no mdev is created, so every type shows all of
  // its instances available.
  const parents: PktgenParent[] = [];
  let samples: ReturnType<typeof loadVfioSamples> | null = null;
  try {
    for (const [, device] of pktgenDeviceList()) parents.push(device.init({}));
    samples = loadVfioSamples();
    const types = listTypes();
    if (values.json) {
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
    samples?.unload();
    for (const parent of parents.reverse()) parent.exit();
    mdevVirtioExit();
  }
}

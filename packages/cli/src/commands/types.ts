import { parseArgs } from 'node:util';
import { sysfs } from '@mdev/driver-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { HostRequestError, HostUnavailableError, hostRequest } from '../host/client';
import { defaultControlPath } from '../host/paths';
import type { CommandIo } from '../io';
import { type PktgenParent, pktgenDeviceList } from '../pktgen/run';
import { filePath, UsageError } from '../usage';
import { loadVfioSamples } from './lspci';

export const summary = 'list the supported mdev types of every parent, like mdevctl types';

export const usage = `usage: mdev types [-p PARENT] [--dumpjson | --json] [--control PATH]

Lists the supported mdev types of every parent, with their attributes. With a running
'mdev host', the host's parents (vendor drivers included) as they are now; without one, the
parents this tool registers (mvnet_loopback and the VFIO samples mtty, mdpy, mbochs) as freshly
loaded ones show them (no mdev is created), unloaded again afterwards.

  -p, --parent PARENT   only the types of this parent
  --dumpjson            mdevctl's JSON form: [{PARENT: [{TYPE: {available_instances, ...}}]}]
  --json                one JSON array of { parent, type, attrs } instead of text
  --control PATH        the host's control socket (default: as 'mdev host' has it); when it
                        is given, a missing host is an error
`;

type TypeList = { parent: string; type: string; attrs: Record<string, string> }[];

/** mdevctl's `types --dumpjson` form; `available_instances` is a number there. */
export function dumpTypes(types: TypeList): unknown {
  if (!types.length) return [];
  const byParent: Record<string, Record<string, unknown>[]> = {};
  for (const t of types) {
    const attrs: Record<string, unknown> = {};
    for (const [file] of FIELDS) {
      const v = t.attrs[file];
      if (v === undefined) continue;
      attrs[file] = file === 'available_instances' && /^\d+$/.test(v) ? Number(v) : v;
    }
    byParent[t.parent] ??= [];
    byParent[t.parent]!.push({ [t.type]: attrs });
  }
  return [byParent];
}

function printTypes(
  types: TypeList,
  values: { json?: boolean; dumpjson?: boolean },
  io: CommandIo,
) {
  if (values.dumpjson) {
    io.stdout.write(`${JSON.stringify(dumpTypes(types), null, 2)}\n`);
    return;
  }
  if (values.json) {
    io.stdout.write(`${JSON.stringify(types)}\n`);
    return;
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
}

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

/** `mdev types`: the types of the host's parents, or of those this tool registers. */
export async function run(args: string[], io: CommandIo): Promise<number> {
  // A misused command line throws out of parseArgs; `main` reports it with the usage (exit 2).
  const { values } = parseArgs({
    args,
    options: {
      json: { type: 'boolean' },
      dumpjson: { type: 'boolean' },
      parent: { type: 'string', short: 'p' },
      control: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(usage);
    return 0;
  }
  if (values.json && values.dumpjson) throw new UsageError('give --json or --dumpjson, not both');
  if (values.parent === '') throw new UsageError('--parent needs a parent name');
  const only = (types: TypeList) =>
    values.parent === undefined ? types : types.filter((t) => t.parent === values.parent);
  // A running host answers for its parents; without one, the parents are loaded here.
  const control =
    values.control === undefined ? defaultControlPath() : filePath(io, '--control', values.control);
  try {
    const types = (await hostRequest(
      control,
      'types',
      values.parent === undefined ? {} : { parent: values.parent },
    )) as TypeList;
    printTypes(types, values, io);
    return 0;
  } catch (err) {
    if (
      err instanceof HostRequestError ||
      (err instanceof HostUnavailableError && values.control)
    ) {
      io.stderr.write(`mdev types: ${err.message}\n`);
      return 1;
    }
    if (!(err instanceof HostUnavailableError)) throw err;
  }
  // The parents alone, as `modprobe` leaves them: no mdev is created, so every type shows all of
  // its instances available.
  const parents: PktgenParent[] = [];
  let samples: ReturnType<typeof loadVfioSamples> | null = null;
  try {
    for (const [, device] of pktgenDeviceList()) parents.push(device.init({}));
    samples = loadVfioSamples();
    printTypes(only(listTypes()), values, io);
    return 0;
  } finally {
    samples?.unload();
    for (const parent of parents.reverse()) parent.exit();
    mdevVirtioExit();
  }
}

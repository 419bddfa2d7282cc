/**
 * mdevctl's verbs as `mdev` commands that talk to a running `mdev host`: `list`, `define`,
 * `undefine`, `modify`, `start`, `stop` (and `types`, in ./types.ts), with mdevctl's options,
 * output lines and JSON shapes.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { HostRequestError, HostUnavailableError, hostRequest } from '../host/client';
import type { DeviceEntry } from '../host/model';
import { defaultControlPath } from '../host/paths';
import type { Args, Verb } from '../host/protocol';
import { definitionJson } from '../host/store';
import type { Command, CommandIo } from '../io';
import { filePath, UsageError, uuidOption } from '../usage';

const CONTROL_HELP =
  "  --control PATH        the host's control socket (default: as 'mdev host' has it)";

/** The control socket a client command talks to: `--control`, else the host's default. */
export function controlPath(io: CommandIo, text: string | undefined): string {
  return text === undefined ? defaultControlPath() : filePath(io, '--control', text);
}

/**
 * Sends one request to the host and resolves to its result; writes the reason and resolves to
 * null when there is no host or the host refuses the request (the command then exits 1).
 */
async function ask<V extends Verb>(
  name: string,
  io: CommandIo,
  control: string,
  verb: V,
  args: Args<V>,
): Promise<unknown> {
  try {
    return await hostRequest(control, verb, args);
  } catch (err) {
    if (err instanceof HostUnavailableError || err instanceof HostRequestError) {
      io.stderr.write(`mdev ${name}: ${err.message}\n`);
      return null;
    }
    throw err;
  }
}

/** The definition in `--jsonfile FILE`, parsed (UsageError for a file that is not JSON). */
function jsonFile(io: CommandIo, text: string): Record<string, unknown> {
  const path = filePath(io, '--jsonfile', text);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`--jsonfile ${text}: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new UsageError(`--jsonfile ${text}: not a JSON object`);
  return json as Record<string, unknown>;
}

/** mdevctl's one-line form: `UUID PARENT TYPE auto|manual`, then `(active)` or `(defined)`. */
export function formatDevice(e: DeviceEntry, defined: boolean, verbose: boolean): string {
  let line = `${e.uuid} ${e.parent} ${e.type} ${e.auto ? 'auto' : 'manual'}`;
  if (defined ? e.active : e.defined) line += defined ? ' (active)' : ' (defined)';
  line += '\n';
  if (verbose && e.attrs.length) {
    line += '  Attrs:\n';
    e.attrs.forEach(([k, v], i) => {
      line += `    @{${i}}: ${JSON.stringify({ [k]: v })}\n`;
    });
  }
  return line;
}

/**
 * mdevctl's `--dumpjson` of a listing: `[{PARENT: [{UUID: {mdev_type, start, attrs}}, ...]}]`,
 * or the bare definition when the listing is one device asked for by UUID.
 */
export function dumpDevices(entries: DeviceEntry[], single: boolean): unknown {
  if (single && entries.length === 1) return definitionJson(entries[0]!);
  const byParent: Record<string, Record<string, unknown>[]> = {};
  for (const e of entries) {
    byParent[e.parent] ??= [];
    byParent[e.parent]!.push({ [e.uuid]: definitionJson(e) });
  }
  return entries.length ? [byParent] : [];
}

/** The options every verb takes. */
const common = {
  uuid: { type: 'string', short: 'u' },
  parent: { type: 'string', short: 'p' },
  control: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const typeOpt = { type: { type: 'string', short: 't' } } as const;
const autoOpt = { auto: { type: 'boolean', short: 'a' } } as const;
const jsonfileOpt = { jsonfile: { type: 'string' } } as const;

/** A parsed option's value: a string, a boolean, or missing. */
type Values = Record<string, string | boolean | undefined>;

/** The options the shared step has checked: UUID, parent and type as the verbs take them. */
interface Checked {
  uuid?: string;
  parent?: string;
  type?: string;
}

/**
 * One mdevctl verb: parses its options, answers --help, checks -u/-p/-t, builds the request
 * (`request`, which throws UsageError for a command line it cannot run), asks the host and
 * prints its result (`print`). Exit 0, or 1 when there is no host or it refuses.
 */
function verb<V extends Verb>(spec: {
  name: V;
  summary: string;
  usage: string;
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>;
  request(checked: Checked, values: Values, io: CommandIo): Args<V>;
  print?(result: unknown, checked: Checked, values: Values, io: CommandIo): void;
}): Command {
  return {
    summary: spec.summary,
    usage: spec.usage,
    async run(args, io) {
      const { values } = parseArgs({ args, options: spec.options, strict: true });
      const v = values as Values;
      if (v.help) {
        io.stdout.write(spec.usage);
        return 0;
      }
      const checked: Checked = {};
      const uuid = uuidOption(v.uuid as string | undefined);
      if (uuid !== undefined) checked.uuid = uuid;
      if (v.parent === '') throw new UsageError('--parent needs a parent name');
      if (v.parent !== undefined) checked.parent = v.parent as string;
      if (v.type === '') throw new UsageError('--type needs a type name');
      if (v.type !== undefined) checked.type = v.type as string;
      const request = spec.request(checked, v, io);
      const control = controlPath(io, v.control as string | undefined);
      const result = await ask(spec.name, io, control, spec.name, request);
      if (result === null) return 1;
      spec.print?.(result, checked, v, io);
      return 0;
    },
  };
}

/** Writes the UUID the host made for a device given none. */
function printMadeUuid(result: unknown, checked: Checked, _v: Values, io: CommandIo): void {
  if (checked.uuid === undefined) io.stdout.write(`${(result as { uuid: string }).uuid}\n`);
}

function requireUuid(checked: Checked): string {
  if (checked.uuid === undefined) throw new UsageError('give -u UUID');
  return checked.uuid;
}

export const list = verb({
  name: 'list',
  summary: 'list running (or, with --defined, defined) devices of the host, like mdevctl list',
  usage: `usage: mdev list [-d|--defined] [-u UUID] [-p PARENT] [--dumpjson] [-v] [--control PATH]

Lists the host's running devices, one line each: UUID PARENT TYPE auto|manual, with
"(defined)" when a definition exists; with --defined, the definitions, with "(active)" when
running.

  -d, --defined         list the definitions instead of the running devices
  -u, --uuid UUID       only this device
  -p, --parent PARENT   only the devices of this parent
  --dumpjson            mdevctl's JSON form instead of lines
  -v, --verbose         the attributes under each device
${CONTROL_HELP}
`,
  options: {
    ...common,
    defined: { type: 'boolean', short: 'd' },
    dumpjson: { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  },
  request: ({ uuid, parent }, v) => {
    const request: Args<'list'> = { defined: v.defined === true };
    if (uuid !== undefined) request.uuid = uuid.toLowerCase();
    if (parent !== undefined) request.parent = parent;
    return request;
  },
  print(result, { uuid }, v, io) {
    const entries = result as DeviceEntry[];
    if (v.dumpjson) {
      io.stdout.write(`${JSON.stringify(dumpDevices(entries, uuid !== undefined), null, 2)}\n`);
      return;
    }
    for (const e of entries)
      io.stdout.write(formatDevice(e, v.defined === true, v.verbose === true));
  },
});

export const define = verb({
  name: 'define',
  summary: 'define a persistent device on the host, like mdevctl define',
  usage: `usage: mdev define [-u UUID] -p PARENT -t TYPE [-a|--auto]
       mdev define [-u UUID] -p PARENT --jsonfile FILE
       mdev define -u UUID [-a|--auto]      (a running device, as it runs)

Writes the definition to the host's config folder (PARENT/UUID, mdevctl's JSON). Without
-u, a UUID is made and printed. --auto starts the device whenever the host starts.

  -u, --uuid UUID       the device's UUID
  -p, --parent PARENT   its parent (see 'mdev types')
  -t, --type TYPE       its mdev type
  -a, --auto            start it when the host starts (default: manual)
  --jsonfile FILE       the definition as mdevctl's JSON (mdev_type, start, attrs)
${CONTROL_HELP}
`,
  options: { ...common, ...typeOpt, ...autoOpt, ...jsonfileOpt },
  request: ({ uuid, parent, type }, v, io) => {
    const request: Args<'define'> = {};
    if (uuid !== undefined) request.uuid = uuid;
    if (parent !== undefined) request.parent = parent;
    if (v.jsonfile !== undefined) {
      if (type !== undefined || v.auto)
        throw new UsageError('--jsonfile gives the type and start: not with -t or --auto');
      if (parent === undefined) throw new UsageError('--jsonfile needs -p PARENT');
      request.json = jsonFile(io, v.jsonfile as string);
      return request;
    }
    if (type !== undefined) request.type = type;
    if (v.auto) request.auto = true;
    if (uuid === undefined && (parent === undefined || type === undefined))
      throw new UsageError('give -p PARENT and -t TYPE (or -u UUID of a running device)');
    if ((parent === undefined) !== (type === undefined))
      throw new UsageError('give -p PARENT and -t TYPE together');
    return request;
  },
  print: printMadeUuid,
});

export const undefine = verb({
  name: 'undefine',
  summary: 'remove a device definition from the host, like mdevctl undefine',
  usage: `usage: mdev undefine -u UUID [-p PARENT] [--control PATH]

Removes the definition (a running device keeps running).

  -u, --uuid UUID       the device
  -p, --parent PARENT   only its definition under this parent
${CONTROL_HELP}
`,
  options: common,
  request: (checked) => {
    const request: Args<'undefine'> = { uuid: requireUuid(checked) };
    if (checked.parent !== undefined) request.parent = checked.parent;
    return request;
  },
});

export const modify = verb({
  name: 'modify',
  summary: 'change a device definition on the host, like mdevctl modify',
  usage: `usage: mdev modify -u UUID [-p PARENT] [-t TYPE] [-a|--auto|-m|--manual]
                  [--addattr NAME --value VALUE [--index N] | --delattr [--index N]]
                  [--jsonfile FILE]

Changes the definition; a running device is not changed until it is started again.

  -u, --uuid UUID       the device
  -p, --parent PARENT   its definition under this parent
  -t, --type TYPE       a new mdev type
  -a, --auto            start it when the host starts
  -m, --manual          do not
  --addattr NAME        add an attribute (with --value; at --index, default last)
  --delattr             delete the attribute at --index (default the last)
  --jsonfile FILE       replace the definition by mdevctl's JSON in FILE
${CONTROL_HELP}
`,
  options: {
    ...common,
    ...typeOpt,
    ...autoOpt,
    ...jsonfileOpt,
    manual: { type: 'boolean', short: 'm' },
    addattr: { type: 'string' },
    value: { type: 'string' },
    delattr: { type: 'boolean' },
    index: { type: 'string' },
  },
  request: (checked, v, io) => {
    const request: Args<'modify'> = { uuid: requireUuid(checked) };
    if (checked.parent !== undefined) request.parent = checked.parent;
    if (checked.type !== undefined) request.type = checked.type;
    if (v.auto && v.manual) throw new UsageError('give --auto or --manual, not both');
    if (v.auto) request.auto = true;
    if (v.manual) request.auto = false;
    if (v.addattr !== undefined && v.delattr)
      throw new UsageError('give --addattr or --delattr, not both');
    if (v.addattr !== undefined) {
      if (v.value === undefined) throw new UsageError('--addattr needs --value');
      request.addattr = v.addattr as string;
      request.value = v.value as string;
    } else if (v.value !== undefined) {
      throw new UsageError('--value goes with --addattr');
    }
    if (v.delattr) request.delattr = true;
    if (v.index !== undefined) {
      const index = v.index as string;
      if (v.addattr === undefined && !v.delattr)
        throw new UsageError('--index goes with --addattr or --delattr');
      if (!/^\d+$/.test(index) || !Number.isSafeInteger(Number(index)))
        throw new UsageError(`--index must be an integer >= 0, not "${index}"`);
      request.index = Number(index);
    }
    if (v.jsonfile !== undefined) request.json = jsonFile(io, v.jsonfile as string);
    return request;
  },
});

export const start = verb({
  name: 'start',
  summary: 'start a defined (or a transient) device on the host, like mdevctl start',
  usage: `usage: mdev start -u UUID [-p PARENT]
       mdev start [-u UUID] -p PARENT -t TYPE
       mdev start [-u UUID] -p PARENT --jsonfile FILE

Creates the device through its parent's sysfs 'create' file and writes its attributes. A
device not defined runs until it is stopped or the host stops. Without -u, a UUID is made and
printed.

  -u, --uuid UUID       the device
  -p, --parent PARENT   its parent
  -t, --type TYPE       its mdev type (a transient device)
  --jsonfile FILE       a transient device from mdevctl's JSON
${CONTROL_HELP}
`,
  options: { ...common, ...typeOpt, ...jsonfileOpt },
  request: ({ uuid, parent, type }, v, io) => {
    const request: Args<'start'> = {};
    if (uuid !== undefined) request.uuid = uuid;
    if (parent !== undefined) request.parent = parent;
    if (type !== undefined) request.type = type;
    if (v.jsonfile !== undefined) {
      if (type !== undefined) throw new UsageError('--jsonfile gives the type: not with -t');
      request.json = jsonFile(io, v.jsonfile as string);
    }
    if (uuid === undefined && (parent === undefined || (type === undefined && !request.json)))
      throw new UsageError('give -u UUID of a defined device, or -p PARENT and -t TYPE');
    return request;
  },
  print: printMadeUuid,
});

export const stop = verb({
  name: 'stop',
  summary: 'stop a running device on the host, like mdevctl stop',
  usage: `usage: mdev stop -u UUID [--control PATH]

Removes the device through its sysfs 'remove' file (its definition stays).

  -u, --uuid UUID       the device
${CONTROL_HELP}
`,
  options: { uuid: common.uuid, control: common.control, help: common.help },
  request: (checked) => ({ uuid: requireUuid(checked) }),
});

export const bind = verb({
  name: 'bind',
  summary: 'hand a running virtio device to virtio_mdev or to vhost_mdev (a vhost-user socket)',
  usage: `usage: mdev bind -u UUID --driver virtio_mdev|vhost_mdev [--socket PATH] [--control PATH]

Binds the device to a driver with the sysfs writes a vDPA user knows (driver_override, unbind,
drivers_probe). vhost_mdev serves it to a vhost-user frontend (QEMU, DPDK virtio-user) on a unix
socket, by default next to the host's control socket; virtio_mdev gives it back to the host's
own virtio-net. Prints the socket a vhost_mdev device is served on.

  -u, --uuid UUID       the device
  --driver DRIVER       virtio_mdev or vhost_mdev
  --socket PATH         where vhost_mdev serves it (owner-only; a stale file is replaced)
${CONTROL_HELP}
`,
  options: {
    uuid: common.uuid,
    driver: { type: 'string' },
    socket: { type: 'string' },
    control: common.control,
    help: common.help,
  },
  request: (checked, v, io) => {
    const driver = v.driver as string | undefined;
    if (driver !== 'virtio_mdev' && driver !== 'vhost_mdev')
      throw new UsageError('--driver must be virtio_mdev or vhost_mdev');
    const request: Args<'bind'> = { uuid: requireUuid(checked), driver };
    if (v.socket !== undefined) {
      if (driver !== 'vhost_mdev') throw new UsageError('--socket is for --driver vhost_mdev');
      request.socket = filePath(io, '--socket', v.socket as string);
    }
    return request;
  },
  print(result, _checked, _v, io) {
    const r = result as { uuid: string; driver: string; socket?: string };
    io.stdout.write(r.socket ? `${r.uuid} ${r.driver} ${r.socket}\n` : `${r.uuid} ${r.driver}\n`);
  },
});

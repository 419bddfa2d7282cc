/**
 * iproute2 vdpa's verbs as `mdev` commands that talk to a running `mdev host`: `mgmtdev show`,
 * `dev add`, `dev show`, `dev config show`, `dev del`, with vdpa's keyword arguments and its
 * output lines (`-j` for JSON).
 */
import { HostRequestError, HostUnavailableError, hostRequest } from '../host/client';
import type { Args, Verb } from '../host/protocol';
import type { VdpaConfigEntry, VdpaDevEntry, VdpaVstatsEntry } from '../host/vdpa';
import type { Command, CommandIo } from '../io';
import { UsageError } from '../usage';
import { controlPath } from './mdevctl';

/** The options every vdpa verb takes, wherever they stand, and the words left. */
function split(args: string[]): {
  words: string[];
  json: boolean;
  help: boolean;
  control?: string;
} {
  const words: string[] = [];
  let json = false;
  let help = false;
  let control: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-j' || a === '--json') json = true;
    else if (a === '-h' || a === '--help') help = true;
    else if (a === '--control') {
      control = args[++i];
      if (control === undefined) throw new UsageError('--control needs a path');
    } else if (a.startsWith('--control=')) control = a.slice('--control='.length);
    else if (a.startsWith('-')) throw new UsageError(`unknown option '${a}'`);
    else words.push(a);
  }
  return { words, json, help, control };
}

async function ask<V extends Verb>(
  name: string,
  io: CommandIo,
  control: string | undefined,
  verb: V,
  args: Args<V>,
): Promise<unknown> {
  try {
    return await hostRequest(controlPath(io, control), verb, args);
  } catch (err) {
    if (err instanceof HostUnavailableError || err instanceof HostRequestError) {
      io.stderr.write(`mdev ${name}: ${err.message}\n`);
      return null;
    }
    throw err;
  }
}

/** `name N mgmtdev M mac A mtu U` as vdpa takes them: each keyword once, with its value. */
function keywords(words: string[], allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < words.length; i += 2) {
    const k = words[i]!;
    const v = words[i + 1];
    if (!allowed.includes(k))
      throw new UsageError(`unknown argument '${k}' (known: ${allowed.join(', ')})`);
    if (v === undefined) throw new UsageError(`'${k}' needs a value`);
    if (Object.hasOwn(out, k)) throw new UsageError(`'${k}' given twice`);
    out[k] = v;
  }
  return out;
}

export const mgmtdev: Command = {
  summary: "list the host's vDPA management devices, like vdpa mgmtdev show",
  usage: `usage: mdev mgmtdev show [-j] [--control PATH]

Lists the parents on the mediated virtio bus, which 'mdev dev add' makes devices on.

  -j, --json       vdpa's JSON form
  --control PATH   the host's control socket (default: as 'mdev host' has it)
`,
  async run(args, io) {
    const { words, json, help, control } = split(args);
    if (help) {
      io.stdout.write(this.usage!);
      return 0;
    }
    if (words.length > 1 || (words.length === 1 && words[0] !== 'show'))
      throw new UsageError(`unknown verb '${words.join(' ')}' (known: show)`);
    const result = await ask('mgmtdev', io, control, 'mgmtdev-show', {});
    if (result === null) return 1;
    const devs = result as { name: string }[];
    if (json) {
      const out: Record<string, unknown> = {};
      for (const d of devs) out[d.name] = { supported_classes: ['net'] };
      io.stdout.write(`${JSON.stringify({ mgmtdev: out })}\n`);
    } else {
      for (const d of devs) io.stdout.write(`${d.name}:\n  supported_classes net\n`);
    }
    return 0;
  },
};

export const dev: Command = {
  summary: 'add, show and delete named vDPA devices on the host, like vdpa dev',
  usage: `usage: mdev dev add name NAME mgmtdev PARENT [mac MAC] [mtu MTU]
       mdev dev show [NAME] [-j]
       mdev dev config show NAME [-j]
       mdev dev vstats show NAME qidx Q [-j]
       mdev dev del NAME

Named devices on the host's management devices (see 'mdev mgmtdev show'), as iproute2's vdpa
makes them. 'mac' and 'mtu' set the device's config space at creation (mvnet_loopback,
examples/vendor-vf).
'config show' and 'del' also take the UUID of any device of a management device (one
started with 'mdev start', say). 'config show' decodes the virtio-net config space: MAC, link
status, MTU and the features the driver negotiated. 'vstats show' prints one queue's counters (qidx 0 receives, 1 sends).

  -j, --json       vdpa's JSON form
  --control PATH   the host's control socket (default: as 'mdev host' has it)
`,
  async run(args, io) {
    const { words, json, help, control } = split(args);
    if (help) {
      io.stdout.write(this.usage!);
      return 0;
    }
    const [verb, ...rest] = words;
    switch (verb) {
      case 'add': {
        const kw = keywords(rest, ['name', 'mgmtdev', 'mac', 'mtu']);
        if (kw.name === undefined || kw.mgmtdev === undefined)
          throw new UsageError('dev add needs name NAME and mgmtdev PARENT');
        const request: Args<'dev-add'> = { name: kw.name, mgmtdev: kw.mgmtdev };
        if (kw.mac !== undefined) request.mac = kw.mac;
        if (kw.mtu !== undefined) {
          if (!/^\d+$/.test(kw.mtu) || Number(kw.mtu) > 0xffff)
            throw new UsageError(`mtu must be an integer up to 65535, not "${kw.mtu}"`);
          request.mtu = Number(kw.mtu);
        }
        return (await ask('dev', io, control, 'dev-add', request)) === null ? 1 : 0;
      }
      case 'show':
      case 'list': {
        if (rest.length > 1) throw new UsageError('dev show takes one device name at most');
        const result = await ask(
          'dev',
          io,
          control,
          'dev-show',
          rest.length ? { name: rest[0]! } : {},
        );
        if (result === null) return 1;
        const devs = result as VdpaDevEntry[];
        if (json) {
          const out: Record<string, unknown> = {};
          for (const d of devs) {
            const { name, ...fields } = d;
            out[name] = fields;
          }
          io.stdout.write(`${JSON.stringify({ dev: out })}\n`);
        } else {
          for (const d of devs) {
            io.stdout.write(
              `${d.name}: type ${d.type} mgmtdev ${d.mgmtdev} vendor_id ${d.vendor_id} ` +
                `max_vq_size ${d.max_vq_size} uuid ${d.uuid}\n`,
            );
          }
        }
        return 0;
      }
      case 'config': {
        if (rest[0] !== 'show' || rest.length !== 2)
          throw new UsageError('usage: dev config show NAME');
        const result = await ask('dev', io, control, 'dev-config-show', { name: rest[1]! });
        if (result === null) return 1;
        const { name, ...c } = result as VdpaConfigEntry;
        if (json) {
          io.stdout.write(`${JSON.stringify({ config: { [name]: c } })}\n`);
        } else {
          io.stdout.write(
            `${name}: mac ${c.mac} link ${c.link} link_announce ${c.link_announce} mtu ${c.mtu}\n` +
              `  negotiated_features ${c.negotiated_features.join(' ')}\n`,
          );
        }
        return 0;
      }
      case 'vstats': {
        if (rest[0] !== 'show' || rest.length !== 4 || rest[2] !== 'qidx')
          throw new UsageError('usage: dev vstats show NAME qidx Q');
        const q = rest[3]!;
        if (!/^\d{1,5}$/.test(q)) throw new UsageError(`qidx must be a queue number, not "${q}"`);
        const result = await ask('dev', io, control, 'dev-vstats-show', {
          name: rest[1]!,
          qidx: Number(q),
        });
        if (result === null) return 1;
        const { name, ...v } = result as VdpaVstatsEntry;
        if (json) {
          io.stdout.write(`${JSON.stringify({ vstats: { [name]: v } })}\n`);
        } else {
          const counters = Object.entries(v.counters).map(([k, n]) => ` ${k} ${n}`);
          io.stdout.write(
            `${name}: queue_index ${v.queue_index} queue_type ${v.queue_type}\n` +
              ` ${counters.join('')}\n`,
          );
        }
        return 0;
      }
      case 'del': {
        if (rest.length !== 1) throw new UsageError('usage: dev del NAME');
        return (await ask('dev', io, control, 'dev-del', { name: rest[0]! })) === null ? 1 : 0;
      }
      default:
        throw new UsageError(
          verb === undefined
            ? 'give a verb: add, show, config show, del'
            : `unknown verb '${verb}'`,
        );
    }
  },
};

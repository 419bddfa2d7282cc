import { readFileSync } from 'node:fs';
import { KernelError } from '@mdev/driver-core';
import * as demo from './commands/demo';
import * as host from './commands/host';
import * as lspci from './commands/lspci';
import { bind, define, list, modify, start, stop, undefine } from './commands/mdevctl';
import * as pktgen from './commands/pktgen';
import * as screenshot from './commands/screenshot';
import * as sysfsCmd from './commands/sysfs';
import * as tty from './commands/tty';
import * as types from './commands/types';
import { dev, mgmtdev } from './commands/vdpa';
import * as vhostUser from './commands/vhost-user';
import type { Command, CommandIo } from './io';
import { isUsageError } from './usage';

/** Every subcommand of `mdev`, by name. */
export const commands: Record<string, Command> = {
  pktgen,
  types,
  sysfs: sysfsCmd,
  demo,
  screenshot,
  lspci,
  tty,
  host,
  list,
  define,
  undefine,
  modify,
  start,
  stop,
  bind,
  mgmtdev,
  dev,
  'vhost-user': vhostUser,
};

function usage(out: NodeJS.WritableStream): void {
  out.write('usage: mdev <command> [options]\n\ncommands:\n');
  for (const [name, cmd] of Object.entries(commands)) {
    out.write(`  ${name.padEnd(12)} ${cmd.summary}\n`);
  }
  out.write(
    "\n'mdev help <command>' or 'mdev <command> --help' lists the command's options;\n" +
      "'mdev --version' prints the version.\n",
  );
}

/** The version of this package, from its package.json (beside src/ and dist/ alike). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}

/** `mdev help [command]`: the command list, or one command's usage. */
function help(args: string[], io: CommandIo): number {
  if (args.length === 0 || (args.length === 1 && args[0] === 'help')) {
    usage(io.stdout);
    return 0;
  }
  const cmd = args.length === 1 ? Object.hasOwn(commands, args[0]!) && commands[args[0]!] : null;
  if (!cmd) {
    io.stderr.write(
      args.length === 1
        ? `mdev help: unknown command '${args[0]}'\n`
        : 'mdev help: one command at most\n',
    );
    usage(io.stderr);
    return 2;
  }
  io.stdout.write(cmd.usage ?? `mdev ${args[0]}: ${cmd.summary}\n`);
  return 0;
}

/** Runs `mdev <command> ...args` and resolves to the exit code. */
export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined) {
    io.stderr.write('mdev: no command given\n');
    usage(io.stderr);
    return 2;
  }
  if (name === '-h' || name === '--help' || name === 'help') return help(args, io);
  if (name === '--version' || name === '-V') {
    io.stdout.write(`mdev ${version()}\n`);
    return 0;
  }
  // Own properties only: `mdev constructor` or `mdev toString` is an unknown command too.
  const cmd = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!cmd) {
    io.stderr.write(
      name.startsWith('-')
        ? `mdev: unknown option '${name}' (options go after the command)\n`
        : `mdev: unknown command '${name}'\n`,
    );
    usage(io.stderr);
    return 2;
  }
  try {
    return await cmd.run(args, io);
  } catch (err) {
    // A command line the command cannot run (a UsageError, or parseArgs' unknown option, say):
    // the message and the command's usage, exit status 2, not 1, which pktgen means as "frame
    // lost".
    if (isUsageError(err)) {
      io.stderr.write(`mdev ${name}: ${err.message}\n${cmd.usage ?? ''}`);
      return 2;
    }
    const text = KernelError.is(err) ? `${err.message}` : String(err);
    io.stderr.write(`mdev ${name}: ${text}\n`);
    return 1;
  }
}

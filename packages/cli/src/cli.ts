import { KernelError } from '@mdev/driver-core';
import * as demo from './commands/demo';
import * as lspci from './commands/lspci';
import * as pktgen from './commands/pktgen';
import * as screenshot from './commands/screenshot';
import * as sysfsCmd from './commands/sysfs';
import * as tty from './commands/tty';
import * as types from './commands/types';
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
};

function usage(io: CommandIo): void {
  io.stdout.write('usage: mdev <command> [options]\n\ncommands:\n');
  for (const [name, cmd] of Object.entries(commands)) {
    io.stdout.write(`  ${name.padEnd(12)} ${cmd.summary}\n`);
  }
  io.stdout.write("\n'mdev <command> --help' lists the command's options.\n");
}

/** Runs `mdev <command> ...args` and resolves to the exit code. */
export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    usage(io);
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    io.stderr.write(`mdev: unknown command '${name}'\n`);
    usage(io);
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

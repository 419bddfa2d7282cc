#!/usr/bin/env node
import { getEventListeners } from 'node:events';
import { main } from './cli';

// `mdev sysfs | head -2`: the reader has gone and what is left to print has no one to read it.
// Stop quietly, as a C tool dies of SIGPIPE, instead of with an unhandled 'error' event.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

// Ctrl-C: a command that listens to the signal (pktgen) stops, reports what it did so far and
// exits 130; any other command, or a second Ctrl-C, ends the process at once with the status a
// shell gives a process killed by SIGINT (128 + 2).
const interrupt = new AbortController();
process.on('SIGINT', () => {
  if (interrupt.signal.aborted || getEventListeners(interrupt.signal, 'abort').length === 0)
    process.exit(130);
  interrupt.abort();
});

// A package manager starts a script (`pnpm mdev`, `pnpm start`) in the package's folder and
// leaves the folder the user ran it from in INIT_CWD: file names on the command line are the
// user's, so they are taken from there.
const cwd =
  process.env.npm_lifecycle_event !== undefined && process.env.INIT_CWD
    ? process.env.INIT_CWD
    : process.cwd();

main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  cwd,
  signal: interrupt.signal,
}).then((code) => {
  process.exitCode = code;
});

#!/usr/bin/env node
import { main } from './cli';

// `mdev sysfs | head -2`: the reader has gone and what is left to print has no one to read it.
// Stop quietly, as a C tool dies of SIGPIPE, instead of with an unhandled 'error' event.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
}).then((code) => {
  process.exitCode = code;
});

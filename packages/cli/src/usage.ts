/**
 * A command line a command cannot run (a bad option value, a conflict): reported as
 * `mdev <command>: <message>` with the command's usage, exit status 2. Exit status 1 is pktgen's
 * "a frame was lost", so a mistyped option must not end with it.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Whether `err` is a usage error: a UsageError, or node:util parseArgs' (unknown option, ...). */
export function isUsageError(err: unknown): err is Error {
  if (err instanceof UsageError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

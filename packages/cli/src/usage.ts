import { isAbsolute, resolve } from 'node:path';
import type { CommandIo } from './io';

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

// Plain decimals only: Number() also takes "", "1.5", "0x40", "1e3" and " 8 ", none of which a
// count should be.
const INTEGER = /^\d+$/;

/**
 * The integer option `--name` given as `text`, from `min` to `max`; `fallback` when it is not
 * given. UsageError for anything else (empty, negative, a fraction, too large).
 */
export function integerOption(
  name: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (text === undefined) return fallback;
  const n = INTEGER.test(text) ? Number(text) : Number.NaN;
  if (!(Number.isSafeInteger(n) && n >= min && n <= max)) {
    throw new UsageError(
      max === Number.MAX_SAFE_INTEGER
        ? `--${name} must be an integer >= ${min}, not "${text}"`
        : `--${name} must be an integer from ${min} to ${max}, not "${text}"`,
    );
  }
  return n;
}

/** A UUID as mdev's `create` takes it (8-4-4-4-12 hex digits). */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `--uuid` checked for its form; UsageError when it is not a UUID. */
export function uuidOption(text: string | undefined): string | undefined {
  if (text !== undefined && !UUID.test(text))
    throw new UsageError(
      `--uuid must be a UUID like 83b8f4f2-509f-382f-3c1e-e6bfe0fa1001, not "${text}"`,
    );
  return text;
}

/**
 * A file named on the command line, as an absolute path: relative to `io.cwd` (the folder the
 * user ran the command from), else to the process's. UsageError for an empty name.
 */
export function filePath(io: CommandIo, option: string, text: string): string {
  if (text === '') throw new UsageError(`${option} needs a file name, not an empty one`);
  return isAbsolute(text) ? text : resolve(io.cwd ?? process.cwd(), text);
}

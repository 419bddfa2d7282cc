/** The streams a command writes to and reads from (process streams, or buffers in tests). */
export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin?: NodeJS.ReadableStream;
}

/** A subcommand of `mdev`: a one-line summary and a runner returning the exit code. */
export interface Command {
  summary: string;
  /** The usage text, printed with a usage error. */
  usage?: string;
  run(args: string[], io: CommandIo): Promise<number>;
}

/** The streams a command writes to and reads from (process streams, or buffers in tests). */
export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin?: NodeJS.ReadableStream;
  /**
   * The folder relative file names on the command line are taken from (default: the process's
   * working directory). `pnpm mdev` starts in the package's folder, so the bin passes the user's.
   */
  cwd?: string;
  /**
   * Aborted when the user interrupts the command (Ctrl-C). A command that listens winds down and
   * reports what it did so far (pktgen, exit status 130); one that does not is ended at once.
   */
  signal?: AbortSignal;
}

/** A subcommand of `mdev`: a one-line summary and a runner returning the exit code. */
export interface Command {
  summary: string;
  /** The usage text: printed with a usage error, and by `mdev help <command>`. */
  usage?: string;
  run(args: string[], io: CommandIo): Promise<number>;
}

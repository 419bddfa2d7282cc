/**
 * A peer's process, bounded: its output is kept, a deadline stops it (the stop signal, then
 * SIGKILL after a grace period), and every process still running when the test process exits is
 * killed, so neither a failed assertion nor a hung peer leaves one behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** How a peer's process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the deadline, not the caller or the process itself, ended it. */
  timedOut: boolean;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

export interface PeerProcessOptions {
  /** Kills it after this long (stop signal, then SIGKILL after `graceMs`). */
  timeoutMs: number;
  /** The signal that asks it to finish cleanly (testpmd prints its totals on SIGINT). */
  stopSignal?: NodeJS.Signals;
  graceMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Output kept (the tail), in characters. */
  maxOutput?: number;
}

/** A spawned peer; stdout and stderr go to one log, in arrival order. */
export class PeerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  readonly started = performance.now();
  #output = '';
  #dropped = 0;
  #timedOut = false;
  #exit: Exit | undefined;
  #deadline: NodeJS.Timeout;
  #listeners = new Set<() => void>();
  readonly #stopSignal: NodeJS.Signals;
  readonly #graceMs: number;
  readonly #maxOutput: number;

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    opts: PeerProcessOptions,
  ) {
    this.#stopSignal = opts.stopSignal ?? 'SIGTERM';
    this.#graceMs = opts.graceMs ?? 5000;
    this.#maxOutput = opts.maxOutput ?? 1 << 20;
    installExitHook();
    this.child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    live.add(this.child);
    const append = (chunk: Buffer) => {
      this.#output += chunk.toString('utf8');
      if (this.#output.length > this.#maxOutput) {
        const cut = this.#output.length - this.#maxOutput;
        this.#dropped += cut;
        this.#output = this.#output.slice(cut);
      }
      for (const l of this.#listeners) l();
    };
    this.child.stdout?.on('data', append);
    this.child.stderr?.on('data', append);
    // A peer that exits before reading stdin must not turn into an EPIPE on our side.
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise<Exit>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        live.delete(this.child);
        clearTimeout(this.#deadline);
        this.#exit = { code, signal, timedOut: this.#timedOut };
        for (const l of this.#listeners) l();
        resolve(this.#exit);
      };
      this.child.on('error', (err) => {
        this.#output += `\n[spawn ${command}: ${err.message}]\n`;
        done(null, null);
      });
      this.child.on('close', done);
    });
    this.#deadline = setTimeout(() => {
      this.#timedOut = true;
      void this.stop();
    }, opts.timeoutMs);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Everything it printed so far (the last `maxOutput` characters). */
  get output(): string {
    return this.#output;
  }

  /** How it ended, once it has. */
  get exit(): Exit | undefined {
    return this.#exit;
  }

  /** The last `lines` lines of output, for error messages. */
  tail(lines = 40): string {
    const all = this.#output.split('\n');
    return `${this.#dropped > 0 ? '[...]\n' : ''}${all.slice(-lines).join('\n')}`;
  }

  /**
   * Resolves with the first match of `re` in the output (from `from` on); rejects when the
   * process exits or `ms` passes first, with the output's tail in the message.
   */
  waitFor(re: RegExp, ms: number, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.#output.slice(Math.max(0, from - this.#dropped)).match(re);
        if (m) {
          finish();
          resolve(m);
        } else if (this.#exit) {
          finish();
          reject(this.#fail(`exited (${this.#describeExit()}) before printing ${re}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(this.#fail(`printed no ${re} within ${ms} ms`));
      }, ms);
      const finish = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /**
   * Asks it to finish (the stop signal), SIGKILL after the grace period; resolves once it has
   * exited. Safe to call more than once and after it exited.
   */
  async stop(signal: NodeJS.Signals = this.#stopSignal): Promise<Exit> {
    if (this.#exit) return this.#exit;
    this.child.kill(signal);
    const kill = setTimeout(() => this.child.kill('SIGKILL'), this.#graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(kill);
    }
  }

  /** Kills it now (SIGKILL) and waits for the exit. */
  kill(): Promise<Exit> {
    return this.stop('SIGKILL');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #describeExit(): string {
    const e = this.#exit;
    if (!e) return 'running';
    const how = e.signal ? `signal ${e.signal}` : `code ${e.code}`;
    return e.timedOut ? `${how}, after its deadline` : how;
  }

  #fail(what: string): Error {
    const base = this.command.split('/').pop();
    return new Error(`${base} (pid ${this.pid}) ${what}; its last output:\n${this.tail()}`);
  }

  /** An error naming this process, with its output's tail. */
  error(what: string): Error {
    return this.#fail(what);
  }
}

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { main } from '../cli';
import { capture } from './capture';

/** The cli package's folder: `mdev` runs from its sources there. */
export const PKG = fileURLToPath(new URL('../..', import.meta.url));

/** A fresh private folder (mode 0700, as mkdtemp makes it). */
export function tempDir(prefix = 'mdev-host-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * The setup the host tests share: a private folder for the file, a control socket path and a
 * config folder of their own for each test (`paths()`), and hosts started with `host()` that are
 * killed after each test. Call it at the top level of a test file: it registers the hooks.
 */
export function hostFixture() {
  const root = tempDir();
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const hosts: HostProcess[] = [];
  afterEach(async () => {
    for (const h of hosts.splice(0)) await stopHost(h, 'SIGKILL');
  });
  return {
    paths() {
      const dir = join(root, `t${n++}`);
      mkdirSync(dir, { mode: 0o700 });
      return { control: join(dir, 'run', 'control.sock'), config: join(dir, 'config'), dir };
    },
    /** Starts a host and has it killed after the test. */
    async host(control: string, config: string, extra: string[] = []) {
      const h = await startHost(control, config, extra);
      hosts.push(h);
      return h;
    },
  };
}

/** A `mdev host` process: its child, what it wrote on stderr so far, and its end. */
export interface HostProcess {
  child: ChildProcess;
  stderr(): string;
  /** Resolves when the host wrote a line matching `pattern` on stderr. */
  waitFor(pattern: RegExp): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `mdev host ...args` from the sources (no wait). */
export function spawnHost(args: string[]): HostProcess {
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', 'src/main.ts', 'host', ...args],
    {
      cwd: PKG,
      env: { ...process.env, INIT_CWD: undefined, npm_lifecycle_event: undefined },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  child.stderr!.on('data', (b) => {
    err += b;
    for (const w of [...waiters]) {
      if (w.pattern.test(err)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stderr: () => err,
    waitFor(pattern) {
      if (pattern.test(err)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        void exited.then(({ code, signal }) =>
          reject(new Error(`host ended (${code ?? signal}) before ${pattern}:\n${err}`)),
        );
      });
    },
    exited,
  };
}

/** Starts a host and resolves once it listens. */
export async function startHost(control: string, config: string, extra: string[] = []) {
  const host = spawnHost(['--control', control, '--config', config, ...extra]);
  await host.waitFor(/listening on /);
  return host;
}

/** Stops a host with `signal` and resolves to how it ended. */
export async function stopHost(host: HostProcess, signal: NodeJS.Signals = 'SIGTERM') {
  if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill(signal);
  return host.exited;
}

/** Runs `mdev ...args` in this process (the client commands only talk to the socket). */
export async function mdev(args: string[]) {
  const { io, text } = capture();
  const code = await main(args, io);
  return { code, out: text.out, err: text.err };
}

/** A raw client of the control socket: send bytes, read reply lines. */
export class RawClient {
  readonly socket: Socket;
  private buf = '';
  private readonly waiting: (() => void)[] = [];
  closed = false;

  constructor(path: string) {
    this.socket = connect({ path });
    this.socket.on('data', (b) => {
      this.buf += b;
      for (const w of this.waiting.splice(0)) w();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w();
    });
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** The next reply line, parsed; null when the host closed the connection first. */
  async reply(): Promise<Record<string, unknown> | null> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return JSON.parse(line);
      }
      if (this.closed) return null;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  /** Resolves once the host has closed the connection. */
  async ended(): Promise<void> {
    while (!this.closed) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  close(): void {
    this.socket.destroy();
  }
}

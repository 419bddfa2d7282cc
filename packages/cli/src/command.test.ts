import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// The real command, as a user runs it: a process of its own, its exit status and its streams.
const PKG = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mdev-command-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `mdev ...args` from the sources. */
function start(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', 'src/main.ts', ...args],
    // Without the variables of the package script vitest may run under: the test says which.
    {
      cwd: PKG,
      env: { ...process.env, INIT_CWD: undefined, npm_lifecycle_event: undefined, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

/** What a run ended with: its exit status (null when a signal ended it) and its output. */
async function finish(
  child: ChildProcess,
): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  let out = '';
  let err = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (err += b));
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  );
  return { code, signal, out, err };
}

const mdev = (args: string[], env?: NodeJS.ProcessEnv) => finish(start(args, env));

/** Resolves once `stream` has written text matching `pattern`. */
function output(stream: NodeJS.ReadableStream, pattern: RegExp): Promise<void> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (b: Buffer) => {
      text += b;
      if (pattern.test(text)) {
        stream.off('data', onData);
        resolve();
      }
    };
    stream.on('data', onData);
  });
}

function mkfifo(name: string): string {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  return path;
}

/** The records of a pcap file: [ts_sec, ts_usec, caplen] each. */
function pcapRecords(bytes: Buffer): [number, number, number][] {
  const records: [number, number, number][] = [];
  for (let at = 24; at < bytes.length; ) {
    const caplen = bytes.readUInt32LE(at + 8);
    records.push([bytes.readUInt32LE(at), bytes.readUInt32LE(at + 4), caplen]);
    at += 16 + caplen;
  }
  return records;
}

describe('the mdev command', () => {
  it('ends every usage error with exit status 2 and a plain reason, never a JavaScript error', async () => {
    const cases: [string[], string][] = [
      [
        ['sysfs', 'relative/path'],
        'mdev sysfs: PATH must be absolute, like /sys/bus, not "relative/path"',
      ],
      [
        ['screenshot', '--type', 'mbochs-small', '--mode', '0x0', 'x.png'],
        'mdev screenshot: --mode 0x0: mbochs-small shows 64x64 to 800x600',
      ],
      [
        ['lspci', '--type', 'nope'],
        'mdev lspci: no mdev type "nope" (known: mtty-1, mtty-2, mdpy-vga',
      ],
      [
        ['tty', '--baud', '0', '--text', 'x'],
        'mdev tty: --baud must be an integer from 1 to 115200, not "0"',
      ],
      [
        ['pktgen', '--pcap=', '--count', '10'],
        'mdev pktgen: --pcap needs a file name, not an empty one',
      ],
      [['help', 'nope'], "mdev help: unknown command 'nope'"],
      [[], 'mdev: no command given'],
    ];
    const runs = await Promise.all(cases.map(([args]) => mdev(args)));
    for (const [i, [args, reason]] of cases.entries()) {
      const { code, out, err } = runs[i]!;
      expect({ args, code, reason: err.slice(0, reason.length) }).toEqual({
        args,
        code: 2,
        reason,
      });
      expect(err).not.toMatch(/TypeError|RangeError|Error:|ERR_|\n {4}at /);
      expect(out).toBe('');
    }
    // Nothing was written where the command runs.
    expect(existsSync(join(PKG, 'x.png'))).toBe(false);
  }, 120_000);

  it('takes file names from the folder pnpm was run in (INIT_CWD) and prints them in full', async () => {
    const user = mkdtempSync(join(dir, 'user-'));
    const r = await mdev(['screenshot', '--type', 'mdpy-vga', 'shot.png'], {
      INIT_CWD: user,
      npm_lifecycle_event: 'mdev',
    });
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    expect(r.out).toMatch(new RegExp(`-> ${join(user, 'shot.png')} \\(\\d+ bytes\\)\\n$`));
    expect(readFileSync(join(user, 'shot.png')).subarray(1, 4).toString()).toBe('PNG');
    expect(existsSync(join(PKG, 'shot.png'))).toBe(false);
  }, 60_000);

  it('says it waits for a reader of a --pcap FIFO, then writes every frame to it', async () => {
    const fifo = mkfifo('wait.fifo');
    const child = start(['pktgen', '--count', '2000', '--pcap', fifo]);
    const done = finish(child);
    // No reader yet: the command says so, instead of blocking silently in open(2).
    await output(child.stderr!, /waiting for a reader/);
    const chunks: Buffer[] = [];
    for await (const c of createReadStream(fifo)) chunks.push(c as Buffer);
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.err).toBe(`mdev pktgen: waiting for a reader of the FIFO ${fifo}\n`);
    expect(r.out).toContain(`pcap      2000 frames written to ${fifo}\n`);
    const bytes = Buffer.concat(chunks);
    expect(bytes.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(pcapRecords(bytes).map(([, , len]) => len)).toEqual(new Array(2000).fill(64));
  }, 60_000);

  it('stops pktgen at Ctrl-C, prints what was sent and received so far, and exits 130', async () => {
    // The FIFO shows when frames flow: its first bytes are the first full chunk of records.
    const fifo = mkfifo('sigint.fifo');
    const child = start(['pktgen', '--duration', '600', '--pcap', fifo]);
    const done = finish(child);
    const chunks: Buffer[] = [];
    let interrupted = false;
    for await (const c of createReadStream(fifo)) {
      chunks.push(c as Buffer);
      if (!interrupted) child.kill('SIGINT');
      interrupted = true;
    }
    const r = await done;
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 130, signal: null });
    const count = (label: string) => Number(new RegExp(`^${label} +(\\d+)$`, 'm').exec(r.out)?.[1]);
    const tx = count('tx');
    expect(tx).toBeGreaterThan(0);
    expect({ rx: count('rx'), lost: count('lost') }).toEqual({ rx: tx, lost: 0 });
    expect(r.out).toContain(`pcap      ${tx} frames written to ${fifo}\n`);
    expect(r.err).toBe(`mdev pktgen: interrupted after ${tx} frames\n`);
    expect(pcapRecords(Buffer.concat(chunks))).toHaveLength(tx);
  }, 60_000);
});

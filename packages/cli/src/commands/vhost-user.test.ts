import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loopedFrame } from '@mdev/mvnet-loopback/testing';
import { until } from '@mdev/test-utils';
import { TestFrontend } from '@mdev/vhost-mdev/testing';
import { listenUnix } from '@mdev/vhost-user';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../cli';
import { capture } from '../testing/capture';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mdev-vhost-user-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `mdev vhost-user` in this process; `stop()` is its SIGINT. */
function serve(args: string[]) {
  const { io, text } = capture();
  const interrupt = new AbortController();
  const exit = main(['vhost-user', ...args], { ...io, cwd: dir, signal: interrupt.signal });
  return { text, exit, stop: () => interrupt.abort() };
}

/** One frame through a served device, from a frontend in this process. */
async function oneFrame(path: string): Promise<void> {
  const f = TestFrontend.connect(path);
  try {
    await f.negotiate();
    const rx = await f.startRing(0);
    await f.startRing(1);
    const inbuf = f.allocator.alloc(2048)!;
    rx.addInbuf(inbuf, 2048, inbuf);
    rx.kick();
    const frame = new Uint8Array(70).map((_, i) => (i < 10 ? 0 : i));
    const out = f.allocator.alloc(frame.length)!;
    f.memory.write(out, frame);
    f.rings[1]!.vq.addOutbuf(out, frame.length, out);
    f.rings[1]!.vq.kick();
    let got: Uint8Array | null = null;
    await until(() => {
      const buf = rx.getBuf();
      if (buf !== null) got = f.memory.read(buf.token, buf.len).slice();
      return got !== null;
    });
    expect(got).toEqual(loopedFrame(frame));
  } finally {
    f.close();
  }
}

describe('mdev vhost-user', () => {
  for (const offload of [false, true]) {
    it(`serves frontends one after another until SIGINT, then prints the counters (${offload ? 'worker' : 'in-thread'})`, async () => {
      const path = join(dir, 'vu.sock');
      const run = serve(['--socket', 'vu.sock', ...(offload ? ['--offload'] : [])]);
      expect(await until(() => run.text.out.includes('listening on'))).toBe(true);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      await oneFrame(path);
      await until(() => run.text.out.includes('frontend gone'));
      await oneFrame(path); // the next frontend is served
      run.stop();
      expect(await run.exit).toBe(0);
      expect(run.text.out).toMatch(/^tx_packets +2$/m);
      expect(run.text.out).toMatch(/^rx_packets +2$/m);
      // The socket file goes with the device.
      expect(() => statSync(path)).toThrow();
    });
  }

  it('--json prints events and the final counters as JSON lines', async () => {
    const run = serve(['--socket', 'vu.sock', '--json']);
    await until(() => run.text.out.includes('"listening"'));
    await oneFrame(join(dir, 'vu.sock'));
    run.stop();
    expect(await run.exit).toBe(0);
    const lines = run.text.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0]).toEqual({ event: 'listening', type: 'listening', path: join(dir, 'vu.sock') });
    const last = lines.at(-1);
    expect(last).toMatchObject({ event: 'stopped', counters: { tx_packets: 1, rx_packets: 1 } });
  });

  it('a socket in use or a path that is no socket is a clear error, exit 1', async () => {
    const live = listenUnix(join(dir, 'live.sock'));
    try {
      const run = serve(['--socket', 'live.sock']);
      expect(await run.exit).toBe(1);
      expect(run.text.err).toMatch(/live\.sock.*in use.*EADDRINUSE/);
    } finally {
      live.close();
    }
    writeFileSync(join(dir, 'file'), 'keep');
    const run = serve(['--socket', 'file']);
    expect(await run.exit).toBe(1);
    expect(run.text.err).toMatch(/not a socket.*EEXIST/);
  });

  it('a SIGTERM sent the moment the socket appears stops it cleanly: exit 0, socket removed', async () => {
    const path = join(dir, 'early.sock');
    const main = fileURLToPath(new URL('../main.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', main, 'vhost-user', '--socket', path, '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    );
    expect(await until(() => existsSync(path), 30_000)).toBe(true);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out.trim().split('\n').at(-1)).toContain('"event":"stopped"');
    expect(existsSync(path)).toBe(false);
  });

  it('a stale socket file is replaced', async () => {
    listenUnix(join(dir, 'stale.sock')).close();
    const run = serve(['--socket', 'stale.sock']);
    expect(await until(() => run.text.out.includes('listening on'))).toBe(true);
    run.stop();
    expect(await run.exit).toBe(0);
  });

  it('refuses a command line it cannot run with the usage, exit 2', async () => {
    for (const args of [
      [],
      ['--socket'],
      ['--socket', 'a', '--queue-size', '3'],
      ['--socket', 'a', '--device', 'nope'],
    ]) {
      const { io, text } = capture();
      expect([args, await main(['vhost-user', ...args], { ...io, cwd: dir })]).toEqual([args, 2]);
      expect(text.err).toContain('usage: mdev vhost-user');
    }
  });
});

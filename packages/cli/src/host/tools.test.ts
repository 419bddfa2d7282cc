import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { main } from '../cli';
import { testPatternPixel } from '../commands/screenshot';
import { capture } from '../testing/capture';
import { hostFixture, mdev, RawClient, stopHost } from '../testing/host';

const { paths, host } = hostFixture();

const VENDOR_VF = fileURLToPath(
  new URL('../../../../examples/vendor-vf/src/mdev-driver.ts', import.meta.url),
);

/** Resolves once the device's transmit queue has counted a frame (a run is going on). */
async function framesSent(c: string[], uuid: string): Promise<void> {
  for (;;) {
    const r = await mdev(['dev', 'vstats', 'show', uuid, 'qidx', '1', '-j', ...c]);
    if (JSON.parse(r.out).vstats[uuid].counters.tx_packets > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts a device of PARENT/TYPE on the host and returns its UUID. */
async function start(c: string[], parent: string, type: string): Promise<string> {
  const r = await mdev(['start', '-p', parent, '-t', type, ...c]);
  expect(r).toMatchObject({ code: 0, err: '' });
  return r.out.trim();
}

/** Runs `mdev ...args` here with `stdin` and an abort signal; stdout as bytes. */
async function mdevWith(args: string[], stdin?: NodeJS.ReadableStream, signal?: AbortSignal) {
  const { io, text } = capture();
  const out: Buffer[] = [];
  io.stdout.on('data', (b: Buffer) => out.push(Buffer.from(b)));
  const code = await main(args, { ...io, stdin, signal });
  return { code, out: Buffer.concat(out), err: text.err };
}

const rgb = (png: PNG, x: number, y: number) => {
  const i = (y * png.width + x) * 4;
  return (png.data[i]! << 16) | (png.data[i + 1]! << 8) | png.data[i + 2]!;
};

describe('mdev tty -u on a running host', () => {
  it("sends through the host's mtty port and writes the echo, 8-bit clean, in chunks", async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const uuid = await start(c, 'mtty', 'mtty-2');
    const text = await mdev(['tty', '-u', uuid, '--text', 'hello', '-v', ...c]);
    expect(text.code).toBe(0);
    expect(text.out).toBe('hello');
    expect(text.err).toMatch(/tty: sent 5 received 5 interrupts 5 overruns 0 polled 0/);
    // More than one request carries (16 KiB), every byte value, over MSI on port 1.
    const all = Buffer.alloc(20_000);
    for (let i = 0; i < all.length; i++) all[i] = (i * 7) & 0xff;
    const piped = await mdevWith(
      ['tty', '-u', uuid, '--port', '1', '--msi', '-v', ...c],
      Readable.from([all.subarray(0, 9000), all.subarray(9000)]),
    );
    expect(piped.code).toBe(0);
    expect(piped.out.equals(all)).toBe(true);
    expect(piped.err).toMatch(/tty: sent 20000 received 20000 .* overruns 0/);
    // The device is the host's: it is still there, and the host lists it.
    expect((await mdev(['list', ...c])).out).toContain(`${uuid} mtty mtty-2 manual`);
  });

  it('reports what the host refuses: no such device, not an mtty, a port the card lacks', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const one = await start(c, 'mtty', 'mtty-1');
    const net = await start(c, 'mvnet_loopback', 'mvnet_loopback-virtio');
    const none = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1fff';
    for (const [uuid, extra, why] of [
      [none, [], /ENODEV|no device|not found/i],
      [net, [], /is not bound to vfio_mdev/],
      [one, ['--port', '1'], /has port 0 only/],
    ] as [string, string[], RegExp][]) {
      const r = await mdev(['tty', '-u', uuid, '--text', 'x', ...extra, ...c]);
      expect({ uuid, code: r.code, out: r.out }).toEqual({ uuid, code: 1, out: '' });
      expect(r.err).toMatch(why);
    }
    // A malformed request straight on the socket: an error reply, the host goes on.
    const raw = new RawClient(control);
    for (const [verb, args, code] of [
      ['tty', { uuid: one, data: '%%' }, 'EINVAL'],
      ['tty', { uuid: one, data: 5 }, 'EINVAL'],
      ['tty', { uuid: one, port: 7 }, 'EINVAL'],
      ['tty', { uuid: one, baud: 7 }, 'EINVAL'],
      ['tty', {}, 'EINVAL'],
      ['screenshot', {}, 'EINVAL'],
      ['screenshot', { uuid: 'x' }, 'ENODEV'],
      ['screenshot', { uuid: one, mode: 7 }, 'EINVAL'],
      ['pktgen', {}, 'EINVAL'],
      ['pktgen', { uuid: net, duration: -1 }, 'EINVAL'],
      ['pktgen', { uuid: net, duration: '1' }, 'EINVAL'],
      ['pktgen', { uuid: net, duration: 0 }, 'EINVAL'],
      ['pktgen', { uuid: net, count: 0 }, 'EINVAL'],
      ['pktgen', { uuid: net, size: 10 }, 'EINVAL'],
      ['pktgen', { uuid: net, size: 100_000 }, 'EINVAL'],
      ['pktgen', { uuid: net, burst: 0 }, 'EINVAL'],
      ['pktgen', { uuid: one }, 'ENODEV'],
    ] as [string, Record<string, unknown>, string][]) {
      raw.send(`${JSON.stringify({ version: 1, verb, args })}\n`);
      expect({ verb, args, reply: await raw.reply() }).toMatchObject({
        verb,
        args,
        reply: { ok: false, error: { code } },
      });
    }
    raw.close();
    expect((await mdev(['tty', '-u', one, '--text', 'ok', ...c])).out).toBe('ok');
  });

  it('without a host on the control socket, works in its own process as before', async () => {
    const { control } = paths();
    const r = await mdev(['tty', '--text', 'abc', '--control', control]);
    expect(r).toEqual({ code: 0, out: 'abc', err: '' });
  });
});

describe('mdev screenshot -u on a running host', () => {
  it("writes the PNG of the host's mdpy display, as the device draws it", async () => {
    const { control, config, dir } = paths();
    await host(control, config);
    const c = ['--control', control];
    const uuid = await start(c, 'mdpy', 'mdpy-vga');
    const out = join(dir, 'mdpy.png');
    const r = await mdev(['screenshot', '-u', uuid, ...c, out]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      new RegExp(`^mdpy-vga ${uuid}: 640x480 XR24, stride 2560, via region-mmap`),
    );
    const png = PNG.sync.read(readFileSync(out));
    expect([png.width, png.height]).toEqual([640, 480]);
    // mdpy's grey gradient, top to bottom.
    expect(rgb(png, 0, 0)).toBe(0);
    expect(rgb(png, 320, 240)).toBe(0x7f7f7f);
  });

  it('gives an mbochs display no guest set up a mode and the test pattern, then reads it', async () => {
    const { control, config, dir } = paths();
    await host(control, config);
    const c = ['--control', control];
    const uuid = await start(c, 'mbochs', 'mbochs-small');
    const out = join(dir, 'mbochs.png');
    const r = await mdev(['screenshot', '-u', uuid, '--mode', '320x200', ...c, out]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/: 320x200 XR24, .* via dmabuf/);
    const png = PNG.sync.read(readFileSync(out));
    expect([png.width, png.height]).toEqual([320, 200]);
    for (const [x, y] of [
      [0, 0],
      [100, 50],
      [319, 199],
    ] as const) {
      expect(rgb(png, x, y)).toBe(testPatternPixel(x, y, 320, 200));
    }
    // The display keeps its mode and picture: a second screenshot, and the status page's.
    const again = await mdev(['screenshot', '-u', uuid, ...c, out]);
    expect(again.out).toMatch(/: 320x200 XR24/);
    const kept = PNG.sync.read(readFileSync(out));
    for (const [x, y] of [
      [0, 0],
      [100, 50],
      [319, 199],
    ] as const) {
      expect(rgb(kept, x, y)).toBe(testPatternPixel(x, y, 320, 200));
    }
    // A mode the display cannot show: EINVAL, exit 1.
    const big = await mdev(['screenshot', '-u', uuid, '--mode', '4000x4000', ...c, out]);
    expect(big.code).toBe(1);
    expect(big.err).toMatch(/^mdev screenshot: screenshot: --mode 4000x4000: mbochs-small shows/);
    // Not a display: an error, exit 1.
    const tty = await start(c, 'mtty', 'mtty-1');
    const bad = await mdev(['screenshot', '-u', tty, ...c, out]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/is not an mdpy or mbochs display/);
  });
});

describe('mdev pktgen -u on a running host', () => {
  it('runs over a device made with mdev dev add, which stays after the run', async () => {
    const { control, config } = paths();
    await host(control, config);
    const c = ['--control', control];
    const add = ['dev', 'add', 'name', 'vdpa0', 'mgmtdev', 'mvnet_loopback'];
    expect((await mdev([...add, ...c])).code).toBe(0);
    const dev = JSON.parse((await mdev(['dev', 'show', '-j', ...c])).out).dev.vdpa0;
    const r = await mdev([
      'pktgen',
      '-u',
      dev.uuid,
      '--count',
      '3000',
      '--size',
      '128',
      '--json',
      ...c,
    ]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out);
    expect(result).toMatchObject({
      name: 'pktgen',
      mode: 'on the host',
      parent: 'mvnet_loopback',
      uuid: dev.uuid,
      size: 128,
      tx: 3000,
      rx: 3000,
      lost: 0,
      corrupted: 0,
      reordered: 0,
      interrupted: false,
    });
    // The counters of the device moved by the run, and it is still there.
    const tx = JSON.parse(
      (await mdev(['dev', 'vstats', 'show', 'vdpa0', 'qidx', '1', '-j', ...c])).out,
    );
    expect(tx.vstats.vdpa0.counters.tx_packets).toBe(3000);
    // Text output, a second run on the same device.
    const text = await mdev(['pktgen', '-u', dev.uuid, '--count', '100', ...c]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^parent +mvnet_loopback\n/m);
    expect(text.out).toMatch(/^datapath +on the host, queues of 256\n/m);
  });

  it('Ctrl-C stops the run on the host, which replies with what it did (exit 130)', async () => {
    const { control, config } = paths();
    const h = await host(control, config);
    const c = ['--control', control];
    const uuid = await start(c, 'mvnet_loopback', 'mvnet_loopback-virtio');
    const ac = new AbortController();
    const run = mdevWith(
      ['pktgen', '-u', uuid, '--count', '1000000000', '--json', ...c],
      undefined,
      ac.signal,
    );
    await framesSent(c, uuid);
    // One run per device at a time.
    const second = await mdev(['pktgen', '-u', uuid, '--count', '10', ...c]);
    expect(second.code).toBe(1);
    expect(second.err).toMatch(/EBUSY|a run over \S+ goes on/);
    ac.abort();
    const r = await run;
    expect(r.code).toBe(130);
    const result = JSON.parse(r.out.toString());
    expect(result.interrupted).toBe(true);
    expect(result.tx).toBeGreaterThan(0);
    expect(result.tx).toBeLessThan(1_000_000_000);
    expect(result.rx + result.dropped).toBe(result.tx);
    expect(r.err).toBe(`mdev pktgen: interrupted after ${result.tx} frames\n`);
    expect(h.child.exitCode).toBeNull();
    // The device is free for the next run.
    expect((await mdev(['pktgen', '-u', uuid, '--count', '10', ...c])).code).toBe(0);
  });

  it('SIGTERM during a run: the run stops and replies, every device is removed, exit 0', async () => {
    const { control, config } = paths();
    const h = await host(control, config);
    const c = ['--control', control];
    const uuid = await start(c, 'mvnet_loopback', 'mvnet_loopback-virtio');
    const run = mdev(['pktgen', '-u', uuid, '--count', '1000000000', '--json', ...c]);
    await framesSent(c, uuid);
    expect(await stopHost(h, 'SIGTERM')).toEqual({ code: 0, signal: null });
    expect(h.stderr()).toContain(`stopped ${uuid}`);
    expect(h.stderr()).not.toMatch(/failed|Error/);
    // The client got the figures of the run the host stopped.
    const r = await run;
    expect(r.code).toBe(130);
    const result = JSON.parse(r.out);
    expect(result.interrupted).toBe(true);
    expect(result.rx + result.dropped).toBe(result.tx);
  });

  it('runs over a vendor-vf VF loaded with --driver', async () => {
    const { control, config } = paths();
    await host(control, config, ['--driver', VENDOR_VF]);
    const c = ['--control', control];
    expect((await mdev(['dev', 'add', 'name', 'vf0', 'mgmtdev', 'vendor_vf', ...c])).code).toBe(0);
    const uuid = JSON.parse((await mdev(['dev', 'show', '-j', ...c])).out).dev.vf0.uuid;
    const r = await mdev(['pktgen', '-u', uuid, '--count', '2000', '--json', ...c]);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out);
    // The VF drops a frame that finds no receive buffer, as a NIC does, and counts it.
    expect(result).toMatchObject({ parent: 'vendor-vf', tx: 2000, lost: 0, corrupted: 0 });
    expect(result.rx + result.dropped).toBe(2000);
  });

  it('refuses: no host, options that shape the device, a device that is not virtio-net', async () => {
    const { control, config } = paths();
    const c = ['--control', control];
    const U = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
    const nohost = await mdev(['pktgen', '-u', U, '--count', '10', ...c]);
    expect(nohost.code).toBe(1);
    expect(nohost.err).toMatch(/no host is listening on/);
    await host(control, config);
    for (const opt of [['--offload'], ['--queue-size', '64'], ['--device', 'mvnet_loopback']]) {
      const r = await mdev(['pktgen', '-u', U, ...opt, ...c]);
      expect({ opt, code: r.code }).toEqual({ opt, code: 2 });
      expect(r.err).toMatch(/shapes the device, which the host holds/);
    }
    const tty = await start(c, 'mtty', 'mtty-1');
    const r = await mdev(['pktgen', '-u', tty, '--count', '10', ...c]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/has no net device/);
    const none = await mdev(['pktgen', '-u', U, '--count', '10', ...c]);
    expect(none.err).toMatch(/no device/);
  });
});

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loopedFrame } from '@mdev/mvnet-loopback/testing';
import { until } from '@mdev/test-utils';
import { TestFrontend } from '@mdev/vhost-mdev/testing';
import { listenUnix } from '@mdev/vhost-user';
import { describe, expect, it } from 'vitest';
import { hostFixture, mdev, stopHost } from '../testing/host';

const { paths, host } = hostFixture();

/** One frame through a device served on `socket`, from a frontend in this process. */
async function frameThrough(f: TestFrontend): Promise<void> {
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
}

/** Waits until the backend closed the frontend's connection (its reads see the end). */
async function hungUp(f: TestFrontend): Promise<boolean> {
  return until(() => {
    try {
      f.conn.receive();
    } catch {
      return true;
    }
    return f.conn.ended;
  }, 10_000);
}

describe('mdev bind: a device handed to a vhost-user frontend and back', () => {
  it('moves a dev-add device to vhost_mdev on a socket, serves a frontend, and takes it back', async () => {
    const { control, config, dir } = paths();
    const h = await host(control, config, ['--http', '127.0.0.1:0']);
    const port = Number(/status page on http:\/\/127\.0\.0\.1:(\d+)\//.exec(h.stderr())![1]);
    type Status = { uuid: string; vhost: { socket: string; connected: boolean } | null };
    const status = async () =>
      ((await (await fetch(`http://127.0.0.1:${port}/api/status`)).json()) as { devices: Status[] })
        .devices;
    const c = ['--control', control];
    expect(
      (await mdev(['dev', 'add', 'name', 'vm1', 'mgmtdev', 'mvnet_loopback', ...c])).code,
    ).toBe(0);
    const uuid = JSON.parse((await mdev(['dev', 'show', 'vm1', '-j', ...c])).out).dev.vm1.uuid;
    const socket = join(dir, 'vm1.sock');

    const bound = await mdev([
      'bind',
      '-u',
      uuid,
      '--driver',
      'vhost_mdev',
      '--socket',
      socket,
      ...c,
    ]);
    expect(bound).toEqual({ code: 0, out: `${uuid} vhost_mdev ${socket}\n`, err: '' });
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const f = TestFrontend.connect(socket);
    try {
      await frameThrough(f);
      await h.waitFor(new RegExp(`${uuid}: frontend connected`));
      // The status page shows the binding and the socket.
      expect((await status()).find((d) => d.uuid === uuid)).toMatchObject({
        driver: 'vhost_mdev',
        vhost: { socket, connected: true },
      });
      // Back to the host's own virtio-net: the frontend is dropped and the socket goes.
      expect((await mdev(['bind', '-u', uuid, '--driver', 'virtio_mdev', ...c])).out).toBe(
        `${uuid} virtio_mdev\n`,
      );
      expect(await hungUp(f)).toBe(true);
      expect(existsSync(socket)).toBe(false);
    } finally {
      f.close();
    }
    // virtio-net has it again: a pktgen run on the host goes through.
    const run = await mdev(['pktgen', '-u', uuid, '--count', '1000', ...c]);
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/^lost +0$/m);

    // And to vhost_mdev once more, on the default socket next to the control socket.
    const again = await mdev(['bind', '-u', uuid, '--driver', 'vhost_mdev', ...c]);
    const path = join(dir, 'run', `vhost-mdev-${uuid}.sock`);
    expect(again.out).toBe(`${uuid} vhost_mdev ${path}\n`);
    const g = TestFrontend.connect(path);
    try {
      await frameThrough(g);
      // SIGTERM with a frontend being served: the device stops, the frontend is dropped, the
      // socket file goes and the host exits 0.
      expect(await stopHost(h, 'SIGTERM')).toEqual({ code: 0, signal: null });
      expect(await hungUp(g)).toBe(true);
      expect(existsSync(path)).toBe(false);
    } finally {
      g.close();
    }
  }, 60_000);

  it('refuses what it cannot do, and a command line it cannot run with exit 2', async () => {
    const { control, config, dir } = paths();
    await host(control, config);
    const c = ['--control', control];
    const none = '00000000-0000-4000-8000-000000000001';
    const r = await mdev(['bind', '-u', none, '--driver', 'vhost_mdev', ...c]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ENODEV/);
    for (const args of [
      ['bind', '--driver', 'vhost_mdev'],
      ['bind', '-u', none],
      ['bind', '-u', none, '--driver', 'vfio_mdev'],
      ['bind', '-u', none, '--driver', 'virtio_mdev', '--socket', 'x.sock'],
      ['bind', '-u', 'not-a-uuid', '--driver', 'vhost_mdev'],
    ]) {
      expect([args, (await mdev([...args, ...c])).code]).toEqual([args, 2]);
    }
    // A socket path in use by somebody else: the bind fails with EADDRINUSE, the device is
    // left unbound, and the other listener's file is untouched.
    expect((await mdev(['dev', 'add', 'name', 'd', 'mgmtdev', 'mvnet_loopback', ...c])).code).toBe(
      0,
    );
    const uuid = JSON.parse((await mdev(['dev', 'show', 'd', '-j', ...c])).out).dev.d.uuid;
    const busy = join(dir, 'busy.sock');
    const other = listenUnix(busy);
    try {
      const b = await mdev(['bind', '-u', uuid, '--driver', 'vhost_mdev', '--socket', busy, ...c]);
      expect(b.code).toBe(1);
      expect(b.err).toMatch(/EADDRINUSE/);
      expect(statSync(busy).isSocket()).toBe(true);
    } finally {
      other.close();
    }
    // A VFIO device is no virtio device.
    const tty = await mdev(['start', '-p', 'mtty', '-t', 'mtty-2', ...c]);
    expect(tty.code).toBe(0);
    const ttyUuid = tty.out.trim();
    const v = await mdev(['bind', '-u', ttyUuid, '--driver', 'vhost_mdev', ...c]);
    expect(v.code).toBe(1);
    expect(v.err).toMatch(/EINVAL/);
  }, 60_000);
});

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { registerVirtioNetDriver, unregisterVirtioNetDriver } from '@mdev/virtio-net';
import { siblingModule, spawnWorker } from '@mdev/virtio-ring';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type VirtioUserDevice, virtioUserAdd, virtioUserRemove } from '../src/index';
import { exchange, frameOf, netdevOf, startBackend, stopBackend, waitUntil } from './helpers';
import type { Lie } from './liar-worker';

let dir: string;
const workers: Worker[] = [];
const devices: VirtioUserDevice[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'virtio-user-'));
  registerVirtioNetDriver();
});

afterEach(async () => {
  for (const d of devices.splice(0)) if (d.isAdded) virtioUserRemove(d);
  unregisterVirtioNetDriver();
  for (const w of workers.splice(0)) await w.terminate();
  rmSync(dir, { recursive: true, force: true });
});

const openFds = () => new Set(readdirSync('/proc/self/fd'));

async function backend(path: string, offload = false): Promise<Worker> {
  const w = await startBackend(path, offload);
  workers.push(w);
  return w;
}

async function add(...args: Parameters<typeof virtioUserAdd>): Promise<VirtioUserDevice> {
  const d = await virtioUserAdd(...args);
  devices.push(d);
  return d;
}

describe('virtio-user against our own vhost-user backend', () => {
  for (const ring of ['split', 'packed'] as const) {
    for (const offload of [false, true]) {
      it(`virtio-net's frames come back through mvnet_loopback, in order and intact (${ring} rings, ${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
        const path = join(dir, 'vhost.sock');
        const w = await backend(path, offload);
        const vdev = await add({ path, ring });
        // Our backend has a config space: the MAC comes from the device, not made up here.
        expect(vdev.localConfig).toBeNull();
        expect((vdev.features >> 34n) & 1n).toBe(ring === 'packed' ? 1n : 0n);
        const netdev = netdevOf(vdev);
        netdev.open();
        const got = await exchange(netdev, 1000);
        expect(got.length).toBe(1000);
        for (let i = 0; i < 1000; i++) expect(got[i]).toEqual(frameOf(i));
        netdev.stop();
        virtioUserRemove(vdev);
        const stats = await stopBackend(w);
        expect(stats.txPackets).toBe(1000);
        expect(stats.rxPackets).toBe(1000);
      });
    }
  }

  it('listens with `server` for a backend in client mode', async () => {
    const path = join(dir, 'listen.sock');
    const pending = add({ path, server: true });
    const w = spawnWorker(siblingModule('backend-worker', import.meta.url), {
      workerData: {
        path,
        uuid: '0b7a1c5e-9f2d-4e8b-a6c3-1d2e3f4a5b6c',
        offload: false,
        client: true,
      },
    });
    workers.push(w);
    const vdev = await pending;
    const netdev = netdevOf(vdev);
    netdev.open();
    const got = await exchange(netdev, 100);
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => frameOf(i)));
  });

  it('refuses to listen where a file is (EADDRINUSE), and leaves the file alone', async () => {
    const path = join(dir, 'taken');
    writeFileSync(path, 'not a socket');
    await expect(virtioUserAdd({ path, server: true })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
    expect(readFileSync(path, 'utf8')).toBe('not a socket');
  });

  it('a backend that goes away mid-run breaks the queues, says why, and a new one is served', async () => {
    const path = join(dir, 'vhost.sock');
    const before = openFds();
    const first = await backend(path);
    const reasons: string[] = [];
    const vdev = await add({ path, onDisconnect: (r) => reasons.push(r) });
    const netdev = netdevOf(vdev);
    netdev.open();
    let pulled = false;
    const got = await exchange(netdev, 100_000, {
      ms: 1000,
      onSent: (sent) => {
        if (sent > 2000 && !pulled) {
          pulled = true;
          void stopBackend(first);
        }
      },
    });
    expect(await waitUntil(() => reasons.length > 0)).toBe(true);
    expect(reasons, `got ${got.length} frames`).toEqual(['the backend hung up']);
    expect(vdev.connected).toBe(false);
    expect(vdev.vqs.every((vq) => vq.isBroken)).toBe(true);
    // What came back before it went is intact and in order.
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(100_000);
    for (let i = 0; i < got.length; i++)
      expect(got[i], `frame ${i} of ${got.length}`).toEqual(frameOf(i));
    virtioUserRemove(vdev);
    // A backend on the same socket again: a new device is served as the first was.
    const second = await backend(path);
    const again = await add({ path });
    const netdev2 = netdevOf(again);
    netdev2.open();
    expect((await exchange(netdev2, 200)).length, 'frames through the second backend').toBe(200);
    virtioUserRemove(again);
    await stopBackend(second);
    // Nothing of the two sessions stays open: sockets, eventfds and memfds all closed.
    const left = () => [...openFds()].filter((fd) => !before.has(fd));
    expect(await waitUntil(() => left().length === 0), `left open: ${left()}`).toBe(true);
  });
});

describe('virtio-user against a backend that lies', () => {
  async function liar(lie: Lie): Promise<{ path: string; done: Promise<string[]> }> {
    const path = join(dir, `${lie}.sock`);
    const w = spawnWorker(siblingModule('liar-worker', import.meta.url), {
      workerData: { path, lie },
    });
    workers.push(w);
    const done = new Promise<string[]>((resolve) => {
      w.on('message', (m: { done?: boolean; seen?: string[] }) => {
        if (m.done) resolve(m.seen!);
      });
    });
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    return { path, done };
  }

  it('no VIRTIO_F_VERSION_1: ENODEV, nothing registered, nothing left open', async () => {
    const before = openFds();
    const { path } = await liar('no-version-1');
    await expect(virtioUserAdd({ path })).rejects.toMatchObject({ code: 'ENODEV' });
    expect(await waitUntil(() => [...openFds()].every((fd) => before.has(fd)))).toBe(true);
  });

  it('no reply: ETIMEDOUT after the reply timeout', async () => {
    const { path } = await liar('silent');
    await expect(virtioUserAdd({ path, replyTimeoutMs: 200 })).rejects.toMatchObject({
      code: 'ETIMEDOUT',
    });
  });

  it('a hang-up in the handshake: ECONNRESET', async () => {
    const { path } = await liar('hang-up');
    await expect(virtioUserAdd({ path })).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('a status that never reads back 0 after reset: the add fails with EIO, bounded', async () => {
    const { path, done } = await liar('status-never-resets');
    await expect(virtioUserAdd({ path })).rejects.toMatchObject({ code: 'EIO' });
    const seen = await done;
    // Reset reads the status back a bounded number of times, then gives up.
    expect(seen.filter((t) => t === 'GET_STATUS').length).toBeGreaterThan(1);
    expect(seen.filter((t) => t === 'GET_STATUS').length).toBeLessThan(1100);
  });

  for (const lie of ['used-idx-too-far', 'used-id-not-in-flight'] as const) {
    it(`a used ring that lies (${lie}) breaks that queue, never the process`, async () => {
      const { path } = await liar(lie);
      const vdev = await add({ path, mac: new Uint8Array([2, 0, 0, 0, 0, 1]) });
      const netdev = netdevOf(vdev);
      expect(netdev.mac).toEqual(new Uint8Array([2, 0, 0, 0, 0, 1]));
      netdev.open();
      netdev.xmit(frameOf(0));
      const rx = vdev.vqs[0]!;
      expect(await waitUntil(() => rx.isBroken)).toBe(true);
      expect(rx.brokenBecause).toMatch(lie === 'used-idx-too-far' ? /used index/ : /id/);
      expect(vdev.vqs[1]!.isBroken).toBe(false);
    });
  }

  it('a message nobody asked for ends the session with the reason', async () => {
    const { path } = await liar('unsolicited');
    const reasons: string[] = [];
    const vdev = await add({ path, onDisconnect: (r) => reasons.push(r) });
    const netdev = netdevOf(vdev);
    netdev.open();
    netdev.xmit(frameOf(0));
    expect(await waitUntil(() => reasons.length > 0)).toBe(true);
    expect(reasons).toEqual(['the backend sent a message nobody asked for']);
    expect(vdev.vqs.every((vq) => vq.isBroken)).toBe(true);
  });
});

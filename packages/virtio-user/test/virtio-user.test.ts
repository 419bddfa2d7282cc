import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import {
  type NetDevice,
  netdevList,
  registerVirtioNetDriver,
  unregisterVirtioNetDriver,
  VirtNet,
} from '@mdev/virtio-net';
import { siblingModule, spawnWorker } from '@mdev/virtio-ring';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type VirtioUserDevice, virtioUserAdd, virtioUserRemove } from '../src/index';

let dir: string;
const workers: Worker[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'virtio-user-'));
  registerVirtioNetDriver();
});

afterEach(async () => {
  unregisterVirtioNetDriver();
  for (const w of workers.splice(0)) await w.terminate();
  rmSync(dir, { recursive: true, force: true });
});

/** Our backend (mvnet_loopback on vhost_mdev) serving `path` from a worker thread. */
async function startBackend(path: string, offload = false): Promise<Worker> {
  const worker = spawnWorker(siblingModule('backend-worker', import.meta.url), {
    workerData: { path, uuid: randomUUID(), offload },
  });
  workers.push(worker);
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return worker;
}

async function stopBackend(worker: Worker): Promise<Record<string, number>> {
  const stats = new Promise<Record<string, number>>((resolve) =>
    worker.once('message', (m: { stats: Record<string, number> }) => resolve(m.stats)),
  );
  worker.postMessage('stop');
  return stats;
}

function netdevOf(vdev: VirtioUserDevice): NetDevice {
  const netdev = netdevList().find((d) => d instanceof VirtNet && d.vdev === vdev);
  if (!netdev) throw new Error('virtio-net did not bind');
  return netdev;
}

const frameOf = (i: number): Uint8Array => {
  const f = new Uint8Array(60 + (i % 40));
  f.fill(0xff, 0, 6);
  for (let j = 12; j < f.length; j++) f[j] = (i * 7 + j) & 0xff;
  return f;
};

/** Sends `n` frames, waits for them to come back, and returns what came back. */
async function exchange(netdev: NetDevice, n: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  netdev.onReceive = (buf, offset, length) => got.push(buf.slice(offset, offset + length));
  let sent = 0;
  const deadline = Date.now() + 10_000;
  while (got.length < n && Date.now() < deadline) {
    while (sent < n && netdev.xmit(frameOf(sent), sent < n - 1) === 0) sent++;
    netdev.flush();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  netdev.onReceive = null;
  return got;
}

describe('virtio-user against our own vhost-user backend', () => {
  for (const offload of [false, true]) {
    it(`virtio-net's frames come back through mvnet_loopback (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      const path = join(dir, 'vhost.sock');
      const backend = await startBackend(path, offload);
      const vdev = await virtioUserAdd({ path });
      try {
        const netdev = netdevOf(vdev);
        netdev.open();
        const got = await exchange(netdev, 1000);
        expect(got.length).toBe(1000);
        for (let i = 0; i < 1000; i++) expect(got[i]).toEqual(frameOf(i));
        netdev.stop();
      } finally {
        virtioUserRemove(vdev);
      }
      const stats = await stopBackend(backend);
      expect(stats.txPackets).toBe(1000);
      expect(stats.rxPackets).toBe(1000);
    });
  }
});

import { randomUUID } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { type NetDevice, netdevList, VirtNet } from '@mdev/virtio-net';
import { siblingModule, spawnWorker } from '@mdev/virtio-ring';
import type { VirtioUserDevice } from '../src/index';

/** Our backend (mvnet_loopback on vhost_mdev) serving `path` from a worker thread. */
export async function startBackend(path: string, offload = false): Promise<Worker> {
  const worker = spawnWorker(siblingModule('backend-worker', import.meta.url), {
    workerData: { path, uuid: randomUUID(), offload },
  });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return worker;
}

/** Stops a `startBackend` worker; the device's counters. */
export async function stopBackend(worker: Worker): Promise<Record<string, number>> {
  const stats = new Promise<Record<string, number>>((resolve) =>
    worker.once('message', (m: { stats: Record<string, number> }) => resolve(m.stats)),
  );
  worker.postMessage('stop');
  return stats;
}

/** The net device virtio-net made for `vdev`. */
export function netdevOf(vdev: VirtioUserDevice): NetDevice {
  const netdev = netdevList().find((d) => d instanceof VirtNet && d.vdev === vdev);
  if (!netdev) throw new Error('virtio-net did not bind');
  return netdev;
}

/** Frame `i`: broadcast, a marker at 12, then bytes that depend on `i`; 60 to 99 bytes long. */
export function frameOf(i: number): Uint8Array {
  const f = new Uint8Array(60 + (i % 40));
  f.fill(0xff, 0, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // the local experimental EtherType: no peer stack answers it
  new DataView(f.buffer).setUint32(14, i);
  for (let j = 18; j < f.length; j++) f[j] = (i * 7 + j) & 0xff;
  return f;
}

const until = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends `n` frames (`frameOf(0..n-1)`) and collects what comes back until all have or `ms`
 * passes with nothing new; `onSent` runs after each burst (a test may pull the backend away).
 * At most `window` frames are in flight: a forwarder like testpmd's io mode drops what finds
 * the receive ring full, where mvnet_loopback waits.
 */
export async function exchange(
  netdev: NetDevice,
  n: number,
  options: { ms?: number; window?: number; onSent?: (sent: number) => void } = {},
): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  netdev.onReceive = (buf, offset, length) => got.push(buf.slice(offset, offset + length));
  let sent = 0;
  let idleSince = Date.now();
  let seen = 0;
  try {
    while (got.length < n && Date.now() - idleSince < (options.ms ?? 5000)) {
      const limit = Math.min(n, got.length + (options.window ?? 192));
      while (sent < limit && netdev.isUp && netdev.xmit(frameOf(sent), sent < limit - 1) === 0) {
        sent++;
      }
      netdev.flush();
      options.onSent?.(sent);
      await until(1);
      if (got.length !== seen) {
        seen = got.length;
        idleSince = Date.now();
      }
    }
  } finally {
    netdev.onReceive = null;
  }
  return got;
}

/** Waits until `cond()` holds, up to `ms`; whether it did. */
export async function waitUntil(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await until(5);
  }
  return true;
}

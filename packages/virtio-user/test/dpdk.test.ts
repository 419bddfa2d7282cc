import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWithPeers, startTestpmd, vhostBackend } from '@mdev/test-peers';
import { registerVirtioNetDriver, unregisterVirtioNetDriver } from '@mdev/virtio-net';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { virtioUserAdd, virtioUserRemove } from '../src/index';
import { exchange, frameOf, netdevOf, waitUntil } from './helpers';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'virtio-user-dpdk-'));
  registerVirtioNetDriver();
});

afterEach(() => {
  unregisterVirtioNetDriver();
  rmSync(dir, { recursive: true, force: true });
});

describeWithPeers(['testpmd'], "virtio-user against DPDK's net_vhost (testpmd)", () => {
  for (const ring of ['split', 'packed'] as const)
    it(`io forwarding sends every frame back in order and intact; testpmd counts them (${ring} rings)`, async () => {
      const path = join(dir, 'dpdk.sock');
      const t = await startTestpmd({ vdevs: [vhostBackend(path)], args: ['--forward-mode=io'] });
      try {
        const vdev = await virtioUserAdd({ path, ring, mac: new Uint8Array([2, 0, 0, 0, 0, 7]) });
        expect((vdev.features >> 34n) & 1n).toBe(ring === 'packed' ? 1n : 0n);
        // net_vhost has no config space (no VHOST_USER_PROTOCOL_F_CONFIG): the MAC is ours.
        expect(vdev.localConfig).not.toBeNull();
        const netdev = netdevOf(vdev);
        expect(netdev.mac).toEqual(new Uint8Array([2, 0, 0, 0, 0, 7]));
        netdev.open();
        const got = await exchange(netdev, 5000);
        expect(got.length).toBe(5000);
        for (let i = 0; i < got.length; i++) expect(got[i], `frame ${i}`).toEqual(frameOf(i));
        virtioUserRemove(vdev);
      } finally {
        const r = await t.stop();
        expect(r.ports[0]).toMatchObject({ rxPackets: 5000, txPackets: 5000, txDropped: 0 });
      }
    });

  it('testpmd killed mid-run: the run ends with the reason, and a new testpmd is served', async () => {
    const path = join(dir, 'dpdk.sock');
    const t = await startTestpmd({ vdevs: [vhostBackend(path)], args: ['--forward-mode=io'] });
    const reasons: string[] = [];
    try {
      const vdev = await virtioUserAdd({ path, onDisconnect: (r) => reasons.push(r) });
      const netdev = netdevOf(vdev);
      netdev.open();
      let killed = false;
      const got = await exchange(netdev, 1_000_000, {
        ms: 1000,
        onSent: (sent) => {
          if (sent > 5000 && !killed) {
            killed = true;
            t.process.child.kill('SIGKILL');
          }
        },
      });
      expect(await waitUntil(() => reasons.length > 0)).toBe(true);
      expect(reasons).toEqual(['the backend hung up']);
      expect(got.length).toBeGreaterThan(0);
      for (let i = 0; i < got.length; i++) expect(got[i], `frame ${i}`).toEqual(frameOf(i));
      virtioUserRemove(vdev);
    } finally {
      await t.stop();
    }
    // A killed testpmd leaves its socket file, which the next one refuses to bind over.
    rmSync(path, { force: true });
    const again = await startTestpmd({ vdevs: [vhostBackend(path)], args: ['--forward-mode=io'] });
    try {
      const vdev = await virtioUserAdd({ path });
      const netdev = netdevOf(vdev);
      netdev.open();
      expect((await exchange(netdev, 500)).length).toBe(500);
      virtioUserRemove(vdev);
    } finally {
      await again.stop();
    }
  });

  it('with `server`, a testpmd in client mode connects to us', async () => {
    const path = join(dir, 'listen.sock');
    const pending = virtioUserAdd({ path, server: true });
    const t = await startTestpmd({
      vdevs: [vhostBackend(path, { client: true })],
      args: ['--forward-mode=io'],
    });
    try {
      const vdev = await pending;
      const netdev = netdevOf(vdev);
      netdev.open();
      const got = await exchange(netdev, 1000);
      expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => frameOf(i)));
      virtioUserRemove(vdev);
    } finally {
      await t.stop();
    }
  });
});

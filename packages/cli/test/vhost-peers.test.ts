// `mdev vhost-user` against real frontends in other processes: DPDK's testpmd (virtio-user PMD)
// and a Linux guest under QEMU whose own virtio_net driver sends through mvnet_loopback. Each
// peer is bounded in time; where one is missing the test is skipped with the reason, and fails
// under CI=true.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  describeWithPeers,
  runLinuxGuest,
  startTestpmd,
  virtioUserFrontend,
} from '@mdev/test-peers';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostFixture, mdev } from '../src/testing/host';
import { leaked, resources, serveIn, until } from './served';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mdev-vhost-peers-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const serve = (name: string, extra: string[] = []) => serveIn(dir, name, extra);

describeWithPeers(['testpmd'], 'mdev vhost-user with DPDK testpmd (virtio-user)', () => {
  for (const offload of [false, true]) {
    it(`flowgen frames come back, as many as the device counted (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      const served = await serve(`flowgen-${offload}`, offload ? ['--offload'] : []);
      try {
        const pmd = await startTestpmd({
          vdevs: [virtioUserFrontend(served.socket)],
          args: ['--forward-mode=flowgen', '--txd=256', '--rxd=256'],
        });
        await pmd.waitForPackets(0, { rx: 50_000 }, 45_000);
        const r = await pmd.stop();
        const port = r.ports[0]!;
        expect(r.exit.code).toBe(0);
        const { counters, code } = await served.stop();
        expect(code).toBe(0);
        // Every frame testpmd sent reached the device; what came back is what the device sent
        // (less at most a ring of frames still in flight when testpmd stopped).
        expect(port.rxPackets).toBeGreaterThan(50_000);
        expect(Math.abs(counters.tx_packets! - port.txPackets)).toBeLessThanOrEqual(256);
        expect(counters.rx_packets! - port.rxPackets).toBeGreaterThanOrEqual(0);
        expect(counters.rx_packets! - port.rxPackets).toBeLessThanOrEqual(256);
        // A loopback drops only what finds the RX ring full.
        expect(counters.rx_packets! + counters.tx_dropped!).toBe(counters.tx_packets);
        expect(counters.ring_errors).toBe(0);
      } finally {
        await served.proc.kill();
      }
    }, 120_000);
  }

  for (const offload of [false, true]) {
    it(`packed_vq=1: flowgen frames come back over packed rings (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      const served = await serve(`packed-${offload}`, offload ? ['--offload'] : []);
      try {
        const pmd = await startTestpmd({
          vdevs: [virtioUserFrontend(served.socket, { packed: true })],
          args: ['--forward-mode=flowgen', '--txd=256', '--rxd=256'],
        });
        await pmd.waitForPackets(0, { rx: 50_000 }, 45_000);
        const r = await pmd.stop();
        const port = r.ports[0]!;
        expect(r.exit.code).toBe(0);
        const { counters, code } = await served.stop();
        expect(code).toBe(0);
        // The frontend took VIRTIO_F_RING_PACKED from what the backend offered.
        const started = served.events().filter((e) => e.event === 'ring-started');
        expect(started.map((e) => e.layout)).toEqual(['packed', 'packed']);
        expect(port.rxPackets).toBeGreaterThan(50_000);
        expect(Math.abs(counters.tx_packets! - port.txPackets)).toBeLessThanOrEqual(256);
        expect(counters.rx_packets! - port.rxPackets).toBeGreaterThanOrEqual(0);
        expect(counters.rx_packets! - port.rxPackets).toBeLessThanOrEqual(256);
        expect(counters.rx_packets! + counters.tx_dropped!).toBe(counters.tx_packets);
        expect(counters.ring_errors).toBe(0);
      } finally {
        await served.proc.kill();
      }
    }, 120_000);
  }

  it('a frontend killed mid-run is followed by another, served again; nothing leaks', async () => {
    const served = await serve('reconnect');
    try {
      const pid = served.proc.child.pid!;
      const before = resources(pid);
      const first = await startTestpmd({
        vdevs: [virtioUserFrontend(served.socket)],
        args: ['--forward-mode=flowgen', '--txd=256', '--rxd=256'],
      });
      await first.waitForPackets(0, { rx: 10_000 }, 45_000);
      await first.process.stop('SIGKILL');
      expect(
        await until(() => served.events().some((e) => e.event === 'disconnected'), 10_000),
      ).toBe(true);
      // The backend let go of every fd and mapping the frontend gave it.
      expect(leaked(before, resources(pid))).toEqual({ fds: [], maps: 0 });
      const second = await startTestpmd({
        vdevs: [virtioUserFrontend(served.socket)],
        args: ['--forward-mode=flowgen', '--txd=256', '--rxd=256'],
      });
      await second.waitForPackets(0, { rx: 10_000 }, 45_000);
      const r = await second.stop();
      expect(r.ports[0]!.rxPackets).toBeGreaterThanOrEqual(10_000);
      expect(
        await until(
          () => served.events().filter((e) => e.event === 'disconnected').length === 2,
          10_000,
        ),
      ).toBe(true);
      expect(leaked(before, resources(pid))).toEqual({ fds: [], maps: 0 });
      const { code } = await served.stop();
      expect(code).toBe(0);
    } finally {
      await served.proc.kill();
    }
  }, 150_000);
});

describeWithPeers(
  ['qemu', 'kernel', 'busybox'],
  'mdev vhost-user with a Linux guest (QEMU)',
  () => {
    for (const offload of [false, true]) {
      it(`the guest's virtio_net receives its own frames back (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
        const served = await serve(`guest-${offload}`, offload ? ['--offload'] : []);
        try {
          const guest = await runLinuxGuest({ socket: served.socket, timeoutMs: 120_000 });
          const { counters, code } = await served.stop();
          expect(code).toBe(0);
          // The guest sent (ARP requests) and received every frame back from the loopback.
          expect(guest.stats.txPackets).toBeGreaterThan(0);
          expect(guest.stats.rxPackets).toBe(guest.stats.txPackets);
          expect(counters.tx_packets).toBe(guest.stats.txPackets);
          expect(counters.rx_packets).toBe(guest.stats.rxPackets);
        } finally {
          await served.proc.kill();
        }
      }, 180_000);
    }
  },
);

describeWithPeers(
  ['qemu', 'kernel', 'busybox'],
  'mdev vhost-user with a Linux guest on packed rings (virtio-net-pci packed=on)',
  () => {
    for (const offload of [false, true]) {
      it(`the guest's virtio_net receives its own frames back over packed rings (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
        const served = await serve(`guest-packed-${offload}`, offload ? ['--offload'] : []);
        try {
          const guest = await runLinuxGuest({
            socket: served.socket,
            timeoutMs: 120_000,
            packed: true,
          });
          const started = served.events().filter((e) => e.event === 'ring-started');
          const { counters, code } = await served.stop();
          expect(code).toBe(0);
          // The guest's driver took VIRTIO_F_RING_PACKED: both rings ran packed.
          expect(started.length).toBeGreaterThanOrEqual(2);
          expect(started.every((e) => e.layout === 'packed')).toBe(true);
          expect(guest.stats.txPackets).toBeGreaterThan(0);
          expect(guest.stats.rxPackets).toBe(guest.stats.txPackets);
          expect(counters.tx_packets).toBe(guest.stats.txPackets);
          expect(counters.rx_packets).toBe(guest.stats.rxPackets);
        } finally {
          await served.proc.kill();
        }
      }, 180_000);
    }
  },
);

const hosts = hostFixture();

describeWithPeers(
  ['qemu', 'kernel', 'busybox'],
  'a device made with mdev dev add, given to a VM',
  () => {
    it('QEMU boots a Linux guest against the socket of a dev-add device bound to vhost_mdev', async () => {
      const { control, config, dir: hostDir } = hosts.paths();
      await hosts.host(control, config);
      const c = ['--control', control];
      const add = await mdev([
        'dev',
        'add',
        'name',
        'vm0',
        'mgmtdev',
        'mvnet_loopback',
        'mac',
        '02:00:00:00:00:2a',
        ...c,
      ]);
      expect(add.code).toBe(0);
      const uuid = JSON.parse((await mdev(['dev', 'show', 'vm0', '-j', ...c])).out).dev.vm0.uuid;
      const socket = join(hostDir, 'vm0.sock');
      expect(
        (await mdev(['bind', '-u', uuid, '--driver', 'vhost_mdev', '--socket', socket, ...c])).code,
      ).toBe(0);
      const guest = await runLinuxGuest({ socket, timeoutMs: 120_000 });
      expect(guest.stats.txPackets).toBeGreaterThan(0);
      expect(guest.stats.rxPackets).toBe(guest.stats.txPackets);
      // The host's counters of the device are the guest's.
      const tx = await mdev(['dev', 'vstats', 'show', 'vm0', 'qidx', '1', ...c]);
      expect(tx.out).toContain(`tx_packets ${guest.stats.txPackets}`);
    }, 180_000);
  },
);

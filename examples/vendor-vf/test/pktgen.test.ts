// virtio-net over the VF through the unchanged virtio-mdev transport, end to end with pktgen:
// every frame intact, a reset mid-traffic, a reset that stops the VF's ring accesses at once,
// a garbage ring, a link change, and the `pnpm pktgen` entry.
import { Writable } from 'node:stream';
import { main, runPktgen, setupStack } from '@mdev/cli';
import { sysfs } from '@mdev/driver-core';
import {
  registerVendorVfPktgenDevice,
  VENDOR_VF_PKTGEN_DEVICE,
  VENDOR_VF_TYPE_PATH,
  type VendorVfPktgenParent,
  VF_DEVICE_CFG,
  VF_NOTIFY,
  VF_NOTIFY_OFF_MULTIPLIER,
  VF_TX_QUEUE,
  vendorVfOps,
} from '@mdev/example-vendor-vf';
import { mdevDevices } from '@mdev/mdev-core';
import { nextTurns, sleep, until } from '@mdev/test-utils';
import {
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  virtioHasFeature,
} from '@mdev/virtio';
import { NETDEV_TX_OK, netdevList, VirtNet, virtioNetDriver } from '@mdev/virtio-net';
import { vringUsedSize } from '@mdev/virtio-ring';
import { offerBadHead } from '@mdev/virtio-ring/testing';
import { describe, expect, it, onTestFinished, vi } from 'vitest';

registerVendorVfPktgenDevice();

function stack(queueSize = 256) {
  const s = setupStack(undefined, { device: VENDOR_VF_PKTGEN_DEVICE, queueSize });
  const card = (s.parent as VendorVfPktgenParent).card;
  return { s, card, netdev: s.netdev as VirtNet };
}

/** A frame with a recognisable payload: byte i is (seed + i) & 0xff past the MAC header. */
function frame(len: number, mac: Uint8Array, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set(mac, 0);
  f.set(mac, 6);
  for (let i = 12; i < len; i++) f[i] = (seed + i) & 0xff;
  return f;
}

describe('virtio-net over the vendor VF', () => {
  it('negotiates through the transport: the VF MAC, ACCESS_PLATFORM, DRIVER_OK', () => {
    const { s, card, netdev } = stack();
    try {
      const inst = card.instanceOf(s.mdev);
      const mac = new Uint8Array(6);
      // The driver's MAC is the one in the VF's device configuration.
      for (let i = 0; i < 6; i++) mac[i] = inst.bar.read8(VF_DEVICE_CFG + i);
      expect([...netdev.mac]).toEqual([...mac]);
      expect(virtioHasFeature(netdev.vdev, VIRTIO_F_ACCESS_PLATFORM)).toBe(true);
      expect(netdev.vdev.config.getStatus(netdev.vdev) & VIRTIO_CONFIG_S_DRIVER_OK).toBe(
        VIRTIO_CONFIG_S_DRIVER_OK,
      );
      expect(sysfs.read(`${VENDOR_VF_TYPE_PATH}/available_instances`)).toBe('7\n');
    } finally {
      s.teardown();
    }
  });

  it('runs pktgen end to end with every frame back intact', async () => {
    const { s, card } = stack(512);
    try {
      const r = await runPktgen(s, { count: 20_000, size: 256, burst: 32, verify: true });
      expect([r.tx, r.rx + r.dropped, r.corrupted, r.reordered, r.lost]).toEqual([
        20_000, 20_000, 0, 0, 0,
      ]);
      expect(r.rx).toBeGreaterThan(0);
      const stats = card.stats(s.mdev)!;
      expect(stats.tx_packets).toBe(20_000);
      expect(stats.rx_packets).toBe(r.rx);
      expect(stats.tx_dropped).toBe(r.dropped);
      expect(stats.rx_bytes).toBe(r.rx * (256 + 12)); // each frame with its virtio_net_hdr
      expect(stats.ring_errors).toBe(0);
    } finally {
      s.teardown();
    }
    expect(mdevDevices()).toHaveLength(0);
  });

  it('carries frames of every size byte for byte', async () => {
    const { s, netdev } = stack();
    try {
      const got: Uint8Array[] = [];
      netdev.onReceive = (buf, off, len) => got.push(buf.slice(off, off + len));
      const sent: Uint8Array[] = [];
      for (const len of [60, 61, 127, 128, 511, 1000, 1514]) {
        const f = frame(len, netdev.mac, len);
        sent.push(f);
        expect(netdev.xmit(f, false)).toBe(NETDEV_TX_OK);
      }
      expect(await until(() => got.length === sent.length)).toBe(true);
      expect(got).toEqual(sent);
    } finally {
      s.teardown();
    }
  });

  it('resets the device mid-traffic (driver unbound and bound again) and carries on', async () => {
    const { s, netdev } = stack();
    try {
      const vdev = netdev.vdev;
      const run = runPktgen(s, { count: 5_000_000, size: 64, burst: 32, verify: true });
      await nextTurns(30);
      vdev.releaseDriver();
      const first = await run;
      expect(first.tx).toBeGreaterThan(0);
      expect(first.tx).toBeLessThan(5_000_000);
      expect([first.corrupted, first.lost]).toEqual([0, 0]);
      expect(first.rx + first.dropped).toBe(first.tx);
      // virtio_dev_remove: reset, then ACKNOWLEDGE again for the next driver.
      expect(vdev.config.getStatus(vdev) & VIRTIO_CONFIG_S_DRIVER_OK).toBe(0);

      expect(vdev.attach()).toBe(true);
      const again = netdevList().find(
        (d): d is VirtNet => d instanceof VirtNet && d.vdev.parent === s.mdev,
      )!;
      again.open();
      const second = await runPktgen(
        { ...s, netdev: again },
        { count: 10_000, size: 64, burst: 32, verify: true },
      );
      expect([second.tx, second.rx + second.dropped, second.corrupted, second.lost]).toEqual([
        10_000, 10_000, 0, 0,
      ]);
      expect(second.rx).toBeGreaterThan(0);
    } finally {
      s.teardown();
    }
  });

  it('stops touching the rings as soon as the reset write returns', async () => {
    const { s, card, netdev } = stack();
    try {
      let rx = 0;
      netdev.onReceive = () => rx++;
      const f = frame(64, netdev.mac, 1);
      for (let i = 0; i < 8; i++) expect(netdev.xmit(f, i < 7)).toBe(NETDEV_TX_OK);
      expect(await until(() => rx === 8)).toBe(true);
      const inst = card.instanceOf(s.mdev);
      const { tx } = netdev.queues;
      const memory = netdev.vdev.ram.memory;
      const usedIdx = () => {
        const v = memory.view(tx.usedAddr + 2, 2);
        return v[0]! | (v[1]! << 8);
      };
      const before = card.stats(s.mdev)!;
      const used = usedIdx();

      // The transport's reset: a device_status write of 0, read back as 0 when it returns.
      netdev.vdev.config.reset(netdev.vdev);
      expect(netdev.vdev.config.getStatus(netdev.vdev)).toBe(0);
      // The driver's rings are still there; frames made available now, with the doorbell rung
      // by hand, must not be touched by the VF.
      for (let i = 0; i < 4; i++) netdev.xmit(f, i < 3);
      inst.bar.write16(VF_NOTIFY + VF_TX_QUEUE * VF_NOTIFY_OFF_MULTIPLIER, VF_TX_QUEUE);
      // The doorbell is a posted write: wait until the VF has seen it, then a little longer.
      // Whether the driver's own xmit also rang depends on where the VF left its notification
      // suppression before the reset, so count at least the hand-rung one.
      expect(await until(() => card.stats(s.mdev)!.kicks > before.kicks, 20_000)).toBe(true);
      await sleep(50);
      expect(usedIdx()).toBe(used);
      const after = card.stats(s.mdev)!;
      expect(after.tx_packets).toBe(before.tx_packets);
      expect(after.kicks).toBeGreaterThan(before.kicks); // the doorbell arrived, the VF stayed still
      expect(rx).toBe(8);
    } finally {
      s.teardown();
    }
  });

  it('stops touching the rings as soon as the reset write returns, also mid-run', async () => {
    const { s, card, netdev } = stack();
    try {
      const vdev = netdev.vdev;
      const memory = vdev.ram.memory;
      const { rx, tx } = netdev.queues;
      // Everything the VF writes in a ring: the used area (flags, index, elements, avail_event).
      const usedArea = () =>
        [rx, tx].map((q) => [...memory.read(q.usedAddr, vringUsedSize(q.num))]);
      const usedIdx = () =>
        memory.view(tx.usedAddr + 2, 2)[0]! | (memory.view(tx.usedAddr + 3, 1)[0]! << 8);
      const run = runPktgen(s, { count: 5_000_000, size: 64, burst: 32, verify: true });
      // The VF is busy: frames are moving, and the used index moved since the last look, just
      // before the reset (nothing runs in between on this thread).
      expect(await until(() => card.stats(s.mdev)!.tx_packets > 1000)).toBe(true);
      const used = usedIdx();
      expect(await until(() => usedIdx() !== used)).toBe(true);

      vdev.config.reset(vdev);
      expect(vdev.config.getStatus(vdev)).toBe(0);
      const snapshot = usedArea();
      const { tx_packets } = card.stats(s.mdev)!;
      // pktgen keeps adding frames (its kicks go nowhere now); give the VF every chance to
      // touch the rings, with a doorbell rung by hand too.
      card
        .instanceOf(s.mdev)
        .bar.write16(VF_NOTIFY + VF_TX_QUEUE * VF_NOTIFY_OFF_MULTIPLIER, VF_TX_QUEUE);
      await nextTurns(20);
      await sleep(50);
      expect(usedArea()).toEqual(snapshot);
      expect(card.stats(s.mdev)!.tx_packets).toBe(tx_packets);

      vdev.releaseDriver();
      const r = await run;
      expect([r.corrupted, r.reordered]).toEqual([0, 0]);
    } finally {
      s.teardown();
    }
  });

  it('breaks on a garbage ring with DEVICE_NEEDS_RESET and a config interrupt; another VF runs on', async () => {
    const { s, card, netdev } = stack();
    const warnings: string[] = [];
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation((w) => {
      warnings.push(String(w));
    });
    try {
      const vdev = netdev.vdev;
      let rx = 0;
      netdev.onReceive = () => rx++;
      // The config interrupts virtio-net gets for this device.
      const configChanged = vi.spyOn(virtioNetDriver, 'configChanged');
      onTestFinished(() => configChanged.mockRestore());
      const configChanges = () => configChanged.mock.calls.filter(([d]) => d === vdev).length;
      // Whether the VF's thread holds the process: while queues are enabled on a working VF.
      const vf = card.instanceOf(s.mdev).vf;
      const holds: boolean[] = [];
      const holdProcess = vf.holdProcess.bind(vf);
      vf.holdProcess = (hold) => {
        holds.push(hold);
        holdProcess(hold);
      };
      const f = frame(64, netdev.mac, 2);
      for (let i = 0; i < 16; i++) expect(netdev.xmit(f, i < 15)).toBe(NETDEV_TX_OK);
      expect(await until(() => rx === 16)).toBe(true);

      // The driver publishes a head that does not exist in its TX avail ring and kicks.
      const tx = vdev.vqs[1]!;
      offerBadHead(vdev.ram.memory, tx);
      tx.notify();
      expect(
        await until(() => (vdev.config.getStatus(vdev) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0),
      ).toBe(true);
      expect(await until(() => configChanges() > 0)).toBe(true);
      expect(card.stats(s.mdev)!.ring_errors).toBe(1);
      // The VF reports the fault once, as a warning of the host's.
      expect(await until(() => warnings.length > 0)).toBe(true);
      await nextTurns(20);
      expect(warnings).toEqual([expect.stringMatching(/TX ring fault/)]);
      expect(rx).toBe(16);
      // No frame will come until a reset: the VF no longer holds the process, not even when a
      // queue is enabled again before that reset; after it, the next enable takes the hold.
      expect(holds.at(-1)).toBe(false);
      vendorVfOps.setVqReady(s.mdev, VF_TX_QUEUE, true);
      expect(holds.at(-1)).toBe(false);
      vdev.releaseDriver();
      expect(holds.at(-1)).toBe(false);
      expect(vdev.attach()).toBe(true);
      expect(holds.at(-1)).toBe(true);

      const uuid = '11111111-2222-4333-8444-555555555555';
      sysfs.write(`${VENDOR_VF_TYPE_PATH}/create`, uuid);
      const mdev = mdevDevices().find((m) => m.uuid === uuid)!;
      const second = netdevList().find(
        (d): d is VirtNet => d instanceof VirtNet && d.vdev.parent === mdev,
      )!;
      second.open();
      const r = await runPktgen(
        { ...s, netdev: second, uuid, deviceDropped: () => s.parent.txDropped(mdev) },
        { count: 5000, size: 64, burst: 32, verify: true },
      );
      expect([r.tx, r.rx + r.dropped, r.corrupted, r.lost]).toEqual([5000, 5000, 0, 0]);
      expect(r.rx).toBeGreaterThan(0);
    } finally {
      warn.mockRestore();
      s.teardown();
    }
  });

  it('reports a link change through the config generation and a config interrupt', async () => {
    const { s, card, netdev } = stack();
    try {
      expect(netdev.carrier).toBe(true);
      const gen = netdev.vdev.config.generation(netdev.vdev);
      card.instanceOf(s.mdev).vf.setLink(false);
      expect(await until(() => !netdev.carrier)).toBe(true);
      expect(netdev.vdev.config.generation(netdev.vdev)).toBe((gen + 1) & 0xff);
      card.instanceOf(s.mdev).vf.setLink(true);
      expect(await until(() => netdev.carrier)).toBe(true);
    } finally {
      s.teardown();
    }
  });

  it('runs as `mdev pktgen --device vendor-vf` and prints the figures', async () => {
    let out = '';
    const sink = () =>
      new Writable({
        write(chunk, _enc, cb) {
          out += String(chunk);
          cb();
        },
      });
    const code = await main(
      ['pktgen', '--device', VENDOR_VF_PKTGEN_DEVICE, '--count', '3000', '--json'],
      { stdout: sink(), stderr: sink() },
    );
    expect(code).toBe(0);
    const r = JSON.parse(out.trim());
    expect([r.tx, r.rx + r.dropped, r.lost, r.corrupted]).toEqual([3000, 3000, 0, 0]);
  });
});

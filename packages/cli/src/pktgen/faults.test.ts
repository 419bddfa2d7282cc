import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { nextTurns, until } from '@mdev/test-utils';
import { VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_NEEDS_RESET } from '@mdev/virtio';
import { NETDEV_TX_OK, netdevList, VirtNet, virtioNetDriver } from '@mdev/virtio-net';
import { offerBadHead } from '@mdev/virtio-ring/testing';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { FramePattern } from './frame';
import { MVNET_TYPE_PATH, runPktgen, setupStack } from './run';

function netdevOf(mdevUuid: string): VirtNet {
  const mdev = mdevDevices().find((m) => m.uuid === mdevUuid)!;
  return netdevList().find((d): d is VirtNet => d instanceof VirtNet && d.vdev.parent === mdev)!;
}

for (const offload of [false, true]) {
  const mode = offload ? 'worker' : 'same-thread';

  describe(`faults and resets (${mode} datapath)`, () => {
    it('runs pktgen end to end with every frame back intact', async () => {
      const stack = setupStack(undefined, { offload, queueSize: 512 });
      try {
        expect(stack.mvnet!.offload !== null).toBe(offload);
        const r = await runPktgen(stack, { count: 20_000, size: 256, burst: 32, verify: true });
        expect([r.tx, r.rx + r.dropped, r.corrupted, r.reordered, r.lost]).toEqual([
          20_000, 20_000, 0, 0, 0,
        ]);
        expect(r.rx).toBeGreaterThan(0);
        const stats = stack.mvnet!.stateOf(stack.mdev).stats;
        expect(stats.txPackets).toBe(20_000);
        expect(stats.rxPackets).toBe(r.rx);
        expect(stats.txDropped).toBe(r.dropped);
      } finally {
        stack.teardown();
      }
      expect(mdevDevices()).toHaveLength(0);
    });

    it('resets the device mid-traffic (driver unbound and bound again) and carries on', async () => {
      const stack = setupStack(undefined, { offload });
      try {
        const vdev = stack.netdev instanceof VirtNet ? stack.netdev.vdev : null;
        if (!vdev) throw new Error('no virtio device');
        const run = runPktgen(stack, { count: 5_000_000, size: 64, burst: 32, verify: true });
        await nextTurns(30);
        // virtnet_remove resets the device while frames are in flight; every frame is accounted.
        vdev.releaseDriver();
        const first = await run;
        expect(first.tx).toBeGreaterThan(0);
        expect(first.tx).toBeLessThan(5_000_000);
        expect(first.corrupted).toBe(0);
        expect(first.rx + first.dropped).toBe(first.tx);
        expect(first.lost).toBe(0);
        expect(vdev.config.getStatus(vdev) & VIRTIO_CONFIG_S_DRIVER_OK).toBe(0);

        // Bound again: a new net device on the same mdev, and the queues work from scratch.
        expect(vdev.attach()).toBe(true);
        const again = netdevOf(stack.uuid);
        expect(again).toBeDefined();
        again.open();
        const second = await runPktgen(
          { ...stack, netdev: again },
          { count: 10_000, size: 64, burst: 32, verify: true },
        );
        // (The worker datapath may drop frames when the receive ring runs dry: counted, not lost.)
        expect([second.tx, second.rx + second.dropped, second.corrupted, second.lost]).toEqual([
          10_000, 10_000, 0, 0,
        ]);
        expect(second.rx).toBeGreaterThan(0);
        if (!offload) expect(second.dropped).toBe(0);
      } finally {
        stack.teardown();
      }
    });

    it('breaks the queue when the driver writes garbage into the ring and reports DEVICE_NEEDS_RESET', async () => {
      const stack = setupStack(undefined, { offload });
      try {
        const netdev = stack.netdev as VirtNet;
        const vdev = netdev.vdev;
        const frame = new Uint8Array(64);
        const pattern = new FramePattern(64, netdev.mac);
        let rx = 0;
        netdev.onReceive = () => rx++;
        // The config interrupts virtio-net gets for this device.
        const configChanged = vi.spyOn(virtioNetDriver, 'configChanged');
        onTestFinished(() => configChanged.mockRestore());
        const configChanges = () => configChanged.mock.calls.filter(([d]) => d === vdev).length;
        for (let i = 0; i < 16; i++) {
          pattern.stamp(frame, i);
          expect(netdev.xmit(frame, i < 15)).toBe(NETDEV_TX_OK);
        }
        expect(await until(() => rx === 16)).toBe(true);

        // The driver scribbles a head that does not exist into its TX avail ring, publishes it
        // and kicks the device.
        const tx = vdev.vqs[1]!;
        offerBadHead(stack.mvnet!.options.memory, tx);
        tx.notify();
        expect(
          await until(() => (vdev.config.getStatus(vdev) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0),
        ).toBe(true);
        expect(stack.mvnet!.stateOf(stack.mdev).stats.ringErrors).toBe(1);
        expect(await until(() => configChanges() > 0)).toBe(true);
        // Nothing came back from the broken ring, and the process is fine.
        await nextTurns(20);
        expect(rx).toBe(16);

        // Another instance of the same parent is not affected.
        const uuid = '11111111-2222-4333-8444-555555555555';
        sysfs.write(`${MVNET_TYPE_PATH}/create`, uuid);
        const second = netdevOf(uuid);
        second.open();
        const mdev = mdevDevices().find((m) => m.uuid === uuid)!;
        const r = await runPktgen(
          { ...stack, netdev: second, uuid, deviceDropped: () => stack.parent.txDropped(mdev) },
          { count: 5000, size: 64, burst: 32, verify: true },
        );
        expect([r.tx, r.rx + r.dropped, r.corrupted, r.lost]).toEqual([5000, 5000, 0, 0]);
        expect(r.rx).toBeGreaterThan(0);
      } finally {
        stack.teardown();
      }
    });
  });
}

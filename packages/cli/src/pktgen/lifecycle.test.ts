import { sysfs } from '@mdev/driver-core';
import { mdevDevices } from '@mdev/mdev-core';
import { nextTurns } from '@mdev/test-utils';
import { netdevList, VirtNet } from '@mdev/virtio-net';
import { describe, expect, it } from 'vitest';
import { MVNET_TYPE_PATH, runPktgen, setupStack } from './run';

describe('pktgen and the mdev lifecycle', () => {
  for (const offload of [false, true])
    it(`survives removal of the mdev while traffic runs: no frame after remove, tx = rx + dropped (${offload ? 'worker' : 'same thread'})`, async () => {
      // In worker mode with small queues the sender is often stopped on a full ring when the
      // device goes: no TX wake comes after that, and the run must still end.
      const stack = setupStack(undefined, offload ? { offload, queueSize: 16 } : {});
      try {
        let afterRemove = 0;
        let removed = false;
        const run = runPktgen(stack, { count: 5_000_000, size: 64, burst: 32, verify: true });
        const onReceive = stack.netdev.onReceive!;
        stack.netdev.onReceive = (buf, off, len) => {
          if (removed) afterRemove++;
          onReceive(buf, off, len);
        };
        await nextTurns(50);
        sysfs.write(`/sys/bus/mdev_virtio/devices/${stack.uuid}/remove`, '1\n');
        removed = true;
        const r = await run;
        expect(r.tx).toBeGreaterThan(0);
        expect(r.tx).toBeLessThan(5_000_000);
        expect(afterRemove).toBe(0);
        expect(r.corrupted).toBe(0);
        expect(r.rx + r.dropped).toBe(r.tx);
        expect(r.lost).toBe(0);
        expect(mdevDevices()).toHaveLength(0);
        expect(netdevList()).toHaveLength(0);
        // No queue is left ready, so the device's worker no longer holds the process.
        expect(stack.mvnet!.offload?.holdsProcess ?? false).toBe(false);
      } finally {
        stack.teardown();
      }
    });

  it('runs many mvnet instances at once, each looping only its own frames', async () => {
    const stack = setupStack();
    try {
      const extra = Array.from({ length: 7 }, (_, i) => `00000000-0000-4000-8000-00000000000${i}`);
      for (const uuid of extra) sysfs.write(`${MVNET_TYPE_PATH}/create`, uuid);
      expect(sysfs.read(`${MVNET_TYPE_PATH}/available_instances`)).toBe(`${64 - 8}\n`);
      const nets = netdevList().filter((d): d is VirtNet => d instanceof VirtNet);
      expect(nets.map((n) => n.name).sort()).toEqual([
        'eth0',
        'eth1',
        'eth2',
        'eth3',
        'eth4',
        'eth5',
        'eth6',
        'eth7',
      ]);
      for (const nd of nets) if (!nd.isUp) nd.open();
      const results = await Promise.all(
        nets.map((netdev) => {
          const mdev = mdevDevices().find((m) => netdev.vdev.parent === m)!;
          return runPktgen(
            { ...stack, netdev, deviceDropped: () => stack.parent.txDropped(mdev) },
            { count: 2000, size: 128, burst: 16, verify: true },
          );
        }),
      );
      for (const r of results)
        expect([r.tx, r.rx, r.dropped, r.corrupted, r.lost]).toEqual([2000, 2000, 0, 0, 0]);
    } finally {
      stack.teardown();
    }
    expect(mdevDevices()).toHaveLength(0);
  });
});

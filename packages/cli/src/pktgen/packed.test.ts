// Packed virtqueues through the whole stack: virtio-net negotiates VIRTIO_F_RING_PACKED with
// mvnet_loopback over the virtio-mdev transport, its rings are packed on both sides, in the same
// thread and with the datapath in a worker, and every frame comes back intact.
import { mdevDevices } from '@mdev/mdev-core';
import { VIRTIO_F_RING_PACKED, virtioHasFeature } from '@mdev/virtio';
import { VirtNet } from '@mdev/virtio-net';
import { PackedVirtqueue, Virtqueue, VringhPacked } from '@mdev/virtio-ring';
import { describe, expect, it } from 'vitest';
import { main } from '../cli';
import { capture } from '../testing/capture';
import { runPktgen, setupStack } from './run';

describe('mdev pktgen over packed rings', () => {
  for (const offload of [false, true]) {
    it(`negotiates packed rings and loops every frame back intact (${offload ? 'worker' : 'same-thread'} datapath)`, async () => {
      const stack = setupStack(undefined, { ring: 'packed', offload, queueSize: 256 });
      try {
        const net = stack.netdev as VirtNet;
        expect(net).toBeInstanceOf(VirtNet);
        expect(virtioHasFeature(net.vdev, VIRTIO_F_RING_PACKED)).toBe(true);
        expect(net.queues.rx).toBeInstanceOf(PackedVirtqueue);
        expect(net.queues.tx).toBeInstanceOf(PackedVirtqueue);
        if (!offload) {
          const vqs = stack.mvnet!.stateOf(stack.mdev).vqs;
          expect(vqs.map((q) => q.vrh instanceof VringhPacked)).toEqual([true, true]);
        }
        // Many laps of the 256-entry rings, in bursts that do not divide the ring.
        for (const [size, burst] of [
          [60, 32],
          [1514, 7],
          [64, 200],
        ] as const) {
          const r = await runPktgen(stack, { count: 20_000, size, burst, verify: true });
          expect({
            size,
            rx: r.rx,
            dropped: r.dropped,
            corrupted: r.corrupted,
            lost: r.lost,
          }).toEqual({ size, rx: 20_000, dropped: 0, corrupted: 0, lost: 0 });
          expect(r.reordered).toBe(0);
        }
      } finally {
        stack.teardown();
      }
      expect(mdevDevices()).toHaveLength(0);
    }, 60_000);
  }

  it('keeps split rings by default', () => {
    const stack = setupStack();
    try {
      const net = stack.netdev as VirtNet;
      expect(virtioHasFeature(net.vdev, VIRTIO_F_RING_PACKED)).toBe(false);
      expect(net.queues.rx).toBeInstanceOf(Virtqueue);
    } finally {
      stack.teardown();
    }
  });

  it('takes --ring packed and says so in the figures', async () => {
    const { io, text } = capture();
    expect(await main(['pktgen', '--count', '500', '--ring', 'packed', '--json'], io)).toBe(0);
    const out = JSON.parse(text.out) as { ring: string; rx: number; lost: number };
    expect({ ring: out.ring, rx: out.rx, lost: out.lost }).toEqual({
      ring: 'packed',
      rx: 500,
      lost: 0,
    });
    const person = capture();
    expect(await main(['pktgen', '--count', '100', '--ring', 'split'], person.io)).toBe(0);
    expect(person.text.out).toMatch(/^datapath +same-thread, split queues of 256$/m);
  });

  it('exits 2 with a message and the usage for a bad --ring', async () => {
    for (const bad of ['Packed', 'ring', '']) {
      const { io, text } = capture();
      expect(await main(['pktgen', '--ring', bad], io)).toBe(2);
      expect(text.err).toContain(`mdev pktgen: --ring must be split or packed, not '${bad}'`);
      expect(text.err).toContain('usage: mdev pktgen');
      expect(mdevDevices()).toHaveLength(0);
    }
  });
});

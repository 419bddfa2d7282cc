// The VF with packed rings: offered when the card is made `packed` (pktgen --ring packed),
// negotiated by virtio-net through the transport, served by the VF's datapath thread, with the
// queue state registers showing each half's index and wrap counter.
import { runPktgen, setupStack } from '@mdev/cli';
import { mdevDevices } from '@mdev/mdev-core';
import { VIRTIO_F_RING_PACKED, virtioHasFeature } from '@mdev/virtio';
import type { VirtNet } from '@mdev/virtio-net';
import { PackedVirtqueue, Virtqueue } from '@mdev/virtio-ring';
import { describe, expect, it } from 'vitest';
import {
  registerVendorVfPktgenDevice,
  VENDOR_VF_PKTGEN_DEVICE,
  type VendorVfPktgenParent,
  vendorVfOps,
} from '../src/index';

registerVendorVfPktgenDevice();

function stack(ring: 'split' | 'packed') {
  const s = setupStack(undefined, { device: VENDOR_VF_PKTGEN_DEVICE, queueSize: 256, ring });
  return { s, card: (s.parent as VendorVfPktgenParent).card, netdev: s.netdev as VirtNet };
}

describe('vendor-vf over packed rings', () => {
  it('negotiates packed rings and runs pktgen with every frame back intact', async () => {
    const { s, card, netdev } = stack('packed');
    try {
      expect(virtioHasFeature(netdev.vdev, VIRTIO_F_RING_PACKED)).toBe(true);
      expect(netdev.queues.tx).toBeInstanceOf(PackedVirtqueue);
      const r = await runPktgen(s, { count: 20_000, size: 256, burst: 24, verify: true });
      expect([r.tx, r.rx + r.dropped, r.corrupted, r.reordered, r.lost]).toEqual([
        20_000, 20_000, 0, 0, 0,
      ]);
      expect(r.rx).toBeGreaterThan(0);
      const stats = card.stats(s.mdev)!;
      expect(stats.tx_packets).toBe(20_000);
      expect(stats.ring_errors).toBe(0);
      // The transmit queue's state: 20,000 one-descriptor frames on a ring of 256 is index
      // 20000 % 256 = 32 of lap (20000 / 256 = 78 laps: even) 1, as the VF shows it.
      const state = vendorVfOps.getVqState(s.mdev, 1);
      expect({ idx: state & 0x7fff, wrap: state >> 15 }).toEqual({ idx: 32, wrap: 1 });
    } finally {
      s.teardown();
    }
    expect(mdevDevices()).toHaveLength(0);
  });

  it('keeps split rings unless asked', () => {
    const { s, netdev } = stack('split');
    try {
      expect(virtioHasFeature(netdev.vdev, VIRTIO_F_RING_PACKED)).toBe(false);
      expect(netdev.queues.tx).toBeInstanceOf(Virtqueue);
    } finally {
      s.teardown();
    }
  });
});

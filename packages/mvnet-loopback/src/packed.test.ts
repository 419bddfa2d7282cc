// mvnet_loopback with packed rings (VIRTIO_F_RING_PACKED): offered with the `packed` option,
// served in the same thread and by the worker datapath, with the vq state of a packed ring
// (both halves and their wrap counters) through getVqState/setVqState.
import { mdevVirtioExit, mdevVirtioPackedVqState } from '@mdev/mdev-virtio';
import { sleep, until } from '@mdev/test-utils';
import { hasFeature, VIRTIO_F_RING_PACKED } from '@mdev/virtio';
import { type DmaAllocator, type GuestMemory, PackedVirtqueue, Virtqueue } from '@mdev/virtio-ring';
import { afterEach, describe, expect, it } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import type { MvnetLoopback } from './device';
import { loopedFrame, mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const UUID = '0c5e1d2f-6a7b-4c8d-9e0f-1a2b3c4d5e6f';

let memory: GuestMemory;
let allocator: DmaAllocator;
let mvnet: MvnetLoopback | undefined;

afterEach(() => {
  mvnet?.exit();
  mvnet = undefined;
  mdevVirtioExit();
});

function world(options: { offload?: boolean; packed?: boolean } = {}) {
  ({ memory, allocator, mvnet } = mvnetWorld({ packed: options.packed ?? true, ...options }));
  return mvnetCreate(UUID);
}

function frame(len: number, k: number): { addr: number; len: number } {
  const addr = allocator.alloc(len)!;
  const bytes = memory.view(addr, len);
  for (let i = 0; i < len; i++) bytes[i] = (i * 7 + k) & 0xff;
  return { addr, len };
}

describe('mvnet_loopback over packed rings', () => {
  it('offers VIRTIO_F_RING_PACKED with the packed option only', () => {
    const mdev = world({ packed: false });
    const { ops } = mvnetBringUp(mdev, memory);
    expect(hasFeature(ops.getFeatures(mdev), VIRTIO_F_RING_PACKED)).toBe(false);
    mvnet!.exit();
    mdevVirtioExit();
    const packed = world();
    const up = mvnetBringUp(packed, memory);
    expect(hasFeature(up.ops.getFeatures(packed), VIRTIO_F_RING_PACKED)).toBe(true);
    // A driver that does not take the bit gets split rings served.
    expect(up.tx).toBeInstanceOf(Virtqueue);
  });

  for (const offload of [false, true]) {
    it(`loops frames through rings of an odd size, lap after lap (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      const mdev = world({ offload });
      const { rx, tx } = mvnetBringUp(mdev, memory, { num: 7, packed: true, eventIdx: true });
      expect(rx).toBeInstanceOf(PackedVirtqueue);
      const rxBufs = Array.from({ length: 7 }, () => allocator.alloc(2048)!);
      for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i);
      rx.kick();
      for (let k = 0; k < 40; k++) {
        const f = frame(60 + k, k);
        expect(tx.addOutbuf(f.addr, f.len, k)).toBe(0);
        tx.kick();
        let used = rx.getBuf();
        const take = () => {
          used = rx.getBuf();
          return used !== null;
        };
        if (used === null) expect(await until(take)).toBe(true);
        const got = used!;
        expect(got.len).toBe(f.len);
        expect(memory.read(rxBufs[got.token]!, got.len)).toEqual(
          loopedFrame(memory.read(f.addr, f.len)),
        );
        rx.addInbuf(rxBufs[got.token]!, 2048, got.token);
        rx.kick();
        expect(await until(() => tx.getBuf() !== null)).toBe(true);
        allocator.release(f.addr);
      }
      expect(rx.isBroken || tx.isBroken).toBe(false);
    });

    it(`gives and takes the vq state with both halves and their wrap counters (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      const mdev = world({ offload });
      const { ops, rx, tx } = mvnetBringUp(mdev, memory, { num: 5, packed: true });
      const rxBufs = Array.from({ length: 5 }, () => allocator.alloc(2048)!);
      for (const addr of rxBufs) rx.addInbuf(addr, 2048, addr);
      rx.kick();
      // Seven frames through a ring of five: index 2 of lap 0, read and written.
      for (let k = 0; k < 7; k++) {
        const f = frame(60, k);
        tx.addOutbuf(f.addr, f.len, k);
        tx.kick();
        expect(await until(() => tx.getBuf() !== null)).toBe(true);
        for (let u = rx.getBuf(); u !== null; u = rx.getBuf()) rx.addInbuf(u.token, 2048, u.token);
        rx.kick();
      }
      const at = { lastAvailIdx: 2, lastAvailCounter: 0, lastUsedIdx: 2, lastUsedCounter: 0 };
      expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(mdevVirtioPackedVqState(at));
      ops.setVqReady(mdev, MVNET_TX_QUEUE, false);
      expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(mdevVirtioPackedVqState(at));
      // A 32-bit state set while the queue is down survives the enable, whole.
      const other = { lastAvailIdx: 4, lastAvailCounter: 1, lastUsedIdx: 3, lastUsedCounter: 1 };
      ops.setVqState(mdev, MVNET_TX_QUEUE, mdevVirtioPackedVqState(other));
      ops.setVqReady(mdev, MVNET_TX_QUEUE, true);
      expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
      expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(mdevVirtioPackedVqState(other));
      // A reset starts the rings over at index 0 of lap 1.
      ops.setStatus(mdev, 0);
      await sleep(5);
      const start = { lastAvailIdx: 0, lastAvailCounter: 1, lastUsedIdx: 0, lastUsedCounter: 1 };
      expect(ops.getVqState(mdev, MVNET_RX_QUEUE)).toBe(mdevVirtioPackedVqState(start));
    });
  }
});

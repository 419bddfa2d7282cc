import { mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { offerBadHead, rawRingAt } from '@mdev/virtio-ring/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import type { MvnetLoopback } from './device';
import { mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa3001';
let mvnet: MvnetLoopback | null = null;

afterEach(() => {
  mvnet?.exit();
  mvnet = null;
  mdevVirtioExit();
});

describe('@mdev/mvnet-loopback/testing', () => {
  it('creates an instance through sysfs and sets both queues up as the transport does', () => {
    const world = mvnetWorld({ maxInstances: 2, queueSize: 128 });
    mvnet = world.mvnet;
    const mdev = mvnetCreate(UUID);
    expect(mdevDevices()).toEqual([mdev]);
    const { ops, rx, tx, irqs } = mvnetBringUp(mdev, world.memory, { num: 32 });
    expect([rx.index, tx.index]).toEqual([MVNET_RX_QUEUE, MVNET_TX_QUEUE]);
    expect([rx.num, tx.num]).toEqual([32, 32]);
    for (const idx of [MVNET_RX_QUEUE, MVNET_TX_QUEUE]) {
      expect(ops.getVqReady(mdev, idx)).toBe(true);
    }
    expect(irqs).toEqual([0, 0]);
    expect(() => mvnetCreate(UUID)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
  });

  it('offerBadHead writes the next avail slot of a live queue and publishes it', () => {
    const world = mvnetWorld();
    mvnet = world.mvnet;
    const mdev = mvnetCreate(UUID);
    const { tx } = mvnetBringUp(mdev, world.memory, { num: 8 });
    // The driver has offered three chains already (not kicked: the device has not seen them).
    const buf = world.allocator.alloc(64)!;
    for (let k = 0; k < 3; k++) tx.addOutbuf(buf, 64, k);
    const avail = () => [...world.memory.read(tx.availAddr + 2, 2 + 2 * tx.num)];
    const before = avail();
    expect(before.slice(0, 2)).toEqual([3, 0]);
    const raw = offerBadHead(world.memory, tx);
    const after = avail();
    // idx 3 -> 4, slot 3 holds 0xffff, and nothing else changed.
    expect(after.slice(0, 2)).toEqual([4, 0]);
    expect(after.slice(2 + 2 * 3, 2 + 2 * 4)).toEqual([0xff, 0xff]);
    expect([...after.slice(2, 8), ...after.slice(10)]).toEqual([
      ...before.slice(2, 8),
      ...before.slice(10),
    ]);
    // The RawRing it used, and any other over the queue, has the queue's areas and index.
    expect(raw.availIdx).toBe(4);
    expect(rawRingAt(world.memory, tx)).toMatchObject({
      descAddr: tx.descAddr,
      availAddr: tx.availAddr,
      usedAddr: tx.usedAddr,
      availIdx: 4,
    });
  });
});

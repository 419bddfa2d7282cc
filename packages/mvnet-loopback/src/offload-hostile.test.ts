// Worker mode with a hostile device beside a healthy one: both mdevs of one parent share the
// datapath thread, and the hostile one's rings must not keep the healthy one's frames from
// coming back.
import { sysfs } from '@mdev/driver-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import { until } from '@mdev/test-utils';
import { featureSet, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1 } from '@mdev/virtio';
import { type DmaAllocator, type GuestMemory, VRING_DESC_F_INDIRECT } from '@mdev/virtio-ring';
import { RawRing } from '@mdev/virtio-ring/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MVNET_TX_QUEUE } from './config';
import type { MvnetLoopback } from './device';
import { mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const HEALTHY = '83b8f4f2-509f-382f-3c1e-e6bfe0fa2001';
const HOSTILE = '83b8f4f2-509f-382f-3c1e-e6bfe0fa2002';
const NUM = 64;

let memory: GuestMemory;
let allocator: DmaAllocator;
let mvnet: MvnetLoopback;

beforeEach(() => {
  ({ memory, allocator, mvnet } = mvnetWorld({ size: 24 << 20, maxInstances: 4, offload: true }));
});

afterEach(() => {
  mvnet.exit();
  mdevVirtioExit();
});

const stat = (uuid: string, name: string) =>
  Number(sysfs.read(`/sys/bus/mdev_virtio/devices/${uuid}/stats/${name}`));

describe('mvnet_loopback worker shared by a hostile device', () => {
  it('brings a healthy device its frames back while another fills its ring with 8 MiB tables', async () => {
    const good = mvnetCreate(HEALTHY);
    const bad = mvnetCreate(HOSTILE);
    const { rx, tx } = mvnetBringUp(good, memory, { num: NUM });

    // The hostile driver: every TX chain is a legal indirect table of 8 MiB, 8 bytes off a
    // 16-byte boundary, whose one walked descriptor is a 4-byte frame (too short: dropped).
    const badOps = mdevVirtioGetOps(bad);
    badOps.setFeatures(bad, featureSet(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM));
    const badArea = allocator.alloc(0x10000, 4096)!;
    const badRings = [
      new RawRing(memory, badArea, NUM),
      new RawRing(memory, badArea + 0x8000, NUM),
    ];
    for (const [idx, ring] of badRings.entries()) {
      badOps.setVqNum(bad, idx, NUM);
      badOps.setVqAddress(bad, idx, ring.descAddr, ring.availAddr, ring.usedAddr);
      badOps.setVqReady(bad, idx, true);
    }
    const table = allocator.alloc((8 << 20) + 64, 16)! + 8;
    const payload = allocator.alloc(64)!;
    const badTx = badRings[MVNET_TX_QUEUE]!;
    badTx.setDesc(0, payload, 4, 0, 0, table);
    for (let i = 0; i < NUM; i++) badTx.setDesc(i, table, 8 << 20, VRING_DESC_F_INDIRECT, 0);
    // Keeps the hostile TX ring full: as many chains offered as the device has not used.
    const refill = () => {
      while (((badTx.availIdx - badTx.usedIdx()) & 0xffff) < NUM) badTx.offer(badTx.availIdx % NUM);
      badOps.kickVq(bad, MVNET_TX_QUEUE);
    };
    refill();

    const frames = 200;
    const rxBufs = Array.from({ length: NUM }, () => allocator.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i);
    rx.kick();
    const frame = allocator.alloc(100)!;
    memory.view(frame, 100).fill(0x5a);
    let sent = 0;
    let received = 0;
    const done = await until(() => {
      refill();
      while (tx.getBuf()) {}
      for (let u = rx.getBuf(); u; u = rx.getBuf()) {
        if (u.len === 100 && memory.view(rxBufs[u.token]!, 100)[99] === 0x5a) received++;
        rx.addInbuf(rxBufs[u.token]!, 2048, u.token);
      }
      rx.kick();
      while (sent < frames && tx.numFree > 0 && sent - received < NUM / 2) {
        tx.addOutbuf(frame, 100, sent++);
      }
      tx.kick();
      return received === frames;
    }, 20_000);
    expect({ done, received }).toEqual({ done: true, received: frames });
    expect(stat(HEALTHY, 'rx_packets')).toBe(frames);
    expect(stat(HEALTHY, 'tx_dropped')).toBe(0);
    // The hostile device was served all along (its chains dropped as malformed), and its ring
    // never broke.
    expect(stat(HOSTILE, 'tx_dropped')).toBeGreaterThan(0);
    expect(stat(HOSTILE, 'ring_errors')).toBe(0);
  });
});

import { type AddressSpace, GuestMemory, VRING_DESC_F_WRITE } from '@mdev/virtio-ring';
import { RawRing } from '@mdev/virtio-ring/testing';
import { describe, expect, it } from 'vitest';
import { emptyStats, LoopbackDatapath, MvnetQueue } from './datapath';

const BASE = 0x10_0000;
const NUM = 8;
const HDR = { size: 12, numBuffers: 10 };

/** One device's two rings at `base`, its queues over `txSpace` / `memory`, and its datapath. */
function device(memory: GuestMemory, base: number, txSpace: AddressSpace = memory) {
  const rxRing = new RawRing(memory, base, NUM);
  const txRing = new RawRing(memory, base + 0x4000, NUM);
  const rx = new MvnetQueue(memory);
  const tx = new MvnetQueue(txSpace);
  for (const [q, ring] of [
    [rx, rxRing],
    [tx, txRing],
  ] as const) {
    expect(q.vrh.init({ ...ring, eventIdx: false })).toBe(0);
    q.ready = true;
  }
  const stats = emptyStats();
  const dp = new LoopbackDatapath(rx, tx, stats);
  dp.hdr = HDR;
  const data = base + 0x8000;
  let sent = 0;
  /** Offers `count` frames of 60 bytes, each with a receive buffer to land in. */
  const exchange = (count: number) => {
    for (let k = 0; k < count; k++, sent++) {
      const head = sent % NUM;
      memory.view(data + head * 0x100, 60).fill(sent & 0xff);
      txRing.setDesc(head, data + head * 0x100, 60, 0, 0);
      txRing.offer(head);
      rxRing.setDesc(head, data + 0x1000 + head * 0x100, 0x100, VRING_DESC_F_WRITE, 0);
      rxRing.offer(head);
    }
  };
  return { dp, stats, rxRing, txRing, exchange };
}

describe('LoopbackDatapath', () => {
  it('keeps a run bounded when a driver races the kick check, so a device beside it is served', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(1 << 20));
    // A hostile driver in another thread, played here through the address space: every time the
    // device is about to read or write an index word, it moves the TX avail->idx so that the
    // device's look for chains sees none (0) and its look again after asking for a kick sees one
    // (1). Caught by the budget, the run ends; uncaught, it would look for ever.
    const hostileBase = BASE + 0x4_0000;
    let calls = 0;
    let availWord: Uint8Array | null = null;
    const racing: AddressSpace = {
      get shared() {
        if (++calls > 100_000) throw new Error('the datapath run never ended');
        if (availWord) availWord[0] = calls % 4 === 0 ? 1 : 0;
        return false;
      },
      translate: (addr, len, out) => memory.translate(addr, len, out),
    };
    const healthy = device(memory, BASE);
    const hostile = device(memory, hostileBase, racing);
    availWord = memory.view(hostile.txRing.availAddr + 2, 2);
    hostile.txRing.setDesc(0, hostileBase + 0x8000, 60, 0, 0); // what the index exposes
    // One thread serving both, a turn each, as the worker does.
    for (let turn = 0; turn < 4; turn++) {
      healthy.exchange(2);
      calls = 0;
      expect(hostile.dp.run(64)).toBe('more');
      expect(calls).toBeLessThan(64 * 4 + 8);
      expect(healthy.dp.run(64)).toBe('idle');
    }
    expect([healthy.stats.txPackets, healthy.stats.rxPackets, healthy.rxRing.usedIdx()]).toEqual([
      8, 8, 8,
    ]);
    expect([hostile.stats.txPackets, hostile.stats.ringErrors]).toEqual([0, 0]);
  });
});

import { describe, expect, it } from 'vitest';
import { DmaAllocator, offsetDmaOps } from './dma';
import { EINVAL } from './errno';
import { RingForward } from './forward';
import { VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from './layout';
import { GuestMemory } from './memory';
import { offerBadHead, RawRing } from './testing';
import { Virtqueue } from './virtqueue';
import { Vringh, VringhIov } from './vringh';

// VIRTIO_F_IN_ORDER (virtio 1.2 2.7.9) on both ends of a split ring, and the driver's batched
// avail index: bytes on the ring, read back with RawRing.

const BASE = 0x10_0000;
const STALE = 0xaaaa_aaaa;

function memoryWithAlloc() {
  const memory = new GuestMemory();
  memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
  const alloc = new DmaAllocator(memory, BASE);
  return { memory, alloc, dma: offsetDmaOps(alloc) };
}

function driverRing(opts: { num?: number; inOrder?: boolean; batchAvail?: boolean } = {}) {
  const { memory, alloc, dma } = memoryWithAlloc();
  let kicks = 0;
  const vq = Virtqueue.create<number>({
    index: 0,
    num: opts.num ?? 8,
    memory,
    dma,
    inOrder: opts.inOrder ?? true,
    notify: () => {
      kicks++;
      return true;
    },
  })!;
  vq.batchAvail = opts.batchAvail ?? false;
  const raw = new RawRing(memory, vq);
  const buf = (n: number) => alloc.alloc(n, 8)!;
  const dv = (addr: number, len: number) => {
    const v = memory.view(addr, len);
    return new DataView(v.buffer, v.byteOffset, v.byteLength);
  };
  /** Writes used element `slot` and the used index, as a device would. */
  const use = (slot: number, id: number, len: number, idx: number) => {
    const e = dv(vq.usedAddr + 4 + 8 * (slot % vq.num), 8);
    e.setUint32(0, id, true);
    e.setUint32(4, len, true);
    dv(vq.usedAddr + 2, 2).setUint16(0, idx, true);
  };
  const availRing = (slot: number) => dv(vq.availAddr + 4 + 2 * slot, 2).getUint16(0, true);
  const descNext = (i: number) => dv(vq.descAddr + 16 * i + 14, 2).getUint16(0, true);
  const availIdx = () => dv(vq.availAddr + 2, 2).getUint16(0, true);
  return { memory, vq, raw, buf, use, availRing, availIdx, descNext, kicks: () => kicks };
}

function deviceRing(inOrder: boolean, num = 8) {
  const { memory, alloc } = memoryWithAlloc();
  const raw = new RawRing(memory, BASE + 0x8_0000, num);
  const dev = new Vringh(memory);
  const cfg = {
    num,
    descAddr: raw.descAddr,
    availAddr: raw.availAddr,
    usedAddr: raw.usedAddr,
    eventIdx: false,
    inOrder,
  };
  expect(dev.init(cfg)).toBe(0);
  // Every used element starts stale, so that one the device did not write shows.
  for (let s = 0; s < num; s++) {
    const v = memory.view(raw.usedAddr + 4 + 8 * s, 8);
    new DataView(v.buffer, v.byteOffset, 8).setUint32(0, STALE, true);
  }
  const data = alloc.alloc(0x4000, 16)!;
  /** Offers `n` one-descriptor chains at heads `first`, `first + 1`...: readable or writable. */
  const offer = (first: number, n: number, writable = false) => {
    for (let k = 0; k < n; k++) {
      const h = (first + k) % num;
      raw.setDesc(h, data + 0x100 * h, 64, writable ? VRING_DESC_F_WRITE : 0, 0);
      raw.offer(h);
    }
  };
  return { memory, raw, dev, offer, cfg };
}

describe('in order, the device side (Vringh)', () => {
  it('writes one used element for a run of chains completed with length 0: the last head, at the run’s first slot', () => {
    const { raw, dev, offer } = deviceRing(true);
    offer(0, 4);
    const r = new VringhIov();
    for (let k = 0; k < 4; k++) {
      expect(dev.getDesc(r, null)).toBe(1);
      expect(dev.completeDeferred(dev.head, 0)).toBe(0);
    }
    dev.needNotify();
    expect(raw.usedIdx()).toBe(4);
    expect(raw.usedElem(0)).toEqual({ id: 3, len: 0 });
    for (let s = 1; s < 4; s++) expect(raw.usedElem(s).id).toBe(STALE);
    // The next run's element goes to its own first slot.
    offer(4, 2);
    for (let k = 0; k < 2; k++) {
      expect(dev.getDesc(r, null)).toBe(1);
      dev.completeDeferred(dev.head, 0);
    }
    dev.needNotify();
    expect(raw.usedIdx()).toBe(6);
    expect(raw.usedElem(4)).toEqual({ id: 5, len: 0 });
    expect(raw.usedElem(5).id).toBe(STALE);
  });

  it('writes every element whose chain was completed with a length, and ends a run before it', () => {
    const { raw, dev, offer } = deviceRing(true);
    offer(0, 4, true);
    const w = new VringhIov();
    const lens = [0, 0, 60, 70];
    for (const len of lens) {
      expect(dev.getDesc(null, w)).toBe(1);
      dev.completeDeferred(dev.head, len);
    }
    dev.needNotify();
    expect(raw.usedIdx()).toBe(4);
    expect(raw.usedElem(0)).toEqual({ id: 1, len: 0 });
    expect(raw.usedElem(1).id).toBe(STALE);
    expect(raw.usedElem(2)).toEqual({ id: 2, len: 60 });
    expect(raw.usedElem(3)).toEqual({ id: 3, len: 70 });
  });

  it('without in order, writes every element', () => {
    const { raw, dev, offer } = deviceRing(false);
    offer(0, 3);
    const r = new VringhIov();
    for (let k = 0; k < 3; k++) {
      dev.getDesc(r, null);
      dev.completeDeferred(dev.head, 0);
    }
    dev.needNotify();
    expect([0, 1, 2].map((s) => raw.usedElem(s))).toEqual([
      { id: 0, len: 0 },
      { id: 1, len: 0 },
      { id: 2, len: 0 },
    ]);
  });

  it('complete() after deferred ones writes the run first, in slot order', () => {
    const { raw, dev, offer } = deviceRing(true);
    offer(0, 3);
    const r = new VringhIov();
    dev.getDesc(r, null);
    dev.completeDeferred(dev.head, 0);
    dev.getDesc(r, null);
    dev.completeDeferred(dev.head, 0);
    dev.getDesc(r, null);
    dev.complete(dev.head, 5);
    expect(raw.usedIdx()).toBe(3);
    expect(raw.usedElem(0)).toEqual({ id: 1, len: 0 });
    expect(raw.usedElem(2)).toEqual({ id: 2, len: 5 });
  });

  it('a hostile driver breaks only its ring', () => {
    const a = deviceRing(true);
    const b = deviceRing(true);
    offerBadHead(a.memory, a.raw);
    const r = new VringhIov();
    expect(a.dev.getDesc(r, null)).toBe(-EINVAL);
    expect(a.dev.broken).toBe(true);
    b.offer(0, 1);
    expect(b.dev.getDesc(r, null)).toBe(1);
    b.dev.completeDeferred(b.dev.head, 0);
    b.dev.needNotify();
    expect(b.raw.usedElem(0)).toEqual({ id: 0, len: 0 });
  });
});

describe('in order, the driver side (Virtqueue)', () => {
  it('uses descriptors in table order, chains in consecutive ones, wrapping at the end', () => {
    const { vq, raw, buf, use, availRing, descNext } = driverRing({ num: 4 });
    const a = buf(64);
    for (let t = 0; t < 3; t++) expect(vq.addOutbuf(a, 64, t)).toBe(0);
    expect([0, 1, 2].map(availRing)).toEqual([0, 1, 2]);
    use(0, 2, 0, 3);
    expect([vq.getBufToken(), vq.getBufToken(), vq.getBufToken()]).toEqual([0, 1, 2]);
    // A two-descriptor chain from descriptor 3 wraps to 0: next is x + 1, and 0 after the last.
    expect(vq.addChain([a, a], [16, 48], 2, 0, 7)).toBe(0);
    expect(availRing(3)).toBe(3);
    expect(raw.descFlags(3) & VRING_DESC_F_NEXT).toBe(VRING_DESC_F_NEXT);
    expect(descNext(3)).toBe(0);
    expect(descNext(0)).toBe(1);
    expect(vq.addOutbuf(a, 64, 8)).toBe(0);
    expect(availRing(0)).toBe(1);
  });

  it('takes a batch from one used element naming its last buffer; the others get their writable length', () => {
    const { vq, buf, use } = driverRing();
    const a = buf(400);
    for (let t = 0; t < 3; t++) expect(vq.addInbuf(a + 100 * t, 100, 10 + t)).toBe(0);
    use(0, 2, 42, 3);
    const got = [];
    for (let b = vq.getBuf(); b !== null; b = vq.getBuf()) got.push([b.token, b.len]);
    expect(got).toEqual([
      [10, 100],
      [11, 100],
      [12, 42],
    ]);
    expect(vq.isBroken).toBe(false);
    expect(vq.numFree).toBe(8);
  });

  it('reads an element per buffer when the device writes each', () => {
    const { vq, buf, use } = driverRing();
    const a = buf(64);
    for (let t = 0; t < 2; t++) vq.addInbuf(a, 64, t);
    use(0, 0, 10, 1);
    use(1, 1, 20, 2);
    expect([vq.getBufToken(), vq.lastLen, vq.getBufToken(), vq.lastLen]).toEqual([0, 10, 1, 20]);
  });

  it('a used element naming a buffer past the used index breaks the queue, and only it', () => {
    const bad = driverRing();
    const good = driverRing();
    const a = bad.buf(64);
    for (let t = 0; t < 3; t++) bad.vq.addOutbuf(a, 64, t);
    // Two used, but the element names the third buffer.
    bad.use(0, 2, 0, 2);
    expect(bad.vq.getBufToken()).toBeUndefined();
    expect(bad.vq.isBroken).toBe(true);
    expect(bad.vq.brokenBecause).toMatch(/not in order/);
    const b = good.buf(64);
    good.vq.addOutbuf(b, 64, 1);
    good.use(0, 0, 0, 1);
    expect(good.vq.getBufToken()).toBe(1);
    expect(good.vq.isBroken).toBe(false);
  });

  it('a used element naming no buffer in flight breaks the queue', () => {
    const { vq, buf, use } = driverRing();
    vq.addOutbuf(buf(64), 64, 1);
    use(0, 5, 0, 1);
    expect(vq.getBuf()).toBeNull();
    expect(vq.brokenBecause).toMatch(/not a head in flight/);
  });

  it('a batch length past the last buffer’s writable bytes breaks the queue', () => {
    const { vq, buf, use } = driverRing();
    const a = buf(64);
    vq.addInbuf(a, 32, 1);
    vq.addInbuf(a, 32, 2);
    use(0, 1, 33, 2);
    expect(vq.getBufToken()).toBe(1);
    expect(vq.getBufToken()).toBeUndefined();
    expect(vq.isBroken).toBe(true);
  });
});

describe('batchAvail', () => {
  it('stores the avail index once, at kickPrepare, where each add stores it otherwise', () => {
    for (const batchAvail of [true, false]) {
      const { vq, buf, availIdx, kicks } = driverRing({ batchAvail, inOrder: false });
      const a = buf(64);
      for (let t = 0; t < 3; t++) {
        vq.addOutbuf(a, 64, t);
        expect(availIdx()).toBe(batchAvail ? 0 : t + 1);
      }
      expect(vq.kick()).toBe(true);
      expect(availIdx()).toBe(3);
      expect(kicks()).toBe(1);
    }
  });
});

describe('in order on both ends, with RingForward', () => {
  it('forwards frames; the TX ring gets one used element a run, the RX ring one a frame', () => {
    const { memory, alloc, dma } = memoryWithAlloc();
    const mk = (index: number) =>
      Virtqueue.create<number>({
        index,
        num: 16,
        memory,
        dma,
        inOrder: true,
        notify: () => true,
      })!;
    const txq = mk(1);
    const rxq = mk(0);
    txq.batchAvail = true;
    rxq.batchAvail = true;
    const ends = [txq, rxq].map((vq) => {
      const v = new Vringh(memory);
      expect(
        v.init({
          num: vq.num,
          descAddr: vq.descAddr,
          availAddr: vq.availAddr,
          usedAddr: vq.usedAddr,
          eventIdx: false,
          inOrder: true,
        }),
      ).toBe(0);
      return v;
    });
    const [tx, rx] = ends as [Vringh, Vringh];
    const rxBufs = alloc.alloc(16 * 128, 16)!;
    for (let t = 0; t < 16; t++) rxq.addInbuf(rxBufs + 128 * t, 128, t);
    rxq.kickPrepare();
    const frames = alloc.alloc(16 * 128, 16)!;
    const txRaw = new RawRing(memory, txq);
    const fwd = new RingForward();
    let received = 0;
    for (let round = 0; round < 5; round++) {
      const n = 3 + round;
      for (let k = 0; k < n; k++) {
        memory.view(frames + 128 * k, 64).fill(round * 16 + k);
        txq.addOutbuf(frames + 128 * k, 64, k);
      }
      // Not visible to the device before the kick.
      expect(tx.hasAvail()).toBe(false);
      txq.kickPrepare();
      const usedBefore = txRaw.usedIdx();
      const firstSlot = usedBefore % 16;
      expect(fwd.run(tx, rx, 64)).toBe('idle');
      expect(fwd.txChains).toBe(n);
      expect(txRaw.usedIdx()).toBe((usedBefore + n) & 0xffff);
      // One element for the run: the last frame's head, at the run's first slot.
      expect(txRaw.usedElem(firstSlot).id).toBe((firstSlot + n - 1) % 16);
      for (let k = 0; k < n; k++) expect(txq.getBufToken()).toBe(k);
      for (let k = 0; k < n; k++) {
        const slot = rxq.getBufToken()!;
        expect(slot).toBe(received % 16);
        expect(rxq.lastLen).toBe(64);
        expect(memory.view(rxBufs + 128 * slot, 64).every((b) => b === round * 16 + k)).toBe(true);
        rxq.addInbuf(rxBufs + 128 * slot, 128, slot);
        received++;
      }
      rxq.kickPrepare();
    }
    expect(txq.isBroken || rxq.isBroken).toBe(false);
    expect(received).toBe(3 + 4 + 5 + 6 + 7);
  });
});

import { describe, expect, it } from 'vitest';
import { EFAULT, EINVAL } from './errno';
import { RingForward } from './forward';
import { VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY } from './layout';
import { GuestMemory } from './memory';
import { RawRing } from './testing';
import { Vringh, VringhIov } from './vringh';

const BASE = 0x10_0000;
const NUM = 8;
const TX_DATA = BASE + 0x1_0000;
const RX_DATA = BASE + 0x2_0000;
const SLOT = 0x100;

function world() {
  const memory = new GuestMemory();
  memory.addRegion(BASE, new ArrayBuffer(1 << 20));
  const txRing = new RawRing(memory, BASE, NUM);
  const rxRing = new RawRing(memory, BASE + 0x8000, NUM);
  const tx = new Vringh(memory);
  const rx = new Vringh(memory);
  expect(tx.init({ ...txRing, eventIdx: false })).toBe(0);
  expect(rx.init({ ...rxRing, eventIdx: false })).toBe(0);
  const fwd = new RingForward();
  let txNext = 0;
  let rxNext = 0;
  /** Offers a frame of `bytes` on TX; returns its head. */
  const send = (bytes: Uint8Array): number => {
    const head = txNext++ % NUM;
    memory.write(TX_DATA + head * SLOT, bytes);
    txRing.setDesc(head, TX_DATA + head * SLOT, bytes.length, 0, 0);
    txRing.offer(head);
    return head;
  };
  /** Offers a receive buffer of `len` bytes on RX; returns its head. */
  const post = (len: number): number => {
    const head = rxNext++ % NUM;
    memory.view(RX_DATA + head * SLOT, SLOT).fill(0xee);
    rxRing.setDesc(head, RX_DATA + head * SLOT, len, VRING_DESC_F_WRITE, 0);
    rxRing.offer(head);
    return head;
  };
  const received = (head: number, len: number) => memory.read(RX_DATA + head * SLOT, len);
  return { memory, txRing, rxRing, tx, rx, fwd, send, post, received };
}

const frame = (len: number, seed = 1) => Uint8Array.from({ length: len }, (_, i) => seed + i);

describe('Vringh.completeDeferred', () => {
  it('writes used elements that the next needNotify or complete publishes with one index store', () => {
    const { txRing, tx, send } = world();
    const r = new VringhIov();
    const heads = [send(frame(20)), send(frame(20)), send(frame(20)), send(frame(20))];
    const take = () => {
      expect(tx.getDesc(r, null)).toBe(1);
      return tx.head;
    };
    expect(tx.completeDeferred(take(), 0)).toBe(0);
    expect(tx.completeDeferred(take(), 5)).toBe(0);
    // Written, not yet visible to the driver.
    expect(txRing.usedElem(0)).toEqual({ id: heads[0], len: 0 });
    expect(txRing.usedElem(1)).toEqual({ id: heads[1], len: 5 });
    expect(txRing.usedIdx()).toBe(0);
    expect(tx.needNotify()).toBe(1);
    expect(txRing.usedIdx()).toBe(2);
    // complete() after a deferred one publishes both.
    expect(tx.completeDeferred(take(), 7)).toBe(0);
    expect(txRing.usedIdx()).toBe(2);
    expect(tx.complete(take(), 9)).toBe(0);
    expect(txRing.usedIdx()).toBe(4);
    expect([txRing.usedElem(2), txRing.usedElem(3)]).toEqual([
      { id: heads[2], len: 7 },
      { id: heads[3], len: 9 },
    ]);
    expect(tx.needNotify()).toBe(1);
    expect(txRing.usedIdx()).toBe(4);
  });

  it('is refused on a ring that is not set up', () => {
    expect(new Vringh(new GuestMemory()).completeDeferred(0, 0)).toBe(-EINVAL);
  });
});

describe('RingForward', () => {
  it('copies a TX frame into an RX chain, completes both and asks for both interrupts', () => {
    const { txRing, rxRing, tx, rx, fwd, send, post, received } = world();
    fwd.numBuffersAt = 10;
    const f = frame(40);
    const txHead = send(f);
    const rxHead = post(64);
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect(txRing.usedIdx()).toBe(1);
    expect(txRing.usedElem(0)).toEqual({ id: txHead, len: 0 });
    expect(rxRing.usedIdx()).toBe(1);
    expect(rxRing.usedElem(0)).toEqual({ id: rxHead, len: 40 });
    // The frame as sent, but num_buffers (le16 at 10) set to 1; nothing past it written.
    const want = f.slice();
    want[10] = 1;
    want[11] = 0;
    expect(received(rxHead, 41)).toEqual(Uint8Array.of(...want, 0xee));
    expect([fwd.txChains, fwd.txBytes, fwd.rxFrames, fwd.rxChains, fwd.rxBytes]).toEqual([
      1, 40, 1, 1, 40,
    ]);
    expect([fwd.txNotify, fwd.rxNotify]).toEqual([true, true]);
  });

  it('follows the drivers interrupt suppression', () => {
    const { txRing, rxRing, tx, rx, fwd, send, post } = world();
    txRing.setAvailFlags(1); // VRING_AVAIL_F_NO_INTERRUPT
    send(frame(20));
    post(64);
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect([fwd.txNotify, fwd.rxNotify]).toEqual([false, true]);
    expect(rxRing.usedIdx()).toBe(1);
  });

  it('counts every look at the TX ring against the budget, and stops once it is spent', () => {
    const { txRing, rxRing, tx, rx, fwd, send, post } = world();
    for (let k = 0; k < 3; k++) {
      send(frame(20, k));
      post(64);
    }
    // Three chains, budget 3: all three forwarded, then 'more' without another look.
    expect(fwd.run(tx, rx, 3)).toBe('more');
    expect([txRing.usedIdx(), rxRing.usedIdx(), fwd.txChains]).toEqual([3, 3, 3]);
    // The next run's one look finds the ring empty: the look counts, the run is idle.
    expect(fwd.run(tx, rx, 1)).toBe('idle');
    expect(fwd.txChains).toBe(0);
    // A budget below 1 makes no look at all.
    send(frame(20));
    post(64);
    expect(fwd.run(tx, rx, 0)).toBe('more');
    expect(txRing.usedIdx()).toBe(3);
    // Budget 2 with one chain: the chain, then an empty look, and the run is idle.
    expect(fwd.run(tx, rx, 2)).toBe('idle');
    expect([txRing.usedIdx(), rxRing.usedIdx()]).toEqual([4, 4]);
    // A chain counts whether it was forwarded or dropped.
    send(frame(4));
    send(frame(4));
    fwd.minLen = 12;
    expect(fwd.run(tx, rx, 1)).toBe('more');
    expect([fwd.malformed, txRing.usedIdx()]).toEqual([1, 5]);
  });

  it('drops a TX chain shorter than minLen without taking a receive buffer', () => {
    const { txRing, rxRing, tx, rx, fwd, send, post, received } = world();
    fwd.minLen = 12;
    const short = send(frame(11));
    const rxHead = post(64);
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect(txRing.usedElem(0)).toEqual({ id: short, len: 0 });
    expect(rxRing.usedIdx()).toBe(0);
    expect([fwd.malformed, fwd.txChains, fwd.txBytes, fwd.rxFrames]).toEqual([1, 1, 11, 0]);
    // The receive buffer is still there for the next frame.
    send(frame(12, 7));
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect(rxRing.usedElem(0)).toEqual({ id: rxHead, len: 12 });
    expect(received(rxHead, 12)).toEqual(frame(12, 7));
  });

  it('drops a frame larger than the RX chain and gives the chain back unused', () => {
    const { txRing, rxRing, tx, rx, fwd, send, post, received } = world();
    send(frame(40));
    const rxHead = post(32);
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect([fwd.oversize, fwd.txChains, fwd.rxFrames]).toEqual([1, 1, 0]);
    expect(txRing.usedIdx()).toBe(1);
    expect(rxRing.usedIdx()).toBe(0);
    expect(received(rxHead, 1)).toEqual(Uint8Array.of(0xee));
    send(frame(32, 9));
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect(rxRing.usedElem(0)).toEqual({ id: rxHead, len: 32 });
  });

  it('drops a frame with no receive buffer, or holds it and ends starved with RX kicks on', () => {
    const { memory, txRing, rxRing, tx, rx, fwd, send, post, received } = world();
    send(frame(20));
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect([fwd.noRxBuffer, fwd.txChains, txRing.usedIdx()]).toEqual([1, 1, 1]);

    const held = send(frame(20, 5));
    rx.notifyDisable();
    expect(fwd.run(tx, rx, 64, true)).toBe('starved');
    // The frame is still on the TX ring, and the RX driver's next buffer will kick the device.
    expect([fwd.txChains, fwd.noRxBuffer, txRing.usedIdx()]).toEqual([0, 0, 1]);
    expect(memory.read(rxRing.usedAddr, 1)[0]! & VRING_USED_F_NO_NOTIFY).toBe(0);
    const rxHead = post(64);
    expect(fwd.run(tx, rx, 64, true)).toBe('idle');
    expect(txRing.usedElem(1)).toEqual({ id: held, len: 0 });
    expect(rxRing.usedElem(0)).toEqual({ id: rxHead, len: 20 });
    expect(received(rxHead, 20)).toEqual(frame(20, 5));
    // The wait is over: RX kicks are off again (a polling driver's refills wake nothing).
    expect(memory.read(rxRing.usedAddr, 1)[0]! & VRING_USED_F_NO_NOTIFY).toBe(
      VRING_USED_F_NO_NOTIFY,
    );
  });

  it('turns RX kicks off while it forwards: the device wants them only while a frame waits', () => {
    const { memory, rxRing, tx, rx, fwd, send, post } = world();
    // A fresh ring asks for every kick.
    expect(memory.read(rxRing.usedAddr, 1)[0]! & VRING_USED_F_NO_NOTIFY).toBe(0);
    post(64);
    send(frame(20));
    expect(fwd.run(tx, rx, 64)).toBe('idle');
    expect(memory.read(rxRing.usedAddr, 1)[0]! & VRING_USED_F_NO_NOTIFY).toBe(
      VRING_USED_F_NO_NOTIFY,
    );
  });

  it('reports a broken TX ring and a broken RX ring, leaving the frame on TX', () => {
    const a = world();
    a.txRing.offer(NUM); // a head past the ring
    expect(a.fwd.run(a.tx, a.rx, 64)).toBe('broken');
    expect([a.fwd.error, a.fwd.brokenRing]).toEqual([-EINVAL, 'tx']);

    const b = world();
    b.send(frame(20));
    b.rxRing.setAvailIdx(NUM + 1); // more entries than the ring holds
    expect(b.fwd.run(b.tx, b.rx, 64)).toBe('broken');
    expect([b.fwd.error, b.fwd.brokenRing]).toEqual([-EFAULT, 'rx']);
    expect([b.txRing.usedIdx(), b.fwd.txChains]).toEqual([0, 0]);
    expect(b.tx.getLastAvailIdx()).toBe(0);
  });

  it('spreads a frame over mergeable RX chains under a header it writes itself', () => {
    const { rxRing, tx, rx, fwd, send, post, received } = world();
    fwd.deviceHeader = 12;
    fwd.numBuffersAt = 10;
    fwd.mergeable = true;
    const f = frame(42);
    send(f);
    const heads = [post(16), post(16), post(16)];
    expect(fwd.run(tx, rx, 64, true)).toBe('idle');
    expect(rxRing.usedIdx()).toBe(3);
    expect([0, 1, 2].map((s) => rxRing.usedElem(s))).toEqual([
      { id: heads[0], len: 16 },
      { id: heads[1], len: 16 },
      { id: heads[2], len: 10 },
    ]);
    // The device's header: zeros, num_buffers 3; then the frame past the driver's header.
    const got = new Uint8Array(42);
    got.set(received(heads[0]!, 16), 0);
    got.set(received(heads[1]!, 16), 16);
    got.set(received(heads[2]!, 10), 32);
    const want = f.slice();
    want.fill(0, 0, 12);
    want[10] = 3;
    expect(got).toEqual(want);
    expect([fwd.rxFrames, fwd.rxChains, fwd.rxBytes]).toEqual([1, 3, 42]);
  });

  it('holds a mergeable frame until enough RX chains are there', () => {
    const { txRing, rxRing, tx, rx, fwd, send, post } = world();
    fwd.mergeable = true;
    send(frame(40));
    post(16);
    expect(fwd.run(tx, rx, 64, true)).toBe('starved');
    expect([txRing.usedIdx(), rxRing.usedIdx(), rx.getLastAvailIdx()]).toEqual([0, 0, 0]);
    post(16);
    post(16);
    expect(fwd.run(tx, rx, 64, true)).toBe('idle');
    expect([txRing.usedIdx(), rxRing.usedIdx()]).toEqual([1, 3]);
  });

  it('answers each chain in its own writable part when both rings are one (an echo)', () => {
    const { memory, txRing, tx, fwd } = world();
    memory.write(TX_DATA, frame(5));
    txRing.setDesc(0, TX_DATA, 5, VRING_DESC_F_NEXT, 1);
    txRing.setDesc(1, TX_DATA + SLOT, 8, VRING_DESC_F_WRITE, 0);
    txRing.offer(0);
    expect(fwd.run(tx, tx, 64)).toBe('idle');
    expect(txRing.usedElem(0)).toEqual({ id: 0, len: 5 });
    expect(memory.read(TX_DATA + SLOT, 5)).toEqual(frame(5));
    expect([fwd.txChains, fwd.rxBytes, fwd.txNotify]).toEqual([1, 5, true]);
  });
});

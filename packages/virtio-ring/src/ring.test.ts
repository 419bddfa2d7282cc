import { describe, expect, it } from 'vitest';
import { byteOpsOf } from './bytes';
import { DmaAllocator, offsetDmaOps } from './dma';
import { EFAULT, EINVAL, ELOOP, ENOSPC, EPROTO } from './errno';
import {
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  vringNeedEvent,
  vringSize,
} from './layout';
import { GuestMemory, OffsetAddressSpace } from './memory';
import { countViewReads, RawRing } from './testing';
import { Virtqueue } from './virtqueue';
import { Vringh, VringhIov } from './vringh';

const BASE = 0x10_0000;

function setup(
  opts: { num?: number; eventIdx?: boolean; indirect?: boolean; wasm?: boolean } = {},
) {
  const memory = new GuestMemory();
  // A byte count makes a wasm memory's buffer (with byte ops); a SharedArrayBuffer has none.
  memory.addRegion(BASE, opts.wasm ? 1 << 20 : new SharedArrayBuffer(1 << 20));
  expect(byteOpsOf(memory.regions[0]!.buffer) !== null).toBe(opts.wasm === true);
  const alloc = new DmaAllocator(memory, BASE);
  const dma = offsetDmaOps(alloc);
  let kicks = 0;
  const vq = Virtqueue.create<number>({
    index: 0,
    num: opts.num ?? 8,
    memory,
    dma,
    eventIdx: opts.eventIdx ?? false,
    indirect: opts.indirect ?? false,
    notify: () => {
      kicks++;
      return true;
    },
  })!;
  const dev = new Vringh(memory);
  expect(
    dev.init({
      num: vq.num,
      descAddr: vq.descAddr,
      availAddr: vq.availAddr,
      usedAddr: vq.usedAddr,
      eventIdx: opts.eventIdx ?? false,
    }),
  ).toBe(0);
  const buf = (n: number, fill: number) => {
    const addr = alloc.alloc(n, 8)!;
    memory.view(addr, n).fill(fill);
    return addr;
  };
  return { memory, alloc, vq, dev, buf, kicks: () => kicks };
}

describe('layout', () => {
  it('computes vring_size and vring_need_event as the uapi header does', () => {
    // 16*256 + 2*(3+256) = 4614 -> 8192; + 6 + 8*256 = 10246
    expect(vringSize(256, 4096)).toBe(10246);
    expect(vringNeedEvent(5, 6, 5)).toBe(true);
    expect(vringNeedEvent(7, 6, 5)).toBe(false);
    expect(vringNeedEvent(0xffff, 0, 0xfffe)).toBe(true); // wraps modulo 2^16
  });
});

describe('VringhIov.storeLe16', () => {
  it('writes a little-endian u16 at a chain offset, across segments, and refuses past the end', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(1 << 16));
    const ring = new RawRing(memory, BASE, 4);
    const A = BASE + 0x8000;
    const B = BASE + 0x9000;
    ring.setDesc(0, A + 4, 11, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1); // chain bytes 0-10
    ring.setDesc(1, B + 2, 5, VRING_DESC_F_WRITE, 0); // chain bytes 11-15
    ring.offer(0);
    const dev = new Vringh(memory);
    expect(dev.init({ ...ring, eventIdx: false })).toBe(0);
    const iov = new VringhIov();
    expect(dev.getDesc(null, iov)).toBe(1);
    const a = memory.view(A, 16);
    const b = memory.view(B, 16);
    expect(iov.storeLe16(2, 0x1234)).toBe(true);
    expect([a[6], a[7]]).toEqual([0x34, 0x12]);
    expect(iov.storeLe16(10, 0xabcd)).toBe(true); // straddles: a[14], then b[2]
    expect([a[14], b[2]]).toEqual([0xcd, 0xab]);
    expect(iov.storeLe16(15, 1)).toBe(false); // would end past byte 16
    expect(iov.storeLe16(-1, 1)).toBe(false);
    expect(b[7]).toBe(0);
  });
});

describe('ring placement', () => {
  function create(align?: number) {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(1 << 20));
    const alloc = new DmaAllocator(memory, BASE);
    alloc.alloc(24, 8); // something before the rings, so a 4096 alignment has to be sought
    return Virtqueue.create<number>({
      index: 3,
      num: 16,
      align,
      memory,
      dma: offsetDmaOps(alloc),
      notify: () => true,
    });
  }

  it('starts the descriptor table and the device area at the device alignment', () => {
    const vq = create(4096)!;
    expect(vq.descAddr % 4096).toBe(0);
    expect(vq.usedAddr % 4096).toBe(0);
    expect(vq.availAddr % 2).toBe(0);
    const plain = create()!;
    expect(plain.descAddr % 16).toBe(0);
    expect(plain.usedAddr % 4).toBe(0);
  });

  it('refuses an alignment that is not a power of two', () => {
    expect(() => create(3000)).toThrow(RangeError);
    expect(() => create(0)).toThrow(RangeError);
  });
});

describe('driver and device', () => {
  it('moves a chain with payload and used length', () => {
    const { vq, dev, buf, memory } = setup();
    const out = buf(10, 0xaa);
    const inp = buf(32, 0);
    expect(vq.add([{ addr: out, len: 10 }], [{ addr: inp, len: 32 }], 7)).toBe(0);
    expect(vq.numFree).toBe(6);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.used, r.total, w.used, w.total]).toEqual([1, 10, 1, 32]);
    const data = new Uint8Array(10);
    expect(dev.pull(r, data)).toBe(10);
    expect([...data]).toEqual(new Array(10).fill(0xaa));
    expect(dev.push(w, Uint8Array.of(1, 2, 3))).toBe(3);
    dev.complete(dev.head, 3);
    expect(dev.getDesc(r, w)).toBe(0);
    const used = vq.getBuf();
    expect(used).toEqual({ token: 7, len: 3 });
    expect([...memory.view(inp, 4)]).toEqual([1, 2, 3, 0]);
    expect(vq.numFree).toBe(8);
  });

  it('memory made shared (mapped from another process) is shared from the start', () => {
    const memory = new GuestMemory({ shared: true });
    memory.addRegion(0, new ArrayBuffer(4096));
    expect(memory.shared).toBe(true);
    expect(new OffsetAddressSpace(memory, 0, 4096, 0).shared).toBe(true);
    expect(new GuestMemory().shared).toBe(false);
  });

  it('keeps working when its memory is shared with another thread mid-life', () => {
    const { vq, dev, buf, memory } = setup({ eventIdx: true });
    // Until share(), both ring ends use plain index accesses; afterwards Atomics. The ring must
    // not notice the switch, whichever side moves next.
    expect(memory.shared).toBe(false);
    expect(new OffsetAddressSpace(memory, 0, 1 << 30, 0).shared).toBe(false);
    const out = buf(8, 0x5a);
    const r = new VringhIov();
    const tokens: number[] = [];
    vq.disableCb();
    for (let round = 0; round < 6; round++) {
      if (round === 3) {
        const desc = memory.share();
        expect(memory.shared).toBe(true);
        expect(GuestMemory.fromShared(desc).shared).toBe(true);
        expect(new OffsetAddressSpace(memory, 0, 1 << 30, 0).shared).toBe(true);
      }
      for (let k = 0; k < 5; k++) expect(vq.addOutbuf(out, 8, round * 10 + k + 1)).toBe(0);
      expect(vq.kickPrepare()).toBe(true);
      for (let k = 0; k < 5; k++) {
        expect(dev.getDesc(r, null)).toBe(1);
        expect(r.total).toBe(8);
        dev.complete(dev.head, 0);
      }
      expect(dev.getDesc(r, null)).toBe(0);
      expect(dev.needNotify()).toBe(0); // interrupts were never enabled
      for (let t = vq.getBufToken(); t !== undefined; t = vq.getBufToken()) tokens.push(t);
      expect(vq.enableCb()).toBe(true);
      expect(dev.notifyEnable()).toBe(true);
      vq.disableCb();
    }
    expect(tokens).toEqual(
      [1, 2, 3, 4, 5]
        .flatMap((k) => [0, 1, 2, 3, 4, 5].map((r) => r * 10 + k))
        .sort((a, b) => a - b),
    );
    expect(vq.numFree).toBe(8);
  });

  for (const wasm of [false, true])
    it(`copies a readable chain into a writable one, whatever the sizes and alignment (${wasm ? 'wasm memory' : 'plain'})`, () => {
      const { vq, dev, memory, alloc } = setup({ num: 16, wasm });
      const region2 = 0x40_0000;
      memory.addRegion(region2, new SharedArrayBuffer(1 << 16));
      const r = new VringhIov();
      const w = new VringhIov();
      const pattern = (n: number, seed: number) =>
        Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);
      // [source addr, source len, target addr, target len]: word-aligned and not, small and large,
      // the same region and another one, and a target shorter than the source.
      const area = alloc.alloc(8192, 64)!;
      const cases: [number, number, number, number][] = [
        [area, 76, area + 1024, 1536],
        [area + 1, 64, area + 1024, 1536],
        [area, 63, area + 1026, 1536],
        [area, 1514, area + 2048, 1536],
        [area, 100, area + 4096, 40],
        [area, 76, region2 + 8, 256],
      ];
      let token = 1;
      for (const [src, srcLen, dst, dstLen] of cases) {
        const data = pattern(srcLen, token);
        memory.write(src, data);
        memory.view(dst, dstLen).fill(0xee);
        expect(vq.add([{ addr: src, len: srcLen }], [], token)).toBe(0);
        expect(vq.add([], [{ addr: dst, len: dstLen }], token + 1)).toBe(0);
        expect(dev.getDesc(r, null)).toBe(1);
        const srcHead = dev.head;
        expect(dev.getDesc(null, w)).toBe(1);
        const n = Math.min(srcLen, dstLen);
        expect(dev.copy(r, w)).toBe(n);
        expect([...memory.view(dst, n)]).toEqual([...data.subarray(0, n)]);
        if (dstLen > n) expect(memory.view(dst + n, 1)[0]).toBe(0xee);
        dev.complete(srcHead, 0);
        dev.complete(dev.head, n);
        expect(vq.getBufToken()).toBe(token);
        expect(vq.getBufToken()).toBe(token + 1);
        token += 2;
      }
      // Overlapping source and target (a hostile driver): copied as memmove would, never past
      // either buffer.
      const data = pattern(80, 7);
      memory.write(area, data);
      expect(vq.add([{ addr: area, len: 80 }], [], 99)).toBe(0);
      expect(vq.add([], [{ addr: area + 8, len: 80 }], 100)).toBe(0);
      expect(dev.getDesc(r, null)).toBe(1);
      expect(dev.getDesc(null, w)).toBe(1);
      expect(dev.copy(r, w)).toBe(80);
      expect([...memory.view(area + 8, 80)]).toEqual([...data]);
    });

  for (const wasm of [false, true])
    it(`copies without reading the region view's byteOffset or buffer per chain (${wasm ? 'wasm memory' : 'plain'})`, () => {
      const { vq, dev, memory, alloc } = setup({ num: 8, wasm });
      const reads = countViewReads(memory.regions[0]!.u8);
      const r = new VringhIov();
      const w = new VringhIov();
      const src = alloc.alloc(64, 64)!;
      const dst = alloc.alloc(64, 64)!;
      for (let k = 0; k < 50; k++) {
        memory.view(src, 64).fill(k);
        expect(vq.add([{ addr: src, len: 64 }], [], 1)).toBe(0);
        expect(vq.add([], [{ addr: dst, len: 64 }], 2)).toBe(0);
        expect(dev.getDesc(r, null)).toBe(1);
        const head = dev.head;
        expect(dev.getDesc(null, w)).toBe(1);
        expect(dev.copy(r, w)).toBe(64);
        expect(memory.view(dst, 64).every((b) => b === k)).toBe(true);
        dev.complete(head, 0);
        dev.complete(dev.head, 64);
        expect(vq.getBufToken()).toBe(1);
        expect(vq.getBufToken()).toBe(2);
      }
      // Once each when the view is first seen (and the buffer again for the word views).
      expect(reads()).toBeLessThanOrEqual(3);
    });

  it('reports a full ring and takes buffers back after reset', () => {
    const { vq, buf } = setup({ num: 4 });
    const a = buf(8, 1);
    for (let i = 0; i < 4; i++) expect(vq.addOutbuf(a, 8, i + 1)).toBe(0);
    expect(vq.addOutbuf(a, 8, 9)).toBe(-ENOSPC);
    const back = [];
    for (let t = vq.detachUnused(); t !== undefined; t = vq.detachUnused()) back.push(t);
    expect(back.sort()).toEqual([1, 2, 3, 4]);
    expect(vq.numFree).toBe(4);
  });

  it('walks indirect tables', () => {
    const { vq, dev, buf } = setup({ indirect: true });
    const a = buf(4, 1);
    const b = buf(6, 2);
    const c = buf(16, 0);
    expect(
      vq.add(
        [
          { addr: a, len: 4 },
          { addr: b, len: 6 },
        ],
        [{ addr: c, len: 16 }],
        1,
      ),
    ).toBe(0);
    expect(vq.numFree).toBe(7); // one descriptor for the whole chain
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.used, r.total, w.total]).toEqual([2, 10, 16]);
    const data = new Uint8Array(10);
    dev.pull(r, data);
    expect([...data]).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    dev.complete(dev.head, 16);
    expect(vq.getBuf()).toEqual({ token: 1, len: 16 });
    expect(vq.numFree).toBe(8);
  });

  it('honours notification suppression with and without event idx', () => {
    for (const eventIdx of [false, true]) {
      const { vq, dev, buf } = setup({ eventIdx });
      const a = buf(8, 1);
      vq.addOutbuf(a, 8, 1);
      expect(vq.kickPrepare()).toBe(true);
      dev.notifyDisable();
      vq.addOutbuf(a, 8, 2);
      if (!eventIdx) expect(vq.kickPrepare()).toBe(false);
      const r = new VringhIov();
      while (dev.getDesc(r, null) === 1) dev.complete(dev.head, 0);
      expect(dev.notifyEnable()).toBe(true);
      vq.addOutbuf(a, 8, 3);
      expect(vq.kickPrepare()).toBe(true);
      // The driver turns interrupts off: the device must not raise one.
      vq.disableCb();
      expect(dev.getDesc(r, null)).toBe(1);
      dev.complete(dev.head, 0);
      expect(dev.needNotify()).toBe(0);
      // Re-enabled: the next completion interrupts.
      while (vq.getBuf());
      const last = vq.enableCbPrepare();
      expect(vq.poll(last)).toBe(false);
      vq.addOutbuf(a, 8, 4);
      expect(dev.getDesc(r, null)).toBe(1);
      dev.complete(dev.head, 0);
      expect(vq.poll(last)).toBe(true);
      expect(dev.needNotify()).toBe(1);
    }
  });

  it('takes a length on a buffer the device only reads as 0, and keeps the queue', () => {
    const { vq, dev, buf } = setup();
    const out = buf(8, 1);
    vq.addOutbuf(out, 8, 1);
    const w = new VringhIov();
    dev.getDesc(w, null);
    dev.complete(dev.head, 72); // DPDK's vhost writes the bytes it read
    expect(vq.getBuf()).toEqual({ token: 1, len: 0 });
    expect(vq.isBroken).toBe(false);
  });

  it('breaks the driver queue on a bad used entry instead of throwing', () => {
    const { vq, dev, buf } = setup();
    const a = buf(8, 1);
    vq.addInbuf(a, 8, 1);
    const w = new VringhIov();
    dev.getDesc(null, w);
    dev.complete(dev.head, 9); // longer than the 8 writable bytes
    expect(vq.getBuf()).toBeNull();
    expect(vq.isBroken).toBe(true);
    const other = setup();
    other.dev.complete(5, 0); // never made available
    expect(other.vq.getBuf()).toBeNull();
    expect(other.vq.isBroken).toBe(true);
  });
});

describe('hostile rings seen by the device', () => {
  // Writes descriptors and avail entries directly, as a misbehaving driver would.
  function raw(num = 8) {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(1 << 16));
    const dv = new DataView(memory.regions[0]!.buffer as SharedArrayBuffer);
    const desc = BASE;
    const avail = BASE + 16 * num;
    const used = BASE + 0x1000;
    const dev = new Vringh(memory);
    expect(
      dev.init({ num, descAddr: desc, availAddr: avail, usedAddr: used, eventIdx: false }),
    ).toBe(0);
    const setDesc = (
      tableAddr: number,
      i: number,
      addr: number,
      len: number,
      flags: number,
      next: number,
    ) => {
      const o = tableAddr - BASE + 16 * i;
      dv.setUint32(o, addr % 2 ** 32, true);
      dv.setUint32(o + 4, Math.floor(addr / 2 ** 32), true);
      dv.setUint32(o + 8, len, true);
      dv.setUint16(o + 12, flags, true);
      dv.setUint16(o + 14, next, true);
    };
    let idx = 0;
    const offer = (head: number) => {
      dv.setUint16(avail - BASE + 4 + 2 * (idx % num), head, true);
      dv.setUint16(avail - BASE + 2, ++idx, true);
    };
    const setAvailIdx = (v: number) => dv.setUint16(avail - BASE + 2, v, true);
    return { dev, dv, desc, setDesc, offer, setAvailIdx, buf: BASE + 0x2000 };
  }

  const r = () => new VringhIov();

  it('rejects an out-of-range head with EINVAL and stays broken', () => {
    const h = raw();
    h.offer(8);
    expect(h.dev.getDesc(r(), r())).toBe(-EINVAL);
    expect(h.dev.broken).toBe(true);
    h.setDesc(h.desc, 0, h.buf, 4, 0, 0);
    h.offer(0);
    expect(h.dev.getDesc(r(), r())).toBe(-EINVAL);
  });

  it('detects a descriptor loop with ELOOP', () => {
    const h = raw();
    h.setDesc(h.desc, 0, h.buf, 4, VRING_DESC_F_NEXT, 1);
    h.setDesc(h.desc, 1, h.buf, 4, VRING_DESC_F_NEXT, 0);
    h.offer(0);
    expect(h.dev.getDesc(r(), r())).toBe(-ELOOP);
  });

  it('rejects nested indirect tables and odd indirect lengths with EINVAL', () => {
    const h = raw();
    const table = h.buf + 0x100;
    h.setDesc(h.desc, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
    h.setDesc(table, 0, table, 16, VRING_DESC_F_INDIRECT, 0);
    h.offer(0);
    expect(h.dev.getDesc(r(), r())).toBe(-EINVAL);
    const g = raw();
    g.setDesc(g.desc, 0, g.buf, 24, VRING_DESC_F_INDIRECT, 0);
    g.offer(0);
    expect(g.dev.getDesc(r(), r())).toBe(-EINVAL);
  });

  it('rejects a chained index out of range with EINVAL', () => {
    const h = raw();
    h.setDesc(h.desc, 0, h.buf, 4, VRING_DESC_F_NEXT, 9);
    h.offer(0);
    expect(h.dev.getDesc(r(), r())).toBe(-EINVAL);
  });

  it('rejects an unexpected direction with EPROTO and readable-after-writable with EINVAL', () => {
    const h = raw();
    h.setDesc(h.desc, 0, h.buf, 4, VRING_DESC_F_WRITE, 0);
    h.offer(0);
    expect(h.dev.getDesc(r(), null)).toBe(-EPROTO);
    const g = raw();
    g.setDesc(g.desc, 0, g.buf, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    g.setDesc(g.desc, 1, g.buf, 4, 0, 0);
    g.offer(0);
    expect(g.dev.getDesc(r(), r())).toBe(-EINVAL);
  });

  it('rejects untranslatable and wrapping addresses, huge chains and avail jumps', () => {
    const h = raw();
    h.setDesc(h.desc, 0, 0x9000_0000, 4, 0, 0);
    h.offer(0);
    expect(h.dev.getDesc(r(), r())).toBe(-EINVAL);
    const g = raw();
    // addr = 2^64 - 8 written as its two words (a double cannot hold it): wraps past the top.
    g.setDesc(g.desc, 0, 0, 16, 0, 0);
    g.dv.setUint32(0, 0xffff_fff8, true);
    g.dv.setUint32(4, 0xffff_ffff, true);
    g.offer(0);
    expect(g.dev.getDesc(r(), r())).toBe(-EINVAL);
    const j = raw();
    j.setAvailIdx(100);
    expect(j.dev.getDesc(r(), r())).toBe(-EFAULT);
  });

  it('rejects a chain whose lengths add up to 4 GiB or more (EINVAL), every segment in memory', () => {
    const num = 256;
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(16 << 20));
    const dv = new DataView(memory.regions[0]!.buffer as SharedArrayBuffer);
    const avail = BASE + 16 * num;
    const used = BASE + 0x2000;
    const dev = new Vringh(memory);
    expect(
      dev.init({ num, descAddr: BASE, availAddr: avail, usedAddr: used, eventIdx: false }),
    ).toBe(0);
    // 256 readable segments of 16 MiB each, all over the one region: 2^32 bytes in all.
    for (let i = 0; i < num; i++) {
      const o = 16 * i;
      dv.setUint32(o, BASE, true);
      dv.setUint32(o + 4, 0, true);
      dv.setUint32(o + 8, 16 << 20, true);
      dv.setUint16(o + 12, i + 1 < num ? VRING_DESC_F_NEXT : 0, true);
      dv.setUint16(o + 14, i + 1 < num ? i + 1 : 0, true);
    }
    dv.setUint16(avail - BASE + 4, 0, true); // ring[0] = head 0
    dv.setUint16(avail - BASE + 2, 1, true); // idx = 1
    expect(dev.getDesc(new VringhIov(num), null)).toBe(-EINVAL);
  });

  it('refuses a bad ring size at init', () => {
    const { dev } = raw();
    for (const num of [0, 3, 65536]) {
      expect(
        dev.init({
          num,
          descAddr: BASE,
          availAddr: BASE + 0x800,
          usedAddr: BASE + 0x1000,
          eventIdx: false,
        }),
      ).toBe(-EINVAL);
    }
  });
});

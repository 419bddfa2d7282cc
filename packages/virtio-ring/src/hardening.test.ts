import { describe, expect, it } from 'vitest';
import {
  DmaAllocator,
  type DmaMapOps,
  directMap,
  directUnmap,
  isDirectDma,
  offsetDmaOps,
} from './dma';
import { EINVAL, EIO, ELOOP, ENOMEM, ENOSPC } from './errno';
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from './layout';
import { GuestMemory, OffsetAddressSpace } from './memory';
import { RawRing } from './testing';
import { Virtqueue } from './virtqueue';
import { Vringh, VringhIov } from './vringh';

const BASE = 0x10_0000;

function world(
  opts: {
    num?: number;
    indirect?: boolean;
    dma?: (d: DmaMapOps) => DmaMapOps;
    notify?: () => boolean;
  } = {},
) {
  const memory = new GuestMemory();
  memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
  const alloc = new DmaAllocator(memory, BASE);
  const base = offsetDmaOps(alloc);
  const dma = opts.dma ? opts.dma(base) : base;
  const vq = Virtqueue.create<number>({
    index: 0,
    num: opts.num ?? 8,
    memory,
    dma,
    indirect: opts.indirect ?? false,
    notify: opts.notify ?? (() => true),
  })!;
  const dev = new Vringh(memory);
  const cfg = {
    num: vq.num,
    descAddr: vq.descAddr,
    availAddr: vq.availAddr,
    usedAddr: vq.usedAddr,
    eventIdx: false,
  };
  expect(dev.init(cfg)).toBe(0);
  return { memory, alloc, vq, dev, cfg };
}

describe('driver-side virtqueue', () => {
  it('adds from typed arrays without objects (addChain) with the same ring contents as add', () => {
    const { vq, dev, alloc } = world();
    const a = alloc.alloc(12)!;
    const b = alloc.alloc(20)!;
    expect(vq.addChain(Float64Array.of(a, b), Uint32Array.of(12, 20), 1, 1, 5)).toBe(0);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.addr[0], r.len[0], w.addr[0], w.len[0]]).toEqual([a, 12, b, 20]);
    dev.complete(dev.head, 20);
    expect(vq.getBuf()).toEqual({ token: 5, len: 20 });
  });

  it('rejects programming errors before touching the ring', () => {
    const { vq } = world();
    expect(() => vq.addOutbuf(BASE, 2 ** 32, 1)).toThrow(RangeError);
    expect(() => vq.addOutbuf(-1, 4, 1)).toThrow(RangeError);
    expect(() => vq.addOutbuf(BASE, 4, undefined as unknown as number)).toThrow(TypeError);
    expect(() => vq.add([], [], 1)).toThrow(RangeError);
    expect(vq.numFree).toBe(8);
  });

  it('maps and unmaps every buffer through DMA ops that are not direct, chains and indirect tables alike', () => {
    for (const indirect of [false, true]) {
      const live = new Map<number, number>(); // device address -> mappings outstanding
      let maps = 0;
      const { vq, dev, alloc } = world({
        indirect,
        dma: (d) => ({
          ...d,
          map: (cpu, len, dir) => {
            maps++;
            const addr = d.map(cpu, len, dir);
            live.set(addr, (live.get(addr) ?? 0) + 1);
            return addr;
          },
          unmap: (addr) => {
            expect(live.get(addr)).toBeGreaterThan(0);
            live.set(addr, live.get(addr)! - 1);
          },
        }),
      });
      const a = alloc.alloc(64)!;
      const b = alloc.alloc(64)!;
      expect(vq.addOutbuf(a, 64, 1)).toBe(0);
      expect(vq.add([{ addr: a, len: 16 }], [{ addr: b, len: 64 }], 2)).toBe(0);
      const w = new VringhIov();
      const r = new VringhIov();
      for (let i = 0; i < 2; i++) {
        expect(dev.getDesc(r, w)).toBe(1);
        dev.complete(dev.head, 0);
      }
      expect(vq.getBufToken()).toBe(1);
      expect(vq.getBufToken()).toBe(2);
      expect(maps).toBe(3);
      expect([...live.values()].every((n) => n === 0)).toBe(true);
    }
  });

  it('unmaps indirect buffers from its own record, whatever the device wrote into the table', () => {
    const unmapped: [number, number, string][] = [];
    const { vq, dev, alloc, memory } = world({
      indirect: true,
      dma: (d) => ({
        ...d,
        map: (cpu) => cpu + 0x1000,
        unmap: (a, l, dir) => unmapped.push([a, l, dir]),
      }),
    });
    const a = alloc.alloc(64)!;
    const b = alloc.alloc(64)!;
    expect(vq.add([{ addr: a, len: 16 }], [{ addr: b, len: 64 }], 7)).toBe(0);
    const r = new VringhIov();
    const w = new VringhIov();
    // The device walks the chain (buffer addresses are 4 KiB off in its identity view, which
    // does not matter here)...
    expect(dev.getDesc(r, w)).toBe(1);
    // ...then scribbles over the indirect table's first entry before completing.
    const desc = memory.view(vq.descAddr, 16);
    const table = new DataView(desc.buffer, desc.byteOffset).getUint32(0, true);
    memory.view(table, 16).fill(0x77);
    dev.complete(dev.head, 64);
    expect(vq.getBufToken()).toBe(7);
    expect(unmapped).toEqual([
      [a + 0x1000, 16, 'to-device'],
      [b + 0x1000, 64, 'from-device'],
    ]);
  });

  it('puts a chain in the ring directly when no indirect table can be allocated', () => {
    let allocs = 0;
    const { vq, dev, alloc } = world({
      indirect: true,
      dma: (d) => ({ ...d, alloc: (size, align) => (++allocs > 3 ? null : d.alloc(size, align)) }),
    });
    const a = alloc.alloc(64)!;
    const b = alloc.alloc(64)!;
    expect(
      vq.add(
        [
          { addr: a, len: 16 },
          { addr: a + 16, len: 16 },
        ],
        [{ addr: b, len: 64 }],
        3,
      ),
    ).toBe(0);
    expect(vq.numFree).toBe(8 - 3); // three ring descriptors, no table
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.used, w.used]).toEqual([2, 1]);
  });

  it('breaks the queue when the used index jumps further than the ring can hold', () => {
    const { vq, alloc, memory } = world({ num: 2 });
    const a = alloc.alloc(8)!;
    expect(vq.addOutbuf(a, 8, 1)).toBe(0);
    const used = memory.view(vq.usedAddr, 4);
    used[2] = 3; // three used entries on a ring of two
    expect(vq.getBufToken()).toBeUndefined();
    expect(vq.isBroken).toBe(true);
    expect(vq.brokenBecause).toMatch(/used index 3/);
  });

  it('kicks by itself after 0xffff adds without one, so the index arithmetic stays exact', () => {
    let kicks = 0;
    const { vq, dev, alloc } = world({
      notify: () => {
        kicks++;
        return true;
      },
    });
    const buf = alloc.alloc(8)!;
    const r = new VringhIov();
    for (let i = 0; i < 0xffff; i++) {
      expect(vq.addOutbuf(buf, 8, 1)).toBe(0);
      expect(dev.getDesc(r, null)).toBe(1);
      dev.complete(dev.head, 0);
      expect(vq.getBufToken()).toBe(1);
      if (i === 0xfffd) expect(kicks).toBe(0);
    }
    expect(kicks).toBe(1);
  });

  it('touches no ring memory once deleted', () => {
    const { vq, memory } = world();
    const ring = memory.view(vq.descAddr, 16); // somewhere in the freed areas
    const areas = [vq.availAddr, vq.usedAddr].map((addr) => memory.view(addr, 8));
    vq.delete();
    for (const v of [ring, ...areas]) v.fill(0x55);
    vq.disableCb();
    vq.enableCbPrepare();
    vq.enableCbDelayed();
    expect(vq.kickPrepare()).toBe(false);
    expect(vq.interrupt()).toBe('none');
    expect(vq.moreUsed()).toBe(false);
    for (const v of [ring, ...areas]) expect([...v].every((b) => b === 0x55)).toBe(true);
  });

  it('calls direct DMA ops (identity map, no-op unmap) not at all, and knows them by their functions', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(1 << 16));
    const alloc = new DmaAllocator(memory, BASE);
    expect(isDirectDma(offsetDmaOps(alloc))).toBe(true);
    expect(isDirectDma(offsetDmaOps(alloc, 0x1000))).toBe(false);
    const ops = offsetDmaOps(alloc);
    expect(isDirectDma({ ...ops, map: (cpu) => directMap(cpu) })).toBe(false);
    expect(isDirectDma({ ...ops, unmap: () => {} })).toBe(false);
    expect(isDirectDma({ ...ops, map: directMap, unmap: directUnmap })).toBe(true);
  });

  it('returns -ENOMEM and loses nothing when a DMA mapping fails', () => {
    const unmapped: number[] = [];
    let fail = false;
    const { vq, alloc } = world({
      dma: (d) => ({
        ...d,
        map: (cpu, len, dir) => (fail && dir === 'from-device' ? -1 : d.map(cpu, len, dir)),
        unmap: (addr) => {
          unmapped.push(addr);
        },
      }),
    });
    const a = alloc.alloc(8)!;
    fail = true;
    expect(vq.add([{ addr: a, len: 8 }], [{ addr: a, len: 8 }], 1)).toBe(-ENOMEM);
    expect(unmapped).toEqual([a]); // the readable element mapped first was unmapped again
    expect(vq.numFree).toBe(8);
    fail = false;
    expect(vq.add([{ addr: a, len: 8 }], [{ addr: a, len: 8 }], 1)).toBe(0);
  });

  it('reuses a head indirect table instead of allocating one per add', () => {
    const { vq, dev, alloc } = world({ indirect: true });
    const a = alloc.alloc(64)!;
    const r = new VringhIov();
    const w = new VringhIov();
    let allocated = -1;
    for (let round = 0; round < 20; round++) {
      expect(vq.add([{ addr: a, len: 4 }], [{ addr: a + 8, len: 8 }], round + 1)).toBe(0);
      expect(dev.getDesc(r, w)).toBe(1);
      dev.complete(dev.head, 8);
      expect(vq.getBuf()).toEqual({ token: round + 1, len: 8 });
      if (round === 0) allocated = alloc.allocatedBytes;
      expect(alloc.allocatedBytes).toBe(allocated);
    }
    const before = alloc.allocatedBytes;
    vq.delete();
    expect(alloc.allocatedBytes).toBeLessThan(before);
    expect(alloc.allocatedBytes).toBe(64);
  });

  it('reset takes unused buffers back, clears a broken state and runs again', () => {
    const { vq, dev, alloc, cfg } = world();
    const a = alloc.alloc(8)!;
    vq.addInbuf(a, 8, 1);
    vq.addInbuf(a, 8, 2);
    const w = new VringhIov();
    dev.getDesc(null, w);
    dev.complete(7, 0); // never offered: the driver breaks the queue
    expect(vq.getBuf()).toBeNull();
    expect(vq.isBroken).toBe(true);
    expect(vq.addInbuf(a, 8, 3)).toBe(-EIO);
    const back: number[] = [];
    vq.reset((t) => back.push(t));
    expect(back.sort()).toEqual([1, 2]);
    expect([vq.isBroken, vq.numFree]).toEqual([false, 8]);
    expect(dev.init(cfg)).toBe(0);
    expect(vq.addInbuf(a, 8, 4)).toBe(0);
    expect(dev.getDesc(null, w)).toBe(1);
    dev.complete(dev.head, 8);
    expect(vq.getBuf()).toEqual({ token: 4, len: 8 });
  });

  it('fills a ring of 32768 and refuses sizes that are not powers of two', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(4 << 20));
    const dma = offsetDmaOps(new DmaAllocator(memory, BASE));
    const mk = (num: number, mayReduceNum = false) =>
      Virtqueue.create<number>({ index: 1, num, memory, dma, mayReduceNum, notify: () => true });
    expect(() => mk(3)).toThrow(RangeError);
    expect(() => mk(65536)).toThrow(RangeError);
    const big = mk(32768)!;
    for (let i = 0; i < 32768; i++) expect(big.addOutbuf(BASE, 1, i + 1)).toBe(0);
    expect(big.addOutbuf(BASE, 1, 0)).toBe(-ENOSPC);
  });

  it('reduces the queue size when memory is short and may-reduce is set', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(64 << 10));
    const dma = offsetDmaOps(new DmaAllocator(memory, BASE));
    const opts = { index: 0, num: 32768, memory, dma, notify: () => true };
    expect(Virtqueue.create<number>(opts)).toBeNull();
    const vq = Virtqueue.create<number>({ ...opts, mayReduceNum: true })!;
    expect(vq.num).toBeLessThan(32768);
    expect(vq.num & (vq.num - 1)).toBe(0);
  });

  it('presents device addresses through an offset IOVA mapping', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
    const alloc = new DmaAllocator(memory, BASE);
    const OFF = 0x4000_0000;
    const vq = Virtqueue.create<number>({
      index: 0,
      num: 8,
      memory,
      dma: offsetDmaOps(alloc, OFF),
      notify: () => true,
    })!;
    expect(vq.descAddr).toBeGreaterThanOrEqual(OFF);
    const dev = new Vringh(new OffsetAddressSpace(memory, BASE + OFF, 1 << 20, OFF));
    expect(
      dev.init({
        num: 8,
        descAddr: vq.descAddr,
        availAddr: vq.availAddr,
        usedAddr: vq.usedAddr,
        eventIdx: false,
      }),
    ).toBe(0);
    const a = alloc.alloc(4)!;
    memory.view(a, 4).set([9, 8, 7, 6]);
    vq.addOutbuf(a, 4, 1);
    const r = new VringhIov();
    expect(dev.getDesc(r, null)).toBe(1);
    expect(r.addr[0]).toBe(a + OFF);
    const got = new Uint8Array(4);
    dev.pull(r, got);
    expect([...got]).toEqual([9, 8, 7, 6]);
    // Guest-physical addresses are not device addresses under the mapping.
    const plain = new Vringh(new OffsetAddressSpace(memory, BASE + OFF, 1 << 20, OFF));
    expect(
      plain.init({
        num: 8,
        descAddr: vq.descAddr - OFF,
        availAddr: vq.availAddr,
        usedAddr: vq.usedAddr,
        eventIdx: false,
      }),
    ).toBe(-EINVAL);
  });
});

describe('device-side vringh, hardened walk', () => {
  function raw(num = 8) {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(1 << 16));
    const ring = new RawRing(memory, BASE, num);
    const dev = new Vringh(memory);
    expect(dev.init({ ...ring, eventIdx: false })).toBe(0);
    return { memory, ring, dev, buf: BASE + 0x3000 };
  }

  it('finds a loop in the ring table after an indirect table has been walked', () => {
    const { ring, dev, buf } = raw();
    const table = buf + 0x100;
    ring.setDesc(0, table, 16 * 4, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    for (let k = 0; k < 4; k++)
      ring.setDesc(k, buf, 4, k < 3 ? VRING_DESC_F_NEXT : 0, k + 1, table);
    ring.setDesc(1, buf, 4, VRING_DESC_F_NEXT, 2);
    ring.setDesc(2, buf, 4, VRING_DESC_F_NEXT, 1);
    ring.offer(0);
    expect(dev.getDesc(new VringhIov(), new VringhIov())).toBe(-ELOOP);
  });

  it('finds a loop inside an indirect table', () => {
    const { ring, dev, buf } = raw();
    const table = buf + 0x100;
    ring.setDesc(0, table, 32, VRING_DESC_F_INDIRECT, 0);
    ring.setDesc(0, buf, 4, VRING_DESC_F_NEXT, 1, table);
    ring.setDesc(1, buf, 4, VRING_DESC_F_NEXT, 0, table);
    ring.offer(0);
    expect(dev.getDesc(new VringhIov(), new VringhIov())).toBe(-ELOOP);
  });

  it('reads a misaligned indirect table where it lies', () => {
    const { ring, dev, buf, memory } = raw();
    const table = buf + 0x104; // 4-byte aligned, not 16
    memory.view(buf, 6).set([1, 2, 3, 4, 5, 6]);
    ring.setDesc(0, table, 32, VRING_DESC_F_INDIRECT, 0);
    ring.setDesc(0, buf, 2, VRING_DESC_F_NEXT, 1, table);
    ring.setDesc(1, buf + 2, 4, VRING_DESC_F_WRITE, 0, table);
    ring.offer(0);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.total, w.total, w.addr[0]]).toEqual([2, 4, buf + 2]);
  });

  it('resumes the ring chain after an indirect table with NEXT', () => {
    const { ring, dev, buf } = raw();
    const table = buf + 0x100;
    ring.setDesc(0, table, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 3);
    ring.setDesc(0, buf, 5, 0, 0, table);
    ring.setDesc(3, buf + 8, 7, VRING_DESC_F_WRITE, 0);
    ring.offer(0);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.total, w.total]).toEqual([5, 7]);
  });

  it('rejects a readable descriptor after a writable one with EINVAL', () => {
    const { ring, dev, buf } = raw();
    ring.setDesc(0, buf, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    ring.setDesc(1, buf, 4, 0, 0);
    ring.offer(0);
    // With both lists the order check answers EINVAL (the 5.4 code let this through).
    expect(dev.getDesc(new VringhIov(), new VringhIov())).toBe(-EINVAL);
  });

  it('resets the consume cursors of reused iovs on every getDesc', () => {
    const { ring, dev, buf } = raw();
    ring.setDesc(0, buf, 8, 0, 0);
    ring.setDesc(1, buf, 8, 0, 0);
    ring.offer(0);
    ring.offer(1);
    const r = new VringhIov();
    expect(dev.getDesc(r, null)).toBe(1);
    dev.pull(r, new Uint8Array(3)); // partially consumed
    expect(dev.getDesc(r, null)).toBe(1);
    expect(dev.pull(r, new Uint8Array(16))).toBe(8);
  });

  it('abandons chains and hands them out again; vq state round-trips', () => {
    const { ring, dev, buf } = raw();
    ring.setDesc(0, buf, 8, 0, 0);
    ring.offer(0);
    ring.offer(0);
    const r = new VringhIov();
    expect(dev.getDesc(r, null)).toBe(1);
    expect(dev.getDesc(r, null)).toBe(1);
    dev.abandon(2);
    expect(dev.getLastAvailIdx()).toBe(0);
    dev.setLastAvailIdx(1);
    expect(dev.getDesc(r, null)).toBe(1);
    expect(dev.getDesc(r, null)).toBe(0);
  });

  it('takes a driver area at any 2-byte alignment (virtio 1.2 2.7), a used area only at 4', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(1 << 16));
    const dev = new Vringh(memory);
    const cfg = {
      num: 8,
      descAddr: BASE,
      availAddr: BASE + 0x202,
      usedAddr: BASE + 0x400,
      eventIdx: false,
    };
    expect(dev.init(cfg)).toBe(0);
    expect(dev.init({ ...cfg, usedAddr: BASE + 0x402 })).toBe(-EINVAL);
    expect(dev.init({ ...cfg, availAddr: BASE + 0x201 })).toBe(-EINVAL);
  });

  it('restores a vq state: reads avail from it and publishes used entries after it', () => {
    const { ring, dev, buf, memory } = raw();
    ring.setDesc(0, buf, 8, VRING_DESC_F_WRITE, 0);
    for (let k = 0; k < 18; k++) ring.offer(0); // avail idx 18: a ring stopped at 17
    const used = memory.view(ring.usedAddr, 4 + 8 * 8);
    used[2] = 17; // and the used index it had published
    dev.restoreState(17);
    const w = new VringhIov();
    expect(dev.getDesc(null, w)).toBe(1);
    expect(dev.getDesc(null, new VringhIov())).toBe(0);
    dev.complete(dev.head, 8);
    // used idx 18 (not 1), with the element in slot 17 % 8.
    expect(used[2] | (used[3]! << 8)).toBe(18);
    expect(used[4 + (17 % 8) * 8 + 4]).toBe(8);
    expect(dev.getLastAvailIdx()).toBe(18);
  });

  it('completes several chains with one index update', () => {
    const { ring, dev, buf } = raw();
    for (let h = 0; h < 3; h++) {
      ring.setDesc(h, buf, 8, VRING_DESC_F_WRITE, 0);
      ring.offer(h);
    }
    const w = new VringhIov();
    const heads: number[] = [];
    while (dev.getDesc(null, w) === 1) heads.push(dev.head);
    expect(dev.completeMulti(heads, [1, 2, 3], 3)).toBe(0);
    expect(ring.usedIdx()).toBe(3);
    expect([0, 1, 2].map((s) => ring.usedElem(s))).toEqual([
      { id: 0, len: 1 },
      { id: 1, len: 2 },
      { id: 2, len: 3 },
    ]);
  });
});

describe('device-side ranges a guest may hand over', () => {
  // A view whose subarray() and slice() count the bytes they span: how much of guest memory
  // the device copied or carved out while it walked a chain.
  class CountingBytes extends Uint8Array {
    static spanned = 0;
    override subarray(begin = 0, end = this.length) {
      CountingBytes.spanned += end - begin;
      return super.subarray(begin, end);
    }
    override slice(begin = 0, end = this.length) {
      CountingBytes.spanned += end - begin;
      return super.slice(begin, end);
    }
  }

  it('walks a misaligned 8 MiB indirect table at the cost of the descriptors walked', () => {
    const memory = new GuestMemory();
    const region = memory.addRegion(BASE, new ArrayBuffer(16 << 20));
    const whole = new CountingBytes(region.buffer as ArrayBuffer);
    const space = {
      shared: false,
      translate(addr: number, len: number, out: { u8: Uint8Array; offset: number }) {
        if (!memory.translate(addr, len, out)) return false;
        out.u8 = whole;
        return true;
      },
    };
    const ring = new RawRing(memory, BASE, 8);
    const table = BASE + 0x10_0008; // 8 bytes past a 16-byte boundary: no word view fits it
    const data = BASE + 0x8000;
    const tableLen = 8 << 20;
    ring.setDesc(0, table, tableLen, VRING_DESC_F_INDIRECT, 0);
    ring.setDesc(0, data, 24, VRING_DESC_F_NEXT, 1, table);
    ring.setDesc(1, data + 64, 40, VRING_DESC_F_WRITE, 0, table);
    memory.write(
      data,
      Uint8Array.from({ length: 24 }, (_, i) => i + 1),
    );
    const dev = new Vringh(space);
    expect(dev.init({ ...ring, eventIdx: false })).toBe(0);
    const r = new VringhIov();
    const w = new VringhIov();
    CountingBytes.spanned = 0;
    for (let k = 0; k < 100; k++) {
      ring.offer(0);
      expect(dev.getDesc(r, w)).toBe(1);
      expect([r.used, r.total, w.used, w.total]).toEqual([1, 24, 1, 40]);
      dev.complete(0, 0);
    }
    // Two descriptors walked a chain; the table's 8 MiB are neither copied nor sliced.
    expect(CountingBytes.spanned).toBeLessThan(4096);
    const got = new Uint8Array(24);
    expect(dev.pull(r, got)).toBe(24);
    expect(got).toEqual(Uint8Array.from({ length: 24 }, (_, i) => i + 1));
  });

  it('reads every descriptor of a misaligned indirect table as the driver wrote it', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(1 << 20));
    const ring = new RawRing(memory, BASE, 8);
    const table = BASE + 0x8004;
    const data = BASE + 0x9000;
    ring.setDesc(0, table, 5 * 16, VRING_DESC_F_INDIRECT, 0);
    // Out of order through `next`, readable then writable.
    ring.setDesc(0, data, 3, VRING_DESC_F_NEXT, 3, table);
    ring.setDesc(3, data + 16, 5, VRING_DESC_F_NEXT, 1, table);
    ring.setDesc(1, data + 32, 7, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4, table);
    ring.setDesc(4, data + 48, 9, VRING_DESC_F_WRITE, 0, table);
    ring.offer(0);
    const dev = new Vringh(memory);
    expect(dev.init({ ...ring, eventIdx: false })).toBe(0);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([...r.addr.subarray(0, r.used)]).toEqual([data, data + 16]);
    expect([...r.len.subarray(0, r.used)]).toEqual([3, 5]);
    expect([...w.addr.subarray(0, w.used)]).toEqual([data + 32, data + 48]);
    expect([...w.len.subarray(0, w.used)]).toEqual([7, 9]);
  });

  it('splits a buffer over two adjacent memory regions into a segment each', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(0x1_0000));
    memory.addRegion(BASE + 0x1_0000, new ArrayBuffer(0x1_0000));
    const ring = new RawRing(memory, BASE, 8);
    const span = BASE + 0x1_0000 - 10; // 10 bytes in the first region, 20 in the second
    const bytes = Uint8Array.from({ length: 30 }, (_, i) => 100 + i);
    memory.write(span, bytes.subarray(0, 10));
    memory.write(BASE + 0x1_0000, bytes.subarray(10));
    ring.setDesc(0, span, 30, 0, 0);
    ring.setDesc(1, span - 0x100, 0x200, VRING_DESC_F_WRITE, 0);
    ring.offer(0);
    ring.offer(1);
    const dev = new Vringh(memory);
    expect(dev.init({ ...ring, eventIdx: false })).toBe(0);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, null)).toBe(1);
    expect([r.used, r.total, ...r.len.subarray(0, 2)]).toEqual([2, 30, 10, 20]);
    const got = new Uint8Array(30);
    expect(dev.pull(r, got)).toBe(30);
    expect(got).toEqual(bytes);
    // A writable one, through a chain of the same walk, and filled across the boundary.
    expect(dev.getDesc(null, w)).toBe(1);
    expect([w.used, w.total]).toEqual([2, 0x200]);
    r.reset();
    expect(dev.push(w, new Uint8Array(0x200).fill(7))).toBe(0x200);
    expect(memory.read(span - 0x100, 0x100 + 10)).toEqual(new Uint8Array(0x10a).fill(7));
    expect(memory.read(BASE + 0x1_0000, 0x100 - 10)).toEqual(new Uint8Array(0xf6).fill(7));
    expect(dev.broken).toBe(false);
  });

  it('still refuses a buffer that runs past the last region', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(0x1_0000));
    memory.addRegion(BASE + 0x1_0000, new ArrayBuffer(0x1_0000));
    const ring = new RawRing(memory, BASE, 8);
    ring.setDesc(0, BASE + 0x2_0000 - 10, 30, 0, 0);
    ring.offer(0);
    const dev = new Vringh(memory);
    expect(dev.init({ ...ring, eventIdx: false })).toBe(0);
    expect(dev.getDesc(new VringhIov(), null)).toBe(-EINVAL);
    expect(dev.error).toBe(-EINVAL);
  });
});

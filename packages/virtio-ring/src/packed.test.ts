import { describe, expect, it } from 'vitest';
import { DmaAllocator, offsetDmaOps } from './dma';
import { EINVAL, ELOOP, ENOSPC, EPROTO } from './errno';
import { RingForward } from './forward';
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from './layout';
import { GuestMemory } from './memory';
import {
  packedAvailFlags,
  packedUsedFlags,
  VRING_PACKED_DESC_SIZE,
  VRING_PACKED_EVENT_FLAG_DESC,
  VRING_PACKED_EVENT_FLAG_DISABLE,
} from './packed-layout';
import { createVirtqueue, PackedVirtqueue } from './packed-virtqueue';
import { Virtqueue } from './virtqueue';
import { VringhIov } from './vringh';
import { createVringh, VringhPacked } from './vringh-packed';

const BASE = 0x10_0000;

function setup(
  opts: { num?: number; eventIdx?: boolean; indirect?: boolean; inOrder?: boolean } = {},
) {
  const memory = new GuestMemory();
  memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
  const alloc = new DmaAllocator(memory, BASE);
  const dma = offsetDmaOps(alloc);
  let kicks = 0;
  const vq = PackedVirtqueue.create<number>({
    index: 0,
    num: opts.num ?? 8,
    memory,
    dma,
    eventIdx: opts.eventIdx ?? false,
    indirect: opts.indirect ?? false,
    inOrder: opts.inOrder ?? false,
    notify: () => {
      kicks++;
      return true;
    },
  })!;
  const dev = new VringhPacked(memory);
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
    const addr = alloc.alloc(Math.max(n, 1), 8)!;
    memory.view(addr, n).fill(fill);
    return addr;
  };
  // Raw access to descriptor `i` of the ring, as a hostile driver or device writes it.
  const desc = (i: number) => {
    const v = new DataView(memory.regions[0]!.buffer as SharedArrayBuffer);
    const o = vq.descAddr - BASE + i * VRING_PACKED_DESC_SIZE;
    return {
      write(addr: number, len: number, id: number, flags: number) {
        v.setBigUint64(o, BigInt(addr), true);
        v.setUint32(o + 8, len, true);
        v.setUint16(o + 12, id, true);
        v.setUint16(o + 14, flags, true);
      },
      flags: () => v.getUint16(o + 14, true),
      id: () => v.getUint16(o + 12, true),
      len: () => v.getUint32(o + 8, true),
      setLen: (len: number) => v.setUint32(o + 8, len, true),
      setId: (id: number) => v.setUint16(o + 12, id, true),
    };
  };
  const event = (addr: number) => {
    const v = new DataView(memory.regions[0]!.buffer as SharedArrayBuffer);
    const o = addr - BASE;
    return {
      offWrap: () => v.getUint16(o, true),
      flags: () => v.getUint16(o + 2, true),
      set: (offWrap: number, flags: number) => {
        v.setUint16(o, offWrap, true);
        v.setUint16(o + 2, flags, true);
      },
    };
  };
  return { memory, alloc, vq, dev, buf, desc, event, kicks: () => kicks };
}

describe('packed ring: driver and device', () => {
  it('makes a buffer available with the avail flag of lap 1 and reads it back used', () => {
    const { vq, dev, buf, desc, memory } = setup();
    const out = buf(5, 0x41);
    const inp = buf(7, 0);
    expect(vq.add([{ addr: out, len: 5 }], [{ addr: inp, len: 7 }], 11)).toBe(0);
    expect(vq.numFree).toBe(6);
    // Lap 1: avail set, used clear on both descriptors; the id in both (the kernel's way).
    expect(desc(0).flags()).toBe(packedAvailFlags(1) | VRING_DESC_F_NEXT);
    expect(desc(1).flags()).toBe(packedAvailFlags(1) | VRING_DESC_F_WRITE);
    expect([desc(0).id(), desc(1).id()]).toEqual([0, 0]);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect(dev.head).toBe(0);
    expect([r.total, w.total]).toEqual([5, 7]);
    const got = new Uint8Array(5);
    dev.pull(r, got);
    expect([...got]).toEqual([0x41, 0x41, 0x41, 0x41, 0x41]);
    expect(dev.push(w, Uint8Array.of(1, 2, 3))).toBe(3);
    expect(dev.getDesc(r, w)).toBe(0);
    expect(vq.getBuf()).toBeNull();
    expect(dev.complete(dev.head, 3)).toBe(0);
    // One used descriptor for the chain, in its first slot, both flags equal to lap 1.
    expect([desc(0).flags(), desc(0).id(), desc(0).len()]).toEqual([packedUsedFlags(1), 0, 3]);
    expect({ ...vq.getBuf() }).toEqual({ token: 11, len: 3 });
    expect([...memory.view(inp, 3)]).toEqual([1, 2, 3]);
    expect(vq.numFree).toBe(8);
    expect(vq.getBuf()).toBeNull();
  });

  it('goes round odd-sized rings for many laps with chains of every length', () => {
    for (const num of [1, 3, 5, 7, 31, 255]) {
      const { vq, dev, buf, memory } = setup({ num, indirect: num > 3 });
      const r = new VringhIov();
      const w = new VringhIov();
      const bufs = Array.from({ length: 8 }, (_, k) => buf(16, k));
      let token = 0;
      let expectTok = 0;
      let seed = num;
      const rand = () => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed;
      };
      for (let round = 0; round < 600; round++) {
        // Fill as far as it goes with chains of 1..4 elements, the last one writable.
        for (;;) {
          const n = 1 + (rand() % Math.min(4, num));
          const outs = bufs.slice(0, n - 1).map((addr) => ({ addr, len: 16 }));
          const rc = vq.add(outs, [{ addr: bufs[7]!, len: 16 }], token);
          if (rc === -ENOSPC) break;
          expect(rc).toBe(0);
          token++;
          if (rand() % 3 === 0) break;
        }
        // The device takes some, echoes the element count as the length, completes in order.
        const take = 1 + (rand() % num);
        for (let k = 0; k < take; k++) {
          const got = dev.getDesc(r, w);
          if (got === 0) break;
          expect(got).toBe(1);
          expect(w.total).toBe(16);
          memory.view(bufs[7]!, 1)[0] = r.used;
          dev.complete(dev.head, r.total / 16 + 1);
        }
        for (let u = vq.getBuf(); u !== null; u = vq.getBuf()) {
          expect(u.token).toBe(expectTok++);
          expect(u.len).toBeGreaterThanOrEqual(1);
        }
        expect(vq.isBroken).toBe(false);
        expect(dev.broken).toBe(false);
      }
      expect(expectTok).toBeGreaterThanOrEqual(600);
      // Laps were made: the wrap counters flipped at least once each way.
      expect(token).toBeGreaterThan(2 * num);
    }
  });

  it('passes a chain through an indirect table of packed descriptors', () => {
    const { vq, dev, buf, desc, memory } = setup({ indirect: true });
    const a = buf(3, 0x61);
    const b = buf(4, 0x62);
    const w1 = buf(6, 0);
    expect(
      vq.add(
        [
          { addr: a, len: 3 },
          { addr: b, len: 4 },
        ],
        [{ addr: w1, len: 6 }],
        5,
      ),
    ).toBe(0);
    expect(vq.numFree).toBe(7);
    expect(desc(0).flags()).toBe(packedAvailFlags(1) | VRING_DESC_F_INDIRECT);
    expect(desc(0).len()).toBe(3 * VRING_PACKED_DESC_SIZE);
    const r = new VringhIov();
    const w = new VringhIov();
    expect(dev.getDesc(r, w)).toBe(1);
    expect([r.used, r.total, w.used, w.total]).toEqual([2, 7, 1, 6]);
    expect(dev.copy(r, w)).toBe(6);
    dev.complete(dev.head, 6);
    expect({ ...vq.getBuf() }).toEqual({ token: 5, len: 6 });
    expect([...memory.view(w1, 6)]).toEqual([0x61, 0x61, 0x61, 0x62, 0x62, 0x62]);
  });

  it('picks the layout by an option (createVirtqueue, createVringh)', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(1 << 16));
    const dma = offsetDmaOps(new DmaAllocator(memory, BASE));
    const common = { index: 0, num: 4, memory, dma, notify: () => true };
    expect(createVirtqueue<number>({ ...common, packed: true })).toBeInstanceOf(PackedVirtqueue);
    expect(createVirtqueue<number>(common)).toBeInstanceOf(Virtqueue);
    expect(createVringh(memory, true)).toBeInstanceOf(VringhPacked);
  });

  it('refuses what is not a packed queue size', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(1 << 16));
    const dma = offsetDmaOps(new DmaAllocator(memory, BASE));
    for (const num of [0, -1, 32769, 1.5]) {
      expect(() =>
        PackedVirtqueue.create({ index: 0, num, memory, dma, notify: () => true }),
      ).toThrow(RangeError);
      expect(
        new VringhPacked(memory).init({
          num,
          descAddr: BASE,
          availAddr: BASE,
          usedAddr: BASE,
          eventIdx: false,
        }),
      ).toBe(-EINVAL);
    }
  });
});

describe('packed ring: DMA mapping', () => {
  it('unmaps every buffer it mapped, from its own record, and consumes nothing on a failed map', () => {
    const memory = new GuestMemory();
    memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
    const alloc = new DmaAllocator(memory, BASE);
    const base = offsetDmaOps(alloc);
    const live = new Map<number, string>();
    let failNext = false;
    const dma = {
      ...base,
      // Not direct: a device address 0 past the CPU one, but through calls the ring must make.
      map: (cpu: number, len: number, dir: string) => {
        if (failNext) return Number.NaN;
        live.set(cpu, `${len}:${dir}`);
        return cpu;
      },
      unmap: (addr: number, len: number, dir: string) => {
        expect(live.get(addr)).toBe(`${len}:${dir}`);
        live.delete(addr);
      },
    };
    const vq = PackedVirtqueue.create<number>({
      index: 0,
      num: 4,
      memory,
      dma,
      indirect: true,
      notify: () => true,
    })!;
    const dev = new VringhPacked(memory);
    dev.init({
      num: 4,
      descAddr: vq.descAddr,
      availAddr: vq.availAddr,
      usedAddr: vq.usedAddr,
      eventIdx: false,
    });
    const a = alloc.alloc(64)!;
    const b = alloc.alloc(64)!;
    const c = alloc.alloc(64)!;
    expect(vq.addOutbuf(a, 10, 1)).toBe(0);
    expect(vq.addInbuf(b, 20, 2)).toBe(0);
    expect(vq.add([{ addr: a + 32, len: 4 }], [{ addr: c, len: 8 }], 3)).toBe(0);
    expect(live.size).toBe(4);
    failNext = true;
    expect(vq.addInbuf(c + 32, 8, 4)).toBe(-12);
    expect(vq.add([{ addr: c + 40, len: 4 }], [{ addr: c + 48, len: 8 }], 5)).toBe(-12);
    failNext = false;
    expect(vq.numFree).toBe(1);
    const r = new VringhIov();
    const w = new VringhIov();
    for (let k = 0; k < 3; k++) {
      expect(dev.getDesc(r, w)).toBe(1);
      dev.complete(dev.head, w.total);
    }
    const got: number[] = [];
    for (let u = vq.getBuf(); u !== null; u = vq.getBuf()) got.push(u.token);
    expect(got).toEqual([1, 2, 3]);
    expect(live.size).toBe(0);
    expect(vq.numFree).toBe(4);
  });
});

describe('packed ring: event suppression', () => {
  it('kicks unless the device disabled them; with EVENT_IDX at the offset and wrap asked for', () => {
    const { vq, dev, buf, event, kicks } = setup({ num: 4 });
    const b = buf(8, 0);
    vq.addOutbuf(b, 8, 1);
    expect(vq.kick()).toBe(true);
    expect(kicks()).toBe(1);
    dev.notifyDisable();
    expect(event(vq.usedAddr).flags()).toBe(VRING_PACKED_EVENT_FLAG_DISABLE);
    vq.addOutbuf(b, 8, 2);
    vq.kick();
    expect(kicks()).toBe(1);
    // notifyEnable sees the chains waiting: the device must look again.
    expect(dev.notifyEnable()).toBe(false);

    const e = setup({ num: 4, eventIdx: true });
    const eb = e.buf(8, 0);
    const r = new VringhIov();
    // The device asks for a kick at descriptor 0 of lap 1.
    expect(e.dev.notifyEnable()).toBe(true);
    expect(e.event(e.vq.usedAddr).flags()).toBe(VRING_PACKED_EVENT_FLAG_DESC);
    expect(e.event(e.vq.usedAddr).offWrap()).toBe(0x8000);
    e.vq.addOutbuf(eb, 8, 1);
    e.vq.addOutbuf(eb, 8, 2);
    e.vq.kick();
    expect(e.kicks()).toBe(1);
    // Descriptor 0 was passed: no more kicks until the device asks at a new offset.
    e.vq.addOutbuf(eb, 8, 3);
    e.vq.kick();
    expect(e.kicks()).toBe(1);
    for (let k = 0; k < 3; k++) {
      expect(e.dev.getDesc(r, null)).toBe(1);
      e.dev.complete(e.dev.head, 0);
    }
    for (let k = 0; k < 3; k++) expect(e.vq.getBuf()).not.toBeNull();
    // Offset 3 of lap 1; the driver's next descriptor is 3, then it wraps to lap 0.
    expect(e.dev.notifyEnable()).toBe(true);
    expect(e.event(e.vq.usedAddr).offWrap()).toBe(0x8003);
    e.vq.addOutbuf(eb, 8, 4);
    e.vq.kick();
    expect(e.kicks()).toBe(2);
    // An offset in the other lap: asks for descriptor 1 of lap 0 (the driver is at 0 of lap 0).
    e.event(e.vq.usedAddr).set(1, VRING_PACKED_EVENT_FLAG_DESC);
    e.vq.addOutbuf(eb, 8, 5);
    e.vq.kick();
    expect(e.kicks()).toBe(2);
    e.vq.addOutbuf(eb, 8, 6);
    e.vq.kick();
    expect(e.kicks()).toBe(3);
  });

  it('interrupts unless the driver disabled them; with EVENT_IDX when its offset is passed', () => {
    const { vq, dev, buf } = setup({ num: 4 });
    const b = buf(8, 0);
    const r = new VringhIov();
    vq.addOutbuf(b, 8, 1);
    vq.addOutbuf(b, 8, 2);
    dev.getDesc(r, null);
    dev.completeDeferred(dev.head, 0);
    expect(dev.needNotify()).toBe(1);
    // Nothing completed since: no interrupt.
    expect(dev.needNotify()).toBe(0);
    vq.disableCb();
    dev.getDesc(r, null);
    dev.completeDeferred(dev.head, 0);
    expect(dev.needNotify()).toBe(0);
    // enableCb reports the used buffers already waiting.
    expect(vq.enableCb()).toBe(false);

    const e = setup({ num: 5, eventIdx: true });
    const eb = e.buf(8, 0);
    for (let k = 0; k < 4; k++) e.vq.addOutbuf(eb, 8, k + 1);
    // NAPI's way: interrupts off while polling, then back on, delayed. Wants one only after
    // about three quarters of the four in flight: three.
    e.vq.disableCb();
    expect(e.event(e.vq.availAddr).flags()).toBe(VRING_PACKED_EVENT_FLAG_DISABLE);
    expect(e.vq.enableCbDelayed()).toBe(true);
    expect(e.event(e.vq.availAddr).flags()).toBe(VRING_PACKED_EVENT_FLAG_DESC);
    expect(e.event(e.vq.availAddr).offWrap()).toBe(0x8003);
    const notes: number[] = [];
    for (let k = 0; k < 4; k++) {
      e.dev.getDesc(r, null);
      e.dev.complete(e.dev.head, 0);
      notes.push(e.dev.needNotify());
    }
    expect(notes).toEqual([0, 0, 0, 1]);
    // Taking the buffers moves the offset along; across the end of the ring it flips the wrap.
    for (let k = 0; k < 4; k++) expect(e.vq.getBuf()).not.toBeNull();
    expect(e.event(e.vq.availAddr).offWrap()).toBe(0x8004);
    e.vq.addOutbuf(eb, 8, 9);
    e.vq.addOutbuf(eb, 8, 10);
    e.dev.getDesc(r, null);
    e.dev.complete(e.dev.head, 0);
    expect(e.dev.needNotify()).toBe(1);
    expect(e.vq.getBuf()!.token).toBe(9);
    expect(e.event(e.vq.availAddr).offWrap()).toBe(0x0000);
    // poll() with the position from enableCbPrepare sees the next completion in the new lap.
    const last = e.vq.enableCbPrepare();
    expect(last).toBe(0);
    expect(e.vq.poll(last)).toBe(false);
    e.dev.getDesc(r, null);
    e.dev.complete(e.dev.head, 0);
    expect(e.vq.poll(last)).toBe(true);
  });
});

describe('packed ring: a hostile device', () => {
  it('takes a length on a buffer the device only reads as 0, and keeps the queue', () => {
    const { vq, dev, buf, desc } = setup();
    const r = buf(8, 0);
    vq.addOutbuf(r, 8, 1);
    const ri = new VringhIov();
    dev.getDesc(ri, null);
    dev.complete(dev.head, 0);
    desc(0).setLen(72); // DPDK's vhost writes the bytes it read
    expect(vq.getBuf()).toEqual({ token: 1, len: 0 });
    expect(vq.isBroken).toBe(false);
  });

  it('breaks the driver queue on a used id out of range, not in flight, or too long', () => {
    for (const bad of ['range', 'idle', 'len'] as const) {
      const { vq, dev, buf, desc } = setup();
      const w = buf(8, 0);
      vq.addInbuf(w, 8, 1);
      const wi = new VringhIov();
      dev.getDesc(null, wi);
      dev.complete(dev.head, 8);
      if (bad === 'range') desc(0).setId(8);
      if (bad === 'idle') desc(0).setId(3);
      if (bad === 'len') desc(0).setLen(9);
      expect(vq.getBuf()).toBeNull();
      expect(vq.isBroken).toBe(true);
      expect(vq.addInbuf(w, 8, 2)).toBe(-5);
    }
  });
});

describe('packed ring: a hostile driver', () => {
  const cases: [string, (s: ReturnType<typeof setup>) => void, number][] = [
    [
      // The head is of lap 1, so after the ring's end it is no longer available: a loop is
      // caught there (the -ELOOP bound behind it cannot be reached in the ring itself).
      'a chain round the whole ring back to its head',
      (s) => {
        for (let i = 0; i < 4; i++)
          s.desc(i).write(BASE, 1, 0, packedAvailFlags(1) | VRING_DESC_F_NEXT);
      },
      -EINVAL,
    ],
    [
      'a chain into a descriptor not made available',
      (s) => {
        s.desc(0).write(BASE, 1, 0, packedAvailFlags(1) | VRING_DESC_F_NEXT);
        s.desc(1).write(BASE, 1, 0, packedUsedFlags(0));
      },
      -EINVAL,
    ],
    [
      'readable after writable',
      (s) => {
        s.desc(1).write(BASE, 1, 0, packedAvailFlags(1));
        s.desc(0).write(BASE, 1, 0, packedAvailFlags(1) | VRING_DESC_F_NEXT | VRING_DESC_F_WRITE);
      },
      -EINVAL,
    ],
    [
      'an address outside memory',
      (s) => s.desc(0).write(0x4000_0000, 16, 0, packedAvailFlags(1)),
      -EINVAL,
    ],
    ['an address past 2^53', (s) => s.desc(0).write(2 ** 60, 16, 0, packedAvailFlags(1)), -EINVAL],
    [
      'an indirect table of a strange length',
      (s) => s.desc(0).write(BASE, 17, 0, packedAvailFlags(1) | VRING_DESC_F_INDIRECT),
      -EINVAL,
    ],
    [
      'indirect with next',
      (s) => {
        s.desc(1).write(BASE, 1, 0, packedAvailFlags(1));
        s.desc(0).write(
          BASE,
          16,
          0,
          packedAvailFlags(1) | VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT,
        );
      },
      -EINVAL,
    ],
    [
      'nested indirect',
      (s) => {
        const t = s.buf(16, 0);
        const v = new DataView(s.memory.regions[0]!.buffer as SharedArrayBuffer);
        v.setBigUint64(t - BASE, BigInt(t), true);
        v.setUint32(t - BASE + 8, 16, true);
        v.setUint16(t - BASE + 14, VRING_DESC_F_INDIRECT, true);
        s.desc(0).write(t, 16, 0, packedAvailFlags(1) | VRING_DESC_F_INDIRECT);
      },
      -EINVAL,
    ],
    [
      'an indirect table longer than the ring',
      (s) => {
        const t = s.buf(16 * 5, 0);
        s.desc(0).write(t, 16 * 5, 0, packedAvailFlags(1) | VRING_DESC_F_INDIRECT);
      },
      -ELOOP,
    ],
    [
      'lengths over 4 GiB in a chain',
      (s) => {
        s.desc(0).write(BASE, 0xffff_ffff, 0, packedAvailFlags(1) | VRING_DESC_F_NEXT);
        s.desc(1).write(BASE, 2, 0, packedAvailFlags(1));
      },
      -EINVAL,
    ],
  ];
  for (const [name, write, err] of cases) {
    it(`breaks the device ring on ${name}, and stays broken`, () => {
      const s = setup({ num: 4 });
      write(s);
      const r = new VringhIov();
      const w = new VringhIov();
      expect(s.dev.getDesc(r, w)).toBe(err);
      expect(s.dev.broken).toBe(true);
      expect(s.dev.getDesc(r, w)).toBe(err);
      expect(s.dev.hasAvail()).toBe(false);
      // init is the reset that mends it.
      expect(
        s.dev.init({
          num: 4,
          descAddr: s.vq.descAddr,
          availAddr: s.vq.availAddr,
          usedAddr: s.vq.usedAddr,
          eventIdx: false,
        }),
      ).toBe(0);
      expect(s.dev.broken).toBe(false);
    });
  }

  it('refuses a buffer id the device still holds', () => {
    const s = setup({ num: 4 });
    const b = s.buf(8, 0);
    s.vq.addOutbuf(b, 8, 1);
    const r = new VringhIov();
    expect(s.dev.getDesc(r, null)).toBe(1);
    // A second buffer with the id of the first, not yet used.
    s.desc(1).write(b, 8, s.dev.head, packedAvailFlags(1));
    expect(s.dev.getDesc(r, null)).toBe(-EINVAL);
    expect(s.dev.broken).toBe(true);
  });

  it('completes only a buffer id it holds, and writes nothing otherwise', () => {
    const s = setup({ num: 4 });
    s.vq.addOutbuf(s.buf(8, 0), 8, 1);
    expect(s.dev.getDesc(new VringhIov(), null)).toBe(1);
    for (const bad of [s.dev.head + 1, 0x1_0000, -1, 0.5]) {
      expect(s.dev.complete(bad, 0)).toBe(-EINVAL);
    }
    expect(s.desc(0).flags()).toBe(packedAvailFlags(1));
    expect(s.dev.complete(s.dev.head, 0)).toBe(0);
    // Used once: a second completion of the same id is refused.
    expect(s.dev.complete(s.dev.head, 0)).toBe(-EINVAL);
    expect(s.desc(1).flags()).toBe(0);
  });

  it('refuses a chain with a direction the caller has no iov for (EPROTO)', () => {
    const s = setup({ num: 4 });
    s.vq.addInbuf(s.buf(8, 0), 8, 1);
    expect(s.dev.getDesc(new VringhIov(), null)).toBe(-EPROTO);
  });

  it('breaks on a restored state past the ring', () => {
    const s = setup({ num: 4 });
    s.dev.restoreState(0x8000 | 4);
    expect(s.dev.broken).toBe(true);
    const t = setup({ num: 4 });
    t.dev.restoreState(0x8004_8001);
    expect(t.dev.broken).toBe(true);
  });
});

describe('packed ring: state, abandon, forwarding', () => {
  it('gives back abandoned chains and resumes from a saved state with its wrap counters', () => {
    const s = setup({ num: 3 });
    const b = s.buf(8, 0);
    const r = new VringhIov();
    for (let lap = 0; lap < 2; lap++) {
      for (let k = 0; k < 3; k++) s.vq.addOutbuf(b, 8, k + 1);
      expect(s.dev.getDesc(r, null)).toBe(1);
      expect(s.dev.getDesc(r, null)).toBe(1);
      s.dev.abandon(2);
      for (let k = 0; k < 3; k++) {
        expect(s.dev.getDesc(r, null)).toBe(1);
        s.dev.complete(s.dev.head, 0);
      }
      for (let k = 0; k < 3; k++) expect(s.vq.getBuf()!.token).toBe(k + 1);
    }
    // Two laps of three: back at 0, in lap 1 again, for reading and for writing.
    expect(s.dev.getLastAvailIdx()).toBe(0x8000_8000);
    s.vq.addOutbuf(b, 8, 7);
    expect(s.dev.getLastAvailIdx()).toBe(0x8000_8000);
    const state = s.dev.getState();
    expect(state).toEqual({
      lastAvailIdx: 0,
      lastAvailCounter: 1,
      lastUsedIdx: 0,
      lastUsedCounter: 1,
    });
    // A new device end picks the ring up where the state says.
    const dev2 = new VringhPacked(s.memory);
    dev2.init({
      num: 3,
      descAddr: s.vq.descAddr,
      availAddr: s.vq.availAddr,
      usedAddr: s.vq.usedAddr,
      eventIdx: false,
    });
    s.vq.addOutbuf(b, 8, 8);
    s.vq.addOutbuf(b, 8, 9);
    // DPDK's encoding: the avail half only, the used half the same.
    dev2.restoreState(0x8000 | 1);
    expect(dev2.getLastAvailIdx()).toBe(0x8001_8001);
    expect(dev2.getDesc(r, null)).toBe(1);
    dev2.complete(dev2.head, 0);
    // The used descriptor went to slot 1 (restored used position), not slot 0.
    expect(s.desc(1).flags()).toBe(packedUsedFlags(1));
    expect(dev2.getLastAvailIdx()).toBe(0x8002_8002);
    // Both halves apart (vhost's encoding): reading at 2 of lap 1, writing at 1 of lap 0.
    dev2.restoreState(0x0001_8002);
    expect(dev2.getState()).toEqual({
      lastAvailIdx: 2,
      lastAvailCounter: 1,
      lastUsedIdx: 1,
      lastUsedCounter: 0,
    });
    expect(dev2.broken).toBe(false);
  });

  it('forwards frames between two packed rings with RingForward', () => {
    const s = setup({ num: 5, eventIdx: true });
    const rxVq = PackedVirtqueue.create<number>({
      index: 1,
      num: 5,
      memory: s.memory,
      dma: offsetDmaOps(s.alloc),
      eventIdx: true,
      notify: () => true,
    })!;
    const rxDev = new VringhPacked(s.memory);
    rxDev.init({
      num: 5,
      descAddr: rxVq.descAddr,
      availAddr: rxVq.availAddr,
      usedAddr: rxVq.usedAddr,
      eventIdx: true,
    });
    const fwd = new RingForward();
    const rxBufs = Array.from({ length: 5 }, () => s.buf(64, 0));
    const frame = s.buf(40, 0x77);
    let received = 0;
    for (let round = 0; round < 50; round++) {
      for (const [k, addr] of rxBufs.entries()) rxVq.addInbuf(addr, 64, k);
      for (let k = 0; k < 3; k++) s.vq.addOutbuf(frame, 40 - k, k);
      expect(fwd.run(s.dev, rxDev, 64)).toBe('idle');
      expect(fwd.rxFrames).toBe(3);
      for (let u = s.vq.getBuf(); u !== null; u = s.vq.getBuf()) expect(u.len).toBe(0);
      const lens: number[] = [];
      for (let u = rxVq.getBuf(); u !== null; u = rxVq.getBuf()) lens.push(u.len);
      expect(lens).toEqual([40, 39, 38]);
      received += lens.length;
      // Give the two unused receive buffers back before the next round.
      rxVq.reset();
      rxDev.init({
        num: 5,
        descAddr: rxVq.descAddr,
        availAddr: rxVq.availAddr,
        usedAddr: rxVq.usedAddr,
        eventIdx: true,
      });
    }
    expect(received).toBe(150);
    expect(fwd.run(s.dev, rxDev, 64)).toBe('idle');
  });

  it('takes an in-order batch from one used descriptor (VIRTIO_F_IN_ORDER)', () => {
    const s = setup({ num: 4, inOrder: true });
    const b = s.buf(8, 0);
    for (let k = 0; k < 3; k++) s.vq.addInbuf(b, 8, k + 10);
    const w = new VringhIov();
    for (let k = 0; k < 3; k++) expect(s.dev.getDesc(null, w)).toBe(1);
    // An in-order device writes one used descriptor, with the id of the batch's last buffer.
    s.desc(0).write(0, 8, 2, packedUsedFlags(1));
    const got: [number, number][] = [];
    for (let u = s.vq.getBuf(); u !== null; u = s.vq.getBuf()) got.push([u.token, u.len]);
    expect(got).toEqual([
      [10, 0],
      [11, 0],
      [12, 8],
    ]);
    expect(s.vq.isBroken).toBe(false);
    expect(s.vq.numFree).toBe(4);
  });
});

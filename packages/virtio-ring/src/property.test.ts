import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DmaAllocator, offsetDmaOps } from './dma';
import { GuestMemory } from './memory';
import { createVirtqueue } from './packed-virtqueue';
import { VringhIov } from './vringh';
import { createVringh } from './vringh-packed';

const BASE = 0x10_0000;

/** One buffer as the driver adds it: readable segment lengths, then writable ones. */
interface BufferShape {
  out: number[];
  inp: number[];
}

type Op =
  | { kind: 'add'; shape: BufferShape }
  | { kind: 'take' }
  | { kind: 'complete'; pick: number; written: number }
  | { kind: 'get' };

const segLens = fc.array(fc.integer({ min: 1, max: 96 }), { maxLength: 3 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .record({ out: segLens, inp: segLens })
      .filter((s) => s.out.length + s.inp.length > 0)
      .map((shape) => ({ kind: 'add' as const, shape })),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'take' as const }) },
  {
    weight: 2,
    arbitrary: fc
      .record({ pick: fc.nat(), written: fc.double({ min: 0, max: 1, noNaN: true }) })
      .map((r) => ({ kind: 'complete' as const, ...r })),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'get' as const }) },
);

interface Taken {
  head: number;
  readable: Uint8Array;
  writable: number;
  w: VringhIov;
}

/**
 * Runs `ops` against a driver Virtqueue and a device Vringh on one memory, then drains both.
 * Returns what the driver got back, by token, so the property can compare it with what was added.
 */
function run(ops: Op[], num: number, eventIdx: boolean, indirect: boolean, packed = false) {
  const memory = new GuestMemory();
  memory.addRegion(BASE, new ArrayBuffer(1 << 20));
  const alloc = new DmaAllocator(memory, BASE);
  const vq = createVirtqueue<number>({
    packed,
    index: 0,
    num,
    memory,
    dma: offsetDmaOps(alloc),
    eventIdx,
    indirect,
    notify: () => true,
  });
  if (!vq) throw new Error('queue not created');
  const dev = createVringh(memory, packed);
  const rc = dev.init({
    num: vq.num,
    descAddr: vq.descAddr,
    availAddr: vq.availAddr,
    usedAddr: vq.usedAddr,
    eventIdx,
  });
  if (rc !== 0) throw new Error(`vringh init ${rc}`);

  const added = new Map<number, { shape: BufferShape; out: Uint8Array; inAddrs: number[] }>();
  const returned: { token: number; len: number }[] = [];
  const taken: Taken[] = [];
  let nextToken = 1;
  let refused = 0;

  const add = (shape: BufferShape) => {
    const token = nextToken++;
    const outBytes = shape.out.reduce((a, b) => a + b, 0);
    const out = new Uint8Array(outBytes);
    for (let k = 0; k < outBytes; k++) out[k] = (token * 7 + k) & 0xff;
    let pos = 0;
    const outSgs = shape.out.map((len) => {
      const addr = alloc.alloc(len, 1)!;
      memory.view(addr, len).set(out.subarray(pos, pos + len));
      pos += len;
      return { addr, len };
    });
    const inSgs = shape.inp.map((len) => ({ addr: alloc.alloc(len, 1)!, len }));
    const release = () => {
      for (const sg of [...outSgs, ...inSgs]) alloc.release(sg.addr);
    };
    if (shape.out.length + shape.inp.length > vq.num) {
      // A chain longer than the ring can never fit: refused as a caller error, nothing kept.
      const free = vq.numFree;
      expect(() => vq.add(outSgs, inSgs, token)).toThrow(/exceed the ring size/);
      expect(vq.numFree).toBe(free);
      release();
      return;
    }
    const err = vq.add(outSgs, inSgs, token);
    if (err < 0) {
      // A full ring refuses the buffer and keeps nothing of it.
      refused++;
      release();
      return;
    }
    added.set(token, { shape, out, inAddrs: inSgs.map((s) => s.addr) });
  };
  const take = () => {
    const r = new VringhIov(1);
    const w = new VringhIov(1);
    const got = dev.getDesc(r, w);
    if (got < 0) throw new Error(`getDesc failed with ${got}`);
    if (got === 0) return false;
    const readable = new Uint8Array(r.total);
    dev.pull(r, readable);
    taken.push({ head: dev.head, readable, writable: w.total, w });
    return true;
  };
  const complete = (pick: number, fraction: number) => {
    if (taken.length === 0) return;
    const t = taken.splice(pick % taken.length, 1)[0]!;
    const len = Math.floor(t.writable * fraction);
    // The bytes written carry their own count, so the driver's length can be checked against them.
    const fill = new Uint8Array(len).fill(len & 0xff);
    expect(dev.push(t.w, fill)).toBe(len);
    dev.complete(t.head, len);
    completedReads.push(t.readable);
  };
  const completedReads: Uint8Array[] = [];
  const get = () => {
    const b = vq.getBuf();
    if (b === null) return false;
    returned.push({ token: b.token, len: b.len }); // getBuf reuses its result object
    return true;
  };

  for (const op of ops) {
    if (op.kind === 'add') add(op.shape);
    else if (op.kind === 'take') take();
    else if (op.kind === 'complete') complete(op.pick, op.written);
    else get();
  }
  // Drain: the device takes and completes everything, the driver collects everything.
  while (take());
  while (taken.length > 0) complete(0, 1);
  while (get());

  return { vq, dev, memory, added, returned, refused, completedReads };
}

describe('driver and device agree under any interleaving (fast-check)', () => {
  it('returns every added buffer exactly once with the length the device wrote', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 120 }),
        fc.constantFrom(1, 2, 4, 8, 16),
        fc.boolean(),
        fc.boolean(),
        (ops, num, eventIdx, indirect) => {
          const { vq, dev, memory, added, returned, completedReads } = run(
            ops,
            num,
            eventIdx,
            indirect,
          );
          expect(vq.isBroken).toBe(false);
          expect(dev.broken).toBe(false);
          // Exactly once: every token added comes back, none twice, none invented.
          const tokens = returned.map((b) => b.token).sort((a, b) => a - b);
          expect(tokens).toEqual([...added.keys()].sort((a, b) => a - b));
          expect(vq.numFree).toBe(vq.num);
          for (const b of returned) {
            const a = added.get(b.token)!;
            const inTotal = a.shape.inp.reduce((x, y) => x + y, 0);
            expect(b.len).toBeLessThanOrEqual(inTotal);
            // The bytes the device wrote land in this buffer's writable segments, in order, and
            // say how many they were: the length came back with the right token.
            let left = b.len;
            for (let k = 0; k < a.inAddrs.length && left > 0; k++) {
              const n = Math.min(left, a.shape.inp[k]!);
              expect(memory.view(a.inAddrs[k]!, n).every((x) => x === (b.len & 0xff))).toBe(true);
              left -= n;
            }
          }
          // Every readable payload the device pulled is one the driver wrote, each used once.
          const outs = [...added.values()].map((a) => Buffer.from(a.out).toString('hex'));
          const reads = completedReads.map((r) => Buffer.from(r).toString('hex'));
          expect(reads.sort()).toEqual(outs.sort());
        },
      ),
      { seed: 20191118, numRuns: 300 },
    );
  });
});

describe('packed rings: driver and device agree under any interleaving (fast-check)', () => {
  it('returns every added buffer exactly once, with its bytes and length, on rings of any size', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 120 }),
        // A packed ring need not be a power of two.
        fc.constantFrom(1, 3, 4, 5, 13),
        fc.boolean(),
        fc.boolean(),
        (ops, num, eventIdx, indirect) => {
          const r = run(ops, num, eventIdx, indirect, true);
          expect(r.vq.isBroken).toBe(false);
          expect(r.dev.broken).toBe(false);
          const tokens = r.returned.map((b) => b.token).sort((a, b) => a - b);
          expect(tokens).toEqual([...r.added.keys()].sort((a, b) => a - b));
          expect(r.vq.numFree).toBe(r.vq.num);
          for (const b of r.returned) {
            const a = r.added.get(b.token)!;
            expect(b.len).toBeLessThanOrEqual(a.shape.inp.reduce((x, y) => x + y, 0));
            let left = b.len;
            for (let k = 0; k < a.inAddrs.length && left > 0; k++) {
              const n = Math.min(left, a.shape.inp[k]!);
              expect(r.memory.view(a.inAddrs[k]!, n).every((x) => x === (b.len & 0xff))).toBe(true);
              left -= n;
            }
          }
          const outs = [...r.added.values()].map((a) => Buffer.from(a.out).toString('hex'));
          const reads = r.completedReads.map((x) => Buffer.from(x).toString('hex'));
          expect(reads.sort()).toEqual(outs.sort());
        },
      ),
      { seed: 20260402, numRuns: 300 },
    );
  });
});

/**
 * A fuzzer of the device side: writes random and adversarial split rings (loops, out-of-range
 * heads and nexts, nested and malformed indirect tables, huge lengths, wrapping and unmapped
 * addresses, avail index jumps, flags flipping between calls) and checks that Vringh never throws,
 * never runs away, writes nothing outside the writable segments it handed out (and its own used
 * ring), agrees with a simple reference walker on which chains are valid, and stays broken once
 * it reported an error.
 */
import {
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  vringUsedSize,
} from './layout';
import { GuestMemory } from './memory';
import { RawRing } from './raw-ring';
import { Vringh, VringhIov } from './vringh';

export const BASE = 0x10_0000;
export const REGION = 0x8000;
export const SECOND = BASE + 0x4_0000; // a second region, with an unmapped gap before it
export const DATA = BASE + 0x2000; // buffers and indirect tables live in [DATA, BASE + REGION)

/** A failure the fuzzer found, with what is needed to replay it. */
export interface FuzzFailure {
  seed: number;
  caseIndex: number;
  message: string;
}

/** Totals of a fuzz run. */
export interface FuzzStats {
  cases: number;
  chains: number;
  errors: Record<string, number>;
  failure: FuzzFailure | null;
}

/** xorshift32: small, fast and reproducible from a seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
}

/** A descriptor address: mostly a good one, else one that wraps, runs off or misses a region. */
export function randomAddr(rng: Rng, len: number): number {
  switch (rng.below(12)) {
    case 0:
      return 2 ** 64 - 1 - rng.below(64); // wraps (and is above 2^53)
    case 1:
      return 2 ** 53 - 1 - rng.below(16); // the largest exact numbers: wraps past 2^53
    case 2:
      return BASE + REGION - rng.below(32); // runs off the end of the region
    case 3:
      return BASE + REGION + rng.below(0x1000); // the unmapped gap
    case 4:
      return rng.below(0x1000); // below every region
    case 5:
      return SECOND + rng.below(0x1000) - (len > 0 ? rng.below(4) : 0); // the second region (or just before)
    default:
      return DATA + rng.below(BASE + REGION - DATA - Math.min(len, 0x800));
  }
}

/** A descriptor length: mostly small, else 0, huge or past 2^31. */
export function randomLen(rng: Rng): number {
  switch (rng.below(10)) {
    case 0:
      return 0;
    case 1:
      return 0xffff_ffff;
    case 2:
      return 0x8000_0000 + rng.below(1024);
    case 3:
      return rng.below(0x10000);
    default:
      return 1 + rng.below(256);
  }
}

function randomFlags(rng: Rng): number {
  let f = 0;
  if (rng.chance(0.5)) f |= VRING_DESC_F_NEXT;
  if (rng.chance(0.4)) f |= VRING_DESC_F_WRITE;
  if (rng.chance(0.12)) f |= VRING_DESC_F_INDIRECT;
  if (rng.chance(0.05)) f |= 1 << (3 + rng.below(13)); // undefined bits are ignored
  return f;
}

/**
 * The reference walk: whether the chain at `head` is valid, read byte by byte with DataView. It
 * follows the same rules as Vringh (spec 2.7.5 and the kernel's checks) written plainly.
 */
function referenceValid(
  memory: GuestMemory,
  ring: RawRing,
  head: number,
  wantR: boolean,
  wantW: boolean,
): boolean {
  const readDesc = (table: number, i: number) => {
    const v = memory.view(table + 16 * i, 16);
    const dv = new DataView(v.buffer, v.byteOffset, 16);
    return {
      addr: dv.getUint32(4, true) * 2 ** 32 + dv.getUint32(0, true),
      hi: dv.getUint32(4, true),
      len: dv.getUint32(8, true),
      flags: dv.getUint16(12, true),
      next: dv.getUint16(14, true),
    };
  };
  const mapped = (addr: number, len: number) => {
    if (addr + len > Number.MAX_SAFE_INTEGER) return false;
    for (const r of memory.regions)
      if (addr >= r.base && addr + len <= r.base + r.size) return true;
    return false;
  };
  if (head >= ring.num) return false;
  let table = ring.descAddr;
  let max = ring.num;
  let i = head;
  let resume: number | null = null; // index to resume at in the ring table, or -1 = end
  let inIndirect = false;
  let count = 0;
  let rTotal = 0;
  let wTotal = 0;
  let seenW = false;
  for (;;) {
    const d = readDesc(table, i);
    if (d.hi >= 2 ** 21) return false;
    if (d.flags & VRING_DESC_F_INDIRECT) {
      if (inIndirect) return false;
      if (d.len === 0 || d.len % 16 !== 0 || !mapped(d.addr, d.len)) return false;
      inIndirect = true;
      resume = d.flags & VRING_DESC_F_NEXT ? d.next : -1;
      table = d.addr;
      max = d.len / 16;
      i = 0;
      continue;
    }
    count++;
    if (count > ring.num) return false;
    if (d.flags & VRING_DESC_F_WRITE) {
      if (!wantW) return false;
      seenW = true;
      wTotal += d.len;
    } else {
      if (seenW) return false;
      if (!wantR) return false;
      rTotal += d.len;
    }
    if (rTotal >= 2 ** 32 || wTotal >= 2 ** 32) return false;
    if (!mapped(d.addr, d.len)) return false;
    if (d.flags & VRING_DESC_F_NEXT) {
      i = d.next;
    } else if (inIndirect && resume !== null && resume >= 0) {
      i = resume;
      resume = null;
      inIndirect = false;
      table = ring.descAddr;
      max = ring.num;
    } else {
      return true;
    }
    if (i >= max) return false;
  }
}

/** Runs `cases` fuzz cases from `seed`; stops at the first failure. */
export function fuzzRings(cases: number, seed = 1): FuzzStats {
  const stats: FuzzStats = { cases: 0, chains: 0, errors: {}, failure: null };
  const r = new VringhIov(2);
  const w = new VringhIov(2);
  for (let c = 0; c < cases; c++) {
    const rng = new Rng((seed * 0x9e3779b1 + c * 0x85ebca6b) >>> 0);
    try {
      fuzzOne(rng, r, w, stats);
    } catch (e) {
      stats.failure = { seed, caseIndex: c, message: e instanceof Error ? e.message : String(e) };
      return stats;
    }
    stats.cases++;
  }
  return stats;
}

function fuzzOne(rng: Rng, r: VringhIov, w: VringhIov, stats: FuzzStats): void {
  const memory = new GuestMemory();
  memory.addRegion(BASE, new ArrayBuffer(REGION));
  memory.addRegion(SECOND, new ArrayBuffer(0x1000));
  const num = 1 << rng.below(5);
  const ring = new RawRing(memory, BASE, num);
  const eventIdx = rng.chance(0.5);
  // In order: runs of chains completed with length 0 get one used element (completeDeferred).
  const inOrder = rng.chance(0.5);
  // Background pattern, so writes anywhere are visible.
  for (const reg of memory.regions)
    for (let k = 0; k < reg.size; k++) reg.u8[k] = (k * 31 + 7) & 0xff;
  // The ring areas start zeroed, as a driver leaves them.
  memory.view(ring.descAddr, ring.usedAddr + vringUsedSize(num) - ring.descAddr).fill(0);
  const writeDesc = (i: number, table: number) => {
    const len = randomLen(rng);
    let flags = randomFlags(rng);
    let addr = randomAddr(rng, len);
    let dlen = len;
    if (flags & VRING_DESC_F_INDIRECT && rng.chance(0.7)) {
      // A plausible indirect table: aligned, in the data area, with a chosen length.
      const entries = 1 + rng.below(num + 2);
      addr = DATA + 16 * rng.below((BASE + REGION - DATA) / 16 - entries - 1);
      if (rng.chance(0.2)) addr += 4; // misaligned
      dlen = rng.chance(0.85) ? 16 * entries : 16 * entries + 1 + rng.below(15);
      for (let k = 0; k < entries; k++) {
        const l = randomLen(rng);
        const f = randomFlags(rng) & (rng.chance(0.8) ? ~VRING_DESC_F_INDIRECT : 0xffff);
        ring.setDesc(
          k,
          randomAddr(rng, l),
          l,
          f,
          rng.chance(0.8) ? k + 1 : rng.below(entries + 2),
          addr,
        );
      }
    } else if (rng.chance(0.1)) {
      flags &= ~VRING_DESC_F_INDIRECT;
    }
    ring.setDesc(
      i,
      addr,
      dlen,
      flags,
      rng.chance(0.7) ? (i + 1) % (num + 1) : rng.below(num + 3),
      table,
    );
  };
  for (let i = 0; i < num; i++) writeDesc(i, ring.descAddr);

  const dev = new Vringh(memory);
  if (dev.init({ ...ring, num, eventIdx, inOrder }) !== 0)
    throw new Error('init refused a good ring');
  const availBase = ring.availIdx;
  // Offer some heads, sometimes out of range, sometimes with an index jump.
  const offers = 1 + rng.below(num * 2);
  for (let k = 0; k < offers && k < num; k++)
    ring.offer(rng.chance(0.9) ? rng.below(num) : num + rng.below(4));
  if (rng.chance(0.05)) ring.setAvailIdx(availBase + num + 1 + rng.below(100));

  // The bytes the device may write: its used area, and the writable segments it hands out.
  const before = new Uint8Array(memory.regions[0]!.u8);
  const before2 = new Uint8Array(memory.regions[1]!.u8);
  const allowed = new Uint8Array(REGION);
  allowed.fill(1, ring.usedAddr - BASE, ring.usedAddr - BASE + vringUsedSize(num));
  const allowed2 = new Uint8Array(0x1000);
  // Mutations by the "driver" between device calls are applied to the snapshot too.
  const mutate = (addr: number, value: number) => {
    memory.view(addr, 1)[0] = value;
    if (addr >= SECOND) before2[addr - SECOND] = value;
    else before[addr - BASE] = value;
  };

  let brokenWith = 0;
  const steps = 1 + rng.below(3 * num + 4);
  for (let s = 0; s < steps; s++) {
    if (rng.chance(0.15)) {
      // Flip flags (or next) of a ring descriptor under the device.
      const i = rng.below(num);
      mutate(ring.descAddr + 16 * i + 12 + rng.below(4), rng.below(256));
    }
    const wantR = rng.chance(0.9);
    const wantW = rng.chance(0.9) || !wantR;
    const lastAvail = dev.getLastAvailIdx();
    const availNow = ring.availIdx;
    const pending = (availNow - lastAvail) & 0xffff;
    const headSlotValue = memory.view(ring.availAddr + 4 + 2 * (lastAvail % num), 2);
    const head = headSlotValue[0]! | (headSlotValue[1]! << 8);
    const refOk =
      brokenWith === 0 && pending > 0 && pending <= num
        ? referenceValid(memory, ring, head, wantR, wantW)
        : null;
    const rc = dev.getDesc(wantR ? r : null, wantW ? w : null);
    if (brokenWith !== 0) {
      if (rc !== brokenWith || !dev.broken)
        throw new Error(`broken ring answered ${rc}, was ${brokenWith}`);
      continue;
    }
    if (rc < 0) {
      brokenWith = rc;
      stats.errors[rc] = (stats.errors[rc] ?? 0) + 1;
      if (!dev.broken) throw new Error(`error ${rc} without a broken ring`);
      if (refOk === true) throw new Error(`device rejected (${rc}) a chain the reference accepts`);
      continue;
    }
    if (rc === 0) {
      if (pending !== 0) throw new Error(`empty with ${pending} pending`);
      continue;
    }
    if (rc !== 1) throw new Error(`getDesc returned ${rc}`);
    if (pending > num) throw new Error('accepted an avail index jump beyond the ring size');
    if (refOk === false) throw new Error('device accepted a chain the reference rejects');
    stats.chains++;
    if (wantW) {
      for (let k = 0; k < w.used; k++) {
        const a = w.addr[k]!;
        const l = w.len[k]!;
        if (a >= SECOND) allowed2.fill(1, a - SECOND, a - SECOND + l);
        else allowed.fill(1, a - BASE, a - BASE + l);
      }
      const fill = new Uint8Array(Math.min(w.total, 0x20000)).fill(0xee);
      dev.push(w, fill);
    }
    if (wantR) dev.pull(r, new Uint8Array(Math.min(r.total, 0x20000)));
    if (rng.chance(0.1)) dev.abandon(1);
    else if (rng.chance(0.5))
      dev.completeDeferred(dev.head, wantW && rng.chance(0.5) ? w.total : 0);
    else dev.complete(dev.head, wantW ? w.total : 0);
    if (rng.chance(0.3)) dev.needNotify();
    if (rng.chance(0.1)) dev.notifyEnable();
  }
  // Whatever completeDeferred held is published.
  dev.needNotify();
  const now = memory.regions[0]!.u8;
  for (let k = 0; k < REGION; k++) {
    if (now[k] !== before[k] && !allowed[k]) {
      throw new Error(`byte at ${BASE + k} changed outside a writable segment`);
    }
  }
  const now2 = memory.regions[1]!.u8;
  for (let k = 0; k < 0x1000; k++) {
    if (now2[k] !== before2[k] && !allowed2[k]) {
      throw new Error(`byte at ${SECOND + k} changed outside a writable segment`);
    }
  }
}

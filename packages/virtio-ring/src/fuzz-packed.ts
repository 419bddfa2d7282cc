/**
 * The fuzzer of the packed device side: writes random and adversarial packed rings (descriptors
 * of either lap or none, chains running into descriptors never made available or round the ring,
 * nested and malformed indirect tables, huge lengths, wrapping and unmapped addresses, reused
 * buffer ids, flags flipping between calls, bad restored states) and checks that VringhPacked
 * never throws, never runs away, writes nothing outside the writable segments it handed out (and
 * the descriptor ring and its own event structure), agrees with a plain reference walker on
 * which chains are valid, and stays broken once it reported an error.
 */

// The memory map, the random source and the address and length pickers are the split fuzzer's.
import { BASE, DATA, type FuzzStats, REGION, Rng, randomAddr, randomLen, SECOND } from './fuzz';
import { VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from './layout';
import { GuestMemory } from './memory';
import {
  packedAvailFlags,
  VRING_PACKED_DESC_F_AVAIL,
  VRING_PACKED_DESC_F_USED,
} from './packed-layout';
import { VringhIov } from './vringh';
import { VringhPacked } from './vringh-packed';

const DRIVER_EVENT = BASE + 0x1000;
const DEVICE_EVENT = BASE + 0x1010;
const F_AVAIL = 1 << VRING_PACKED_DESC_F_AVAIL;
const F_USED = 1 << VRING_PACKED_DESC_F_USED;

function randomFlags(rng: Rng): number {
  let f = 0;
  if (rng.chance(0.4)) f |= VRING_DESC_F_NEXT;
  if (rng.chance(0.4)) f |= VRING_DESC_F_WRITE;
  if (rng.chance(0.1)) f |= VRING_DESC_F_INDIRECT;
  if (rng.chance(0.05)) f |= 1 << (3 + rng.below(4)); // undefined bits are ignored
  return f;
}

interface Desc {
  addr: number;
  hi: number;
  len: number;
  id: number;
  flags: number;
}

function readDesc(memory: GuestMemory, table: number, i: number): Desc {
  const v = memory.view(table + 16 * i, 16);
  const dv = new DataView(v.buffer, v.byteOffset, 16);
  return {
    addr: dv.getUint32(4, true) * 2 ** 32 + dv.getUint32(0, true),
    hi: dv.getUint32(4, true),
    len: dv.getUint32(8, true),
    id: dv.getUint16(12, true),
    flags: dv.getUint16(14, true),
  };
}

const isAvail = (flags: number, wrap: number) =>
  ((flags & F_AVAIL) !== 0 ? 1 : 0) === wrap && ((flags & F_USED) !== 0 ? 1 : 0) !== wrap;

/**
 * The reference walk of the chain at `pos` in lap `wrap`: 'empty', 'valid' or 'invalid', by the
 * rules of virtio 1.2 2.8 and the checks VringhPacked shares with Vringh, written plainly.
 */
function reference(
  memory: GuestMemory,
  num: number,
  pos: number,
  wrap: number,
  inFlight: Set<number>,
  wantR: boolean,
  wantW: boolean,
): 'empty' | 'valid' | 'invalid' {
  const mapped = (addr: number, len: number) => {
    if (addr + len > Number.MAX_SAFE_INTEGER) return false;
    for (const r of memory.regions)
      if (addr >= r.base && addr + len <= r.base + r.size) return true;
    return false;
  };
  let i = pos;
  let w = wrap;
  let d = readDesc(memory, BASE, i);
  if (!isAvail(d.flags, w)) return 'empty';
  let count = 0;
  let rTotal = 0;
  let wTotal = 0;
  let seenW = false;
  const seg = (s: Desc): boolean => {
    if (s.flags & VRING_DESC_F_WRITE) {
      if (!wantW) return false;
      seenW = true;
      wTotal += s.len;
    } else {
      if (seenW || !wantR) return false;
      rTotal += s.len;
    }
    if (rTotal >= 2 ** 32 || wTotal >= 2 ** 32) return false;
    return mapped(s.addr, s.len);
  };
  for (;;) {
    if (d.hi >= 2 ** 21) return 'invalid';
    if (++count > num) return 'invalid';
    if (d.flags & VRING_DESC_F_INDIRECT) {
      if (count !== 1 || d.flags & VRING_DESC_F_NEXT) return 'invalid';
      if (d.len === 0 || d.len % 16 !== 0 || d.len / 16 > num || !mapped(d.addr, d.len)) {
        return 'invalid';
      }
      for (let k = 0; k < d.len / 16; k++) {
        const s = readDesc(memory, d.addr, k);
        if (s.hi >= 2 ** 21 || s.flags & VRING_DESC_F_INDIRECT || !seg(s)) return 'invalid';
      }
      break;
    }
    if (!seg(d)) return 'invalid';
    if (!(d.flags & VRING_DESC_F_NEXT)) break;
    if (++i === num) {
      i = 0;
      w ^= 1;
    }
    d = readDesc(memory, BASE, i);
    if (!isAvail(d.flags, w)) return 'invalid';
  }
  return inFlight.has(d.id) ? 'invalid' : 'valid';
}

/** Runs `cases` packed fuzz cases from `seed`; stops at the first failure. */
export function fuzzPackedRings(cases: number, seed = 1): FuzzStats {
  const stats: FuzzStats = { cases: 0, chains: 0, errors: {}, failure: null };
  const r = new VringhIov(2);
  const w = new VringhIov(2);
  for (let c = 0; c < cases; c++) {
    const rng = new Rng((seed * 0x27d4eb2d + c * 0x85ebca6b) >>> 0);
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
  const num = 1 + rng.below(17);
  const eventIdx = rng.chance(0.5);
  for (const reg of memory.regions)
    for (let k = 0; k < reg.size; k++) reg.u8[k] = (k * 31 + 7) & 0xff;
  memory.view(BASE, 16 * num).fill(0);
  memory.view(DRIVER_EVENT, 4).fill(0);
  memory.view(DEVICE_EVENT, 4).fill(0);
  // The ring as a driver may leave it: most descriptors made available in lap 1, some in lap 0,
  // some in neither; ids mostly distinct, some reused.
  const setDesc = (table: number, i: number, addr: number, len: number, id: number, f: number) => {
    const v = memory.view(table + 16 * i, 16);
    const dv = new DataView(v.buffer, v.byteOffset, 16);
    dv.setUint32(0, addr % 2 ** 32, true);
    dv.setUint32(4, Math.floor(addr / 2 ** 32) % 2 ** 32, true);
    dv.setUint32(8, len, true);
    dv.setUint16(12, id, true);
    dv.setUint16(14, f, true);
  };
  const lapFlags = () => {
    const p = rng.below(10);
    if (p < 8) return packedAvailFlags(1);
    if (p === 8) return packedAvailFlags(0);
    return rng.chance(0.5) ? F_AVAIL | F_USED : 0;
  };
  for (let i = 0; i < num; i++) {
    const len = randomLen(rng);
    let flags = randomFlags(rng);
    let addr = randomAddr(rng, len);
    let dlen = len;
    if (flags & VRING_DESC_F_INDIRECT && rng.chance(0.7)) {
      const entries = 1 + rng.below(num + 2);
      addr = DATA + 16 * rng.below((BASE + REGION - DATA) / 16 - entries - 1);
      if (rng.chance(0.2)) addr += 4; // misaligned: read a descriptor at a time all the same
      dlen = rng.chance(0.85) ? 16 * entries : 16 * entries + 1 + rng.below(15);
      if (rng.chance(0.7)) flags &= ~VRING_DESC_F_NEXT;
      for (let k = 0; k < entries; k++) {
        const l = randomLen(rng);
        const f = randomFlags(rng) & (rng.chance(0.85) ? ~VRING_DESC_F_INDIRECT : 0xffff);
        setDesc(addr, k, randomAddr(rng, l), l, rng.below(65536), f);
      }
    }
    const id = rng.chance(0.8) ? i : rng.chance(0.5) ? rng.below(num) : rng.below(65536);
    setDesc(BASE, i, addr, dlen, id, flags | lapFlags());
  }

  const dev = new VringhPacked(memory);
  const cfg = { num, descAddr: BASE, availAddr: DRIVER_EVENT, usedAddr: DEVICE_EVENT, eventIdx };
  if (dev.init(cfg) !== 0) throw new Error('init refused a good ring');
  let brokenWith = 0;
  if (rng.chance(0.05)) {
    // A restored state: sometimes past the ring, which breaks it at once.
    const idx = rng.below(num + 2);
    dev.restoreState(idx | (rng.chance(0.5) ? 0x8000 : 0));
    if (idx >= num) {
      if (!dev.broken) throw new Error(`restored state ${idx} of ${num} accepted`);
      brokenWith = dev.error;
    }
  }

  const before = new Uint8Array(memory.regions[0]!.u8);
  const before2 = new Uint8Array(memory.regions[1]!.u8);
  const allowed = new Uint8Array(REGION);
  // The device writes used descriptors into the ring and its own event structure.
  allowed.fill(1, 0, 16 * num);
  allowed.fill(1, DEVICE_EVENT - BASE, DEVICE_EVENT - BASE + 4);
  const allowed2 = new Uint8Array(0x1000);
  const mutate = (addr: number, value: number) => {
    memory.view(addr, 1)[0] = value;
    if (addr >= SECOND) before2[addr - SECOND] = value;
    else before[addr - BASE] = value;
  };
  const inFlight = new Set<number>();
  const taken: number[] = [];

  const steps = 1 + rng.below(3 * num + 4);
  for (let s = 0; s < steps; s++) {
    if (rng.chance(0.15)) mutate(BASE + 16 * rng.below(num) + 12 + rng.below(4), rng.below(256));
    const wantR = rng.chance(0.9);
    const wantW = rng.chance(0.9) || !wantR;
    const state = dev.getLastAvailIdx();
    const ref =
      brokenWith === 0
        ? reference(memory, num, state & 0x7fff, (state >>> 15) & 1, inFlight, wantR, wantW)
        : null;
    const rc = dev.getDesc(wantR ? r : null, wantW ? w : null);
    if (brokenWith !== 0) {
      if (rc !== brokenWith || !dev.broken) {
        throw new Error(`broken ring answered ${rc}, was ${brokenWith}`);
      }
      continue;
    }
    if (rc < 0) {
      brokenWith = rc;
      stats.errors[rc] = (stats.errors[rc] ?? 0) + 1;
      if (!dev.broken) throw new Error(`error ${rc} without a broken ring`);
      if (ref !== 'invalid')
        throw new Error(`device rejected (${rc}) a chain the reference finds ${ref}`);
      continue;
    }
    if (rc === 0) {
      if (ref !== 'empty') throw new Error(`device found nothing where the reference finds ${ref}`);
      continue;
    }
    if (rc !== 1) throw new Error(`getDesc returned ${rc}`);
    if (ref !== 'valid') throw new Error(`device accepted a chain the reference finds ${ref}`);
    stats.chains++;
    inFlight.add(dev.head);
    if (wantW) {
      for (let k = 0; k < w.used; k++) {
        const a = w.addr[k]!;
        const l = w.len[k]!;
        if (a >= SECOND) allowed2.fill(1, a - SECOND, a - SECOND + l);
        else allowed.fill(1, a - BASE, a - BASE + l);
      }
      dev.push(w, new Uint8Array(Math.min(w.total, 0x20000)).fill(0xee));
    }
    if (wantR) dev.pull(r, new Uint8Array(Math.min(r.total, 0x20000)));
    if (rng.chance(0.1)) {
      dev.abandon(1);
      inFlight.delete(dev.head);
    } else if (rng.chance(0.3)) {
      // Held for a while: its id stays in flight, completed later (out of order).
      taken.push(dev.head);
    } else {
      dev.completeDeferred(dev.head, wantW ? w.total : 0);
      inFlight.delete(dev.head);
    }
    if (taken.length > 0 && rng.chance(0.3)) {
      const id = taken.splice(rng.below(taken.length), 1)[0]!;
      if (dev.complete(id, 0) !== 0) throw new Error(`complete of held ${id} refused`);
      inFlight.delete(id);
    }
    if (rng.chance(0.3)) dev.needNotify();
    if (rng.chance(0.1)) dev.notifyEnable();
  }
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

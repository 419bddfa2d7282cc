// Conformance with the Linux uapi header <linux/virtio_ring.h>: a C program compiled by the
// system's gcc prints the header's sizes, offsets, flags, vring_size() and vring_need_event(), and
// exchanges ring images with this package's driver and device sides.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DmaAllocator,
  GuestMemory,
  HOST_LITTLE_ENDIAN,
  loadAddr64,
  offsetDmaOps,
  storeAddr64,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  Virtqueue,
  VRING_AVAIL_ALIGN_SIZE,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_AVAIL_FLAGS,
  VRING_AVAIL_IDX,
  VRING_AVAIL_RING,
  VRING_AVAIL16_FLAGS,
  VRING_AVAIL16_IDX,
  VRING_AVAIL16_RING,
  VRING_DESC_ADDR,
  VRING_DESC_ALIGN_SIZE,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_DESC_FLAGS,
  VRING_DESC_LEN,
  VRING_DESC_NEXT,
  VRING_DESC_SIZE,
  VRING_DESC_WORDS16,
  VRING_DESC_WORDS32,
  VRING_DESC16_FLAGS,
  VRING_DESC16_NEXT,
  VRING_DESC32_ADDR_HI,
  VRING_DESC32_ADDR_LO,
  VRING_DESC32_LEN,
  VRING_USED_ALIGN_SIZE,
  VRING_USED_ELEM_ID,
  VRING_USED_ELEM_LEN,
  VRING_USED_ELEM_SIZE,
  VRING_USED_ELEM_WORDS32,
  VRING_USED_F_NO_NOTIFY,
  VRING_USED_FLAGS,
  VRING_USED_IDX,
  VRING_USED_RING,
  VRING_USED16_FLAGS,
  VRING_USED16_IDX,
  VRING_USED32_ELEM_ID,
  VRING_USED32_ELEM_LEN,
  VRING_USED32_RING,
  Vringh,
  VringhIov,
  vringAvailEvent16,
  vringAvailEventOffset,
  vringLayout,
  vringNeedEvent,
  vringSize,
  vringUsedEvent16,
  vringUsedEventOffset,
} from '../src/index';

const source = fileURLToPath(new URL('./conformance/vring_uapi.c', import.meta.url));

function findGcc(): string | null {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  return existsSync('/usr/include/linux/virtio_ring.h') ? 'gcc' : null;
}

const gcc = findGcc();
const skipReason =
  gcc === null
    ? 'gcc or /usr/include/linux/virtio_ring.h is missing (on Debian: apt-get install gcc linux-libc-dev)'
    : !HOST_LITTLE_ENDIAN
      ? 'the ring image exchange assumes a little-endian host'
      : '';
if (skipReason) console.warn(`virtio-ring conformance tests skipped: ${skipReason}`);

const dir = mkdtempSync(join(tmpdir(), 'vring-uapi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let binary = '';
function probe(...args: string[]): string {
  if (!binary) {
    binary = join(dir, 'vring_uapi');
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-O1', '-o', binary, source]);
  }
  return execFileSync(binary, args, { encoding: 'utf8' });
}

describe.skipIf(skipReason !== '')('<linux/virtio_ring.h> conformance', () => {
  it('agrees on struct sizes, field offsets, flags and alignments', () => {
    const values = new Map<string, number>();
    for (const line of probe('layout').split('\n')) {
      const [k, v, ...rest] = line.split(' ');
      if (k && v !== undefined && rest.length === 0) values.set(k, Number(v));
    }
    const ours: Record<string, number> = {
      sizeof_vring_desc: VRING_DESC_SIZE,
      offsetof_vring_desc_addr: VRING_DESC_ADDR,
      offsetof_vring_desc_len: VRING_DESC_LEN,
      offsetof_vring_desc_flags: VRING_DESC_FLAGS,
      offsetof_vring_desc_next: VRING_DESC_NEXT,
      sizeof_vring_avail: VRING_AVAIL_RING,
      offsetof_vring_avail_flags: VRING_AVAIL_FLAGS,
      offsetof_vring_avail_idx: VRING_AVAIL_IDX,
      offsetof_vring_avail_ring: VRING_AVAIL_RING,
      sizeof_vring_used_elem: VRING_USED_ELEM_SIZE,
      offsetof_vring_used_elem_id: VRING_USED_ELEM_ID,
      offsetof_vring_used_elem_len: VRING_USED_ELEM_LEN,
      offsetof_vring_used_flags: VRING_USED_FLAGS,
      offsetof_vring_used_idx: VRING_USED_IDX,
      offsetof_vring_used_ring: VRING_USED_RING,
      VRING_DESC_F_NEXT,
      VRING_DESC_F_WRITE,
      VRING_DESC_F_INDIRECT,
      VRING_USED_F_NO_NOTIFY,
      VRING_AVAIL_F_NO_INTERRUPT,
      VIRTIO_RING_F_INDIRECT_DESC,
      VIRTIO_RING_F_EVENT_IDX,
      VRING_AVAIL_ALIGN_SIZE,
      VRING_USED_ALIGN_SIZE,
      VRING_DESC_ALIGN_SIZE,
    };
    for (const [name, value] of Object.entries(ours)) {
      expect({ name, value: values.get(name) }).toEqual({ name, value });
    }
  });

  it('agrees on the word offsets the ring ends index their views with', () => {
    const values = new Map<string, number>();
    const addrs: [number, number, number][] = [];
    for (const line of probe('layout').split('\n')) {
      const [k, ...rest] = line.split(' ');
      if (k === 'addr64') addrs.push(rest.map(Number) as [number, number, number]);
      else if (k && rest.length === 1) values.set(k, Number(rest[0]));
    }
    const ours: Record<string, number> = {
      word32_vring_desc_addr_lo: VRING_DESC32_ADDR_LO,
      word32_vring_desc_len: VRING_DESC32_LEN,
      word16_vring_desc_flags: VRING_DESC16_FLAGS,
      word16_vring_desc_next: VRING_DESC16_NEXT,
      words32_vring_desc: VRING_DESC_WORDS32,
      words16_vring_desc: VRING_DESC_WORDS16,
      words32_vring_used_elem: VRING_USED_ELEM_WORDS32,
      word32_vring_used_elem_id: VRING_USED32_ELEM_ID,
      word32_vring_used_elem_len: VRING_USED32_ELEM_LEN,
      word16_vring_avail_flags: VRING_AVAIL16_FLAGS,
      word16_vring_avail_idx: VRING_AVAIL16_IDX,
      word16_vring_avail_ring: VRING_AVAIL16_RING,
      word16_vring_used_flags: VRING_USED16_FLAGS,
      word16_vring_used_idx: VRING_USED16_IDX,
      word32_vring_used_ring: VRING_USED32_RING,
      word16_used_event_256: vringUsedEvent16(256),
      word16_avail_event_256: vringAvailEvent16(256),
    };
    for (const [name, value] of Object.entries(ours)) {
      expect({ name, value: values.get(name) }).toEqual({ name, value });
    }
    // The high half is the word after the low one (a le64 on a little-endian host).
    expect(VRING_DESC32_ADDR_HI).toBe(VRING_DESC32_ADDR_LO + 1);
    expect(addrs).toHaveLength(6);
    for (const [addr, lo, hi] of addrs) {
      const w = new Uint32Array(4);
      storeAddr64(w, 2, addr);
      expect({ addr, words: [...w.subarray(2)] }).toEqual({ addr, words: [lo, hi] });
      expect(loadAddr64(w, 2)).toBe(addr);
    }
    // One past the largest exact address is no address at all.
    expect(loadAddr64(Uint32Array.of(0, 0x20_0000), 0)).toBe(-1);
  });

  it('agrees on vring_size(), vring_init() offsets and the event fields', () => {
    const out = probe('layout').split('\n');
    let checked = 0;
    for (const line of out) {
      const f = line.split(' ');
      if (f[0] === 'vring_size') {
        const [num, align, size, avail, used] = f.slice(1).map(Number) as number[];
        const l = vringLayout(num!, align!);
        expect([vringSize(num!, align!), l.avail, l.used]).toEqual([size, avail, used]);
        checked++;
      } else if (f[0] === 'event_offsets') {
        const [num, align, usedEvent, availEvent] = f.slice(1).map(Number) as number[];
        const l = vringLayout(num!, align!);
        expect([
          l.avail + vringUsedEventOffset(num!),
          l.used + vringAvailEventOffset(num!),
        ]).toEqual([usedEvent, availEvent]);
      }
    }
    expect(checked).toBe(18);
  });

  it('agrees on vring_need_event() over a table that wraps modulo 2^16', () => {
    let checked = 0;
    for (const line of probe('layout').split('\n')) {
      const f = line.split(' ');
      if (f[0] !== 'need_event') continue;
      const [ev, neu, old, want] = f.slice(1).map(Number) as number[];
      expect({ ev, neu, old, need: vringNeedEvent(ev!, neu!, old!) }).toEqual({
        ev,
        neu,
        old,
        need: want === 1,
      });
      checked++;
    }
    expect(checked).toBe(729);
  });

  it('writes a ring that the C program walks with the uapi structs, and reads its completions', () => {
    const BASE = 0x20_0000;
    const memory = new GuestMemory();
    memory.addRegion(BASE, new ArrayBuffer(64 << 10));
    const alloc = new DmaAllocator(memory, BASE);
    for (const indirect of [false, true]) {
      const vq = Virtqueue.create<string>({
        index: 0,
        num: 16,
        memory,
        dma: offsetDmaOps(alloc),
        indirect,
        notify: () => true,
      })!;
      const a = alloc.alloc(5)!;
      memory.write(a, Uint8Array.of(0x41, 2, 3, 4, 5));
      const b = alloc.alloc(3)!;
      memory.write(b, Uint8Array.of(0x42, 0, 0));
      const w1 = alloc.alloc(10)!;
      const w2 = alloc.alloc(6)!;
      const w3 = alloc.alloc(6)!;
      expect(vq.addOutbuf(a, 5, 'first')).toBe(0);
      expect(
        vq.add(
          [{ addr: b, len: 3 }],
          [
            { addr: w1, len: 10 },
            { addr: w2, len: 6 },
          ],
          'second',
        ),
      ).toBe(0);
      expect(vq.addInbuf(w3, 6, 'third')).toBe(0);
      const file = join(dir, `driver-ring-${indirect}.bin`);
      writeFileSync(file, memory.regions[0]!.u8);
      const lines = probe(
        'walk',
        file,
        String(BASE),
        String(vq.num),
        String(vq.descAddr),
        String(vq.availAddr),
        String(vq.usedAddr),
      )
        .trim()
        .split('\n');
      expect(lines).toEqual([
        expect.stringMatching(/^chain \d+$/),
        `seg r ${a} 5 65`,
        expect.stringMatching(/^chain \d+$/),
        ...(indirect ? ['indirect 48'] : []),
        `seg r ${b} 3 66`,
        `seg w ${w1} 10 0`,
        `seg w ${w2} 6 0`,
        expect.stringMatching(/^chain \d+$/),
        `seg w ${w3} 6 0`,
      ]);
      memory.write(BASE, new Uint8Array(readFileSync(file)));
      expect([vq.getBuf()].map((u) => ({ ...u }))).toEqual([{ token: 'first', len: 0 }]);
      expect({ ...vq.getBuf() }).toEqual({ token: 'second', len: 16 });
      expect({ ...vq.getBuf() }).toEqual({ token: 'third', len: 6 });
      expect(vq.getBuf()).toBeNull();
      expect(vq.isBroken).toBe(false);
      expect([...memory.view(w1, 10)]).toEqual(new Array(10).fill(0x5a));
      vq.delete();
    }
  });

  it('consumes a ring the C program laid out with vring_init()', () => {
    const BASE = 0x30_0000;
    const file = join(dir, 'c-ring.bin');
    for (const [num, align] of [
      [8, 4096],
      [16, 64],
    ] as const) {
      const out = probe('make', file, String(BASE), String(num), String(align)).trim().split('\n');
      const addr = (name: string) =>
        Number(out.find((l) => l.startsWith(`${name} `))!.split(' ')[1]);
      const l = vringLayout(num, align);
      expect([addr('desc'), addr('avail'), addr('used')]).toEqual([
        BASE,
        BASE + l.avail,
        BASE + l.used,
      ]);
      const memory = new GuestMemory();
      memory.addRegion(BASE, new Uint8Array(readFileSync(file)).buffer);
      const dev = new Vringh(memory);
      expect(
        dev.init({
          num,
          descAddr: addr('desc'),
          availAddr: addr('avail'),
          usedAddr: addr('used'),
          eventIdx: true,
        }),
      ).toBe(0);
      const r = new VringhIov();
      const w = new VringhIov();
      const seen: string[] = [];
      const payloads: string[] = [];
      for (let rc = dev.getDesc(r, w); rc === 1; rc = dev.getDesc(r, w)) {
        const segs = [String(dev.head)];
        for (let k = 0; k < r.used; k++) segs.push('r', String(r.addr[k]), String(r.len[k]));
        for (let k = 0; k < w.used; k++) segs.push('w', String(w.addr[k]), String(w.len[k]));
        seen.push(`expect ${segs.join(' ')}`);
        const text = new Uint8Array(r.total);
        dev.pull(r, text);
        payloads.push(new TextDecoder().decode(text));
        dev.complete(dev.head, w.total);
      }
      expect(dev.broken).toBe(false);
      expect(seen).toEqual(out.filter((line) => line.startsWith('expect ')));
      expect(payloads).toEqual(['hello, device', 'abcde', 'payload']);
      // used_event is 2: completing indices 0..2 crosses it, so the driver wants an interrupt.
      expect(dev.needNotify()).toBe(1);
    }
  });
});

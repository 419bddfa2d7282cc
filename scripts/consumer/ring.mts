/**
 * Consumer scenario "ring": @mdev/virtio-ring installed alone, as an emulator author would.
 * The driver side (Virtqueue) and the device side (Vringh) share one GuestMemory; the device
 * reads each request, writes back its bytes inverted, and the driver checks every byte.
 * Compiled by the consumer test with module "nodenext", then run with node.
 */
import {
  DmaAllocator,
  GuestMemory,
  offsetDmaOps,
  Virtqueue,
  Vringh,
  VringhIov,
} from '@mdev/virtio-ring';

function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Error(`ring: ${what}`);
}

const BASE = 0x10_0000;
const memory = new GuestMemory();
memory.addRegion(BASE, new ArrayBuffer(4 << 20));
const dma = offsetDmaOps(new DmaAllocator(memory, BASE));

interface Request {
  seq: number;
  out: number;
  in: number;
  len: number;
}

let kicks = 0;
let device: (() => void) | undefined;
const created = Virtqueue.create<Request>({
  index: 0,
  num: 64,
  memory,
  dma,
  eventIdx: true,
  notify: () => {
    kicks++;
    device?.();
    return true;
  },
  callback: () => {
    for (let b = vq.getBuf(); b !== null; b = vq.getBuf()) completeRequest(b.token, b.len);
  },
});
check(created !== null, 'Virtqueue.create returned null');
const vq = created;

// The device side, given only the three ring addresses and the size, as a transport would.
const vrh = new Vringh(memory);
check(
  vrh.init({
    num: vq.size,
    descAddr: vq.descAddr,
    availAddr: vq.availAddr,
    usedAddr: vq.usedAddr,
    eventIdx: true,
  }) === 0,
  'Vringh.init failed',
);
const riov = new VringhIov();
const wiov = new VringhIov();
const scratch = new Uint8Array(4096);
let interrupts = 0;
device = () => {
  // Drain, then ask for the next kick; if buffers arrived meanwhile, drain again.
  do {
    while (vrh.getDesc(riov, wiov) === 1) {
      const n = vrh.pull(riov, scratch);
      for (let i = 0; i < n; i++) scratch[i] = scratch[i]! ^ 0xff;
      const written = vrh.push(wiov, scratch.subarray(0, n));
      vrh.complete(vrh.head, written);
    }
  } while (!vrh.notifyEnable() && !vrh.broken);
  check(!vrh.broken, `device saw a broken ring (${vrh.error})`);
  if (vrh.needNotify() === 1) {
    interrupts++;
    vq.interrupt();
  }
};

const TOTAL = 5000;
const BATCH = 24;
let done = 0;
let bytes = 0;

function pattern(seq: number, i: number): number {
  return (seq * 31 + i * 7) & 0xff;
}

function completeRequest(req: Request, len: number): void {
  check(len === req.len, `request ${req.seq}: device wrote ${len} bytes, expected ${req.len}`);
  const got = memory.view(req.in, req.len);
  for (let i = 0; i < req.len; i++) {
    check(got[i] === (pattern(req.seq, i) ^ 0xff), `request ${req.seq}: byte ${i} differs`);
  }
  bytes += len;
  dma.free(req.out, req.len, req.out);
  dma.free(req.in, req.len, req.in);
  done++;
}

let seq = 0;
while (seq < TOTAL) {
  const before = done;
  for (let k = 0; k < BATCH && seq < TOTAL && vq.numFree >= 2; k++, seq++) {
    const len = 1 + ((seq * 37) % 1500);
    const out = dma.alloc(len, 8);
    const inb = dma.alloc(len, 8);
    check(out !== null && inb !== null, 'out of guest memory');
    const view = memory.view(out.cpuAddr, len);
    for (let i = 0; i < len; i++) view[i] = pattern(seq, i);
    const r = vq.add([{ addr: out.cpuAddr, len }], [{ addr: inb.cpuAddr, len }], {
      seq,
      out: out.cpuAddr,
      in: inb.cpuAddr,
      len,
    });
    check(r === 0, `add failed with ${r}`);
  }
  if (vq.kickPrepare()) vq.notify();
  check(done > before || vq.numFree >= 2, 'no progress: the device was not kicked');
}

check(done === TOTAL, `${done} of ${TOTAL} requests completed`);
check(!vq.isBroken, `driver queue broken: ${vq.brokenBecause}`);
check(vq.numFree === vq.size, 'descriptors leaked');
console.log(JSON.stringify({ scenario: 'ring', requests: done, bytes, kicks, interrupts }));

// `pnpm bench` in @mdev/virtio-ring: buffers per second through add -> getDesc -> complete ->
// getBuf, with driver and device in one thread, then with the device in a worker thread over a
// SharedArrayBuffer, each for a split and a packed ring (`layout`). One JSON line per case.
// Options: `--count N` (default 2,000,000).
// The last case is the machine's floor for anything that crosses threads: how long one word
// takes to go to the other core and back.
import { Worker } from 'node:worker_threads';
import {
  createVirtqueue,
  createVringh,
  DmaAllocator,
  GuestMemory,
  offsetDmaOps,
  type VirtqueueLike,
  VringhIov,
} from '../src';
import { runEchoDriver, spawnEchoDevice } from '../src/testing';

const BASE = 0x10_0000;
const argv = process.argv.slice(2);
const countArg = argv.indexOf('--count');
const COUNT = countArg >= 0 ? Number(argv[countArg + 1]) : 2_000_000;
if (!Number.isInteger(COUNT) || COUNT <= 0) {
  console.error('usage: bench [--count N]');
  process.exit(2);
}

function setup(shared: boolean) {
  const memory = new GuestMemory();
  memory.addRegion(BASE, shared ? new SharedArrayBuffer(4 << 20) : new ArrayBuffer(4 << 20));
  const alloc = new DmaAllocator(memory, BASE);
  return { memory, alloc, dma: offsetDmaOps(alloc) };
}

function report(name: string, params: Record<string, unknown>, count: number, ms: number): void {
  console.log(
    JSON.stringify({
      bench: 'virtio-ring',
      name,
      ...params,
      buffers: count,
      seconds: +(ms / 1000).toFixed(3),
      buffersPerSecond: Math.round(count / (ms / 1000)),
    }),
  );
}

/** One thread: the driver adds a (readable, writable) pair, the device copies, the driver takes. */
function oneThread(
  num: number,
  frame: number,
  eventIdx: boolean,
  batch: number,
  packed: boolean,
): void {
  const { memory, alloc, dma } = setup(false);
  const vq = createVirtqueue<number>({
    packed,
    index: 0,
    num,
    memory,
    dma,
    eventIdx,
    notify: () => true,
  });
  if (!vq) throw new Error('no queue');
  const dev = createVringh(memory, packed);
  const rc = dev.init({ ...ringOf(vq), eventIdx });
  if (rc !== 0) throw new Error(`init ${rc}`);
  const slots = num >> 1;
  const area = alloc.alloc(2 * slots * frame, 64)!;
  const addrs = new Float64Array(2);
  const lens = Float64Array.of(frame, frame);
  const r = new VringhIov();
  const w = new VringhIov();
  const free: number[] = [];
  for (let k = 0; k < slots; k++) free.push(k);
  let sent = 0;
  let received = 0;
  const start = performance.now();
  while (received < COUNT) {
    for (let n = 0; n < batch && sent < COUNT && free.length > 0; n++, sent++) {
      const k = free.pop()!;
      addrs[0] = area + 2 * k * frame;
      addrs[1] = addrs[0] + frame;
      if (vq.addChain(addrs, lens, 1, 1, k) !== 0) throw new Error('add failed');
    }
    if (vq.kickPrepare()) vq.notify();
    while (dev.getDesc(r, w) === 1) dev.complete(dev.head, dev.copy(r, w));
    dev.needNotify();
    for (let k = vq.getBufToken(); k !== undefined; k = vq.getBufToken()) {
      if (vq.lastLen !== frame) throw new Error('bad length');
      free.push(k);
      received++;
    }
  }
  const layout = packed ? 'packed' : 'split';
  report('one-thread', { layout, num, frame, eventIdx, batch }, COUNT, performance.now() - start);
}

function ringOf(vq: VirtqueueLike<number>) {
  return { num: vq.num, descAddr: vq.descAddr, availAddr: vq.availAddr, usedAddr: vq.usedAddr };
}

/** Two threads: the driver here, the echo device in a worker, doorbells and interrupts by Atomics. */
async function twoThreads(
  num: number,
  frame: number,
  eventIdx: boolean,
  packed: boolean,
): Promise<void> {
  const { memory, alloc, dma } = setup(true);
  let device: ReturnType<typeof spawnEchoDevice> | undefined;
  const vq = createVirtqueue<number>({
    packed,
    index: 0,
    num,
    memory,
    dma,
    eventIdx,
    notify: () => {
      device?.doorbell.signal();
      return true;
    },
  });
  if (!vq) throw new Error('no queue');
  device = spawnEchoDevice(memory, { ...ringOf(vq), eventIdx, packed });
  const area = alloc.alloc(num * frame, 64)!;
  // Let the worker boot before the clock starts.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = performance.now();
  const stats = runEchoDriver(vq, memory, area, frame, COUNT, device.interrupt);
  const ms = performance.now() - start;
  const result = await device.stop();
  if (result.error !== 0 || result.chains !== COUNT) throw new Error('device failed');
  report(
    'two-threads',
    {
      layout: packed ? 'packed' : 'split',
      num,
      frame,
      eventIdx,
      kicks: stats.kicks,
      sleeps: stats.sleeps,
    },
    COUNT,
    ms,
  );
}

// Split and packed side by side, case by case.
for (const eventIdx of [true, false]) {
  for (const packed of [false, true]) oneThread(256, 64, eventIdx, 32, packed);
}
for (const packed of [false, true]) oneThread(256, 1500, true, 32, packed);
for (const eventIdx of [true, false]) {
  for (const packed of [false, true]) await twoThreads(256, 64, eventIdx, packed);
}
for (const packed of [false, true]) await twoThreads(256, 1500, true, packed);

/**
 * Two threads hand a counter back and forth through one shared word, spinning: each round trip
 * moves the word's cache line to the other core and back. What a cross-thread ring costs per
 * buffer is set by this latency.
 */
async function lineRoundTrip(trips: number): Promise<void> {
  const word = new Int32Array(new SharedArrayBuffer(128));
  // The peer sits in its own 64-byte line, so only the handed-over line moves.
  const echo = `
    const { workerData } = require('node:worker_threads');
    const w = new Int32Array(workerData.buffer);
    for (let i = 1; i <= workerData.trips; i++) {
      while (Atomics.load(w, 0) !== i) {}
      Atomics.store(w, 16, i);
    }`;
  const peer = new Worker(echo, { eval: true, workerData: { buffer: word.buffer, trips } });
  const done = new Promise((resolve, reject) => {
    peer.once('exit', resolve);
    peer.once('error', reject);
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const start = performance.now();
  for (let i = 1; i <= trips; i++) {
    Atomics.store(word, 0, i);
    while (Atomics.load(word, 16) !== i) {}
  }
  const ms = performance.now() - start;
  await done;
  const ns = (ms * 1e6) / trips;
  console.log(
    JSON.stringify({
      bench: 'virtio-ring',
      name: 'line-round-trip',
      trips,
      seconds: +(ms / 1000).toFixed(3),
      nsPerRoundTrip: Math.round(ns),
      nsOneWay: Math.round(ns / 2),
    }),
  );
}

await lineRoundTrip(Math.min(COUNT, 1_000_000));

/**
 * Test doubles of "the other side" (the package's `./testing` export): `RawRing`, a hand-written
 * ring for device tests; an echo device in a worker thread with a checking driver loop; the ring
 * fuzzer; and `countViewReads`, for checking that a per-frame path keeps what it reads of a view.
 */
import {
  CONTROL_DOORBELL,
  CONTROL_INTERRUPT,
  CONTROL_SIZE,
  CONTROL_STOP,
  type EchoDeviceParams,
  type EchoDeviceResult,
} from './echo-device';
import { VRING_AVAIL_IDX } from './layout';
import type { GuestMemory } from './memory';
import { NotifyWord } from './notify';
import type { VirtqueueLike } from './packed-virtqueue';
import { RawRing, type RawRingLayout } from './raw-ring';
import { siblingModule, spawnWorker } from './spawn-worker';

export { type FuzzFailure, type FuzzStats, fuzzRings } from './fuzz';
export { fuzzPackedRings } from './fuzz-packed';

/**
 * Counts, from now on, the reads of `view.byteOffset` and `view.buffer` (values unchanged);
 * returns the function that gives the count. In code V8 compiles in a background thread, Node's
 * default, each of these reads is a call into the runtime: a per-frame path reads them once per
 * view and keeps them, and a test checks that with this.
 */
export function countViewReads(view: ArrayBufferView): () => number {
  let reads = 0;
  for (const key of ['byteOffset', 'buffer'] as const) {
    const value = view[key];
    Object.defineProperty(view, key, {
      get: () => {
        reads++;
        return value;
      },
    });
  }
  return () => reads;
}
export { RawRing, type RawRingLayout } from './raw-ring';

/**
 * A `RawRing` over the areas of a ring laid out elsewhere (a `Virtqueue`'s, or the addresses a
 * device was given), continuing from the avail index published there: a test writes into a live
 * ring what its driver never would.
 */
export function rawRingAt(memory: GuestMemory, ring: RawRingLayout): RawRing {
  const raw = new RawRing(memory, ring);
  const idx = memory.view(ring.availAddr + VRING_AVAIL_IDX, 2);
  raw.availIdx = idx[0]! | (idx[1]! << 8);
  return raw;
}

/**
 * Writes `head` (0xffff by default) into the next avail slot of a live ring and publishes it, as
 * a hostile or broken driver would: a head at or beyond the ring size, which the device must
 * refuse as a broken ring (`__vringh_get_head` in drivers/vhost/vringh.c). Does not notify.
 */
export function offerBadHead(memory: GuestMemory, ring: RawRingLayout, head = 0xffff): RawRing {
  const raw = rawRingAt(memory, ring);
  raw.offer(head);
  return raw;
}

/** A loopback device running in a worker thread (see `runEchoDevice`). */
export interface EchoDeviceHandle {
  /** Ring it from the virtqueue's notify. */
  doorbell: NotifyWord;
  /** Signalled by the device when the driver asked for an interrupt. */
  interrupt: NotifyWord;
  /** Stops the device loop and resolves with its counts. */
  stop(): Promise<EchoDeviceResult>;
}

/**
 * Starts `runEchoDevice` in a worker over `memory` (SharedArrayBuffer regions) for the queue at
 * `ring`.
 */
export function spawnEchoDevice(
  memory: GuestMemory,
  ring: RawRingLayout & { eventIdx: boolean; packed?: boolean },
  batch?: number,
): EchoDeviceHandle {
  const control = new SharedArrayBuffer(CONTROL_SIZE);
  const params: EchoDeviceParams = {
    memory: memory.share(),
    num: ring.num,
    descAddr: ring.descAddr,
    availAddr: ring.availAddr,
    usedAddr: ring.usedAddr,
    eventIdx: ring.eventIdx,
    packed: ring.packed === true,
    control,
    batch,
  };
  const worker = spawnWorker(siblingModule('echo-device-worker', import.meta.url), {
    workerData: params,
  });
  const done = new Promise<EchoDeviceResult>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const doorbell = new NotifyWord(control, CONTROL_DOORBELL);
  return {
    doorbell,
    interrupt: new NotifyWord(control, CONTROL_INTERRUPT),
    async stop() {
      Atomics.store(new Int32Array(control, CONTROL_STOP, 1), 0, 1);
      doorbell.signal();
      const result = await done;
      await worker.terminate();
      return result;
    },
  };
}

/** Counts from `runEchoDriver`. */
export interface EchoDriverStats {
  received: number;
  kicks: number;
  sleeps: number;
}

/**
 * A driver loop against an echo device: keeps the queue full of (readable frame, writable frame)
 * chains whose payload carries a sequence number, kicks when the device asks, sleeps on
 * `interrupt` when nothing is used, and checks that every buffer comes back once, in order, with
 * its payload and length. Throws an Error on the first mismatch. Allocates nothing per buffer.
 *
 * `area` is a 4-aligned guest address with room for `vq.num` frames of `frame` bytes (a multiple
 * of 4, at least 8); `kick` rings the device's doorbell.
 */
export function runEchoDriver(
  vq: VirtqueueLike<number>,
  memory: GuestMemory,
  area: number,
  frame: number,
  count: number,
  interrupt: NotifyWord,
): EchoDriverStats {
  if (frame < 8 || frame % 4 !== 0 || area % 4 !== 0) throw new RangeError('bad frame layout');
  const slots = vq.indirect ? vq.num : vq.num >> 1;
  const view = memory.view(area, 2 * slots * frame);
  const words = new Uint32Array(view.buffer, view.byteOffset, view.byteLength >> 2);
  const frameWords = frame >> 2;
  const freeStack = new Int32Array(slots);
  for (let k = 0; k < slots; k++) freeStack[k] = slots - 1 - k;
  let freeTop = slots;
  const seqOf = new Float64Array(slots);
  const addrs = new Float64Array(2);
  const lens = Float64Array.of(frame, frame);
  const stats: EchoDriverStats = { received: 0, kicks: 0, sleeps: 0 };
  let sent = 0;
  vq.disableCb();
  while (stats.received < count) {
    while (sent < count && freeTop > 0) {
      const k = freeStack[--freeTop]!;
      const o = 2 * k * frameWords; // readable frame k, then its writable twin
      words[o] = sent;
      words[o + 1] = (sent ^ 0xa5a5a5a5) >>> 0;
      words[o + frameWords - 1] = sent * 7;
      words[o + frameWords] = 0; // the device must overwrite the reply
      addrs[0] = area + 2 * k * frame;
      addrs[1] = addrs[0] + frame;
      const rc = vq.addChain(addrs, lens, 1, 1, k);
      if (rc !== 0) throw new Error(`add failed with ${rc} at ${sent}`);
      seqOf[k] = sent++;
    }
    if (vq.kickPrepare()) {
      stats.kicks++;
      vq.notify();
    }
    let got = 0;
    for (let k = vq.getBufToken(); k !== undefined; k = vq.getBufToken()) {
      const seq = stats.received;
      const o = (2 * k + 1) * frameWords;
      if (seqOf[k] !== seq) throw new Error(`buffer ${seqOf[k]} came back when ${seq} was due`);
      if (vq.lastLen !== frame) throw new Error(`buffer ${seq}: used length ${vq.lastLen}`);
      if (
        words[o] !== seq >>> 0 ||
        words[o + 1] !== (seq ^ 0xa5a5a5a5) >>> 0 ||
        words[o + frameWords - 1] !== (seq * 7) >>> 0
      ) {
        throw new Error(`buffer ${seq}: payload mismatch`);
      }
      freeStack[freeTop++] = k;
      stats.received++;
      got++;
    }
    if (vq.isBroken) throw new Error(`queue broke: ${vq.brokenBecause}`);
    if (got === 0 && stats.received < count) {
      // Nothing used: read the interrupt count, re-enable callbacks (which re-checks), then sleep.
      const seen = interrupt.load();
      if (vq.enableCb()) {
        stats.sleeps++;
        interrupt.wait(seen, 100);
      }
      vq.disableCb();
    }
  }
  return stats;
}

export {
  CONTROL_DOORBELL,
  CONTROL_INTERRUPT,
  CONTROL_SIZE,
  CONTROL_STOP,
  type EchoDeviceParams,
  type EchoDeviceResult,
  runEchoDevice,
} from './echo-device';

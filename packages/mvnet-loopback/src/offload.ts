/**
 * Worker mode, main-thread side: the datapath of every instance of a parent runs in one worker
 * thread (the card's "hardware") over the shared host memory. Kicks are doorbell writes,
 * interrupts arrive through `Atomics.waitAsync` on the interrupt word, and control requests
 * (queue ready, reset, ring state) are synchronous, like register writes: the caller waits for
 * the worker's answer, so after a reset returns the worker no longer touches the rings. This is
 * the worker host of the device's ops (`MvnetHost`).
 */
import {
  MessageChannel,
  type MessagePort,
  receiveMessageOnPort,
  type Worker,
} from 'node:worker_threads';
import { KernelError, registerIrqPoll } from '@mdev/driver-core';
import type { MdevVirtioMapEntry, MdevVirtioMapRegion } from '@mdev/mdev-virtio';
import {
  type AnyVringhConfig,
  type GuestMemory,
  NotifyWord,
  sharedRegion,
  siblingModule,
  spawnWorker,
} from '@mdev/virtio-ring';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import type { MvnetQueue, MvnetStats, NetHdrLayout } from './datapath';
import type { MvnetHost } from './host';
import {
  CTL_ACK_SEQ,
  CTL_ACK_VALUE,
  CTL_DOORBELL,
  CTL_IRQ,
  CTL_REQ_SEQ,
  CTL_SLEEPING,
  CTL_STOP,
  CTL_WORDS,
  type OffloadFailure,
  type OffloadMapEntry,
  type OffloadMapRegion,
  type OffloadRequest,
  type OffloadWorkerData,
  PENDING_BASE,
  PENDING_BROKEN,
  PENDING_RX,
  PENDING_STRIDE,
  PENDING_TX,
  pendingWords,
  STAT_BASE,
  STAT_KEYS,
  STAT_STRIDE,
  statWords,
} from './offload-protocol';

const pendingAt = (slot: number): number => PENDING_BASE + slot * PENDING_STRIDE;

/** How long a control request may wait for the worker (it boots on the first one). */
const REQUEST_TIMEOUT_MS = 15_000;

/** A request as the caller gives it: each kind without its sequence number. */
type WithoutSeq<R> = R extends unknown ? Omit<R, 'seq'> : never;
type RequestBody = WithoutSeq<OffloadRequest>;

/** Counters of a slot as the device reads them, and how to make them final. */
interface SlotStats {
  view: MvnetStats;
  /** Copies the row into the view: from then on the view no longer follows the row. */
  freeze(): void;
}

/**
 * Counters of a slot as a live view of the worker's shared row (written by the worker only),
 * one getter per counter in STAT_KEYS order, the order the worker writes them in. The row is
 * the slot's, not the instance's: the next instance in the slot zeroes it and counts on, so a
 * detached slot's view is frozen first.
 */
function sharedStats(row: Float64Array, base: number): SlotStats {
  let source = row;
  let at = base;
  const view = {} as MvnetStats;
  STAT_KEYS.forEach((key, k) => {
    Object.defineProperty(view, key, { enumerable: true, get: () => source[at + k]! });
  });
  return {
    view,
    freeze() {
      source = row.slice(base, base + STAT_STRIDE);
      at = 0;
    },
  };
}

/** Options of the worker host. */
export interface MvnetOffloadOptions {
  /**
   * The module the worker imports `mapShared` and `unmap` from when a DMA map brings a region
   * it can reach only by its fd; default `@mdev/vhost-user`, an optional peer dependency.
   */
  vhostUser?: string;
}

/**
 * How the worker reaches a map region: a SharedArrayBuffer is posted as is, external memory
 * (a vhost-user frontend's mapping) by the fd the worker maps itself. EINVAL for a region that
 * is neither: its bytes exist in this thread only.
 */
function workerRegion(region: MdevVirtioMapRegion, entry: number): OffloadMapRegion {
  const { u8, fd } = region;
  const { byteOffset, length } = u8;
  if (u8.buffer instanceof SharedArrayBuffer) return { buffer: u8.buffer, byteOffset, length };
  if (fd !== undefined) return { fd, byteLength: u8.buffer.byteLength, byteOffset, length };
  throw new KernelError(
    'EINVAL',
    `mvnet: map entry ${entry}: the datapath worker cannot reach its region, which is neither ` +
      'a SharedArrayBuffer nor given with the fd of its memory',
  );
}

/** What the main thread keeps of an attached slot. */
interface OffloadSlot {
  vqs: readonly MvnetQueue[];
  broken: () => void;
  stats: SlotStats;
}

export class MvnetOffload implements MvnetHost {
  private readonly ctl: Int32Array;
  private readonly pending: Int32Array;
  private readonly statsRow: Float64Array;
  private readonly doorbell: NotifyWord;
  private readonly irq: NotifyWord;
  private readonly port: MessagePort;
  private readonly memoryPort: MessagePort;
  private readonly worker: Worker;
  private readonly attached = new Map<number, OffloadSlot>();
  /** Ready queues of each slot, a bit per queue: while any is set, the worker holds the process. */
  private readonly readyMask = new Map<number, number>();
  private readonly stopRegionCalls: () => void;
  private readonly stopIrqPoll: () => void;
  private seq = 0;
  private closed = false;
  private failure: string | null = null;

  constructor(
    memory: GuestMemory,
    slots: number,
    budget: number,
    options: MvnetOffloadOptions = {},
  ) {
    const control = new SharedArrayBuffer(CTL_WORDS * 4);
    const pending = new SharedArrayBuffer(pendingWords(slots) * 4);
    const stats = new SharedArrayBuffer(statWords(slots) * 8);
    this.ctl = new Int32Array(control);
    this.pending = new Int32Array(pending);
    this.statsRow = new Float64Array(stats);
    this.doorbell = new NotifyWord(control, CTL_DOORBELL * 4);
    this.irq = new NotifyWord(control, CTL_IRQ * 4);
    const channel = new MessageChannel();
    this.port = channel.port1;
    const memoryChannel = new MessageChannel();
    this.memoryPort = memoryChannel.port1;
    const shared = memory.share();
    const workerData: OffloadWorkerData = {
      control,
      pending,
      stats,
      memory: shared,
      port: channel.port2,
      memoryPort: memoryChannel.port2,
      budget,
      vhostUser: options.vhostUser ?? '@mdev/vhost-user',
    };
    this.worker = spawnWorker(siblingModule('offload-worker', import.meta.url), {
      workerData,
      transferList: [channel.port2, memoryChannel.port2],
    });
    this.worker.on('error', (err) => {
      this.failure = String(err);
    });
    // Atomics.waitAsync does not keep Node's event loop alive. While a queue is ready the
    // worker does (see setReady): a program waiting only for an interrupt (a received frame, a
    // TX wake) must not exit with frames in flight. An idle device holds nothing.
    this.worker.unref();
    // Host memory grows by regions; the worker hears of each before any address in it exists
    // (and reads this port when an address does not translate).
    this.stopRegionCalls = memory.onRegionAdded((region) => {
      if (region.buffer instanceof SharedArrayBuffer && !this.closed) {
        this.memoryPort.postMessage({ regions: [sharedRegion(region)] });
      }
    });
    // Interrupts raised while this thread is busy with work are taken between work items; the
    // loop below takes them when it is idle.
    this.stopIrqPoll = registerIrqPoll(() => this.deliverPending());
    void this.interruptLoop();
  }

  /** A doorbell write: the worker looks at every ready queue (of every slot). */
  kick(_slot?: number): void {
    this.ring();
    // The main thread may be busy for a while (a worker-pool turn); interrupts raised meanwhile
    // are delivered here too, so a driver that keeps transmitting also keeps receiving.
    this.deliverPending();
  }

  /** Delivers the interrupts and faults the worker raised for every slot. */
  deliverPending(): void {
    for (const [slot, s] of this.attached) {
      if (Atomics.load(this.pending, pendingAt(slot)) === 0) continue;
      const bits = Atomics.exchange(this.pending, pendingAt(slot), 0);
      if (bits === 0) continue;
      if (bits & PENDING_BROKEN) {
        // The worker stopped the slot's queues itself, and counted the ring error.
        this.setReady(slot, -1, false);
        s.broken();
      }
      const rx = s.vqs[MVNET_RX_QUEUE]!;
      const tx = s.vqs[MVNET_TX_QUEUE]!;
      if (bits & PENDING_RX && rx.ready) rx.interrupt();
      if (bits & PENDING_TX && tx.ready) tx.interrupt();
    }
  }

  attach(slot: number, vqs: readonly MvnetQueue[], broken: () => void): MvnetStats {
    this.call({ op: 'attach', slot });
    const stats = sharedStats(this.statsRow, STAT_BASE + slot * STAT_STRIDE);
    this.attached.set(slot, { vqs, broken, stats });
    return stats.view;
  }

  /**
   * Stops the slot's datapath; when this returns the worker no longer touches its rings, and
   * the slot's counters (as `attach` returned them) are final.
   */
  detach(slot: number): void {
    const s = this.attached.get(slot);
    this.attached.delete(slot);
    this.setReady(slot, -1, false);
    try {
      this.call({ op: 'detach', slot });
    } finally {
      // After the answer the worker writes the row no more (it publishes after each run and
      // reads requests between runs). Frozen even when the worker failed, so that the next
      // instance in the slot cannot change them.
      s?.stats.freeze();
    }
    Atomics.store(this.pending, pendingAt(slot), 0);
  }

  /**
   * Enables a queue at vq state `lastAvail`, with the slot's header layout; the result is
   * Vringh.init's (0 or a negative errno).
   */
  ready(
    slot: number,
    queue: number,
    config: AnyVringhConfig,
    lastAvail: number,
    hdr: NetHdrLayout,
  ): number {
    const err = this.call({ op: 'ready', slot, queue, config, lastAvail, hdr });
    this.setReady(slot, queue, err === 0);
    return err;
  }

  /** Stops a queue; it keeps its place in the ring (the vq state). */
  unready(slot: number, queue: number): void {
    this.setReady(slot, queue, false);
    this.call({ op: 'unready', slot, queue });
  }

  /**
   * A device reset: every queue of the slot stops and its vq state goes back to 0, whatever this
   * thread believes ready (the worker stops a broken ring's queues before the fault is
   * delivered). Pending bits raised before it are dropped with it: delivered after the reset, a
   * PENDING_BROKEN would mark the set-up-again device DEVICE_NEEDS_RESET while the worker runs
   * its new rings. When this returns the worker no longer touches the slot's rings.
   */
  reset(slot: number): void {
    this.setReady(slot, -1, false);
    this.call({ op: 'reset', slot });
    // After the answer: the worker raises nothing more for the slot until a queue is ready.
    Atomics.store(this.pending, pendingAt(slot), 0);
  }

  /** Whether the worker keeps the process alive: some queue is ready. */
  get holdsProcess(): boolean {
    return this.readyMask.size > 0 && !this.closed;
  }

  /** Marks queue `queue` (-1: all) of `slot` ready or not, and refs the worker to match. */
  private setReady(slot: number, queue: number, ready: boolean): void {
    const before = this.readyMask.get(slot) ?? 0;
    const bit = queue < 0 ? -1 : 1 << queue;
    const after = ready ? before | bit : before & ~bit;
    if (after === 0) this.readyMask.delete(slot);
    else this.readyMask.set(slot, after);
    if (this.closed) return;
    if (this.readyMask.size > 0) this.worker.ref();
    else this.worker.unref();
  }

  getState(slot: number, queue: number): number {
    const value = this.call({ op: 'getState', slot, queue });
    // The answer word is an Int32: a packed ring's state sets bit 31 (its used wrap counter),
    // which is no errno (those are -4095 to -1).
    return value < -4095 ? value >>> 0 : value;
  }

  setState(slot: number, queue: number, value: number): void {
    this.call({ op: 'setState', slot, queue, value });
  }

  /**
   * Hands the slot's DMA map to the worker, which reads the slot's rings through it from the
   * next ready on: each region as its SharedArrayBuffer, or as its fd, which the worker maps
   * itself (and unmaps when the map is replaced or cleared, the slot detached, or the worker
   * ends). Synchronous, like the other requests.
   */
  setMap(slot: number, map: readonly MdevVirtioMapEntry[] | null): void {
    const regions: OffloadMapRegion[] = [];
    const index = new Map<MdevVirtioMapRegion, number>();
    let entries: OffloadMapEntry[] | null = null;
    if (map !== null) {
      entries = map.map((e, i) => {
        let region = index.get(e.region);
        if (region === undefined) {
          region = regions.push(workerRegion(e.region, i)) - 1;
          index.set(e.region, region);
        }
        return { iova: e.iova, size: e.size, region, offset: e.offset, perm: e.perm };
      });
    }
    const value = this.call({ op: 'setMap', slot, regions, entries });
    if (value < 0) {
      const why = this.failureOf(this.seq | 0) ?? 'the datapath worker refused the DMA map';
      throw KernelError.fromErrno(value, `mvnet: ${why}`);
    }
  }

  /** Stops the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctl, CTL_STOP, 1);
    this.doorbell.signal();
    this.irq.signal();
    this.stopRegionCalls();
    this.stopIrqPoll();
    this.port.close();
    this.memoryPort.close();
    await this.worker.terminate();
  }

  private call(body: RequestBody): number {
    if (this.closed) throw new KernelError('ENODEV', 'mvnet: the datapath worker has stopped');
    if (this.failure)
      throw new KernelError('EIO', `mvnet: the datapath worker failed: ${this.failure}`);
    const seq = ++this.seq | 0;
    this.port.postMessage({ ...body, seq });
    // After the post: the worker reads the port once it sees this.
    Atomics.store(this.ctl, CTL_REQ_SEQ, seq);
    this.ring();
    const deadline = performance.now() + REQUEST_TIMEOUT_MS;
    for (;;) {
      const acked = Atomics.load(this.ctl, CTL_ACK_SEQ);
      if (acked === seq) break;
      if (performance.now() > deadline) {
        throw new KernelError('EIO', `mvnet: the datapath worker did not answer ${body.op}`);
      }
      Atomics.wait(this.ctl, CTL_ACK_SEQ, acked, 50);
    }
    return Atomics.load(this.ctl, CTL_ACK_VALUE);
  }

  /**
   * Rings the doorbell. The worker polls it while it runs; Atomics.notify, which takes a lock
   * the worker's wait takes too, is for a worker that sleeps (or is about to: it sets
   * CTL_SLEEPING before it waits, and the wait returns at once on a bumped word).
   */
  private ring(): void {
    Atomics.add(this.ctl, CTL_DOORBELL, 1);
    if (Atomics.load(this.ctl, CTL_SLEEPING) !== 0) Atomics.notify(this.ctl, CTL_DOORBELL);
  }

  /** The reason the worker posted for failing request `seq`, if it did (see OffloadFailure). */
  private failureOf(seq: number): string | null {
    let message: string | null = null;
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
      const f = m.message as OffloadFailure;
      if (f.seq === seq) message = f.message;
    }
    return message;
  }

  /** Delivers pending interrupts whenever the worker bumps the interrupt word. */
  private async interruptLoop(): Promise<void> {
    while (!this.closed) {
      const seen = this.irq.load();
      this.deliverPending();
      await this.irq.waitAsync(seen, 1000);
    }
  }
}

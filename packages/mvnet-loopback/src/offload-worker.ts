/**
 * The datapath worker (worker mode): the "hardware" of every mvnet instance of one parent. It
 * walks the rings in the shared host memory directly, sleeps on the doorbell word, and raises
 * interrupts by setting a slot's pending bits and bumping the interrupt word. Requests from the
 * main thread (queue ready, reset, ring state) arrive on a MessagePort that this loop reads
 * synchronously, and are answered through the control block.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import { GuestMemory, NotifyWord, type SharedMemoryDescriptor } from '@mdev/virtio-ring';
import { emptyStats, LoopbackDatapath, MvnetQueue, type MvnetStats } from './datapath';
import {
  CTL_ACK_SEQ,
  CTL_ACK_VALUE,
  CTL_DOORBELL,
  CTL_IRQ,
  CTL_STOP,
  type OffloadRequest,
  type OffloadWorkerData,
  PENDING_BROKEN,
  PENDING_RX,
  PENDING_TX,
  STAT_KEYS,
  STAT_STRIDE,
} from './offload-protocol';

const EINVAL = 22;

interface Slot {
  vqs: MvnetQueue[];
  stats: MvnetStats;
  datapath: LoopbackDatapath;
  active: boolean;
}

const data = workerData as OffloadWorkerData;
const ctl = new Int32Array(data.control);
const pending = new Int32Array(data.pending);
const statsOut = new Float64Array(data.stats);
const memory = GuestMemory.fromShared(data.memory);
const doorbell = new NotifyWord(data.control, CTL_DOORBELL * 4);
const irq = new NotifyWord(data.control, CTL_IRQ * 4);
const slots = new Map<number, Slot>();
let raised = false;

function raise(slot: number, bits: number): void {
  Atomics.or(pending, slot, bits);
  raised = true;
}

function addRegions(desc: SharedMemoryDescriptor): void {
  for (const r of desc.regions) {
    if (!memory.regions.some((m) => m.base === r.base)) memory.addRegion(r.base, r.buffer);
  }
}

function attach(slot: number): Slot {
  const vqs = [new MvnetQueue(memory), new MvnetQueue(memory)];
  vqs[0]!.cb = () => raise(slot, PENDING_RX);
  vqs[1]!.cb = () => raise(slot, PENDING_TX);
  const stats = emptyStats();
  const s: Slot = {
    vqs,
    stats,
    datapath: new LoopbackDatapath(vqs[0]!, vqs[1]!, stats),
    active: true,
  };
  slots.set(slot, s);
  publish(slot, stats);
  return s;
}

function publish(slot: number, stats: MvnetStats): void {
  const base = slot * STAT_STRIDE;
  for (let k = 0; k < STAT_KEYS.length; k++) statsOut[base + k] = stats[STAT_KEYS[k]!];
}

function handle(req: OffloadRequest): number {
  if (req.op === 'attach') {
    attach(req.slot);
    return 0;
  }
  const s = slots.get(req.slot);
  if (!s) return -EINVAL;
  switch (req.op) {
    case 'detach':
      slots.delete(req.slot);
      return 0;
    case 'ready': {
      if (req.memory) addRegions(req.memory);
      const vq = s.vqs[req.queue];
      if (!vq) return -EINVAL;
      const err = vq.vrh.init(req.config);
      vq.ready = err === 0;
      s.active = true;
      return err;
    }
    case 'unready': {
      const vq = s.vqs[req.queue];
      if (!vq) return -EINVAL;
      vq.ready = false;
      return 0;
    }
    case 'getState':
      return s.vqs[req.queue]?.vrh.getLastAvailIdx() ?? -EINVAL;
    case 'setState':
      s.vqs[req.queue]?.vrh.setLastAvailIdx(req.value);
      return 0;
  }
}

function serveRequests(): void {
  for (let m = receiveMessageOnPort(data.port); m; m = receiveMessageOnPort(data.port)) {
    const req = m.message as OffloadRequest;
    const value = handle(req);
    Atomics.store(ctl, CTL_ACK_VALUE, value);
    Atomics.store(ctl, CTL_ACK_SEQ, req.seq);
    Atomics.notify(ctl, CTL_ACK_SEQ);
  }
}

while (Atomics.load(ctl, CTL_STOP) === 0) {
  // Read the doorbell before looking at the rings: a kick after this point ends the wait at once.
  const seen = doorbell.load();
  serveRequests();
  let busy = false;
  for (const [slot, s] of slots) {
    if (!s.active) continue;
    const result = s.datapath.run(data.budget);
    publish(slot, s.stats);
    if (result === 'more') busy = true;
    else if (result === 'broken') {
      // The queues stop until the driver resets the device; the main thread sets NEEDS_RESET.
      s.active = false;
      for (const vq of s.vqs) vq.ready = false;
      raise(slot, PENDING_BROKEN);
    }
  }
  if (raised) {
    raised = false;
    irq.signal();
  }
  if (!busy) doorbell.wait(seen, 1000);
}
serveRequests();

/**
 * The datapath worker (worker mode): the "hardware" of every mvnet instance of one parent. It
 * walks the rings in the shared host memory directly, sleeps on the doorbell word, and raises
 * interrupts by setting a slot's pending bits and bumping the interrupt word. Requests from the
 * main thread (queue ready, reset, ring state) arrive on a MessagePort that this loop reads
 * synchronously, and are answered through the control block.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import {
  type AddressSpace,
  GuestMemory,
  NotifyWord,
  type SharedMemoryDescriptor,
  type Translation,
} from '@mdev/virtio-ring';
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
  /** When the slot's TX started waiting for a receive buffer (0 = not waiting). */
  starvedSince: number;
}

/**
 * How long a TX frame may wait for the driver to post a receive buffer before it is dropped:
 * the device's FIFO, in time. The driver refills from another thread, so without it a frame
 * would be dropped whenever the driver is a moment late. 20 ms outlasts the driver thread's
 * longer pauses (an optimising compile on that thread takes several ms): with 5 ms, pktgen runs
 * dropped a ring's worth of frames now and then.
 */
const RX_GRACE_MS = 20;
/** How long an idle datapath polls the rings before it sleeps on the doorbell. */
const POLL_US = 30;

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
  memory.addShared(desc);
}

/** Host memory as the worker reaches it: a miss first picks up the regions memory grew by. */
const space: AddressSpace = {
  translate(addr: number, len: number, out: Translation): boolean {
    if (memory.translate(addr, len, out)) return true;
    let grew = false;
    for (
      let m = receiveMessageOnPort(data.memoryPort);
      m;
      m = receiveMessageOnPort(data.memoryPort)
    ) {
      addRegions(m.message as SharedMemoryDescriptor);
      grew = true;
    }
    return grew && memory.translate(addr, len, out);
  },
};

function attach(slot: number): Slot {
  const vqs = [new MvnetQueue(space), new MvnetQueue(space)];
  vqs[0]!.cb = () => raise(slot, PENDING_RX);
  vqs[1]!.cb = () => raise(slot, PENDING_TX);
  const stats = emptyStats();
  const s: Slot = {
    vqs,
    stats,
    datapath: new LoopbackDatapath(vqs[0]!, vqs[1]!, stats),
    active: true,
    starvedSince: 0,
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
      const vq = s.vqs[req.queue];
      if (!vq) return -EINVAL;
      const err = vq.vrh.init(req.config);
      // init zeroes the ring indices; a vq state set while the queue was down comes after it.
      if (err === 0) vq.vrh.restoreState(req.lastAvail);
      vq.ready = err === 0;
      s.datapath.hdr = req.hdr;
      s.active = true;
      return err;
    }
    case 'unready': {
      // The queue keeps its place in the ring, for getState; a reset forgets it.
      const vq = s.vqs[req.queue];
      if (!vq) return -EINVAL;
      vq.ready = false;
      return 0;
    }
    case 'reset':
      // Every queue, ready or not: a broken ring's queues were stopped here already.
      for (const vq of s.vqs) vq.resetRing();
      s.starvedSince = 0;
      return 0;
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

/**
 * Runs every active slot once, in turn; returns 'busy', 'starved' (someone waits for RX) or
 * 'idle'. A slot's run is bounded whatever its driver does: at most `budget` looks at its TX ring
 * (RingForward counts every look), and a chain costs what is walked. So one device cannot keep
 * the others of its parent waiting for more than one bounded run each turn, and each slot's
 * interrupts go out as soon as its run is over, not after the other slots' runs.
 */
function runSlots(): 'busy' | 'starved' | 'idle' {
  let state: 'busy' | 'starved' | 'idle' = 'idle';
  for (const [slot, s] of slots) {
    if (!s.active) continue;
    const hold = s.starvedSince === 0 || performance.now() - s.starvedSince < RX_GRACE_MS;
    const result = s.datapath.run(data.budget, hold);
    publish(slot, s.stats);
    if (result === 'starved') {
      if (s.starvedSince === 0) s.starvedSince = performance.now();
      if (state === 'idle') state = 'starved';
    } else {
      s.starvedSince = 0;
      if (result === 'more') state = 'busy';
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
  }
  return state;
}

/** Whether any active slot has TX work the last run did not see. */
function txPending(): boolean {
  for (const s of slots.values())
    if (s.active && s.vqs[1]!.ready && s.vqs[1]!.vrh.hasAvail()) return true;
  return false;
}

while (Atomics.load(ctl, CTL_STOP) === 0) {
  // Read the doorbell before looking at the rings: a kick after this point ends the wait at once.
  const seen = doorbell.load();
  serveRequests();
  const state = runSlots();
  if (state === 'busy') continue;
  if (state === 'idle') {
    // Poll a little before sleeping: a driver sending bursts is back within microseconds, and
    // finding its buffers this way costs less than a kick and a wake-up.
    const until = performance.now() + POLL_US / 1000;
    let found = false;
    while (!found && performance.now() < until) found = txPending();
    if (found) continue;
  }
  // Sleep until a kick (a starved slot also wakes when its grace ends, to drop the frame).
  doorbell.wait(seen, state === 'starved' ? RX_GRACE_MS : 1000);
}
serveRequests();

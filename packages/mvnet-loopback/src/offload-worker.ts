/**
 * The datapath worker (worker mode): the "hardware" of every mvnet instance of one parent. It
 * walks the rings in the shared host memory directly (or through a slot's DMA map), sleeps on
 * the doorbell word, and raises interrupts by setting a slot's pending bits and bumping the
 * interrupt word. Requests from the main thread (queue ready, reset, ring state, DMA map) arrive
 * on a MessagePort that this loop reads synchronously, and are answered through the control
 * block.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { MdevVirtioMapEntry } from '@mdev/mdev-virtio';
import type * as VhostUser from '@mdev/vhost-user';
import {
  type AddressSpace,
  GuestMemory,
  NotifyWord,
  type SharedMemoryDescriptor,
  type Translation,
} from '@mdev/virtio-ring';
import { emptyStats, LoopbackDatapath, MvnetQueue, type MvnetStats } from './datapath';
import { IotlbAddressSpace } from './iotlb';
import {
  CTL_ACK_SEQ,
  CTL_ACK_VALUE,
  CTL_DOORBELL,
  CTL_IRQ,
  CTL_REQ_SEQ,
  CTL_SLEEPING,
  CTL_STOP,
  type OffloadFailure,
  type OffloadMapRegion,
  type OffloadRequest,
  type OffloadWorkerData,
  PENDING_BASE,
  PENDING_BROKEN,
  PENDING_RX,
  PENDING_STRIDE,
  PENDING_TX,
  STAT_BASE,
  STAT_KEYS,
  STAT_STRIDE,
} from './offload-protocol';

const EBUSY = 16;
const EINVAL = 22;
const ENODEV = 19;
const EOPNOTSUPP = 95;

interface Slot {
  vqs: MvnetQueue[];
  stats: MvnetStats;
  datapath: LoopbackDatapath;
  active: boolean;
  /** When the slot's TX started waiting for a receive buffer (0 = not waiting). */
  starvedSince: number;
  /** The slot's DMA map, which its queues read through while one is set. */
  iotlb: IotlbAddressSpace;
  /** What this thread mapped of fds for the map (mapShared), unmapped when the map goes. */
  mapped: ArrayBuffer[];
}

/** A request that fails with a reason the errno alone would not give. */
class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** What the worker needs of @mdev/vhost-user, loaded on the first fd region (see loadVhostUser). */
type VhostUserSys = Pick<typeof VhostUser, 'mapShared' | 'unmap'>;

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
// The last CTL_REQ_SEQ whose requests were all read off the port.
let requestsSeen = 0;

function raise(slot: number, bits: number): void {
  // Pending bits the main thread has not taken yet were signalled already, and it takes them
  // all at once: only a word going from 0 needs the interrupt word bumped (and a wake-up).
  if (Atomics.or(pending, PENDING_BASE + slot * PENDING_STRIDE, bits) === 0) raised = true;
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

/** The vhost-user layer once loaded; the reason it could not be, once that is known. */
let vhostUser: VhostUserSys | null = null;
let vhostUserError: string | null = null;

/**
 * Loads @mdev/vhost-user, an optional peer dependency: only a map with fd regions needs it, and
 * mvnet works without it (or without its addon built) for everything else.
 */
async function loadVhostUser(): Promise<void> {
  try {
    vhostUser = (await import(data.vhostUser)) as VhostUserSys;
  } catch (err) {
    vhostUserError = err instanceof Error ? err.message : String(err);
  }
}

/** Whether `req` needs @mdev/vhost-user, and the import has not been tried yet. */
function awaitsVhostUser(req: OffloadRequest): boolean {
  return (
    req.op === 'setMap' &&
    vhostUser === null &&
    vhostUserError === null &&
    req.regions.some((r) => 'fd' in r)
  );
}

/** Unmaps what this thread mapped for a slot's map. */
function unmapAll(buffers: ArrayBuffer[]): void {
  for (const b of buffers) vhostUser?.unmap(b);
  buffers.length = 0;
}

/**
 * The bytes of a map region in this thread: its SharedArrayBuffer, or the fd mapped here (the
 * mapping is pushed on `mapped`, so it is unmapped with the map, or when a later region fails).
 */
function regionBytes(r: OffloadMapRegion, mapped: ArrayBuffer[]): Uint8Array {
  if ('buffer' in r) return new Uint8Array(r.buffer, r.byteOffset, r.length);
  if (vhostUser === null) {
    throw new RequestError(
      -EOPNOTSUPP,
      `a map region given by fd needs @mdev/vhost-user, which did not load (${vhostUserError})`,
    );
  }
  let buffer: ArrayBuffer;
  try {
    buffer = vhostUser.mapShared(r.fd, { length: r.byteLength });
  } catch (err) {
    const errno = (err as { errno?: unknown }).errno;
    throw new RequestError(
      typeof errno === 'number' && errno < 0 ? errno : -EINVAL,
      `cannot map fd ${r.fd} of a map region: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  mapped.push(buffer);
  if (r.byteOffset + r.length > buffer.byteLength) {
    throw new RequestError(-EINVAL, `a map region runs past its fd's ${r.byteLength} bytes`);
  }
  return new Uint8Array(buffer, r.byteOffset, r.length);
}

/** Replaces a slot's DMA map (`setMap` request); the previous map's fd mappings go. */
function setMap(s: Slot, req: Extract<OffloadRequest, { op: 'setMap' }>): void {
  // A ready queue's areas were translated when it came up: the main thread refuses this too.
  if (s.vqs.some((vq) => vq.ready)) throw new RequestError(-EBUSY, 'a queue is ready');
  const mapped: ArrayBuffer[] = [];
  let map: MdevVirtioMapEntry[] | null = null;
  try {
    if (req.entries !== null) {
      const regions = req.regions.map((r) => ({ u8: regionBytes(r, mapped) }));
      map = req.entries.map((e) => {
        const region = regions[e.region];
        if (!region) throw new RequestError(-EINVAL, `no map region ${e.region}`);
        return { iova: e.iova, size: e.size, region, offset: e.offset, perm: e.perm };
      });
    }
  } catch (err) {
    unmapAll(mapped);
    throw err;
  }
  s.iotlb.setMap(map);
  // Without a map the queues read the host memory directly (see MvnetQueue.readThrough).
  for (const vq of s.vqs) vq.readThrough(map === null ? space : s.iotlb);
  // No queue is ready, so nothing reads the old map's memory any more.
  unmapAll(s.mapped);
  s.mapped = mapped;
}

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
    iotlb: new IotlbAddressSpace(space),
    mapped: [],
  };
  slots.set(slot, s);
  publish(slot, stats);
  return s;
}

function publish(slot: number, stats: MvnetStats): void {
  const base = STAT_BASE + slot * STAT_STRIDE;
  for (let k = 0; k < STAT_KEYS.length; k++) statsOut[base + k] = stats[STAT_KEYS[k]!];
}

function handle(req: OffloadRequest): number {
  if (req.op === 'attach') {
    // A slot reused without a detach (it cannot happen) would otherwise keep its mappings.
    const old = slots.get(req.slot);
    if (old) unmapAll(old.mapped);
    attach(req.slot);
    return 0;
  }
  const s = slots.get(req.slot);
  if (!s) return -EINVAL;
  switch (req.op) {
    case 'detach':
      slots.delete(req.slot);
      unmapAll(s.mapped);
      return 0;
    case 'setMap':
      setMap(s, req);
      return 0;
    case 'ready': {
      const vq = s.vqs[req.queue];
      if (!vq) return -EINVAL;
      const err = vq.initRing(req.config, req.lastAvail);
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

/** Handles `req` and answers it; a failure's reason goes first, on the port. */
function answer(req: OffloadRequest, stopped = false): void {
  let value: number;
  try {
    if (stopped) throw new RequestError(-ENODEV, 'the datapath worker has stopped');
    value = handle(req);
  } catch (err) {
    if (!(err instanceof RequestError)) throw err;
    const failure: OffloadFailure = { seq: req.seq, message: err.message };
    data.port.postMessage(failure);
    value = err.errno;
  }
  Atomics.store(ctl, CTL_ACK_VALUE, value);
  Atomics.store(ctl, CTL_ACK_SEQ, req.seq);
  Atomics.notify(ctl, CTL_ACK_SEQ);
}

/**
 * Answers the requests posted so far, in order. Returns the first that needs @mdev/vhost-user
 * before it is loaded, unanswered (the later ones stay on the port): the import is
 * asynchronous, so the caller awaits it and hands the request back.
 */
function serveRequests(): OffloadRequest | null {
  // The main thread bumps CTL_REQ_SEQ after each post: reading it is a load from the doorbell's
  // line, where a look at the port would take the port's lock on every turn of the loop.
  const posted = Atomics.load(ctl, CTL_REQ_SEQ);
  if (posted === requestsSeen) return null;
  const deferred = drainRequests();
  if (deferred === null) requestsSeen = posted;
  return deferred;
}

function drainRequests(): OffloadRequest | null {
  for (let m = receiveMessageOnPort(data.port); m; m = receiveMessageOnPort(data.port)) {
    const req = m.message as OffloadRequest;
    if (awaitsVhostUser(req)) return req;
    answer(req);
  }
  return null;
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

async function main(): Promise<void> {
  while (Atomics.load(ctl, CTL_STOP) === 0) {
    // Read the doorbell before looking at the rings: a kick after this point ends the wait at
    // once.
    const seen = doorbell.load();
    const deferred = serveRequests();
    if (deferred) {
      // The main thread waits for the answer meanwhile, as for any request; the import needs
      // only this thread's event loop (and, from sources, the loader's own thread).
      await loadVhostUser();
      answer(deferred);
      continue;
    }
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
    // The main thread wakes a sleeper only: CTL_SLEEPING tells it one may be waiting.
    Atomics.store(ctl, CTL_SLEEPING, 1);
    doorbell.wait(seen, state === 'starved' ? RX_GRACE_MS : 1000);
    Atomics.store(ctl, CTL_SLEEPING, 0);
  }
  const last = drainRequests();
  if (last) answer(last, true);
  // The parent detached every slot before stopping the worker; whatever a slot still maps goes
  // now, not when this thread's heap is torn down.
  for (const s of slots.values()) unmapAll(s.mapped);
}

void main();

/**
 * The VF's engine thread: its "hardware". It applies the host's posted register writes, moves
 * frames through the rings in host memory (which it reaches as a device behind an IOMMU would:
 * the mappings the host published, or the IOMMU table the platform set for a frontend's
 * memory), raises interrupts, and sleeps on the link's attention word when there is nothing to
 * do.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type * as VhostUser from '@mdev/vhost-user';
import {
  type AddressSpace,
  GuestMemory,
  type SharedMemoryDescriptor,
  type Translation,
} from '@mdev/virtio-ring';
import { RX_GRACE_MS, VfEngine } from './engine';
import type { VfIommuEntry } from './iommu';
import {
  LINK_ATTENTION,
  LINK_IOMMU_RESULT,
  LINK_IOMMU_SEQ,
  LINK_STOP,
  LINK_STOPPED,
} from './layout';
import type { VfMapFailure, VfMapRegion, VfPlatformMessage, VfWorkerData } from './vf-protocol';

const EINVAL = 22;
const EOPNOTSUPP = 95;

const data = workerData as VfWorkerData;
// The VF's fault reports (DEVICE_NEEDS_RESET and why) are the host's to print: they go to the
// host's thread, which emits them as its own warnings, instead of to this thread's stderr.
process.emitWarning = ((warning: string | Error) =>
  parentPort?.postMessage({ warning: String(warning) })) as typeof process.emitWarning;
const link = new Int32Array(data.shared.link);
const memory = GuestMemory.fromShared(data.memory);

function addRegions(desc: SharedMemoryDescriptor): void {
  for (const r of desc.regions) {
    if (!memory.regions.some((m) => m.base === r.base)) memory.addRegion(r.base, r.buffer);
  }
}

/** Host memory as the VF reaches it; a miss first picks up the mappings the host published. */
const iommu: AddressSpace = {
  translate(addr: number, len: number, out: Translation): boolean {
    if (memory.translate(addr, len, out)) return true;
    let grew = false;
    for (let m = receiveMessageOnPort(data.iommu); m; m = receiveMessageOnPort(data.iommu)) {
      addRegions(m.message as SharedMemoryDescriptor);
      grew = true;
    }
    return grew && memory.translate(addr, len, out);
  },
};

const engine = new VfEngine(data.shared, iommu, data.init);

type MapMessage = Extract<VfPlatformMessage, { op: 'map' }>;

/** What the thread needs of @mdev/vhost-user, loaded on the first fd region. */
type VhostUserSys = Pick<typeof VhostUser, 'mapShared' | 'unmap'>;
let vhostUser: VhostUserSys | null = null;
let vhostUserError: string | null = null;
/** What this thread mapped of fds for the IOMMU table in use. */
let mapped: ArrayBuffer[] = [];

/**
 * Loads @mdev/vhost-user, an optional peer dependency: only a table with fd regions needs it,
 * and the VF works without it (or without its addon built) for everything else.
 */
async function loadVhostUser(): Promise<void> {
  try {
    vhostUser = (await import(data.vhostUser)) as VhostUserSys;
  } catch (err) {
    vhostUserError = err instanceof Error ? err.message : String(err);
  }
}

function unmapAll(buffers: ArrayBuffer[]): void {
  for (const b of buffers) vhostUser?.unmap(b);
  buffers.length = 0;
}

/** A table change that fails with a reason. */
class MapError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** A region's bytes in this thread: its SharedArrayBuffer, or its fd mapped here (onto `into`). */
function regionBytes(r: VfMapRegion, into: ArrayBuffer[]): Uint8Array {
  if ('buffer' in r) return new Uint8Array(r.buffer, r.byteOffset, r.length);
  if (vhostUser === null) {
    throw new MapError(
      -EOPNOTSUPP,
      `a map region given by fd needs @mdev/vhost-user, which did not load (${vhostUserError})`,
    );
  }
  let buffer: ArrayBuffer;
  try {
    buffer = vhostUser.mapShared(r.fd, { length: r.byteLength });
  } catch (err) {
    const errno = (err as { errno?: unknown }).errno;
    throw new MapError(
      typeof errno === 'number' && errno < 0 ? errno : -EINVAL,
      `cannot map fd ${r.fd} of a map region: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  into.push(buffer);
  if (r.byteOffset + r.length > buffer.byteLength) {
    throw new MapError(-EINVAL, `a map region runs past its fd's ${r.byteLength} bytes`);
  }
  return new Uint8Array(buffer, r.byteOffset, r.length);
}

/** Applies an IOMMU table change; the old table's fd mappings go once the engine let go. */
function setMap(msg: MapMessage): number {
  const fresh: ArrayBuffer[] = [];
  try {
    let entries: VfIommuEntry[] | null = null;
    if (msg.entries !== null) {
      const regions = msg.regions.map((r) => regionBytes(r, fresh));
      entries = msg.entries.map((e) => {
        const region = regions[e.region];
        if (!region) throw new MapError(-EINVAL, `no map region ${e.region}`);
        return { iova: e.iova, bytes: region.subarray(e.offset, e.offset + e.size) };
      });
    }
    const err = engine.setMap(entries);
    if (err < 0) throw new MapError(err, 'a queue is enabled');
  } catch (err) {
    unmapAll(fresh);
    if (!(err instanceof MapError)) throw err;
    const failure: VfMapFailure = { seq: msg.seq, message: err.message };
    data.platform.postMessage(failure);
    return err.errno;
  }
  unmapAll(mapped);
  mapped = fresh;
  return 0;
}

function answerMap(msg: MapMessage): void {
  const result = setMap(msg);
  Atomics.store(link, LINK_IOMMU_RESULT, result);
  // The result is written before the sequence number the host waits on.
  Atomics.store(link, LINK_IOMMU_SEQ, msg.seq);
  Atomics.notify(link, LINK_IOMMU_SEQ);
}

/**
 * Applies the platform's messages in order. Returns the first table change that needs
 * @mdev/vhost-user before it is loaded, not yet applied (the messages after it stay on the port):
 * the import is asynchronous, so the loop awaits it and hands the change back.
 */
function platform(): MapMessage | null {
  for (let m = receiveMessageOnPort(data.platform); m; m = receiveMessageOnPort(data.platform)) {
    const msg = m.message as VfPlatformMessage;
    if (msg.op === 'link') engine.setLink(msg.up);
    else if (msg.op === 'map') {
      const needsImport =
        vhostUser === null && vhostUserError === null && msg.regions.some((r) => 'fd' in r);
      if (needsImport) return msg;
      answerMap(msg);
    }
  }
  return null;
}

async function main(): Promise<void> {
  while (Atomics.load(link, LINK_STOP) === 0) {
    // Read the attention word before looking at anything: a write or kick after this point ends
    // the wait below at once.
    const seen = Atomics.load(link, LINK_ATTENTION);
    const deferred = platform();
    if (deferred) {
      // The host waits for the answer meanwhile; the import needs only this thread's loop.
      await loadVhostUser();
      answerMap(deferred);
      continue;
    }
    engine.serviceMmio();
    const result = engine.run();
    engine.publish();
    engine.flushInterrupts();
    // Idle: sleep until the host writes or kicks. Starved (a frame waits for a receive buffer):
    // sleep until the driver's kick, or until the grace is over and the frame is dropped.
    if (result === 'idle') Atomics.wait(link, LINK_ATTENTION, seen, 1000);
    else if (result === 'starved') Atomics.wait(link, LINK_ATTENTION, seen, RX_GRACE_MS);
  }
  // Powered off: the engine no longer reads the table, so its mappings go now, and the host
  // (waiting in close) hears of it.
  unmapAll(mapped);
  Atomics.store(link, LINK_STOP, LINK_STOPPED);
  Atomics.notify(link, LINK_STOP);
}

void main();

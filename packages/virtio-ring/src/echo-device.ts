import { RingForward } from './forward';
import type { SharedMemoryDescriptor } from './memory';
import { GuestMemory } from './memory';
import { NotifyWord } from './notify';
import { createVringh } from './vringh-packed';

/** What a datapath worker needs to serve one queue (all of it structured-cloneable). */
export interface EchoDeviceParams {
  memory: SharedMemoryDescriptor;
  num: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  eventIdx: boolean;
  /** A packed ring (VIRTIO_F_RING_PACKED) rather than a split one. */
  packed?: boolean;
  /** Control words: [0] doorbell (driver -> device), [1] interrupt (device -> driver), [2] stop. */
  control: SharedArrayBuffer;
  /** Chains completed between interrupt checks. */
  batch?: number;
}

/** How the device loop ended. */
export interface EchoDeviceResult {
  chains: number;
  bytes: number;
  error: number;
}

export const CONTROL_DOORBELL = 0;
export const CONTROL_INTERRUPT = 4;
export const CONTROL_STOP = 8;
export const CONTROL_SIZE = 12;

/**
 * A device datapath for tests and benchmarks: every chain's readable bytes are copied into its
 * writable segments (a loopback), and the chain completes with the bytes written: the forward
 * step with one ring for both ends. Runs until the stop word is set or the ring breaks; blocks on
 * the doorbell when idle, so it belongs in a worker thread.
 */
export function runEchoDevice(p: EchoDeviceParams): EchoDeviceResult {
  const memory = GuestMemory.fromShared(p.memory);
  const vrh = createVringh(memory, p.packed === true);
  const result: EchoDeviceResult = { chains: 0, bytes: 0, error: 0 };
  const err = vrh.init(p);
  if (err < 0) return { ...result, error: err };
  const doorbell = new NotifyWord(p.control, CONTROL_DOORBELL);
  const irq = new NotifyWord(p.control, CONTROL_INTERRUPT);
  const stop = new Int32Array(p.control, CONTROL_STOP, 1);
  // The interrupt is checked after every run, so a run's budget is the batch.
  const batch = p.batch ?? 64;
  const fwd = new RingForward();
  while (Atomics.load(stop, 0) === 0) {
    // Read the doorbell count before looking at the ring: a kick after this ends the wait below.
    const seen = doorbell.load();
    const rc = fwd.run(vrh, vrh, batch);
    result.chains += fwd.txChains;
    result.bytes += fwd.rxBytes;
    if (fwd.txNotify) irq.signal();
    if (rc === 'broken') {
      result.error = fwd.error;
      break;
    }
    // Idle: kicks are asked for and the ring was found empty after; sleep until a kick.
    if (rc === 'idle') doorbell.wait(seen, 100);
  }
  return result;
}

import type { SharedMemoryDescriptor } from './memory';
import { GuestMemory } from './memory';
import { NotifyWord } from './notify';
import { Vringh, VringhIov } from './vringh';

/** What a datapath worker needs to serve one queue (all of it structured-cloneable). */
export interface EchoDeviceParams {
  memory: SharedMemoryDescriptor;
  num: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  eventIdx: boolean;
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
 * writable segments (a loopback), and the chain completes with the bytes written. Runs until
 * the stop word is set or the ring breaks; blocks on the doorbell when idle, so it belongs in a
 * worker thread.
 */
export function runEchoDevice(p: EchoDeviceParams): EchoDeviceResult {
  const memory = GuestMemory.fromShared(p.memory);
  const vrh = new Vringh(memory);
  const result: EchoDeviceResult = { chains: 0, bytes: 0, error: 0 };
  const err = vrh.init(p);
  if (err < 0) return { ...result, error: err };
  const doorbell = new NotifyWord(p.control, CONTROL_DOORBELL);
  const irq = new NotifyWord(p.control, CONTROL_INTERRUPT);
  const stop = new Int32Array(p.control, CONTROL_STOP, 1);
  const batch = p.batch ?? 64;
  const r = new VringhIov();
  const w = new VringhIov();
  vrh.notifyDisable();
  while (Atomics.load(stop, 0) === 0) {
    let n = 0;
    let rc = vrh.getDesc(r, w);
    for (; rc === 1; rc = vrh.getDesc(r, w)) {
      const len = vrh.copy(r, w);
      vrh.complete(vrh.head, len);
      result.chains++;
      result.bytes += len;
      if (++n === batch) {
        n = 0;
        if (vrh.needNotify() === 1) irq.signal();
      }
    }
    if (vrh.needNotify() === 1) irq.signal();
    if (rc < 0) {
      result.error = rc;
      break;
    }
    // Idle: read the doorbell count, ask for kicks, re-check the ring, then sleep until a kick.
    const seen = doorbell.load();
    if (vrh.notifyEnable()) doorbell.wait(seen, 100);
    vrh.notifyDisable();
  }
  return result;
}

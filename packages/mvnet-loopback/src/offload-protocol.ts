/**
 * What the main thread and the datapath worker share (worker mode): a control block of 32-bit
 * words, one pending-interrupt word and a row of counters per instance slot, all in
 * SharedArrayBuffers, plus requests posted on a MessagePort that the worker reads synchronously
 * (and on which it posts why a request failed, when the errno alone would not say).
 */
import type { MessagePort } from 'node:worker_threads';
import type { AnyVringhConfig, SharedMemoryDescriptor } from '@mdev/virtio-ring';
import type { MvnetStats, NetHdrLayout } from './datapath';

/**
 * Control words (Int32 indexes). The words the main thread writes and those the worker writes
 * are on cache lines of their own, 128 bytes from each other and from the buffer's ends (a
 * SharedArrayBuffer's memory need not start on a 64-byte line): a store by one side then never
 * takes from the other a line that side polls. Per burst the main thread writes the doorbell
 * line (the worker reads it), and the worker writes its line only to raise an interrupt or to
 * go to sleep.
 */
export const CTL_DOORBELL = 32; // main -> worker: bumped by every kick and request
export const CTL_STOP = 33; // main -> worker: leave the loop
export const CTL_REQ_SEQ = 34; // main -> worker: the last request posted
export const CTL_IRQ = 72; // worker -> main: bumped when pending bits were set
export const CTL_ACK_SEQ = 73; // worker -> main: the last request handled
export const CTL_ACK_VALUE = 74; // worker -> main: its result
export const CTL_SLEEPING = 75; // worker -> main: 1 while it waits on the doorbell
export const CTL_WORDS = 112;

/**
 * The pending word of slot `s` is `PENDING_BASE + s * PENDING_STRIDE` (Int32 indexes), a line
 * of its own per slot, away from the buffer's ends.
 */
export const PENDING_BASE = 32;
export const PENDING_STRIDE = 16;
export const pendingWords = (slots: number): number => PENDING_BASE * 2 + slots * PENDING_STRIDE;

/** Pending bits of a slot: queue interrupts and a ring fault. */
export const PENDING_RX = 1 << 0;
export const PENDING_TX = 1 << 1;
export const PENDING_BROKEN = 1 << 2;

/** The counters of a slot, in this order. */
export const STAT_KEYS: readonly (keyof MvnetStats)[] = [
  'txPackets',
  'txBytes',
  'rxPackets',
  'rxBytes',
  'txDropped',
  'rxTruncated',
  'ringErrors',
];
/**
 * A slot's counters start at Float64 index `STAT_BASE + slot * STAT_STRIDE`: a 64-byte row the
 * worker writes after each run, away from the buffer's ends (the main thread reads it only when
 * asked for the counters).
 */
export const STAT_STRIDE = 8;
export const STAT_BASE = 16;
export const statWords = (slots: number): number => STAT_BASE * 2 + slots * STAT_STRIDE;

/**
 * How the worker reaches a region of a DMA map: the region's SharedArrayBuffer itself, or the fd
 * whose pages `[0, byteLength)` mapped shared are the region's buffer (the worker maps it with
 * @mdev/vhost-user's `mapShared`: external memory cannot be posted). Either way the region's
 * bytes are `[byteOffset, byteOffset + length)` of that buffer.
 */
export type OffloadMapRegion =
  | { buffer: SharedArrayBuffer; byteOffset: number; length: number }
  | { fd: number; byteLength: number; byteOffset: number; length: number };

/** A map entry as posted: its region is an index into the request's `regions`. */
export interface OffloadMapEntry {
  iova: number;
  size: number;
  region: number;
  offset: number;
  perm: number;
}

/** A failed request's reason, posted by the worker before it answers the errno. */
export interface OffloadFailure {
  seq: number;
  message: string;
}

/** Requests to the worker; each is answered through CTL_ACK_SEQ / CTL_ACK_VALUE. */
export type OffloadRequest =
  | { seq: number; op: 'attach'; slot: number }
  | { seq: number; op: 'detach'; slot: number }
  | {
      seq: number;
      op: 'ready';
      slot: number;
      queue: number;
      config: AnyVringhConfig;
      /** The vq state to start from (Vringh.init zeroes it). */
      lastAvail: number;
      hdr: NetHdrLayout;
    }
  | { seq: number; op: 'unready'; slot: number; queue: number }
  /** Every queue of the slot stops and forgets its place in the ring (a device reset). */
  | { seq: number; op: 'reset'; slot: number }
  | { seq: number; op: 'getState'; slot: number; queue: number }
  | { seq: number; op: 'setState'; slot: number; queue: number; value: number }
  /** Replaces the slot's DMA map; `entries` null clears it. */
  | {
      seq: number;
      op: 'setMap';
      slot: number;
      regions: OffloadMapRegion[];
      entries: OffloadMapEntry[] | null;
    };

/** What the worker starts with. */
export interface OffloadWorkerData {
  control: SharedArrayBuffer;
  pending: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  memory: SharedMemoryDescriptor;
  port: MessagePort;
  /**
   * Regions host memory grew by, posted as soon as they exist (before the driver can hand out an
   * address in them); the worker reads this port when an address does not translate.
   */
  memoryPort: MessagePort;
  budget: number;
  /** The module the worker loads `mapShared` and `unmap` from, when an fd region arrives. */
  vhostUser: string;
}

/**
 * The vhost-user backend of one mdev: what vhost_vdpa (drivers/vhost/vdpa.c) does for a vDPA
 * device, over a unix socket instead of ioctls. The frontend (QEMU, DPDK's virtio-user) hands
 * over its memory and rings; every request becomes calls of the device's mdev_virtio ops, and
 * the device never learns that its driver is in another process:
 *
 * - SET_MEM_TABLE maps the regions and becomes the device's DMA map (`setMap`, guest addresses
 *   as IOVAs); ring addresses, given as frontend virtual addresses, are translated to guest
 *   addresses through the table.
 * - SET_VRING_NUM/ADDR/BASE are kept per ring; a ring starts (setVqNum, setVqAddress,
 *   setVqState, setVqReady) once it has its kick fd, is enabled and the features are set, and
 *   GET_VRING_BASE stops it and answers its state (getVqState).
 * - The kick fd is watched on the event loop and drives `kickVq`; the device's vq callback
 *   signals the call fd.
 * - A frontend that goes away resets the device and the next one is served.
 */
import { unlinkSync } from 'node:fs';
import { KernelError } from '@mdev/driver-core';
import type { MdevDevice } from '@mdev/mdev-core';
import { type MdevVirtioOps, mdevVirtioGetOps, mdevVirtioSetMap } from '@mdev/mdev-virtio';
import {
  acceptUnix,
  connectUnix,
  type DecodedRequest,
  drainEventFd,
  encodeConfigReply,
  encodeReplyAck,
  encodeU64Reply,
  encodeVringBaseReply,
  type Fd,
  type FdWatch,
  isEventFd,
  POLLIN,
  signalEventFd,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_MAX_CONFIG_SIZE,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  VHOST_VRING_F_LOG,
  VhostUserConnection,
  VhostUserProtocolError,
  type VhostUserRequest,
  type VhostVringAddr,
  watchFd,
} from '@mdev/vhost-user';
import { FrontendMemory } from './frontend-memory';
import { listenReplacingStale } from './socket';

/** Device status bits (virtio 1.2, 2.1). */
const S_ACKNOWLEDGE = 1;
const S_DRIVER = 2;
const S_DRIVER_OK = 4;
const S_FEATURES_OK = 8;
const S_NEEDS_RESET = 0x40;
const S_FAILED = 0x80;

/** VIRTIO_F_ACCESS_PLATFORM: the frontend's memory table is the platform's translation. */
const F_ACCESS_PLATFORM = 1n << 33n;
/**
 * VIRTIO_F_RING_PACKED: served when the device offers it. A packed ring's three areas are the
 * descriptor ring and the two 4-byte event suppression structures (virtio 1.2 2.8.10), and its
 * vring base carries the wrap counters (vhost-user.rst, "Vring descriptor indices for packed
 * virtqueues"): bits 0-14 the next avail index, bit 15 the avail wrap counter, bits 16-30 the
 * next used index, bit 31 the used wrap counter. A frontend that gives the low half only (DPDK's
 * vhost encodes one half) means the same for both.
 */
const F_RING_PACKED = 1n << 34n;
/** The vring base of a packed ring nothing was set for: index 0 of lap 1, both halves. */
const PACKED_BASE_START = 0x8000_8000;
/** The protocol features bit in the virtio feature word (it is no virtio feature). */
const F_PROTOCOL_FEATURES = 1n << VHOST_USER_F_PROTOCOL_FEATURES;

/** The protocol features this backend speaks. */
export const VHOST_MDEV_PROTOCOL_FEATURES =
  (1n << VHOST_USER_PROTOCOL_F_MQ) |
  (1n << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
  (1n << VHOST_USER_PROTOCOL_F_CONFIG) |
  (1n << VHOST_USER_PROTOCOL_F_STATUS);

/** What happened on a backend, for a log or a test. */
export type VhostMdevEvent =
  | { type: 'listening'; path: string }
  | { type: 'connected' }
  | { type: 'disconnected'; reason: string }
  | { type: 'refused'; request: string; error: string }
  | { type: 'ring-started'; index: number; layout: 'split' | 'packed' }
  | { type: 'ring-stopped'; index: number; state: number };

export interface VhostMdevBackendOptions {
  /** The socket path. */
  path: string;
  /** Connect to a frontend that listens on `path` (QEMU `server=on`) instead of listening. */
  client?: boolean;
  /** In client mode, how long to wait between connection attempts; default 1000 ms. */
  reconnectMs?: number;
  /** Called on every event (connections, refused requests, rings started and stopped). */
  onEvent?: (event: VhostMdevEvent) => void;
  /**
   * How many queues the device has (the mdev_virtio ops do not say; vhost_vdpa has it from the
   * vDPA device): GET_QUEUE_NUM's answer and the rings served. Default 2, virtio-net's receiveq1
   * and transmitq1.
   */
  queues?: number;
}

/** One ring as the frontend describes it. */
interface Ring {
  num: number;
  addr: VhostVringAddr | null;
  base: number;
  /** SET_VRING_BASE (or a stop) gave `base`; a fresh packed ring is not at 0. */
  baseSet: boolean;
  kick: Fd | null;
  call: Fd | null;
  err: Fd | null;
  /**
   * SET_VRING_ENABLE's word; null until it comes, and then a ring is enabled unless
   * VHOST_USER_F_PROTOCOL_FEATURES was negotiated (vhost-user.rst, "Ring states").
   */
  enabled: boolean | null;
  started: boolean;
  kickWatch: FdWatch | null;
  /** Kicks taken and interrupts signalled, for the counters a user reads. */
  kicks: number;
  calls: number;
}

function newRing(): Ring {
  return {
    num: 0,
    addr: null,
    base: 0,
    baseSet: false,
    kick: null,
    call: null,
    err: null,
    enabled: null,
    started: false,
    kickWatch: null,
    kicks: 0,
    calls: 0,
  };
}

/** The per-queue counters of `VhostMdevBackend.stats`. */
export interface VhostMdevQueueStats {
  index: number;
  started: boolean;
  kicks: number;
  calls: number;
}

/**
 * Serves one mdev on a vhost-user socket: one frontend at a time, the next served after the
 * last goes. `start()` listens (or connects); `stop()` ends the session, resets the device and
 * removes the socket file.
 */
export class VhostMdevBackend {
  readonly mdev: MdevDevice;
  readonly path: string;
  readonly client: boolean;
  readonly #ops: MdevVirtioOps;
  readonly #onEvent: (event: VhostMdevEvent) => void;
  readonly #reconnectMs: number;
  readonly #queues: number;

  #listener: Fd | null = null;
  #listenWatch: FdWatch | null = null;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #conn: VhostUserConnection | null = null;
  #connWatch: FdWatch | null = null;
  #stopped = true;

  // Per-session state.
  /** The device's features (as the device got them), null until SET_FEATURES. */
  #features: bigint | null = null;
  /** The frontend's SET_FEATURES word, with the protocol features bit. */
  #acked = 0n;
  #protocolFeatures = 0n;
  /** The status the frontend last wrote (SET_STATUS): what GET_STATUS reads back. */
  #frontendStatus = 0;
  #memory: FrontendMemory | null = null;
  #rings: Ring[] = [];

  constructor(mdev: MdevDevice, options: VhostMdevBackendOptions) {
    this.mdev = mdev;
    this.path = options.path;
    this.client = options.client === true;
    this.#ops = mdevVirtioGetOps(mdev);
    this.#onEvent = options.onEvent ?? (() => {});
    this.#reconnectMs = options.reconnectMs ?? 1000;
    this.#queues = options.queues ?? 2;
    if (!Number.isInteger(this.#queues) || this.#queues < 1 || this.#queues > 256) {
      throw new RangeError(`vhost_mdev: ${this.#queues} queues`);
    }
  }

  /** Whether a frontend is connected now. */
  get connected(): boolean {
    return this.#conn !== null;
  }

  /** Kicks and interrupts per ring of the current session. */
  get stats(): VhostMdevQueueStats[] {
    return this.#rings.map((r, index) => ({
      index,
      started: r.started,
      kicks: r.kicks,
      calls: r.calls,
    }));
  }

  /** Listens on the socket (or starts connecting, in client mode). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.client) {
      this.#tryConnect();
      return;
    }
    this.#listener = listenReplacingStale(this.path);
    this.#listenWatch = watchFd(this.#listener, POLLIN, () => this.#accept());
    this.#onEvent({ type: 'listening', path: this.path });
  }

  /** Ends the session (the device is reset), stops listening and removes the socket file. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#disconnect('the backend stopped');
    this.#listenWatch?.stop();
    this.#listenWatch = null;
    if (this.#listener !== null) {
      this.#listener.close();
      this.#listener = null;
      try {
        // Only the file this backend made: another may have replaced it meanwhile, but the
        // path is ours by contract (one backend per socket path).
        unlinkSync(this.path);
      } catch {
        // Already gone.
      }
    }
  }

  #tryConnect(): void {
    this.#reconnectTimer = null;
    if (this.#stopped || this.#conn !== null) return;
    try {
      this.#serve(connectUnix(this.path));
    } catch {
      this.#reconnectTimer = setTimeout(() => this.#tryConnect(), this.#reconnectMs);
    }
  }

  #accept(): void {
    const listener = this.#listener;
    if (listener === null) return;
    for (;;) {
      const sock = acceptUnix(listener);
      if (sock === null) return;
      // One frontend at a time: a second is turned away (it sees the socket close).
      if (this.#conn !== null) sock.close();
      else this.#serve(sock);
    }
  }

  #serve(sock: Fd): void {
    this.#conn = new VhostUserConnection(sock, { maxFds: VHOST_MEMORY_BASELINE_NREGIONS });
    this.#protocolFeatures = 0n;
    this.#frontendStatus = 0;
    this.#rings = Array.from({ length: this.#queues }, () => newRing());
    this.#resetDevice(true);
    this.#ops.setConfigCb(this.mdev, { callback: () => this.#configChanged(), private: null });
    this.#connWatch = watchFd(sock, POLLIN, () => this.#readable());
    this.#onEvent({ type: 'connected' });
  }

  #readable(): void {
    const conn = this.#conn;
    if (conn === null) return;
    for (;;) {
      let msg: DecodedRequest | null;
      try {
        msg = conn.receiveRequest({ maxRegions: VHOST_MEMORY_BASELINE_NREGIONS });
      } catch (err) {
        this.#disconnect(err instanceof Error ? err.message : String(err));
        return;
      }
      if (msg === null) {
        if (conn.ended) this.#disconnect('the frontend closed the socket');
        return;
      }
      if (!this.#handle(conn, msg)) return;
      if (this.#conn !== conn) return;
    }
  }

  /** Serves one request; false when the session ended. */
  #handle(conn: VhostUserConnection, msg: DecodedRequest): boolean {
    const ack = msg.needReply && this.#has(VHOST_USER_PROTOCOL_F_REPLY_ACK);
    try {
      const reply = this.#request(msg.body);
      if (reply !== null) conn.send(reply);
      else if (ack) conn.send(encodeReplyAck(msg.request, 0));
      return true;
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.#onEvent({ type: 'refused', request: msg.body.type, error });
      const errno = err instanceof KernelError ? -err.errno : 5; // EIO
      if (ack && !(err instanceof VhostUserProtocolError)) {
        try {
          conn.send(encodeReplyAck(msg.request, errno));
          return true;
        } catch {
          // Fall through: a frontend that does not read its replies is dropped.
        }
      }
      // Without a reply the frontend cannot learn of the failure, and its idea of the device
      // would differ from the device's: the session ends, as DPDK's vhost ends it.
      this.#disconnect(`${msg.body.type}: ${error}`);
      return false;
    }
  }

  #has(protocolFeature: bigint): boolean {
    return (this.#protocolFeatures & (1n << protocolFeature)) !== 0n;
  }

  #ring(index: number): Ring {
    const ring = this.#rings[index];
    if (ring === undefined) {
      throw new KernelError('EINVAL', `vhost_mdev: ring ${index}, the device has ${this.#queues}`);
    }
    return ring;
  }

  /** The features offered to the frontend. */
  #offered(): bigint {
    const device = this.#ops.getFeatures(this.mdev);
    return (device & ~F_ACCESS_PLATFORM) | F_PROTOCOL_FEATURES;
  }

  /** Runs a request against the device; returns its reply, or null when it has none. */
  #request(body: VhostUserRequest): ReturnType<typeof encodeU64Reply> | null {
    const { mdev } = this;
    const ops = this.#ops;
    switch (body.type) {
      case 'SET_OWNER':
        return null;
      case 'RESET_OWNER':
        this.#stopRings();
        this.#resetDevice(true);
        return null;
      case 'GET_FEATURES':
        return encodeU64Reply(1, this.#offered());
      case 'SET_FEATURES':
        this.#setFeatures(body.features);
        return null;
      case 'GET_PROTOCOL_FEATURES':
        return encodeU64Reply(15, VHOST_MDEV_PROTOCOL_FEATURES);
      case 'SET_PROTOCOL_FEATURES':
        if ((body.features & ~VHOST_MDEV_PROTOCOL_FEATURES) !== 0n) {
          throw new KernelError(
            'EINVAL',
            `vhost_mdev: protocol features 0x${body.features.toString(16)} not offered`,
          );
        }
        this.#protocolFeatures = body.features;
        return null;
      case 'GET_QUEUE_NUM':
        return encodeU64Reply(17, this.#queues);
      case 'GET_MAX_MEM_SLOTS':
        return encodeU64Reply(36, VHOST_MEMORY_BASELINE_NREGIONS);
      case 'SET_MEM_TABLE':
        this.#setMemTable(body.regions);
        return null;
      case 'SET_VRING_NUM': {
        const ring = this.#stoppedRing(body.index, 'SET_VRING_NUM');
        const max = ops.getVqNumMax(mdev);
        // A packed ring may have any size up to the device's maximum (virtio 1.2 2.8).
        const pow2 = this.#packed() || (body.num & (body.num - 1)) === 0;
        if (body.num === 0 || body.num > max || !pow2) {
          throw new KernelError(
            'EINVAL',
            `vhost_mdev: ring ${body.index} size ${body.num} (a power of two up to ${max})`,
          );
        }
        ring.num = body.num;
        return null;
      }
      case 'SET_VRING_ADDR': {
        const ring = this.#stoppedRing(body.index, 'SET_VRING_ADDR');
        if ((body.flags & VHOST_VRING_F_LOG) !== 0) {
          throw new KernelError('EOPNOTSUPP', 'vhost_mdev: dirty page logging is not supported');
        }
        ring.addr = { ...body };
        return null;
      }
      case 'SET_VRING_BASE': {
        const ring = this.#stoppedRing(body.index, 'SET_VRING_BASE');
        if (body.num > (this.#packed() ? 0xffff_ffff : 0xffff)) {
          throw new KernelError('EINVAL', `vhost_mdev: ring ${body.index} base ${body.num}`);
        }
        ring.base = body.num;
        ring.baseSet = true;
        return null;
      }
      case 'GET_VRING_BASE': {
        const ring = this.#ring(body.index);
        // Kept: a second GET_VRING_BASE, or a start without SET_VRING_BASE, goes on from there.
        if (ring.started) this.#stopKeeping(ring, body.index);
        const state = ring.base;
        // The ring is stopped: its kick fd is done with (vhost-user.rst, "Starting and stopping
        // rings").
        ring.kick?.close();
        ring.kick = null;
        return encodeVringBaseReply(body.index, state);
      }
      case 'SET_VRING_KICK': {
        const ring = this.#fdRing(body.index, body.fd);
        if (body.fd === null) {
          throw new KernelError('EOPNOTSUPP', 'vhost_mdev: rings without a kick fd (polling)');
        }
        // A running ring gets a new kick fd: it starts again where it stopped.
        if (ring.started) this.#stopKeeping(ring, body.index);
        ring.kick?.close();
        ring.kick = body.fd;
        this.#maybeStart(body.index);
        return null;
      }
      case 'SET_VRING_CALL': {
        const ring = this.#fdRing(body.index, body.fd);
        ring.call?.close();
        ring.call = body.fd;
        return null;
      }
      case 'SET_VRING_ERR': {
        const ring = this.#fdRing(body.index, body.fd);
        ring.err?.close();
        ring.err = body.fd;
        return null;
      }
      case 'SET_VRING_ENABLE': {
        const ring = this.#ring(body.index);
        ring.enabled = body.enable;
        if (body.enable) this.#maybeStart(body.index);
        else if (ring.started) this.#stopKeeping(ring, body.index);
        return null;
      }
      case 'GET_CONFIG': {
        if (body.size > VHOST_USER_MAX_CONFIG_SIZE) {
          throw new KernelError('EINVAL', `vhost_mdev: config read of ${body.size} bytes`);
        }
        const data = new Uint8Array(body.size);
        ops.getConfig(mdev, body.offset, data);
        return encodeConfigReply(body, data);
      }
      case 'SET_STATUS':
        this.#setStatus(body.status);
        return null;
      case 'GET_STATUS':
        return encodeU64Reply(40, this.#statusForFrontend());
    }
  }

  /**
   * The ring of a SET_VRING_KICK/CALL/ERR, whose fd must be an eventfd: the backend drains and
   * signals it as one. The fd, owned from decoding on, is closed when the request is refused.
   */
  #fdRing(index: number, fd: Fd | null): Ring {
    try {
      if (fd !== null && !isEventFd(fd)) {
        throw new KernelError(
          'EINVAL',
          `vhost_mdev: ring ${index} was given an fd that is no eventfd`,
        );
      }
      return this.#ring(index);
    } catch (err) {
      fd?.close();
      throw err;
    }
  }

  #stoppedRing(index: number, what: string): Ring {
    const ring = this.#ring(index);
    if (ring.started) {
      throw new KernelError('EBUSY', `vhost_mdev: ${what} on running ring ${index}`);
    }
    return ring;
  }

  /**
   * Resets the device and drops its DMA map and the memory behind it; with `acknowledge`, a
   * driver is there again (ACKNOWLEDGE | DRIVER), as a new session begins.
   */
  #resetDevice(acknowledge: boolean): void {
    const { mdev } = this;
    const ops = this.#ops;
    ops.setStatus(mdev, 0);
    if (ops.getStatus(mdev) !== 0) {
      throw new KernelError('EIO', `vhost_mdev: ${mdev.uuid} did not reset`);
    }
    if (typeof ops.setMap === 'function') mdevVirtioSetMap(mdev, null);
    this.#memory?.close();
    this.#memory = null;
    this.#features = null;
    this.#acked = 0n;
    if (acknowledge) ops.setStatus(mdev, S_ACKNOWLEDGE | S_DRIVER);
  }

  /**
   * The device's config interrupt. When it is one of DEVICE_NEEDS_RESET (a ring fault), the
   * frontend hears of it on every ring's error fd (SET_VRING_ERR), vhost's way of saying a
   * ring broke.
   */
  #configChanged(): void {
    if ((this.#ops.getStatus(this.mdev) & S_NEEDS_RESET) === 0) return;
    for (const r of this.#rings) if (r.err !== null && !r.err.closed) signalEventFd(r.err);
  }

  #setFeatures(features: bigint): void {
    const { mdev } = this;
    const ops = this.#ops;
    const offered = this.#offered();
    if ((features & ~offered) !== 0n) {
      throw new KernelError(
        'EINVAL',
        `vhost_mdev: features 0x${(features & ~offered).toString(16)} were not offered`,
      );
    }
    const device = (features & ~F_PROTOCOL_FEATURES) | (ops.getFeatures(mdev) & F_ACCESS_PLATFORM);
    if (this.#features !== null) {
      // QEMU sends the features again at each start; the same ones change nothing.
      if (this.#features === device) return;
      if (this.#rings.some((r) => r.started)) {
        throw new KernelError('EBUSY', 'vhost_mdev: features changed while rings run');
      }
      this.#resetDevice(true);
    }
    ops.setFeatures(mdev, device);
    ops.setStatus(mdev, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    if ((ops.getStatus(mdev) & S_FEATURES_OK) === 0) {
      throw new KernelError('EINVAL', `vhost_mdev: ${mdev.uuid} refused the features`);
    }
    this.#features = device;
    this.#acked = features;
    for (let i = 0; i < this.#rings.length; i++) this.#maybeStart(i);
  }

  /**
   * SET_STATUS (VHOST_USER_PROTOCOL_F_STATUS): the frontend's view of the status. The device's
   * own status is driven by this backend (features, rings); here 0 resets and FAILED is passed
   * on, the rest is already true or becomes true as the rings start.
   */
  #setStatus(status: number): void {
    this.#frontendStatus = status & 0xff;
    if (status === 0) {
      this.#stopRings();
      this.#resetDevice(true);
      return;
    }
    if ((status & S_FAILED) !== 0) {
      this.#ops.setStatus(this.mdev, this.#ops.getStatus(this.mdev) | S_FAILED);
    }
  }

  /**
   * GET_STATUS: the status as the frontend wrote it (a reset reads back 0, as on any virtio
   * device; the device itself stays acknowledged by this backend), less FEATURES_OK while no
   * features were taken, with the device's NEEDS_RESET and FAILED.
   */
  #statusForFrontend(): number {
    let status = this.#frontendStatus;
    if (this.#features === null) status &= ~S_FEATURES_OK;
    return status | (this.#ops.getStatus(this.mdev) & (S_NEEDS_RESET | S_FAILED));
  }

  #setMemTable(regions: Parameters<typeof FrontendMemory.map>[0]): void {
    const memory = FrontendMemory.map(regions);
    // The rings running now were set up on the old table: they stop, the map changes under no
    // running queue (a device may refuse it then), and they start again on the new one.
    const running = this.#rings.flatMap((r, i) => (r.started ? [i] : []));
    for (const i of running) this.#stopKeeping(this.#rings[i]!, i);
    try {
      if (typeof this.#ops.setMap !== 'function') {
        throw new KernelError('EOPNOTSUPP', `vhost_mdev: ${this.mdev.uuid} takes no DMA map`);
      }
      mdevVirtioSetMap(this.mdev, memory.mapEntries());
    } catch (err) {
      memory.close();
      throw err;
    }
    this.#memory?.close();
    this.#memory = memory;
    // And a ring set up before the first table (kick fd and all) starts now.
    for (let i = 0; i < this.#rings.length; i++) this.#maybeStart(i);
  }

  /** Starts ring `index` when it has all it needs; a device that refuses it is an error. */
  #maybeStart(index: number): void {
    const ring = this.#rings[index]!;
    const memory = this.#memory;
    const enabled = ring.enabled ?? (this.#acked & F_PROTOCOL_FEATURES) === 0n;
    if (
      ring.started ||
      !enabled ||
      ring.kick === null ||
      ring.addr === null ||
      ring.num === 0 ||
      memory === null ||
      this.#features === null
    ) {
      return;
    }
    const { mdev } = this;
    const ops = this.#ops;
    const { num, addr } = ring;
    const packed = this.#packed();
    const desc = memory.toGuest(addr.desc, num * 16);
    const avail = memory.toGuest(addr.avail, packed ? 4 : 4 + num * 2 + 2);
    const used = memory.toGuest(addr.used, packed ? 4 : 4 + num * 8 + 2);
    if (desc === null || avail === null || used === null) {
      throw new KernelError('EFAULT', `vhost_mdev: ring ${index} lies outside the memory table`);
    }
    ops.setVqNum(mdev, index, num);
    ops.setVqAddress(mdev, index, desc, avail, used);
    // A packed ring starts in lap 1 unless its base was set (0 is lap 0, not a fresh ring).
    ops.setVqState(mdev, index, packed && !ring.baseSet ? PACKED_BASE_START : ring.base);
    ops.setVqCb(mdev, index, {
      callback: () => {
        if (ring.call !== null && !ring.call.closed) {
          ring.calls++;
          signalEventFd(ring.call);
        }
      },
      private: null,
    });
    ops.setVqReady(mdev, index, true);
    if (!ops.getVqReady(mdev, index)) {
      throw new KernelError('EINVAL', `vhost_mdev: the device refused ring ${index}`);
    }
    const status = ops.getStatus(mdev);
    if ((status & S_DRIVER_OK) === 0) ops.setStatus(mdev, status | S_DRIVER_OK);
    ring.started = true;
    const kick = ring.kick;
    ring.kickWatch = watchFd(kick, POLLIN, () => {
      if (kick.closed) return;
      drainEventFd(kick);
      ring.kicks++;
      ops.kickVq(mdev, index);
    });
    this.#onEvent({ type: 'ring-started', index, layout: packed ? 'packed' : 'split' });
    // Buffers made available before the kick fd came are served now.
    ops.kickVq(mdev, index);
  }

  /** Stops a started ring and keeps its state as the base it starts again from. */
  #stopKeeping(ring: Ring, index: number): void {
    ring.base = this.#stopRing(index);
    ring.baseSet = true;
  }

  /** Whether the frontend acked VIRTIO_F_RING_PACKED. */
  #packed(): boolean {
    return this.#features !== null && (this.#features & F_RING_PACKED) !== 0n;
  }

  /** Stops a started ring and returns its state (the next avail index). */
  #stopRing(index: number): number {
    const ring = this.#rings[index]!;
    ring.kickWatch?.stop();
    ring.kickWatch = null;
    ring.started = false;
    this.#ops.setVqReady(this.mdev, index, false);
    const state = this.#ops.getVqState(this.mdev, index);
    this.#ops.setVqCb(this.mdev, index, null);
    this.#onEvent({ type: 'ring-stopped', index, state });
    return state;
  }

  #stopRings(): void {
    for (const [i, r] of this.#rings.entries()) if (r.started) this.#stopKeeping(r, i);
  }

  /** Ends the session: the device is reset, every fd of the session closed. */
  #disconnect(reason: string): void {
    const conn = this.#conn;
    if (conn === null) return;
    this.#conn = null;
    this.#connWatch?.stop();
    this.#connWatch = null;
    for (const [i, r] of this.#rings.entries()) {
      if (r.started) this.#stopRing(i);
      r.kick?.close();
      r.call?.close();
      r.err?.close();
      r.kick = r.call = r.err = null;
    }
    this.#ops.setConfigCb(this.mdev, null);
    try {
      this.#resetDevice(false);
    } catch {
      // A device that cannot reset is the device's fault; the session is over either way.
    }
    this.#memory?.close();
    conn.close();
    this.#onEvent({ type: 'disconnected', reason });
    if (this.client && !this.#stopped) {
      this.#reconnectTimer = setTimeout(() => this.#tryConnect(), this.#reconnectMs);
    }
  }
}

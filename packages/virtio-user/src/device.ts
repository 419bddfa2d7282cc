/**
 * A virtio transport whose device is a vhost-user backend (DPDK's `net_vhost`, QEMU's
 * vhost-user devices, our own `vhost_mdev`): the role DPDK's virtio-user PMD and the kernel's
 * virtio_vdpa play. The device registers on the virtio bus like any other, so virtio-net binds
 * to it unchanged; its rings and buffers live in a memfd the backend maps (SET_MEM_TABLE), its
 * doorbell is a kick eventfd and its interrupt a call eventfd watched on the event loop.
 */
import { unlinkSync } from 'node:fs';
import { KernelError, registerIrqPoll } from '@mdev/driver-core';
import {
  acceptUnix,
  connectUnix,
  createEventFd,
  drainEventFd,
  type Fd,
  type FdWatch,
  listenUnix,
  POLLHUP,
  POLLIN,
  signalEventFd,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  watchFd,
} from '@mdev/vhost-user';
import {
  randomMac,
  registerVirtioDevice,
  unregisterVirtioDevice,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_NET,
  VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS,
  VIRTIO_NET_CONFIG_MTU,
  VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_S_LINK_UP,
  type VirtioConfigOps,
  VirtioDevice,
  type VqCallback,
  virtioBreakDevice,
  vringCreateVirtqueue,
  vringDelVirtqueue,
  vringTransportFeatures,
} from '@mdev/virtio';
import { VIRTQUEUE_MAX_SIZE, type VirtqueueLike } from '@mdev/virtio-ring';
import { VhostUserClient } from './client';
import { UserRam } from './memory';

/** The protocol features this frontend uses, of those a backend offers. */
export const VIRTIO_USER_PROTOCOL_FEATURES =
  (1n << VHOST_USER_PROTOCOL_F_MQ) |
  (1n << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
  (1n << VHOST_USER_PROTOCOL_F_CONFIG) |
  (1n << VHOST_USER_PROTOCOL_F_STATUS);

const F_PROTOCOL_FEATURES = 1n << VHOST_USER_F_PROTOCOL_FEATURES;
const F_VERSION_1 = 1n << BigInt(VIRTIO_F_VERSION_1);
const F_RING_PACKED = 1n << BigInt(VIRTIO_F_RING_PACKED);
/**
 * SET_VRING_BASE of a fresh packed ring: index 0 with the wrap counter set, for the avail half
 * (bits 0-15, what DPDK's vhost reads) and the used half (bits 16-31).
 */
const PACKED_START = 0x8000_8000;
/** VHOST_F_LOG_ALL: dirty-page logging for live migration, which this frontend never asks for. */
const F_LOG_ALL = 1n << 26n;
/** What the frontend gives its driver when the backend has no config: a MAC and a link state. */
const SYNTHESIZED = (1n << BigInt(VIRTIO_NET_F_MAC)) | (1n << BigInt(VIRTIO_NET_F_STATUS));
/** The config a frontend makes up for a net backend without VHOST_USER_PROTOCOL_F_CONFIG. */
const SYNTHESIZED_CONFIG_SIZE = 12;
/** How many times reset reads the backend's status back before it gives up (as virtio-pci). */
export const VIRTIO_USER_RESET_POLL_LIMIT = 1000;

export interface VirtioUserOptions {
  /** The backend's unix socket. */
  path: string;
  /**
   * Listen on `path` and wait for the backend to connect (the backend in client mode, as QEMU's
   * `server=on`), instead of connecting to a backend that listens.
   */
  server?: boolean;
  /** How long `server` waits for the backend to connect; default 10000 ms. */
  acceptTimeoutMs?: number;
  /** Bytes of memory shared with the backend for rings and buffers; default 32 MiB. */
  memSize?: number;
  /** Queue size, a power of two up to 32768; default 256. */
  queueSize?: number;
  /**
   * The ring layout: `split` (the default) or `packed` (VIRTIO_F_RING_PACKED, which the backend
   * must offer), as DPDK's virtio-user has `packed_vq=1`.
   */
  ring?: 'split' | 'packed';
  /** The virtio device id the backend serves (vhost-user does not say); default net (1). */
  deviceId?: number;
  /** The MAC a net device reports when the backend has no config; default a random local one. */
  mac?: Uint8Array;
  /** How long a reply may take; default 5000 ms. */
  replyTimeoutMs?: number;
  /**
   * Called once when the backend goes away or breaks the protocol outside a request (a hang-up,
   * a message nobody asked for). The device's queues are broken by then; the owner removes it.
   */
  onDisconnect?: (reason: string) => void;
}

/** One ring as the backend has it: the driver's queue and its two eventfds. */
export interface VirtioUserRing {
  vq: VirtqueueLike<unknown>;
  kick: Fd;
  call: Fd;
  callWatch: FdWatch | null;
  /** Handed to the backend (SET_VRING_*) since the last DRIVER_OK. */
  started: boolean;
}

/**
 * The virtio device of a vhost-user backend. Made by `virtioUserAdd`, which registers it on the
 * virtio bus; `virtioUserRemove` takes it away and releases its memory and fds.
 */
export class VirtioUserDevice extends VirtioDevice {
  readonly socketPath: string;
  readonly userRam: UserRam;
  readonly client: VhostUserClient;
  readonly queueSize: number;
  /** What the backend offers (GET_FEATURES). */
  readonly backendFeatures: bigint;
  /** The protocol features in use (both sides have them). */
  readonly protocolFeatures: bigint;
  /** Queues the backend has (GET_QUEUE_NUM with VHOST_USER_PROTOCOL_F_MQ), else unknown. */
  readonly queueNum: number | null;
  /** The config space made up for a backend without one (null when the backend has one). */
  readonly localConfig: Uint8Array | null;
  readonly rings: (VirtioUserRing | undefined)[] = [];
  /** The status the driver last wrote. */
  status = 0;
  /** Why the backend is gone, once it is. */
  disconnectReason: string | null = null;
  private readonly onDisconnect: ((reason: string) => void) | undefined;
  private socketWatch: FdWatch | null = null;
  private stopIrqPoll: (() => void) | null = null;

  constructor(socket: Fd, options: VirtioUserOptions) {
    const userRam = new UserRam(options.memSize ?? 32 << 20);
    super({
      id: { device: options.deviceId ?? VIRTIO_ID_NET, vendor: 0 },
      config: virtioUserConfigOps,
      parent: null,
      ram: userRam.ram,
    });
    this.socketPath = options.path;
    this.userRam = userRam;
    this.onDisconnect = options.onDisconnect;
    const queueSize = options.queueSize ?? 256;
    if (
      !Number.isInteger(queueSize) ||
      queueSize < 2 ||
      queueSize > VIRTQUEUE_MAX_SIZE ||
      (queueSize & (queueSize - 1)) !== 0
    ) {
      userRam.release();
      socket.close();
      throw new KernelError('EINVAL', `virtio-user: queue size ${queueSize} (a power of two)`);
    }
    this.queueSize = queueSize;
    this.client = new VhostUserClient(socket, options.replyTimeoutMs ?? 5000);
    this.client.onFailed = (err) => this.lost(err.message);
    try {
      const c = this.client;
      const offered = c.u64({ type: 'GET_FEATURES' });
      if ((offered & F_VERSION_1) === 0n) {
        throw new KernelError('ENODEV', 'virtio-user: the backend offers no VIRTIO_F_VERSION_1');
      }
      let protocol = 0n;
      if (offered & F_PROTOCOL_FEATURES) {
        protocol = c.u64({ type: 'GET_PROTOCOL_FEATURES' }) & VIRTIO_USER_PROTOCOL_FEATURES;
        // The request that negotiates reply-acks cannot ask for one.
        c.request({ type: 'SET_PROTOCOL_FEATURES', features: protocol }, { ack: false });
        c.replyAck = (protocol & (1n << VHOST_USER_PROTOCOL_F_REPLY_ACK)) !== 0n;
      }
      this.protocolFeatures = protocol;
      c.request({ type: 'SET_OWNER' });
      this.queueNum = this.has(VHOST_USER_PROTOCOL_F_MQ)
        ? Number(c.u64({ type: 'GET_QUEUE_NUM' }))
        : null;
      const packed = options.ring === 'packed';
      if (packed && (offered & F_RING_PACKED) === 0n) {
        throw new KernelError('EOPNOTSUPP', 'virtio-user: the backend offers no packed rings');
      }
      // The frontend speaks for the backend about the address space (no IOTLB) and migration,
      // and picks the ring layout.
      this.backendFeatures =
        offered &
        ~(1n << BigInt(VIRTIO_F_ACCESS_PLATFORM)) &
        ~F_LOG_ALL &
        (packed ? ~0n : ~F_RING_PACKED);
      const isNet = this.id.device === VIRTIO_ID_NET;
      this.localConfig =
        this.has(VHOST_USER_PROTOCOL_F_CONFIG) || !isNet ? null : netConfig(options.mac);
    } catch (err) {
      this.client.close();
      userRam.release();
      throw err;
    }
  }

  /** Whether a protocol feature is in use. */
  has(bit: bigint): boolean {
    return (this.protocolFeatures & (1n << bit)) !== 0n;
  }

  /** The backend is still there (no hang-up, no broken request). */
  get connected(): boolean {
    return this.client.failed === null;
  }

  /** The features the driver sees: the backend's, and the config the frontend makes up. */
  get offeredFeatures(): bigint {
    const own = this.localConfig ? SYNTHESIZED : 0n;
    return (this.backendFeatures & ~F_PROTOCOL_FEATURES) | own;
  }

  /** Starts watching the socket for a backend that goes away. */
  watchSocket(): void {
    this.socketWatch = watchFd(this.client.conn.socket, POLLIN | POLLHUP, () => {
      // Requests are answered within the turn that sends them: anything here is a hang-up or
      // a message nobody asked for.
      let reason: string;
      try {
        const msg = this.client.conn.receive();
        if (msg === null && !this.client.conn.ended) return;
        if (msg) for (const fd of msg.fds) fd.close();
        reason = msg ? 'the backend sent a message nobody asked for' : 'the backend hung up';
      } catch (err) {
        reason = `the backend broke the protocol: ${err instanceof Error ? err.message : err}`;
      }
      this.lost(reason);
    });
  }

  /** The backend is gone: every queue breaks, the driver is told, nothing more is sent. */
  lost(reason: string): void {
    if (this.disconnectReason !== null) return;
    this.disconnectReason = reason;
    this.client.onFailed = null;
    this.client.fail('ECONNRESET', reason);
    this.stopWatches();
    virtioBreakDevice(this);
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    this.onDisconnect?.(reason);
  }

  private stopWatches(): void {
    this.stopIrqPoll?.();
    this.stopIrqPoll = null;
    this.socketWatch?.stop();
    this.socketWatch = null;
    for (const r of this.rings) {
      r?.callWatch?.stop();
      if (r) r.callWatch = null;
    }
  }

  /**
   * DRIVER_OK: the memory table, then each ring (size, base, addresses, call and kick fds,
   * enable), in the order DPDK's virtio-user starts a device.
   */
  startRings(): void {
    const c = this.client;
    c.request({ type: 'SET_MEM_TABLE', regions: this.userRam.regions });
    for (const r of this.rings) {
      if (!r || r.started) continue;
      const { vq } = r;
      const index = vq.index;
      c.request({ type: 'SET_VRING_NUM', index, num: vq.num });
      c.request({
        type: 'SET_VRING_BASE',
        index,
        num: this.features & F_RING_PACKED ? PACKED_START : 0,
      });
      c.request({
        type: 'SET_VRING_ADDR',
        index,
        flags: 0,
        // One address space: the user addresses of the memory table are its guest addresses.
        desc: vq.descAddr,
        avail: vq.availAddr,
        used: vq.usedAddr,
        log: 0,
      });
      c.request({ type: 'SET_VRING_CALL', index, fd: r.call });
      c.request({ type: 'SET_VRING_KICK', index, fd: r.kick });
      // With VHOST_USER_F_PROTOCOL_FEATURES a ring starts disabled until this.
      if (this.backendFeatures & F_PROTOCOL_FEATURES) {
        c.request({ type: 'SET_VRING_ENABLE', index, enable: true });
      }
      r.started = true;
    }
    // The call eventfd is heard in the event loop's poll phase, which a thread busy with work (a
    // sender requeuing itself) reaches only every few milliseconds: between work items the
    // used rings are looked at too, as the worker pool does for a device in another thread.
    this.stopIrqPoll ??= registerIrqPoll(() => this.pollRings());
  }

  /** Runs the callback of each started ring the backend used buffers on (vring_interrupt). */
  private pollRings(): void {
    const rings = this.rings;
    for (let i = 0; i < rings.length; i++) {
      const r = rings[i];
      if (r?.started && r.vq.moreUsed()) r.vq.interrupt();
    }
  }

  /** Stops each started ring (GET_VRING_BASE): the backend no longer touches it after the reply. */
  stopRings(): void {
    this.stopIrqPoll?.();
    this.stopIrqPoll = null;
    for (const r of this.rings) {
      if (!r?.started) continue;
      r.started = false;
      this.client.request({ type: 'GET_VRING_BASE', index: r.vq.index });
    }
  }

  /** Closes the connection and releases the memory (after the driver let go). Idempotent. */
  close(): void {
    this.stopWatches();
    for (const r of this.rings) {
      r?.kick.close();
      r?.call.close();
    }
    this.rings.length = 0;
    this.client.close();
    this.userRam.release();
  }
}

/** A virtio-net config space: the MAC, link up, one queue pair, a 1500-byte MTU. */
function netConfig(mac: Uint8Array | undefined): Uint8Array {
  const config = new Uint8Array(SYNTHESIZED_CONFIG_SIZE);
  const addr = mac ?? randomMac();
  if (addr.length !== 6) throw new KernelError('EINVAL', 'virtio-user: a MAC has 6 bytes');
  config.set(addr, VIRTIO_NET_CONFIG_MAC);
  const v = new DataView(config.buffer);
  v.setUint16(VIRTIO_NET_CONFIG_STATUS, VIRTIO_NET_S_LINK_UP, true);
  v.setUint16(VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS, 1, true);
  v.setUint16(VIRTIO_NET_CONFIG_MTU, 1500, true);
  return config;
}

function vu(vdev: VirtioDevice): VirtioUserDevice {
  if (!(vdev instanceof VirtioUserDevice))
    throw new TypeError(`${vdev.name} is not a virtio-user device`);
  return vdev;
}

function setupVq<T>(
  d: VirtioUserDevice,
  index: number,
  callback: VqCallback<T> | null,
  name: string,
): VirtqueueLike<T> {
  if (d.queueNum !== null && index >= d.queueNum) {
    throw new KernelError('ENOENT', `virtio-user: the backend has ${d.queueNum} queues`);
  }
  const kick = createEventFd();
  const call = createEventFd();
  const vq = vringCreateVirtqueue<T>(d, {
    index,
    num: d.queueSize,
    mayReduceNum: true,
    notify: () => !kick.closed && signalEventFd(kick),
    callback,
    name,
  });
  if (!vq) {
    kick.close();
    call.close();
    throw new KernelError('ENOMEM', `virtio-user: no memory for queue ${index}`);
  }
  const ring: VirtioUserRing = {
    vq: vq as VirtqueueLike<unknown>,
    kick,
    call,
    callWatch: null,
    started: false,
  };
  ring.callWatch = watchFd(call, POLLIN, () => {
    drainEventFd(call);
    vq.interrupt();
  });
  d.rings[index] = ring;
  return vq;
}

function delRing(d: VirtioUserDevice, index: number): void {
  const r = d.rings[index];
  if (!r) return;
  d.rings[index] = undefined;
  r.callWatch?.stop();
  r.kick.close();
  r.call.close();
  vringDelVirtqueue(d, r.vq);
}

/** The virtio config ops of a vhost-user backend. */
export const virtioUserConfigOps: VirtioConfigOps = {
  get(vdev, offset, buf) {
    const d = vu(vdev);
    if (d.localConfig) {
      buf.fill(0);
      if (offset < d.localConfig.length)
        buf.set(d.localConfig.subarray(offset, offset + buf.length));
      return;
    }
    const reply = d.client.request({ type: 'GET_CONFIG', offset, size: buf.length, flags: 0 });
    if (reply?.type !== 'config' || reply.offset !== offset || reply.data.length !== buf.length) {
      throw d.client.fail(
        'EPROTO',
        `GET_CONFIG of ${buf.length} bytes at ${offset}: the reply does not match`,
      );
    }
    buf.set(reply.data);
  },
  set(vdev, offset, buf) {
    const d = vu(vdev);
    if (!d.localConfig) {
      throw new KernelError('EOPNOTSUPP', 'virtio-user: the backend config is read-only here');
    }
    if (offset + buf.length > d.localConfig.length) {
      throw new KernelError('EINVAL', `virtio-user: config write past ${d.localConfig.length}`);
    }
    d.localConfig.set(buf, offset);
  },
  generation() {
    return 0;
  },
  getStatus(vdev) {
    const d = vu(vdev);
    if (!d.has(VHOST_USER_PROTOCOL_F_STATUS) || !d.connected) return d.status;
    return Number(d.client.u64({ type: 'GET_STATUS' }) & 0xffn);
  },
  setStatus(vdev, status) {
    const d = vu(vdev);
    // The backend is gone: the status is the driver's to keep (a removal writes it on its way).
    if (!d.connected) {
      d.status = status;
      return;
    }
    if (status & VIRTIO_CONFIG_S_DRIVER_OK && !(d.status & VIRTIO_CONFIG_S_DRIVER_OK)) {
      d.startRings();
    }
    if (d.has(VHOST_USER_PROTOCOL_F_STATUS)) d.client.request({ type: 'SET_STATUS', status });
    d.status = status;
  },
  reset(vdev) {
    // Reset runs on every teardown path, so it does not throw: a backend that is gone or does
    // not complete the reset leaves the queues broken, and the driver lets them go.
    const d = vu(vdev);
    d.status = 0;
    if (!d.connected) return;
    try {
      d.stopRings();
      if (!d.has(VHOST_USER_PROTOCOL_F_STATUS)) return;
      d.client.request({ type: 'SET_STATUS', status: 0 });
      for (let i = 0; i < VIRTIO_USER_RESET_POLL_LIMIT; i++) {
        if (d.client.u64({ type: 'GET_STATUS' }) === 0n) return;
      }
      process.emitWarning(
        `virtio-user: ${d.socketPath} does not complete its reset; queues broken`,
      );
    } catch (err) {
      process.emitWarning(`virtio-user: reset of ${d.socketPath} failed: ${String(err)}`);
    }
    virtioBreakDevice(d);
  },
  findVqs<T>(
    vdev: VirtioDevice,
    names: readonly (string | null)[],
    callbacks: readonly (VqCallback<T> | null)[],
  ) {
    const d = vu(vdev);
    const vqs: (VirtqueueLike<T> | null)[] = [];
    let queueIdx = 0;
    try {
      for (let i = 0; i < names.length; i++) {
        const name = names[i];
        if (name === null || name === undefined) {
          vqs.push(null);
          continue;
        }
        vqs.push(setupVq<T>(d, queueIdx++, callbacks[i] ?? null, name));
      }
    } catch (err) {
      virtioUserConfigOps.delVqs(vdev);
      throw err;
    }
    return vqs;
  },
  delVqs(vdev) {
    const d = vu(vdev);
    for (let i = 0; i < d.rings.length; i++) delRing(d, i);
  },
  getFeatures(vdev) {
    return vu(vdev).offeredFeatures;
  },
  finalizeFeatures(vdev) {
    const d = vu(vdev);
    vringTransportFeatures(d);
    const features = (d.features & d.backendFeatures) | (d.backendFeatures & F_PROTOCOL_FEATURES);
    d.client.request({ type: 'SET_FEATURES', features });
  },
  busName(vdev) {
    return vu(vdev).socketPath;
  },
};

/** Connects to `path`; ECONNREFUSED (or ENOENT) with the path when no backend listens there. */
function connectTo(path: string): Fd {
  try {
    return connectUnix(path);
  } catch (err) {
    const code = (err as { code?: string }).code === 'ENOENT' ? 'ENOENT' : 'ECONNREFUSED';
    throw new KernelError(code, `virtio-user: no vhost-user backend at ${path}: ${String(err)}`);
  }
}

/** Listens on `path` until one backend connects, then stops listening and removes the file. */
async function acceptOn(path: string, timeoutMs: number): Promise<Fd> {
  let listener: Fd;
  try {
    listener = listenUnix(path);
  } catch (err) {
    const code = (err as { code?: string }).code === 'EADDRINUSE' ? 'EADDRINUSE' : 'EACCES';
    throw new KernelError(code, `virtio-user: cannot listen on ${path}: ${String(err)}`);
  }
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const sock = acceptUnix(listener);
      if (sock !== null) return sock;
      if (Date.now() > deadline) {
        throw new KernelError('ETIMEDOUT', `virtio-user: no backend connected to ${path}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    listener.close();
    try {
      unlinkSync(path);
    } catch {
      // Gone already: nothing to clean.
    }
  }
}

/**
 * Connects to a vhost-user backend (or, with `server`, waits for one to connect), negotiates the
 * protocol, and registers the virtio device: a registered driver for its id (virtio-net for a
 * net backend) binds to it at once. KernelError when the backend is not there, does not answer,
 * or refuses the driver's features.
 */
export async function virtioUserAdd(options: VirtioUserOptions): Promise<VirtioUserDevice> {
  const socket = options.server
    ? await acceptOn(options.path, options.acceptTimeoutMs ?? 10_000)
    : connectTo(options.path);
  const dev = new VirtioUserDevice(socket, options);
  try {
    registerVirtioDevice(dev);
  } catch (err) {
    dev.close();
    throw err;
  }
  // A backend that failed a request while the driver probed (the probe fails then, but the
  // device stays registered, as in the kernel) is of no use: the add fails with its error.
  const failed = dev.client.failed;
  if (failed) {
    virtioUserRemove(dev);
    throw failed;
  }
  dev.watchSocket();
  return dev;
}

/** Unregisters the device (its driver lets go, the backend's rings stop) and closes it. */
export function virtioUserRemove(dev: VirtioUserDevice): void {
  try {
    unregisterVirtioDevice(dev);
  } finally {
    dev.close();
  }
}

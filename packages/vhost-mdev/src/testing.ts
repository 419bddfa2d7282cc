/**
 * A minimal vhost-user frontend for tests (the package's `./testing` export): memory of its own
 * in a memfd, split or packed rings in it driven by @mdev/virtio-ring, kick and call eventfds,
 * and the requests QEMU sends to bring a virtio-net device up. It runs in the same thread as the
 * backend it talks to, so every wait for a reply yields to the event loop.
 */

import { unlinkSync } from 'node:fs';
import { KernelError } from '@mdev/driver-core';
import {
  acceptUnix,
  connectUnix,
  createEventFd,
  createMemfd,
  type EncodedMessage,
  encodeRequest,
  type Fd,
  listenUnix,
  mapShared,
  requestHasReply,
  requestName,
  signalEventFd,
  unmap,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VhostUserConnection,
  type VhostUserReply,
  type VhostUserRequest,
} from '@mdev/vhost-user';
import {
  createVirtqueue,
  DmaAllocator,
  GuestMemory,
  initialVqState,
  offsetDmaOps,
  type VirtqueueLike,
} from '@mdev/virtio-ring';
import { VHOST_MDEV_PROTOCOL_FEATURES } from './backend';

/** VIRTIO_F_VERSION_1. */
const F_VERSION_1 = 1n << 32n;
/** VIRTIO_F_RING_PACKED. */
const F_RING_PACKED = 1n << 34n;
/** VIRTIO_F_IN_ORDER (virtio_config.h). */
const F_IN_ORDER = 1n << 35n;

export interface TestFrontendOptions {
  /** Bytes of the memory (a whole number of pages); default 2 MiB. */
  memSize?: number;
  /** Its guest address (what buffers carry); default 0x40000000. */
  guestBase?: number;
  /** Its address in "the frontend's address space" (what ring addresses carry); default 0x7f0000000000. */
  userBase?: number;
  /** Ring size; default 64. */
  num?: number;
  /** How long a reply may take; default 5000 ms. */
  replyTimeoutMs?: number;
}

/** One frontend connection with its memory. `close()` releases everything. */
export class TestFrontend {
  readonly conn: VhostUserConnection;
  readonly memfd: Fd;
  readonly buffer: ArrayBuffer;
  readonly memory: GuestMemory;
  readonly allocator: DmaAllocator;
  readonly guestBase: number;
  readonly userBase: number;
  readonly memSize: number;
  readonly num: number;
  readonly replyTimeoutMs: number;
  /** Per ring: its Virtqueue and eventfds, once `startRing` made them. */
  readonly rings: { vq: VirtqueueLike<number>; kick: Fd; call: Fd }[] = [];
  /**
   * The features `negotiate` set: its rings are packed with RING_PACKED, and use descriptors in
   * order with IN_ORDER.
   */
  features = 0n;

  private constructor(sock: Fd, options: TestFrontendOptions) {
    this.memSize = options.memSize ?? 2 << 20;
    this.guestBase = options.guestBase ?? 0x4000_0000;
    this.userBase = options.userBase ?? 0x7f00_0000_0000;
    this.num = options.num ?? 64;
    this.replyTimeoutMs = options.replyTimeoutMs ?? 5000;
    this.conn = new VhostUserConnection(sock);
    this.memfd = createMemfd('test-frontend', this.memSize);
    this.buffer = mapShared(this.memfd, { length: this.memSize });
    this.memory = new GuestMemory({ shared: true });
    this.memory.addRegion(this.guestBase, this.buffer);
    this.allocator = new DmaAllocator(this.memory, this.guestBase);
  }

  /** Connects to a backend listening on `path`. */
  static connect(path: string, options: TestFrontendOptions = {}): TestFrontend {
    return new TestFrontend(connectUnix(path), options);
  }

  /**
   * Listens on `path` (as QEMU with `server=on`) until a backend in client mode connects, then
   * stops listening; rejects after `timeoutMs`.
   */
  static async listen(
    path: string,
    options: TestFrontendOptions = {},
    timeoutMs = 5000,
  ): Promise<TestFrontend> {
    const listener = listenUnix(path);
    try {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const sock = acceptUnix(listener);
        if (sock !== null) return new TestFrontend(sock, options);
        if (Date.now() > deadline) throw new KernelError('EIO', `no backend connected to ${path}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } finally {
      listener.close();
      unlinkSync(path);
    }
  }

  /** The frontend's virtual address of a guest address in its memory. */
  user(guestAddr: number): number {
    return guestAddr - this.guestBase + this.userBase;
  }

  /** Sends a message as it is (for hostile tests: any bytes, any fds). */
  sendRaw(message: EncodedMessage): void {
    this.conn.send(message);
  }

  /**
   * Sends a request and, when it has a reply (or `needReply` asks for a reply-ack), waits for it.
   * A backend that closes the connection instead rejects with ECONNRESET.
   */
  async request(
    body: VhostUserRequest,
    options: { needReply?: boolean } = {},
  ): Promise<VhostUserReply | null> {
    const message = encodeRequest(body, options);
    this.conn.send(message);
    const request = new DataView(message.bytes.buffer).getUint32(0, true);
    const own = requestHasReply(request);
    if (!own && options.needReply !== true) return null;
    const deadline = Date.now() + this.replyTimeoutMs;
    for (;;) {
      const reply = this.conn.receiveReply(request, !own);
      if (reply !== null) return reply;
      if (this.conn.ended) {
        throw new KernelError('EIO', `${requestName(request)}: the backend hung up`);
      }
      if (Date.now() > deadline) {
        throw new KernelError('EIO', `${requestName(request)}: no reply`);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** A request with a 64-bit reply; its value. */
  async u64(body: VhostUserRequest): Promise<bigint> {
    const reply = await this.request(body);
    if (reply?.type !== 'u64') throw new Error(`${body.type}: not a u64 reply`);
    return reply.value;
  }

  /**
   * Negotiates as QEMU does: the backend's features (VERSION_1 and the protocol features bit
   * required, `mask` of the rest accepted), all of its protocol features, and the memory table.
   * Returns the features set.
   */
  async negotiate(mask = ~0n): Promise<bigint> {
    const offered = await this.u64({ type: 'GET_FEATURES' });
    if ((offered & F_VERSION_1) === 0n) throw new Error('the backend offers no VERSION_1');
    const protocol = await this.u64({ type: 'GET_PROTOCOL_FEATURES' });
    // No reply-ack asked: it is being negotiated by this very request.
    await this.request({
      type: 'SET_PROTOCOL_FEATURES',
      features: protocol & VHOST_MDEV_PROTOCOL_FEATURES,
    });
    await this.request({ type: 'SET_OWNER' });
    const features = offered & (mask | (1n << VHOST_USER_F_PROTOCOL_FEATURES) | F_VERSION_1);
    await this.request({ type: 'SET_FEATURES', features }, { needReply: true });
    this.features = features;
    await this.request(
      {
        type: 'SET_MEM_TABLE',
        regions: [
          {
            guestAddr: this.guestBase,
            size: this.memSize,
            userAddr: this.userBase,
            mmapOffset: 0,
            fd: this.memfd,
          },
        ],
      },
      { needReply: true },
    );
    return features;
  }

  /**
   * Creates ring `index` in the memory and hands it over (NUM, BASE, ADDR, CALL, KICK, ENABLE),
   * each request with a reply-ack. Its `notify` signals the kick eventfd. The layout is the
   * negotiated one (packed with VIRTIO_F_RING_PACKED) unless `packed` says otherwise.
   */
  async startRing(
    index: number,
    options: { eventIdx?: boolean; packed?: boolean } = {},
  ): Promise<VirtqueueLike<number>> {
    const kick = createEventFd();
    const call = createEventFd();
    // A packed ring (VIRTIO_F_RING_PACKED negotiated) starts in lap 1: QEMU's base for it.
    const packed = options.packed ?? (this.features & F_RING_PACKED) !== 0n;
    const vq = createVirtqueue<number>({
      packed,
      index,
      num: this.num,
      align: 4096,
      memory: this.memory,
      dma: offsetDmaOps(this.allocator),
      eventIdx: options.eventIdx ?? false,
      inOrder: (this.features & F_IN_ORDER) !== 0n,
      notify: () => {
        if (!kick.closed) signalEventFd(kick);
        return true;
      },
    });
    if (!vq) throw new Error(`no room for ring ${index}`);
    this.rings[index] = { vq, kick, call };
    const ack = { needReply: true };
    await this.request({ type: 'SET_VRING_NUM', index, num: vq.num }, ack);
    await this.request({ type: 'SET_VRING_BASE', index, num: initialVqState(packed) }, ack);
    await this.request(
      {
        type: 'SET_VRING_ADDR',
        index,
        flags: 0,
        desc: this.user(vq.descAddr),
        avail: this.user(vq.availAddr),
        used: this.user(vq.usedAddr),
        log: 0,
      },
      ack,
    );
    await this.request({ type: 'SET_VRING_CALL', index, fd: call }, ack);
    await this.request({ type: 'SET_VRING_KICK', index, fd: kick }, ack);
    await this.request({ type: 'SET_VRING_ENABLE', index, enable: true }, ack);
    return vq;
  }

  #closed = false;

  /** Closes the connection, the eventfds and the memory. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
    // Rings are made by index: a frontend may have made ring 1 and not ring 0.
    for (const r of this.rings) {
      if (r === undefined) continue;
      r.kick.close();
      r.call.close();
    }
    unmap(this.buffer);
    this.memfd.close();
  }
}

/**
 * The frontend side of a vhost-user connection, as DPDK's virtio-user and QEMU speak it: one
 * request at a time, each reply (or reply-ack) awaited before the next request goes out. The
 * wait blocks the thread, bounded by `replyTimeoutMs`, because the virtio config ops it serves
 * are synchronous, as they are in the kernel: a backend must run in another thread or process.
 */
import { KernelError } from '@mdev/driver-core';
import {
  encodeRequest,
  type Fd,
  POLLIN,
  pollFds,
  requestHasReply,
  requestName,
  VhostUserConnection,
  VhostUserProtocolError,
  type VhostUserReply,
  type VhostUserRequest,
} from '@mdev/vhost-user';

/** How a reply-ack's value becomes an errno: 0 is success, anything else a failure. */
function ackError(request: VhostUserRequest['type'], value: bigint): KernelError {
  return new KernelError('EIO', `vhost-user: the backend refused ${request} (status ${value})`);
}

export class VhostUserClient {
  readonly conn: VhostUserConnection;
  readonly replyTimeoutMs: number;
  /** Reply-acks were negotiated (VHOST_USER_PROTOCOL_F_REPLY_ACK): requests ask for one. */
  replyAck = false;
  /** Called once, with the error, when the connection fails (whatever request saw it). */
  onFailed: ((err: KernelError) => void) | null = null;
  #failed: KernelError | null = null;

  constructor(socket: Fd, replyTimeoutMs: number) {
    this.conn = new VhostUserConnection(socket);
    this.replyTimeoutMs = replyTimeoutMs;
  }

  /** Why the connection can no longer be used, once a request failed at the protocol level. */
  get failed(): KernelError | null {
    return this.#failed;
  }

  /**
   * Sends `body` and waits for its reply, or for its reply-ack when reply-acks are negotiated
   * (a failed ack is an EIO naming the request). Null for a request that gets neither. A backend
   * that hangs up, answers out of turn or not within the timeout fails the connection for good:
   * ECONNRESET, EPROTO or ETIMEDOUT, now and on every later request.
   */
  request(body: VhostUserRequest, options: { ack?: boolean } = {}): VhostUserReply | null {
    if (this.#failed) throw this.#failed;
    const plain = encodeRequest(body);
    const request = new DataView(plain.bytes.buffer).getUint32(0, true);
    const own = requestHasReply(request);
    const ack = !own && (options.ack ?? this.replyAck);
    const message = ack ? encodeRequest(body, { needReply: true }) : plain;
    try {
      this.conn.send(message);
    } catch (err) {
      throw this.fail('ECONNRESET', `${body.type}: the backend does not take requests: ${err}`);
    }
    if (!own && !ack) return null;
    const deadline = Date.now() + this.replyTimeoutMs;
    for (;;) {
      let reply: VhostUserReply | null;
      try {
        reply = this.conn.receiveReply(request, ack);
      } catch (err) {
        const why = err instanceof VhostUserProtocolError ? err.message : String(err);
        throw this.fail('EPROTO', `${requestName(request)}: a bad reply: ${why}`);
      }
      if (reply !== null) {
        if (ack && reply.type === 'u64' && reply.value !== 0n)
          throw ackError(body.type, reply.value);
        return reply;
      }
      if (this.conn.ended) throw this.fail('ECONNRESET', `${body.type}: the backend hung up`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw this.fail('ETIMEDOUT', `${body.type}: no reply in ${this.replyTimeoutMs} ms`);
      }
      pollFds([{ fd: this.conn.socket, events: POLLIN }], left);
    }
  }

  /** A request with a 64-bit reply: its value. */
  u64(body: VhostUserRequest): bigint {
    const reply = this.request(body);
    if (reply?.type !== 'u64') throw this.fail('EPROTO', `${body.type}: not a 64-bit reply`);
    return reply.value;
  }

  /** Marks the connection failed (a hang-up seen elsewhere, a reply that makes no sense). */
  fail(code: 'ECONNRESET' | 'EPROTO' | 'ETIMEDOUT', message: string): KernelError {
    if (this.#failed) return this.#failed;
    const err = new KernelError(code, `vhost-user: ${message}`);
    this.#failed = err;
    this.onFailed?.(err);
    return err;
  }

  /** Closes the socket. Idempotent. */
  close(): void {
    this.onFailed = null;
    this.fail('ECONNRESET', 'the connection is closed');
    this.conn.close();
  }
}

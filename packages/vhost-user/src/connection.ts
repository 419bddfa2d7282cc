/**
 * Message framing over a non-blocking unix stream socket: whole vhost-user messages out of
 * partial reads, with the fds that arrive with them, under limits that turn a hostile frontend
 * into a `VhostUserProtocolError` instead of unbounded memory or leaked fds.
 */
import { constants } from 'node:os';
import { closeAll, type Fd } from './fd';
import {
  type DecodedRequest,
  type DecodeOptions,
  decodeReply,
  decodeRequest,
  type EncodedMessage,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_HDR_FLAGS,
  VHOST_USER_HDR_REQUEST,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_HDR_SIZE_FIELD,
  type VhostUserMessage,
  VhostUserProtocolError,
  type VhostUserReply,
} from './protocol';
import { MAX_FDS_PER_MESSAGE, POLLOUT, pollFds, receiveFds, sendFds } from './sys';

/** Default payload limit: far above the largest message served (a 268-byte GET_CONFIG). */
export const VHOST_USER_DEFAULT_MAX_PAYLOAD = 4096;

export interface VhostUserConnectionOptions {
  /** Largest payload accepted (the header's size field); default 4096 bytes. */
  maxPayload?: number;
  /** Most fds one message may carry; default 8 (SET_MEM_TABLE's regions). At most 64. */
  maxFds?: number;
  /** How long `send` waits for room in a full socket buffer; default 1000 ms. */
  sendTimeoutMs?: number;
}

/**
 * One vhost-user connection. Owns its socket: `close()` closes it and every fd of a message
 * still being read. After a protocol error the stream's framing is lost, so every later call
 * throws the same error; the owner closes the connection (the frontend reconnects).
 */
export class VhostUserConnection {
  readonly socket: Fd;
  readonly maxPayload: number;
  readonly maxFds: number;
  readonly sendTimeoutMs: number;

  readonly #header = new Uint8Array(VHOST_USER_HDR_SIZE);
  #headerBytes = 0;
  #payload: Uint8Array | null = null;
  #payloadBytes = 0;
  #fds: Fd[] = [];
  #ended = false;
  #error: VhostUserProtocolError | null = null;

  constructor(socket: Fd, options: VhostUserConnectionOptions = {}) {
    const maxPayload = options.maxPayload ?? VHOST_USER_DEFAULT_MAX_PAYLOAD;
    const maxFds = options.maxFds ?? VHOST_MEMORY_BASELINE_NREGIONS;
    if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > 0xffffffff) {
      throw new RangeError(`maxPayload ${maxPayload} is not a u32`);
    }
    if (!Number.isInteger(maxFds) || maxFds < 0 || maxFds > MAX_FDS_PER_MESSAGE) {
      throw new RangeError(`maxFds ${maxFds} is not between 0 and ${MAX_FDS_PER_MESSAGE}`);
    }
    this.socket = socket;
    this.maxPayload = maxPayload;
    this.maxFds = maxFds;
    this.sendTimeoutMs = options.sendTimeoutMs ?? 1000;
  }

  /** The peer closed the socket between two messages. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Reads what the socket has and returns the next whole message, or null when more bytes are
   * needed (poll the socket for POLLIN and call again) or the peer has closed (`ended`). The
   * message's fds belong to the caller; `receiveRequest` decodes and checks them.
   */
  receive(): VhostUserMessage | null {
    if (this.#error !== null) throw this.#error;
    try {
      return this.#receive();
    } catch (err) {
      if (err instanceof VhostUserProtocolError) {
        this.#error = err;
        this.#discard();
      }
      throw err;
    }
  }

  /** `receive` and `decodeRequest`: the next frontend request, or null as for `receive`. */
  receiveRequest(options: DecodeOptions = {}): DecodedRequest | null {
    const msg = this.receive();
    return msg === null ? null : decodeRequest(msg, options);
  }

  /** `receive` and `decodeReply` (the frontend side). */
  receiveReply(request: number, ack = false): VhostUserReply | null {
    const msg = this.receive();
    return msg === null ? null : decodeReply(request, msg, ack);
  }

  #receive(): VhostUserMessage | null {
    if (this.#ended) return null;
    while (this.#headerBytes < VHOST_USER_HDR_SIZE) {
      if (!this.#read(this.#header.subarray(this.#headerBytes), (n) => (this.#headerBytes += n))) {
        return null;
      }
    }
    const header = new DataView(this.#header.buffer);
    const request = header.getUint32(VHOST_USER_HDR_REQUEST, true);
    if (this.#payload === null) {
      const size = header.getUint32(VHOST_USER_HDR_SIZE_FIELD, true);
      if (size > this.maxPayload) {
        throw new VhostUserProtocolError(
          'ERR_VHOST_USER_TOO_BIG',
          `payload of ${size} bytes announced, the limit is ${this.maxPayload}`,
          request,
        );
      }
      this.#payload = new Uint8Array(size);
    }
    const payload = this.#payload;
    while (this.#payloadBytes < payload.length) {
      if (!this.#read(payload.subarray(this.#payloadBytes), (n) => (this.#payloadBytes += n))) {
        return null;
      }
    }
    const msg = {
      request,
      flags: header.getUint32(VHOST_USER_HDR_FLAGS, true),
      payload,
      fds: this.#fds,
    };
    this.#headerBytes = 0;
    this.#payload = null;
    this.#payloadBytes = 0;
    this.#fds = [];
    return msg;
  }

  /**
   * One recvmsg into `into`, never past the current message (so the next message's fds stay in
   * the socket). Returns false when nothing could be read.
   */
  #read(into: Uint8Array, advance: (n: number) => void): boolean {
    const room = this.maxFds - this.#fds.length;
    const r = receiveFds(this.socket, into, room);
    if (r === null) return false;
    this.#fds.push(...r.fds);
    const request = this.#headerBytes === VHOST_USER_HDR_SIZE ? this.#request() : undefined;
    if (r.ctrunc) {
      throw new VhostUserProtocolError(
        'ERR_VHOST_USER_BAD_FDS',
        `more than ${this.maxFds} fds on one message (the extra ones were closed)`,
        request,
      );
    }
    if (r.bytes === 0) {
      if (this.#headerBytes === 0 && this.#fds.length === 0) {
        this.#ended = true;
        return false;
      }
      throw new VhostUserProtocolError(
        'ERR_VHOST_USER_TRUNCATED',
        `the peer closed the socket inside a message (${this.#headerBytes} header bytes, ` +
          `${this.#payloadBytes} payload bytes read)`,
        request,
      );
    }
    advance(r.bytes);
    return true;
  }

  #request(): number {
    return new DataView(this.#header.buffer).getUint32(VHOST_USER_HDR_REQUEST, true);
  }

  #discard(): void {
    closeAll(this.#fds);
    this.#fds = [];
    this.#payload = null;
  }

  /**
   * Sends one whole message; its fds go with the first byte and stay owned by the caller. Waits
   * (blocking, up to `sendTimeoutMs`) when the socket buffer is full: replies are small and the
   * peer reads them, so that wait is short or the peer is broken.
   */
  send(message: EncodedMessage): void {
    let sent = 0;
    let fds = message.fds;
    const deadline = Date.now() + this.sendTimeoutMs;
    while (sent < message.bytes.length) {
      const n = sendFds(this.socket, message.bytes.subarray(sent), fds);
      if (n !== null) {
        sent += n;
        fds = [];
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0 || pollFds([{ fd: this.socket, events: POLLOUT }], left)[0] === 0) {
        throw Object.assign(new Error('ETIMEDOUT: the peer does not read, send'), {
          code: 'ETIMEDOUT',
          errno: -constants.errno.ETIMEDOUT,
          syscall: 'send',
        });
      }
    }
  }

  /** Closes the socket and any fds of a partly read message. Idempotent. */
  close(): void {
    this.#discard();
    this.socket.close();
  }
}

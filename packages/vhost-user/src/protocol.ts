/**
 * The vhost-user protocol (QEMU docs/interop/vhost-user.rst): message layouts, request numbers,
 * and decoders and encoders for the messages a backend serves and a frontend sends. All fields
 * are little-endian ("the protocol uses the host byte order", and virtio hosts here are LE).
 *
 * Every decoder checks the payload size and fd count a request must have before it reads a
 * field, and throws `VhostUserProtocolError` for anything else: the frontend is untrusted.
 */
import type { Fd } from './fd';

// ---- header ("Header" in vhost-user.rst: request u32, flags u32, size u32) -------------------

export const VHOST_USER_HDR_REQUEST = 0;
export const VHOST_USER_HDR_FLAGS = 4;
export const VHOST_USER_HDR_SIZE_FIELD = 8;
/** Bytes in a message header. */
export const VHOST_USER_HDR_SIZE = 12;

/** Flags bits 0-1: the protocol version, always 0x1. */
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_VERSION = 0x1;
/** Flags bit 2: the message is a reply. */
export const VHOST_USER_REPLY_MASK = 1 << 2;
/** Flags bit 3: the frontend wants a reply-ack (VHOST_USER_PROTOCOL_F_REPLY_ACK). */
export const VHOST_USER_NEED_REPLY_MASK = 1 << 3;
const KNOWN_FLAGS = VHOST_USER_VERSION_MASK | VHOST_USER_REPLY_MASK | VHOST_USER_NEED_REPLY_MASK;

// ---- request numbers (front-end message types) --------------------------------------------------

export const VHOST_USER_GET_FEATURES = 1;
export const VHOST_USER_SET_FEATURES = 2;
export const VHOST_USER_SET_OWNER = 3;
export const VHOST_USER_RESET_OWNER = 4;
export const VHOST_USER_SET_MEM_TABLE = 5;
export const VHOST_USER_SET_VRING_NUM = 8;
export const VHOST_USER_SET_VRING_ADDR = 9;
export const VHOST_USER_SET_VRING_BASE = 10;
export const VHOST_USER_GET_VRING_BASE = 11;
export const VHOST_USER_SET_VRING_KICK = 12;
export const VHOST_USER_SET_VRING_CALL = 13;
export const VHOST_USER_SET_VRING_ERR = 14;
export const VHOST_USER_GET_PROTOCOL_FEATURES = 15;
export const VHOST_USER_SET_PROTOCOL_FEATURES = 16;
export const VHOST_USER_GET_QUEUE_NUM = 17;
export const VHOST_USER_SET_VRING_ENABLE = 18;
export const VHOST_USER_GET_CONFIG = 24;
export const VHOST_USER_GET_MAX_MEM_SLOTS = 36;
export const VHOST_USER_SET_STATUS = 39;
export const VHOST_USER_GET_STATUS = 40;

// ---- feature bits ----------------------------------------------------------------------------

/** Virtio feature bit 30: the backend speaks GET/SET_PROTOCOL_FEATURES. */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30n;
export const VHOST_USER_PROTOCOL_F_MQ = 0n;
export const VHOST_USER_PROTOCOL_F_LOG_SHMFD = 1n;
export const VHOST_USER_PROTOCOL_F_RARP = 2n;
export const VHOST_USER_PROTOCOL_F_REPLY_ACK = 3n;
export const VHOST_USER_PROTOCOL_F_MTU = 4n;
export const VHOST_USER_PROTOCOL_F_BACKEND_REQ = 5n;
export const VHOST_USER_PROTOCOL_F_CONFIG = 9n;
export const VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13n;
export const VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS = 14n;
export const VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15n;
export const VHOST_USER_PROTOCOL_F_STATUS = 16n;

// ---- payload layouts ----------------------------------------------------------------------

/** "A single 64-bit integer": features, protocol features, status, counts, reply-ack. */
export const VHOST_USER_U64_VALUE = 0;
export const VHOST_USER_U64_SIZE = 8;

/** "A vring state description": index u32, num u32. */
export const VHOST_VRING_STATE_INDEX = 0;
export const VHOST_VRING_STATE_NUM = 4;
export const VHOST_VRING_STATE_SIZE = 8;

/** "A vring address description": index, flags, then user addresses of the three ring areas. */
export const VHOST_VRING_ADDR_INDEX = 0;
export const VHOST_VRING_ADDR_FLAGS = 4;
export const VHOST_VRING_ADDR_DESC = 8;
export const VHOST_VRING_ADDR_USED = 16;
export const VHOST_VRING_ADDR_AVAIL = 24;
export const VHOST_VRING_ADDR_LOG = 32;
export const VHOST_VRING_ADDR_SIZE = 40;
/** Vring address flags bit 0: log the used ring writes (VHOST_VRING_F_LOG). */
export const VHOST_VRING_F_LOG = 1 << 0;

/** "A vring descriptor" (kick/call/err): u64, bits 0-7 the index, bit 8 "no fd". */
export const VHOST_USER_VRING_IDX_MASK = 0xff;
export const VHOST_USER_VRING_NOFD_MASK = 1 << 8;

/** "Memory regions description": nregions u32, padding u32, then the regions. */
export const VHOST_USER_MEMORY_NREGIONS = 0;
export const VHOST_USER_MEMORY_REGIONS = 8;
/** "A memory region description": guest address, size, user address, mmap offset (u64 each). */
export const VHOST_USER_REGION_GUEST_ADDR = 0;
export const VHOST_USER_REGION_SIZE = 8;
export const VHOST_USER_REGION_USER_ADDR = 16;
export const VHOST_USER_REGION_MMAP_OFFSET = 24;
export const VHOST_USER_REGION_DESC_SIZE = 32;
/** Regions SET_MEM_TABLE carries at most (VHOST_MEMORY_BASELINE_NREGIONS). */
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;

/** "Device configuration space": offset u32, size u32, flags u32, then `size` bytes. */
export const VHOST_USER_CONFIG_OFFSET = 0;
export const VHOST_USER_CONFIG_SIZE = 4;
export const VHOST_USER_CONFIG_FLAGS = 8;
export const VHOST_USER_CONFIG_HDR_SIZE = 12;
/** The largest configuration space a GET_CONFIG may ask for (VHOST_USER_MAX_CONFIG_SIZE). */
export const VHOST_USER_MAX_CONFIG_SIZE = 256;

/** SET_STATUS carries the virtio device status, a byte (virtio 1.2 section 2.1). */
export const VHOST_USER_STATUS_MAX = 0xff;

/** Vring indices the 8-bit index field of a vring descriptor can name. */
export const VHOST_USER_MAX_VRINGS = VHOST_USER_VRING_IDX_MASK + 1;

// ---- errors -------------------------------------------------------------------------------

export type VhostUserErrorCode =
  /** The peer closed the socket inside a message. */
  | 'ERR_VHOST_USER_TRUNCATED'
  /** The size field exceeds the connection's payload limit. */
  | 'ERR_VHOST_USER_TOO_BIG'
  /** Version bits other than 0x1, a reply where a request belongs, or reserved bits set. */
  | 'ERR_VHOST_USER_BAD_FLAGS'
  /** A request number this module does not serve. */
  | 'ERR_VHOST_USER_UNKNOWN_REQUEST'
  /** The payload size is not the one the request's layout has. */
  | 'ERR_VHOST_USER_BAD_SIZE'
  /** More fds than the connection allows, or a count the request does not take. */
  | 'ERR_VHOST_USER_BAD_FDS'
  /** A field out of its range (a region count, an address above 2^53-1, reserved bits). */
  | 'ERR_VHOST_USER_BAD_VALUE';

/** A message that breaks the protocol. The connection that raised it is no longer usable. */
export class VhostUserProtocolError extends Error {
  override name = 'VhostUserProtocolError';
  readonly code: VhostUserErrorCode;
  /** The request number of the offending message, when its header was read. */
  readonly request: number | undefined;

  constructor(code: VhostUserErrorCode, message: string, request?: number) {
    super(request === undefined ? message : `${requestName(request)}: ${message}`);
    this.code = code;
    this.request = request;
  }
}

// ---- requests ------------------------------------------------------------------------------

type Layout = 'none' | 'u64' | 'state' | 'addr' | 'file' | 'memory' | 'config';

interface RequestSpec {
  name: string;
  /** Payload of the request. */
  request: Layout;
  /** Payload of the reply, or null when the request has no reply (other than reply-ack). */
  reply: Layout | null;
}

const REQUESTS: ReadonlyMap<number, RequestSpec> = new Map<number, RequestSpec>([
  [VHOST_USER_GET_FEATURES, { name: 'GET_FEATURES', request: 'none', reply: 'u64' }],
  [VHOST_USER_SET_FEATURES, { name: 'SET_FEATURES', request: 'u64', reply: null }],
  [VHOST_USER_SET_OWNER, { name: 'SET_OWNER', request: 'none', reply: null }],
  [VHOST_USER_RESET_OWNER, { name: 'RESET_OWNER', request: 'none', reply: null }],
  [VHOST_USER_SET_MEM_TABLE, { name: 'SET_MEM_TABLE', request: 'memory', reply: null }],
  [VHOST_USER_SET_VRING_NUM, { name: 'SET_VRING_NUM', request: 'state', reply: null }],
  [VHOST_USER_SET_VRING_ADDR, { name: 'SET_VRING_ADDR', request: 'addr', reply: null }],
  [VHOST_USER_SET_VRING_BASE, { name: 'SET_VRING_BASE', request: 'state', reply: null }],
  [VHOST_USER_GET_VRING_BASE, { name: 'GET_VRING_BASE', request: 'state', reply: 'state' }],
  [VHOST_USER_SET_VRING_KICK, { name: 'SET_VRING_KICK', request: 'file', reply: null }],
  [VHOST_USER_SET_VRING_CALL, { name: 'SET_VRING_CALL', request: 'file', reply: null }],
  [VHOST_USER_SET_VRING_ERR, { name: 'SET_VRING_ERR', request: 'file', reply: null }],
  [
    VHOST_USER_GET_PROTOCOL_FEATURES,
    { name: 'GET_PROTOCOL_FEATURES', request: 'none', reply: 'u64' },
  ],
  [
    VHOST_USER_SET_PROTOCOL_FEATURES,
    { name: 'SET_PROTOCOL_FEATURES', request: 'u64', reply: null },
  ],
  [VHOST_USER_GET_QUEUE_NUM, { name: 'GET_QUEUE_NUM', request: 'none', reply: 'u64' }],
  [VHOST_USER_SET_VRING_ENABLE, { name: 'SET_VRING_ENABLE', request: 'state', reply: null }],
  [VHOST_USER_GET_CONFIG, { name: 'GET_CONFIG', request: 'config', reply: 'config' }],
  [VHOST_USER_GET_MAX_MEM_SLOTS, { name: 'GET_MAX_MEM_SLOTS', request: 'none', reply: 'u64' }],
  [VHOST_USER_SET_STATUS, { name: 'SET_STATUS', request: 'u64', reply: null }],
  [VHOST_USER_GET_STATUS, { name: 'GET_STATUS', request: 'none', reply: 'u64' }],
]);

/** `SET_MEM_TABLE` for 5, `request 99` for a number this module does not know. */
export function requestName(request: number): string {
  return REQUESTS.get(request)?.name ?? `request ${request}`;
}

/** Whether the backend answers `request` with a reply of its own (else only with a reply-ack). */
export function requestHasReply(request: number): boolean {
  return (REQUESTS.get(request)?.reply ?? null) !== null;
}

/** One memory region of SET_MEM_TABLE, with the fd that backs it. */
export interface VhostUserMemoryRegion {
  guestAddr: number;
  size: number;
  /** The region's address in the frontend's address space (ring addresses use these). */
  userAddr: number;
  /** Where the region starts in `fd`. */
  mmapOffset: number;
  fd: Fd;
}

/** A vring address description. Addresses are frontend virtual addresses (userAddr space). */
export interface VhostVringAddr {
  index: number;
  flags: number;
  desc: number;
  used: number;
  avail: number;
  log: number;
}

/** A decoded frontend request. `type` is the request's name without the VHOST_USER_ prefix. */
export type VhostUserRequest =
  | { type: 'GET_FEATURES' }
  | { type: 'SET_FEATURES'; features: bigint }
  | { type: 'SET_OWNER' }
  | { type: 'RESET_OWNER' }
  | { type: 'SET_MEM_TABLE'; regions: VhostUserMemoryRegion[] }
  | { type: 'SET_VRING_NUM'; index: number; num: number }
  | ({ type: 'SET_VRING_ADDR' } & VhostVringAddr)
  | { type: 'SET_VRING_BASE'; index: number; num: number }
  | { type: 'GET_VRING_BASE'; index: number }
  | { type: 'SET_VRING_KICK' | 'SET_VRING_CALL' | 'SET_VRING_ERR'; index: number; fd: Fd | null }
  | { type: 'GET_PROTOCOL_FEATURES' }
  | { type: 'SET_PROTOCOL_FEATURES'; features: bigint }
  | { type: 'GET_QUEUE_NUM' }
  | { type: 'SET_VRING_ENABLE'; index: number; enable: boolean }
  | { type: 'GET_CONFIG'; offset: number; size: number; flags: number }
  | { type: 'GET_MAX_MEM_SLOTS' }
  | { type: 'SET_STATUS'; status: number }
  | { type: 'GET_STATUS' };

/** A whole message as read off the socket: header fields, payload view and received fds. */
export interface VhostUserMessage {
  request: number;
  flags: number;
  payload: Uint8Array;
  /** Owned by whoever holds the message; `decodeRequest` hands them on or they must be closed. */
  fds: Fd[];
}

export interface DecodedRequest {
  /** The request number from the header. */
  request: number;
  /** The frontend asked for a reply-ack (VHOST_USER_NEED_REPLY_MASK). */
  needReply: boolean;
  body: VhostUserRequest;
}

export interface DecodeOptions {
  /** Most regions SET_MEM_TABLE may carry; default VHOST_MEMORY_BASELINE_NREGIONS. */
  maxRegions?: number;
}

// ---- little-endian field access ------------------------------------------------------------

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A u64 that must be an address or size JS numbers hold exactly (<= 2^53-1). */
function u64Number(v: DataView, off: number, field: string, request: number): number {
  const x = v.getBigUint64(off, true);
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_VALUE',
      `${field} 0x${x.toString(16)} is above 2^53-1`,
      request,
    );
  }
  return Number(x);
}

function layoutSize(layout: Layout): number | null {
  switch (layout) {
    case 'none':
      return 0;
    case 'u64':
    case 'file':
      return VHOST_USER_U64_SIZE;
    case 'state':
      return VHOST_VRING_STATE_SIZE;
    case 'addr':
      return VHOST_VRING_ADDR_SIZE;
    // The variable layouts are checked once their count field is known.
    case 'memory':
    case 'config':
      return null;
  }
}

function checkSize(request: number, payload: Uint8Array, expected: number, what: string): void {
  if (payload.length !== expected) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_SIZE',
      `payload of ${payload.length} bytes, ${what} takes ${expected}`,
      request,
    );
  }
}

function checkFds(request: number, fds: readonly Fd[], expected: number): void {
  if (fds.length !== expected) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_FDS',
      `${fds.length} fds attached, the request takes ${expected}`,
      request,
    );
  }
}

// ---- decoding -------------------------------------------------------------------------------

/**
 * Decodes a frontend request. Checks, before reading any field: the flags (version 0x1, not a
 * reply, no reserved bits), the request number, the payload size and the fd count. On success
 * the fds belong to the returned body (SET_MEM_TABLE regions, SET_VRING_KICK/CALL/ERR); on
 * failure every fd of the message is closed, so a hostile message leaks nothing.
 */
export function decodeRequest(msg: VhostUserMessage, options: DecodeOptions = {}): DecodedRequest {
  try {
    return decodeRequestOrThrow(msg, options);
  } catch (err) {
    for (const fd of msg.fds) fd.close();
    throw err;
  }
}

function checkFlags(request: number, flags: number, reply: boolean): void {
  if ((flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION || (flags & ~KNOWN_FLAGS) !== 0) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_FLAGS',
      `flags 0x${flags.toString(16)}: version must be 0x1 and reserved bits clear`,
      request,
    );
  }
  if (((flags & VHOST_USER_REPLY_MASK) !== 0) !== reply) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_FLAGS',
      reply ? 'a reply without the reply flag' : 'a reply where a request was expected',
      request,
    );
  }
}

function decodeRequestOrThrow(msg: VhostUserMessage, options: DecodeOptions): DecodedRequest {
  const { request, flags, payload, fds } = msg;
  checkFlags(request, flags, false);
  const spec = REQUESTS.get(request);
  if (spec === undefined) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_UNKNOWN_REQUEST',
      `unknown request ${request}`,
      request,
    );
  }
  const fixed = layoutSize(spec.request);
  if (fixed !== null) checkSize(request, payload, fixed, spec.name);
  const v = view(payload);
  const needReply = (flags & VHOST_USER_NEED_REPLY_MASK) !== 0;
  const done = (body: VhostUserRequest): DecodedRequest => ({ request, needReply, body });

  switch (spec.request) {
    case 'none':
      checkFds(request, fds, 0);
      return done({ type: spec.name } as VhostUserRequest);
    case 'u64': {
      checkFds(request, fds, 0);
      const x = v.getBigUint64(VHOST_USER_U64_VALUE, true);
      if (request === VHOST_USER_SET_STATUS) {
        if (x > BigInt(VHOST_USER_STATUS_MAX)) {
          throw new VhostUserProtocolError('ERR_VHOST_USER_BAD_VALUE', `status ${x}`, request);
        }
        return done({ type: 'SET_STATUS', status: Number(x) });
      }
      return done({ type: spec.name, features: x } as VhostUserRequest);
    }
    case 'state': {
      checkFds(request, fds, 0);
      const index = v.getUint32(VHOST_VRING_STATE_INDEX, true);
      const num = v.getUint32(VHOST_VRING_STATE_NUM, true);
      if (request === VHOST_USER_GET_VRING_BASE) return done({ type: 'GET_VRING_BASE', index });
      if (request === VHOST_USER_SET_VRING_ENABLE) {
        if (num > 1) {
          throw new VhostUserProtocolError('ERR_VHOST_USER_BAD_VALUE', `enable ${num}`, request);
        }
        return done({ type: 'SET_VRING_ENABLE', index, enable: num === 1 });
      }
      return done({ type: spec.name, index, num } as VhostUserRequest);
    }
    case 'addr':
      checkFds(request, fds, 0);
      return done({
        type: 'SET_VRING_ADDR',
        index: v.getUint32(VHOST_VRING_ADDR_INDEX, true),
        flags: v.getUint32(VHOST_VRING_ADDR_FLAGS, true),
        desc: u64Number(v, VHOST_VRING_ADDR_DESC, 'descriptor address', request),
        used: u64Number(v, VHOST_VRING_ADDR_USED, 'used address', request),
        avail: u64Number(v, VHOST_VRING_ADDR_AVAIL, 'available address', request),
        log: u64Number(v, VHOST_VRING_ADDR_LOG, 'log address', request),
      });
    case 'file': {
      const x = v.getBigUint64(VHOST_USER_U64_VALUE, true);
      const reserved = ~BigInt(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK);
      if ((x & reserved) !== 0n) {
        throw new VhostUserProtocolError(
          'ERR_VHOST_USER_BAD_VALUE',
          `vring descriptor 0x${x.toString(16)} has reserved bits set`,
          request,
        );
      }
      const noFd = (Number(x) & VHOST_USER_VRING_NOFD_MASK) !== 0;
      checkFds(request, fds, noFd ? 0 : 1);
      const index = Number(x) & VHOST_USER_VRING_IDX_MASK;
      return done({ type: spec.name, index, fd: noFd ? null : fds[0]! } as VhostUserRequest);
    }
    case 'memory':
      return done({ type: 'SET_MEM_TABLE', regions: decodeMemory(msg, options) });
    case 'config':
      checkFds(request, fds, 0);
      return done({ type: 'GET_CONFIG', ...decodeConfigHeader(request, payload) });
  }
}

function decodeMemory(msg: VhostUserMessage, options: DecodeOptions): VhostUserMemoryRegion[] {
  const { request, payload, fds } = msg;
  const max = options.maxRegions ?? VHOST_MEMORY_BASELINE_NREGIONS;
  if (payload.length < VHOST_USER_MEMORY_REGIONS) {
    checkSize(request, payload, VHOST_USER_MEMORY_REGIONS, 'a region table header');
  }
  const v = view(payload);
  const n = v.getUint32(VHOST_USER_MEMORY_NREGIONS, true);
  if (n < 1 || n > max) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_VALUE',
      `${n} memory regions, between 1 and ${max} allowed`,
      request,
    );
  }
  checkSize(
    request,
    payload,
    VHOST_USER_MEMORY_REGIONS + n * VHOST_USER_REGION_DESC_SIZE,
    `a table of ${n} regions`,
  );
  // One fd per region, in region order.
  checkFds(request, fds, n);
  const regions: VhostUserMemoryRegion[] = [];
  for (let i = 0; i < n; i++) {
    const base = VHOST_USER_MEMORY_REGIONS + i * VHOST_USER_REGION_DESC_SIZE;
    const field = (off: number, name: string) => u64Number(v, base + off, name, request);
    const region = {
      guestAddr: field(VHOST_USER_REGION_GUEST_ADDR, `region ${i} guest address`),
      size: field(VHOST_USER_REGION_SIZE, `region ${i} size`),
      userAddr: field(VHOST_USER_REGION_USER_ADDR, `region ${i} user address`),
      mmapOffset: field(VHOST_USER_REGION_MMAP_OFFSET, `region ${i} mmap offset`),
      fd: fds[i]!,
    };
    if (region.size === 0) {
      throw new VhostUserProtocolError('ERR_VHOST_USER_BAD_VALUE', `region ${i} is empty`, request);
    }
    regions.push(region);
  }
  return regions;
}

function decodeConfigHeader(
  request: number,
  payload: Uint8Array,
): { offset: number; size: number; flags: number } {
  if (payload.length < VHOST_USER_CONFIG_HDR_SIZE) {
    checkSize(request, payload, VHOST_USER_CONFIG_HDR_SIZE, 'a config header');
  }
  const v = view(payload);
  const offset = v.getUint32(VHOST_USER_CONFIG_OFFSET, true);
  const size = v.getUint32(VHOST_USER_CONFIG_SIZE, true);
  const flags = v.getUint32(VHOST_USER_CONFIG_FLAGS, true);
  if (size > VHOST_USER_MAX_CONFIG_SIZE || offset > VHOST_USER_MAX_CONFIG_SIZE - size) {
    throw new VhostUserProtocolError(
      'ERR_VHOST_USER_BAD_VALUE',
      `config range ${offset}+${size} beyond ${VHOST_USER_MAX_CONFIG_SIZE} bytes`,
      request,
    );
  }
  checkSize(request, payload, VHOST_USER_CONFIG_HDR_SIZE + size, `a config of ${size} bytes`);
  return { offset, size, flags };
}

// ---- encoding ------------------------------------------------------------------------------

/** Bytes and fds of one message, ready for `VhostUserConnection.send`. */
export interface EncodedMessage {
  bytes: Uint8Array;
  fds: Fd[];
}

function message(request: number, flags: number, payloadSize: number): [Uint8Array, DataView] {
  const bytes = new Uint8Array(VHOST_USER_HDR_SIZE + payloadSize);
  const v = view(bytes);
  v.setUint32(VHOST_USER_HDR_REQUEST, request, true);
  v.setUint32(VHOST_USER_HDR_FLAGS, flags, true);
  v.setUint32(VHOST_USER_HDR_SIZE_FIELD, payloadSize, true);
  return [bytes, new DataView(bytes.buffer, VHOST_USER_HDR_SIZE, payloadSize)];
}

function u64Message(request: number, flags: number, value: bigint): Uint8Array {
  const [bytes, p] = message(request, flags, VHOST_USER_U64_SIZE);
  p.setBigUint64(VHOST_USER_U64_VALUE, value, true);
  return bytes;
}

function stateMessage(request: number, flags: number, index: number, num: number): Uint8Array {
  const [bytes, p] = message(request, flags, VHOST_VRING_STATE_SIZE);
  p.setUint32(VHOST_VRING_STATE_INDEX, index, true);
  p.setUint32(VHOST_VRING_STATE_NUM, num, true);
  return bytes;
}

function configMessage(
  request: number,
  flags: number,
  c: { offset: number; size: number; flags: number },
  data?: Uint8Array,
): Uint8Array {
  const [bytes, p] = message(request, flags, VHOST_USER_CONFIG_HDR_SIZE + c.size);
  p.setUint32(VHOST_USER_CONFIG_OFFSET, c.offset, true);
  p.setUint32(VHOST_USER_CONFIG_SIZE, c.size, true);
  p.setUint32(VHOST_USER_CONFIG_FLAGS, c.flags, true);
  if (data !== undefined) bytes.set(data, VHOST_USER_HDR_SIZE + VHOST_USER_CONFIG_HDR_SIZE);
  return bytes;
}

/**
 * Encodes a frontend request (the side a virtio-user transport speaks). fds are attached, not
 * duplicated: they stay owned by the caller, and the backend receives its own copies.
 */
export function encodeRequest(
  body: VhostUserRequest,
  options: { needReply?: boolean } = {},
): EncodedMessage {
  const flags = VHOST_USER_VERSION | (options.needReply ? VHOST_USER_NEED_REPLY_MASK : 0);
  const request = requestNumber(body.type);
  switch (body.type) {
    case 'GET_FEATURES':
    case 'SET_OWNER':
    case 'RESET_OWNER':
    case 'GET_PROTOCOL_FEATURES':
    case 'GET_QUEUE_NUM':
    case 'GET_MAX_MEM_SLOTS':
    case 'GET_STATUS':
      return { bytes: message(request, flags, 0)[0], fds: [] };
    case 'SET_FEATURES':
    case 'SET_PROTOCOL_FEATURES':
      return { bytes: u64Message(request, flags, body.features), fds: [] };
    case 'SET_STATUS':
      return { bytes: u64Message(request, flags, BigInt(body.status)), fds: [] };
    case 'SET_VRING_NUM':
    case 'SET_VRING_BASE':
      return { bytes: stateMessage(request, flags, body.index, body.num), fds: [] };
    case 'GET_VRING_BASE':
      return { bytes: stateMessage(request, flags, body.index, 0), fds: [] };
    case 'SET_VRING_ENABLE':
      return { bytes: stateMessage(request, flags, body.index, body.enable ? 1 : 0), fds: [] };
    case 'SET_VRING_ADDR': {
      const [bytes, p] = message(request, flags, VHOST_VRING_ADDR_SIZE);
      p.setUint32(VHOST_VRING_ADDR_INDEX, body.index, true);
      p.setUint32(VHOST_VRING_ADDR_FLAGS, body.flags, true);
      p.setBigUint64(VHOST_VRING_ADDR_DESC, BigInt(body.desc), true);
      p.setBigUint64(VHOST_VRING_ADDR_USED, BigInt(body.used), true);
      p.setBigUint64(VHOST_VRING_ADDR_AVAIL, BigInt(body.avail), true);
      p.setBigUint64(VHOST_VRING_ADDR_LOG, BigInt(body.log), true);
      return { bytes, fds: [] };
    }
    case 'SET_VRING_KICK':
    case 'SET_VRING_CALL':
    case 'SET_VRING_ERR': {
      if (!Number.isInteger(body.index) || body.index < 0 || body.index >= VHOST_USER_MAX_VRINGS) {
        throw new RangeError(`vring index ${body.index} does not fit in 8 bits`);
      }
      const noFd = body.fd === null ? VHOST_USER_VRING_NOFD_MASK : 0;
      const bytes = u64Message(request, flags, BigInt(body.index | noFd));
      return { bytes, fds: body.fd === null ? [] : [body.fd] };
    }
    case 'SET_MEM_TABLE': {
      const n = body.regions.length;
      const [bytes, p] = message(
        request,
        flags,
        VHOST_USER_MEMORY_REGIONS + n * VHOST_USER_REGION_DESC_SIZE,
      );
      p.setUint32(VHOST_USER_MEMORY_NREGIONS, n, true);
      body.regions.forEach((r, i) => {
        const base = VHOST_USER_MEMORY_REGIONS + i * VHOST_USER_REGION_DESC_SIZE;
        p.setBigUint64(base + VHOST_USER_REGION_GUEST_ADDR, BigInt(r.guestAddr), true);
        p.setBigUint64(base + VHOST_USER_REGION_SIZE, BigInt(r.size), true);
        p.setBigUint64(base + VHOST_USER_REGION_USER_ADDR, BigInt(r.userAddr), true);
        p.setBigUint64(base + VHOST_USER_REGION_MMAP_OFFSET, BigInt(r.mmapOffset), true);
      });
      return { bytes, fds: body.regions.map((r) => r.fd) };
    }
    case 'GET_CONFIG':
      return { bytes: configMessage(request, flags, body), fds: [] };
  }
}

function requestNumber(type: VhostUserRequest['type']): number {
  for (const [n, spec] of REQUESTS) if (spec.name === type) return n;
  throw new RangeError(`unknown request type ${type}`);
}

const REPLY_FLAGS = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;

/** The reply to GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, GET_STATUS. */
export function encodeU64Reply(request: number, value: bigint | number): EncodedMessage {
  if (REQUESTS.get(request)?.reply !== 'u64') {
    throw new RangeError(`${requestName(request)} has no 64-bit reply`);
  }
  return { bytes: u64Message(request, REPLY_FLAGS, BigInt(value)), fds: [] };
}

/** The reply to GET_VRING_BASE: the vring's index and its next available index. */
export function encodeVringBaseReply(index: number, num: number): EncodedMessage {
  return { bytes: stateMessage(VHOST_USER_GET_VRING_BASE, REPLY_FLAGS, index, num), fds: [] };
}

/** The reply to GET_CONFIG: the request's offset, size and flags, then `data` (`size` bytes). */
export function encodeConfigReply(
  request: { offset: number; size: number; flags: number },
  data: Uint8Array,
): EncodedMessage {
  if (data.length !== request.size) {
    throw new RangeError(`config data of ${data.length} bytes for a ${request.size}-byte read`);
  }
  return { bytes: configMessage(VHOST_USER_GET_CONFIG, REPLY_FLAGS, request, data), fds: [] };
}

/**
 * A reply-ack (VHOST_USER_PROTOCOL_F_REPLY_ACK): 0 for success, anything else for failure. Sent
 * for a request with VHOST_USER_NEED_REPLY_MASK when the request has no reply of its own.
 */
export function encodeReplyAck(request: number, status: bigint | number = 0): EncodedMessage {
  return { bytes: u64Message(request, REPLY_FLAGS, BigInt(status)), fds: [] };
}

/** A decoded backend reply (the frontend side). */
export type VhostUserReply =
  | { type: 'u64'; value: bigint }
  | { type: 'vring-state'; index: number; num: number }
  | { type: 'config'; offset: number; size: number; flags: number; data: Uint8Array };

/**
 * Decodes the backend's reply to `request`: a reply-ack when `ack` (the request was sent with
 * need-reply and has no reply of its own), else the request's own reply layout. Replies carry no
 * fds; any attached are closed. `data` of a config reply is a view into the message payload.
 */
export function decodeReply(request: number, msg: VhostUserMessage, ack = false): VhostUserReply {
  try {
    checkFlags(msg.request, msg.flags, true);
    if (msg.request !== request) {
      throw new VhostUserProtocolError(
        'ERR_VHOST_USER_BAD_VALUE',
        `reply to ${requestName(msg.request)} while waiting for ${requestName(request)}`,
        msg.request,
      );
    }
    checkFds(request, msg.fds, 0);
    const spec = REQUESTS.get(request);
    const layout = ack ? 'u64' : spec?.reply;
    const v = view(msg.payload);
    switch (layout) {
      case 'u64':
        checkSize(request, msg.payload, VHOST_USER_U64_SIZE, 'a 64-bit reply');
        return { type: 'u64', value: v.getBigUint64(VHOST_USER_U64_VALUE, true) };
      case 'state':
        checkSize(request, msg.payload, VHOST_VRING_STATE_SIZE, 'a vring state');
        return {
          type: 'vring-state',
          index: v.getUint32(VHOST_VRING_STATE_INDEX, true),
          num: v.getUint32(VHOST_VRING_STATE_NUM, true),
        };
      case 'config': {
        const c = decodeConfigHeader(request, msg.payload);
        return { type: 'config', ...c, data: msg.payload.subarray(VHOST_USER_CONFIG_HDR_SIZE) };
      }
      default:
        throw new VhostUserProtocolError(
          'ERR_VHOST_USER_UNKNOWN_REQUEST',
          'the request has no reply',
          request,
        );
    }
  } catch (err) {
    for (const fd of msg.fds) fd.close();
    throw err;
  }
}

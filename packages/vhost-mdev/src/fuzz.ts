/**
 * A hostile vhost-user frontend: a seeded fuzzer of `VhostMdevBackend` serving mvnet-loopback
 * (in-thread, or with the worker datapath). Each case opens a connection and plays a bring-up
 * as QEMU's (vhost-user.rst: features, protocol features, owner, memory table, then per ring
 * NUM, BASE, ADDR, CALL, KICK, ENABLE), with frames on the datapath, and breaks it with messages
 * a frontend must never send: truncated, oversized, wrong payload sizes, unknown requests, bad
 * flags, missing, extra and wrong-kind fds, hostile memory tables, rings outside the table, ring
 * sizes, indices and bases out of range, requests out of order, a new memory table or features
 * while the rings run, random bytes.
 *
 * After each case, once the frontend closed and the backend reported the disconnect:
 * no exception escaped; no fd or mapping of the case is left in the process; no byte of the
 * frontend's memory outside its rings and buffers changed (it is filled with a canary); the
 * device is reset; every reply-ack was 0 or an errno, and a hostile message got an error or the
 * connection closed; a case whose messages were all valid got its frames back, in order.
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import { loopedFrame, mvnetCreate, mvnetWorld } from '@mdev/mvnet-loopback/testing';
import {
  connectUnix,
  createEventFd,
  createMemfd,
  type EncodedMessage,
  encodeRequest,
  type Fd,
  type FdLike,
  receiveFds,
  signalEventFd,
  socketPair,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  type VhostUserMemoryRegion,
  type VhostUserMessage,
  type VhostUserRequest,
} from '@mdev/vhost-user';
import { offsetDmaOps, Virtqueue, type VirtqueueLike } from '@mdev/virtio-ring';
import { VHOST_MDEV_PROTOCOL_FEATURES, type VhostMdevEvent } from './backend';
import { vhostMdevBackendOf, vhostMdevExit, vhostMdevInit } from './driver';
import { TestFrontend } from './testing';

/** How a case ended, seen from the frontend. */
export type FuzzOutcome = 'ack-error' | 'disconnect' | 'served';

/** A failure the fuzzer found, with what replays it: `fuzzFrontend(1, seed, { from: caseIndex })`. */
export interface FuzzFailure {
  seed: number;
  caseIndex: number;
  message: string;
  /** The messages the case sent, in order, up to the failure. */
  trace: string[];
}

/** Totals of a fuzz run. */
export interface FuzzStats {
  cases: number;
  /** Cases by how they ended: a reply-ack error (and no disconnect), a disconnect, neither. */
  outcomes: Record<FuzzOutcome, number>;
  /** Hostile messages sent, by kind. */
  mutations: Record<string, number>;
  /** Frames that came back through the device. */
  frames: number;
  failure: FuzzFailure | null;
}

export interface FuzzOptions {
  /** Run the device's datapath in a worker (mvnet's `offload`); default false. */
  offload?: boolean;
  /** The index of the first case (to replay one: `fuzzFrontend(1, seed, { from })`). */
  from?: number;
}

const UUID = 'f022c0de-5eed-4bad-8bad-0fe11a7e0000';
const MEM_SIZE = 32 << 10;
const PAGE = 4096;
const NUM = 16;
const QUEUES = 2;
const RX = 0;
const TX = 1;
const FRAME_LEN = 10 + 60; // VERSION_1 net header + a minimum Ethernet frame
const RX_BUF = 128;
/** Names of the memfds a case makes: none may stay mapped after it. */
const MEMFD_NAMES = ['memfd:test-frontend', 'memfd:vhost-fuzz'];
/**
 * The kinds of fd a session holds (its socket, eventfds, memfds): a leak is one of these. Other
 * fds come and go with the runtime (a module loader's cache directory) while a case runs.
 */
const SESSION_FD = / -> (socket:|anon_inode:|\/memfd:)/;
/** How long a reply or a disconnect may take (the worker datapath needs real time). */
const WAIT_MS = 3000;
/** A refusal reason must be a KernelError ("... (EINVAL)") or a socket failure, no host error. */
const CLEAN_ERROR = /\(E[A-Z0-9]+\)$|^(EPIPE|ECONNRESET|ETIMEDOUT)\b/;

/** xorshift32: small, fast and reproducible from a seed. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

/** Every open fd with what it is: a leak is an entry after that was not there before. */
function openFds(): Set<string> {
  return new Set(
    readdirSync('/proc/self/fd').flatMap((n) => {
      try {
        return [`${n} -> ${readlinkSync(`/proc/self/fd/${n}`)}`];
      } catch {
        return []; // the fd readdir itself used
      }
    }),
  );
}

function caseMappings(): string[] {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => MEMFD_NAMES.some((name) => l.includes(name)));
}

const canaryByte = (i: number) => (i * 167 + 0x5a) & 0xff;
const CANARY = Uint8Array.from({ length: MEM_SIZE }, (_, i) => canaryByte(i));

/** The frontend wants a failure for this message, success, or either. */
type Expect = 'refuse' | 'accept' | 'any';

/** What the case learnt from one message. */
type Result =
  | { kind: 'none' }
  | { kind: 'gone' }
  | { kind: 'ack'; value: bigint }
  | { kind: 'reply'; payload: Uint8Array };

class CaseFailure extends Error {}

function fail(message: string): never {
  throw new CaseFailure(message);
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Waits, a turn at a time, until `cond` holds; false after WAIT_MS. */
async function waitFor(cond: () => boolean, ms = WAIT_MS): Promise<boolean> {
  const end = performance.now() + ms;
  for (let i = 0; ; i++) {
    if (cond()) return true;
    if (performance.now() > end) return false;
    // Turns first; the worker datapath also needs the thread to sleep now and then.
    if (i < 200) await turn();
    else await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** One case: a connection, its memory, its rings, and the model of what was set up. */
class Case {
  readonly trace: string[] = [];
  /** fds the case made besides the frontend's own; closed at the end. */
  readonly extra: Fd[] = [];
  /** Bytes of the frontend's memory the device or the frontend may change (rings, buffers). */
  readonly mask = new Uint8Array(MEM_SIZE);
  /** Transmit buffers: their bytes must be as the frontend wrote them. */
  readonly txBufs: { addr: number; bytes: Uint8Array }[] = [];
  readonly sent: Uint8Array[] = [];
  readonly got: Uint8Array[] = [];
  readonly events: VhostMdevEvent[];
  readonly f: TestFrontend;
  /** Reply-ack negotiated (VHOST_USER_PROTOCOL_F_REPLY_ACK). */
  ack = false;
  featuresSet = false;
  tableSet = false;
  features = 0n;
  offered = 0n;
  /** Per ring: created in memory, handed over and enabled (valid requests only). */
  readonly ringUp = [false, false];
  rxPosted = false;
  /** Every message so far was valid and accepted: frames must come back. */
  clean = true;
  ackErrors = 0;
  /** The backend ended the session before the frontend closed. */
  closedByBackend = false;
  hungUp = false;

  constructor(
    readonly rng: Rng,
    readonly path: string,
    events: VhostMdevEvent[],
  ) {
    this.events = events;
    this.f = TestFrontend.connect(path, { memSize: MEM_SIZE, num: NUM });
    // The canary everywhere; the allocator zeroes what it hands out, which the mask covers.
    new Uint8Array(this.f.buffer).set(CANARY);
    // A page nobody uses at the start of the memory: a stray write at file offset 0 (a memfd
    // written as if it were an eventfd) lands on the canary.
    const pad = this.f.allocator.alloc(PAGE, PAGE)!;
    new Uint8Array(this.f.buffer).set(CANARY.subarray(0, PAGE), pad - this.f.guestBase);
  }

  get disconnected(): boolean {
    return this.events.some((e) => e.type === 'disconnected');
  }

  alloc(size: number, align = 16): number {
    const addr = this.f.allocator.alloc(size, align);
    if (addr === null) fail(`the frontend's memory is full (${size} bytes)`);
    this.mask.fill(1, addr - this.f.guestBase, addr - this.f.guestBase + size);
    return addr;
  }

  eventFd(): Fd {
    const fd = createEventFd();
    this.extra.push(fd);
    return fd;
  }

  memfd(size: number): Fd {
    const fd = createMemfd('vhost-fuzz', size);
    this.extra.push(fd);
    return fd;
  }

  /** A socket: the wrong kind of fd for a region or a ring. */
  socket(): Fd {
    const [a, b] = socketPair();
    this.extra.push(a, b);
    return a;
  }

  region(over: Partial<VhostUserMemoryRegion> = {}): VhostUserMemoryRegion {
    return {
      guestAddr: this.f.guestBase,
      size: MEM_SIZE,
      userAddr: this.f.userBase,
      mmapOffset: 0,
      fd: this.f.memfd,
      ...over,
    };
  }

  /**
   * Sends one message and waits for what it earns: its reply (`own`), a reply-ack (`ack`, when
   * negotiated), or, for a message that must be refused and gets no reply, the disconnect.
   */
  async exchange(
    what: string,
    message: EncodedMessage,
    reply: 'own' | 'ack' | 'none',
    expect: Expect,
  ): Promise<Result> {
    this.trace.push(what);
    if (expect !== 'accept') this.clean = false;
    if (this.hungUp || this.disconnected) return { kind: 'gone' };
    const head = new DataView(message.bytes.buffer, message.bytes.byteOffset);
    const request = message.bytes.length >= 4 ? head.getUint32(0, true) : -1;
    try {
      this.f.conn.send(message);
    } catch {
      return this.gone(what, expect);
    }
    const waitsAck = reply === 'ack' && this.ack;
    if (reply === 'own' || waitsAck) {
      const box: { msg: VhostUserMessage | null } = { msg: null };
      const ok = await waitFor(() => {
        try {
          box.msg = this.f.conn.receive();
        } catch {
          return true; // a reset connection: the backend hung up
        }
        return box.msg !== null || this.f.conn.ended || this.disconnected;
      });
      if (!ok) fail(`${what}: no reply and no disconnect in ${WAIT_MS} ms`);
      const m = box.msg;
      if (m === null) return this.gone(what, expect);
      for (const fd of m.fds) fd.close();
      if (m.fds.length > 0) fail(`${what}: a reply carried fds`);
      if (m.request !== request) fail(`${what}: a reply to request ${m.request}`);
      if (m.flags !== (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK)) {
        fail(`${what}: reply flags 0x${m.flags.toString(16)}`);
      }
      if (reply === 'own') {
        if (expect === 'refuse') fail(`${what}: answered, not refused`);
        return { kind: 'reply', payload: m.payload.slice() };
      }
      if (m.payload.length !== 8) fail(`${what}: a reply-ack of ${m.payload.length} bytes`);
      const value = new DataView(m.payload.buffer, m.payload.byteOffset).getBigUint64(0, true);
      // 0 or an errno (vhost-user.rst, REPLY_ACK), nothing else.
      if (value >= 4096n) fail(`${what}: reply-ack ${value} is no errno`);
      if (value !== 0n) {
        this.ackErrors++;
        if (expect === 'accept') fail(`${what}: refused (${value}): ${this.lastRefusal()}`);
      } else if (expect === 'refuse') {
        fail(`${what}: accepted a message that must be refused`);
      }
      return { kind: 'ack', value };
    }
    if (expect === 'refuse') {
      // No reply to carry the failure: the backend must end the session.
      if (!(await waitFor(() => this.disconnected))) {
        fail(`${what}: accepted without a reply-ack, and the session goes on`);
      }
      return this.gone(what, expect);
    }
    return { kind: 'none' };
  }

  gone(what: string, expect: Expect): Result {
    this.hungUp = true;
    if (expect === 'accept') fail(`${what}: the backend hung up on a valid message: ${this.why()}`);
    return { kind: 'gone' };
  }

  lastRefusal(): string {
    const r = [...this.events].reverse().find((e) => e.type === 'refused');
    return r?.type === 'refused' ? `${r.request}: ${r.error}` : 'no refusal event';
  }

  why(): string {
    const d = this.events.find((e) => e.type === 'disconnected');
    return d?.type === 'disconnected' ? d.reason : this.lastRefusal();
  }

  request(
    body: VhostUserRequest,
    expect: Expect,
    options: { needReply?: boolean; what?: string } = {},
  ): Promise<Result> {
    const own = [
      'GET_FEATURES',
      'GET_PROTOCOL_FEATURES',
      'GET_QUEUE_NUM',
      'GET_MAX_MEM_SLOTS',
      'GET_STATUS',
      'GET_VRING_BASE',
      'GET_CONFIG',
    ].includes(body.type);
    // A hostile request with a reply of its own goes without need-reply: its refusal is then
    // the disconnect (an error ack would look like a reply).
    const needReply = options.needReply ?? (!own && this.ack && this.rng.chance(0.8));
    const message = encodeRequest(body, { needReply });
    const what = options.what ?? describe(body);
    return this.exchange(what, message, own ? 'own' : needReply ? 'ack' : 'none', expect);
  }
}

function describe(body: VhostUserRequest): string {
  const fields = Object.entries(body)
    .filter(([k]) => k !== 'type' && k !== 'regions' && k !== 'fd')
    .map(([k, v]) => `${k}=${typeof v === 'bigint' ? `0x${v.toString(16)}` : String(v)}`);
  if (body.type === 'SET_MEM_TABLE') {
    fields.push(
      ...body.regions.map(
        (r) =>
          `[g 0x${r.guestAddr.toString(16)} +0x${r.size.toString(16)} u 0x${r.userAddr.toString(16)} off 0x${r.mmapOffset.toString(16)}]`,
      ),
    );
  }
  return `${body.type} ${fields.join(' ')}`.trim();
}

/** A raw message: header fields as given, then `payload`. */
function raw(
  request: number,
  flags: number,
  size: number,
  payload: Uint8Array,
  fds: FdLike[] = [],
) {
  const bytes = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, request >>> 0, true);
  v.setUint32(4, flags >>> 0, true);
  v.setUint32(8, size >>> 0, true);
  bytes.set(payload, VHOST_USER_HDR_SIZE);
  return { bytes, fds: fds as Fd[] };
}

/** Request numbers of the valid requests and their fixed payload sizes (null: variable). */
const KNOWN: ReadonlyMap<number, number | null> = new Map([
  [1, 0],
  [2, 8],
  [3, 0],
  [4, 0],
  [5, null],
  [8, 8],
  [9, 40],
  [10, 8],
  [11, 8],
  [12, 8],
  [13, 8],
  [14, 8],
  [15, 0],
  [16, 8],
  [17, 0],
  [18, 8],
  [24, null],
  [36, 0],
  [39, 8],
  [40, 0],
]);

// ---- the bring-up ------------------------------------------------------------------------

const PLAN = ['features', 'protocol', 'owner', 'set-features', 'mem-table', 'ring0', 'ring1'];

async function planStep(c: Case, step: string, expect: Expect): Promise<void> {
  switch (step) {
    case 'features': {
      const r = await c.request({ type: 'GET_FEATURES' }, expect);
      if (r.kind === 'reply') c.offered = new DataView(r.payload.buffer).getBigUint64(0, true);
      return;
    }
    case 'protocol': {
      await c.request({ type: 'GET_PROTOCOL_FEATURES' }, expect);
      // Without reply-ack now and then: every refusal is then a disconnect.
      const withAck = c.rng.chance(0.85);
      const features =
        VHOST_MDEV_PROTOCOL_FEATURES & ~(withAck ? 0n : 1n << VHOST_USER_PROTOCOL_F_REPLY_ACK);
      const r = await c.request({ type: 'SET_PROTOCOL_FEATURES', features }, expect, {
        needReply: false,
      });
      if (r.kind !== 'gone') c.ack = withAck;
      return;
    }
    case 'owner':
      await c.request({ type: 'SET_OWNER' }, expect);
      return;
    case 'set-features': {
      const offered = c.offered || (1n << 32n) | (1n << VHOST_USER_F_PROTOCOL_FEATURES);
      // Drop an optional feature now and then (EVENT_IDX, MTU, ...), never VERSION_1.
      let features = offered;
      if (c.rng.chance(0.3)) features &= ~(1n << BigInt(c.rng.pick([15, 16, 29, 28, 3, 5])));
      if (c.rng.chance(0.15)) features &= ~(1n << VHOST_USER_F_PROTOCOL_FEATURES);
      const r = await c.request({ type: 'SET_FEATURES', features }, expect);
      if (r.kind !== 'gone' && !(r.kind === 'ack' && r.value !== 0n)) {
        c.featuresSet = true;
        c.features = features;
      }
      return;
    }
    case 'mem-table': {
      const r = await c.request({ type: 'SET_MEM_TABLE', regions: [c.region()] }, expect);
      if (r.kind !== 'gone' && !(r.kind === 'ack' && r.value !== 0n)) c.tableSet = true;
      return;
    }
    case 'ring0':
    case 'ring1':
      await ringUp(c, step === 'ring0' ? RX : TX, expect);
      return;
  }
}

/** Creates ring `index` in the frontend's memory (once) and hands it over. */
function makeRing(c: Case, index: number): VirtqueueLike<number> {
  const existing = c.f.rings[index];
  if (existing) return existing.vq;
  const dma = offsetDmaOps(c.f.allocator);
  const vq = Virtqueue.create<number>({
    index,
    num: NUM,
    align: PAGE,
    memory: c.f.memory,
    dma: {
      ...dma,
      alloc: (size: number, align: number) => {
        const a = dma.alloc(size, align);
        if (a !== null) c.mask.fill(1, a.cpuAddr - c.f.guestBase, a.cpuAddr - c.f.guestBase + size);
        return a;
      },
    },
    eventIdx: false,
    // A case may set features again after the ring exists, with or without VIRTIO_F_IN_ORDER.
    // mvnet completes in ring order either way, and an in-order driver reads a used ring with
    // an element per buffer as well as one with an element per batch.
    inOrder: true,
    notify: () => {
      // The ring's kick fd of now (a case may replace it).
      const fd = c.f.rings[index]?.kick;
      if (fd !== undefined && !fd.closed) signalEventFd(fd);
      return true;
    },
  });
  if (!vq) fail(`no room for ring ${index}`);
  c.f.rings[index] = { vq, kick: createEventFd(), call: createEventFd() };
  return vq;
}

async function ringUp(c: Case, index: number, expect: Expect): Promise<void> {
  const vq = makeRing(c, index);
  const { kick, call } = c.f.rings[index]!;
  const steps: VhostUserRequest[] = [
    { type: 'SET_VRING_NUM', index, num: vq.num },
    { type: 'SET_VRING_BASE', index, num: 0 },
    {
      type: 'SET_VRING_ADDR',
      index,
      flags: 0,
      desc: c.f.user(vq.descAddr),
      avail: c.f.user(vq.availAddr),
      used: c.f.user(vq.usedAddr),
      log: 0,
    },
    { type: 'SET_VRING_CALL', index, fd: call },
    { type: 'SET_VRING_KICK', index, fd: kick },
    { type: 'SET_VRING_ENABLE', index, enable: true },
  ];
  for (const body of steps) {
    const r = await c.request(body, expect);
    if (r.kind === 'gone') return;
  }
  if (expect === 'accept') c.ringUp[index] = true;
}

// ---- the datapath ------------------------------------------------------------------------

function postRx(c: Case): void {
  if (c.rxPosted || !c.f.rings[RX]) return;
  c.rxPosted = true;
  const rx = c.f.rings[RX].vq;
  for (let i = 0; i < NUM; i++) {
    const addr = c.alloc(RX_BUF);
    rx.addInbuf(addr, RX_BUF, addr);
  }
  rx.kick();
}

function sendFrame(c: Case): void {
  const ring = c.f.rings[TX];
  if (!ring || c.sent.length >= NUM) return;
  const addr = c.alloc(FRAME_LEN);
  const bytes = c.rng.bytes(FRAME_LEN);
  bytes.fill(0, 0, 10);
  c.f.memory.write(addr, bytes);
  c.txBufs.push({ addr, bytes });
  c.sent.push(bytes);
  ring.vq.addOutbuf(addr, FRAME_LEN, addr);
  ring.vq.kick();
}

function collect(c: Case): void {
  const rx = c.f.rings[RX];
  if (!rx) return;
  for (let b = rx.vq.getBuf(); b !== null; b = rx.vq.getBuf()) {
    // A buffer of 'bad-buffer' (token -1) never comes back: the device broke on it.
    if (b.token < 0) fail(`a receive buffer outside the memory table came back (${b.len} bytes)`);
    c.got.push(c.f.memory.read(b.token, b.len).slice());
  }
  // Completed transmit buffers are not reused: their bytes are checked at the end.
  const tx = c.f.rings[TX];
  if (tx) while (tx.vq.getBuf() !== null);
}

// ---- the mutations -------------------------------------------------------------------------

type Mutation = (c: Case) => Promise<void>;

/** A valid message of any kind, encoded (for truncation and size games). */
function someMessage(c: Case): EncodedMessage {
  const rng = c.rng;
  switch (rng.below(6)) {
    case 0:
      return encodeRequest({ type: 'SET_MEM_TABLE', regions: [c.region()] });
    case 1:
      return encodeRequest({
        type: 'SET_VRING_ADDR',
        index: 0,
        flags: 0,
        desc: c.f.userBase,
        avail: c.f.userBase + PAGE,
        used: c.f.userBase + 2 * PAGE,
        log: 0,
      });
    case 2:
      return encodeRequest({ type: 'SET_VRING_KICK', index: 1, fd: c.eventFd() });
    case 3:
      return encodeRequest({ type: 'GET_CONFIG', offset: 0, size: 12, flags: 0 });
    case 4:
      return encodeRequest({ type: 'SET_FEATURES', features: c.offered });
    default:
      return encodeRequest({ type: 'GET_FEATURES' });
  }
}

const UNKNOWN_REQUESTS = [0, 6, 7, 19, 20, 21, 22, 23, 25, 30, 31, 32, 34, 35, 37, 38, 41, 42, 99];

/** A user address outside the memory table, or straddling its end: no ring may start there. */
function outsideAddr(c: Case, len: number): number {
  const { userBase } = c.f;
  switch (c.rng.below(6)) {
    case 0:
      return userBase - PAGE; // below the region
    case 1:
      return userBase + MEM_SIZE; // just past its end
    case 2:
      return userBase + MEM_SIZE - Math.max(2, c.rng.below(len)); // straddles the end
    case 3:
      return c.rng.below(0x1_0000) * PAGE; // low addresses
    case 4:
      return c.f.guestBase; // a guest address, not a user one
    default:
      return 2 ** 53 - 1 - c.rng.below(PAGE); // at the top of what a number holds
  }
}

const MUTATIONS: Record<string, Mutation> = {
  async truncated(c) {
    const m = someMessage(c);
    const cut = 1 + c.rng.below(m.bytes.length - 1);
    await c.exchange(
      `truncated at ${cut}/${m.bytes.length}`,
      { bytes: m.bytes.subarray(0, cut), fds: m.fds },
      'none',
      'any',
    );
    c.trace.push('close');
    c.f.conn.close();
    c.hungUp = true;
  },
  async oversize(c) {
    const size = 4097 + c.rng.below(0xffff_0000);
    const req = c.rng.pick([...KNOWN.keys()]);
    const m = raw(req, VHOST_USER_VERSION, size, c.rng.bytes(c.rng.below(64)));
    await c.exchange(`request ${req} announcing ${size} bytes`, m, 'none', 'refuse');
  },
  async 'bad-size'(c) {
    const req = c.rng.pick([...KNOWN.keys()]);
    const fixed = KNOWN.get(req)!;
    let size: number;
    let payload: Uint8Array;
    if (fixed === null) {
      // A table of n regions (or a config read of n bytes) in a payload of another size.
      const n = 1 + c.rng.below(2);
      const right = req === 5 ? 8 + 32 * n : 12 + n;
      size = Math.max(0, right + c.rng.pick([-1, 1, -8, 8, -right, 31]));
      payload = c.rng.bytes(size);
      if (size >= 4) new DataView(payload.buffer).setUint32(0, n, true);
      if (req === 24 && size >= 8) new DataView(payload.buffer).setUint32(4, n, true);
    } else {
      size = c.rng.pick([0, 1, 4, 7, 9, 16, 39, 41, 48]);
      if (size === fixed) size += 1;
      payload = c.rng.bytes(size);
    }
    const fds = req === 5 || req === 12 || req === 13 ? [c.eventFd()] : [];
    await c.exchange(
      `request ${req} with ${size} payload bytes`,
      raw(req, VHOST_USER_VERSION, size, payload, fds),
      'none',
      'refuse',
    );
  },
  async 'unknown-request'(c) {
    const req = c.rng.chance(0.8) ? c.rng.pick(UNKNOWN_REQUESTS) : 0x100 + c.rng.below(0xffff_0000);
    const size = c.rng.pick([0, 8]);
    await c.exchange(
      `unknown request ${req >>> 0}`,
      raw(req, VHOST_USER_VERSION, size, c.rng.bytes(size)),
      'none',
      'refuse',
    );
  },
  async 'bad-flags'(c) {
    const flags = c.rng.pick([
      0,
      2,
      3,
      VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
      VHOST_USER_VERSION | (1 << (4 + c.rng.below(28))),
    ]);
    const m = encodeRequest({ type: 'GET_FEATURES' });
    new DataView(m.bytes.buffer).setUint32(4, flags, true);
    await c.exchange(`GET_FEATURES flags 0x${flags.toString(16)}`, m, 'none', 'refuse');
  },
  async 'fds-missing'(c) {
    if (c.rng.chance(0.5)) {
      const m = encodeRequest({
        type: 'SET_MEM_TABLE',
        regions: [c.region(), c.region({ guestAddr: 0, userAddr: 0 })],
      });
      m.fds = m.fds.slice(0, c.rng.below(2));
      await c.exchange(`SET_MEM_TABLE of 2 regions with ${m.fds.length} fds`, m, 'none', 'refuse');
    } else {
      const type = c.rng.pick(['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const);
      const m = encodeRequest({ type, index: c.rng.below(2), fd: c.eventFd() });
      m.fds = [];
      await c.exchange(`${type} without its fd`, m, 'none', 'refuse');
    }
  },
  async 'fds-extra'(c) {
    const ev = c.eventFd();
    if (c.rng.chance(0.5)) {
      const m = encodeRequest({
        type: c.rng.pick(['GET_FEATURES', 'SET_OWNER', 'GET_QUEUE_NUM'] as const),
      });
      m.fds = Array.from({ length: 1 + c.rng.below(8) }, () => ev);
      await c.exchange(`a request taking no fds with ${m.fds.length}`, m, 'none', 'refuse');
    } else {
      const m = encodeRequest({ type: 'SET_MEM_TABLE', regions: [c.region()] });
      m.fds = [...m.fds, ...Array.from({ length: 8 + c.rng.below(16) }, () => ev)];
      await c.exchange(`SET_MEM_TABLE with ${m.fds.length} fds`, m, 'none', 'refuse');
    }
  },
  async 'bad-value'(c) {
    const rng = c.rng;
    switch (rng.below(7)) {
      case 0: {
        const m = encodeRequest({ type: 'SET_VRING_KICK', index: 0, fd: c.eventFd() });
        new DataView(m.bytes.buffer).setUint32(12, 0x200 << rng.below(20), true);
        return void (await c.exchange('SET_VRING_KICK with reserved bits', m, 'none', 'refuse'));
      }
      case 1: {
        const m = encodeRequest({ type: 'SET_VRING_ENABLE', index: 0, enable: true });
        new DataView(m.bytes.buffer).setUint32(16, 2 + rng.below(1000), true);
        return void (await c.exchange('SET_VRING_ENABLE of 2 or more', m, 'none', 'refuse'));
      }
      case 2: {
        const m = encodeRequest({ type: 'SET_STATUS', status: 0 });
        new DataView(m.bytes.buffer).setUint32(12, 0x100 + rng.below(1000), true);
        return void (await c.exchange('SET_STATUS above a byte', m, 'none', 'refuse'));
      }
      case 3: {
        const size = 257 + rng.below(100);
        const m = raw(24, VHOST_USER_VERSION, 12 + size, new Uint8Array(12 + size));
        new DataView(m.bytes.buffer).setUint32(16, size, true);
        return void (await c.exchange(`GET_CONFIG of ${size} bytes`, m, 'none', 'refuse'));
      }
      case 4: {
        const m = encodeRequest({
          type: 'SET_VRING_ADDR',
          index: 0,
          flags: 0,
          desc: 0,
          used: 0,
          avail: 0,
          log: 0,
        });
        new DataView(m.bytes.buffer).setBigUint64(
          12 + 8 + 8 * rng.below(4),
          1n << BigInt(53 + rng.below(11)),
          true,
        );
        return void (await c.exchange('SET_VRING_ADDR above 2^53', m, 'none', 'refuse'));
      }
      case 5: {
        const n = rng.pick([0, 9, 100, 0xffff_ffff]);
        const m = raw(5, VHOST_USER_VERSION, 8 + 32, new Uint8Array(40), [c.f.memfd]);
        new DataView(m.bytes.buffer).setUint32(12, n, true);
        return void (await c.exchange(`SET_MEM_TABLE of ${n} regions`, m, 'none', 'refuse'));
      }
      default: {
        const m = encodeRequest({ type: 'SET_MEM_TABLE', regions: [c.region()] });
        const field = rng.below(4);
        new DataView(m.bytes.buffer).setBigUint64(
          12 + 8 + 8 * field,
          field === 1 && rng.chance(0.5) ? 0n : 1n << 60n,
          true,
        );
        return void (await c.exchange(
          'SET_MEM_TABLE with a field above 2^53 or an empty region',
          m,
          'none',
          'refuse',
        ));
      }
    }
  },
  async 'fd-kind-region'(c) {
    const fd = c.rng.chance(0.5) ? c.eventFd() : c.socket();
    await c.request({ type: 'SET_MEM_TABLE', regions: [c.region({ fd })] }, 'refuse', {
      what: 'SET_MEM_TABLE of an eventfd or a socket',
    });
  },
  async 'fd-kind-vring'(c) {
    const type = c.rng.pick(['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const);
    // The frontend's own memory as a kick or call fd: an eventfd write would land in it.
    const fd = c.rng.chance(0.6) ? c.f.memfd : c.socket();
    const index = c.rng.below(QUEUES);
    await c.request({ type, index, fd }, 'refuse', {
      what: `${type} ${index} of a memfd or a socket`,
    });
  },
  async 'bad-table'(c) {
    const rng = c.rng;
    const other = c.memfd(4 * PAGE);
    const second = (over: Partial<VhostUserMemoryRegion>) =>
      c.region({
        guestAddr: 0x1000_0000,
        userAddr: 0x1000_0000,
        size: 4 * PAGE,
        fd: other,
        ...over,
      });
    let regions: VhostUserMemoryRegion[];
    let what: string;
    switch (rng.below(8)) {
      case 0:
        what = 'overlapping guest ranges';
        regions = [
          c.region(),
          second({ guestAddr: c.f.guestBase + PAGE * rng.below(MEM_SIZE / PAGE) }),
        ];
        break;
      case 1:
        what = 'overlapping user ranges';
        regions = [
          c.region(),
          second({ userAddr: c.f.userBase + MEM_SIZE - PAGE * (1 + rng.below(4)) }),
        ];
        break;
      case 2:
        what = 'an unaligned region';
        regions = [
          c.region(
            rng.chance(0.5)
              ? { guestAddr: c.f.guestBase + 1 + rng.below(PAGE - 1) }
              : { size: MEM_SIZE - 1 - rng.below(PAGE - 1) },
          ),
        ];
        break;
      case 3:
        what = 'a region larger than its file';
        regions = [c.region({ size: MEM_SIZE + PAGE * (1 + rng.below(16)) })];
        break;
      case 4:
        what = 'a mmap offset past the file end';
        regions = [c.region({ mmapOffset: MEM_SIZE + PAGE * rng.below(4), size: PAGE })];
        break;
      case 5:
        what = 'a huge region';
        regions = [c.region({ size: 2 ** 52, guestAddr: rng.chance(0.5) ? 0 : 2 ** 52 })];
        break;
      case 6:
        what = 'a region past 2^53';
        regions = [c.region({ userAddr: 2 ** 53 - PAGE, size: 2 * PAGE })];
        break;
      default:
        what = 'a good region and an eventfd one';
        regions = [c.region(), second({ fd: c.eventFd() })];
        break;
    }
    await c.request({ type: 'SET_MEM_TABLE', regions }, 'refuse', {
      what: `SET_MEM_TABLE: ${what}`,
    });
  },
  async 'ring-outside'(c) {
    const index = c.rng.below(QUEUES);
    // The ring must not start: sure only when nothing hostile came before and it can start.
    const sure = c.clean && c.featuresSet && c.tableSet && !c.ringUp[index];
    const vq = makeRing(c, index);
    const addr = {
      desc: c.f.user(vq.descAddr),
      avail: c.f.user(vq.availAddr),
      used: c.f.user(vq.usedAddr),
    };
    const which = c.rng.pick(['desc', 'avail', 'used'] as const);
    addr[which] = outsideAddr(
      c,
      which === 'desc' ? NUM * 16 : which === 'avail' ? 6 + 2 * NUM : 6 + 8 * NUM,
    );
    c.clean = false;
    let refused = false;
    const steps: VhostUserRequest[] = [
      { type: 'SET_VRING_NUM', index, num: NUM },
      { type: 'SET_VRING_ADDR', index, flags: 0, log: 0, ...addr },
      { type: 'SET_VRING_KICK', index, fd: c.eventFd() },
      { type: 'SET_VRING_ENABLE', index, enable: true },
    ];
    for (const body of steps) {
      const r = await c.request(body, 'any', { needReply: c.ack });
      if (r.kind === 'gone') return;
      if (r.kind === 'ack' && r.value !== 0n) refused = true;
    }
    const ops = mdevVirtioGetOps(currentMdev!);
    if (ops.getVqReady(currentMdev!, index) && sure) {
      fail(`ring ${index} with its ${which} at 0x${addr[which].toString(16)} reached the device`);
    }
    if (sure && c.ack && !refused) fail(`ring ${index} outside the table: nothing refused`);
  },
  async 'vring-num'(c) {
    const num = c.rng.pick([0, 3, 12, 100, 255, 512, 1024, 0x8000, 0x1_0000, 0xffff_ffff]);
    await c.request({ type: 'SET_VRING_NUM', index: c.rng.below(QUEUES), num }, 'refuse');
  },
  async 'vring-index'(c) {
    const index = c.rng.chance(0.5)
      ? QUEUES + c.rng.below(8)
      : c.rng.pick([255, 0x100, 0xffff_ffff]);
    const small = index & 0xff;
    const fdIndex = Math.max(small, QUEUES);
    const bodies: VhostUserRequest[] = [
      { type: 'SET_VRING_NUM', index, num: NUM },
      { type: 'SET_VRING_BASE', index, num: 0 },
      {
        type: 'SET_VRING_ADDR',
        index,
        flags: 0,
        desc: c.f.userBase,
        avail: c.f.userBase,
        used: c.f.userBase,
        log: 0,
      },
      { type: 'SET_VRING_ENABLE', index, enable: true },
      { type: 'GET_VRING_BASE', index },
      { type: 'SET_VRING_KICK', index: fdIndex, fd: c.eventFd() },
      { type: 'SET_VRING_CALL', index: fdIndex, fd: c.eventFd() },
      { type: 'SET_VRING_ERR', index: fdIndex, fd: c.eventFd() },
    ];
    await c.request(c.rng.pick(bodies), 'refuse');
  },
  async 'vring-base'(c) {
    const num = 0x1_0000 + c.rng.below(0xfffe_ffff);
    await c.request({ type: 'SET_VRING_BASE', index: c.rng.below(QUEUES), num }, 'refuse');
  },
  async 'vring-log'(c) {
    const vq = makeRing(c, TX);
    await c.request(
      {
        type: 'SET_VRING_ADDR',
        index: TX,
        flags: 1,
        desc: c.f.user(vq.descAddr),
        avail: c.f.user(vq.availAddr),
        used: c.f.user(vq.usedAddr),
        log: 0,
      },
      'refuse',
    );
  },
  async 'bad-features'(c) {
    if (c.rng.chance(0.5)) {
      const bit = c.rng.pick([33n, 34n, 63n, 50n, 24n]);
      await c.request({ type: 'SET_FEATURES', features: c.offered | (1n << bit) }, 'refuse');
    } else {
      const bit = c.rng.pick([1n, 2n, 5n, 13n, 15n, 63n]);
      await c.request(
        { type: 'SET_PROTOCOL_FEATURES', features: VHOST_MDEV_PROTOCOL_FEATURES | (1n << bit) },
        'refuse',
      );
    }
  },
  async 'out-of-order'(c) {
    // Ring requests before the features or the memory table (when the prefix stopped before
    // them): allowed, the ring starts once it has all it needs.
    const index = c.ringUp[RX] ? TX : RX;
    if (c.ringUp[index]) return;
    await ringUp(c, index, c.clean ? 'accept' : 'any');
    c.trace.push('(out of order)');
  },
  async 'table-while-running'(c) {
    const running = c.clean && c.ringUp[RX] && c.ringUp[TX];
    switch (c.rng.below(3)) {
      case 0:
        // The same table again: the rings stop and start on it, their place kept.
        await c.request(
          { type: 'SET_MEM_TABLE', regions: [c.region()] },
          c.clean ? 'accept' : 'any',
          { what: 'SET_MEM_TABLE again' },
        );
        return;
      case 1: {
        // Another memory that does not hold the rings: refused, they cannot start on it.
        const fd = c.memfd(4 * PAGE);
        await c.request(
          {
            type: 'SET_MEM_TABLE',
            regions: [c.region({ fd, size: 4 * PAGE, userAddr: 0x2000_0000 })],
          },
          running ? 'refuse' : 'any',
          { what: 'SET_MEM_TABLE without the rings' },
        );
        return;
      }
      default:
        await MUTATIONS['bad-table']!(c);
    }
  },
  async 'features-while-running'(c) {
    const running = c.clean && c.featuresSet && c.tableSet && (c.ringUp[RX] || c.ringUp[TX]);
    // The same features again, or one optional offered feature flipped.
    const optional = c.offered & ((1n << 5n) | (1n << 16n) | (1n << 3n) | (1n << 29n));
    const flip = c.rng.chance(0.3) ? 0n : optional & -optional;
    const features = c.features ^ flip;
    const same = flip === 0n;
    await c.request(
      { type: 'SET_FEATURES', features },
      same && c.clean ? 'accept' : running && !same ? 'refuse' : 'any',
    );
  },
  async 'vring-base-twice'(c) {
    const index = c.rng.below(QUEUES);
    const a = await c.request({ type: 'GET_VRING_BASE', index }, 'any');
    const b = await c.request({ type: 'GET_VRING_BASE', index }, 'any');
    if (a.kind === 'reply' && b.kind === 'reply') {
      const state = (p: Uint8Array) => [
        new DataView(p.buffer).getUint32(0, true),
        new DataView(p.buffer).getUint32(4, true),
      ];
      const [ia, na] = state(a.payload);
      const [ib, nb] = state(b.payload);
      if (ia !== index || ib !== index)
        fail(`GET_VRING_BASE ${index}: answered for ring ${ia}, ${ib}`);
      if (na !== nb) fail(`GET_VRING_BASE ${index} twice: ${na}, then ${nb}`);
    }
    c.clean = false;
    c.ringUp[index] = false;
  },
  async 'kick-again'(c) {
    // A new kick fd for a running ring: it goes on where it was.
    const index = c.rng.below(QUEUES);
    const ring = c.f.rings[index];
    if (!ring) return;
    const kick = createEventFd();
    const old = ring.kick;
    ring.kick = kick;
    old.close();
    await c.request({ type: 'SET_VRING_KICK', index, fd: kick }, c.clean ? 'accept' : 'any');
  },
  async status(c) {
    const body: VhostUserRequest = c.rng.pick<VhostUserRequest>([
      { type: 'SET_STATUS', status: 0 },
      { type: 'SET_STATUS', status: 0x80 },
      { type: 'RESET_OWNER' },
      { type: 'GET_STATUS' },
      { type: 'GET_CONFIG', offset: c.rng.below(16), size: c.rng.below(64), flags: 0 },
      { type: 'SET_VRING_ERR', index: c.rng.below(QUEUES), fd: c.eventFd() },
      { type: 'SET_VRING_CALL', index: c.rng.below(QUEUES), fd: null },
      { type: 'GET_QUEUE_NUM' },
    ]);
    const changes = body.type === 'SET_STATUS' || body.type === 'RESET_OWNER';
    await c.request(body, changes ? 'any' : c.clean ? 'accept' : 'any');
  },
  async 'same-eventfd'(c) {
    // One eventfd as two rings' kick, or as a ring's kick and another's call: the backend
    // drains what the device signals; nothing may loop or break.
    const from = c.f.rings[c.rng.below(QUEUES)];
    if (!from) return;
    const fd = c.rng.chance(0.5) ? from.kick : from.call;
    const type = c.rng.pick(['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const);
    await c.request({ type, index: c.rng.below(QUEUES), fd }, 'any');
    if (c.f.rings[TX]) sendFrame(c);
    for (let i = 0; i < 4; i++) await turn();
  },
  async 'second-frontend'(c) {
    // Another frontend while this one is served: turned away (its socket closes), this one
    // served on. (Unless the messages before, still being read, end the session first: then
    // the second one is served, which is no finding.)
    for (let i = 0; i < 4; i++) await turn();
    if (c.disconnected || c.hungUp) return;
    let sock: Fd;
    try {
      sock = connectUnix(c.path);
    } catch {
      return; // the backlog is full: refused by the kernel already
    }
    c.extra.push(sock);
    c.trace.push('a second frontend connects');
    const buf = new Uint8Array(16);
    const closed = await waitFor(() => {
      try {
        return receiveFds(sock, buf, 0)?.bytes === 0;
      } catch {
        return true; // reset
      }
    });
    if (!closed) fail('a second frontend was not turned away');
    sock.close();
    if (c.disconnected) fail(`a second frontend ended the first one's session: ${c.why()}`);
  },
  async 'bad-buffer'(c) {
    // A buffer outside the memory table (or straddling its end) on a ring: a ring fault for
    // the device, which must write nothing of it (the end of the memory is canary).
    const index = c.rng.below(QUEUES);
    const ring = c.f.rings[index];
    if (!ring) return;
    const { guestBase } = c.f;
    const addr = c.rng.pick([guestBase + MEM_SIZE - 16, guestBase + MEM_SIZE, guestBase - 64, 0]);
    const len = index === RX ? RX_BUF : FRAME_LEN;
    c.trace.push(`a ${index === RX ? 'receive' : 'transmit'} buffer at 0x${addr.toString(16)}`);
    c.clean = false;
    if (index === RX) ring.vq.addInbuf(addr, len, -1);
    else ring.vq.addOutbuf(addr, len, -1);
    ring.vq.kick();
    for (let i = 0; i < 4; i++) await turn();
  },
  async random(c) {
    const n = 1 + c.rng.below(200);
    const bytes = c.rng.bytes(n);
    const fds = c.rng.chance(0.3) ? [c.eventFd()] : [];
    await c.exchange(`${n} random bytes`, { bytes, fds }, 'none', 'any');
    // Whatever it was (maybe a request that gets a reply), the case ends here.
    for (let i = 0; i < 4; i++) await turn();
    c.trace.push('close');
    c.f.conn.close();
    c.hungUp = true;
  },
};

/** The kinds of hostile message a case draws from (the keys of `FuzzStats.mutations`). */
export const FUZZ_MUTATIONS: readonly string[] = Object.keys(MUTATIONS);

// ---- the run -------------------------------------------------------------------------------

let currentMdev: MdevDevice | null = null;

/**
 * Runs `cases` cases from `seed` against one backend world; stops at the first failure.
 * Replaces the process's `uncaughtException` listeners for the run (an exception escaping the
 * backend is a failure).
 */
export async function fuzzFrontend(
  cases: number,
  seed = 1,
  options: FuzzOptions = {},
): Promise<FuzzStats> {
  const stats: FuzzStats = {
    cases: 0,
    outcomes: { 'ack-error': 0, disconnect: 0, served: 0 },
    mutations: {},
    frames: 0,
    failure: null,
  };
  const dir = mkdtempSync(join(tmpdir(), 'vhost-fuzz-'));
  const events: VhostMdevEvent[] = [];
  const escaped: unknown[] = [];
  const onUncaught = (err: unknown) => escaped.push(err);
  process.on('uncaughtException', onUncaught);
  const { mvnet } = mvnetWorld({ offload: options.offload === true });
  vhostMdevInit({ socketDir: dir, onEvent: (_m, e) => events.push(e) });
  const mdev = mvnetCreate(UUID);
  currentMdev = mdev;
  const ops = mdevVirtioGetOps(mdev);
  const path = join(dir, `vhost-mdev-${UUID}.sock`);
  const first = options.from ?? 0;
  let c: Case | null = null;
  try {
    if ((statSync(path).mode & 0o777) !== 0o600) fail(`the socket ${path} is not owner-only`);
    // One plain session first, not counted: what the device sets up once for good (a worker
    // datapath's thread, with its event loop's fds) is there before the first baseline.
    const warm = TestFrontend.connect(path, { memSize: MEM_SIZE, num: NUM });
    try {
      await warm.negotiate();
      await warm.startRing(0);
      await warm.startRing(1);
    } finally {
      warm.close();
    }
    if (!(await waitFor(() => events.some((e) => e.type === 'disconnected')))) {
      fail('the warm-up session did not end');
    }
    // The fds open after a case are those before the next (a leak fails the run).
    let fdsBefore = openFds();
    for (let k = first; k < first + cases; k++) {
      const rng = new Rng((seed * 0x9e3779b1 + k * 0x85ebca6b) >>> 0);
      events.length = 0;
      c = new Case(rng, path, events);
      try {
        await playCase(c, stats);
        fdsBefore = await endCase(c, ops, mdev, fdsBefore, stats);
        if (escaped.length > 0) fail(`an exception escaped: ${String(escaped[0])}`);
      } catch (err) {
        if (!(err instanceof CaseFailure)) {
          stats.failure = {
            seed,
            caseIndex: k,
            message: `the fuzzer threw: ${String(err)}`,
            trace: c.trace,
          };
        } else {
          stats.failure = { seed, caseIndex: k, message: err.message, trace: c.trace };
        }
        if (escaped.length > 0) stats.failure.message += ` (escaped: ${String(escaped[0])})`;
        return stats;
      } finally {
        c.f.close();
        for (const fd of c.extra) fd.close();
      }
      stats.cases++;
    }
    return stats;
  } finally {
    process.off('uncaughtException', onUncaught);
    currentMdev = null;
    for (const m of mdevDevices()) if (m.uuid === UUID) sysfs.write(`${m.path}/remove`, '1');
    vhostMdevExit();
    mvnet.exit();
    mdevVirtioExit();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function playCase(c: Case, stats: FuzzStats): Promise<void> {
  const rng = c.rng;
  // How far the valid bring-up goes before the first hostile message: often all the way.
  const prefix = rng.chance(0.5) ? PLAN.length : rng.below(PLAN.length + 1);
  for (const step of PLAN.slice(0, prefix)) {
    await planStep(c, step, 'accept');
    if (c.hungUp) return;
  }
  const datapath = c.ringUp[RX] && c.ringUp[TX] && rng.chance(0.7);
  if (datapath) {
    postRx(c);
    for (let i = rng.below(4); i > 0; i--) sendFrame(c);
  }
  const mutations = rng.chance(0.12) ? 0 : 1 + rng.below(3);
  for (let i = 0; i < mutations && !c.hungUp && !c.disconnected; i++) {
    if (datapath) {
      // Frames in flight while the hostile message arrives.
      sendFrame(c);
      collect(c);
    }
    const kind = rng.pick(FUZZ_MUTATIONS);
    stats.mutations[kind] = (stats.mutations[kind] ?? 0) + 1;
    await MUTATIONS[kind]!(c);
  }
  // The rest of the bring-up, now and then, and the datapath.
  if (!c.hungUp && !c.disconnected && rng.chance(0.5)) {
    for (const step of PLAN.slice(prefix)) {
      if (step.startsWith('ring') && c.ringUp[step === 'ring0' ? RX : TX]) continue;
      await planStep(c, step, c.clean ? 'accept' : 'any');
      if (c.hungUp) return;
    }
  }
  if (!c.hungUp && c.f.rings[RX] && c.f.rings[TX] && rng.chance(0.8)) {
    postRx(c);
    for (let i = 1 + rng.below(3); i > 0; i--) sendFrame(c);
  }
  if (c.clean && c.featuresSet && c.tableSet && c.ringUp[RX] && c.ringUp[TX] && c.sent.length) {
    // All valid: every frame comes back, in order, unchanged but for num_buffers.
    const ok = await waitFor(() => {
      collect(c);
      return c.got.length >= c.sent.length;
    });
    if (!ok) fail(`${c.got.length} of ${c.sent.length} frames came back: ${c.why()}`);
    for (let i = 0; i < 3; i++) await turn();
    collect(c);
    if (c.got.length !== c.sent.length)
      fail(`${c.got.length} frames came back for ${c.sent.length}`);
    for (const [i, frame] of c.got.entries()) {
      const want = loopedFrame(c.sent[i]!);
      if (frame.length !== want.length || frame.some((b, j) => b !== want[j])) {
        fail(`frame ${i} came back changed`);
      }
    }
  } else {
    for (let i = 0; i < 2; i++) await turn();
    collect(c);
  }
}

async function endCase(
  c: Case,
  ops: ReturnType<typeof mdevVirtioGetOps>,
  mdev: MdevDevice,
  fdsBefore: Set<string>,
  stats: FuzzStats,
): Promise<Set<string>> {
  c.closedByBackend = c.disconnected;
  c.trace.push('close');
  c.f.conn.close();
  if (!(await waitFor(() => c.disconnected))) fail('the backend did not see the frontend go');
  const reason = c.why();
  if (c.closedByBackend === false && reason !== 'the frontend closed the socket') {
    // Data sent just before the close (a truncated message) ends the session as a protocol error.
    c.closedByBackend = true;
  }
  stats.frames += c.got.length;
  for (const e of c.events) {
    if (e.type === 'refused' && !CLEAN_ERROR.test(e.error)) {
      fail(`${e.request} refused with a host error: ${e.error}`);
    }
  }
  // The device is reset, its queues stopped, and the backend free for the next frontend.
  if (ops.getStatus(mdev) !== 0) fail(`device status ${ops.getStatus(mdev)} after the disconnect`);
  for (let i = 0; i < QUEUES; i++) {
    if (ops.getVqReady(mdev, i)) fail(`queue ${i} ready after the disconnect`);
  }
  if (vhostMdevBackendOf(mdev)?.connected !== false) fail('the backend still holds a session');
  // No write outside the rings and the buffers.
  const mem = new Uint8Array(c.f.buffer);
  for (let start = c.mask.indexOf(0); start >= 0; ) {
    const end = c.mask.indexOf(1, start);
    const stop = end < 0 ? MEM_SIZE : end;
    if (Buffer.compare(mem.subarray(start, stop), CANARY.subarray(start, stop)) !== 0) {
      let i = start;
      while (mem[i] === CANARY[i]) i++;
      fail(`the frontend's memory changed at offset 0x${i.toString(16)}, outside its buffers`);
    }
    start = end < 0 ? -1 : c.mask.indexOf(0, end);
  }
  for (const { addr, bytes } of c.txBufs) {
    const now = c.f.memory.read(addr, bytes.length);
    if (now.some((b, j) => b !== bytes[j])) fail(`transmit buffer 0x${addr.toString(16)} written`);
  }
  // Nothing of the case stays open or mapped.
  c.f.close();
  for (const fd of c.extra) fd.close();
  const fdsAfter = openFds();
  const leaked = [...fdsAfter].filter((fd) => !fdsBefore.has(fd) && SESSION_FD.test(fd));
  if (leaked.length > 0) fail(`fds left open: ${leaked.join(', ')}`);
  const mapped = caseMappings();
  if (mapped.length > 0) fail(`mappings left: ${mapped.join('; ')}`);
  const outcome: FuzzOutcome = c.closedByBackend
    ? 'disconnect'
    : c.ackErrors > 0
      ? 'ack-error'
      : 'served';
  stats.outcomes[outcome]++;
  return fdsAfter;
}

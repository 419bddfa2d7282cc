import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { VhostUserConnection } from './connection';
import type { Fd } from './fd';
import {
  decodeReply,
  decodeRequest,
  encodeConfigReply,
  encodeReplyAck,
  encodeRequest,
  encodeU64Reply,
  encodeVringBaseReply,
  requestHasReply,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_MAX_MEM_SLOTS,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_STATUS,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_VERSION,
  type VhostUserMessage,
  type VhostUserRequest,
} from './protocol';
import { createEventFd, createMemfd, drainEventFd, signalEventFd, socketPair } from './sys';

const openFds = () => readdirSync('/proc/self/fd').length;
const cleanup: Fd[] = [];
afterEach(() => {
  for (const fd of cleanup.splice(0)) fd.close();
});
function keep<T extends Fd>(fd: T): T {
  cleanup.push(fd);
  return fd;
}

/** A message as the framing produces it, from raw fields (for hostile cases). */
function raw(request: number, payload: number[] | Uint8Array, fds: Fd[] = [], flags = 1) {
  return { request, flags, payload: Uint8Array.from(payload), fds } satisfies VhostUserMessage;
}

/** Encodes, sends over a socketpair and reads back through VhostUserConnection. */
function roundTrip(body: VhostUserRequest, needReply = false) {
  const [a, b] = socketPair();
  const frontend = new VhostUserConnection(a);
  const conn = new VhostUserConnection(b);
  try {
    frontend.send(encodeRequest(body, { needReply }));
    const got = conn.receiveRequest();
    expect(got).not.toBeNull();
    return got!;
  } finally {
    frontend.close();
    conn.close();
  }
}

describe('request codec round trips', () => {
  const plain: VhostUserRequest[] = [
    { type: 'GET_FEATURES' },
    { type: 'SET_FEATURES', features: (1n << 32n) | (1n << 30n) | 1n },
    { type: 'SET_OWNER' },
    { type: 'RESET_OWNER' },
    { type: 'SET_VRING_NUM', index: 1, num: 256 },
    {
      type: 'SET_VRING_ADDR',
      index: 0,
      flags: 0,
      desc: 0x7f00_1234_0000,
      used: 0x7f00_1234_2000,
      avail: 0x7f00_1234_1000,
      log: 0,
    },
    { type: 'SET_VRING_BASE', index: 0, num: 17 },
    { type: 'GET_VRING_BASE', index: 1 },
    { type: 'GET_PROTOCOL_FEATURES' },
    { type: 'SET_PROTOCOL_FEATURES', features: (1n << 3n) | (1n << 9n) },
    { type: 'GET_QUEUE_NUM' },
    { type: 'SET_VRING_ENABLE', index: 1, enable: true },
    { type: 'SET_VRING_ENABLE', index: 0, enable: false },
    { type: 'GET_CONFIG', offset: 0, size: 12, flags: 0 },
    { type: 'GET_MAX_MEM_SLOTS' },
    { type: 'SET_STATUS', status: 0x0f },
    { type: 'GET_STATUS' },
    { type: 'SET_VRING_CALL', index: 3, fd: null },
  ];
  for (const body of plain) {
    it(`${body.type} ${JSON.stringify(body, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`, () => {
      const got = roundTrip(body, true);
      expect(got.body).toEqual(body);
      expect(got.needReply).toBe(true);
    });
  }

  it('SET_VRING_KICK carries its eventfd', () => {
    const ev = keep(createEventFd());
    const got = roundTrip({ type: 'SET_VRING_KICK', index: 2, fd: ev });
    expect(got.needReply).toBe(false);
    if (got.body.type !== 'SET_VRING_KICK') throw new Error(got.body.type);
    expect(got.body.index).toBe(2);
    const received = keep(got.body.fd!);
    signalEventFd(received);
    expect(drainEventFd(ev)).toBe(1);
  });

  it('SET_MEM_TABLE carries one fd per region, in order', () => {
    const m0 = keep(createMemfd('r0', 4096));
    const m1 = keep(createEventFd());
    const regions = [
      { guestAddr: 0, size: 0x8000_0000, userAddr: 0x7f00_0000_0000, mmapOffset: 0, fd: m0 },
      { guestAddr: 2 ** 32, size: 4096, userAddr: 0x7f10_0000_0000, mmapOffset: 4096, fd: m1 },
    ];
    const got = roundTrip({ type: 'SET_MEM_TABLE', regions });
    if (got.body.type !== 'SET_MEM_TABLE') throw new Error(got.body.type);
    const back = got.body.regions;
    for (const r of back) keep(r.fd);
    expect(back.map(({ fd: _, ...r }) => r)).toEqual(regions.map(({ fd: _, ...r }) => r));
    // Region 1's fd is the eventfd: the order of the fds is the order of the regions.
    signalEventFd(back[1]!.fd, 4);
    expect(drainEventFd(m1)).toBe(4);
  });
});

describe('reply codec round trips', () => {
  const reply = (m: { bytes: Uint8Array }): VhostUserMessage => {
    const v = new DataView(m.bytes.buffer);
    return {
      request: v.getUint32(0, true),
      flags: v.getUint32(4, true),
      payload: m.bytes.subarray(VHOST_USER_HDR_SIZE, VHOST_USER_HDR_SIZE + v.getUint32(8, true)),
      fds: [],
    };
  };

  it('u64 replies: features, protocol features, queue num, mem slots, status', () => {
    for (const [req, value] of [
      [VHOST_USER_GET_FEATURES, (1n << 32n) | (1n << 30n)],
      [VHOST_USER_GET_PROTOCOL_FEATURES, 1n << 3n],
      [VHOST_USER_GET_QUEUE_NUM, 2n],
      [VHOST_USER_GET_MAX_MEM_SLOTS, 8n],
      [VHOST_USER_GET_STATUS, 0x0fn],
    ] as const) {
      const m = reply(encodeU64Reply(req, value));
      expect(m.flags).toBe(VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
      expect(decodeReply(req, m)).toEqual({ type: 'u64', value });
    }
    expect(() => encodeU64Reply(VHOST_USER_SET_MEM_TABLE, 0)).toThrow(RangeError);
  });

  it('GET_VRING_BASE, GET_CONFIG and reply-ack', () => {
    const base = decodeReply(VHOST_USER_GET_VRING_BASE, reply(encodeVringBaseReply(1, 300)));
    expect(base).toEqual({ type: 'vring-state', index: 1, num: 300 });

    const data = Uint8Array.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    const req = { offset: 0, size: 6, flags: 0 };
    const cfg = decodeReply(VHOST_USER_GET_CONFIG, reply(encodeConfigReply(req, data)));
    expect(cfg).toMatchObject({ type: 'config', offset: 0, size: 6, flags: 0 });
    expect([...(cfg as { data: Uint8Array }).data]).toEqual([...data]);
    expect(() => encodeConfigReply(req, new Uint8Array(5))).toThrow(RangeError);

    const ack = decodeReply(VHOST_USER_SET_MEM_TABLE, reply(encodeReplyAck(5, 0)), true);
    expect(ack).toEqual({ type: 'u64', value: 0n });
    const nack = decodeReply(VHOST_USER_SET_MEM_TABLE, reply(encodeReplyAck(5, 1)), true);
    expect(nack).toEqual({ type: 'u64', value: 1n });
  });

  it('rejects a reply without the reply flag, to another request, or with a wrong size', () => {
    const ok = reply(encodeU64Reply(VHOST_USER_GET_FEATURES, 1n));
    expect(() =>
      decodeReply(VHOST_USER_GET_FEATURES, { ...ok, flags: VHOST_USER_VERSION }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FLAGS' }));
    expect(() => decodeReply(VHOST_USER_GET_STATUS, ok)).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() =>
      decodeReply(VHOST_USER_GET_FEATURES, { ...ok, payload: ok.payload.subarray(0, 4) }),
    ).toThrow(expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_SIZE' }));
  });
});

describe('requestHasReply', () => {
  it('names the requests answered by a message of their own, and no other', () => {
    const own = [
      VHOST_USER_GET_FEATURES,
      VHOST_USER_GET_VRING_BASE,
      VHOST_USER_GET_PROTOCOL_FEATURES,
      VHOST_USER_GET_QUEUE_NUM,
      VHOST_USER_GET_CONFIG,
      VHOST_USER_GET_MAX_MEM_SLOTS,
      VHOST_USER_GET_STATUS,
    ];
    for (let r = 0; r < 64; r++) expect(requestHasReply(r), `request ${r}`).toBe(own.includes(r));
  });
});

describe('hostile requests', () => {
  /** The exact payload size of each request; the decoder must refuse one byte more or less. */
  const sizes: Array<[number, string, number]> = [
    [1, 'GET_FEATURES', 0],
    [2, 'SET_FEATURES', 8],
    [3, 'SET_OWNER', 0],
    [4, 'RESET_OWNER', 0],
    [8, 'SET_VRING_NUM', 8],
    [9, 'SET_VRING_ADDR', 40],
    [10, 'SET_VRING_BASE', 8],
    [11, 'GET_VRING_BASE', 8],
    [12, 'SET_VRING_KICK', 8],
    [13, 'SET_VRING_CALL', 8],
    [14, 'SET_VRING_ERR', 8],
    [15, 'GET_PROTOCOL_FEATURES', 0],
    [16, 'SET_PROTOCOL_FEATURES', 8],
    [17, 'GET_QUEUE_NUM', 0],
    [18, 'SET_VRING_ENABLE', 8],
    [36, 'GET_MAX_MEM_SLOTS', 0],
    [39, 'SET_STATUS', 8],
    [40, 'GET_STATUS', 0],
  ];
  for (const [request, name, size] of sizes) {
    it(`${name} (${request}) takes exactly ${size} payload bytes`, () => {
      // Kick/call/err without the no-fd bit take one fd: give it one so only the size is wrong.
      const nofd = request >= 12 && request <= 14 ? [0, 1] : [];
      const ok = new Uint8Array(size);
      ok.set(nofd);
      expect(decodeRequest(raw(request, ok)).body.type).toBe(name);
      for (const wrong of [size + 1, size - 1, size + 8].filter((n) => n >= 0)) {
        const bad = new Uint8Array(wrong);
        bad.set(nofd.slice(0, wrong));
        expect(() => decodeRequest(raw(request, bad))).toThrow(
          expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_SIZE', request }),
        );
      }
    });
  }

  it('SET_MEM_TABLE: size must match the region count, the count must match the fds', () => {
    const mems = [0, 1, 2].map(() => keep(createMemfd('r', 4096)));
    const table = (n: number, regions = n) => {
      const p = new Uint8Array(8 + regions * 32);
      new DataView(p.buffer).setUint32(0, n, true);
      for (let i = 0; i < regions; i++)
        new DataView(p.buffer).setUint32(8 + i * 32 + 8, 4096, true);
      return p;
    };
    const before = openFds();
    // A size for 3 regions with a count of 2: refused, and both fds closed by the decoder.
    expect(() => decodeRequest(raw(5, table(2, 3), mems.slice(0, 2)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_SIZE' }),
    );
    expect(mems.slice(0, 2).every((m) => m.closed)).toBe(true);
    expect(openFds()).toBe(before - 2);
    const more = [0, 1, 2].map(() => keep(createMemfd('r', 4096)));
    expect(() => decodeRequest(raw(5, table(2), more))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FDS' }),
    );
    expect(more.every((m) => m.closed)).toBe(true);
    expect(() => decodeRequest(raw(5, table(9)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() => decodeRequest(raw(5, table(0)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() => decodeRequest(raw(5, [1, 0, 0]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_SIZE' }),
    );
    // An empty region and an address JS numbers cannot hold.
    const empty = table(1);
    empty.fill(0, 8);
    expect(() => decodeRequest(raw(5, empty, [keep(createEventFd())]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    const huge = table(1);
    new DataView(huge.buffer).setBigUint64(8 + 16, 1n << 60n, true);
    expect(() => decodeRequest(raw(5, huge, [keep(createEventFd())]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(decodeRequest(raw(5, table(1), [mems[2]!])).body.type).toBe('SET_MEM_TABLE');
  });

  it('fds on a request that takes none are closed, not leaked', () => {
    const ev = keep(createEventFd());
    const before = openFds();
    const extra = [keep(createEventFd()), keep(createEventFd())];
    expect(openFds()).toBe(before + 2);
    expect(() => decodeRequest(raw(VHOST_USER_GET_FEATURES, [], extra))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FDS', request: 1 }),
    );
    expect(openFds()).toBe(before);
    // A kick with the no-fd bit set takes none either; without it, exactly one.
    const nofd = [2, 1, 0, 0, 0, 0, 0, 0];
    expect(() =>
      decodeRequest(raw(VHOST_USER_SET_VRING_KICK, nofd, [keep(createEventFd())])),
    ).toThrow(expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FDS' }));
    expect(() => decodeRequest(raw(VHOST_USER_SET_VRING_KICK, [2, 0, 0, 0, 0, 0, 0, 0]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FDS' }),
    );
    expect(openFds()).toBe(before);
    expect(ev.closed).toBe(false);
  });

  it('unknown requests, bad flags and out-of-range fields', () => {
    expect(() => decodeRequest(raw(99, []))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_UNKNOWN_REQUEST', request: 99 }),
    );
    expect(() => decodeRequest(raw(6, new Uint8Array(16)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_UNKNOWN_REQUEST' }),
    );
    for (const flags of [0, 2, 3, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 1 | (1 << 4)]) {
      expect(() => decodeRequest(raw(1, [], [], flags))).toThrow(
        expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FLAGS' }),
      );
    }
    expect(decodeRequest(raw(1, [], [], 1 | VHOST_USER_NEED_REPLY_MASK)).needReply).toBe(true);
    // SET_VRING_ENABLE takes 0 or 1, SET_STATUS a byte, kick/call/err no reserved bits.
    expect(() => decodeRequest(raw(18, [0, 0, 0, 0, 2, 0, 0, 0]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() => decodeRequest(raw(39, [0, 1, 0, 0, 0, 0, 0, 0]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() => decodeRequest(raw(13, [0, 3, 0, 0, 0, 0, 0, 0]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    // A ring address above 2^53-1 is refused rather than rounded.
    const addr = new Uint8Array(40);
    new DataView(addr.buffer).setBigUint64(8, 1n << 63n, true);
    expect(() => decodeRequest(raw(9, addr))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
  });

  it('GET_CONFIG: the size field must match the payload and stay within 256 bytes', () => {
    const cfg = (offset: number, size: number, payload = size) => {
      const p = new Uint8Array(12 + payload);
      const v = new DataView(p.buffer);
      v.setUint32(0, offset, true);
      v.setUint32(4, size, true);
      return p;
    };
    expect(decodeRequest(raw(24, cfg(4, 8))).body).toEqual({
      type: 'GET_CONFIG',
      offset: 4,
      size: 8,
      flags: 0,
    });
    expect(() => decodeRequest(raw(24, cfg(0, 8, 4)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_SIZE' }),
    );
    expect(() => decodeRequest(raw(24, cfg(0, 257)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() => decodeRequest(raw(24, cfg(250, 8)))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_VALUE' }),
    );
    expect(() => decodeRequest(raw(24, [0, 0, 0]))).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_SIZE' }),
    );
  });
});

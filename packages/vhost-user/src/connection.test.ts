import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { VhostUserConnection } from './connection';
import type { Fd } from './fd';
import {
  encodeRequest,
  encodeU64Reply,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_VERSION,
} from './protocol';
import { createEventFd, createMemfd, POLLIN, pollFds, sendFds, socketPair } from './sys';

const openFds = () => readdirSync('/proc/self/fd').length;
const cleanup: Array<{ close(): unknown }> = [];
afterEach(() => {
  for (const c of cleanup.splice(0)) c.close();
});

/** A backend connection and the raw frontend socket that feeds it. */
function pair(options = {}): { frontend: Fd; conn: VhostUserConnection } {
  const [frontend, backend] = socketPair();
  const conn = new VhostUserConnection(backend, options);
  cleanup.push(frontend, conn);
  return { frontend, conn };
}

function header(request: number, size: number, flags = VHOST_USER_VERSION): Uint8Array {
  const h = new Uint8Array(VHOST_USER_HDR_SIZE);
  const v = new DataView(h.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  return h;
}

describe('VhostUserConnection framing', () => {
  it('assembles a message from one-byte writes; fds arriving with the header are kept', () => {
    const { frontend, conn } = pair();
    const ev = createEventFd();
    cleanup.push(ev);
    const { bytes } = encodeRequest({ type: 'SET_VRING_CALL', index: 1, fd: ev });
    for (let i = 0; i < bytes.length; i++) {
      expect(conn.receive()).toBeNull();
      sendFds(frontend, bytes.subarray(i, i + 1), i === 0 ? [ev] : []);
    }
    const req = conn.receiveRequest();
    expect(req?.body).toMatchObject({ type: 'SET_VRING_CALL', index: 1 });
    if (req?.body.type === 'SET_VRING_CALL') cleanup.push(req.body.fd!);
    expect(conn.receive()).toBeNull();
    expect(conn.ended).toBe(false);
  });

  it('reads back-to-back messages one at a time, each with its own fds', () => {
    const { frontend, conn } = pair();
    const a = createEventFd();
    const b = createEventFd();
    cleanup.push(a, b);
    for (const m of [
      encodeRequest({ type: 'SET_VRING_KICK', index: 0, fd: a }),
      encodeRequest({ type: 'GET_FEATURES' }),
      encodeRequest({ type: 'SET_VRING_KICK', index: 1, fd: b }),
    ]) {
      sendFds(frontend, m.bytes, m.fds);
    }
    const got = [conn.receive(), conn.receive(), conn.receive(), conn.receive()];
    expect(got.map((m) => m?.fds.length ?? null)).toEqual([1, 0, 1, null]);
    for (const m of got) for (const fd of m?.fds ?? []) cleanup.push(fd);
  });

  it('the peer closing between messages ends the stream; inside one is a truncation', () => {
    const { frontend, conn } = pair();
    frontend.close();
    expect(conn.receive()).toBeNull();
    expect(conn.ended).toBe(true);

    const second = pair();
    sendFds(second.frontend, header(VHOST_USER_GET_FEATURES, 0).subarray(0, 5));
    expect(second.conn.receive()).toBeNull();
    second.frontend.close();
    expect(() => second.conn.receive()).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_TRUNCATED' }),
    );
  });

  it('a truncated payload is an error too, and closes the fds that came with it', () => {
    const { frontend, conn } = pair();
    const mem = createMemfd('r', 4096);
    cleanup.push(mem);
    const before = openFds();
    sendFds(frontend, header(5, 40), [mem]);
    expect(conn.receive()).toBeNull();
    expect(openFds()).toBe(before + 1);
    frontend.close();
    expect(() => conn.receive()).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_TRUNCATED', request: 5 }),
    );
    expect(openFds()).toBe(before - 1);
  });

  it('refuses an oversized size field before reading the payload, and stays refused', () => {
    const { frontend, conn } = pair({ maxPayload: 256 });
    sendFds(frontend, header(VHOST_USER_GET_FEATURES, 0xffff_ffff));
    let first: unknown;
    try {
      conn.receive();
    } catch (e) {
      first = e;
    }
    expect(first).toMatchObject({ code: 'ERR_VHOST_USER_TOO_BIG', request: 1 });
    expect(() => conn.receive()).toThrow(first as Error);
  });

  it('too many fds: a protocol error, every received fd closed', () => {
    const { frontend, conn } = pair({ maxFds: 2 });
    const mems = [0, 1, 2, 3].map(() => createMemfd('r', 4096));
    cleanup.push(...mems);
    const before = openFds();
    sendFds(frontend, header(5, 8 + 4 * 32), mems);
    expect(() => conn.receive()).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FDS' }),
    );
    expect(openFds()).toBe(before);
  });

  it('fds on a message that takes none are closed, and the stream stays usable', () => {
    const { frontend, conn } = pair();
    const evs = [createEventFd(), createEventFd()];
    cleanup.push(...evs);
    const before = openFds();
    sendFds(frontend, header(VHOST_USER_GET_FEATURES, 0), evs);
    expect(() => conn.receiveRequest()).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_BAD_FDS', request: 1 }),
    );
    expect(openFds()).toBe(before);
    // The framing is intact: a decode error is the request's, not the stream's.
    const next = encodeRequest({ type: 'GET_STATUS' });
    sendFds(frontend, next.bytes);
    expect(conn.receiveRequest()?.body).toEqual({ type: 'GET_STATUS' });
  });

  it('an unknown request is read whole, so the backend can answer and go on', () => {
    const { frontend, conn } = pair();
    sendFds(frontend, Uint8Array.from([...header(77, 4), 1, 2, 3, 4]));
    expect(() => conn.receiveRequest()).toThrow(
      expect.objectContaining({ code: 'ERR_VHOST_USER_UNKNOWN_REQUEST', request: 77 }),
    );
    sendFds(frontend, encodeRequest({ type: 'GET_FEATURES' }).bytes);
    expect(conn.receiveRequest()?.body).toEqual({ type: 'GET_FEATURES' });
  });

  it('request and reply over one socket pair, both ends framed', () => {
    const [a, b] = socketPair();
    const frontend = new VhostUserConnection(a);
    const backend = new VhostUserConnection(b);
    cleanup.push(frontend, backend);
    frontend.send(encodeRequest({ type: 'GET_FEATURES' }));
    const req = backend.receiveRequest()!;
    backend.send(encodeU64Reply(req.request, 1n << 32n));
    expect(pollFds([{ fd: a, events: POLLIN }], 1000)).toEqual([POLLIN]);
    expect(frontend.receiveReply(VHOST_USER_GET_FEATURES)).toEqual({
      type: 'u64',
      value: 1n << 32n,
    });
  });

  it('send waits for room and then times out when the peer never reads', () => {
    const [a, b] = socketPair();
    const conn = new VhostUserConnection(a, { sendTimeoutMs: 10 });
    cleanup.push(conn, b);
    const big = { bytes: new Uint8Array(1 << 22), fds: [] };
    expect(() => conn.send(big)).toThrow(expect.objectContaining({ code: 'ETIMEDOUT' }));
  });

  it('checks its limits', () => {
    const [a, b] = socketPair();
    cleanup.push(a, b);
    expect(() => new VhostUserConnection(a, { maxFds: 65 })).toThrow(RangeError);
    expect(() => new VhostUserConnection(a, { maxPayload: -1 })).toThrow(RangeError);
  });
});

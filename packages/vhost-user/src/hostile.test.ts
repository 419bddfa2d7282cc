import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VhostUserConnection } from './connection';
import {
  decodeRequest,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_STATUS,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_SET_FEATURES,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_VRING_ADDR,
  VHOST_USER_SET_VRING_CALL,
  VHOST_USER_SET_VRING_ENABLE,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_VERSION,
  type VhostUserMessage,
  VhostUserProtocolError,
  type VhostUserRequest,
} from './protocol';
import { createEventFd, sendFds, socketPair } from './sys';

const openFds = () => readdirSync('/proc/self/fd').length;

const KNOWN = [
  VHOST_USER_GET_FEATURES,
  VHOST_USER_SET_FEATURES,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_VRING_ADDR,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_SET_VRING_CALL,
  VHOST_USER_SET_VRING_ENABLE,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_STATUS,
];

/** A message as a hostile frontend may send it: any header, any payload, any fds. */
const hostileMessage = fc.record({
  request: fc.oneof(fc.constantFrom(...KNOWN), fc.integer({ min: 0, max: 0xffff_ffff })),
  flags: fc.oneof(
    fc.constantFrom(VHOST_USER_VERSION, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK),
    fc.integer({ min: 0, max: 0xffff_ffff }),
  ),
  payload: fc.oneof(
    // Sizes the layouts have (u64, state, addr, a table of 1-2 regions, a 12-byte config read)
    // with random contents, then anything.
    fc
      .constantFrom(0, 8, 40, 40 + 32, 24)
      .chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    fc.uint8Array({ maxLength: 300 }),
  ),
  /** Added to the size field: a header that lies about its payload. */
  sizeLie: fc.oneof(fc.constant(0), fc.integer({ min: -16, max: 16 })),
  nfds: fc.integer({ min: 0, max: 12 }),
});

function fdsOf(body: VhostUserRequest): Array<{ close(): unknown }> {
  if (body.type === 'SET_MEM_TABLE') return body.regions.map((r) => r.fd);
  if ('fd' in body && body.fd !== null) return [body.fd];
  return [];
}

describe('a hostile frontend', () => {
  it('gets protocol errors only, and no fd leaks, whatever it sends in whatever chunks', () => {
    fc.assert(
      fc.property(
        // Chunks of 8 bytes or more keep the whole stream inside the socket buffer.
        fc.array(hostileMessage, { maxLength: 5 }),
        fc.integer({ min: 8, max: 64 }),
        (messages, chunk) => {
          const before = openFds();
          const [frontend, backend] = socketPair();
          const conn = new VhostUserConnection(backend, { maxPayload: 512 });
          const ev = createEventFd();
          for (const m of messages) {
            const bytes = new Uint8Array(VHOST_USER_HDR_SIZE + m.payload.length);
            const h = new DataView(bytes.buffer);
            h.setUint32(0, m.request, true);
            h.setUint32(4, m.flags, true);
            h.setUint32(8, Math.max(0, m.payload.length + m.sizeLie), true);
            bytes.set(m.payload, VHOST_USER_HDR_SIZE);
            for (let off = 0; off < bytes.length; off += chunk) {
              const fds = off === 0 ? new Array(m.nfds).fill(ev) : [];
              const part = bytes.subarray(off, off + chunk);
              expect(sendFds(frontend, part, fds)).toBe(part.length);
            }
          }
          frontend.close();

          let decoded = 0;
          for (let i = 0; i <= messages.length; i++) {
            let msg: VhostUserMessage | null;
            try {
              msg = conn.receive();
            } catch (err) {
              // Framing is lost (a lying size, too many fds, a truncated message): stop here.
              expect(err).toBeInstanceOf(VhostUserProtocolError);
              break;
            }
            if (msg === null) {
              expect(conn.ended).toBe(true);
              break;
            }
            try {
              const req = decodeRequest(msg);
              decoded++;
              for (const fd of fdsOf(req.body)) fd.close();
            } catch (err) {
              expect(err).toBeInstanceOf(VhostUserProtocolError);
              expect(msg.fds.every((fd) => fd.closed)).toBe(true);
            }
          }
          expect(decoded).toBeLessThanOrEqual(messages.length);
          conn.close();
          ev.close();
          expect(openFds()).toBe(before);
        },
      ),
      { numRuns: 300 },
    );
  });
});

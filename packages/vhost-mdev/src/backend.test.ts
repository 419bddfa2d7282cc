import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import type { MvnetLoopback } from '@mdev/mvnet-loopback';
import { loopedFrame, mvnetCreate, mvnetWorld } from '@mdev/mvnet-loopback/testing';
import { until } from '@mdev/test-utils';
import {
  createEventFd,
  createMemfd,
  encodeRequest,
  listenUnix,
  POLLIN,
  pollFds,
  VHOST_USER_SET_VRING_ADDR,
} from '@mdev/vhost-user';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VhostMdevEvent } from './backend';
import { vhostMdevBackendOf, vhostMdevExit, vhostMdevInit, vhostMdevSetSocket } from './driver';
import { TestFrontend } from './testing';

const UUID = '5a2c3f8e-1d4b-4e6a-9c7d-0b1e2f3a4b5c';
const FRAME_LEN = 10 + 60; // VERSION_1 net header + a minimum Ethernet frame
/** Every open fd with what it is: a leak is an entry after that was not there before. */
const openFds = () =>
  new Set(
    readdirSync('/proc/self/fd').flatMap((n) => {
      try {
        return [`${n} -> ${readlinkSync(`/proc/self/fd/${n}`)}`];
      } catch {
        return []; // the fd readdir itself used
      }
    }),
  );
const newFds = (before: Set<string>) => [...openFds()].filter((fd) => !before.has(fd));
const memfdMaps = () =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes('memfd:test-frontend')).length;

let dir: string;
let mvnet: MvnetLoopback;
let events: VhostMdevEvent[];
const frontends: TestFrontend[] = [];

function socketPath(): string {
  return join(dir, `vhost-mdev-${UUID}.sock`);
}

function world(offload = false): MdevDevice {
  ({ mvnet } = mvnetWorld({ offload }));
  vhostMdevInit({ socketDir: dir, onEvent: (_m, e) => events.push(e) });
  return mvnetCreate(UUID);
}

function connect(): TestFrontend {
  const f = TestFrontend.connect(socketPath());
  frontends.push(f);
  return f;
}

/** Brings both rings up and posts `count` receive buffers. */
async function bringUp(f: TestFrontend, count = 16): Promise<void> {
  await f.negotiate();
  const rx = await f.startRing(0);
  await f.startRing(1);
  for (let i = 0; i < count; i++) {
    const addr = f.allocator.alloc(2048)!;
    rx.addInbuf(addr, 2048, addr);
  }
  rx.kick();
}

/** Sends one frame on the transmit ring and returns the bytes sent. */
function send(f: TestFrontend, seed: number): Uint8Array {
  const tx = f.rings[1]!.vq;
  const addr = f.allocator.alloc(FRAME_LEN)!;
  const bytes = new Uint8Array(FRAME_LEN);
  for (let i = 10; i < FRAME_LEN; i++) bytes[i] = (seed * 31 + i) & 0xff;
  f.memory.write(addr, bytes);
  tx.addOutbuf(addr, FRAME_LEN, addr);
  tx.kick();
  return bytes;
}

/** The next frame on the receive ring, or null. */
function received(f: TestFrontend): Uint8Array | null {
  const buf = f.rings[0]!.vq.getBuf();
  return buf === null ? null : f.memory.read(buf.token, buf.len).slice();
}

/** Waits for the next frame on the receive ring (null after 5 s). */
async function nextFrame(f: TestFrontend): Promise<Uint8Array | null> {
  let got: Uint8Array | null = null;
  await until(() => {
    got = received(f);
    return got !== null;
  });
  return got;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vhost-mdev-'));
  events = [];
});

afterEach(() => {
  for (const f of frontends.splice(0)) f.close();
  for (const m of mdevDevices()) if (m.uuid === UUID) sysfs.write(`${m.path}/remove`, '1');
  vhostMdevExit();
  mvnet?.exit();
  mdevVirtioExit();
  rmSync(dir, { recursive: true, force: true });
});

describe('vhost_mdev', () => {
  it('binds a virtio mdev and serves it on an owner-only socket named in sysfs', () => {
    const mdev = world();
    expect(mdev.driver?.name).toBe('vhost_mdev');
    expect(sysfs.read(`${mdev.path}/vhost_socket`)).toBe(`${socketPath()}\n`);
    const st = statSync(socketPath());
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(events).toEqual([{ type: 'listening', path: socketPath() }]);
  });

  for (const offload of [false, true]) {
    it(`loops a frontend's frames back through mvnet (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      world(offload);
      const f = connect();
      await bringUp(f);
      const sent = [send(f, 1), send(f, 2), send(f, 3)];
      const got: Uint8Array[] = [];
      expect(
        await until(() => {
          for (let r = received(f); r !== null; r = received(f)) got.push(r);
          return got.length === 3;
        }),
      ).toBe(true);
      expect(got).toEqual(sent.map(loopedFrame));
      // mvnet offers VIRTIO_F_IN_ORDER through vhost_mdev, the frontend's rings use it, and the
      // transmitted buffers come back in order.
      expect(f.features & (1n << 35n)).toBe(1n << 35n);
      const tx = f.rings[1]!.vq;
      expect(tx.inOrder).toBe(true);
      const done: number[] = [];
      await until(() => {
        for (let t = tx.getBufToken(); t !== undefined; t = tx.getBufToken()) done.push(t);
        return done.length === 3;
      });
      expect(done).toHaveLength(3);
      expect(done).toEqual([...done].sort((a, b) => a - b));
      expect(tx.isBroken).toBe(false);
      // The device told the frontend through the call eventfd (the ring asks for interrupts).
      // With the worker datapath the frames can be seen on the ring a moment before the main
      // thread takes the interrupt and signals the fd: wait for it, bounded.
      await until(() => pollFds([{ fd: f.rings[0]!.call, events: POLLIN }], 0)[0] === POLLIN);
      expect(pollFds([{ fd: f.rings[0]!.call, events: POLLIN }], 0)).toEqual([POLLIN]);
    });
  }

  it('answers GET_VRING_BASE with the ring state and stops the ring', async () => {
    const mdev = world();
    const f = connect();
    await bringUp(f, 4);
    send(f, 1);
    send(f, 2);
    await until(() => f.rings[1]!.vq.getBuf() !== null);
    const reply = await f.request({ type: 'GET_VRING_BASE', index: 1 });
    expect(reply).toEqual({ type: 'vring-state', index: 1, num: 2 });
    expect(mdevVirtioGetOps(mdev).getVqReady(mdev, 1)).toBe(false);
    expect(events).toContainEqual({ type: 'ring-stopped', index: 1, state: 2 });
  });

  it('reads back the status the frontend wrote: 0 after a reset, no FEATURES_OK before features', async () => {
    const mdev = world();
    const f = connect();
    await f.negotiate();
    await f.request({ type: 'SET_STATUS', status: 0x0b }, { needReply: true });
    expect(await f.u64({ type: 'GET_STATUS' })).toBe(0x0bn);
    await f.request({ type: 'SET_STATUS', status: 0 }, { needReply: true });
    // The device itself stays acknowledged by the backend; the frontend sees its own reset.
    expect(mdevVirtioGetOps(mdev).getStatus(mdev)).not.toBe(0);
    expect(await f.u64({ type: 'GET_STATUS' })).toBe(0n);
    await f.request({ type: 'SET_STATUS', status: 0x0b }, { needReply: true });
    expect(await f.u64({ type: 'GET_STATUS' })).toBe(0x03n);
  });

  it('resets the device when the frontend goes, then serves the next one; nothing leaks', async () => {
    const mdev = world();
    const fdsBefore = openFds();
    const first = connect();
    await bringUp(first);
    send(first, 1);
    await until(() => received(first) !== null);
    first.close();
    await until(() => events.some((e) => e.type === 'disconnected'));
    expect(mdevVirtioGetOps(mdev).getStatus(mdev)).toBe(0);
    expect(mdevVirtioGetOps(mdev).getVqReady(mdev, 0)).toBe(false);
    expect(vhostMdevBackendOf(mdev)?.connected).toBe(false);
    // The backend closed every fd it got and unmapped the memory it mapped.
    expect(newFds(fdsBefore)).toEqual([]);
    expect(memfdMaps()).toBe(0);

    const second = connect();
    await bringUp(second);
    const sent = send(second, 7);
    expect(await nextFrame(second)).toEqual(loopedFrame(sent));
  });

  it('turns a second frontend away while one is served', async () => {
    world();
    const first = connect();
    await bringUp(first);
    const second = connect();
    // Closed at once: the frontend reads the end of the stream (or a reset, as it had written).
    const refused = await second.request({ type: 'GET_FEATURES' }).catch((err: Error) => err);
    expect(['EIO', 'ECONNRESET']).toContain((refused as { code?: string }).code);
    // The first one is served on.
    const sent = send(first, 3);
    expect(await nextFrame(first)).toEqual(loopedFrame(sent));
  });

  it('refuses ring addresses outside the memory table with a reply-ack error', async () => {
    const mdev = world();
    const f = connect();
    await f.negotiate();
    const ack = { needReply: true };
    await f.request({ type: 'SET_VRING_NUM', index: 1, num: 64 }, ack);
    await f.request(
      {
        type: 'SET_VRING_ADDR',
        index: 1,
        flags: 0,
        desc: 0x1000,
        avail: 0x2000,
        used: 0x3000,
        log: 0,
      },
      ack,
    );
    const kick = createEventFd();
    await f.request({ type: 'SET_VRING_KICK', index: 1, fd: kick }, ack);
    kick.close();
    // The ring starts when enabled: EFAULT (14), it lies outside the table; the device never
    // got it.
    const reply = await f.request({ type: 'SET_VRING_ENABLE', index: 1, enable: true }, ack);
    expect(reply).toEqual({ type: 'u64', value: 14n });
    expect(mdevVirtioGetOps(mdev).getVqReady(mdev, 1)).toBe(false);
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'refused', request: 'SET_VRING_ENABLE' }),
    );
  });

  it('drops a frontend whose request fails without a reply-ack, and resets the device', async () => {
    const mdev = world();
    const f = connect();
    await f.negotiate();
    // A memory table whose region is bigger than its file: refused before any mapping.
    const small = createMemfd('small', 4096);
    f.sendRaw(
      encodeRequest({
        type: 'SET_MEM_TABLE',
        regions: [{ guestAddr: 0, size: 1 << 20, userAddr: 0, mmapOffset: 0, fd: small }],
      }),
    );
    small.close();
    expect(await until(() => events.some((e) => e.type === 'disconnected'))).toBe(true);
    expect(mdevVirtioGetOps(mdev).getStatus(mdev)).toBe(0);
    const refused = events.find((e) => e.type === 'refused');
    expect(refused).toMatchObject({ request: 'SET_MEM_TABLE' });
  });

  it('replaces a stale socket file, and refuses a live one or a file that is no socket', () => {
    // Stale: a socket file nobody listens on.
    const stale = listenUnix(socketPath());
    stale.close();
    world();
    expect(events).toEqual([{ type: 'listening', path: socketPath() }]);
    vhostMdevExit();
    // Live: somebody else listens there.
    const live = listenUnix(socketPath());
    expect(() => vhostMdevInit({ socketDir: dir })).not.toThrow();
    const mdev = mdevDevices().find((m) => m.uuid === UUID)!;
    expect(mdev.driver).toBeNull();
    live.close();
    vhostMdevExit();
    // Not a socket: left alone.
    rmSync(socketPath());
    writeFileSync(socketPath(), 'precious');
    vhostMdevInit({ socketDir: dir });
    expect(mdev.driver).toBeNull();
    expect(readFileSync(socketPath(), 'utf8')).toBe('precious');
  });

  it('serves a device on the socket set for it, and removes the file when unbound', () => {
    const path = join(dir, 'custom.sock');
    vhostMdevSetSocket(UUID, { path });
    const mdev = world();
    expect(sysfs.read(`${mdev.path}/vhost_socket`)).toBe(`${path}\n`);
    sysfs.write('/sys/bus/mdev_virtio/drivers/vhost_mdev/unbind', UUID);
    expect(mdev.driver).toBeNull();
    expect(() => statSync(path)).toThrow();
    vhostMdevSetSocket(UUID, null);
  });

  it('in client mode connects to a listening frontend, and again after it goes', async () => {
    const path = join(dir, 'frontend.sock');
    vhostMdevSetSocket(UUID, { path, client: true });
    try {
      world();
      const first = await TestFrontend.listen(path);
      frontends.push(first);
      await bringUp(first, 4);
      const sent = send(first, 5);
      expect(await nextFrame(first)).toEqual(loopedFrame(sent));
      first.close();
      // The backend sees the end and tries again (every second by default): a new frontend
      // listening on the path is served.
      const second = await TestFrontend.listen(path, {}, 10_000);
      frontends.push(second);
      await bringUp(second, 4);
      const again = send(second, 6);
      expect(await nextFrame(second)).toEqual(loopedFrame(again));
    } finally {
      vhostMdevSetSocket(UUID, null);
    }
  });

  it('refuses a hostile ring address message as a protocol error and disconnects', async () => {
    world();
    const f = connect();
    await f.negotiate();
    const bytes = encodeRequest({
      type: 'SET_VRING_ADDR',
      index: 0,
      flags: 0,
      desc: 0,
      avail: 0,
      used: 0,
      log: 0,
    }).bytes;
    // A payload size that is not the request's.
    new DataView(bytes.buffer).setUint32(8, 8, true);
    expect(VHOST_USER_SET_VRING_ADDR).toBe(9);
    f.sendRaw({ bytes: bytes.subarray(0, 12 + 8), fds: [] });
    expect(await until(() => events.some((e) => e.type === 'disconnected'))).toBe(true);
  });
});

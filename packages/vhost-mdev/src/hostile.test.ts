import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import type { MvnetLoopback } from '@mdev/mvnet-loopback';
import { loopedFrame, mvnetCreate, mvnetWorld } from '@mdev/mvnet-loopback/testing';
import { until } from '@mdev/test-utils';
import { createEventFd, socketPair, VHOST_USER_F_PROTOCOL_FEATURES } from '@mdev/vhost-user';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VHOST_MDEV_PROTOCOL_FEATURES, type VhostMdevEvent } from './backend';
import { vhostMdevExit, vhostMdevInit } from './driver';
import { TestFrontend } from './testing';

const UUID = '0d5e7a41-2b6c-4f18-9a3e-7c1d2e3f4a5b';
const FRAME_LEN = 10 + 60;
const EINVAL = 22n;
const ack = { needReply: true };
const openFds = () =>
  new Set(
    readdirSync('/proc/self/fd').flatMap((n) => {
      try {
        return [`${n} -> ${readlinkSync(`/proc/self/fd/${n}`)}`];
      } catch {
        return [];
      }
    }),
  );
const newFds = (before: Set<string>) => [...openFds()].filter((fd) => !before.has(fd));

let dir: string;
let mvnet: MvnetLoopback;
let events: VhostMdevEvent[];
const frontends: TestFrontend[] = [];

function world(): MdevDevice {
  ({ mvnet } = mvnetWorld());
  vhostMdevInit({ socketDir: dir, onEvent: (_m, e) => events.push(e) });
  return mvnetCreate(UUID);
}

function connect(): TestFrontend {
  const f = TestFrontend.connect(join(dir, `vhost-mdev-${UUID}.sock`));
  frontends.push(f);
  return f;
}

function postRx(f: TestFrontend, count = 16): void {
  const rx = f.rings[0]!.vq;
  for (let i = 0; i < count; i++) {
    const addr = f.allocator.alloc(2048)!;
    rx.addInbuf(addr, 2048, addr);
  }
  rx.kick();
}

async function bringUp(f: TestFrontend): Promise<void> {
  await f.negotiate();
  await f.startRing(0);
  await f.startRing(1);
  postRx(f);
}

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

/** Waits for `count` more frames on the receive ring and returns them (fewer after 5 s). */
async function frames(f: TestFrontend, count: number): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  await until(() => {
    for (let b = f.rings[0]!.vq.getBuf(); b !== null; b = f.rings[0]!.vq.getBuf()) {
      got.push(f.memory.read(b.token, b.len).slice());
    }
    return got.length >= count;
  });
  return got;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vhost-mdev-hostile-'));
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

describe('vhost_mdev and a hostile frontend', () => {
  it('refuses a memfd or a socket as a kick, call or error fd (EINVAL) and closes it', async () => {
    world();
    const f = connect();
    await f.negotiate();
    const [a, b] = socketPair();
    const before = openFds();
    for (const type of ['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const) {
      // The frontend's own memory: written as an eventfd, its first 8 bytes would change.
      expect(await f.request({ type, index: 0, fd: f.memfd }, ack)).toEqual({
        type: 'u64',
        value: EINVAL,
      });
      expect(await f.request({ type, index: 1, fd: a }, ack)).toEqual({
        type: 'u64',
        value: EINVAL,
      });
    }
    expect(newFds(before)).toEqual([]);
    a.close();
    b.close();
  });

  it('closes the fd of a SET_VRING_KICK/CALL/ERR for a ring the device does not have', async () => {
    world();
    const f = connect();
    await f.negotiate();
    const kick = createEventFd();
    const before = openFds();
    for (const type of ['SET_VRING_KICK', 'SET_VRING_CALL', 'SET_VRING_ERR'] as const) {
      const reply = await f.request({ type, index: 5, fd: kick }, ack);
      expect(reply).toEqual({ type: 'u64', value: EINVAL });
    }
    // The backend's copies of the fd went with the refusals.
    expect(newFds(before)).toEqual([]);
    kick.close();
  });

  it('answers GET_VRING_BASE twice with the same state', async () => {
    world();
    const f = connect();
    await bringUp(f);
    send(f, 1);
    send(f, 2);
    expect(await frames(f, 2)).toHaveLength(2);
    expect(await f.request({ type: 'GET_VRING_BASE', index: 1 })).toEqual({
      type: 'vring-state',
      index: 1,
      num: 2,
    });
    expect(await f.request({ type: 'GET_VRING_BASE', index: 1 })).toEqual({
      type: 'vring-state',
      index: 1,
      num: 2,
    });
  });

  it('goes on where it was when a running ring gets a new kick fd: no frame twice', async () => {
    world();
    const f = connect();
    await bringUp(f);
    const sent = [send(f, 1), send(f, 2)];
    expect(await frames(f, 2)).toEqual(sent.map(loopedFrame));
    const kick = createEventFd();
    expect(await f.request({ type: 'SET_VRING_KICK', index: 1, fd: kick }, ack)).toEqual({
      type: 'u64',
      value: 0n,
    });
    f.rings[1]!.kick.close();
    f.rings[1]!.kick = kick;
    const third = send(f, 3);
    // The next frame back is the third, not the first two again.
    expect(await frames(f, 1)).toEqual([loopedFrame(third)]);
  });

  it('starts rings set up before the memory table once the table comes', async () => {
    const mdev = world();
    const f = connect();
    const offered = await f.u64({ type: 'GET_FEATURES' });
    await f.request({ type: 'SET_PROTOCOL_FEATURES', features: VHOST_MDEV_PROTOCOL_FEATURES });
    await f.request({ type: 'SET_FEATURES', features: offered }, ack);
    expect(offered & (1n << VHOST_USER_F_PROTOCOL_FEATURES)).not.toBe(0n);
    await f.startRing(0);
    await f.startRing(1);
    const ops = mdevVirtioGetOps(mdev);
    expect(ops.getVqReady(mdev, 1)).toBe(false);
    const reply = await f.request(
      {
        type: 'SET_MEM_TABLE',
        regions: [
          {
            guestAddr: f.guestBase,
            size: f.memSize,
            userAddr: f.userBase,
            mmapOffset: 0,
            fd: f.memfd,
          },
        ],
      },
      ack,
    );
    expect(reply).toEqual({ type: 'u64', value: 0n });
    expect(ops.getVqReady(mdev, 0)).toBe(true);
    expect(ops.getVqReady(mdev, 1)).toBe(true);
    postRx(f);
    const sent = send(f, 4);
    expect(await frames(f, 1)).toEqual([loopedFrame(sent)]);
  });

  it('lets a test frontend that made ring 1 alone close', async () => {
    world();
    const f = connect();
    await f.negotiate();
    await f.startRing(1);
    expect(() => f.close()).not.toThrow();
    expect(f.rings[1]!.kick.closed).toBe(true);
  });
});

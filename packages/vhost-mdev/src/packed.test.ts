// vhost_mdev serving packed rings (VIRTIO_F_RING_PACKED): negotiated when the device offers it,
// frames loop in the same thread and in worker mode, and the vring base carries the wrap
// counters as vhost-user.rst encodes them for packed virtqueues.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import type { MvnetLoopback } from '@mdev/mvnet-loopback';
import { loopedFrame, mvnetCreate, mvnetWorld } from '@mdev/mvnet-loopback/testing';
import { until } from '@mdev/test-utils';
import { PackedVirtqueue } from '@mdev/virtio-ring';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vhostMdevExit, vhostMdevInit } from './driver';
import { TestFrontend } from './testing';

const UUID = '7d1c0b2a-3e4f-4a5b-8c6d-9e0f1a2b3c4d';
const FRAME_LEN = 12 + 60;
const F_RING_PACKED = 1n << 34n;

let dir: string;
let mvnet: MvnetLoopback | undefined;
const frontends: TestFrontend[] = [];

function world(options: { offload?: boolean; packed?: boolean } = {}): MdevDevice {
  ({ mvnet } = mvnetWorld({ offload: options.offload, packed: options.packed ?? true }));
  vhostMdevInit({ socketDir: dir });
  return mvnetCreate(UUID);
}

function connect(num = 64): TestFrontend {
  const f = TestFrontend.connect(join(dir, `vhost-mdev-${UUID}.sock`), { num });
  frontends.push(f);
  return f;
}

async function bringUp(f: TestFrontend, rxBuffers: number): Promise<bigint> {
  const features = await f.negotiate();
  const rx = await f.startRing(0, { packed: true });
  await f.startRing(1, { packed: true });
  for (let i = 0; i < rxBuffers; i++) {
    const addr = f.allocator.alloc(2048)!;
    rx.addInbuf(addr, 2048, addr);
  }
  rx.kick();
  return features;
}

function send(f: TestFrontend, seed: number): Uint8Array {
  const tx = f.rings[1]!.vq;
  const addr = f.allocator.alloc(FRAME_LEN)!;
  const bytes = new Uint8Array(FRAME_LEN);
  for (let i = 12; i < FRAME_LEN; i++) bytes[i] = (seed * 31 + i) & 0xff;
  f.memory.write(addr, bytes);
  expect(tx.addOutbuf(addr, FRAME_LEN, addr)).toBe(0);
  tx.kick();
  return bytes;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vhost-mdev-packed-'));
});

afterEach(() => {
  for (const f of frontends.splice(0)) f.close();
  for (const m of mdevDevices()) if (m.uuid === UUID) sysfs.write(`${m.path}/remove`, '1');
  vhostMdevExit();
  mvnet?.exit();
  mvnet = undefined;
  mdevVirtioExit();
  rmSync(dir, { recursive: true, force: true });
});

describe('vhost_mdev with packed rings', () => {
  it('offers VIRTIO_F_RING_PACKED only when the device does', async () => {
    world({ packed: false });
    const f = connect();
    expect((await f.u64({ type: 'GET_FEATURES' })) & F_RING_PACKED).toBe(0n);
    f.close();
    frontends.length = 0;
    vhostMdevExit();
    for (const m of mdevDevices()) if (m.uuid === UUID) sysfs.write(`${m.path}/remove`, '1');
    mvnet?.exit();
    mdevVirtioExit();
    world({ packed: true });
    const g = connect();
    expect((await g.u64({ type: 'GET_FEATURES' })) & F_RING_PACKED).toBe(F_RING_PACKED);
  });

  for (const offload of [false, true]) {
    it(`loops frames over packed rings of an odd size for many laps (${offload ? 'worker' : 'in-thread'} datapath)`, async () => {
      world({ offload });
      // 37 entries: a packed ring need not be a power of two; 200 frames go round it 5 times.
      const f = connect(37);
      const features = await bringUp(f, 37);
      expect(features & F_RING_PACKED).toBe(F_RING_PACKED);
      expect(f.rings[0]!.vq).toBeInstanceOf(PackedVirtqueue);
      const rx = f.rings[0]!.vq;
      const tx = f.rings[1]!.vq;
      for (let seed = 0; seed < 200; seed++) {
        const sent = send(f, seed);
        let got: Uint8Array | null = null;
        expect(
          await until(() => {
            const buf = rx.getBuf();
            if (buf === null) return false;
            got = f.memory.read(buf.token, buf.len).slice();
            // The receive buffer goes back for the next lap.
            rx.addInbuf(buf.token, 2048, buf.token);
            rx.kick();
            return true;
          }),
        ).toBe(true);
        expect(got).toEqual(loopedFrame(sent));
        while (tx.getBuf() !== null);
      }
      expect(rx.isBroken || tx.isBroken).toBe(false);
    });
  }

  it('answers GET_VRING_BASE with both halves and their wrap counters, and resumes from it', async () => {
    const mdev = world();
    const f = connect(5);
    await bringUp(f, 5);
    const tx = f.rings[1]!.vq;
    // Seven one-descriptor frames on a ring of five: index 2 of lap 0, read and written.
    for (let seed = 0; seed < 7; seed++) {
      send(f, seed);
      expect(await until(() => tx.getBuf() !== null)).toBe(true);
    }
    const reply = await f.request({ type: 'GET_VRING_BASE', index: 1 });
    expect(reply).toEqual({ type: 'vring-state', index: 1, num: 0x0002_0002 });
    expect(mdevVirtioGetOps(mdev).getVqReady(mdev, 1)).toBe(false);
    // Started again from that base (a new kick fd restarts a stopped ring), the ring goes on.
    const ack = { needReply: true };
    await f.request({ type: 'SET_VRING_BASE', index: 1, num: 0x0002_0002 }, ack);
    await f.request({ type: 'SET_VRING_KICK', index: 1, fd: f.rings[1]!.kick }, ack);
    send(f, 8);
    expect(await until(() => tx.getBuf() !== null)).toBe(true);
    expect(tx.isBroken).toBe(false);
  });

  it('takes a 32-bit vring base for a packed ring only', async () => {
    world();
    const f = connect();
    await f.negotiate(~F_RING_PACKED);
    const split = await f.request(
      { type: 'SET_VRING_BASE', index: 0, num: 0x8000_8000 },
      { needReply: true },
    );
    expect(split).toMatchObject({ type: 'u64' });
    expect((split as { value: bigint }).value).not.toBe(0n);
  });
});

// A DMA map over memory that is not mvnet's and not a SharedArrayBuffer: a memfd, mapped here as
// a vhost-user backend maps a frontend's region, and mapped again by the datapath worker from
// the region's fd. The driver side writes its rings and frames into this thread's mapping.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { KernelError, sysfs } from '@mdev/driver-core';
import type { MdevDevice } from '@mdev/mdev-core';
import {
  type MdevVirtioMapEntry,
  type MdevVirtioMapRegion,
  mdevVirtioExit,
  mdevVirtioGetOps,
  mdevVirtioSetMap,
  VHOST_ACCESS_RW,
} from '@mdev/mdev-virtio';
import { until } from '@mdev/test-utils';
import { createMemfd, type Fd, mapShared, unmap } from '@mdev/vhost-user';
import { VIRTIO_CONFIG_S_NEEDS_RESET } from '@mdev/virtio';
import { DmaAllocator, GuestMemory, offsetDmaOps } from '@mdev/virtio-ring';
import { afterEach, describe, expect, it } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import { MvnetQueue } from './datapath';
import type { MvnetLoopback } from './device';
import { MvnetOffload } from './offload';
import { loopedFrame, mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa10e1';
/** Where the frontend's memory lies in the device's IOVA space. */
const IOVA = 0x4000_0000;
const HALF = 512 << 10;

let world: ReturnType<typeof mvnetWorld> | null = null;
const cleanups: (() => void)[] = [];

afterEach(() => {
  world?.mvnet.exit();
  world = null;
  mdevVirtioExit();
  for (const f of cleanups.splice(0).reverse()) f();
});

function load(offload: boolean): MvnetLoopback {
  world = mvnetWorld({ offload, maxInstances: 2 });
  return world.mvnet;
}

let names = 0;

/**
 * A frontend's memory: a memfd of two halves, mapped in this thread (the driver's view, at
 * IOVA), and the map that gives the device each half by the region's fd.
 */
function memfdFrontend(iova = IOVA) {
  const name = `mvnet-map-${process.pid}-${++names}`;
  const fd = createMemfd(name, 2 * HALF);
  const buffer = mapShared(fd, { length: 2 * HALF });
  const view = new GuestMemory();
  view.addRegion(iova, buffer);
  const region: MdevVirtioMapRegion = { u8: new Uint8Array(buffer), fd: fd.value };
  const map: MdevVirtioMapEntry[] = [0, 1].map((k) => ({
    iova: iova + k * HALF,
    size: HALF,
    region,
    offset: k * HALF,
    perm: VHOST_ACCESS_RW,
  }));
  const fe = { name, fd, buffer, view, map, alloc: new DmaAllocator(view, iova) };
  cleanups.push(() => release(fe));
  return fe;
}

type Frontend = ReturnType<typeof memfdFrontend>;

function release(fe: { fd: Fd; buffer: ArrayBuffer }): void {
  unmap(fe.buffer);
  fe.fd.close();
}

/** Lines of /proc/self/maps for the memfd `name`: one per mapping of it in this process. */
function mappingsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes(`/memfd:${name} `)).length;
}

/**
 * Open fds of this process on the memfd `name`. (Not all fds: a worker that other tests ended
 * closes its own loaders' fds whenever its thread is torn down.)
 */
function fdsOf(name: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(`/memfd:${name} `)) n++;
    } catch {
      // Closed since the listing (the listing's own fd, among others).
    }
  }
  return n;
}

function code(f: () => void): string | undefined {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(KernelError);
    return (err as KernelError).code;
  }
  return undefined;
}

/** Loops frames through the device at IOVAs of `fe`, written into this thread's mapping. */
async function loopFrames(mvnet: MvnetLoopback, mdev: MdevDevice, fe: Frontend, lens: number[]) {
  mdev.dmaOps = offsetDmaOps(fe.alloc);
  const { ops, rx, tx } = mvnetBringUp(mdev, fe.view, { eventIdx: true });
  expect(ops.getVqReady(mdev, MVNET_RX_QUEUE)).toBe(true);
  expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
  const stats = mvnet.stateOf(mdev).stats;
  const before = stats.rxPackets;
  const rxBufs = lens.map(() => fe.alloc.alloc(2048)!);
  for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i);
  rx.kick();
  const frames = lens.map((len, k) => {
    // The second frame straddles the two entries of the map: the device splits it there.
    const addr = k === 1 ? fe.map[1]!.iova - 700 : fe.alloc.alloc(len)!;
    const bytes = fe.view.view(addr, len);
    for (let i = 0; i < len; i++) bytes[i] = (i * 7 + k * 3 + len) & 0xff;
    return { addr, len };
  });
  for (const [k, f] of frames.entries()) tx.addOutbuf(f.addr, f.len, k);
  tx.kick();
  // The counters are published after the used entries of the run they count.
  expect(await until(() => stats.rxPackets === before + lens.length)).toBe(true);
  for (const f of frames) {
    const used = rx.getBuf()!;
    expect(used.len).toBe(f.len);
    expect(fe.view.read(rxBufs[used.token]!, used.len)).toEqual(
      loopedFrame(fe.view.read(f.addr, f.len)),
    );
  }
  return { ops, rx, tx };
}

describe.each([
  ['worker mode', true],
  ['the same thread', false],
])('mvnet_loopback set_map over a memfd, %s', (_mode, offload) => {
  it('loops frames through rings and buffers at IOVAs of the map, byte for byte', async () => {
    const mvnet = load(offload);
    const mdev = mvnetCreate(UUID);
    const fe = memfdFrontend();
    mdevVirtioSetMap(mdev, fe.map);
    expect(mvnet.stateOf(mdev).map).toHaveLength(2);
    await loopFrames(mvnet, mdev, fe, [60, 1514, 300]);
    expect(sysfs.read(`/sys/bus/mdev_virtio/devices/${UUID}/stats/rx_packets`)).toBe('3\n');
    expect(mdevVirtioGetOps(mdev).getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('breaks the queue on a buffer outside the map (a fault, NEEDS_RESET) and serves on after a reset', async () => {
    const mvnet = load(offload);
    const mdev = mvnetCreate(UUID);
    const fe = memfdFrontend();
    mdevVirtioSetMap(mdev, fe.map);
    mdev.dmaOps = offsetDmaOps(fe.alloc);
    const { ops, tx } = mvnetBringUp(mdev, fe.view, { eventIdx: true });
    let configIrqs = 0;
    ops.setConfigCb(mdev, { callback: () => configIrqs++, private: null });
    // Right after the map's end: no entry has it.
    tx.addOutbuf(IOVA + 2 * HALF, 64, 1);
    expect(() => tx.kick()).not.toThrow();
    const state = mvnet.stateOf(mdev);
    const needsReset = () => (ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0;
    expect(await until(needsReset)).toBe(true);
    expect(configIrqs).toBe(1);
    expect(state.stats.ringErrors).toBe(1);
    expect(state.stats.txPackets).toBe(0);
    // The datapath lives on: after a reset the same map carries frames.
    ops.setStatus(mdev, 0);
    await loopFrames(mvnet, mdev, fe, [64, 200]);
    expect(state.stats.ringErrors).toBe(1);
  });

  it('refuses a map while a queue is ready (EBUSY); replaced and cleared after a reset', async () => {
    const mvnet = load(offload);
    const mdev = mvnetCreate(UUID);
    const hostDma = mdev.dmaOps!;
    const first = memfdFrontend();
    const second = memfdFrontend(IOVA * 2);
    mdevVirtioSetMap(mdev, first.map);
    const { ops } = await loopFrames(mvnet, mdev, first, [100]);
    expect(code(() => mdevVirtioSetMap(mdev, second.map))).toBe('EBUSY');
    expect(code(() => mdevVirtioSetMap(mdev, null))).toBe('EBUSY');
    expect(mvnet.stateOf(mdev).map![0]!.iova).toBe(IOVA);
    ops.setStatus(mdev, 0);

    // Replaced: the second memfd's IOVAs work, the first's no longer do.
    mdevVirtioSetMap(mdev, second.map);
    if (offload) {
      // The worker let go of its mapping of the first memfd and maps the second.
      expect(mappingsOf(first.name)).toBe(1);
      expect(mappingsOf(second.name)).toBe(2);
    }
    mdev.dmaOps = offsetDmaOps(first.alloc);
    mvnetBringUp(mdev, first.view);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
    ops.setStatus(mdev, 0);
    await loopFrames(mvnet, mdev, second, [60, 1514]);
    ops.setStatus(mdev, 0);

    // Cleared: host addresses again.
    mdevVirtioSetMap(mdev, null);
    expect(mvnet.stateOf(mdev).map).toBeNull();
    if (offload) expect(mappingsOf(second.name)).toBe(1);
    mdev.dmaOps = hostDma;
    const { memory, allocator } = world!;
    const { rx, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
    const buf = allocator.alloc(2048)!;
    rx.addInbuf(buf, 2048, 1);
    rx.kick();
    const f = allocator.alloc(60)!;
    memory.view(f, 60).fill(0x5a);
    tx.addOutbuf(f, 60, 1);
    tx.kick();
    const stats = mvnet.stateOf(mdev).stats;
    expect(await until(() => stats.rxPackets === 4)).toBe(true);
    expect(rx.getBuf()).toEqual({ token: 1, len: 60 });
    expect(memory.read(buf, 60)).toEqual(loopedFrame(memory.read(f, 60)));
  });

  it('leaks no fd and no mapping: removing the device lets go of the map', async () => {
    const mvnet = load(offload);
    const fe = memfdFrontend();
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 1]);
    const mdev = mvnetCreate(UUID);
    mdevVirtioSetMap(mdev, fe.map);
    // The worker maps the fd (and keeps no fd of its own); the same thread uses this mapping.
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, offload ? 2 : 1]);
    await loopFrames(mvnet, mdev, fe, [80]);
    // The same regions again: mapped anew, and the old mapping let go.
    mdevVirtioGetOps(mdev).setStatus(mdev, 0);
    mdevVirtioSetMap(mdev, fe.map);
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, offload ? 2 : 1]);
    sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1');
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 1]);
    release(fe);
    cleanups.pop();
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([0, 0]);
  });

  it('lets go of every map when the parent goes (mvnet_dev_exit removes each instance)', () => {
    const mvnet = load(offload);
    const fe = memfdFrontend();
    const mdev = mvnetCreate(UUID);
    mdevVirtioSetMap(mdev, fe.map);
    mvnet.exit();
    world = null;
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 1]);
  });
});

describe('mvnet_loopback set_map in worker mode', () => {
  it('refuses a region the worker cannot reach (neither shared nor with an fd): EINVAL', () => {
    const mvnet = load(true);
    const mdev = mvnetCreate(UUID);
    const region = { u8: new Uint8Array(new ArrayBuffer(HALF)) };
    const map = [{ iova: IOVA, size: HALF, region, offset: 0, perm: VHOST_ACCESS_RW }];
    expect(code(() => mdevVirtioSetMap(mdev, map))).toBe('EINVAL');
    expect(mvnet.stateOf(mdev).map).toBeNull();
  });

  it('takes a SharedArrayBuffer region as is: frames loop back', async () => {
    const mvnet = load(true);
    const mdev = mvnetCreate(UUID);
    const buffer = new SharedArrayBuffer(2 * HALF);
    const view = new GuestMemory();
    view.addRegion(IOVA, buffer);
    const region = { u8: new Uint8Array(buffer) };
    const map = [0, 1].map((k) => ({
      iova: IOVA + k * HALF,
      size: HALF,
      region,
      offset: k * HALF,
      perm: VHOST_ACCESS_RW,
    }));
    mdevVirtioSetMap(mdev, map);
    const fe = { view, map, alloc: new DmaAllocator(view, IOVA) } as unknown as Frontend;
    await loopFrames(mvnet, mdev, fe, [60, 1000]);
  });

  it('answers EOPNOTSUPP naming @mdev/vhost-user when it cannot load, and keeps serving', () => {
    const memory = new GuestMemory();
    memory.addRegion(0x100000, new SharedArrayBuffer(1 << 20));
    const offload = new MvnetOffload(memory, 1, 64, { vhostUser: '@mdev/no-such-package' });
    cleanups.push(() => void offload.close());
    offload.attach(0, [new MvnetQueue(memory), new MvnetQueue(memory)], () => {});
    const fe = memfdFrontend();
    let err: unknown;
    try {
      offload.setMap(0, fe.map);
    } catch (e) {
      err = e;
    }
    expect(KernelError.is(err, 'EOPNOTSUPP')).toBe(true);
    expect(String((err as Error).message)).toContain('@mdev/vhost-user');
    // A shared region needs no addon; the worker still answers.
    const sab = { u8: new Uint8Array(new SharedArrayBuffer(HALF)) };
    offload.setMap(0, [{ iova: 0, size: HALF, region: sab, offset: 0, perm: VHOST_ACCESS_RW }]);
    offload.setMap(0, null);
    offload.detach(0);
  });
});

import { KernelError, sysfs } from '@mdev/driver-core';
import type { MdevDevice } from '@mdev/mdev-core';
import {
  type MdevVirtioMapEntry,
  mdevVirtioExit,
  mdevVirtioGetOps,
  mdevVirtioSetMap,
  VHOST_ACCESS_RW,
} from '@mdev/mdev-virtio';
import { sleep } from '@mdev/test-utils';
import { VIRTIO_CONFIG_S_NEEDS_RESET } from '@mdev/virtio';
import { DmaAllocator, GuestMemory, offsetDmaOps } from '@mdev/virtio-ring';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import type { MvnetLoopback } from './device';
import { IotlbAddressSpace } from './iotlb';
import { loopedFrame, mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa10d1';
/** Where the frontend's memory lies in the device's IOVA space: far from the host region. */
const IOVA = 0x4000_0000;
const HALF = 512 << 10;

let memory: GuestMemory;
let allocator: DmaAllocator;
let mvnet: MvnetLoopback;

beforeEach(() => {
  ({ memory, allocator, mvnet } = mvnetWorld());
});

afterEach(() => {
  mvnet.exit();
  mdevVirtioExit();
});

const tick = () => sleep(5);

/**
 * A frontend's memory, outside mvnet's host memory (as a vhost-user frontend's is): the driver
 * sees it at IOVA, the device through a map of two entries, each half at its offset.
 */
function frontend() {
  const buffer = new SharedArrayBuffer(2 * HALF);
  const view = new GuestMemory();
  view.addRegion(IOVA, buffer);
  const region = { u8: new Uint8Array(buffer) };
  const map: MdevVirtioMapEntry[] = [0, 1].map((k) => ({
    iova: IOVA + k * HALF,
    size: HALF,
    region,
    offset: k * HALF,
    perm: VHOST_ACCESS_RW,
  }));
  return { view, map, alloc: new DmaAllocator(view, IOVA) };
}

/** Gives the mdev the frontend's addresses: its DMA ops hand out IOVAs. */
function useFrontend(mdev: MdevDevice, fe: ReturnType<typeof frontend>): void {
  mdev.dmaOps = offsetDmaOps(fe.alloc);
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

describe('mvnet_loopback set_map', () => {
  it('drives rings and buffers at IOVAs of the map: frames loop back', async () => {
    const mdev = mvnetCreate(UUID);
    const fe = frontend();
    useFrontend(mdev, fe);
    // No map yet: the IOVAs are no host addresses, so the queues do not come up.
    const ops = mdevVirtioGetOps(mdev);
    mvnetBringUp(mdev, fe.view);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
    ops.setStatus(mdev, 0);

    mdevVirtioSetMap(mdev, fe.map);
    const { rx, tx } = mvnetBringUp(mdev, fe.view);
    expect(ops.getVqReady(mdev, MVNET_RX_QUEUE)).toBe(true);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
    expect(tx.descAddr).toBeGreaterThanOrEqual(IOVA);
    const rxBufs = Array.from({ length: 8 }, () => fe.alloc.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i + 1);
    rx.kick();
    // One frame straddles the two entries: the device splits it at the boundary.
    const frames = [60, 1514].map((len, k) => {
      const addr = k === 1 ? IOVA + HALF - 700 : fe.alloc.alloc(len)!;
      const bytes = fe.view.view(addr, len);
      for (let i = 0; i < len; i++) bytes[i] = (i * 7 + k) & 0xff;
      return { addr, len };
    });
    for (const [k, f] of frames.entries()) tx.addOutbuf(f.addr, f.len, k + 1);
    tx.kick();
    await tick();
    for (let k = 0; k < frames.length; k++) expect(tx.getBuf()).toEqual({ token: k + 1, len: 0 });
    for (const f of frames) {
      const used = rx.getBuf()!;
      expect(used.len).toBe(f.len);
      expect(fe.view.read(rxBufs[used.token - 1]!, used.len)).toEqual(
        loopedFrame(fe.view.read(f.addr, f.len)),
      );
    }
    expect(sysfs.read(`/sys/bus/mdev_virtio/devices/${UUID}/stats/rx_packets`)).toBe('2\n');
    expect(ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('breaks the queue (NEEDS_RESET) on a buffer outside the map, without throwing', async () => {
    const mdev = mvnetCreate(UUID);
    const fe = frontend();
    useFrontend(mdev, fe);
    mdevVirtioSetMap(mdev, fe.map);
    const { ops, tx } = mvnetBringUp(mdev, fe.view);
    let configIrqs = 0;
    ops.setConfigCb(mdev, { callback: () => configIrqs++, private: null });
    // A host address: mvnet's memory has it, but the map does not.
    const host = allocator.alloc(64)!;
    tx.addOutbuf(host, 64, 1);
    expect(() => tx.kick()).not.toThrow();
    await tick();
    expect(ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(configIrqs).toBe(1);
    expect(mvnet.stateOf(mdev).stats.ringErrors).toBe(1);
    expect(mvnet.stateOf(mdev).stats.txPackets).toBe(0);
  });

  it('refuses a new map while a queue is ready (EBUSY); after a reset it takes one', () => {
    const mdev = mvnetCreate(UUID);
    const fe = frontend();
    useFrontend(mdev, fe);
    mdevVirtioSetMap(mdev, fe.map);
    const { ops } = mvnetBringUp(mdev, fe.view);
    expect(code(() => mdevVirtioSetMap(mdev, null))).toBe('EBUSY');
    expect(mvnet.stateOf(mdev).map).toHaveLength(2);
    ops.setStatus(mdev, 0);
    // A reset keeps the map: the frontend's memory table outlives a status reset.
    expect(mvnet.stateOf(mdev).map).toHaveLength(2);
    mdevVirtioSetMap(mdev, null);
    expect(mvnet.stateOf(mdev).map).toBeNull();
  });

  it('cleared, it drives rings at host addresses again and no longer reaches the IOVAs', async () => {
    const mdev = mvnetCreate(UUID);
    const hostDma = mdev.dmaOps!;
    const fe = frontend();
    useFrontend(mdev, fe);
    mdevVirtioSetMap(mdev, fe.map);
    mdevVirtioSetMap(mdev, null);
    const ops = mdevVirtioGetOps(mdev);
    mvnetBringUp(mdev, fe.view);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
    ops.setStatus(mdev, 0);

    mdev.dmaOps = hostDma;
    const { rx, tx } = mvnetBringUp(mdev, memory);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
    const buf = allocator.alloc(2048)!;
    rx.addInbuf(buf, 2048, 1);
    rx.kick();
    const f = allocator.alloc(60)!;
    memory.view(f, 60).fill(0x5a);
    tx.addOutbuf(f, 60, 1);
    tx.kick();
    await tick();
    expect(rx.getBuf()).toEqual({ token: 1, len: 60 });
    expect(memory.read(buf, 60)).toEqual(loopedFrame(memory.read(f, 60)));
  });

  it('an empty map reaches nothing: the queues do not come up', () => {
    const mdev = mvnetCreate(UUID);
    mdevVirtioSetMap(mdev, []);
    const { ops } = mvnetBringUp(mdev, memory);
    expect(ops.getVqReady(mdev, MVNET_RX_QUEUE)).toBe(false);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
  });
});

describe('IotlbAddressSpace', () => {
  it('translates within one entry at its offset, and nothing across a gap or past the end', () => {
    const memory = new GuestMemory();
    memory.addRegion(0x1000, new ArrayBuffer(0x1000));
    const space = new IotlbAddressSpace(memory);
    const out = { u8: new Uint8Array(0), offset: 0 };
    expect(space.shared).toBe(false);
    expect(space.translate(0x1010, 4, out)).toBe(true);
    const region = { u8: new Uint8Array(0x4000) };
    space.setMap([
      { iova: 0, size: 0x1000, region, offset: 0x3000, perm: VHOST_ACCESS_RW },
      { iova: 0x2000, size: 0x1000, region, offset: 0, perm: VHOST_ACCESS_RW },
    ]);
    expect(space.shared).toBe(true);
    expect(space.translate(0x1010, 4, out)).toBe(false); // the host address is not mapped
    expect(space.translate(0x10, 4, out)).toBe(true);
    expect([out.u8.buffer === region.u8.buffer, out.u8.byteOffset + out.offset]).toEqual([
      true,
      0x3010,
    ]);
    expect(space.translate(0x2ffc, 4, out)).toBe(true);
    expect(out.u8.byteOffset + out.offset).toBe(0xffc);
    // A translation ends where its entry ends.
    expect(out.u8.length - out.offset).toBe(4);
    expect(space.translate(0x2ffc, 5, out)).toBe(false);
    expect(space.translate(0xffc, 8, out)).toBe(false);
    expect(space.translate(-4, 4, out)).toBe(false);
    expect(space.translate(Number.NaN, 4, out)).toBe(false);
  });
});

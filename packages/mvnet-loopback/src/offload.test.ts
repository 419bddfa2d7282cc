import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import { sleep, until } from '@mdev/test-utils';
import { HostRam, VIRTIO_CONFIG_S_NEEDS_RESET } from '@mdev/virtio';
import { type DmaAllocator, type GuestMemory, offsetDmaOps } from '@mdev/virtio-ring';
import { offerBadHead } from '@mdev/virtio-ring/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import { type MvnetLoopback, mvnetLoopbackInit } from './device';
import { loopedFrame, mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const BASE = 0x100000;
const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

let memory: GuestMemory;
let allocator: DmaAllocator;
let mvnet: MvnetLoopback;

beforeEach(() => {
  ({ memory, allocator, mvnet } = mvnetWorld({
    base: BASE,
    maxInstances: 4,
    offload: true,
    queueSize: 128,
  }));
});

afterEach(() => {
  mvnet.exit();
  mdevVirtioExit();
});

/** Blocks this thread (so no interrupt is delivered meanwhile) for `ms` milliseconds. */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('mvnet_loopback in worker mode', () => {
  it('keeps the process alive exactly while a queue is ready', () => {
    expect(mvnet.offload!.holdsProcess).toBe(false);
    const mdev = mvnetCreate(UUID);
    expect(mvnet.offload!.holdsProcess).toBe(false); // an mdev with no driver holds nothing
    const ops = mdevVirtioGetOps(mdev);
    mvnetBringUp(mdev, memory, { eventIdx: true });
    expect(mvnet.offload!.holdsProcess).toBe(true);
    ops.setVqReady(mdev, MVNET_RX_QUEUE, false);
    expect(mvnet.offload!.holdsProcess).toBe(true); // TX is still ready
    ops.setVqReady(mdev, MVNET_TX_QUEUE, false);
    expect(mvnet.offload!.holdsProcess).toBe(false);
    mvnetBringUp(mdev, memory, { eventIdx: true });
    expect(mvnet.offload!.holdsProcess).toBe(true);
    sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1');
    expect(mdevDevices()).toHaveLength(0);
    expect(mvnet.offload!.holdsProcess).toBe(false);
  });

  it('offers its queue size and refuses a larger one', () => {
    const mdev = mvnetCreate(UUID);
    const ops = mdevVirtioGetOps(mdev);
    expect(ops.getVqNumMax(mdev)).toBe(128);
    ops.setVqNum(mdev, 0, 256);
    ops.setVqAddress(mdev, 0, BASE, BASE + 4096, BASE + 8192);
    ops.setVqReady(mdev, 0, true);
    expect(ops.getVqReady(mdev, 0)).toBe(false);
    expect(() =>
      mvnetLoopbackInit({ memory, dma: offsetDmaOps(allocator), queueSize: 100 }),
    ).toThrow(/power of two/);
  });

  it('loops frames back from the worker, with interrupts and shared counters', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx, irqs } = mvnetBringUp(mdev, memory, { eventIdx: true });
    const rxBufs = Array.from({ length: 32 }, () => allocator.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i);
    rx.kick();
    const frames = Array.from({ length: 20 }, (_, k) => {
      const len = 60 + k * 50;
      const addr = allocator.alloc(len)!;
      const bytes = memory.view(addr, len);
      for (let i = 0; i < len; i++) bytes[i] = (i * 13 + k) & 0xff;
      return { addr, len };
    });
    for (const [k, f] of frames.entries()) tx.addOutbuf(f.addr, f.len, k);
    tx.kick();
    expect(await until(() => mvnet.stateOf(mdev).stats.rxPackets === 20)).toBe(true);
    expect(await until(() => irqs[MVNET_RX_QUEUE]! > 0)).toBe(true);
    for (let k = 0; k < frames.length; k++) {
      const used = rx.getBuf()!;
      expect(used.len).toBe(frames[k]!.len);
      expect(memory.read(rxBufs[used.token]!, used.len)).toEqual(
        loopedFrame(memory.read(frames[k]!.addr, frames[k]!.len)),
      );
    }
    const stats = `/sys/bus/mdev_virtio/devices/${UUID}/stats`;
    expect(sysfs.read(`${stats}/tx_packets`)).toBe('20\n');
    expect(sysfs.read(`${stats}/rx_bytes`)).toBe(`${frames.reduce((a, f) => a + f.len, 0)}\n`);
    // The ring state is the worker's, read back synchronously.
    expect(mdevVirtioGetOps(mdev).getVqState(mdev, MVNET_TX_QUEUE)).toBe(20);
  });

  it("keeps a removed instance's counters final when a new instance takes its slot", async () => {
    /** Sends `n` frames of `len` bytes through a set-up device and waits for them to come back. */
    async function loop(mdev: MdevDevice, n: number, len: number): Promise<void> {
      const { rx, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
      for (let i = 0; i < n; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
      rx.kick();
      for (let k = 0; k < n; k++) tx.addOutbuf(allocator.alloc(len)!, len, k);
      tx.kick();
      expect(await until(() => mvnet.stateOf(mdev).stats.rxPackets === n)).toBe(true);
    }
    const first = mvnetCreate(UUID);
    await loop(first, 3, 100);
    const stats = mvnet.stateOf(first).stats;
    const final = { ...stats };
    expect(final).toMatchObject({ txPackets: 3, rxPackets: 3, rxBytes: 300 });
    sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1');
    expect({ ...stats }).toEqual(final);
    // The next instance takes the freed slot (the first free one) and counts on its own.
    const other = `${UUID.slice(0, -1)}2`;
    const second = mvnetCreate(other);
    expect({ ...mvnet.stateOf(second).stats }).toMatchObject({ txPackets: 0, rxPackets: 0 });
    expect({ ...stats }).toEqual(final);
    await loop(second, 5, 60);
    expect({ ...stats }).toEqual(final);
    expect(sysfs.read(`/sys/bus/mdev_virtio/devices/${other}/stats/rx_packets`)).toBe('5\n');
  });

  it('holds a TX frame briefly for a receive buffer, and drops it only when none comes', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
    const stats = mvnet.stateOf(mdev).stats;
    const frame = allocator.alloc(100)!;
    memory.view(frame, 100).fill(0x5a);
    // Frames sent before the driver posts receive buffers wait for them instead of being dropped.
    for (let i = 0; i < 4; i++) tx.addOutbuf(frame, 100, i);
    tx.kick();
    const bufs = Array.from({ length: 4 }, () => allocator.alloc(2048)!);
    for (const [i, b] of bufs.entries()) rx.addInbuf(b, 2048, i);
    rx.kick();
    expect(await until(() => stats.rxPackets === 4)).toBe(true);
    expect(stats.txDropped).toBe(0);
    for (let i = 0; i < 4; i++) expect(rx.getBuf()?.len).toBe(100);
    // With no receive buffer at all, the frames are dropped (and completed) after the grace.
    for (let i = 0; i < 3; i++) tx.addOutbuf(frame, 100, 10 + i);
    tx.kick();
    expect(await until(() => stats.txDropped === 3)).toBe(true);
    expect(stats.txPackets).toBe(7);
    let completed = 0;
    while (tx.getBuf()) completed++;
    expect(completed).toBe(7);
  });

  it('reaches buffers in host memory regions added after the queues were set up', async () => {
    // Host memory that grows by small regions, as hostRam grows by 16 MB ones.
    const ram = new HostRam({ regionSize: 64 * 1024 });
    mvnet.exit();
    mvnet = mvnetLoopbackInit({ memory: ram.memory, dma: ram.dma, offload: true });
    const mdev = mvnetCreate(UUID);
    const { rx, tx } = mvnetBringUp(mdev, ram.memory, { num: 16 });
    const regions = ram.memory.regions.length;
    // Buffers the driver allocates itself, too big for the regions there are.
    const rxBuf = ram.alloc(100_000)!;
    const frame = ram.alloc(100_000)!;
    expect(ram.memory.regions.length).toBeGreaterThan(regions);
    const bytes = ram.memory.view(frame, 1500);
    for (let i = 0; i < 1500; i++) bytes[i] = (i * 7) & 0xff;
    rx.addInbuf(rxBuf, 2048, 1);
    rx.kick();
    tx.addOutbuf(frame, 1500, 2);
    tx.kick();
    expect(await until(() => mvnet.stateOf(mdev).stats.rxPackets === 1)).toBe(true);
    expect(mvnet.stateOf(mdev).stats.ringErrors).toBe(0);
    expect(rx.getBuf()).toEqual({ token: 1, len: 1500 });
    expect(ram.memory.read(rxBuf, 1500)).toEqual(loopedFrame(ram.memory.read(frame, 1500)));
  });

  it('after a reset returns, the worker no longer touches the rings', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, rx, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
    expect(mvnet.offload!.holdsProcess).toBe(true);
    for (let i = 0; i < 8; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    rx.kick();
    ops.setStatus(mdev, 0);
    expect(ops.getStatus(mdev)).toBe(0);
    // No queue is ready: the worker no longer keeps the process alive.
    expect(mvnet.offload!.holdsProcess).toBe(false);
    const used = memory.view(tx.usedAddr, 4);
    const before = [...used];
    const addr = allocator.alloc(64)!;
    for (let i = 0; i < 4; i++) tx.addOutbuf(addr, 64, i);
    tx.notify(); // a driver kicking a reset device
    await sleep(50);
    expect([...used]).toEqual(before);
    expect(mvnet.stateOf(mdev).stats.txPackets).toBe(0);
  });

  it('a ring fault the worker raised just before a reset does not outlive the reset', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
    const stats = mvnet.stateOf(mdev).stats;
    offerBadHead(memory, tx, 0x7fff); // a head beyond the ring
    ops.kickVq(mdev, MVNET_TX_QUEUE);
    // Without giving the event loop a turn (which would deliver the fault), wait until the
    // worker has counted the fault, then a little longer for its pending bit, which follows.
    const end = performance.now() + 5000;
    while (stats.ringErrors === 0 && performance.now() < end) blockFor(1);
    expect(stats.ringErrors).toBe(1);
    blockFor(20);
    // The driver resets the device and sets it up again on fresh rings.
    ops.setStatus(mdev, 0);
    const { rx, tx: tx2 } = mvnetBringUp(mdev, memory, { eventIdx: true });
    rx.addInbuf(allocator.alloc(2048)!, 2048, 1);
    rx.kick();
    const frame = allocator.alloc(60)!;
    tx2.addOutbuf(frame, 60, 1);
    tx2.kick();
    expect(await until(() => stats.rxPackets === 1)).toBe(true);
    await sleep(20); // room for a stale fault to be delivered
    expect(ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
    expect(mvnet.offload!.holdsProcess).toBe(true);
    expect(rx.getBuf()).toEqual({ token: 1, len: 60 });
    // And the next reset stops the worker on these rings.
    ops.setStatus(mdev, 0);
    expect(mvnet.offload!.holdsProcess).toBe(false);
    tx2.addOutbuf(frame, 60, 2);
    tx2.notify();
    await sleep(50);
    expect(stats.txPackets).toBe(1);
    expect(tx2.getBuf()).toEqual({ token: 1, len: 0 });
    expect(tx2.getBuf()).toBeNull();
  });

  it('resets the vq state on reset, and keeps one set while the queue was not ready', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, rx, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
    for (let i = 0; i < 4; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    rx.kick();
    const frame = allocator.alloc(60)!;
    for (let k = 0; k < 3; k++) tx.addOutbuf(frame, 60, k);
    tx.kick();
    expect(await until(() => mvnet.stateOf(mdev).stats.rxPackets === 3)).toBe(true);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(3);
    ops.setVqReady(mdev, MVNET_TX_QUEUE, false);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(3); // where the device stopped
    ops.setStatus(mdev, 0);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(0);
    expect(ops.getVqState(mdev, MVNET_RX_QUEUE)).toBe(0);
    // A state restored before the queue is enabled survives the enable (in the worker).
    ops.setVqState(mdev, MVNET_TX_QUEUE, 17);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(17);
    ops.setVqNum(mdev, MVNET_TX_QUEUE, tx.size);
    ops.setVqAddress(mdev, MVNET_TX_QUEUE, tx.descAddr, tx.availAddr, tx.usedAddr);
    ops.setVqReady(mdev, MVNET_TX_QUEUE, true);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(17);
  });

  it('reports DEVICE_NEEDS_RESET for a garbage ring found by the worker', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, tx } = mvnetBringUp(mdev, memory, { eventIdx: true });
    let configIrqs = 0;
    ops.setConfigCb(mdev, { callback: () => configIrqs++, private: null });
    offerBadHead(memory, tx, 0x7fff); // a head beyond the ring
    ops.kickVq(mdev, MVNET_TX_QUEUE);
    expect(await until(() => (ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0)).toBe(true);
    expect(configIrqs).toBe(1);
    expect(mvnet.stateOf(mdev).stats.ringErrors).toBe(1);
    // The worker stopped the broken queues, so nothing holds the process any more.
    expect(mvnet.offload!.holdsProcess).toBe(false);
    ops.setStatus(mdev, 0);
    expect(ops.getStatus(mdev)).toBe(0);
  });
});

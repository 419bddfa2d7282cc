import { KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import { sleep } from '@mdev/test-utils';
import {
  featureSet,
  hasFeature,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
} from '@mdev/virtio';
import {
  type DmaAllocator,
  type GuestMemory,
  offsetDmaOps,
  type VirtqueueLike,
} from '@mdev/virtio-ring';
import { offerBadHead } from '@mdev/virtio-ring/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import { LoopbackDatapath } from './datapath';
import { type MvnetLoopback, mvnetLoopbackInit } from './device';
import { loopedFrame, MVNET_TYPE_PATH, mvnetBringUp, mvnetCreate, mvnetWorld } from './testing';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

let memory: GuestMemory;
let allocator: DmaAllocator;
let mvnet: MvnetLoopback;

beforeEach(() => {
  ({ memory, allocator, mvnet } = mvnetWorld({ maxInstances: 4 }));
});

afterEach(() => {
  vi.restoreAllMocks();
  mvnet.exit();
  mdevVirtioExit();
});

const tick = () => sleep(5);

/** A frame of `len` bytes with a recognisable pattern, in guest memory. */
function frame(len: number, k = 0): { addr: number; len: number } {
  const addr = allocator.alloc(Math.max(len, 1))!;
  const bytes = memory.view(addr, len);
  for (let i = 0; i < len; i++) bytes[i] = (i * 7 + k) & 0xff;
  return { addr, len };
}

/** The used index the device published on a queue (le16 after the flags). */
function usedIdx(vq: VirtqueueLike<number>): number {
  const used = memory.view(vq.usedAddr, 4);
  return used[2]! | (used[3]! << 8);
}

/** Sets the driver's used_event (le16 after the avail ring, with EVENT_IDX; virtio 1.2 2.7.7). */
function setUsedEvent(vq: VirtqueueLike<number>, value: number): void {
  const ev = memory.view(vq.availAddr + 4 + 2 * vq.size, 2);
  ev[0] = value & 0xff;
  ev[1] = value >> 8;
}

/** Sets up the two queues as the virtio-mdev transport does; the device takes both. */
function bringUp(mdev: MdevDevice, num = 64, eventIdx = false) {
  const up = mvnetBringUp(mdev, memory, { num, eventIdx });
  for (const idx of [MVNET_RX_QUEUE, MVNET_TX_QUEUE]) {
    expect(up.ops.getVqReady(mdev, idx)).toBe(true);
  }
  return up;
}

describe('mvnet_loopback', () => {
  it('follows the documented flow and exposes the type attributes', () => {
    // The sample returned EINVAL for name.
    expect(sysfs.read(`${MVNET_TYPE_PATH}/name`)).toBe('virtio-net\n');
    expect(sysfs.read(`${MVNET_TYPE_PATH}/device_api`)).toBe('virtio-mdev\n');
    expect(sysfs.read(`${MVNET_TYPE_PATH}/available_instances`)).toBe('4\n');
    sysfs.write(`${MVNET_TYPE_PATH}/create`, `${UUID}\n`);
    expect(sysfs.list(`${MVNET_TYPE_PATH}/devices`)).toEqual([UUID]);
    expect(sysfs.read(`${MVNET_TYPE_PATH}/available_instances`)).toBe('3\n');
    const dev = `/sys/bus/mdev_virtio/devices/${UUID}`;
    expect(sysfs.read(`${dev}/vendor/sample_mdev_dev`)).toBe(`This is MDEV ${UUID}\n`);
    expect(sysfs.read(`${dev}/stats/tx_packets`)).toBe('0\n');
    sysfs.write(`${dev}/remove`, '1\n');
    expect(sysfs.read(`${MVNET_TYPE_PATH}/available_instances`)).toBe('4\n');
  });

  it('enforces available_instances', () => {
    for (let i = 0; i < 4; i++)
      sysfs.write(`${MVNET_TYPE_PATH}/create`, `${UUID.slice(0, -1)}${i}`);
    expect(sysfs.read(`${MVNET_TYPE_PATH}/available_instances`)).toBe('0\n');
    let err: unknown;
    try {
      sysfs.write(`${MVNET_TYPE_PATH}/create`, `${UUID.slice(0, -1)}9`);
    } catch (e) {
      err = e;
    }
    expect(KernelError.is(err, 'ENOSPC')).toBe(true);
  });

  it('takes the MAC and MTU provisioned for a UUID at its next creation only', () => {
    const mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    mvnet.provision(UUID, { mac: Uint8Array.from(mac), mtu: 9000 });
    sysfs.write(`${MVNET_TYPE_PATH}/create`, UUID);
    const cfg = new Uint8Array(12);
    const ops = mdevVirtioGetOps(mdevDevices()[0]!);
    ops.getConfig(mdevDevices()[0]!, 0, cfg);
    expect([...cfg.subarray(0, 6)]).toEqual(mac);
    expect([cfg[10], cfg[11]]).toEqual([9000 & 0xff, 9000 >> 8]); // mtu, le16
    sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1');
    // Created again without provisioning: a random MAC and the default MTU.
    sysfs.write(`${MVNET_TYPE_PATH}/create`, UUID);
    ops.getConfig(mdevDevices()[0]!, 0, cfg);
    expect([...cfg.subarray(0, 6)]).not.toEqual(mac);
    expect([cfg[10], cfg[11]]).toEqual([1500 & 0xff, 1500 >> 8]);
    for (const attrs of [
      { mac: Uint8Array.from([0x01, 0, 0, 0, 0, 1]) }, // multicast
      { mac: new Uint8Array(5) },
      { mtu: 67 },
      { mtu: 65536 },
      { mtu: 1500.5 },
    ]) {
      let err: unknown;
      try {
        mvnet.provision(UUID, attrs);
      } catch (e) {
        err = e;
      }
      expect(KernelError.is(err, 'EINVAL')).toBe(true);
    }
  });

  it('serves a correct little-endian config space and refuses features without ACCESS_PLATFORM', () => {
    const mdev = mvnetCreate(UUID);
    const ops = mdevVirtioGetOps(mdev);
    // The config fields are visible to a driver only with their feature bits (virtio 1.2 5.1.4).
    const offered = ops.getFeatures(mdev);
    for (const bit of [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MTU])
      expect(hasFeature(offered, bit)).toBe(true);
    const cfg = new Uint8Array(12);
    ops.getConfig(mdev, 0, cfg);
    expect(cfg[0]! & 0x03).toBe(0x02); // locally administered unicast MAC
    expect([cfg[6], cfg[7]]).toEqual([1, 0]); // status: LINK_UP
    expect([cfg[8], cfg[9]]).toEqual([1, 0]); // max_virtqueue_pairs
    expect([cfg[10], cfg[11]]).toEqual([1500 & 0xff, 1500 >> 8]); // mtu
    const mtu = new Uint8Array(2);
    ops.getConfig(mdev, 10, mtu);
    expect([...mtu]).toEqual([1500 & 0xff, 1500 >> 8]); // the sample's offset arithmetic is fixed
    let err: unknown;
    try {
      ops.setFeatures(mdev, featureSet(VIRTIO_F_VERSION_1));
    } catch (e) {
      err = e;
    }
    expect(KernelError.is(err, 'EINVAL')).toBe(true);
  });

  it('loops every TX frame back into an RX buffer, header and all but num_buffers', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx, irqs } = bringUp(mdev);
    const rxBufs = Array.from({ length: 16 }, () => allocator.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i + 1);
    rx.kick();
    const frames = [60, 61, 512, 1514].map((len, k) => frame(len, k));
    for (const [k, f] of frames.entries()) tx.addOutbuf(f.addr, f.len, k + 1);
    tx.kick();
    await tick();
    for (let k = 0; k < frames.length; k++) {
      const used = tx.getBuf();
      expect(used).toEqual({ token: k + 1, len: 0 });
    }
    for (let k = 0; k < frames.length; k++) {
      const used = rx.getBuf()!;
      expect(used.len).toBe(frames[k]!.len);
      expect(memory.read(rxBufs[used.token - 1]!, used.len)).toEqual(
        loopedFrame(memory.read(frames[k]!.addr, frames[k]!.len)),
      );
    }
    expect(irqs[MVNET_TX_QUEUE]).toBeGreaterThan(0);
    expect(irqs[MVNET_RX_QUEUE]).toBeGreaterThan(0);
    const stats = `/sys/bus/mdev_virtio/devices/${UUID}/stats`;
    expect(sysfs.read(`${stats}/rx_packets`)).toBe('4\n');
    expect(sysfs.read(`${stats}/tx_bytes`)).toBe(`${60 + 61 + 512 + 1514}\n`);
  });

  it('drops and counts a TX frame with no RX buffer, and raises no interrupt the driver suppressed', async () => {
    const mdev = mvnetCreate(UUID);
    const { tx, rx, irqs } = bringUp(mdev);
    const addr = allocator.alloc(64)!;
    tx.disableCb();
    rx.disableCb();
    for (let i = 0; i < 3; i++) tx.addOutbuf(addr, 64, i + 1);
    tx.kick();
    await tick();
    expect(irqs).toEqual([0, 0]);
    expect(mvnet.stateOf(mdev).stats.txDropped).toBe(3);
    let n = 0;
    while (tx.getBuf()) n++;
    expect(n).toBe(3);
  });

  it('sets num_buffers to 1 on RX (virtio 1.2 5.1.6.4.1), even in a header split across buffers', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx } = bringUp(mdev);
    // The driver's TX header carries num_buffers 0 (5.1.6.2); the RX chain splits the header
    // between num_buffers' two bytes.
    const sent = frame(64);
    memory.view(sent.addr, 12).fill(0);
    const [a, b] = [allocator.alloc(11)!, allocator.alloc(2048)!];
    rx.add(
      [],
      [
        { addr: a, len: 11 },
        { addr: b, len: 2048 },
      ],
      1,
    );
    rx.kick();
    tx.addOutbuf(sent.addr, sent.len, 1);
    tx.kick();
    await tick();
    expect(rx.getBuf()).toEqual({ token: 1, len: 64 });
    const got = new Uint8Array([...memory.read(a, 11), ...memory.read(b, 64 - 11)]);
    expect([got[10], got[11]]).toEqual([1, 0]);
    expect(got).toEqual(loopedFrame(memory.read(sent.addr, 64)));
  });

  it('without VERSION_1 the 10-byte legacy header has no num_buffers and is copied verbatim', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, rx, tx } = bringUp(mdev);
    ops.setStatus(mdev, 0);
    ops.setFeatures(mdev, featureSet(VIRTIO_F_ACCESS_PLATFORM));
    for (const idx of [MVNET_RX_QUEUE, MVNET_TX_QUEUE]) {
      const vq = idx === MVNET_RX_QUEUE ? rx : tx;
      ops.setVqNum(mdev, idx, vq.size);
      ops.setVqAddress(mdev, idx, vq.descAddr, vq.availAddr, vq.usedAddr);
      ops.setVqReady(mdev, idx, true);
    }
    const buf = allocator.alloc(2048)!;
    rx.addInbuf(buf, 2048, 1);
    rx.kick();
    const sent = frame(10); // a bare legacy header is a whole frame here
    tx.addOutbuf(sent.addr, sent.len, 1);
    tx.kick();
    await tick();
    expect(rx.getBuf()).toEqual({ token: 1, len: 10 });
    expect(memory.read(buf, 12)).toEqual(
      new Uint8Array([...memory.read(sent.addr, 10), 0, 0]), // nothing written past the frame
    );
  });

  it('completes and drops a TX chain shorter than the header without using an RX buffer', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx } = bringUp(mdev);
    const rxBufs = Array.from({ length: 4 }, () => allocator.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i + 1);
    rx.kick();
    for (const [k, len] of [0, 5, 11].entries()) tx.addOutbuf(frame(len).addr, len, k + 1);
    tx.kick();
    await tick();
    for (let k = 1; k <= 3; k++) expect(tx.getBuf()).toEqual({ token: k, len: 0 });
    expect(usedIdx(rx)).toBe(0);
    const stats = mvnet.stateOf(mdev).stats;
    expect(stats.txDropped).toBe(3);
    expect(stats.rxPackets).toBe(0);
    // The receive buffers are all still there: the next real frame lands in the first one.
    const sent = frame(60);
    tx.addOutbuf(sent.addr, sent.len, 4);
    tx.kick();
    await tick();
    expect(rx.getBuf()).toEqual({ token: 1, len: 60 });
    expect(memory.read(rxBufs[0]!, 60)).toEqual(loopedFrame(memory.read(sent.addr, 60)));
  });

  it('drops a frame too big for its RX buffer and gives the buffer back (rx_truncated)', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx } = bringUp(mdev);
    const small = allocator.alloc(64)!;
    rx.addInbuf(small, 64, 1);
    rx.kick();
    const big = frame(100, 1);
    const fits = frame(60, 2);
    tx.addOutbuf(big.addr, big.len, 1);
    tx.addOutbuf(fits.addr, fits.len, 2);
    tx.kick();
    await tick();
    expect(tx.getBuf()).toEqual({ token: 1, len: 0 });
    expect(tx.getBuf()).toEqual({ token: 2, len: 0 });
    // The 64-byte buffer was not used for the 100-byte frame: the 60-byte one got it whole.
    expect(rx.getBuf()).toEqual({ token: 1, len: 60 });
    expect(rx.getBuf()).toBeNull();
    expect(memory.read(small, 60)).toEqual(loopedFrame(memory.read(fits.addr, 60)));
    const stats = `/sys/bus/mdev_virtio/devices/${UUID}/stats`;
    expect(sysfs.read(`${stats}/rx_truncated`)).toBe('1\n');
    expect(sysfs.read(`${stats}/rx_packets`)).toBe('1\n');
    expect(sysfs.read(`${stats}/tx_packets`)).toBe('2\n');
  });

  it('refuses a budget that is not a positive integer', () => {
    for (const budget of [0, -1, 1.5, Number.NaN]) {
      expect(() => mvnetLoopbackInit({ memory, dma: offsetDmaOps(allocator), budget })).toThrow(
        RangeError,
      );
    }
  });

  it('requeues its work when the budget runs out, and every frame gets through', async () => {
    mvnet.exit();
    mvnet = mvnetLoopbackInit({ memory, dma: offsetDmaOps(allocator), budget: 2 });
    const mdev = mvnetCreate(UUID);
    const { rx, tx, irqs } = bringUp(mdev);
    const rxBufs = Array.from({ length: 8 }, () => allocator.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i);
    rx.kick();
    const frames = [60, 70, 80, 90, 100].map((len, k) => frame(len, k));
    for (const [k, f] of frames.entries()) tx.addOutbuf(f.addr, f.len, k);
    tx.kick(); // one kick for five frames
    for (let i = 0; i < 10 && mvnet.stateOf(mdev).stats.rxPackets < 5; i++) await tick();
    expect(mvnet.stateOf(mdev).stats.rxPackets).toBe(5);
    for (const [k, f] of frames.entries()) {
      expect(rx.getBuf()).toEqual({ token: k, len: f.len });
      expect(memory.read(rxBufs[k]!, f.len)).toEqual(loopedFrame(memory.read(f.addr, f.len)));
    }
    // Three runs of at most two frames, each ending with its interrupt.
    expect(irqs[MVNET_RX_QUEUE]).toBe(3);
  });

  it('raises no RX interrupt while the driver suppresses them, however many frames arrive', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx, irqs } = bringUp(mdev);
    for (let i = 0; i < 8; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    rx.kick();
    rx.disableCb(); // NAPI polling: VRING_AVAIL_F_NO_INTERRUPT
    for (let k = 0; k < 4; k++) tx.addOutbuf(frame(60, k).addr, 60, k);
    tx.kick();
    await tick();
    expect(mvnet.stateOf(mdev).stats.rxPackets).toBe(4);
    expect(irqs[MVNET_RX_QUEUE]).toBe(0);
    expect(irqs[MVNET_TX_QUEUE]).toBeGreaterThan(0); // TX did not suppress its own
    expect(rx.enableCb()).toBe(false); // buffers are waiting
    tx.addOutbuf(frame(60).addr, 60, 4);
    tx.kick();
    await tick();
    expect(irqs[MVNET_RX_QUEUE]).toBe(1);
  });

  it('honours used_event when EVENT_IDX is negotiated (virtio 1.2 2.7.10)', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx, irqs } = bringUp(mdev, 64, true);
    for (let i = 0; i < 8; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    rx.kick();
    // "Interrupt me once the used index passes 2": entries 0 and 1 raise nothing.
    setUsedEvent(rx, 2);
    for (let k = 0; k < 2; k++) tx.addOutbuf(frame(60, k).addr, 60, k);
    tx.kick();
    await tick();
    expect(usedIdx(rx)).toBe(2);
    expect(irqs[MVNET_RX_QUEUE]).toBe(0);
    tx.addOutbuf(frame(60).addr, 60, 2);
    tx.kick();
    await tick();
    expect(usedIdx(rx)).toBe(3);
    expect(irqs[MVNET_RX_QUEUE]).toBe(1);
  });

  it('cancels the queued work on reset: it never runs on the rings set up after', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, rx, tx } = bringUp(mdev);
    for (let i = 0; i < 4; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    rx.kick(); // work queued, not run yet
    ops.setStatus(mdev, 0);
    // The driver sets the device up again on new rings and fills them, without a kick: only the
    // work queued before the reset could move these frames.
    const again = bringUp(mdev);
    for (let i = 0; i < 4; i++) again.rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    for (let k = 0; k < 4; k++) again.tx.addOutbuf(frame(60, k).addr, 60, k);
    await tick();
    expect(usedIdx(again.tx)).toBe(0);
    expect(usedIdx(again.rx)).toBe(0);
    expect(usedIdx(tx)).toBe(0);
    expect(mvnet.stateOf(mdev).stats.txPackets).toBe(0);
    again.tx.kick(); // the next kick does move them
    await tick();
    expect(usedIdx(again.rx)).toBe(4);
  });

  it('cancels the queued work on remove', async () => {
    const mdev = mvnetCreate(UUID);
    const { rx, tx } = bringUp(mdev);
    const s = mvnet.stateOf(mdev);
    const run = vi.spyOn(LoopbackDatapath.prototype, 'run');
    for (let i = 0; i < 4; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    tx.addOutbuf(frame(60).addr, 60, 0);
    tx.kick(); // work queued, not run yet
    sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1');
    await tick();
    expect(run).not.toHaveBeenCalled();
    expect(usedIdx(tx)).toBe(0);
    expect(s.stats.txPackets).toBe(0);
  });

  it('resets the vq state on reset, and keeps one set while the queue was not ready', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, rx, tx } = bringUp(mdev);
    for (let i = 0; i < 4; i++) rx.addInbuf(allocator.alloc(2048)!, 2048, i);
    rx.kick();
    for (let k = 0; k < 3; k++) tx.addOutbuf(frame(60, k).addr, 60, k);
    tx.kick();
    await tick();
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(3);
    ops.setVqReady(mdev, MVNET_TX_QUEUE, false);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(3); // where the device stopped
    ops.setStatus(mdev, 0);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(0);
    expect(ops.getVqState(mdev, MVNET_RX_QUEUE)).toBe(0);
    // A state restored before the queue is enabled survives the enable.
    ops.setVqState(mdev, MVNET_TX_QUEUE, 17);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(17);
    ops.setVqNum(mdev, MVNET_TX_QUEUE, tx.size);
    ops.setVqAddress(mdev, MVNET_TX_QUEUE, tx.descAddr, tx.availAddr, tx.usedAddr);
    ops.setVqReady(mdev, MVNET_TX_QUEUE, true);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
    expect(ops.getVqState(mdev, MVNET_TX_QUEUE)).toBe(17);
  });

  it('breaks on a garbage ring and reports DEVICE_NEEDS_RESET through a config interrupt', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, tx } = bringUp(mdev);
    let configIrqs = 0;
    ops.setConfigCb(mdev, { callback: () => configIrqs++, private: null });
    // The driver writes an avail entry naming a head beyond the ring.
    offerBadHead(memory, tx, 0x7fff);
    ops.kickVq(mdev, MVNET_TX_QUEUE);
    await tick();
    expect(ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(configIrqs).toBe(1);
    expect(mvnet.stateOf(mdev).stats.ringErrors).toBe(1);
    // A driver writing back the status it read before the fault does not clear NEEDS_RESET.
    const before =
      VIRTIO_CONFIG_S_ACKNOWLEDGE |
      VIRTIO_CONFIG_S_DRIVER |
      VIRTIO_CONFIG_S_FEATURES_OK |
      VIRTIO_CONFIG_S_DRIVER_OK;
    ops.setStatus(mdev, before);
    expect(ops.getStatus(mdev)).toBe(before | VIRTIO_CONFIG_S_NEEDS_RESET);
    ops.setStatus(mdev, 0); // reset recovers
    expect(ops.getStatus(mdev)).toBe(0);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
  });

  it('takes only a byte as status: any other value changes nothing, and frames still loop', async () => {
    const mdev = mvnetCreate(UUID);
    const { ops, rx, tx } = bringUp(mdev);
    const live =
      VIRTIO_CONFIG_S_ACKNOWLEDGE |
      VIRTIO_CONFIG_S_DRIVER |
      VIRTIO_CONFIG_S_FEATURES_OK |
      VIRTIO_CONFIG_S_DRIVER_OK;
    ops.setStatus(mdev, live);
    const generation = ops.getGeneration!(mdev);
    for (const bad of [2 ** 32, 256, -1, 0.5, live + 0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      ops.setStatus(mdev, bad);
      expect(ops.getStatus(mdev)).toBe(live);
      expect(ops.getGeneration!(mdev)).toBe(generation); // no reset happened either
    }
    expect(ops.getVqReady(mdev, MVNET_RX_QUEUE)).toBe(true);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(true);
    const rxBuf = allocator.alloc(2048)!;
    rx.addInbuf(rxBuf, 2048, 0);
    rx.kick();
    const f = frame(60);
    tx.addOutbuf(f.addr, f.len, 0);
    tx.kick();
    await tick();
    expect(memory.read(rxBuf, 60)).toEqual(loopedFrame(memory.read(f.addr, 60)));
    ops.setStatus(mdev, 0); // a real reset still resets
    expect(ops.getStatus(mdev)).toBe(0);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
  });

  it('removes every instance when the parent goes away', () => {
    sysfs.write(`${MVNET_TYPE_PATH}/create`, UUID);
    sysfs.write(`${MVNET_TYPE_PATH}/create`, `${UUID.slice(0, -1)}2`);
    expect(mdevDevices()).toHaveLength(2);
    mvnet.exit();
    expect(mdevDevices()).toHaveLength(0);
    mvnet = mvnetLoopbackInit({ memory, dma: offsetDmaOps(allocator) }); // for afterEach
  });
});

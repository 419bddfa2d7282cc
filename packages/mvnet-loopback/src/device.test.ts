import { KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import {
  featureSet,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
} from '@mdev/virtio';
import { DmaAllocator, GuestMemory, offsetDmaOps, Virtqueue } from '@mdev/virtio-ring';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import { type MvnetLoopback, mvnetLoopbackInit } from './device';

const BASE = 0x100000;
const TYPE =
  '/sys/devices/virtual/mvnet_loopback/mvnet_loopback/mdev_supported_types/mvnet_loopback-virtio';
const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

let memory: GuestMemory;
let allocator: DmaAllocator;
let mvnet: MvnetLoopback;

beforeEach(() => {
  memory = new GuestMemory();
  memory.addRegion(BASE, new SharedArrayBuffer(4 << 20));
  allocator = new DmaAllocator(memory, BASE);
  mvnet = mvnetLoopbackInit({ memory, dma: offsetDmaOps(allocator), maxInstances: 4 });
});

afterEach(() => {
  mvnet.exit();
  mdevVirtioExit();
});

const tick = () => new Promise((r) => setTimeout(r, 5));

/** Sets up the two queues as the virtio-mdev transport does, with interrupt counters. */
function bringUp(mdev: MdevDevice, num = 64) {
  const ops = mdevVirtioGetOps(mdev);
  ops.setFeatures(mdev, featureSet(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM));
  const irqs = [0, 0];
  const vqs = [MVNET_RX_QUEUE, MVNET_TX_QUEUE].map((idx) => {
    const vq = Virtqueue.create<number>({
      index: idx,
      num,
      memory,
      dma: mdev.dmaOps!,
      notify: () => {
        ops.kickVq(mdev, idx);
        return true;
      },
    })!;
    ops.setVqCb(mdev, idx, { callback: () => irqs[idx]!++, private: null });
    ops.setVqNum(mdev, idx, vq.num);
    ops.setVqAddress(mdev, idx, vq.descAddr, vq.availAddr, vq.usedAddr);
    ops.setVqReady(mdev, idx, true);
    expect(ops.getVqReady(mdev, idx)).toBe(true);
    return vq;
  });
  return { ops, rx: vqs[0]!, tx: vqs[1]!, irqs };
}

describe('mvnet_loopback', () => {
  it('follows the documented flow and exposes the type attributes', () => {
    expect(sysfs.read(`${TYPE}/name`)).toBe('virtio-net\n'); // the sample returned EINVAL here
    expect(sysfs.read(`${TYPE}/device_api`)).toBe('virtio-mdev\n');
    expect(sysfs.read(`${TYPE}/available_instances`)).toBe('4\n');
    sysfs.write(`${TYPE}/create`, `${UUID}\n`);
    expect(sysfs.list(`${TYPE}/devices`)).toEqual([UUID]);
    expect(sysfs.read(`${TYPE}/available_instances`)).toBe('3\n');
    const dev = `/sys/bus/mdev_virtio/devices/${UUID}`;
    expect(sysfs.read(`${dev}/vendor/sample_mdev_dev`)).toBe(`This is MDEV ${UUID}\n`);
    expect(sysfs.read(`${dev}/stats/tx_packets`)).toBe('0\n');
    sysfs.write(`${dev}/remove`, '1\n');
    expect(sysfs.read(`${TYPE}/available_instances`)).toBe('4\n');
  });

  it('enforces available_instances', () => {
    for (let i = 0; i < 4; i++) sysfs.write(`${TYPE}/create`, `${UUID.slice(0, -1)}${i}`);
    let err: unknown;
    try {
      sysfs.write(`${TYPE}/create`, `${UUID.slice(0, -1)}9`);
    } catch (e) {
      err = e;
    }
    expect(KernelError.is(err, 'ENOSPC')).toBe(true);
  });

  it('serves a correct little-endian config space and refuses features without ACCESS_PLATFORM', () => {
    sysfs.write(`${TYPE}/create`, UUID);
    const mdev = mdevDevices()[0]!;
    const ops = mdevVirtioGetOps(mdev);
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

  it('loops every TX frame back into an RX buffer, header and all', async () => {
    sysfs.write(`${TYPE}/create`, UUID);
    const mdev = mdevDevices()[0]!;
    const { rx, tx, irqs } = bringUp(mdev);
    const rxBufs = Array.from({ length: 16 }, () => allocator.alloc(2048)!);
    for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i + 1);
    rx.kick();
    const frames = [60, 61, 512, 1514].map((len, k) => {
      const addr = allocator.alloc(len)!;
      const bytes = memory.view(addr, len);
      for (let i = 0; i < len; i++) bytes[i] = (i * 7 + k) & 0xff;
      return { addr, len };
    });
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
        memory.read(frames[k]!.addr, frames[k]!.len),
      );
    }
    expect(irqs[MVNET_TX_QUEUE]).toBeGreaterThan(0);
    expect(irqs[MVNET_RX_QUEUE]).toBeGreaterThan(0);
    const stats = `/sys/bus/mdev_virtio/devices/${UUID}/stats`;
    expect(sysfs.read(`${stats}/rx_packets`)).toBe('4\n');
    expect(sysfs.read(`${stats}/tx_bytes`)).toBe(`${60 + 61 + 512 + 1514}\n`);
  });

  it('drops and counts a TX frame with no RX buffer, and raises no interrupt the driver suppressed', async () => {
    sysfs.write(`${TYPE}/create`, UUID);
    const mdev = mdevDevices()[0]!;
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

  it('breaks on a garbage ring and reports DEVICE_NEEDS_RESET through a config interrupt', async () => {
    sysfs.write(`${TYPE}/create`, UUID);
    const mdev = mdevDevices()[0]!;
    const { ops, tx } = bringUp(mdev);
    let configIrqs = 0;
    ops.setConfigCb(mdev, { callback: () => configIrqs++, private: null });
    // The driver writes an avail entry naming a head beyond the ring.
    const avail = memory.view(tx.availAddr, 6);
    avail[4] = 0xff;
    avail[5] = 0x7f;
    avail[2] = 1;
    ops.kickVq(mdev, MVNET_TX_QUEUE);
    await tick();
    expect(ops.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(configIrqs).toBe(1);
    expect(mvnet.stateOf(mdev).stats.ringErrors).toBe(1);
    ops.setStatus(mdev, 0); // reset recovers
    expect(ops.getStatus(mdev)).toBe(0);
    expect(ops.getVqReady(mdev, MVNET_TX_QUEUE)).toBe(false);
  });

  it('removes every instance when the parent goes away', () => {
    sysfs.write(`${TYPE}/create`, UUID);
    sysfs.write(`${TYPE}/create`, `${UUID.slice(0, -1)}2`);
    expect(mdevDevices()).toHaveLength(2);
    mvnet.exit();
    expect(mdevDevices()).toHaveLength(0);
    mvnet = mvnetLoopbackInit({ memory, dma: offsetDmaOps(allocator) }); // for afterEach
  });
});

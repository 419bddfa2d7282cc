import { KernelError, sysfs } from '@mdev/driver-core';
import { nextTurns, until, untilTurns } from '@mdev/test-utils';
import {
  featureSet,
  HostRam,
  registerVirtioDevice,
  unregisterVirtioDevice,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  type VirtioDevice,
  virtioHasFeature,
} from '@mdev/virtio';
import {
  createTestVirtioDevice,
  LOOPBACK_DEFAULT_FEATURES,
  LoopbackNetDevice,
  type LoopbackNetDeviceOptions,
} from '@mdev/virtio/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  NETDEV_TX_BUSY,
  NETDEV_TX_OK,
  netdevGetByName,
  netdevList,
  registerVirtioNetDriver,
  setVirtioNetParams,
  subscribeNetdev,
  unregisterVirtioNetDriver,
  type VirtNet,
  virtioNetParams,
  virtnetFromVirtioDevice,
} from './index';

beforeAll(() => registerVirtioNetDriver());
afterAll(() => unregisterVirtioNetDriver());

const defaults = { ...virtioNetParams };
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
  setVirtioNetParams(defaults);
});

function setup(opts: Partial<LoopbackNetDeviceOptions> = {}) {
  const ram = new HostRam({ regionSize: 4 << 20 });
  const dev = new LoopbackNetDevice({ ram, numMax: 64, ...opts });
  const vdev = createTestVirtioDevice(dev);
  registerVirtioDevice(vdev);
  cleanups.push(() => unregisterVirtioDevice(vdev));
  return { ram, dev, vdev, net: virtnetFromVirtioDevice(vdev) };
}

/** A frame of `len` bytes whose content says which frame it is. */
function frame(seq: number, len: number): Uint8Array {
  const f = new Uint8Array(len);
  f.fill(0xff, 0, 6); // broadcast destination
  for (let i = 6; i < len; i++) f[i] = (seq * 31 + i * 7) & 0xff;
  f[12] = 0x88;
  f[13] = 0xb5; // local experimental ethertype
  new DataView(f.buffer).setUint32(14, seq);
  return f;
}

function collect(net: VirtNet): Uint8Array[] {
  const got: Uint8Array[] = [];
  net.onReceive = (buf, off, len) => got.push(buf.slice(off, off + len));
  return got;
}

/** Sends `frames` with backpressure: on BUSY it waits for the wake callback. */
async function sendAll(net: VirtNet, frames: Uint8Array[]): Promise<number> {
  let next = 0;
  let busy = 0;
  const pump = () => {
    while (next < frames.length) {
      if (net.xmit(frames[next]!, next + 1 < frames.length) === NETDEV_TX_BUSY) {
        busy++;
        return;
      }
      next++;
    }
  };
  net.onTxWake = pump;
  pump();
  await untilTurns(() => next === frames.length);
  expect(next).toBe(frames.length);
  return busy;
}

describe('probe', () => {
  it('binds a net device with the config MAC, MTU and link, and negotiates the features', () => {
    const mac = Uint8Array.of(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee);
    const { vdev, net, dev } = setup({ mac, mtu: 1400 });
    expect(net).toBeDefined();
    expect(net!.name).toMatch(/^eth\d+$/);
    expect(netdevGetByName(net!.name)).toBe(net);
    expect([...net!.mac]).toEqual([...mac]);
    expect(net!.mtu).toBe(1400);
    expect(net!.carrier).toBe(true);
    expect(net!.hdrLen).toBe(12);
    expect(dev.driverFeatures).toBe(LOOPBACK_DEFAULT_FEATURES);
    expect(sysfs.readlink(`/sys/bus/virtio/devices/${vdev.name}/driver`)).toBe(
      '/sys/bus/virtio/drivers/virtio_net',
    );
    expect(sysfs.read(`/sys/bus/virtio/devices/${vdev.name}/status`)).toBe('0x0000000f\n');
  });

  it('without MAC picks a random locally administered unicast MAC; without STATUS the link is up', () => {
    const features = featureSet(VIRTIO_F_VERSION_1);
    const { net } = setup({ features, linkUp: false });
    const first = net!.mac[0]!;
    expect(first & 0x01).toBe(0);
    expect(first & 0x02).toBe(2);
    expect(net!.carrier).toBe(true);
    expect(net!.mtu).toBe(1500);
  });

  it('ignores an MTU below 68 (virtnet_validate)', () => {
    const { vdev, net } = setup({ mtu: 40 });
    expect(virtioHasFeature(vdev, VIRTIO_NET_F_MTU)).toBe(false);
    expect(net!.mtu).toBe(1500);
  });

  it('a device refusing a feature fails the probe with FAILED and no net device', () => {
    const ram = new HostRam({ regionSize: 4 << 20 });
    const dev = new LoopbackNetDevice({ ram });
    dev.refusedFeatures = featureSet(VIRTIO_NET_F_MRG_RXBUF);
    const vdev = createTestVirtioDevice(dev);
    registerVirtioDevice(vdev);
    cleanups.push(() => unregisterVirtioDevice(vdev));
    expect(virtnetFromVirtioDevice(vdev)).toBeUndefined();
    expect(KernelError.is(vdev.lastProbeError, 'EINVAL')).toBe(true);
    expect(dev.status & VIRTIO_CONFIG_S_FAILED).toBe(VIRTIO_CONFIG_S_FAILED);
    expect(ram.allocatedBytes).toBe(0);
  });
});

describe('traffic through the loopback device', () => {
  const sizes = [60, 61, 64, 127, 128, 255, 256, 511, 512, 1000, 1023, 1024, 1500, 1513, 1514];

  async function roundTrip(vdev: VirtioDevice, net: VirtNet, repeat = 4) {
    net.open();
    const s0 = net.stats;
    const got = collect(net);
    const frames = [];
    for (let r = 0; r < repeat; r++) for (const s of sizes) frames.push(frame(frames.length, s));
    await sendAll(net, frames);
    await untilTurns(() => got.length === frames.length);
    expect(got.length).toBe(frames.length);
    for (let i = 0; i < frames.length; i++) expect(got[i]).toEqual(frames[i]);
    await untilTurns(() => net.stats.txPackets - s0.txPackets === frames.length);
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    const s1 = net.stats;
    expect({
      rxPackets: s1.rxPackets - s0.rxPackets,
      rxBytes: s1.rxBytes - s0.rxBytes,
      txPackets: s1.txPackets - s0.txPackets,
      txBytes: s1.txBytes - s0.txBytes,
      lost: s1.rxDropped + s1.rxErrors + s1.txDropped + s1.txErrors,
    }).toEqual({
      rxPackets: frames.length,
      rxBytes: bytes,
      txPackets: frames.length,
      txBytes: bytes,
      lost: 0,
    });
    expect(vdev.vqs.every((q) => !q.isBroken)).toBe(true);
    return frames.length;
  }

  it('small receive buffers (no MRG_RXBUF): frames of 60 to 1514 bytes come back intact', async () => {
    const features = LOOPBACK_DEFAULT_FEATURES & ~featureSet(VIRTIO_NET_F_MRG_RXBUF);
    const { vdev, net, dev } = setup({ features });
    expect(net!.mergeable).toBe(false);
    const n = await roundTrip(vdev, net!);
    expect(dev.rxBuffers).toBe(n);
    expect(dev.oversize).toBe(0);
  });

  it('refuses unusable driver parameters with RangeError and keeps the current ones', () => {
    for (const bad of [{ napiWeight: 0 }, { netdevBudget: 0 }, { netdevBudget: 1.5 }]) {
      expect(() => setVirtioNetParams(bad)).toThrow(RangeError);
    }
    expect(virtioNetParams).toMatchObject({ napiWeight: 64, netdevBudget: 300 });
  });

  it('mergeable receive buffers: a frame spans several descriptors and num_buffers says how many', async () => {
    setVirtioNetParams({ mergeableBufSize: 128 });
    const { vdev, net, dev } = setup();
    expect(net!.mergeable).toBe(true);
    let maxBuffers = 0;
    const n = await roundTrip(vdev, net!);
    maxBuffers = dev.rxBuffers;
    // 1514 + 12 header bytes in 128-byte buffers need 12 of them.
    expect(maxBuffers).toBeGreaterThan(n * 3);
  });

  it('without EVENT_IDX and INDIRECT_DESC', async () => {
    const features =
      LOOPBACK_DEFAULT_FEATURES & ~featureSet(VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC);
    const { vdev, net } = setup({ features });
    await roundTrip(vdev, net!);
  });

  it('a legacy device without ANY_LAYOUT gets a 10-byte header in a descriptor of its own', async () => {
    const features = featureSet(VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS);
    const { vdev, net, ram } = setup({ features });
    expect(net!.hdrLen).toBe(10);
    expect(net!.anyLayout).toBe(false);
    net!.open();
    // Look at the bytes on the ring: the first transmit chain is header, then frame.
    const tx = net!.queues.tx;
    const f = frame(0, 60);
    net!.onReceive = () => {};
    expect(net!.xmit(f)).toBe(NETDEV_TX_OK);
    const desc = new DataView(ram.memory.view(tx.descAddr, 32).slice().buffer);
    expect(desc.getUint32(8, true)).toBe(10); // len of descriptor 0: the header
    expect(desc.getUint16(12, true)).toBe(1); // VRING_DESC_F_NEXT
    expect(desc.getUint32(16 + 8, true)).toBe(60); // descriptor 1: the frame
    const data = Number(desc.getBigUint64(16, true));
    expect(ram.memory.read(data, 60)).toEqual(f);
    await untilTurns(() => net!.stats.rxPackets === 1);
    net!.stop();
    await roundTrip(vdev, net!);
  });
});

describe('buffer layout', () => {
  it('starts every transmitted and received frame on a 64-byte line, the header just before it', async () => {
    for (const features of [
      LOOPBACK_DEFAULT_FEATURES,
      LOOPBACK_DEFAULT_FEATURES & ~featureSet(VIRTIO_NET_F_MRG_RXBUF),
    ]) {
      const { net } = setup({ features });
      net!.open();
      const txAt: number[] = [];
      const rxAt: number[] = [];
      net!.onReceive = (buf, off) => rxAt.push((buf.byteOffset + off) % 64);
      const f = frame(0, 64);
      for (let k = 0; k < 20; k++) {
        net!.xmitWith(64, (buf, off) => {
          txAt.push((buf.byteOffset + off) % 64);
          buf.set(f, off);
        });
      }
      await untilTurns(() => rxAt.length === 20);
      expect(txAt).toEqual(new Array(20).fill(0));
      expect(rxAt).toEqual(new Array(20).fill(0));
    }
  });
});

describe('transmit buffers', () => {
  it('are taken oldest first, so each goes back to the descriptor it had when used in order', async () => {
    const { net } = setup();
    net!.open();
    let rx = 0;
    net!.onReceive = () => rx++;
    const at: number[] = [];
    const f = frame(0, 60);
    const send = () =>
      net!.xmitWith(60, (buf, off) => {
        at.push(off);
        buf.set(f, off);
      });
    for (let k = 0; k < 3; k++) send();
    await untilTurns(() => rx === 3);
    for (let k = 0; k < 70; k++) {
      send();
      await untilTurns(() => rx === 4 + k);
    }
    // 64 buffers: a round of all of them, in the same order each time.
    const slot = at.map((o) => (o - at[0]!) / (at[1]! - at[0]!));
    expect(slot.slice(0, 66)).toEqual([...Array(64).keys(), 0, 1]);
  });
});

describe('backpressure', () => {
  it('xmit returns BUSY when the ring is full, wakes when buffers come back, and loses nothing', async () => {
    const { net } = setup({ numMax: 16 });
    net!.open();
    const got = collect(net!);
    // Without yielding, the 17th frame cannot fit a 16-entry ring.
    let accepted = 0;
    while (net!.xmit(frame(accepted, 100), true) === NETDEV_TX_OK) accepted++;
    expect(accepted).toBe(16);
    expect(net!.txStopped).toBe(true);
    expect(net!.xmit(frame(accepted, 100))).toBe(NETDEV_TX_BUSY);
    let woke = 0;
    net!.onTxWake = () => {
      woke++;
    };
    await untilTurns(() => woke > 0);
    expect(woke).toBeGreaterThan(0);
    expect(net!.txStopped).toBe(false);
    const rest = [];
    for (let i = accepted; i < 500; i++) rest.push(frame(i, 60 + (i % 1400)));
    const busy = await sendAll(net!, rest);
    expect(busy).toBeGreaterThan(0);
    await untilTurns(() => got.length === 500);
    expect(got.length).toBe(500);
    for (let i = 0; i < 500; i++) {
      expect(new DataView(got[i]!.buffer).getUint32(14)).toBe(i);
    }
    expect(net!.stats.txDropped + net!.stats.rxDropped + net!.stats.rxErrors).toBe(0);
  });

  it('rejects a frame longer than MTU + headers with RangeError and queues nothing', () => {
    const { net } = setup();
    net!.open();
    expect(() => net!.xmit(new Uint8Array(net!.maxFrameLen + 1))).toThrow(RangeError);
    expect(() => net!.xmit(new Uint8Array(0))).toThrow(RangeError);
    expect(net!.queues.tx.numFree).toBe(net!.queues.tx.num);
  });
});

describe('link state', () => {
  it('follows VIRTIO_NET_S_LINK_UP config changes: down stops transmit, up wakes it', async () => {
    const { net, dev } = setup();
    net!.open();
    const links: boolean[] = [];
    let woke = 0;
    net!.onLinkChange = (up) => links.push(up);
    net!.onTxWake = () => {
      woke++;
    };
    // The first NAPI run after open wakes the sender once (the interface just came up).
    await untilTurns(() => woke === 1);
    dev.setLink(false);
    await untilTurns(() => links.length === 1);
    expect(links).toEqual([false]);
    expect(net!.carrier).toBe(false);
    expect(net!.xmit(frame(0, 60))).toBe(NETDEV_TX_BUSY);
    dev.setLink(true);
    await untilTurns(() => links.length === 2);
    expect(links).toEqual([false, true]);
    expect(woke).toBe(2);
    const got = collect(net!);
    expect(net!.xmit(frame(1, 60))).toBe(NETDEV_TX_OK);
    await untilTurns(() => got.length === 1);
    expect(got[0]).toEqual(frame(1, 60));
  });
});

describe('remove', () => {
  it('removing the device during traffic resets it, frees every buffer and unregisters the netdev', async () => {
    const { net, dev, vdev, ram } = setup({ numMax: 32 });
    const baseline = ram.allocatedBytes;
    net!.open();
    const got = collect(net!);
    let sent = 0;
    const pump = () => {
      while (net!.xmit(frame(sent, 60 + (sent % 1000)), true) === NETDEV_TX_OK) sent++;
    };
    net!.onTxWake = pump;
    pump();
    await untilTurns(() => got.length > 100);
    const name = net!.name;
    unregisterVirtioDevice(vdev);
    cleanups.length = 0;
    expect(netdevGetByName(name)).toBeUndefined();
    expect(virtnetFromVirtioDevice(vdev)).toBeUndefined();
    expect(dev.queues.every((q) => !q.ready)).toBe(true);
    expect(dev.status).toBe(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    expect(ram.allocatedBytes).toBeLessThan(baseline);
    expect(ram.allocatedBytes).toBe(0);
    expect(net!.xmit(frame(0, 60))).toBe(NETDEV_TX_BUSY);
    // Every frame received before the removal is intact and in order.
    for (let i = 0; i < got.length; i++) expect(got[i]).toEqual(frame(i, 60 + (i % 1000)));
    // Nothing arrives after the removal.
    const before = got.length;
    await nextTurns(100);
    expect(got.length).toBe(before);
  });
});

describe('probe ordering and unwinding', () => {
  function device(ram: HostRam) {
    const dev = new LoopbackNetDevice({ ram, numMax: 16 });
    const vdev = createTestVirtioDevice(dev);
    cleanups.push(() => unregisterVirtioDevice(vdev));
    return { dev, vdev };
  }

  it('sets DRIVER_OK before the netdev is visible, so an open on register kicks a ready device', () => {
    const ram = new HostRam({ regionSize: 4 << 20 });
    const { dev, vdev } = device(ram);
    const statusAtKick: number[] = [];
    const kickVq = dev.kickVq.bind(dev);
    dev.kickVq = (i) => {
      statusAtKick.push(dev.status);
      kickVq(i);
    };
    // A listener that brings every new interface up at once, as a network manager would.
    cleanups.push(subscribeNetdev((event, nd) => event === 'register' && nd.open()));
    registerVirtioDevice(vdev);
    expect(virtnetFromVirtioDevice(vdev)?.isUp).toBe(true);
    expect(statusAtKick.length).toBeGreaterThan(0);
    for (const st of statusAtKick)
      expect(st & VIRTIO_CONFIG_S_DRIVER_OK).toBe(VIRTIO_CONFIG_S_DRIVER_OK);
  });

  it('leaves nothing registered or allocated when the probe fails after the netdev was made', () => {
    const ram = new HostRam({ regionSize: 4 << 20 });
    const { dev, vdev } = device(ram);
    cleanups.push(
      subscribeNetdev((event, nd) => {
        if (event === 'register') {
          nd.open(); // buffers posted: the unwinding has to take them back
          throw new KernelError('ENOMEM', 'a listener ran out of memory');
        }
      }),
    );
    const names = netdevList().map((n) => n.name);
    registerVirtioDevice(vdev);
    expect(vdev.driver).toBeNull();
    expect(KernelError.is(vdev.lastProbeError, 'ENOMEM')).toBe(true);
    expect(dev.status & VIRTIO_CONFIG_S_FAILED).toBe(VIRTIO_CONFIG_S_FAILED);
    expect(netdevList().map((n) => n.name)).toEqual(names);
    expect(virtnetFromVirtioDevice(vdev)).toBeUndefined();
    expect(vdev.priv).toBeNull();
    expect(vdev.vqs).toHaveLength(0);
    expect(ram.allocatedBytes).toBe(0);
  });
});

describe('robustness', () => {
  it('wakes a sender that got BUSY while the interface was down once it is opened again', async () => {
    const { net } = setup();
    net!.open();
    let woke = 0;
    net!.onTxWake = () => {
      woke++;
    };
    await untilTurns(() => woke === 1);
    net!.stop();
    expect(net!.xmit(frame(0, 60))).toBe(NETDEV_TX_BUSY);
    net!.open();
    await untilTurns(() => woke === 2);
    expect(woke).toBe(2);
    expect(net!.xmit(frame(1, 60))).toBe(NETDEV_TX_OK);
  });

  it('posts again, a little later, receive buffers whose repost failed', async () => {
    const { net } = setup({ numMax: 16 });
    net!.open();
    const rx = net!.queues.rx;
    const addInbuf = rx.addInbuf.bind(rx);
    let failures = 3;
    rx.addInbuf = (addr, len, token) => (failures-- > 0 ? -12 : addInbuf(addr, len, token));
    const got = collect(net!);
    await sendAll(
      net!,
      Array.from({ length: 40 }, (_, i) => frame(i, 60)),
    );
    await untilTurns(() => got.length === 40);
    expect(failures).toBeLessThan(0);
    // Every receive buffer is back with the device: none was lost to the failed adds.
    await until(() => rx.numFree === 0);
    expect(rx.numFree).toBe(0);
  });

  it('survives a receive handler that throws: one warning, every frame counted, traffic goes on', async () => {
    const { net } = setup();
    net!.open();
    const warnings: string[] = [];
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation((w) => {
      warnings.push(String(w));
    });
    cleanups.push(() => warn.mockRestore());
    let calls = 0;
    net!.onReceive = () => {
      calls++;
      throw new Error('handler bug');
    };
    const frames = Array.from({ length: 8 }, (_, i) => frame(i, 64));
    await sendAll(net!, frames);
    await untilTurns(() => calls === frames.length);
    expect(calls).toBe(frames.length);
    // Reported once, not once per frame; the frames were delivered, so they count as received.
    expect(warnings).toEqual([`${net!.name}: receive handler threw: Error: handler bug`]);
    expect(net!.stats.rxPackets).toBe(frames.length);
    const got = collect(net!);
    await sendAll(net!, [frame(8, 64)]);
    await untilTurns(() => got.length === 1);
    expect(got).toEqual([frame(8, 64)]);
  });

  it('survives a receive handler that removes the device: the deleted rings are not touched', async () => {
    const { net, vdev, ram } = setup();
    net!.open();
    const rx = net!.queues.rx;
    let removed = false;
    let touchedAfter = 0;
    const enable = rx.enableCbPrepare.bind(rx);
    rx.enableCbPrepare = () => {
      if (removed) touchedAfter++;
      return enable();
    };
    const addInbuf = rx.addInbuf.bind(rx);
    rx.addInbuf = (addr, len, token) => {
      if (removed) touchedAfter++;
      return addInbuf(addr, len, token);
    };
    let calls = 0;
    net!.onReceive = () => {
      calls++;
      if (!removed) {
        removed = true;
        unregisterVirtioDevice(vdev);
      }
    };
    for (let i = 0; i < 8; i++) net!.xmit(frame(i, 60), i < 7);
    await untilTurns(() => removed);
    await nextTurns(50);
    cleanups.length = 0;
    expect(calls).toBe(1);
    expect(touchedAfter).toBe(0);
    expect(ram.allocatedBytes).toBe(0);
  });

  it('counts the frames the device finished but nobody reaped when the device goes away', async () => {
    const { net, dev, vdev } = setup({ numMax: 32 });
    net!.open();
    net!.onReceive = () => {};
    for (let i = 0; i < 10; i++) expect(net!.xmit(frame(i, 60), i < 9)).toBe(NETDEV_TX_OK);
    net!.stop(); // no NAPI from here: completions stay on the used ring
    await untilTurns(() => dev.frames === 10);
    expect(dev.frames).toBe(10);
    unregisterVirtioDevice(vdev);
    cleanups.length = 0;
    expect(net!.stats.txPackets + net!.stats.txDropped).toBe(10);
    expect(net!.stats.txPackets).toBe(10);
  });
});

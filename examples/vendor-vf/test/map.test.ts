// The IOMMU table in front of a VF (the mdev_virtio set_map op): its rings and buffers are read at
// IOVAs of a memory that is not the host's, here a memfd mapped in this thread as a vhost-user
// backend maps a frontend's region. The card's VF maps the region's fd again in its own thread;
// the engine in the test's thread reads this thread's mapping.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { KernelError, sysfs } from '@mdev/driver-core';
import {
  allocVfShared,
  VENDOR_VF_TYPE_PATH,
  type VendorVfCard,
  VF_FEATURES,
  VF_RX_QUEUE,
  VF_TX_QUEUE,
  VfBar,
  VfEngine,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
  vendorVfInit,
  vendorVfOps,
} from '@mdev/example-vendor-vf';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import {
  type MdevVirtioMapEntry,
  type MdevVirtioMapRegion,
  mdevVirtioExit,
  mdevVirtioSetMap,
  VHOST_ACCESS_RW,
} from '@mdev/mdev-virtio';
import { until } from '@mdev/test-utils';
import { createMemfd, type Fd, mapShared, unmap } from '@mdev/vhost-user';
import {
  featureSet,
  HostRam,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_RING_F_EVENT_IDX,
} from '@mdev/virtio';
import {
  DmaAllocator,
  type DmaMapOps,
  GuestMemory,
  offsetDmaOps,
  Virtqueue,
} from '@mdev/virtio-ring';
import { afterEach, describe, expect, it, vi } from 'vitest';

const UUID = '6b1e8a8e-2f43-4d1c-9a5e-0c7bdfe0a0e1';
/** Where the frontend's memory lies in the VF's IOVA space. */
const IOVA = 0x4000_0000;
const HALF = 512 << 10;
const FEATURES = VF_FEATURES & ~featureSet(VIRTIO_RING_F_EVENT_IDX);
const RUNNING = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

let card: VendorVfCard | null = null;
let ram: HostRam;
const cleanups: (() => void)[] = [];

afterEach(() => {
  card?.exit();
  card = null;
  mdevVirtioExit();
  vi.restoreAllMocks();
  for (const f of cleanups.splice(0).reverse()) f();
});

function load(vhostUser?: string): VendorVfCard {
  ram = new HostRam({ regionSize: 1 << 20 });
  card = vendorVfInit({ memory: ram.memory, dma: ram.dma, vfs: 2, vhostUser });
  return card;
}

function create(): MdevDevice {
  sysfs.write(`${VENDOR_VF_TYPE_PATH}/create`, `${UUID}\n`);
  return mdevDevices().find((m) => m.uuid === UUID)!;
}

let names = 0;

/**
 * A frontend's memory: a memfd of two halves, mapped in this thread (the driver's view, at
 * `iova`), and the map that gives the VF each half by the region's fd.
 */
function memfdFrontend(iova = IOVA) {
  const name = `vendor-vf-map-${process.pid}-${++names}`;
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

/** Open fds of this process on the memfd `name`. */
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

/** What a frame comes back as: the VF sets num_buffers (header bytes 10-11) to 1. */
function looped(sent: Uint8Array): Uint8Array {
  const out = sent.slice();
  out[10] = 1;
  out[11] = 0;
  return out;
}

/**
 * The driver side, as the virtio-mdev transport sets a device up: features, both rings in
 * `memory` through `dma`, DRIVER_OK.
 */
function bringUp(mdev: MdevDevice, memory: GuestMemory, dma: DmaMapOps) {
  const ops = vendorVfOps;
  ops.setStatus(mdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
  ops.setFeatures(mdev, FEATURES);
  ops.setStatus(mdev, RUNNING);
  const [rx, tx] = [VF_RX_QUEUE, VF_TX_QUEUE].map((idx) => {
    const vq = Virtqueue.create<number>({
      index: idx,
      num: 64,
      memory,
      dma,
      notify: () => {
        ops.kickVq(mdev, idx);
        return true;
      },
    })!;
    ops.setVqCb(mdev, idx, { callback: () => {}, private: null });
    ops.setVqNum(mdev, idx, vq.num);
    ops.setVqAddress(mdev, idx, vq.descAddr, vq.availAddr, vq.usedAddr);
    ops.setVqReady(mdev, idx, true);
    return vq;
  }) as [Virtqueue<number>, Virtqueue<number>];
  ops.setStatus(mdev, RUNNING | VIRTIO_CONFIG_S_DRIVER_OK);
  return { rx, tx };
}

/** Loops frames of `lens` bytes through the VF at IOVAs of `fe`, written into this mapping. */
async function loopFrames(mdev: MdevDevice, fe: Frontend, lens: number[]) {
  const { rx, tx } = bringUp(mdev, fe.view, offsetDmaOps(fe.alloc));
  expect(vendorVfOps.getVqReady(mdev, VF_TX_QUEUE)).toBe(true);
  const before = card!.stats(mdev)!.rx_packets;
  const rxBufs = lens.map(() => fe.alloc.alloc(2048)!);
  for (const [i, addr] of rxBufs.entries()) rx.addInbuf(addr, 2048, i);
  rx.kick();
  const frames = lens.map((len, k) => {
    // The second frame straddles the two entries of the map: the VF splits it there.
    const addr = k === 1 ? fe.map[1]!.iova - 700 : fe.alloc.alloc(len)!;
    const bytes = fe.view.view(addr, len);
    for (let i = 0; i < len; i++) bytes[i] = (i * 5 + k * 3 + len) & 0xff;
    return { addr, len };
  });
  for (const [k, f] of frames.entries()) tx.addOutbuf(f.addr, f.len, k);
  tx.kick();
  // The counters are published after the used entries of the run they count.
  expect(await until(() => card!.stats(mdev)!.rx_packets === before + lens.length)).toBe(true);
  for (const f of frames) {
    const used = rx.getBuf()!;
    expect(used.len).toBe(f.len);
    expect(fe.view.read(rxBufs[used.token]!, used.len)).toEqual(
      looped(fe.view.read(f.addr, f.len)),
    );
  }
  return { rx, tx };
}

describe('vendor_vf set_map: the IOMMU table in front of the VF (its own thread)', () => {
  it('loops frames through rings and buffers at IOVAs of a memfd map, byte for byte', async () => {
    load();
    const mdev = create();
    const fe = memfdFrontend();
    mdevVirtioSetMap(mdev, fe.map);
    await loopFrames(mdev, fe, [60, 1514, 300]);
    expect(sysfs.read(`${mdev.path}/stats/rx_packets`)).toBe('3\n');
    expect(vendorVfOps.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('breaks on a buffer outside the table (a fault, NEEDS_RESET) and serves on after a reset', async () => {
    vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    load();
    const mdev = create();
    const fe = memfdFrontend();
    mdevVirtioSetMap(mdev, fe.map);
    let configIrqs = 0;
    vendorVfOps.setConfigCb(mdev, { callback: () => configIrqs++, private: null });
    const { tx } = bringUp(mdev, fe.view, offsetDmaOps(fe.alloc));
    // Right after the table's end: no entry has it.
    tx.addOutbuf(IOVA + 2 * HALF, 64, 1);
    expect(() => tx.kick()).not.toThrow();
    const needsReset = () => (vendorVfOps.getStatus(mdev) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0;
    expect(await until(needsReset)).toBe(true);
    expect(await until(() => configIrqs === 1)).toBe(true);
    expect(card!.stats(mdev)).toMatchObject({ ring_errors: 1, tx_packets: 0 });
    // The VF lives on: after a reset the same table carries frames.
    vendorVfOps.setStatus(mdev, 0);
    await loopFrames(mdev, fe, [64, 200]);
    expect(card!.stats(mdev)!.ring_errors).toBe(1);
  });

  it('refuses a table while a queue is enabled (EBUSY); replaced and cleared after a reset', async () => {
    load();
    const mdev = create();
    const hostDma = mdev.dmaOps!;
    const first = memfdFrontend();
    const second = memfdFrontend(IOVA * 2);
    mdevVirtioSetMap(mdev, first.map);
    await loopFrames(mdev, first, [100]);
    expect(code(() => mdevVirtioSetMap(mdev, second.map))).toBe('EBUSY');
    expect(code(() => mdevVirtioSetMap(mdev, null))).toBe('EBUSY');
    vendorVfOps.setStatus(mdev, 0);

    // Replaced: the VF let go of its mapping of the first memfd and maps the second.
    mdevVirtioSetMap(mdev, second.map);
    expect([mappingsOf(first.name), mappingsOf(second.name)]).toEqual([1, 2]);
    // The first memfd's IOVAs no longer reach anything: its rings cannot be enabled.
    vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    bringUp(mdev, first.view, offsetDmaOps(first.alloc));
    expect(vendorVfOps.getVqReady(mdev, VF_RX_QUEUE)).toBe(false);
    vendorVfOps.setStatus(mdev, 0);
    await loopFrames(mdev, second, [60, 1514]);
    vendorVfOps.setStatus(mdev, 0);

    // Cleared: host memory again, through the card's own DMA ops.
    mdevVirtioSetMap(mdev, null);
    expect(mappingsOf(second.name)).toBe(1);
    const { rx, tx } = bringUp(mdev, ram.memory, hostDma);
    const buf = hostDma.alloc(2048, 16)!;
    rx.addInbuf(buf.dmaAddr, 2048, 1);
    rx.kick();
    const f = hostDma.alloc(60, 16)!;
    ram.memory.view(f.cpuAddr, 60).fill(0x5a);
    tx.addOutbuf(f.dmaAddr, 60, 1);
    tx.kick();
    expect(await until(() => card!.stats(mdev)!.rx_packets === 4)).toBe(true);
    expect(rx.getBuf()).toEqual({ token: 1, len: 60 });
    expect(ram.memory.read(buf.cpuAddr, 60)).toEqual(looped(ram.memory.read(f.cpuAddr, 60)));
  });

  it('leaks no fd and no mapping: removing the mdev powers the VF off and lets go of the table', async () => {
    load();
    const fe = memfdFrontend();
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 1]);
    const mdev = create();
    mdevVirtioSetMap(mdev, fe.map);
    // The VF's thread maps the fd (and keeps no fd of its own).
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 2]);
    await loopFrames(mdev, fe, [80]);
    // The same regions again: mapped anew, and the old mapping let go.
    vendorVfOps.setStatus(mdev, 0);
    mdevVirtioSetMap(mdev, fe.map);
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 2]);
    sysfs.write(`${mdev.path}/remove`, '1');
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([1, 1]);
    release(fe);
    cleanups.pop();
    expect([fdsOf(fe.name), mappingsOf(fe.name)]).toEqual([0, 0]);
  });

  it('refuses a region its thread cannot reach (neither shared nor with an fd): EINVAL', () => {
    load();
    const mdev = create();
    const region = { u8: new Uint8Array(new ArrayBuffer(HALF)) };
    const map = [{ iova: IOVA, size: HALF, region, offset: 0, perm: VHOST_ACCESS_RW }];
    expect(code(() => mdevVirtioSetMap(mdev, map))).toBe('EINVAL');
  });

  it('takes a SharedArrayBuffer region as is: frames loop back', async () => {
    load();
    const mdev = create();
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
    await loopFrames(mdev, fe, [60, 1000]);
  });

  it('answers EOPNOTSUPP naming @mdev/vhost-user when it cannot load, and serves on', async () => {
    load('@mdev/no-such-package');
    const mdev = create();
    const fe = memfdFrontend();
    let err: unknown;
    try {
      mdevVirtioSetMap(mdev, fe.map);
    } catch (e) {
      err = e;
    }
    expect(KernelError.is(err, 'EOPNOTSUPP')).toBe(true);
    expect(String((err as Error).message)).toContain('@mdev/vhost-user');
    expect(mappingsOf(fe.name)).toBe(1);
    // The VF still answers, and reaches host memory as before.
    const dma = mdev.dmaOps!;
    const { rx, tx } = bringUp(mdev, ram.memory, dma);
    const buf = dma.alloc(2048, 16)!;
    rx.addInbuf(buf.dmaAddr, 2048, 1);
    rx.kick();
    const f = dma.alloc(60, 16)!;
    tx.addOutbuf(f.dmaAddr, 60, 1);
    tx.kick();
    expect(await until(() => card!.stats(mdev)!.rx_packets === 1)).toBe(true);
  });
});

describe('VfEngine.setMap (the engine in the test thread)', () => {
  /** An engine over host memory, driven through its BAR, with a memfd frontend. */
  function engineWithTable() {
    const shared = allocVfShared();
    const host = new GuestMemory();
    host.addRegion(0x10_0000, new SharedArrayBuffer(1 << 20));
    const engine = new VfEngine(shared, host, {
      queueMax: 64,
      mac: Uint8Array.of(2, 0, 0, 0, 0, 1),
      mtu: 1500,
      budget: 64,
    });
    const bar = new VfBar(shared, () => engine.serviceMmio());
    const fe = memfdFrontend();
    const table = fe.map.map((e) => ({
      iova: e.iova,
      bytes: e.region.u8.subarray(e.offset, e.offset + e.size),
    }));
    return { engine, bar, fe, table };
  }

  /** Negotiates, enables both queues at IOVAs of `fe` and sets DRIVER_OK. */
  function enable(bar: VfBar, fe: Frontend) {
    bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 0);
    bar.write32(VIRTIO_PCI_COMMON_GF, Number(FEATURES & 0xffffffffn));
    bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 1);
    bar.write32(VIRTIO_PCI_COMMON_GF, Number(FEATURES >> 32n));
    bar.write8(VIRTIO_PCI_COMMON_STATUS, RUNNING);
    const [rx, tx] = [VF_RX_QUEUE, VF_TX_QUEUE].map((q) => {
      const vq = Virtqueue.create<number>({
        index: q,
        num: 64,
        memory: fe.view,
        dma: offsetDmaOps(fe.alloc),
        notify: () => true,
      })!;
      bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, q);
      bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, vq.num);
      bar.write32(VIRTIO_PCI_COMMON_Q_DESCLO, vq.descAddr);
      bar.write32(VIRTIO_PCI_COMMON_Q_AVAILLO, vq.availAddr);
      bar.write32(VIRTIO_PCI_COMMON_Q_USEDLO, vq.usedAddr);
      bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1);
      return vq;
    }) as [Virtqueue<number>, Virtqueue<number>];
    bar.write8(VIRTIO_PCI_COMMON_STATUS, RUNNING | VIRTIO_CONFIG_S_DRIVER_OK);
    return { rx, tx };
  }

  it('reads rings and buffers through the table; refuses a new one while a queue is enabled', () => {
    const { engine, bar, fe, table } = engineWithTable();
    expect(engine.setMap(table)).toBe(0);
    const { rx, tx } = enable(bar, fe);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
    expect(engine.setMap(null)).toBe(-16); // -EBUSY
    const buf = fe.alloc.alloc(2048)!;
    rx.addInbuf(buf, 2048, 1);
    const frame = HALF - 40 + IOVA; // straddles the two entries
    const sent = fe.view.view(frame, 100);
    for (let i = 0; i < 100; i++) sent[i] = (i * 3) & 0xff;
    tx.addOutbuf(frame, 100, 2);
    expect(engine.run()).toBe('idle');
    expect(rx.getBuf()).toEqual({ token: 1, len: 100 });
    expect(fe.view.read(buf, 100)).toEqual(looped(fe.view.read(frame, 100)));
    // Outside the table: a DMA fault, the device needs a reset.
    vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    tx.addOutbuf(IOVA + 2 * HALF, 64, 3);
    engine.run();
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(
      VIRTIO_CONFIG_S_NEEDS_RESET,
    );
    expect(engine.stats.ring_errors).toBe(1);
    // After a reset the table may go: the IOVAs then reach nothing, the queues do not come up.
    bar.write8(VIRTIO_PCI_COMMON_STATUS, 0);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0);
    expect(engine.setMap(null)).toBe(0);
    enable(bar, fe);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, VF_RX_QUEUE);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE)).toBe(0);
  });
});

// The VF's datapath with its engine in the test's thread: frames loop back, and a frame that
// finds no receive buffer waits for one for RX_GRACE_MS (the VF's FIFO) before it is dropped.
import {
  allocVfShared,
  RX_GRACE_MS,
  VF_FEATURES,
  VF_QUEUE_STATE,
  VF_QUEUE_STATE_STRIDE,
  VF_TX_QUEUE,
  VfBar,
  VfEngine,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_Q_AVAILHI,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCHI,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDHI,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
} from '@mdev/example-vendor-vf';
import { sleep } from '@mdev/test-utils';
import {
  featureSet,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_RING_F_EVENT_IDX,
} from '@mdev/virtio';
import {
  type AddressSpace,
  DmaAllocator,
  GuestMemory,
  offsetDmaOps,
  Virtqueue,
  VRING_USED_F_NO_NOTIFY,
} from '@mdev/virtio-ring';
import { describe, expect, it } from 'vitest';

const BASE = 0x10_0000;

const FEATURES = VF_FEATURES & ~featureSet(VIRTIO_RING_F_EVENT_IDX);

/**
 * A VF with both queues enabled after negotiating `features` (DRIVER_OK is checked only for the
 * default set). `onAccess` runs before each ring index access of the VF: the index words are
 * read and written only with `shared` true, and the engine reaches memory through this space.
 */
function runningVf(features = FEATURES, onAccess: () => void = () => {}) {
  const shared = allocVfShared();
  const memory = new GuestMemory();
  memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
  const alloc = new DmaAllocator(memory, BASE);
  const space: AddressSpace = {
    translate: (addr, len, out) => memory.translate(addr, len, out),
    get shared() {
      onAccess();
      return true;
    },
  };
  const engine = new VfEngine(shared, space, {
    queueMax: 64,
    mac: Uint8Array.of(2, 0, 0, 0, 0, 1),
    mtu: 1500,
    budget: 64,
  });
  const bar = new VfBar(shared, () => engine.serviceMmio());
  bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 0);
  bar.write32(VIRTIO_PCI_COMMON_GF, Number(features & 0xffffffffn));
  bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 1);
  bar.write32(VIRTIO_PCI_COMMON_GF, Number(features >> 32n));
  const status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
  bar.write8(VIRTIO_PCI_COMMON_STATUS, status | VIRTIO_CONFIG_S_FEATURES_OK);
  const [rx, tx] = [0, 1].map((q) => {
    const vq = Virtqueue.create<number>({
      index: q,
      num: 64,
      memory,
      dma: offsetDmaOps(alloc),
      notify: () => true,
    })!;
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, q);
    bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, vq.num);
    bar.write32(VIRTIO_PCI_COMMON_Q_DESCLO, vq.descAddr);
    bar.write32(VIRTIO_PCI_COMMON_Q_DESCHI, 0);
    bar.write32(VIRTIO_PCI_COMMON_Q_AVAILLO, vq.availAddr);
    bar.write32(VIRTIO_PCI_COMMON_Q_AVAILHI, 0);
    bar.write32(VIRTIO_PCI_COMMON_Q_USEDLO, vq.usedAddr);
    bar.write32(VIRTIO_PCI_COMMON_Q_USEDHI, 0);
    bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    return vq;
  }) as [Virtqueue<number>, Virtqueue<number>];
  bar.write8(
    VIRTIO_PCI_COMMON_STATUS,
    status | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK,
  );
  if (features === FEATURES) {
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS) & VIRTIO_CONFIG_S_DRIVER_OK).toBe(
      VIRTIO_CONFIG_S_DRIVER_OK,
    );
  }
  return { memory, alloc, engine, bar, rx, tx };
}

/** Posts `n` frames of 100 bytes and as many receive buffers. */
function post(alloc: DmaAllocator, rx: Virtqueue<number>, tx: Virtqueue<number>, n: number) {
  const frame = alloc.alloc(100)!;
  for (let i = 0; i < n; i++) {
    tx.addOutbuf(frame, 100, i);
    rx.addInbuf(alloc.alloc(256)!, 256, i);
  }
}

describe('the VF datapath', () => {
  it('holds a frame until a receive buffer comes, and drops it only after the grace', async () => {
    const { memory, alloc, engine, rx, tx } = runningVf();
    const frame = alloc.alloc(100)!;
    memory.view(frame, 100).fill(0x5a);
    for (let i = 0; i < 3; i++) tx.addOutbuf(frame, 100, i);
    // No receive buffer yet: nothing moves, nothing is dropped.
    expect(engine.run()).toBe('starved');
    expect(engine.stats.tx_dropped).toBe(0);
    expect(tx.getBuf()).toBeNull();
    // The driver posts buffers in time: the frames come back.
    const bufs = [0, 1, 2].map(() => alloc.alloc(256)!);
    for (const [i, b] of bufs.entries()) rx.addInbuf(b, 256, i);
    expect(engine.run()).toBe('idle');
    for (let i = 0; i < 3; i++) {
      expect(rx.getBuf()).toEqual({ token: i, len: 100 });
      expect(tx.getBuf()).toEqual({ token: i, len: 0 });
    }
    // Byte for byte, but for num_buffers (header bytes 10-11), which the VF sets to 1.
    const sent = memory.read(frame, 100);
    sent[10] = 1;
    sent[11] = 0;
    expect(memory.read(bufs[2]!, 100)).toEqual(sent);
    // The driver does not post any: after the grace the frames are dropped (and completed).
    for (let i = 0; i < 2; i++) tx.addOutbuf(frame, 100, 10 + i);
    expect(engine.run()).toBe('starved');
    await sleep(RX_GRACE_MS + 5);
    expect(engine.run()).toBe('idle');
    expect(engine.stats.tx_dropped).toBe(2);
    expect(engine.stats.tx_packets).toBe(5);
    expect([tx.getBuf()?.token, tx.getBuf()?.token]).toEqual([10, 11]);
  });

  it('sets num_buffers to 1 even when the header spans two receive buffers', () => {
    const { memory, alloc, engine, rx, tx } = runningVf();
    const frame = alloc.alloc(64)!;
    memory.view(frame, 64).fill(0xee);
    tx.addOutbuf(frame, 64, 7);
    // The receive chain: 11 bytes, then 53, so num_buffers (bytes 10-11) straddles the two.
    const a = alloc.alloc(11)!;
    const b = alloc.alloc(53)!;
    const addrs = Float64Array.of(a, b);
    expect(rx.addChain(addrs, Float64Array.of(11, 53), 0, 2, 1)).toBe(0);
    expect(engine.run()).toBe('idle');
    expect(rx.getBuf()).toEqual({ token: 1, len: 64 });
    expect(memory.read(a + 10, 1)).toEqual(Uint8Array.of(1));
    expect(memory.read(b, 1)).toEqual(Uint8Array.of(0));
    expect(memory.read(b + 1, 52)).toEqual(new Uint8Array(52).fill(0xee));
  });

  it('drops a frame larger than its receive buffer and gives the buffer back unused', () => {
    const { memory, alloc, engine, rx, tx } = runningVf();
    const big = alloc.alloc(200)!;
    memory.view(big, 200).fill(0x11);
    const small = alloc.alloc(100)!;
    memory.view(small, 100).fill(0x22);
    tx.addOutbuf(big, 200, 1);
    const buf = alloc.alloc(128)!;
    rx.addInbuf(buf, 128, 9);
    expect(engine.run()).toBe('idle');
    expect(tx.getBuf()).toEqual({ token: 1, len: 0 });
    expect(rx.getBuf()).toBeNull();
    expect(engine.stats.rx_truncated).toBe(1);
    // The buffer was given back: the next frame that fits lands in it.
    tx.addOutbuf(small, 100, 2);
    expect(engine.run()).toBe('idle');
    expect(rx.getBuf()).toEqual({ token: 9, len: 100 });
    expect(memory.read(buf + 12, 88)).toEqual(new Uint8Array(88).fill(0x22));
  });

  it('keeps a stopped queue where its ring stood: its state reads it, an enable resumes it', () => {
    const { alloc, engine, bar, rx, tx } = runningVf();
    post(alloc, rx, tx, 5);
    expect(engine.run()).toBe('idle');
    expect(engine.stats.tx_packets).toBe(5);
    // Stop the TX queue (queue_enable = 0, which the VF honours though 4.1.4.3.2 forbids it).
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, VF_TX_QUEUE);
    bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 0);
    const state = VF_QUEUE_STATE + VF_TX_QUEUE * VF_QUEUE_STATE_STRIDE;
    expect(bar.read16(state)).toBe(5);
    // Enabled again, it goes on from chain 5: the five frames are not sent a second time,
    // though receive buffers are there for them.
    for (let i = 0; i < 5; i++) rx.addInbuf(alloc.alloc(256)!, 256, 10 + i);
    bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE)).toBe(1);
    expect(engine.run()).toBe('idle');
    expect(engine.stats.tx_packets).toBe(5);
    // And the next frame completes at used index 6 (5 entries are the driver's already).
    for (let i = 0; i < 5; i++) expect(tx.getBuf()?.token).toBe(i);
    const frame = alloc.alloc(100)!;
    tx.addOutbuf(frame, 100, 99);
    expect(engine.run()).toBe('idle');
    expect(tx.getBuf()).toEqual({ token: 99, len: 0 });
    expect(engine.stats.tx_packets).toBe(6);
  });

  it('moves no frame while DRIVER_OK was refused for want of FEATURES_OK', () => {
    // Without ACCESS_PLATFORM the VF refuses the features; the driver sets DRIVER_OK anyway.
    const { alloc, engine, bar, rx, tx } = runningVf(
      FEATURES & ~featureSet(VIRTIO_F_ACCESS_PLATFORM),
    );
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(
      VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
    );
    post(alloc, rx, tx, 3);
    expect(engine.run()).toBe('idle');
    expect(engine.stats.tx_packets).toBe(0);
    expect(tx.getBuf()).toBeNull();
  });

  it('leaves its datapath after the budget when the driver flips avail->idx back and forth', () => {
    // A hostile driver shows one more chain exactly while the VF asks for kicks, and takes it
    // back while the VF polls: notify_enable sees a chain, getDesc never does. The driver gives
    // up after `limit` flips (so that a VF without the bound would come back at all).
    let hostile: (() => void) | null = null;
    const { memory, engine, tx } = runningVf(FEATURES, () => hostile?.());
    const availIdx = memory.view(tx.availAddr + 2, 2);
    const usedFlags = memory.view(tx.usedAddr, 2);
    const limit = 10_000;
    let flips = 0;
    hostile = () => {
      const polling = (usedFlags[0]! & VRING_USED_F_NO_NOTIFY) !== 0;
      const want = polling || flips >= limit ? 0 : 1;
      if (availIdx[0] !== want) {
        availIdx[0] = want;
        flips++;
      }
    };
    // The budget is 64 frames; the empty looks count against it.
    expect(engine.run()).toBe('more');
    expect(flips).toBeLessThanOrEqual(2 * 64 + 2);
    expect(engine.stats.tx_packets).toBe(0);
    expect(engine.stats.ring_errors).toBe(0);
    // The driver behaves again: the VF goes idle.
    hostile = null;
    availIdx[0] = 0;
    expect(engine.run()).toBe('idle');
  });
});

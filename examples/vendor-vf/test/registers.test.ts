// The VF's register file, driven through its BAR with the engine in the test's thread: layout,
// the select/window registers, feature negotiation, queue setup, config generation, reset.
import {
  allocVfShared,
  LINK_FIFO_ENTRIES,
  LINK_FIFO_HEAD,
  LINK_FIFO_TAIL,
  LINK_IRQ_INTX,
  LINK_IRQ_PENDING,
  VF_DEVICE_CFG,
  VF_FEATURES,
  VF_ISR,
  VF_NUM_QUEUES,
  VF_QUEUE_STATE,
  VfBar,
  VfEngine,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_COMMON_CFGGENERATION,
  VIRTIO_PCI_COMMON_DF,
  VIRTIO_PCI_COMMON_DFSELECT,
  VIRTIO_PCI_COMMON_GF,
  VIRTIO_PCI_COMMON_GFSELECT,
  VIRTIO_PCI_COMMON_MSIX,
  VIRTIO_PCI_COMMON_NUMQ,
  VIRTIO_PCI_COMMON_Q_AVAILHI,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCHI,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_ENABLE,
  VIRTIO_PCI_COMMON_Q_MSIX,
  VIRTIO_PCI_COMMON_Q_NOFF,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDHI,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  VIRTIO_PCI_COMMON_STATUS,
  VIRTIO_PCI_ISR_CONFIG,
} from '@mdev/example-vendor-vf';
import {
  featureSet,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MAC,
} from '@mdev/virtio';
import { GuestMemory, vringLayout } from '@mdev/virtio-ring';
import { describe, expect, it, vi } from 'vitest';

const MAC = Uint8Array.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
const BASE = 0x10_0000;

/**
 * A VF whose engine runs in this thread: a BAR read applies the posted writes first. The FIFO
 * counters start at `fifoStart` (as after that many posted writes).
 */
function makeVf(queueMax = 256, fifoStart = 0) {
  const shared = allocVfShared();
  const words = new Int32Array(shared.link);
  words[LINK_FIFO_HEAD] = words[LINK_FIFO_TAIL] = fifoStart;
  const memory = new GuestMemory();
  memory.addRegion(BASE, new SharedArrayBuffer(1 << 20));
  const engine = new VfEngine(shared, memory, { queueMax, mac: MAC, mtu: 1500, budget: 64 });
  const bar = new VfBar(shared, () => engine.serviceMmio());
  const link = new Int32Array(shared.link);
  return { shared, memory, engine, bar, link };
}

function readFeatures(bar: VfBar, sel: number, value: number): bigint {
  bar.write32(sel, 0);
  const lo = bar.read32(value);
  bar.write32(sel, 1);
  const hi = bar.read32(value);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

function writeDriverFeatures(bar: VfBar, f: bigint): void {
  bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 0);
  bar.write32(VIRTIO_PCI_COMMON_GF, Number(f & 0xffffffffn));
  bar.write32(VIRTIO_PCI_COMMON_GFSELECT, 1);
  bar.write32(VIRTIO_PCI_COMMON_GF, Number(f >> 32n));
}

/** Sets queue `q` up at a valid ring in memory; returns the areas. */
function programQueue(bar: VfBar, q: number, num: number, at: number) {
  const l = vringLayout(num, 4096);
  bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, q);
  bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, num);
  bar.write32(VIRTIO_PCI_COMMON_Q_DESCLO, at + l.desc);
  bar.write32(VIRTIO_PCI_COMMON_Q_DESCHI, 0);
  bar.write32(VIRTIO_PCI_COMMON_Q_AVAILLO, at + l.avail);
  bar.write32(VIRTIO_PCI_COMMON_Q_AVAILHI, 0);
  bar.write32(VIRTIO_PCI_COMMON_Q_USEDLO, at + l.used);
  bar.write32(VIRTIO_PCI_COMMON_Q_USEDHI, 0);
  return { desc: at + l.desc, avail: at + l.avail, used: at + l.used };
}

/**
 * Runs `fn` with process warnings captured instead of printed; returns what reads them (the
 * engine's warnings may come with the first BAR read after `fn`, so they are read until then).
 */
function captureWarnings(fn: () => void): () => string[] {
  const got: string[] = [];
  const spy = vi.spyOn(process, 'emitWarning').mockImplementation((w) => {
    got.push(typeof w === 'string' ? w : w.message);
  });
  try {
    fn();
  } catch (err) {
    spy.mockRestore();
    throw err;
  }
  return () => {
    spy.mockRestore();
    return got;
  };
}

describe('the VF register file (virtio 1.2, 4.1.4.3)', () => {
  it('powers on with its reset values: queue count, sizes, no vectors, status 0, the net config', () => {
    const { bar } = makeVf(512);
    expect(bar.read16(VIRTIO_PCI_COMMON_NUMQ)).toBe(VF_NUM_QUEUES);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0);
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
    for (let q = 0; q < VF_NUM_QUEUES; q++) {
      bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, q);
      expect(bar.read16(VIRTIO_PCI_COMMON_Q_SELECT)).toBe(q);
      expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(512);
      expect(bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE)).toBe(0);
      expect(bar.read16(VIRTIO_PCI_COMMON_Q_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
      expect(bar.read16(VIRTIO_PCI_COMMON_Q_NOFF)).toBe(q);
    }
    // "queue_size ... 0 if the queue is unavailable".
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, VF_NUM_QUEUES);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(0);
    // struct virtio_net_config, little-endian: mac, status (LINK_UP), max_virtqueue_pairs, mtu.
    const cfg = Array.from({ length: 12 }, (_, i) => bar.read8(VF_DEVICE_CFG + i));
    expect(cfg).toEqual([...MAC, 1, 0, 1, 0, 0xdc, 0x05]);
  });

  it('shows the device features 32 bits at a time through device_feature_select', () => {
    const { bar } = makeVf();
    expect(readFeatures(bar, VIRTIO_PCI_COMMON_DFSELECT, VIRTIO_PCI_COMMON_DF)).toBe(VF_FEATURES);
    bar.write32(VIRTIO_PCI_COMMON_DFSELECT, 0);
    expect(bar.read32(VIRTIO_PCI_COMMON_DF)).toBe(Number(VF_FEATURES & 0xffffffffn));
    bar.write32(VIRTIO_PCI_COMMON_DFSELECT, 2);
    expect(bar.read32(VIRTIO_PCI_COMMON_DFSELECT)).toBe(2);
    expect(bar.read32(VIRTIO_PCI_COMMON_DF)).toBe(0);
    // device_feature is read-only.
    bar.write32(VIRTIO_PCI_COMMON_DFSELECT, 0);
    bar.write32(VIRTIO_PCI_COMMON_DF, 0);
    expect(bar.read32(VIRTIO_PCI_COMMON_DF)).toBe(Number(VF_FEATURES & 0xffffffffn));
  });

  it('takes the driver features in two halves and keeps FEATURES_OK only for a set it supports', () => {
    const { bar } = makeVf();
    const accepted = VF_FEATURES & ~featureSet(VIRTIO_NET_F_MAC);
    writeDriverFeatures(bar, accepted);
    expect(readFeatures(bar, VIRTIO_PCI_COMMON_GFSELECT, VIRTIO_PCI_COMMON_GF)).toBe(accepted);
    const status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    bar.write8(VIRTIO_PCI_COMMON_STATUS, status | VIRTIO_CONFIG_S_FEATURES_OK);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(status | VIRTIO_CONFIG_S_FEATURES_OK);
    // After FEATURES_OK the driver features no longer change.
    writeDriverFeatures(bar, 0n);
    expect(readFeatures(bar, VIRTIO_PCI_COMMON_GFSELECT, VIRTIO_PCI_COMMON_GF)).toBe(accepted);

    // Without ACCESS_PLATFORM (the VF sits behind the IOMMU), or with a bit it does not
    // offer, the VF leaves FEATURES_OK clear: "device refuses features".
    for (const f of [featureSet(VIRTIO_F_VERSION_1), VF_FEATURES | (1n << 40n)]) {
      bar.write8(VIRTIO_PCI_COMMON_STATUS, 0);
      writeDriverFeatures(bar, f);
      bar.write8(VIRTIO_PCI_COMMON_STATUS, status | VIRTIO_CONFIG_S_FEATURES_OK);
      expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(status);
    }
  });

  it('refuses DRIVER_OK without FEATURES_OK, and lets no status write but 0 clear a bit', () => {
    // 3.1.1: DRIVER_OK (step 8) follows an accepted FEATURES_OK (steps 5-6); 2.1.2: "The
    // driver MUST NOT clear a device status bit".
    const { bar } = makeVf();
    const status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
    writeDriverFeatures(bar, featureSet(VIRTIO_F_VERSION_1)); // no ACCESS_PLATFORM: refused
    bar.write8(VIRTIO_PCI_COMMON_STATUS, status | VIRTIO_CONFIG_S_FEATURES_OK);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, status | VIRTIO_CONFIG_S_DRIVER_OK);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(status);
    // Both at once, with features refused: neither is kept.
    bar.write8(VIRTIO_PCI_COMMON_STATUS, 0x0f);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(status);

    bar.write8(VIRTIO_PCI_COMMON_STATUS, 0);
    writeDriverFeatures(bar, VF_FEATURES);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, status | VIRTIO_CONFIG_S_FEATURES_OK);
    // Writes with fewer bits add nothing and take nothing away.
    bar.write8(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_DRIVER_OK);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0x0f);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0x0f);
    // NEEDS_RESET is the device's: a driver's write of it is ignored.
    bar.write8(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0x0f);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, 0);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0);
  });

  it('keeps each queue behind queue_select, and ignores queue writes while a queue runs', () => {
    const { bar } = makeVf();
    writeDriverFeatures(bar, VF_FEATURES);
    const a = programQueue(bar, 0, 128, BASE);
    const b = programQueue(bar, 1, 64, BASE + 0x10000);
    bar.write16(VIRTIO_PCI_COMMON_Q_MSIX, 2);
    for (const [q, num, areas, vector] of [
      [0, 128, a, VIRTIO_MSI_NO_VECTOR],
      [1, 64, b, 2],
    ] as const) {
      bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, q);
      expect([
        bar.read16(VIRTIO_PCI_COMMON_Q_SIZE),
        bar.read32(VIRTIO_PCI_COMMON_Q_DESCLO),
        bar.read32(VIRTIO_PCI_COMMON_Q_DESCHI),
        bar.read32(VIRTIO_PCI_COMMON_Q_AVAILLO),
        bar.read32(VIRTIO_PCI_COMMON_Q_AVAILHI),
        bar.read32(VIRTIO_PCI_COMMON_Q_USEDLO),
        bar.read32(VIRTIO_PCI_COMMON_Q_USEDHI),
        bar.read16(VIRTIO_PCI_COMMON_Q_MSIX),
      ]).toEqual([num, areas.desc, 0, areas.avail, 0, areas.used, 0, vector]);
    }
    // A vector the VF does not have reads back as NO_VECTOR.
    bar.write16(VIRTIO_PCI_COMMON_Q_MSIX, 7);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
    bar.write16(VIRTIO_PCI_COMMON_MSIX, 0);
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(0);

    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 1);
    bar.write16(VIRTIO_PCI_COMMON_Q_MSIX, 2);
    bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE)).toBe(1);
    bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, 32);
    bar.write32(VIRTIO_PCI_COMMON_Q_DESCLO, 0x1234);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(64);
    expect(bar.read32(VIRTIO_PCI_COMMON_Q_DESCLO)).toBe(b.desc);
    // A vector for a running queue is a mapping that failed: NO_VECTOR (4.1.5.1.2.1), and so
    // the queue's interrupts go by INTx, as the register says.
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_MSIX)).toBe(2);
    bar.write16(VIRTIO_PCI_COMMON_Q_MSIX, 1);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 0);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 1);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
  });

  it('takes a queue_size only if it is a power of two no larger than the maximum', () => {
    // 4.1.4.3: "queue_size ... the driver can write a smaller value"; 2.7: a power of 2.
    const { bar } = makeVf(256);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 1);
    bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, 64);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(64);
    for (const bad of [1000, 512, 48, 0, 0xffff]) {
      bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, bad);
      expect({ bad, size: bar.read16(VIRTIO_PCI_COMMON_Q_SIZE) }).toEqual({ bad, size: 64 });
    }
    for (const good of [1, 2, 256]) {
      bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, good);
      expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(good);
    }
  });

  it('holds a queue state written before enabling, and refuses it while the queue runs', () => {
    const { bar } = makeVf();
    writeDriverFeatures(bar, VF_FEATURES);
    programQueue(bar, 0, 64, BASE);
    bar.write16(VF_QUEUE_STATE, 1000);
    expect(bar.read16(VF_QUEUE_STATE)).toBe(1000);
    bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    expect(bar.read16(VF_QUEUE_STATE)).toBe(1000);
    bar.write16(VF_QUEUE_STATE, 7);
    expect(bar.read16(VF_QUEUE_STATE)).toBe(1000);
  });

  it('sets DEVICE_NEEDS_RESET when a queue is enabled on rings it cannot reach', () => {
    const { bar } = makeVf();
    writeDriverFeatures(bar, VF_FEATURES);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    programQueue(bar, 0, 64, 0x7000_0000); // no host memory there
    const warned = captureWarnings(() => bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1));
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE)).toBe(0);
    expect(warned()).toEqual([
      'vendor_vf: queue 0 cannot be enabled (rings out of reach); the device needs a reset',
    ]);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(
      VIRTIO_CONFIG_S_NEEDS_RESET,
    );
  });

  it('bumps config_generation when the configuration changes and raises a config interrupt', () => {
    const { bar, engine, link } = makeVf();
    bar.write16(VIRTIO_PCI_COMMON_MSIX, 0);
    const gen = bar.read8(VIRTIO_PCI_COMMON_CFGGENERATION);
    engine.setLink(false);
    expect(bar.read8(VIRTIO_PCI_COMMON_CFGGENERATION)).toBe((gen + 1) & 0xff);
    expect(bar.read16(VF_DEVICE_CFG + 6)).toBe(0);
    expect(Atomics.exchange(link, LINK_IRQ_PENDING, 0)).toBe(1 << 0);
    // The same state again is no change: no new generation.
    engine.setLink(false);
    expect(bar.read8(VIRTIO_PCI_COMMON_CFGGENERATION)).toBe((gen + 1) & 0xff);
    // Without a vector the VF signals INTx and says why in the ISR byte, which a read clears.
    bar.write16(VIRTIO_PCI_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR); // flushes the write
    engine.setLink(true);
    expect(bar.read8(VIRTIO_PCI_COMMON_CFGGENERATION)).toBe((gen + 2) & 0xff);
    expect(bar.read16(VF_DEVICE_CFG + 6)).toBe(1);
    expect(Atomics.exchange(link, LINK_IRQ_PENDING, 0)).toBe(LINK_IRQ_INTX);
    expect(bar.readIsr()).toBe(VIRTIO_PCI_ISR_CONFIG);
    expect(bar.readIsr()).toBe(0);
    // A plain ioread8 of the ISR, as virtio-pci's vp_interrupt does it, clears it too (4.1.4.5.1).
    engine.setLink(false);
    expect(bar.read8(VF_ISR)).toBe(VIRTIO_PCI_ISR_CONFIG);
    expect(bar.read8(VF_ISR)).toBe(0);
  });

  it('resets everything when device_status is written 0', () => {
    const { bar } = makeVf();
    writeDriverFeatures(bar, VF_FEATURES);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, 0x0b);
    bar.write16(VIRTIO_PCI_COMMON_MSIX, 0);
    programQueue(bar, 0, 64, BASE);
    bar.write16(VIRTIO_PCI_COMMON_Q_MSIX, 1);
    bar.write16(VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 1);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, 0);
    expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SELECT)).toBe(0);
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(readFeatures(bar, VIRTIO_PCI_COMMON_GFSELECT, VIRTIO_PCI_COMMON_GF)).toBe(0n);
    expect([
      bar.read16(VIRTIO_PCI_COMMON_Q_ENABLE),
      bar.read16(VIRTIO_PCI_COMMON_Q_SIZE),
      bar.read16(VIRTIO_PCI_COMMON_Q_MSIX),
      bar.read32(VIRTIO_PCI_COMMON_Q_DESCLO),
      bar.read16(VF_QUEUE_STATE),
    ]).toEqual([0, 256, VIRTIO_MSI_NO_VECTOR, 0, 0]);
  });

  it('applies posted writes in order, however many are queued before a read', () => {
    const { bar } = makeVf();
    bar.write16(VIRTIO_PCI_COMMON_MSIX, 1); // lost if a later write took its slot first
    const n = LINK_FIFO_ENTRIES * 3 + 5;
    for (let i = 0; i < n; i++) {
      bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, i & 1);
      bar.write16(VIRTIO_PCI_COMMON_Q_SIZE, 2 << (i % 8));
    }
    const last = (i: number) => 2 << (i % 8);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(last(n - 1));
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, (n - 2) & 1);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(last(n - 2));
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(1);
  });

  it('loses no posted write when the FIFO counters wrap past 2^31', () => {
    // A slot is a counter masked by the FIFO's length, which is a power of two for that.
    expect(LINK_FIFO_ENTRIES & (LINK_FIFO_ENTRIES - 1)).toBe(0);
    // The counters are int32: start them just short of the wrap, as after 2^31 writes. The
    // writes below fill the FIFO across the wrap before the engine applies any of them.
    const { bar, link } = makeVf(256, 2 ** 31 - 100);
    // The first write: should a later one take its slot before the engine applied it, it is
    // gone (the writes after it would all be applied, in order, from their slots).
    bar.write16(VIRTIO_PCI_COMMON_MSIX, 1);
    const n = LINK_FIFO_ENTRIES * 3 + 5;
    for (let i = 0; i < n; i++) {
      bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, i & 1);
      bar.write32(VIRTIO_PCI_COMMON_Q_DESCLO, i);
    }
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(1);
    expect(bar.read32(VIRTIO_PCI_COMMON_Q_DESCLO)).toBe(n - 1);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, (n - 2) & 1);
    expect(bar.read32(VIRTIO_PCI_COMMON_Q_DESCLO)).toBe(n - 2);
    // The counters did go round.
    expect(Atomics.load(link, LINK_FIFO_TAIL)).toBeLessThan(0);
    expect(Atomics.load(link, LINK_FIFO_HEAD)).toBe(Atomics.load(link, LINK_FIFO_TAIL));
  });

  it('refuses accesses outside the BAR or not aligned to their width', () => {
    const { bar } = makeVf();
    expect(() => bar.read32(0x1000)).toThrow(RangeError);
    expect(() => bar.write16(VIRTIO_PCI_COMMON_STATUS + 1, 0)).toThrow(RangeError);
    expect(() => bar.read32(VIRTIO_PCI_COMMON_Q_SIZE - 2)).toThrow(RangeError);
  });

  it('reads all ones once the VF stops answering, like a removed PCI function', () => {
    const shared = allocVfShared();
    const bar = new VfBar(shared, null, 50);
    bar.write8(VIRTIO_PCI_COMMON_STATUS, 1); // nobody applies it
    const warned = captureWarnings(() => expect(bar.read8(VIRTIO_PCI_COMMON_STATUS)).toBe(0xff));
    expect(warned()).toEqual([
      'vendor_vf: the VF did not complete posted writes; it is treated as gone',
    ]);
    expect(bar.read32(VIRTIO_PCI_COMMON_DF)).toBe(0xffffffff);
    expect(bar.gone).toBe(true);
  });
});

// The parent driver on the mediated virtio bus, its ops called the way the virtio-mdev transport
// calls them (drivers/virtio/virtio_mdev.c), each checked against the VF's registers.
import { sysfs } from '@mdev/driver-core';
import {
  VENDOR_VF_TYPE_PATH,
  type VendorVfCard,
  VF_DEVICE_CFG,
  VF_FEATURES,
  VIRTIO_MDEV_DEVICE_API_STRING,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_COMMON_MSIX,
  VIRTIO_PCI_COMMON_Q_AVAILHI,
  VIRTIO_PCI_COMMON_Q_AVAILLO,
  VIRTIO_PCI_COMMON_Q_DESCHI,
  VIRTIO_PCI_COMMON_Q_DESCLO,
  VIRTIO_PCI_COMMON_Q_MSIX,
  VIRTIO_PCI_COMMON_Q_SELECT,
  VIRTIO_PCI_COMMON_Q_SIZE,
  VIRTIO_PCI_COMMON_Q_USEDHI,
  VIRTIO_PCI_COMMON_Q_USEDLO,
  vendorVfInit,
  vendorVfOps,
} from '@mdev/example-vendor-vf';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { MDEV_VIRTIO_MANDATORY_OPS, mdevVirtioExit } from '@mdev/mdev-virtio';
import { until } from '@mdev/test-utils';
import {
  HostRam,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_ID_NET,
} from '@mdev/virtio';
import { vringLayout } from '@mdev/virtio-ring';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const UUID = '6b1e8a8e-2f43-4d1c-9a5e-0c7bdfe0a001';
const UUID2 = '6b1e8a8e-2f43-4d1c-9a5e-0c7bdfe0a002';
let card: VendorVfCard;
let ram: HostRam;

function create(uuid: string): MdevDevice {
  sysfs.write(`${VENDOR_VF_TYPE_PATH}/create`, `${uuid}\n`);
  return mdevDevices().find((m) => m.uuid === uuid)!;
}

/** The messages of process warnings emitted while `fn` runs. */
function warnings(fn: () => void): string[] {
  const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  try {
    fn();
    return spy.mock.calls.map((c) => String(c[0]));
  } finally {
    spy.mockRestore();
  }
}

beforeEach(() => {
  ram = new HostRam({ regionSize: 1 << 20 });
  card = vendorVfInit({ memory: ram.memory, dma: ram.dma, vfs: 2, queueSize: 512 });
});
afterEach(() => {
  card.exit();
  mdevVirtioExit();
});

describe('the vendor_vf parent driver', () => {
  it('registers the type with its attributes and gives each mdev a VF until none is left', () => {
    const read = (a: string) => sysfs.read(`${VENDOR_VF_TYPE_PATH}/${a}`);
    expect([read('name'), read('device_api'), read('available_instances')]).toEqual([
      'virtio-net VF\n',
      `${VIRTIO_MDEV_DEVICE_API_STRING}\n`,
      '2\n',
    ]);
    const mdev = create(UUID);
    expect(read('available_instances')).toBe('1\n');
    create(UUID2);
    expect(read('available_instances')).toBe('0\n');
    expect(() =>
      sysfs.write(`${VENDOR_VF_TYPE_PATH}/create`, '6b1e8a8e-2f43-4d1c-9a5e-0c7bdfe0a003'),
    ).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    expect(sysfs.read(`${mdev.path}/vf/device`)).toBe('0x1041\n');
    expect(sysfs.read(`${mdev.path}/stats/tx_packets`)).toBe('0\n');
    sysfs.write(`${mdev.path}/remove`, '1');
    expect(read('available_instances')).toBe('1\n');
  });

  it('has every mdev_virtio op, get_generation included', () => {
    for (const op of [...MDEV_VIRTIO_MANDATORY_OPS, 'getGeneration'] as const) {
      expect(typeof vendorVfOps[op]).toBe('function');
    }
  });

  it('answers the identity ops from the VF: device id, vendor, queue size, features', () => {
    const mdev = create(UUID);
    const vf = card.instanceOf(mdev).vf;
    expect(vendorVfOps.getDeviceId(mdev)).toBe(VIRTIO_ID_NET);
    expect(vendorVfOps.getVendorId(mdev)).toBe(vf.pci.subsystemVendor);
    expect(vendorVfOps.getVqNumMax(mdev)).toBe(512);
    expect(vendorVfOps.getVqAlign(mdev)).toBe(4096);
    expect(vendorVfOps.getFeatures(mdev)).toBe(VF_FEATURES);
  });

  it('programs a queue through queue_select and its registers, and rings its doorbell', async () => {
    const mdev = create(UUID);
    const { bar } = card.instanceOf(mdev);
    // Ring memory comes through the mdev's DMA ops, as the transport allocates it: the mapping
    // makes the memory reachable by the VF.
    const ring = mdev.dmaOps!.alloc(0x4000, 4096)!.dmaAddr;
    const l = vringLayout(128, 4096);
    vendorVfOps.setFeatures(mdev, VF_FEATURES);
    vendorVfOps.setStatus(mdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    vendorVfOps.setStatus(mdev, 0x0b);
    expect(vendorVfOps.getStatus(mdev) & VIRTIO_CONFIG_S_FEATURES_OK).toBe(
      VIRTIO_CONFIG_S_FEATURES_OK,
    );

    expect(vendorVfOps.getVqReady(mdev, 1)).toBe(false);
    vendorVfOps.setVqCb(mdev, 1, { callback: () => {}, private: null });
    vendorVfOps.setVqNum(mdev, 1, 128);
    vendorVfOps.setVqAddress(mdev, 1, ring + l.desc, ring + l.avail, ring + l.used);
    vendorVfOps.setVqState(mdev, 1, 77);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 1);
    expect([
      bar.read16(VIRTIO_PCI_COMMON_Q_SIZE),
      bar.read32(VIRTIO_PCI_COMMON_Q_DESCLO),
      bar.read32(VIRTIO_PCI_COMMON_Q_DESCHI),
      bar.read32(VIRTIO_PCI_COMMON_Q_AVAILLO),
      bar.read32(VIRTIO_PCI_COMMON_Q_AVAILHI),
      bar.read32(VIRTIO_PCI_COMMON_Q_USEDLO),
      bar.read32(VIRTIO_PCI_COMMON_Q_USEDHI),
      bar.read16(VIRTIO_PCI_COMMON_Q_MSIX),
    ]).toEqual([128, ring + l.desc, 0, ring + l.avail, 0, ring + l.used, 0, 2]);
    expect(vendorVfOps.getVqState(mdev, 1)).toBe(77);

    vendorVfOps.setVqReady(mdev, 1, true);
    expect(vendorVfOps.getVqReady(mdev, 1)).toBe(true);
    expect(vendorVfOps.getVqReady(mdev, 0)).toBe(false);
    // A running queue's state is the VF's: EBUSY.
    expect(() => vendorVfOps.setVqState(mdev, 1, 5)).toThrow(
      expect.objectContaining({ code: 'EBUSY' }),
    );
    // The doorbell write reaches the VF (it counts kicks). Doorbells are posted writes: the VF
    // applies them in its own time, so wait for the count rather than read it at once.
    vendorVfOps.kickVq(mdev, 1);
    vendorVfOps.kickVq(mdev, 1);
    await until(() => card.stats(mdev)?.kicks === 2, 10_000);
    expect(card.stats(mdev)?.kicks).toBe(2);

    vendorVfOps.setConfigCb(mdev, { callback: () => {}, private: null });
    expect(bar.read16(VIRTIO_PCI_COMMON_MSIX)).toBe(0);

    // Reset: status reads back 0 once the write returns, and every queue is down.
    vendorVfOps.setStatus(mdev, 0);
    expect(vendorVfOps.getStatus(mdev)).toBe(0);
    expect(vendorVfOps.getVqReady(mdev, 1)).toBe(false);
    expect(vendorVfOps.getVqState(mdev, 1)).toBe(0);
  });

  it('takes only a byte as status: any other value reaches no register and stops no queue', () => {
    const mdev = create(UUID);
    const ring = mdev.dmaOps!.alloc(0x4000, 4096)!.dmaAddr;
    const l = vringLayout(128, 4096);
    vendorVfOps.setFeatures(mdev, VF_FEATURES);
    vendorVfOps.setStatus(mdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    vendorVfOps.setStatus(mdev, 0x0b);
    vendorVfOps.setVqNum(mdev, 1, 128);
    vendorVfOps.setVqAddress(mdev, 1, ring + l.desc, ring + l.avail, ring + l.used);
    vendorVfOps.setVqState(mdev, 1, 9);
    vendorVfOps.setVqReady(mdev, 1, true);
    const status = vendorVfOps.getStatus(mdev);
    expect(status & VIRTIO_CONFIG_S_FEATURES_OK).toBe(VIRTIO_CONFIG_S_FEATURES_OK);
    for (const bad of [2 ** 32, 256, 0x100 | status, -1, 0.5, Number.NaN]) {
      vendorVfOps.setStatus(mdev, bad);
      expect(vendorVfOps.getStatus(mdev)).toBe(status);
      expect(vendorVfOps.getVqReady(mdev, 1)).toBe(true);
      expect(vendorVfOps.getVqState(mdev, 1)).toBe(9);
    }
    vendorVfOps.setStatus(mdev, 0);
    expect(vendorVfOps.getStatus(mdev)).toBe(0);
    expect(vendorVfOps.getVqReady(mdev, 1)).toBe(false);
  });

  it('refuses addresses that are not 64-bit host addresses with EINVAL', () => {
    const mdev = create(UUID);
    for (const bad of [-1, 2 ** 53, 1.5]) {
      expect(() => vendorVfOps.setVqAddress(mdev, 0, bad, 0, 0)).toThrow(
        expect.objectContaining({ code: 'EINVAL' }),
      );
    }
    expect(() => vendorVfOps.setVqNum(mdev, 5, 64)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
  });

  it('refuses a queue size the VF ignored (EINVAL), or any while the queue runs (EBUSY)', () => {
    const mdev = create(UUID);
    const { bar } = card.instanceOf(mdev);
    const ring = mdev.dmaOps!.alloc(0x4000, 4096)!.dmaAddr;
    vendorVfOps.setVqNum(mdev, 0, 128);
    // Not a power of two, larger than the maximum (512), 0: the VF keeps 128 (4.1.4.3).
    for (const bad of [1000, 1024, 0, 48, 128.5]) {
      expect(() => vendorVfOps.setVqNum(mdev, 0, bad)).toThrow(
        expect.objectContaining({ code: 'EINVAL' }),
      );
    }
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 0);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_SIZE)).toBe(128);
    const l = vringLayout(128, 4096);
    vendorVfOps.setVqAddress(mdev, 0, ring + l.desc, ring + l.avail, ring + l.used);
    vendorVfOps.setVqReady(mdev, 0, true);
    expect(() => vendorVfOps.setVqNum(mdev, 0, 64)).toThrow(
      expect.objectContaining({ code: 'EBUSY' }),
    );
    vendorVfOps.setStatus(mdev, 0);
  });

  it('answers for a queue the VF does not have as virtio-pci does: not ready, state 0', () => {
    const mdev = create(UUID);
    for (const idx of [2, 100, -1]) {
      expect(vendorVfOps.getVqReady(mdev, idx)).toBe(false);
      expect(vendorVfOps.getVqState(mdev, idx)).toBe(0);
      // Stopping it, as the transport does when it unwinds a failed setup, has nothing to do.
      vendorVfOps.setVqReady(mdev, idx, false);
      vendorVfOps.setVqCb(mdev, idx, null);
      // Setting it up is refused.
      expect(() => vendorVfOps.setVqCb(mdev, idx, { callback: () => {}, private: null })).toThrow(
        expect.objectContaining({ code: 'EINVAL' }),
      );
    }
  });

  it('warns when the VF refuses a queue vector: it reads NO_VECTOR and the VF uses INTx', () => {
    const mdev = create(UUID);
    const { bar } = card.instanceOf(mdev);
    const ring = mdev.dmaOps!.alloc(0x4000, 4096)!.dmaAddr;
    const l = vringLayout(128, 4096);
    const cb = { callback: () => {}, private: null };
    expect(warnings(() => vendorVfOps.setVqCb(mdev, 1, cb))).toEqual([]);
    vendorVfOps.setVqNum(mdev, 1, 128);
    vendorVfOps.setVqAddress(mdev, 1, ring + l.desc, ring + l.avail, ring + l.used);
    vendorVfOps.setVqReady(mdev, 1, true);
    // A running queue's vector cannot change (4.1.4.3.2): the mapping fails (4.1.5.1.2.1).
    const got = warnings(() => vendorVfOps.setVqCb(mdev, 1, cb));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatch(/vector 2/);
    bar.write16(VIRTIO_PCI_COMMON_Q_SELECT, 1);
    expect(bar.read16(VIRTIO_PCI_COMMON_Q_MSIX)).toBe(VIRTIO_MSI_NO_VECTOR);
    vendorVfOps.setStatus(mdev, 0);
  });

  it('keeps taking interrupts after a callback threw, and reports it as a warning', async () => {
    const mdev = create(UUID);
    const { vf } = card.instanceOf(mdev);
    let calls = 0;
    const seen: string[] = [];
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation((w) => {
      seen.push(String(w));
    });
    try {
      vendorVfOps.setConfigCb(mdev, {
        callback: () => {
          calls++;
          throw new Error('a driver bug');
        },
        private: null,
      });
      // Each link change is a config interrupt; the second one only comes if the first
      // callback's exception did not end the VF's interrupt loop.
      vf.setLink(false);
      expect(await until(() => calls === 1, 10_000)).toBe(true);
      vf.setLink(true);
      expect(await until(() => calls === 2, 10_000)).toBe(true);
      expect(seen.filter((w) => w.includes('a driver bug'))).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('reads the device configuration byte by byte, zeros past its end, and ignores writes', () => {
    const mdev = create(UUID);
    const { bar } = card.instanceOf(mdev);
    const mac = Array.from({ length: 6 }, (_, i) => bar.read8(VF_DEVICE_CFG + i));
    const buf = new Uint8Array(16).fill(0xaa);
    vendorVfOps.getConfig(mdev, 0, buf);
    expect([...buf]).toEqual([...mac, 1, 0, 1, 0, 0xdc, 0x05, 0, 0, 0, 0]);
    vendorVfOps.setConfig(mdev, 0, new Uint8Array(6));
    const again = new Uint8Array(6);
    vendorVfOps.getConfig(mdev, 0, again);
    expect([...again]).toEqual(mac);
    const gen = vendorVfOps.getGeneration!(mdev);
    card.instanceOf(mdev).vf.setLink(false);
    const deadline = Date.now() + 5000;
    while (vendorVfOps.getGeneration!(mdev) === gen && Date.now() < deadline) {}
    expect(vendorVfOps.getGeneration!(mdev)).toBe((gen + 1) & 0xff);
    const status = new Uint8Array(2);
    vendorVfOps.getConfig(mdev, 6, status);
    expect([...status]).toEqual([0, 0]);
  });
});

import { Class, Device, type DmaMapOps, KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDeviceCreate, mdevDeviceRemove, mdevDevices } from '@mdev/mdev-core';
import {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  type MdevVirtioOps,
  mdevVirtioExit,
  mdevVirtioRegisterDevice,
  mdevVirtioSetClassId,
  mdevVirtioSetOps,
  mdevVirtioUnregisterDevice,
} from '@mdev/mdev-virtio';
import {
  featureSet,
  hostRam,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
} from '@mdev/virtio';
import { registerTestDriver } from '@mdev/virtio/testing';
import type { VirtqueueLike } from '@mdev/virtio-ring';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { VirtioMdevDevice, virtioMdevExit, virtioMdevInit } from './index';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** The test driver, unregistered after the test. */
function testNetDriver(names?: (string | null)[]) {
  const driver = registerTestDriver(names);
  cleanups.push(driver.unregister);
  return driver.bound;
}

describe('transport errors', () => {
  /**
   * A vendor parent whose ops record every call in `trace` (op name and arguments). `dma`, when
   * given, is the mdev's own DMA mapping (an IOMMU view of host memory).
   */
  function vendor(over: Partial<MdevVirtioOps>, dma?: DmaMapOps) {
    virtioMdevInit();
    const cls = new Class('vend');
    cls.register();
    const dev = new Device({ name: 'vend', class: cls });
    dev.add();
    const ready = new Set<number>();
    const trace: string[] = [];
    let status = 0;
    const base: MdevVirtioOps = {
      setVqAddress() {},
      setVqNum() {},
      kickVq() {},
      setVqCb() {},
      setVqReady: (_m, idx, r) => void (r ? ready.add(idx) : ready.delete(idx)),
      getVqReady: (_m, idx) => ready.has(idx),
      setVqState() {},
      getVqState: () => 0,
      getVqAlign: () => 4096,
      getFeatures: () => featureSet(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM),
      setFeatures() {},
      setConfigCb() {},
      getVqNumMax: () => 64,
      getDeviceId: () => 1,
      getVendorId: () => 0,
      getStatus: () => status,
      setStatus: (_m, s) => {
        status = s;
      },
      getConfig: (_m, _o, buf) => buf.fill(0),
      setConfig() {},
      ...over,
    };
    const ops = Object.fromEntries(
      Object.entries(base).map(([name, fn]) => [
        name,
        (mdev: MdevDevice, ...args: unknown[]) => {
          const shown = args.map((a) =>
            a && typeof a === 'object' ? (a === null ? 'null' : 'cb') : String(a),
          );
          trace.push([name, ...shown].join(' '));
          return (fn as (m: MdevDevice, ...a: unknown[]) => unknown)(mdev, ...args);
        },
      ]),
    ) as unknown as MdevVirtioOps;
    mdevVirtioRegisterDevice(dev, {
      supportedTypeGroups: [{ name: 'virtio', attrs: [] }],
      create(_t, mdev) {
        if (dma) mdev.dmaOps = dma;
        mdevVirtioSetOps(mdev, ops);
        mdevVirtioSetClassId(mdev, MDEV_VIRTIO_CLASS_ID_VIRTIO);
      },
      remove() {},
    });
    cleanups.push(() => {
      mdevVirtioUnregisterDevice(dev);
      dev.unregister();
      cls.unregister();
      virtioMdevExit();
      mdevVirtioExit();
    });
    return { dev, ready, trace };
  }

  it('refuses device id 0 with ENODEV: the mdev stays unbound', () => {
    const { dev } = vendor({ getDeviceId: () => 0 });
    const mdev: MdevDevice = mdevDeviceCreate(dev, 'virtio', UUID);
    expect(mdev.driver).toBeNull();
    expect(KernelError.is(mdev.lastProbeError, 'ENODEV')).toBe(true);
    expect(sysfs.exists(`${mdev.path}/virtio0`)).toBe(false);
  });

  it('fails the probe when setVqAddress fails, unwinding the queues (EINVAL)', () => {
    const { dev, ready } = vendor({
      setVqAddress: (_m, idx) => {
        if (idx === 1) throw new KernelError('EIO', 'no');
      },
    });
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children().find((c) => c instanceof VirtioMdevDevice) as VirtioMdevDevice;
    expect(vdev.driver).toBeNull();
    expect(KernelError.is(vdev.lastProbeError, 'EINVAL')).toBe(true);
    expect(vdev.config.getStatus(vdev) & VIRTIO_CONFIG_S_FAILED).toBe(VIRTIO_CONFIG_S_FAILED);
    expect(ready.size).toBe(0);
    expect(vdev.vqs).toHaveLength(0);
  });

  it('refuses a queue of max size 0 (ENOENT) before touching it', () => {
    const { dev, trace } = vendor({ getVqNumMax: () => 0 });
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children()[0] as VirtioMdevDevice;
    expect(KernelError.is(vdev.lastProbeError, 'ENOENT')).toBe(true);
    expect(trace.filter((t) => /^set(VqNum|VqAddress|VqReady 0 true)/.test(t))).toEqual([]);
  });

  it('refuses a queue that is already ready (ENOENT) and leaves it as the device had it', () => {
    const { dev, ready, trace } = vendor({});
    ready.add(0); // a previous user left queue 0 enabled
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children()[0] as VirtioMdevDevice;
    expect(KernelError.is(vdev.lastProbeError, 'ENOENT')).toBe(true);
    expect(trace.some((t) => t.startsWith('setVqNum') || t.startsWith('setVqAddress'))).toBe(false);
    expect(vdev.vqs).toHaveLength(0);
  });

  it('refuses a max size that is not a power of two as vring_create_virtqueue does (ENOMEM)', () => {
    const { dev } = vendor({ getVqNumMax: () => 100 });
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children()[0] as VirtioMdevDevice;
    expect(KernelError.is(vdev.lastProbeError, 'ENOMEM')).toBe(true);
    expect(vdev.vqs).toHaveLength(0);
  });

  it('refuses an alignment that is not a power of two (EINVAL)', () => {
    const { dev } = vendor({ getVqAlign: () => 3000 });
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children()[0] as VirtioMdevDevice;
    expect(KernelError.is(vdev.lastProbeError, 'EINVAL')).toBe(true);
  });

  it('sets each queue up in the order of virtio_mdev_setup_vq, then the config callback', () => {
    const { dev, trace } = vendor({ getVqNumMax: () => 64 });
    const bound = testNetDriver();
    mdevDeviceCreate(dev, 'virtio', UUID);
    const [rx, tx] = bound[0]!.vqs;
    const setup = trace.filter((t) => /^(get|set)Vq|^setConfigCb/.test(t));
    const queue = (i: number, vq: VirtqueueLike<number>) => [
      `getVqReady ${i}`,
      'getVqNumMax',
      'getVqAlign',
      `setVqCb ${i} cb`,
      `setVqNum ${i} ${vq.num}`,
      `setVqAddress ${i} ${vq.descAddr} ${vq.availAddr} ${vq.usedAddr}`,
      `setVqReady ${i} true`,
    ];
    expect(setup).toEqual([...queue(0, rx!), ...queue(1, tx!), 'setConfigCb cb']);
  });

  it('places the descriptor table and the device area at the device alignment', () => {
    const { dev } = vendor({ getVqAlign: () => 4096 });
    const bound = testNetDriver();
    mdevDeviceCreate(dev, 'virtio', UUID);
    for (const vq of bound[0]!.vqs) {
      expect(vq!.descAddr % 4096).toBe(0);
      expect(vq!.usedAddr % 4096).toBe(0);
    }
  });

  it('gives queue indexes to named queues only: a null name takes none', () => {
    const { dev, trace } = vendor({});
    const bound = testNetDriver([null, 'a', null, 'b']);
    mdevDeviceCreate(dev, 'virtio', UUID);
    const vqs = bound[0]!.vqs;
    expect(vqs.map((vq) => vq?.index ?? null)).toEqual([null, 0, null, 1]);
    expect(trace.filter((t) => t.startsWith('setVqReady'))).toEqual([
      'setVqReady 0 true',
      'setVqReady 1 true',
    ]);
  });

  it('allocates the rings through the mdev DMA mapping with ACCESS_PLATFORM, and frees them', () => {
    const IOVA = 0x1_0000_0000;
    const mapping: DmaMapOps = {
      alloc: (size, align) => {
        const a = hostRam.dma.alloc(size, align);
        return a && { cpuAddr: a.cpuAddr, dmaAddr: a.cpuAddr + IOVA };
      },
      free: (cpuAddr, size) => hostRam.dma.free(cpuAddr, size, cpuAddr),
      map: (cpuAddr) => cpuAddr + IOVA,
      unmap() {},
    };
    const before = hostRam.allocatedBytes;
    const { dev, trace } = vendor({}, mapping);
    const bound = testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const addresses = trace.filter((t) => t.startsWith('setVqAddress'));
    expect(addresses).toHaveLength(2);
    for (const line of addresses) {
      for (const addr of line.split(' ').slice(2).map(Number))
        expect(addr).toBeGreaterThanOrEqual(IOVA);
    }
    expect(bound[0]!.vqs[0]!.descAddr).toBeGreaterThanOrEqual(IOVA);
    expect(hostRam.allocatedBytes).toBeGreaterThan(before);
    mdevDeviceRemove(mdev);
    expect(hostRam.allocatedBytes).toBe(before);
  });

  it('unwinds a failed setVqAddress: ready cleared and read back, callback cleared, ring freed', () => {
    const before = hostRam.allocatedBytes;
    const { dev, trace } = vendor({
      setVqAddress: (_m, idx) => {
        if (idx === 0) throw new KernelError('EIO', 'no');
      },
    });
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children()[0] as VirtioMdevDevice;
    expect(KernelError.is(vdev.lastProbeError, 'EINVAL')).toBe(true);
    const after = trace.slice(trace.findIndex((t) => t.startsWith('setVqAddress 0')) + 1);
    expect(after.slice(0, 3)).toEqual(['setVqReady 0 false', 'getVqReady 0', 'setVqCb 0 null']);
    expect(hostRam.allocatedBytes).toBe(before);
  });

  it('refuses at registration a device whose status never reads back 0 after reset (EIO)', () => {
    const { dev } = vendor({ setStatus: () => {}, getStatus: () => 1 });
    const warnings: string[] = [];
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation((w) => {
      warnings.push(String(w));
    });
    let mdev: ReturnType<typeof mdevDeviceCreate>;
    try {
      mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    } finally {
      warn.mockRestore();
    }
    expect(mdev.driver).toBeNull();
    expect(KernelError.is(mdev.lastProbeError, 'EIO')).toBe(true);
    expect(warnings).toEqual([`virtio_mdev: ${UUID} does not complete its reset; queues broken`]);
  });

  it('completes removal when the device stops resetting: queues broken, nothing left behind', async () => {
    let stuck = false;
    let status = 0;
    const { dev } = vendor({
      setStatus: (_m, s) => {
        if (!stuck) status = s;
      },
      getStatus: () => status,
    });
    const bound = testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vqs = bound[0]!.vqs;
    stuck = true; // the device hangs: its status stays DRIVER_OK whatever is written
    const warnings: string[] = [];
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation((w) => {
      warnings.push(String(w));
    });
    try {
      mdevDeviceRemove(mdev);
    } finally {
      warn.mockRestore();
    }
    // Each reset that finds it stuck says so: the driver's remove, then the virtio core's.
    expect([...new Set(warnings)]).toEqual([
      `virtio_mdev: ${UUID} does not complete its reset; queues broken`,
    ]);
    expect(vqs.every((vq) => vq!.isBroken)).toBe(true);
    expect(mdevDevices()).toHaveLength(0);
    expect(sysfs.exists(`/sys/bus/mdev_virtio/devices/${UUID}`)).toBe(false);
    expect(sysfs.exists(`${mdev.path}/virtio0`)).toBe(false);
    // The UUID is free again.
    stuck = false;
    expect(mdevDeviceCreate(dev, 'virtio', UUID).uuid).toBe(UUID);
  });
});

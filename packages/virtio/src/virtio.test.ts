import { KernelError, sysfs, uevents } from '@mdev/driver-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { VirtioDevice } from './index';
import {
  featureSet,
  HostRam,
  registerVirtioDevice,
  registerVirtioDriver,
  unregisterVirtioDevice,
  unregisterVirtioDriver,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  type VirtioDriver,
  virtioConfigChanged,
  virtioCread16,
  virtioCread32,
  virtioDeviceReady,
  virtioFindVqs,
  virtioHasFeature,
} from './index';
import { createTestVirtioDevice, VirtioTestDevice } from './testing';

const TEST_ID = 0x7e; // a device id no real driver claims
const ALL = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

let seq = 0;
function setup(features = featureSet(VIRTIO_F_VERSION_1, 1, 2), config = new Uint8Array(8)) {
  const ram = new HostRam({ regionSize: 1 << 20 });
  const dev = new VirtioTestDevice({
    deviceId: TEST_ID,
    features,
    config,
    numQueues: 3,
    numMax: 16,
    ram,
  });
  const vdev = createTestVirtioDevice(dev);
  return { ram, dev, vdev };
}

interface Calls {
  probe: number;
  remove: number;
  config: number;
}

function driver(over: Partial<VirtioDriver> = {}): VirtioDriver & { calls: Calls } {
  const calls: Calls = { probe: 0, remove: 0, config: 0 };
  const drv: VirtioDriver & { calls: Calls } = {
    name: `test-driver-${seq++}`,
    idTable: [{ device: TEST_ID, vendor: 0xffffffff }],
    featureTable: [1, 3],
    probe: () => {
      calls.probe++;
    },
    remove: (vdev) => {
      calls.remove++;
      vdev.config.reset(vdev);
      vdev.config.delVqs(vdev);
    },
    configChanged: () => {
      calls.config++;
    },
    calls,
    ...over,
  };
  return drv;
}

function register(vdev: VirtioDevice): void {
  registerVirtioDevice(vdev);
  cleanups.push(() => unregisterVirtioDevice(vdev));
}

function registerDriver(drv: VirtioDriver): void {
  registerVirtioDriver(drv);
  cleanups.push(() => unregisterVirtioDriver(drv));
}

describe('register_virtio_device', () => {
  it('names the device virtio<N>, resets it, acknowledges it and adds it to /sys/bus/virtio', () => {
    const { dev, vdev } = setup();
    dev.status = 0x55; // whatever an earlier driver left
    const events: string[] = [];
    const stop = uevents.subscribe((e) => events.push(`${e.action} ${e.env.MODALIAS ?? ''}`));
    register(vdev);
    stop();
    expect(vdev.name).toMatch(/^virtio\d+$/);
    expect(dev.statusLog.slice(0, 2)).toEqual([0, VIRTIO_CONFIG_S_ACKNOWLEDGE]);
    const dir = `/sys/bus/virtio/devices/${vdev.name}`;
    expect(sysfs.read(`${dir}/device`)).toBe('0x007e\n');
    expect(sysfs.read(`${dir}/vendor`)).toBe('0x0000\n');
    expect(sysfs.read(`${dir}/status`)).toBe('0x00000001\n');
    expect(sysfs.read(`${dir}/modalias`)).toBe('virtio:d0000007Ev00000000\n');
    expect(sysfs.read(`${dir}/features`)).toBe(`${'0'.repeat(64)}\n`);
    expect(events).toContain('add virtio:d0000007Ev00000000');
  });

  it('gives the lowest free index, and frees it on unregister', () => {
    const a = setup().vdev;
    const b = setup().vdev;
    registerVirtioDevice(a);
    registerVirtioDevice(b);
    const ia = a.index;
    expect(b.index).toBeGreaterThan(ia);
    unregisterVirtioDevice(a);
    const c = setup().vdev;
    registerVirtioDevice(c);
    expect(c.index).toBe(ia);
    unregisterVirtioDevice(c);
    unregisterVirtioDevice(b);
  });
});

describe('virtio_dev_probe: status and feature negotiation', () => {
  it('binds with ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK and the driver table ∩ device features', () => {
    const features = featureSet(
      VIRTIO_F_VERSION_1,
      1,
      2,
      VIRTIO_RING_F_EVENT_IDX,
      VIRTIO_F_ACCESS_PLATFORM,
      VIRTIO_F_RING_PACKED,
      39,
    );
    const { dev, vdev } = setup(features);
    const drv = driver();
    registerDriver(drv);
    register(vdev);
    expect(drv.calls.probe).toBe(1);
    expect(dev.status).toBe(ALL | VIRTIO_CONFIG_S_DRIVER_OK);
    // Bit 1 (in the table and offered) stays; 2 (not in the table) and 3 (not offered) do not;
    // the ring's transport bits are kept (packed rings too), unknown transport bits are cleared.
    expect(vdev.features).toBe(
      featureSet(
        1,
        VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_F_VERSION_1,
        VIRTIO_F_ACCESS_PLATFORM,
        VIRTIO_F_RING_PACKED,
      ),
    );
    expect(dev.driverFeatures).toBe(vdev.features);
    const bits = sysfs.read(`/sys/bus/virtio/devices/${vdev.name}/features`);
    expect([...bits.trim()].flatMap((c, i) => (c === '1' ? [i] : []))).toEqual([1, 29, 32, 33, 34]);
    expect(sysfs.readlink(`/sys/bus/virtio/devices/${vdev.name}/driver`)).toBe(
      `/sys/bus/virtio/drivers/${drv.name}`,
    );
    expect(sysfs.read(`/sys/bus/virtio/devices/${vdev.name}/status`)).toBe('0x0000000f\n');
  });

  it('accepts a bigint feature table', () => {
    const { vdev } = setup();
    registerDriver(driver({ featureTable: featureSet(2) }));
    register(vdev);
    expect(vdev.features).toBe(featureSet(2, VIRTIO_F_VERSION_1));
  });

  it('a device refusing the features fails the probe with FAILED and the transport error', () => {
    const { dev, vdev } = setup();
    dev.refusedFeatures = featureSet(1);
    const drv = driver();
    registerDriver(drv);
    register(vdev);
    expect(vdev.driver).toBeNull();
    expect(drv.calls.probe).toBe(0);
    expect(KernelError.is(vdev.lastProbeError, 'EINVAL')).toBe(true);
    expect(dev.status & VIRTIO_CONFIG_S_FAILED).toBe(VIRTIO_CONFIG_S_FAILED);
    expect(dev.status & VIRTIO_CONFIG_S_DRIVER_OK).toBe(0);
  });

  it('a device that clears FEATURES_OK fails the probe with ENODEV', () => {
    const { dev, vdev } = setup();
    dev.clearFeaturesOk = true;
    const drv = driver();
    registerDriver(drv);
    register(vdev);
    expect(vdev.driver).toBeNull();
    expect(drv.calls.probe).toBe(0);
    expect(KernelError.is(vdev.lastProbeError, 'ENODEV')).toBe(true);
    expect(dev.status).toBe(
      VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FAILED,
    );
  });

  it('a device without VERSION_1 is driven as legacy: no FEATURES_OK step', () => {
    const { dev, vdev } = setup(featureSet(1));
    const drv = driver();
    registerDriver(drv);
    register(vdev);
    expect(drv.calls.probe).toBe(1);
    expect(virtioHasFeature(vdev, VIRTIO_F_VERSION_1)).toBe(false);
    expect(dev.status).toBe(
      VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK,
    );
  });

  it('validate runs before finalize and may trim features', () => {
    const { dev, vdev } = setup();
    registerDriver(
      driver({
        validate: (v) => {
          expect(dev.driverFeatures).toBe(0n);
          v.features &= ~featureSet(1);
        },
      }),
    );
    register(vdev);
    expect(dev.driverFeatures).toBe(featureSet(VIRTIO_F_VERSION_1));
  });

  it('a failing validate or probe sets FAILED and leaves the device unbound', () => {
    for (const over of [
      {
        validate: () => {
          throw new KernelError('EINVAL', 'no');
        },
      },
      {
        probe: (v: VirtioDevice) => {
          virtioFindVqs(v, ['a'], [null]);
          throw new KernelError('ENOMEM', 'no');
        },
      },
    ]) {
      const { dev, vdev } = setup();
      const drv = driver(over);
      registerDriver(drv);
      register(vdev);
      expect(vdev.driver).toBeNull();
      expect(dev.status & VIRTIO_CONFIG_S_FAILED).toBe(VIRTIO_CONFIG_S_FAILED);
      expect(dev.status & VIRTIO_CONFIG_S_DRIVER_OK).toBe(0);
      // Queues a failed probe left behind are deleted.
      expect(vdev.vqs).toEqual([]);
      expect(dev.queues.every((q) => !q.ready)).toBe(true);
      unregisterVirtioDriver(drv);
    }
  });

  it('does not set DRIVER_OK twice when the driver set it in probe', () => {
    const { dev, vdev } = setup();
    registerDriver(driver({ probe: (v) => virtioDeviceReady(v) }));
    register(vdev);
    expect(dev.statusLog.filter((s) => s & VIRTIO_CONFIG_S_DRIVER_OK)).toHaveLength(1);
  });
});

describe('find_vqs and removal', () => {
  it('a null name gives a null queue and does not consume an index; removal resets and deletes', () => {
    const { dev, vdev, ram } = setup();
    const before = ram.allocatedBytes;
    const drv = driver({
      probe: (v) => {
        const vqs = virtioFindVqs(v, ['rx', null, 'tx'], [null, null, null]);
        expect(vqs.map((q) => q?.index ?? null)).toEqual([0, null, 1]);
        expect(vqs.map((q) => q?.name ?? null)).toEqual(['rx', null, 'tx']);
      },
      remove: () => {},
    });
    registerDriver(drv);
    register(vdev);
    expect(dev.queues.map((q) => q.ready)).toEqual([true, true, false]);
    expect(dev.queues[0]!.num).toBe(16);
    expect(ram.allocatedBytes).toBeGreaterThan(before);
    unregisterVirtioDriver(drv);
    // The driver's remove did nothing: the core reset the device and deleted its queues.
    expect(dev.queues.map((q) => q.ready)).toEqual([false, false, false]);
    expect(vdev.vqs).toEqual([]);
    expect(ram.allocatedBytes).toBe(before);
    expect(dev.status).toBe(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    expect(dev.statusLog.at(-2)).toBe(0);
  });

  it('a device without queues fails find_vqs with ENOENT and frees what it made', () => {
    const { dev, vdev, ram } = setup();
    const before = ram.allocatedBytes;
    let err: unknown;
    registerDriver(
      driver({
        probe: (v) => {
          try {
            virtioFindVqs(v, ['a', 'b', 'c', 'd'], []);
          } catch (e) {
            err = e;
            throw e;
          }
        },
      }),
    );
    register(vdev);
    expect(KernelError.is(err, 'ENOENT')).toBe(true);
    expect(ram.allocatedBytes).toBe(before);
    expect(dev.queues.every((q) => !q.ready)).toBe(true);
  });
});

describe('config space', () => {
  it('a read that straddles a config change is retried until the generation is stable', () => {
    const config = new Uint8Array(8);
    new DataView(config.buffer).setUint32(0, 0x11111111, true);
    const { dev, vdev } = setup(undefined, config);
    register(vdev);
    let reads = 0;
    dev.onConfigRead = () => {
      reads++;
      if (reads === 1) dev.changeConfig(0, Uint8Array.of(0x22, 0x22, 0x22, 0x22), false);
    };
    // Without the retry the first read would return 0x22221111, half old and half new.
    expect(virtioCread32(vdev, 0)).toBe(0x22222222);
    expect(reads).toBe(2);
  });

  it('a device whose config never settles gives EIO', () => {
    const { dev, vdev } = setup();
    register(vdev);
    dev.onConfigRead = () => {
      dev.generation++;
    };
    expect(() => virtioCread16(vdev, 0)).toThrow(
      expect.objectContaining({ code: 'EIO', errno: -5 }),
    );
  });

  it('config changes reach the driver only while it is ready', () => {
    const { dev, vdev } = setup();
    let seenDuringProbe = 0;
    const drv = driver({
      probe: (v) => {
        virtioFindVqs(v, ['q'], [null]);
        dev.raiseConfigChange(); // before DRIVER_OK: held back
        virtioConfigChanged(v);
        seenDuringProbe = drv.calls.config;
      },
    });
    registerDriver(drv);
    register(vdev);
    expect(seenDuringProbe).toBe(0);
    expect(drv.calls.config).toBe(1); // delivered once when enabled
    dev.raiseConfigChange();
    expect(drv.calls.config).toBe(2);
    unregisterVirtioDriver(drv);
    virtioConfigChanged(vdev);
    expect(drv.calls.config).toBe(2);
  });
});

describe('HostRam', () => {
  it('grows by regions and frees blocks back', () => {
    const ram = new HostRam({ regionSize: 8192, limit: 1 << 20 });
    const a = ram.alloc(6000)!;
    const b = ram.alloc(6000)!;
    expect(ram.memory.regions).toHaveLength(2);
    ram.memory.view(a, 6000).fill(1);
    expect(ram.memory.view(b, 6000).every((x) => x === 0)).toBe(true);
    ram.free(a);
    ram.free(b);
    expect(ram.allocatedBytes).toBe(0);
    expect(ram.alloc(2 << 20)).toBeNull();
    expect(() => ram.free(a + 1)).toThrow(RangeError);
  });

  it('takes its regions from a backing and says whether they are shared', () => {
    const made: number[] = [];
    const ram = new HostRam({
      regionSize: 8192,
      limit: 16384,
      shared: true,
      backing: (size) => {
        made.push(size);
        return new ArrayBuffer(size);
      },
    });
    expect(ram.memory.shared).toBe(true);
    const a = ram.alloc(100)!;
    expect(made).toEqual([8192]);
    expect(ram.memory.regions[0]!.buffer).toBeInstanceOf(ArrayBuffer);
    ram.memory.view(a, 100).fill(7);
    expect(new HostRam().memory.shared).toBe(false);
    // A backing that hands back the wrong size is refused, not used.
    const bad = new HostRam({ regionSize: 8192, backing: () => new ArrayBuffer(4096) });
    expect(() => bad.alloc(16)).toThrow(/came back with 4096/);
  });
});

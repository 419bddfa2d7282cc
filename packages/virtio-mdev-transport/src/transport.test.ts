import { Class, Device, KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDeviceCreate } from '@mdev/mdev-core';
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
  registerVirtioDriver,
  unregisterVirtioDriver,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
  type VirtioDevice,
  type VirtioDriver,
} from '@mdev/virtio';
import type { Virtqueue } from '@mdev/virtio-ring';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtioMdevDevice, virtioMdevExit, virtioMdevInit } from './index';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A minimal virtio driver for device id 1 that sets up two queues (rx, tx). */
function testNetDriver(names: (string | null)[] = ['input', 'output']) {
  const bound: { vdev: VirtioDevice; vqs: (Virtqueue<number> | null)[] }[] = [];
  const drv: VirtioDriver = {
    name: 'test_net',
    idTable: [{ device: 1, vendor: 0xffffffff }],
    featureTable: featureSet(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM),
    probe(vdev) {
      const vqs = vdev.config.findVqs<number>(
        vdev,
        names,
        names.map(() => null),
      );
      bound.push({ vdev, vqs });
    },
    remove(vdev) {
      vdev.config.reset(vdev);
      vdev.config.delVqs(vdev);
    },
  };
  registerVirtioDriver(drv);
  cleanups.push(() => unregisterVirtioDriver(drv));
  return bound;
}

describe('transport errors', () => {
  function vendor(over: Partial<MdevVirtioOps>) {
    virtioMdevInit();
    const cls = new Class('vend');
    cls.register();
    const dev = new Device({ name: 'vend', class: cls });
    dev.add();
    const ready = new Set<number>();
    let status = 0;
    const ops: MdevVirtioOps = {
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
    mdevVirtioRegisterDevice(dev, {
      supportedTypeGroups: [{ name: 'virtio', attrs: [] }],
      create(_t, mdev) {
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
    return { dev, ready };
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

  it('refuses a queue that is already ready or has max size 0 (ENOENT)', () => {
    const { dev } = vendor({ getVqNumMax: () => 0 });
    testNetDriver();
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    const vdev = mdev.children()[0] as VirtioMdevDevice;
    expect(KernelError.is(vdev.lastProbeError, 'ENOENT')).toBe(true);
  });

  it('reads the status back after reset and reports a device that never resets (EIO)', () => {
    const { dev } = vendor({ setStatus: () => {}, getStatus: () => 1 });
    const mdev = mdevDeviceCreate(dev, 'virtio', UUID);
    expect(mdev.driver).toBeNull();
    expect(KernelError.is(mdev.lastProbeError, 'EIO')).toBe(true);
  });
});

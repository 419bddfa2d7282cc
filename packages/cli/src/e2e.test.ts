import { sysfs, type Uevent, uevents } from '@mdev/driver-core';
import { mdevDeviceRemove, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { MVNET_TYPE_PATH } from '@mdev/mvnet-loopback/testing';
import { sleep } from '@mdev/test-utils';
import { hostRam, VIRTIO_CONFIG_S_DRIVER_OK } from '@mdev/virtio';
import { registerTestDriver } from '@mdev/virtio/testing';
import { virtioMdevExit, virtioMdevInit } from '@mdev/virtio-mdev-transport';
import type { Virtqueue } from '@mdev/virtio-ring';
import { afterEach, describe, expect, it } from 'vitest';

const UUID = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** The test driver, unregistered after the test. */
function testDriver(names?: (string | null)[]) {
  const driver = registerTestDriver(names);
  cleanups.push(driver.unregister);
  return driver.bound;
}

function stack() {
  virtioMdevInit();
  const mvnet = mvnetLoopbackInit({ memory: hostRam.memory, dma: hostRam.dma });
  cleanups.push(() => {
    mvnet.exit();
    virtioMdevExit();
    mdevVirtioExit();
  });
  return mvnet;
}

describe('mvnet_loopback through the virtio-mdev transport', () => {
  it('follows the documented flow: create, virtio0 appears, traffic, remove', async () => {
    stack();
    const bound = testDriver();
    const events: Uevent[] = [];
    cleanups.push(uevents.subscribe((e) => events.push(e)));
    sysfs.write(`${MVNET_TYPE_PATH}/create`, `${UUID}\n`);
    const vpath = `/sys/bus/mdev_virtio/devices/${UUID}/virtio0`;
    expect(sysfs.exists(vpath)).toBe(true);
    expect(
      events.find((e) => e.subsystem === 'mdev_virtio' && e.action === 'add')?.env.MODALIAS,
    ).toBe('mdev_virtio:c01');
    expect(sysfs.read(`${vpath}/device`)).toBe('0x0001\n');
    expect(sysfs.readlink(`${vpath}/driver`)).toBe('/sys/bus/virtio/drivers/test_net');
    expect(Number(sysfs.read(`${vpath}/status`)) & VIRTIO_CONFIG_S_DRIVER_OK).toBe(
      VIRTIO_CONFIG_S_DRIVER_OK,
    );
    const { vdev, vqs } = bound[0]!;
    expect(vdev.config.busName(vdev)).toBe(UUID);
    const [rx, tx] = vqs as Virtqueue<number>[];
    expect(rx!.num).toBe(256);
    const inBuf = hostRam.alloc(2048)!;
    const outBuf = hostRam.alloc(100)!;
    hostRam.memory.view(outBuf, 100).fill(0x5a);
    rx!.addInbuf(inBuf, 2048, 1);
    rx!.kick();
    tx!.addOutbuf(outBuf, 100, 2);
    tx!.kick();
    await sleep(5);
    expect(tx!.getBuf()).toEqual({ token: 2, len: 0 });
    expect(rx!.getBuf()).toEqual({ token: 1, len: 100 });
    // The frame comes back byte for byte, except the header's num_buffers (bytes 10-11), which
    // the device sets to 1 (virtio 1.2 5.1.6.4.1).
    const expected = new Array(100).fill(0x5a);
    expected[10] = 1;
    expected[11] = 0;
    expect([...hostRam.memory.view(inBuf, 100)]).toEqual(expected);
    sysfs.write(`/sys/bus/mdev_virtio/devices/${UUID}/remove`, '1\n');
    expect(sysfs.exists(vpath)).toBe(false);
    expect(mdevDevices()).toHaveLength(0);
    hostRam.free(inBuf);
    hostRam.free(outBuf);
  });

  it('does not consume a queue index for a null name', () => {
    stack();
    const bound = testDriver(['input', null, 'output']);
    sysfs.write(`${MVNET_TYPE_PATH}/create`, UUID);
    const { vqs } = bound[0]!;
    expect(vqs.map((q) => q?.index ?? null)).toEqual([0, null, 1]);
    mdevDeviceRemove(mdevDevices()[0]!);
  });
});

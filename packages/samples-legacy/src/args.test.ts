import { KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDeviceCreate } from '@mdev/mdev-core';
import { mdevVfioExit, mdevVfioGetOps, PAGE_SIZE, VFIO_DEVICE_RESET } from '@mdev/mdev-vfio';
import { afterEach, describe, expect, it } from 'vitest';
import { mbochsInit, mdpyInit, mttyInit } from './index';

const loaded: { exit(): void }[] = [];
afterEach(() => {
  for (const s of loaded.splice(0).reverse()) s.exit();
  mdevVfioExit();
});

function errno(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (KernelError.is(err)) return err.code;
    throw err;
  }
  return undefined;
}

/** One mdev of each sample, as their parents create them. */
function mdevs(): [string, MdevDevice][] {
  const mtty = mttyInit();
  const mdpy = mdpyInit();
  const mbochs = mbochsInit();
  loaded.push(mtty, mdpy, mbochs);
  const types = (parent: string) =>
    sysfs.list(`/sys/devices/virtual/${parent}/${parent}/mdev_supported_types`)[0]!;
  return [
    ['mtty', mdevDeviceCreate(mtty.parent, 'mtty-1', '0a000000-0000-0000-0000-000000000001')],
    ['mdpy', mdevDeviceCreate(mdpy.parent, types('mdpy'), '0a000000-0000-0000-0000-000000000002')],
    [
      'mbochs',
      mdevDeviceCreate(mbochs.parent, types('mbochs'), '0a000000-0000-0000-0000-000000000003'),
    ],
  ];
}

const BAD = [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 31)];

describe("the samples' ops, called with numbers C could not pass", () => {
  it('answer EINVAL for a bad file position, request, page offset or length', () => {
    for (const [name, mdev] of mdevs()) {
      const ops = mdevVfioGetOps(mdev);
      for (const bad of BAD) {
        expect([name, errno(() => ops.read!(mdev, new Uint8Array(4), bad))]).toEqual([
          name,
          'EINVAL',
        ]);
        expect([name, errno(() => ops.write!(mdev, new Uint8Array(4), bad))]).toEqual([
          name,
          'EINVAL',
        ]);
        expect([name, errno(() => ops.ioctl!(mdev, bad, null))]).toEqual([name, 'EINVAL']);
        if (ops.mmap) {
          const vma = { pgoff: bad, length: PAGE_SIZE, shared: true };
          expect([name, errno(() => ops.mmap!(mdev, vma))]).toEqual([name, 'EINVAL']);
          const len = { pgoff: 1, length: bad, shared: true };
          expect([name, errno(() => ops.mmap!(mdev, len))]).toEqual([name, 'EINVAL']);
        }
      }
      expect([name, errno(() => ops.ioctl!(mdev, 2 ** 32, null))]).toEqual([name, 'EINVAL']);
      // Good numbers still reach the device.
      expect(ops.ioctl!(mdev, VFIO_DEVICE_RESET, null)).toBe(0);
    }
  });
});

import type { VirtqueueLike } from '@mdev/virtio-ring';
import {
  registerVirtioDriver,
  unregisterVirtioDriver,
  type VirtioDevice,
  type VirtioDriver,
} from '../virtio';
import { featureSet, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1 } from '../virtio-config';
import { VIRTIO_DEV_ANY_ID, VIRTIO_ID_NET } from '../virtio-ids';

/** A device a test driver bound: the device and the queues its probe set up. */
export interface TestDriverBinding {
  vdev: VirtioDevice;
  /** One per name given, in order; null for a null name. */
  vqs: (VirtqueueLike<number> | null)[];
}

/** A registered test driver (see `registerTestDriver`). */
export interface TestDriver {
  readonly driver: VirtioDriver;
  /** The devices it bound, in probe order (a removed device stays listed). */
  readonly bound: TestDriverBinding[];
  /** Unregisters the driver, removing it from the devices it drives. */
  unregister(): void;
}

/**
 * Registers `test_net`, a minimal driver for network devices of any vendor: it accepts
 * VERSION_1 and ACCESS_PLATFORM, sets up the named queues with no callbacks in its probe (a null
 * name takes no queue index), and resets the device and deletes the queues in its remove. What a
 * transport or a device model needs of a driver, without virtio-net's datapath.
 */
export function registerTestDriver(
  names: readonly (string | null)[] = ['input', 'output'],
): TestDriver {
  const bound: TestDriverBinding[] = [];
  const driver: VirtioDriver = {
    name: 'test_net',
    idTable: [{ device: VIRTIO_ID_NET, vendor: VIRTIO_DEV_ANY_ID }],
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
  registerVirtioDriver(driver);
  return { driver, bound, unregister: () => unregisterVirtioDriver(driver) };
}

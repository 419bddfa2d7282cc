import { type Driver, KernelError } from '@mdev/driver-core';
import {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  type MdevVirtioDevice,
  type MdevVirtioOps,
  mdevVirtioGetOps,
  mdevVirtioRegisterDriver,
  mdevVirtioUnregisterDriver,
} from '@mdev/mdev-virtio';
import {
  registerVirtioDevice,
  unregisterVirtioDevice,
  VIRTIO_F_RING_PACKED,
  type VirtioConfigOps,
  VirtioDevice,
  type VqCallback,
  virtioBreakDevice,
  virtioConfigChanged,
  virtioHasFeature,
  vringCreateVirtqueue,
  vringDelVirtqueue,
  vringTransportFeatures,
} from '@mdev/virtio';
import { VIRTQUEUE_MAX_SIZE, type VirtqueueLike } from '@mdev/virtio-ring';

/** How many times reset reads the status back before it gives up (virtio-pci polls likewise). */
export const RESET_POLL_LIMIT = 1000;

/**
 * Mirrors struct virtio_mdev_device: the virtio device the transport registers for an mdev. Its
 * parent is the mdev device, so the ring uses the mdev's DMA ops with ACCESS_PLATFORM.
 */
export class VirtioMdevDevice extends VirtioDevice {
  readonly mdev: MdevVirtioDevice;
  readonly ops: MdevVirtioOps;

  constructor(mdev: MdevVirtioDevice, ops: MdevVirtioOps, deviceId: number) {
    super({
      id: { device: deviceId, vendor: ops.getVendorId(mdev) },
      config: virtioMdevConfigOps,
      parent: mdev,
    });
    this.mdev = mdev;
    this.ops = ops;
  }
}

function vm(vdev: VirtioDevice): VirtioMdevDevice {
  if (!(vdev instanceof VirtioMdevDevice))
    throw new TypeError(`${vdev.name} is not a virtio-mdev device`);
  return vdev;
}

/** Mirrors virtio_mdev_setup_vq() (drivers/virtio/virtio_mdev.c): one queue, in its order. */
function setupVq<T>(
  vdev: VirtioMdevDevice,
  index: number,
  callback: VqCallback<T> | null,
  name: string,
): VirtqueueLike<T> {
  const { mdev, ops } = vdev;
  // "Queue shouldn't already be set up."
  if (ops.getVqReady(mdev, index))
    throw new KernelError('ENOENT', `virtio_mdev: queue ${index} is already set up`);
  const num = ops.getVqNumMax(mdev);
  if (num === 0) {
    throw new KernelError('ENOENT', `virtio_mdev: queue ${index} does not exist (max size 0)`);
  }
  // vring_create_virtqueue() refuses a size that is not a power of two ("Bad virtqueue length")
  // by returning NULL, which the transport reports as ENOMEM. A packed ring takes any size up to
  // 32768 (virtio 1.2 2.8).
  const packed = virtioHasFeature(vdev, VIRTIO_F_RING_PACKED);
  const pow2 = packed || (num & (num - 1)) === 0;
  if (!Number.isInteger(num) || num < 0 || num > VIRTQUEUE_MAX_SIZE || !pow2) {
    throw new KernelError('ENOMEM', `virtio_mdev: queue ${index} has a bad size ${num}`);
  }
  const align = ops.getVqAlign(mdev);
  if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0) {
    throw new KernelError('EINVAL', `virtio_mdev: device asks for alignment ${align}`);
  }
  let vq: VirtqueueLike<T> | null = null;
  try {
    vq = vringCreateVirtqueue<T>(vdev, {
      index,
      num,
      mayReduceNum: true,
      align,
      notify: () => {
        ops.kickVq(mdev, index);
        return true;
      },
      callback,
      name,
    });
    if (!vq) throw new KernelError('ENOMEM', `virtio_mdev: no memory for queue ${index}`);
    const created = vq;
    ops.setVqCb(mdev, index, { callback: () => created.interrupt(), private: created });
    ops.setVqNum(mdev, index, created.num);
    try {
      ops.setVqAddress(mdev, index, created.descAddr, created.availAddr, created.usedAddr);
    } catch (err) {
      throw new KernelError(
        'EINVAL',
        `virtio_mdev: device refused the addresses of queue ${index}: ${String(err)}`,
      );
    }
    ops.setVqReady(mdev, index, true);
    return created;
  } catch (err) {
    deselect(vdev, index);
    ops.setVqCb(mdev, index, null);
    if (vq) vringDelVirtqueue(vdev, vq as VirtqueueLike<unknown>);
    throw err;
  }
}

/** Clears a queue's ready bit and checks it reads back clear (the kernel's WARN_ON). */
function deselect(vdev: VirtioMdevDevice, index: number): void {
  const { mdev, ops } = vdev;
  ops.setVqReady(mdev, index, false);
  if (ops.getVqReady(mdev, index)) {
    process.emitWarning(`virtio_mdev: queue ${index} of ${mdev.uuid} still reads ready`);
  }
}

/** Mirrors virtio_mdev_del_vq(): deselects the queue, checks it reads back not ready, frees it. */
function delVq(vdev: VirtioMdevDevice, vq: VirtqueueLike<unknown>): void {
  deselect(vdev, vq.index);
  vdev.ops.setVqCb(vdev.mdev, vq.index, null);
  vringDelVirtqueue(vdev, vq);
}

/** Mirrors virtio_mdev_config_ops (drivers/virtio/virtio_mdev.c). */
export const virtioMdevConfigOps: VirtioConfigOps = {
  get(vdev, offset, buf) {
    const d = vm(vdev);
    d.ops.getConfig(d.mdev, offset, buf);
  },
  set(vdev, offset, buf) {
    const d = vm(vdev);
    d.ops.setConfig(d.mdev, offset, buf);
  },
  generation(vdev) {
    const d = vm(vdev);
    return d.ops.getGeneration ? d.ops.getGeneration(d.mdev) : 0;
  },
  getStatus(vdev) {
    const d = vm(vdev);
    return d.ops.getStatus(d.mdev);
  },
  setStatus(vdev, status) {
    const d = vm(vdev);
    d.ops.setStatus(d.mdev, status);
  },
  reset(vdev) {
    // The 2019 transport wrote 0 once; like virtio-pci we also read it back, bounded. Reset runs
    // on every teardown path (driver remove, failed probe), so it does not throw: a device that
    // never reads back 0 may still own the rings, and its queues are broken so that the driver
    // adds nothing more and treats the device as gone.
    const d = vm(vdev);
    d.ops.setStatus(d.mdev, 0);
    for (let i = 0; i < RESET_POLL_LIMIT; i++) {
      if (d.ops.getStatus(d.mdev) === 0) return;
    }
    process.emitWarning(`virtio_mdev: ${d.mdev.uuid} does not complete its reset; queues broken`);
    virtioBreakDevice(d);
  },
  findVqs<T>(
    vdev: VirtioDevice,
    names: readonly (string | null)[],
    callbacks: readonly (VqCallback<T> | null)[],
  ) {
    const d = vm(vdev);
    const vqs: (VirtqueueLike<T> | null)[] = [];
    let queueIdx = 0;
    try {
      for (let i = 0; i < names.length; i++) {
        const name = names[i];
        if (name === null || name === undefined) {
          vqs.push(null); // a null name does not consume a queue index
          continue;
        }
        vqs.push(setupVq<T>(d, queueIdx++, callbacks[i] ?? null, name));
      }
    } catch (err) {
      virtioMdevConfigOps.delVqs(vdev);
      throw err;
    }
    d.ops.setConfigCb(d.mdev, { callback: () => virtioConfigChanged(d), private: d });
    return vqs;
  },
  delVqs(vdev) {
    const d = vm(vdev);
    for (const vq of [...d.vqs]) delVq(d, vq);
  },
  getFeatures(vdev) {
    const d = vm(vdev);
    return d.ops.getFeatures(d.mdev);
  },
  finalizeFeatures(vdev) {
    const d = vm(vdev);
    vringTransportFeatures(d);
    d.ops.setFeatures(d.mdev, d.features);
  },
  busName(vdev) {
    return vm(vdev).mdev.name;
  },
};

const devices = new Map<MdevVirtioDevice, VirtioMdevDevice>();
let driver: Driver | null = null;

/** Mirrors virtio_mdev_probe(): registers a virtio device for the mdev. ENODEV for device id 0. */
function probe(mdev: MdevVirtioDevice): void {
  const ops = mdevVirtioGetOps(mdev);
  const deviceId = ops.getDeviceId(mdev);
  if (deviceId === 0) throw new KernelError('ENODEV', `virtio_mdev: ${mdev.uuid} has device id 0`);
  const vdev = new VirtioMdevDevice(mdev, ops, deviceId);
  registerVirtioDevice(vdev);
  devices.set(mdev, vdev);
}

/** Mirrors virtio_mdev_remove(). */
function remove(mdev: MdevVirtioDevice): void {
  const vdev = devices.get(mdev);
  if (!vdev) return;
  unregisterVirtioDevice(vdev);
  devices.delete(mdev);
}

/** Registers the `virtio_mdev` driver on the mediated virtio bus (module init). Idempotent. */
export function virtioMdevInit(): void {
  if (driver) return;
  driver = mdevVirtioRegisterDriver({
    name: 'virtio_mdev',
    idTable: [{ id: MDEV_VIRTIO_CLASS_ID_VIRTIO }],
    probe,
    remove,
  });
}

/** Unregisters the driver (module exit): every virtio device it registered goes. */
export function virtioMdevExit(): void {
  if (!driver) return;
  mdevVirtioUnregisterDriver(driver);
  driver = null;
}

/** The virtio device the transport registered for an mdev, if bound. */
export function virtioMdevDeviceOf(mdev: MdevVirtioDevice): VirtioMdevDevice | undefined {
  return devices.get(mdev);
}

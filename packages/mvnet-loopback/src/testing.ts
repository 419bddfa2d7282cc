/**
 * Test doubles around mvnet_loopback (the package's `./testing` export): the parent over a guest
 * memory of its own, an mdev created as a user would (`echo $UUID > .../create`), and a minimal
 * driver that sets the two queues up through the mdev_virtio ops the way the virtio-mdev
 * transport does (drivers/virtio/virtio_mdev.c), without a transport or a virtio driver.
 */
import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { type MdevVirtioOps, mdevVirtioGetOps } from '@mdev/mdev-virtio';
import {
  featureSet,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from '@mdev/virtio';
import {
  createVirtqueue,
  DmaAllocator,
  GuestMemory,
  offsetDmaOps,
  type VirtqueueLike,
} from '@mdev/virtio-ring';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import { type MvnetLoopback, type MvnetOptions, mvnetLoopbackInit } from './device';

/** The sysfs directory of the mvnet_loopback-virtio type (its `create` makes an instance). */
export const MVNET_TYPE_PATH =
  '/sys/devices/virtual/mvnet_loopback/mvnet_loopback/mdev_supported_types/mvnet_loopback-virtio';

/** Options of `mvnetWorld`: those of `mvnetLoopbackInit` but the memory, and where it lies. */
export interface MvnetWorldOptions extends Partial<Omit<MvnetOptions, 'memory' | 'dma'>> {
  /** The guest address of the one memory region; default 0x100000. */
  base?: number;
  /** Bytes of the region (a SharedArrayBuffer, so worker mode reaches it); default 4 MiB. */
  size?: number;
}

/** The parent and the memory its rings and buffers live in (see `mvnetWorld`). */
export interface MvnetWorld {
  memory: GuestMemory;
  /** Hands out ring and buffer memory in the region; mvnet's DMA ops map through it. */
  allocator: DmaAllocator;
  mvnet: MvnetLoopback;
}

/**
 * Loads mvnet_loopback over a guest memory of one region of its own, with offset DMA ops over an
 * allocator in it. The caller ends it with `mvnet.exit()` and `mdevVirtioExit()`.
 */
export function mvnetWorld(options: MvnetWorldOptions = {}): MvnetWorld {
  const { base = 0x100000, size = 4 << 20, ...rest } = options;
  const memory = new GuestMemory();
  memory.addRegion(base, new SharedArrayBuffer(size));
  const allocator = new DmaAllocator(memory, base);
  const mvnet = mvnetLoopbackInit({ ...rest, memory, dma: offsetDmaOps(allocator) });
  return { memory, allocator, mvnet };
}

/** Creates an instance through sysfs (`echo $UUID > .../create`) and returns its mdev. */
export function mvnetCreate(uuid: string): MdevDevice {
  sysfs.write(`${MVNET_TYPE_PATH}/create`, uuid);
  const mdev = mdevDevices().find((m) => m.uuid === uuid);
  if (!mdev) throw new Error(`mvnet_loopback: no mdev ${uuid} after create`);
  return mdev;
}

/** The queues `mvnetBringUp` set up, with their interrupt counts by queue index. */
export interface MvnetQueues {
  ops: MdevVirtioOps;
  rx: VirtqueueLike<number>;
  tx: VirtqueueLike<number>;
  /** Interrupts (vq callbacks) received, indexed by MVNET_RX_QUEUE / MVNET_TX_QUEUE. */
  irqs: number[];
}

/** Options of `mvnetBringUp`. */
export interface MvnetBringUpOptions {
  /** Entries of each ring; default 64. */
  num?: number;
  /** Negotiate VIRTIO_RING_F_EVENT_IDX and drive the rings with it; default false. */
  eventIdx?: boolean;
  /** Negotiate VIRTIO_F_RING_PACKED (the device must offer it) and make packed rings. */
  packed?: boolean;
}

/**
 * The driver side of an mdev, minimal: accepts VERSION_1 and ACCESS_PLATFORM (and EVENT_IDX when
 * asked), then creates the receive and transmit rings in `memory` through the mdev's DMA ops and
 * gives each to the device as the transport does: callback, size, addresses, ready. A kick of a
 * ring calls the device's kick op.
 */
export function mvnetBringUp(
  mdev: MdevDevice,
  memory: GuestMemory,
  options: MvnetBringUpOptions = {},
): MvnetQueues {
  const { num = 64, eventIdx = false, packed = false } = options;
  const ops = mdevVirtioGetOps(mdev);
  let features = featureSet(VIRTIO_F_VERSION_1, VIRTIO_F_ACCESS_PLATFORM);
  if (eventIdx) features |= featureSet(VIRTIO_RING_F_EVENT_IDX);
  if (packed) features |= featureSet(VIRTIO_F_RING_PACKED);
  ops.setFeatures(mdev, features);
  const irqs = [0, 0];
  const [rx, tx] = [MVNET_RX_QUEUE, MVNET_TX_QUEUE].map((idx) => {
    const vq = createVirtqueue<number>({
      packed,
      index: idx,
      num,
      memory,
      dma: mdev.dmaOps!,
      eventIdx,
      notify: () => {
        ops.kickVq(mdev, idx);
        return true;
      },
    });
    if (!vq) throw new Error(`mvnet_loopback: no ring of ${num} entries for queue ${idx}`);
    ops.setVqCb(mdev, idx, { callback: () => irqs[idx]!++, private: null });
    ops.setVqNum(mdev, idx, vq.num);
    ops.setVqAddress(mdev, idx, vq.descAddr, vq.availAddr, vq.usedAddr);
    ops.setVqReady(mdev, idx, true);
    return vq;
  }) as [VirtqueueLike<number>, VirtqueueLike<number>];
  return { ops, rx, tx, irqs };
}

/**
 * What a frame sent through mvnet comes back as: the same bytes, except the header's num_buffers
 * (le16 at offset 10 of the VERSION_1 header), which the device sets to 1 (virtio 1.2 5.1.6.4.1).
 */
export function loopedFrame(sent: Uint8Array): Uint8Array {
  const out = sent.slice();
  out[10] = 1;
  out[11] = 0;
  return out;
}

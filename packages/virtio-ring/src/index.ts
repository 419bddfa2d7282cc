export { DmaAllocator, type DmaDirection, type DmaMapOps, offsetDmaOps } from './dma';
export { EFAULT, EINVAL, EIO, ELOOP, ENOMEM, ENOSPC, EPROTO } from './errno';
export {
  alignUp,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTQUEUE_MAX_SIZE,
  VRING_AVAIL_ALIGN_SIZE,
  VRING_AVAIL_ELEM_SIZE,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_AVAIL_FLAGS,
  VRING_AVAIL_IDX,
  VRING_AVAIL_RING,
  VRING_DESC_ADDR,
  VRING_DESC_ALIGN_SIZE,
  VRING_DESC_F_INDIRECT,
  VRING_DESC_F_NEXT,
  VRING_DESC_F_WRITE,
  VRING_DESC_FLAGS,
  VRING_DESC_LEN,
  VRING_DESC_NEXT,
  VRING_DESC_SIZE,
  VRING_LEGACY_ALIGN,
  VRING_USED_ALIGN_SIZE,
  VRING_USED_ELEM_ID,
  VRING_USED_ELEM_LEN,
  VRING_USED_ELEM_SIZE,
  VRING_USED_F_NO_NOTIFY,
  VRING_USED_FLAGS,
  VRING_USED_IDX,
  VRING_USED_RING,
  vringAvailEventOffset,
  vringAvailSize,
  vringDescSize,
  vringLayout,
  vringNeedEvent,
  vringSize,
  vringUsedEventOffset,
  vringUsedSize,
} from './layout';
export {
  type AddressSpace,
  GuestMemory,
  HOST_LITTLE_ENDIAN,
  MAX_ADDR,
  type MemoryRegion,
  OffsetAddressSpace,
  type SharedMemoryDescriptor,
  type Translation,
} from './memory';
export { NotifyWord } from './notify';
export { siblingModule, spawnWorker } from './spawn-worker';
export { type Sg, type UsedBuf, Virtqueue, type VirtqueueOptions } from './virtqueue';
export { Vringh, type VringhConfig, VringhIov } from './vringh';

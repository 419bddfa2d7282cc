/**
 * Status and feature bits of <linux/virtio_config.h> (virtio 1.2 sections 2.1 "Device Status
 * Field" and 6 "Reserved Feature Bits"). Feature bits are bit numbers; feature sets are bigint.
 */

/** We have seen device and processed generic fields (VIRTIO_CONFIG_S_ACKNOWLEDGE, virtio_config.h). */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
/** We have found a driver for the device (VIRTIO_CONFIG_S_DRIVER, virtio_config.h). */
export const VIRTIO_CONFIG_S_DRIVER = 2;
/** Driver has used its parts of the config, and is happy (VIRTIO_CONFIG_S_DRIVER_OK, virtio_config.h). */
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
/** Driver has finished configuring features (VIRTIO_CONFIG_S_FEATURES_OK, virtio_config.h). */
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
/** Device entered invalid state, driver must reset it (VIRTIO_CONFIG_S_NEEDS_RESET, virtio_config.h). */
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
/** We've given up on this device (VIRTIO_CONFIG_S_FAILED, virtio_config.h). */
export const VIRTIO_CONFIG_S_FAILED = 0x80;

/** First transport feature bit (VIRTIO_TRANSPORT_F_START, virtio_config.h). */
export const VIRTIO_TRANSPORT_F_START = 28;
/** One past the last transport feature bit (VIRTIO_TRANSPORT_F_END, virtio_config.h). */
export const VIRTIO_TRANSPORT_F_END = 41;

/** Notify on empty avail ring, legacy (VIRTIO_F_NOTIFY_ON_EMPTY, virtio_config.h). */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
/** Any descriptor layout is accepted, legacy (VIRTIO_F_ANY_LAYOUT, virtio_config.h). */
export const VIRTIO_F_ANY_LAYOUT = 27;
/** Indirect descriptors (VIRTIO_RING_F_INDIRECT_DESC, virtio_ring.h). */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
/** used_event / avail_event notification suppression (VIRTIO_RING_F_EVENT_IDX, virtio_ring.h). */
export const VIRTIO_RING_F_EVENT_IDX = 29;
/** v1.0 compliant (VIRTIO_F_VERSION_1, virtio_config.h). */
export const VIRTIO_F_VERSION_1 = 32;
/** The device's DMA goes through a platform IOMMU/translation (VIRTIO_F_ACCESS_PLATFORM, virtio_config.h). */
export const VIRTIO_F_ACCESS_PLATFORM = 33;
/** The old name of VIRTIO_F_ACCESS_PLATFORM (VIRTIO_F_IOMMU_PLATFORM, virtio_config.h). */
export const VIRTIO_F_IOMMU_PLATFORM = VIRTIO_F_ACCESS_PLATFORM;
/** Packed virtqueue layout (VIRTIO_F_RING_PACKED, virtio_config.h). */
export const VIRTIO_F_RING_PACKED = 34;
/** Buffers are used in the order they are made available (VIRTIO_F_IN_ORDER, virtio_config.h). */
export const VIRTIO_F_IN_ORDER = 35;
/** Memory accesses are ordered as the platform orders them (VIRTIO_F_ORDER_PLATFORM, virtio_config.h). */
export const VIRTIO_F_ORDER_PLATFORM = 36;
/** Single root I/O virtualization (VIRTIO_F_SR_IOV, virtio_config.h). */
export const VIRTIO_F_SR_IOV = 37;
/** Individual virtqueue reset (VIRTIO_F_RING_RESET, virtio_config.h). */
export const VIRTIO_F_RING_RESET = 40;

/** The feature set (bigint) with bit `bit` set: `BIT_ULL(bit)`. */
export function featureBit(bit: number): bigint {
  if (!Number.isInteger(bit) || bit < 0 || bit > 63) throw new RangeError(`bad feature bit ${bit}`);
  return 1n << BigInt(bit);
}

/** The feature set of the given bit numbers. */
export function featureSet(...bits: number[]): bigint {
  let set = 0n;
  for (const b of bits) set |= featureBit(b);
  return set;
}

/** Whether `features` has bit `bit`. */
export function hasFeature(features: bigint, bit: number): boolean {
  return (features & featureBit(bit)) !== 0n;
}

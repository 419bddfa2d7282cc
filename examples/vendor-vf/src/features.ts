import {
  featureSet,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from '@mdev/virtio';

/**
 * The features the VF offers (device_feature): a virtio 1.x network function behind the
 * platform IOMMU (ACCESS_PLATFORM, which it also requires), with a MAC, a link status and an MTU
 * in its configuration, event-index notification suppression and indirect descriptors.
 */
export const VF_FEATURES = featureSet(
  VIRTIO_F_VERSION_1,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_F_MTU,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
);

/** The MTU a VF reports unless told otherwise. */
export const VF_DEFAULT_MTU = 1500;

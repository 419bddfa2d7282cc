import {
  featureSet,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS,
  VIRTIO_NET_CONFIG_MTU,
  VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_S_LINK_UP,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from '@mdev/virtio';

/** The virtio device id of a network card (VIRTIO_ID_NET); MVNET_DEVICE_ID in the sample. */
export const MVNET_DEVICE_ID = 1;
/** MVNET_VENDOR_ID. */
export const MVNET_VENDOR_ID = 0;
/** MVNET_QUEUE_MAX: the largest queue the device takes. */
export const MVNET_QUEUE_MAX = 256;
/** MVNET_QUEUE_ALIGN: PAGE_SIZE. */
export const MVNET_QUEUE_ALIGN = 4096;
/** Queue indexes of virtio-net: receiveq1 then transmitq1 (virtio 1.2, 5.1.2). */
export const MVNET_RX_QUEUE = 0;
export const MVNET_TX_QUEUE = 1;
export const MVNET_NUM_QUEUES = 2;
/** The device_api string of the type, defined by the bus (re-exported for existing users). */
export { VIRTIO_MDEV_DEVICE_API_STRING } from '@mdev/mdev-virtio';
/** The default MTU the device reports. */
export const MVNET_DEFAULT_MTU = 1500;

/**
 * The features mvnet offers. The 2019 sample offered only ANY_LAYOUT, VERSION_1 and
 * IOMMU_PLATFORM; this device also offers MAC, STATUS and MTU (with a real config space), event
 * idx, indirect descriptors and in-order use (its datapath completes each ring's chains in the
 * order it takes them), which its ring code honours.
 */
export const MVNET_FEATURES = featureSet(
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_VERSION_1,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_F_MTU,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_F_IN_ORDER,
);

/** Bytes of the config space mvnet exposes: struct virtio_net_config up to and including mtu. */
export const MVNET_CONFIG_SIZE = VIRTIO_NET_CONFIG_MTU + 2;

/** A random locally administered unicast MAC (eth_random_addr; re-exported for existing users). */
export { randomMac } from '@mdev/virtio';

/** Builds the little-endian config space (virtio 1.2, 5.1.4): mac, status, pairs, mtu. */
export function buildConfig(mac: Uint8Array, linkUp: boolean, mtu: number): Uint8Array {
  const cfg = new Uint8Array(MVNET_CONFIG_SIZE);
  const dv = new DataView(cfg.buffer);
  cfg.set(mac, VIRTIO_NET_CONFIG_MAC);
  dv.setUint16(VIRTIO_NET_CONFIG_STATUS, linkUp ? VIRTIO_NET_S_LINK_UP : 0, true);
  dv.setUint16(VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS, 1, true);
  dv.setUint16(VIRTIO_NET_CONFIG_MTU, mtu, true);
  return cfg;
}

export {
  buildConfig,
  MVNET_CONFIG_SIZE,
  MVNET_DEFAULT_MTU,
  MVNET_DEVICE_ID,
  MVNET_FEATURES,
  MVNET_NUM_QUEUES,
  MVNET_QUEUE_ALIGN,
  MVNET_QUEUE_MAX,
  MVNET_RX_QUEUE,
  MVNET_TX_QUEUE,
  MVNET_VENDOR_ID,
  randomMac,
  VIRTIO_MDEV_DEVICE_API_STRING,
} from './config';
export {
  type DatapathResult,
  LoopbackDatapath,
  MvnetQueue,
  type MvnetStats,
  type NetHdrLayout,
} from './datapath';
export {
  MVNET_BUDGET,
  MVNET_NAME,
  MvnetLoopback,
  type MvnetOptions,
  type MvnetProvision,
  MvnetState,
  mvnetLoopbackInit,
} from './device';
export { InThreadHost, type MvnetHost } from './host';
export { IotlbAddressSpace } from './iotlb';
export { MvnetOffload, type MvnetOffloadOptions } from './offload';

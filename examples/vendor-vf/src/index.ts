export {
  VENDOR_VF_CONFIG_VECTOR,
  VENDOR_VF_NAME,
  VENDOR_VF_QUEUE_ALIGN,
  VENDOR_VF_TYPE_PATH,
  VendorVfCard,
  VendorVfInstance,
  type VendorVfOptions,
  type VendorVfStats,
  VIRTIO_MDEV_DEVICE_API_STRING,
  vendorVfInit,
  vendorVfOps,
} from './driver';
export { VfEngine, type VfInit } from './engine';
export { VF_DEFAULT_MTU, VF_FEATURES } from './features';
export { type PciIdentity, VirtioNetVf, type VirtioNetVfOptions } from './hardware';
export * from './layout';
export { assertPresent, VF_MMIO_TIMEOUT_MS, VfBar } from './mmio';
export {
  registerVendorVfPktgenDevice,
  VENDOR_VF_PKTGEN_DEVICE,
  type VendorVfPktgenParent,
} from './pktgen';

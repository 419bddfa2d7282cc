export {
  MDEV_VIRTIO_CLASS_ID_VIRTIO,
  type MdevVirtioClassId,
  MdevVirtioDevice,
  type MdevVirtioDriver,
  mdevVirtioBus,
  mdevVirtioExit,
  mdevVirtioFromDev,
  mdevVirtioGetOps,
  mdevVirtioInit,
  mdevVirtioRegisterDevice,
  mdevVirtioRegisterDriver,
  mdevVirtioSetClassId,
  mdevVirtioSetOps,
  mdevVirtioUnregisterDevice,
  mdevVirtioUnregisterDriver,
  VIRTIO_MDEV_DEVICE_API_STRING,
} from './bus';
export { MDEV_VIRTIO_MANDATORY_OPS, type MdevVirtioOps, type VirtioMdevCallback } from './ops';

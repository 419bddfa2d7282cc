export { mdpyConfigSpace } from './config';
export {
  DRM_FORMAT_XRGB8888,
  MDPY_CONFIG_SPACE_SIZE,
  MDPY_DISPLAY_REGION,
  MDPY_FORMAT_OFFSET,
  MDPY_HEIGHT_OFFSET,
  MDPY_MAX_DEVICES,
  MDPY_MEMORY_BAR_OFFSET,
  MDPY_NAME,
  MDPY_PCI_DEVICE_ID,
  MDPY_PCI_VENDOR_ID,
  MDPY_TYPES,
  MDPY_VENDORCAP_OFFSET,
  MDPY_VENDORCAP_SIZE,
  MDPY_WIDTH_OFFSET,
  type MdpyTypeDef,
  mdpyMemsize,
} from './defs';
export {
  Mdpy,
  type MdpyOptions,
  MdpyState,
  mdpyExit,
  mdpyInit,
  mdpyVfioOps,
} from './device';
export { MdpyFramebuffer } from './framebuffer';

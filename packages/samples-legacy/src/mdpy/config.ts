import {
  PCI_CAP_FLAGS,
  PCI_CAP_ID_VNDR,
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_CLASS_DEVICE,
  PCI_CLASS_DISPLAY_OTHER,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_REVISION_ID,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  PciConfigSpace,
} from '../pci';
import type { MdpyTypeDef } from './defs';
import {
  MDPY_CONFIG_SPACE_SIZE,
  MDPY_FORMAT_OFFSET,
  MDPY_HEIGHT_OFFSET,
  MDPY_PCI_DEVICE_ID,
  MDPY_PCI_REVISION,
  MDPY_PCI_SUBDEVICE_ID,
  MDPY_PCI_SUBVENDOR_ID,
  MDPY_PCI_VENDOR_ID,
  MDPY_VENDORCAP_OFFSET,
  MDPY_VENDORCAP_SIZE,
  MDPY_WIDTH_OFFSET,
} from './defs';

/**
 * mdpy_create_config_space(): Red Hat ids, display class, BAR0 a 32-bit prefetchable memory BAR
 * of `memsize` bytes, and the vendor capability at 0x40 with the framebuffer's DRM format, width
 * and height (what the guest's mdpy-fb driver reads). MDPY_CONFIG_SPACE_SIZE bytes, as the
 * sample allocates.
 */
export function mdpyConfigSpace(type: MdpyTypeDef, memsize: number): PciConfigSpace {
  const c = new PciConfigSpace(MDPY_CONFIG_SPACE_SIZE);
  c.setU16(PCI_VENDOR_ID, MDPY_PCI_VENDOR_ID);
  c.setU16(PCI_DEVICE_ID, MDPY_PCI_DEVICE_ID);
  c.setU16(PCI_SUBSYSTEM_VENDOR_ID, MDPY_PCI_SUBVENDOR_ID);
  c.setU16(PCI_SUBSYSTEM_ID, MDPY_PCI_SUBDEVICE_ID);
  c.setU16(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
  c.setU16(PCI_STATUS, PCI_STATUS_CAP_LIST);
  c.setU16(PCI_CLASS_DEVICE, PCI_CLASS_DISPLAY_OTHER);
  c.setU8(PCI_REVISION_ID, MDPY_PCI_REVISION);
  c.defineBar(0, { size: memsize, prefetch: true });
  c.setU8(PCI_CAPABILITY_LIST, MDPY_VENDORCAP_OFFSET);
  c.setU8(MDPY_VENDORCAP_OFFSET + PCI_CAP_LIST_ID, PCI_CAP_ID_VNDR);
  c.setU8(MDPY_VENDORCAP_OFFSET + PCI_CAP_LIST_NEXT, 0); // the end of the list
  c.setU8(MDPY_VENDORCAP_OFFSET + PCI_CAP_FLAGS, MDPY_VENDORCAP_SIZE); // vendor caps: length
  c.setU32(MDPY_FORMAT_OFFSET, type.format);
  c.setU32(MDPY_WIDTH_OFFSET, type.width);
  c.setU32(MDPY_HEIGHT_OFFSET, type.height);
  return c;
}

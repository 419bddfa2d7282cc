import {
  PCI_CLASS_DEVICE,
  PCI_CLASS_DISPLAY_OTHER,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_REVISION_ID,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
  PciConfigSpace,
} from '../pci';
import {
  MBOCHS_CONFIG_SPACE_SIZE,
  MBOCHS_MMIO_BAR_SIZE,
  MBOCHS_PCI_DEVICE_ID,
  MBOCHS_PCI_REVISION,
  MBOCHS_PCI_SUBDEVICE_ID,
  MBOCHS_PCI_SUBVENDOR_ID,
  MBOCHS_PCI_VENDOR_ID,
} from './defs';

/** The BAR holding video memory (32-bit, prefetchable, `memsize` bytes). */
export const MBOCHS_MEMORY_BAR = 0;
/** The BAR holding the register page (32-bit, one page). */
export const MBOCHS_MMIO_BAR = 2;

/**
 * mbochs_create_config_space(): qemu stdvga ids (1234:1111, subsystem 1af4:1100), display
 * class, BAR0 the video memory and BAR2 the register page. No capabilities.
 */
export function mbochsConfigSpace(memsize: number): PciConfigSpace {
  const c = new PciConfigSpace(MBOCHS_CONFIG_SPACE_SIZE);
  c.setU16(PCI_VENDOR_ID, MBOCHS_PCI_VENDOR_ID);
  c.setU16(PCI_DEVICE_ID, MBOCHS_PCI_DEVICE_ID);
  c.setU16(PCI_SUBSYSTEM_VENDOR_ID, MBOCHS_PCI_SUBVENDOR_ID);
  c.setU16(PCI_SUBSYSTEM_ID, MBOCHS_PCI_SUBDEVICE_ID);
  c.setU16(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
  c.setU16(PCI_CLASS_DEVICE, PCI_CLASS_DISPLAY_OTHER);
  c.setU8(PCI_REVISION_ID, MBOCHS_PCI_REVISION);
  c.defineBar(MBOCHS_MEMORY_BAR, { size: memsize, prefetch: true });
  c.defineBar(MBOCHS_MMIO_BAR, { size: MBOCHS_MMIO_BAR_SIZE });
  return c;
}

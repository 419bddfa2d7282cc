export {
  Bus,
  type BusOptions,
  Class,
  ClassCompat,
  Device,
  type DeviceOptions,
  Driver,
  type DriverOptions,
  deviceForEachChild,
} from './device';
export type { DmaDirection, DmaMapOps } from './dma';
export { ERRNO, type ErrnoCode, KernelError, kernelError } from './errors';
export {
  type Attribute,
  type AttributeGroup,
  SYSFS_PAGE_SIZE,
  Sysfs,
  type SysfsKind,
  sysfs,
  sysfsJoin,
} from './sysfs';
export { type Uevent, type UeventAction, UeventBus, type UeventListener, uevents } from './uevent';
export {
  cancelWorkSync,
  flushWork,
  registerIrqPoll,
  scheduleWork,
  systemWq,
  Work,
  type WorkFn,
  Workqueue,
} from './workqueue';

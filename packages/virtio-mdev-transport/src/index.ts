export {
  RESET_POLL_LIMIT,
  VirtioMdevDevice,
  virtioMdevConfigOps,
  virtioMdevDeviceOf,
  virtioMdevExit,
  virtioMdevInit,
} from './transport';

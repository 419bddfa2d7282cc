export {
  VHOST_MDEV_PROTOCOL_FEATURES,
  VhostMdevBackend,
  type VhostMdevBackendOptions,
  type VhostMdevEvent,
  type VhostMdevQueueStats,
} from './backend';
export {
  VHOST_MDEV_DRIVER_NAME,
  type VhostMdevOptions,
  type VhostMdevSocket,
  vhostMdevBackendOf,
  vhostMdevExit,
  vhostMdevInit,
  vhostMdevSetSocket,
  vhostMdevSocketOf,
} from './driver';
export { FrontendMemory, type MappedRegion } from './frontend-memory';
export { listenReplacingStale } from './socket';

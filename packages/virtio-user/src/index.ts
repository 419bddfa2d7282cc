export { VhostUserClient } from './client';
export {
  VIRTIO_USER_PROTOCOL_FEATURES,
  VIRTIO_USER_RESET_POLL_LIMIT,
  VirtioUserDevice,
  type VirtioUserOptions,
  type VirtioUserRing,
  virtioUserAdd,
  virtioUserConfigOps,
  virtioUserRemove,
} from './device';
export { UserRam } from './memory';

/**
 * Real vhost-user peers for tests: DPDK's testpmd (backend or frontend) and a Linux guest under
 * QEMU, each found on the machine, started, bounded by a deadline and cleaned up. Tests that need
 * a peer use `describeWithPeers`/`itWithPeers`: skipped with the reason where one is missing,
 * failed instead under `CI=true`.
 */
export {
  type CpioEntry,
  readCpio,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  writeCpio,
} from './cpio';
export {
  buildInitramfs,
  type InitramfsOptions,
  initScript,
  LOG_TAG,
  STATS_TAG,
  VIRTIO_NET_MODULES,
} from './initramfs';
export {
  isMissing,
  isStaticElf,
  kernelDir,
  type MissingPeer,
  missingPeers,
  type Peer,
  type PeerLookup,
  PeerMissingError,
  type PeerName,
  peer,
  peersRequired,
  requirePeer,
  which,
} from './peers';
export { type Exit, PeerProcess, type PeerProcessOptions } from './process';
export {
  consoleText,
  type GuestOptions,
  type GuestResult,
  type GuestStats,
  parseGuestStats,
  parseQemuErrors,
  qemuArgs,
  runLinuxGuest,
} from './qemu';
export {
  type ForwardStats,
  type NicStats,
  negotiatedFeatures,
  parseForwardStats,
  parseNicStats,
  runTestpmd,
  startTestpmd,
  Testpmd,
  type TestpmdOptions,
  type TestpmdResult,
  testpmdArgs,
  vhostBackend,
  virtioUserFrontend,
} from './testpmd';
export { describeWithPeers, itWithPeers } from './vitest';

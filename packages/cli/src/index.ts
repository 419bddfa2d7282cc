export { commands, main } from './cli';
export type { Command, CommandIo } from './io';
export {
  type PktgenDevice,
  type PktgenOptions,
  type PktgenParent,
  type PktgenResult,
  type PktgenStack,
  type PktgenTarget,
  pktgenDeviceList,
  registerPktgenDevice,
  runPktgen,
  type StackOptions,
  setupStack,
} from './pktgen/run';
export {
  setupVhostUserStack,
  type VhostUserStack,
  type VhostUserStackOptions,
} from './pktgen/vhost-user';

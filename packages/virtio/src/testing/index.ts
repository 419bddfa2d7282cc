export {
  LOOPBACK_DEFAULT_FEATURES,
  LOOPBACK_RX_QUEUE,
  LOOPBACK_TX_QUEUE,
  LoopbackNetDevice,
  type LoopbackNetDeviceOptions,
} from './loopback-net';
export {
  createTestVirtioDevice,
  type TestDeviceQueue,
  TestTransport,
  VirtioTestDevice,
  type VirtioTestDeviceOptions,
} from './test-device';
export {
  registerTestDriver,
  type TestDriver,
  type TestDriverBinding,
} from './test-driver';

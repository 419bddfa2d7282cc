import type { MessagePort } from 'node:worker_threads';
import type { SharedMemoryDescriptor } from '@mdev/virtio-ring';
import type { VfInit } from './engine';
import type { VfShared } from './layout';

/** Events from outside the VF's registers: what its PHY sees. */
export type VfPlatformMessage = { op: 'link'; up: boolean };

/** What the VF's engine thread starts with. */
export interface VfWorkerData {
  shared: VfShared;
  /** Host memory the VF may reach at power-on. */
  memory: SharedMemoryDescriptor;
  /** Host memory mapped later (SharedMemoryDescriptor messages), read on a translation miss. */
  iommu: MessagePort;
  /** VfPlatformMessage messages. */
  platform: MessagePort;
  init: VfInit;
}

import type { MessagePort } from 'node:worker_threads';
import type { SharedMemoryDescriptor } from '@mdev/virtio-ring';
import type { VfInit } from './engine';
import type { VfShared } from './layout';

/**
 * How the VF's thread reaches a region of an IOMMU table: the region's SharedArrayBuffer itself,
 * or the fd whose pages `[0, byteLength)` mapped shared are the region's buffer (the thread maps
 * it with @mdev/vhost-user's `mapShared`: external memory cannot be posted). Either way the
 * region's bytes are `[byteOffset, byteOffset + length)` of that buffer.
 */
export type VfMapRegion =
  | { buffer: SharedArrayBuffer; byteOffset: number; length: number }
  | { fd: number; byteLength: number; byteOffset: number; length: number };

/** An IOMMU table entry as posted: bytes `[offset, offset + size)` of region `region`. */
export interface VfMapEntry {
  iova: number;
  size: number;
  region: number;
  offset: number;
}

/**
 * Events from outside the VF's registers: what its PHY sees, and the IOMMU table the platform
 * puts in front of it (`entries` null: none), answered through LINK_IOMMU_SEQ.
 */
export type VfPlatformMessage =
  | { op: 'link'; up: boolean }
  | { op: 'map'; seq: number; regions: VfMapRegion[]; entries: VfMapEntry[] | null };

/** Why an IOMMU table change failed, posted back on the platform port before its answer. */
export interface VfMapFailure {
  seq: number;
  message: string;
}

/** What the VF's engine thread starts with. */
export interface VfWorkerData {
  shared: VfShared;
  /** Host memory the VF may reach at power-on. */
  memory: SharedMemoryDescriptor;
  /** Host memory mapped later (SharedMemoryDescriptor messages), read on a translation miss. */
  iommu: MessagePort;
  /** VfPlatformMessage messages; VfMapFailure messages back. */
  platform: MessagePort;
  init: VfInit;
  /** The module the thread imports `mapShared` and `unmap` from, when an fd region arrives. */
  vhostUser: string;
}

/**
 * A virtio-net VF as the host's PCI side holds it: its BAR (through `bar`), its PCI identity, the
 * interrupt messages it sends, and its engine thread. This is the simulated card; the parent
 * driver (driver.ts) talks to it through `bar` only.
 */
import {
  MessageChannel,
  type MessagePort,
  receiveMessageOnPort,
  type Worker,
} from 'node:worker_threads';
import { KernelError } from '@mdev/driver-core';
import type { MdevVirtioMapEntry, MdevVirtioMapRegion } from '@mdev/mdev-virtio';
import { randomMac } from '@mdev/virtio';
import { type GuestMemory, siblingModule, spawnWorker } from '@mdev/virtio-ring';
import type { VfInit } from './engine';
import { VF_DEFAULT_MTU } from './features';
import {
  allocVfShared,
  LINK_ATTENTION,
  LINK_IOMMU_RESULT,
  LINK_IOMMU_SEQ,
  LINK_IRQ,
  LINK_IRQ_PENDING,
  LINK_STOP,
  VF_PCI_DEVICE_ID,
  VF_PCI_SUBSYSTEM_ID,
  VF_PCI_SUBSYSTEM_VENDOR_ID,
  VF_PCI_VENDOR_ID,
  type VfShared,
} from './layout';
import { VF_MMIO_TIMEOUT_MS, VfBar } from './mmio';
import type {
  VfMapEntry,
  VfMapFailure,
  VfMapRegion,
  VfPlatformMessage,
  VfWorkerData,
} from './vf-protocol';

/** How a VF is made. */
export interface VirtioNetVfOptions {
  /** Host memory the VF reaches by DMA (SharedArrayBuffer regions). */
  memory: GuestMemory;
  /** The largest queue it takes (a power of two, 2-32768); default 256. */
  queueMax?: number;
  /** Its MAC; default a random locally administered one. */
  mac?: Uint8Array;
  /** Its MTU; default 1500. */
  mtu?: number;
  /** Frames per datapath run; default 256. */
  budget?: number;
  /** Offer VIRTIO_F_RING_PACKED; default false. */
  packed?: boolean;
  /**
   * The module the VF's thread imports `mapShared` and `unmap` from when an IOMMU table brings
   * a region it can reach only by its fd; default `@mdev/vhost-user`, an optional peer
   * dependency.
   */
  vhostUser?: string;
}

/** The PCI identity of a function (what its configuration space header says). */
export interface PciIdentity {
  vendor: number;
  device: number;
  subsystemVendor: number;
  subsystem: number;
}

/** Hardware interrupt waits are bounded so a closed VF's loop ends. */
const IRQ_WAIT_MS = 1000;

/**
 * How the VF's thread reaches a region of an IOMMU table: a SharedArrayBuffer is posted as is,
 * external memory (a vhost-user frontend's mapping) by the fd the thread maps itself. EINVAL for
 * a region that is neither: its bytes exist in the host's thread only.
 */
function vfRegion(region: MdevVirtioMapRegion, entry: number): VfMapRegion {
  const { u8, fd } = region;
  const { byteOffset, length } = u8;
  if (u8.buffer instanceof SharedArrayBuffer) return { buffer: u8.buffer, byteOffset, length };
  if (fd !== undefined) return { fd, byteLength: u8.buffer.byteLength, byteOffset, length };
  throw new KernelError(
    'EINVAL',
    `vendor_vf: map entry ${entry}: the VF cannot reach its region, which is neither a ` +
      'SharedArrayBuffer nor given with the fd of its memory',
  );
}

type WaitResult = 'ok' | 'not-equal' | 'timed-out';
// Atomics.waitAsync is ES2024 (Node >= 16); declared here for the ES2022 lib.
type WaitAsync = (
  a: Int32Array,
  i: number,
  v: number,
  t: number,
) => { async: false; value: WaitResult } | { async: true; value: Promise<WaitResult> };

/** One virtio-net VF, powered on: its engine thread runs until `close`. */
export class VirtioNetVf {
  readonly shared: VfShared;
  readonly bar: VfBar;
  readonly pci: PciIdentity = {
    vendor: VF_PCI_VENDOR_ID,
    device: VF_PCI_DEVICE_ID,
    subsystemVendor: VF_PCI_SUBSYSTEM_VENDOR_ID,
    subsystem: VF_PCI_SUBSYSTEM_ID,
  };
  /** The interrupt handler: called on the host's thread with the pending bits (LINK_IRQ_*). */
  onInterrupt: (bits: number) => void = () => {};
  private readonly link: Int32Array;
  private readonly worker: Worker;
  private readonly iommu: MessagePort;
  private readonly platform: MessagePort;
  private readonly memory: GuestMemory;
  private mappedRegions: number;
  private mapSeq = 0;
  private closed = false;

  constructor(options: VirtioNetVfOptions) {
    this.memory = options.memory;
    this.shared = allocVfShared();
    this.link = new Int32Array(this.shared.link);
    this.bar = new VfBar(this.shared);
    const init: VfInit = {
      queueMax: options.queueMax ?? 256,
      mac: options.mac ?? randomMac(),
      mtu: options.mtu ?? VF_DEFAULT_MTU,
      budget: options.budget ?? 256,
      packed: options.packed === true,
    };
    const iommu = new MessageChannel();
    const platform = new MessageChannel();
    this.iommu = iommu.port1;
    this.platform = platform.port1;
    const memory = this.memory.share();
    this.mappedRegions = memory.regions.length;
    const workerData: VfWorkerData = {
      shared: this.shared,
      memory,
      iommu: iommu.port2,
      platform: platform.port2,
      init,
      vhostUser: options.vhostUser ?? '@mdev/vhost-user',
    };
    this.worker = spawnWorker(siblingModule('vf-worker', import.meta.url), {
      workerData,
      transferList: [iommu.port2, platform.port2],
    });
    this.worker.on('error', (err) => {
      process.emitWarning(`vendor_vf: the VF's engine failed: ${String(err)}`);
      this.bar.markGone();
    });
    // The engine's warnings, emitted here as the host's (see vf-worker.ts).
    this.worker.on('message', (m: { warning?: unknown }) => {
      if (typeof m?.warning === 'string') process.emitWarning(m.warning);
    });
    this.worker.unref();
    void this.interruptLoop();
  }

  /**
   * Publishes host memory that appeared since the last call to the VF's IOMMU. The parent
   * driver calls it from its DMA mapping ops, so every address a driver hands the VF is
   * reachable before the VF can see it.
   */
  syncMemory(): void {
    const regions = this.memory.regions;
    if (regions.length === this.mappedRegions || this.closed) return;
    this.mappedRegions = regions.length;
    this.iommu.postMessage(this.memory.share());
  }

  /**
   * Whether the VF's thread keeps the process alive. The driver holds it while a queue is
   * enabled: interrupts arrive through `Atomics.waitAsync`, which does not keep Node's event
   * loop alive, so a program waiting only for a frame in flight would otherwise exit.
   */
  holdProcess(hold: boolean): void {
    if (this.closed) return;
    if (hold) this.worker.ref();
    else this.worker.unref();
  }

  /** The cable: link up or down, as the VF's PHY would report it. */
  setLink(up: boolean): void {
    this.post({ op: 'link', up });
  }

  /** Hands any interrupt the VF raised to `onInterrupt` now (also done by the interrupt loop). */
  pollInterrupts(): void {
    if (Atomics.load(this.link, LINK_IRQ_PENDING) === 0) return;
    const bits = Atomics.exchange(this.link, LINK_IRQ_PENDING, 0);
    if (bits === 0) return;
    try {
      this.onInterrupt(bits);
    } catch (err) {
      // A handler that throws is the host's bug, but it must not end the interrupt loop (a
      // rejection of that unawaited promise would stop Node) nor fail the kick that polled.
      process.emitWarning(`vendor_vf: the interrupt handler failed: ${String(err)}`);
    }
  }

  /**
   * Programs the IOMMU table in front of the VF (null: none, the VF reaches host memory again),
   * and waits until the VF applied it, as an IOMMU invalidation is waited for: each region as
   * its SharedArrayBuffer, or as its fd, which the VF's thread maps itself and unmaps when the
   * table is replaced or the VF powered off. EINVAL for a region that is neither, EBUSY while a
   * queue is enabled (the VF refuses), EOPNOTSUPP when an fd region needs @mdev/vhost-user and it
   * does not load, EIO when the VF does not answer.
   */
  setMap(map: readonly MdevVirtioMapEntry[] | null): void {
    if (this.closed || this.bar.gone) {
      throw new KernelError('EIO', 'vendor_vf: the VF does not answer');
    }
    const regions: VfMapRegion[] = [];
    const index = new Map<MdevVirtioMapRegion, number>();
    let entries: VfMapEntry[] | null = null;
    if (map !== null) {
      entries = map.map((e, i) => {
        let region = index.get(e.region);
        if (region === undefined) {
          region = regions.push(vfRegion(e.region, i)) - 1;
          index.set(e.region, region);
        }
        return { iova: e.iova, size: e.size, region, offset: e.offset };
      });
    }
    this.mapSeq = (this.mapSeq + 1) | 0;
    const seq = this.mapSeq;
    this.post({ op: 'map', seq, regions, entries });
    const deadline = performance.now() + VF_MMIO_TIMEOUT_MS;
    for (;;) {
      const done = Atomics.load(this.link, LINK_IOMMU_SEQ);
      if (done === seq) break;
      if (performance.now() > deadline) {
        this.bar.markGone();
        throw new KernelError('EIO', 'vendor_vf: the VF did not apply its IOMMU table');
      }
      Atomics.wait(this.link, LINK_IOMMU_SEQ, done, 50);
    }
    const result = Atomics.load(this.link, LINK_IOMMU_RESULT);
    if (result < 0) {
      let why = 'the VF refused its IOMMU table';
      for (
        let m = receiveMessageOnPort(this.platform);
        m;
        m = receiveMessageOnPort(this.platform)
      ) {
        const f = m.message as VfMapFailure;
        if (f.seq === seq) why = f.message;
      }
      throw KernelError.fromErrno(result, `vendor_vf: ${why}`);
    }
  }

  /**
   * Powers the VF off: its engine thread ends. Before this returns to its first await, the
   * engine has left its loop and let go of what it mapped (unless it no longer answers).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const answering = !this.bar.gone;
    Atomics.store(this.link, LINK_STOP, 1);
    Atomics.add(this.link, LINK_ATTENTION, 1);
    Atomics.notify(this.link, LINK_ATTENTION);
    // The loop checks the stop word between bounded runs.
    const deadline = performance.now() + VF_MMIO_TIMEOUT_MS;
    while (answering && Atomics.load(this.link, LINK_STOP) === 1) {
      if (performance.now() > deadline) break;
      Atomics.wait(this.link, LINK_STOP, 1, 50);
    }
    Atomics.add(this.link, LINK_IRQ, 1);
    Atomics.notify(this.link, LINK_IRQ);
    this.bar.markGone();
    this.iommu.close();
    this.platform.close();
    await this.worker.terminate();
  }

  private post(msg: VfPlatformMessage): void {
    if (this.closed) return;
    this.platform.postMessage(msg);
    Atomics.add(this.link, LINK_ATTENTION, 1);
    Atomics.notify(this.link, LINK_ATTENTION, 1);
  }

  /** Waits for interrupt messages without blocking the host's thread. */
  private async interruptLoop(): Promise<void> {
    const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
    while (!this.closed) {
      const seen = Atomics.load(this.link, LINK_IRQ);
      this.pollInterrupts();
      const r = waitAsync(this.link, LINK_IRQ, seen, IRQ_WAIT_MS);
      if (r.async) await r.value;
    }
  }
}

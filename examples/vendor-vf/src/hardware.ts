/**
 * A virtio-net VF as the host's PCI side holds it: its BAR (through `bar`), its PCI identity, the
 * interrupt messages it sends, and its engine thread. This is the simulated card; the parent
 * driver (driver.ts) talks to it through `bar` only.
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { randomMac } from '@mdev/virtio';
import { type GuestMemory, siblingModule, spawnWorker } from '@mdev/virtio-ring';
import type { VfInit } from './engine';
import { VF_DEFAULT_MTU } from './features';
import {
  allocVfShared,
  LINK_ATTENTION,
  LINK_IRQ,
  LINK_IRQ_PENDING,
  LINK_STOP,
  VF_PCI_DEVICE_ID,
  VF_PCI_SUBSYSTEM_ID,
  VF_PCI_SUBSYSTEM_VENDOR_ID,
  VF_PCI_VENDOR_ID,
  type VfShared,
} from './layout';
import { VfBar } from './mmio';
import type { VfPlatformMessage, VfWorkerData } from './vf-protocol';

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

  /** Powers the VF off: its engine thread ends. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.link, LINK_STOP, 1);
    Atomics.add(this.link, LINK_ATTENTION, 1);
    Atomics.notify(this.link, LINK_ATTENTION);
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

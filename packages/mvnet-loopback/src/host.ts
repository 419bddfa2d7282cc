/**
 * Where an instance's datapath runs. The ops of the device (device.ts) are written once against
 * `MvnetHost`; two hosts implement it: `InThreadHost` runs the datapath on a driver-core
 * workqueue in the caller's thread (the sample's schedule_work), `MvnetOffload` (offload.ts) in
 * a worker thread over shared memory, as a card's hardware would.
 */
import { KernelError, Work, type Workqueue } from '@mdev/driver-core';
import type { MdevVirtioMapEntry } from '@mdev/mdev-virtio';
import type { AddressSpace, AnyVringhConfig } from '@mdev/virtio-ring';
import { MVNET_RX_QUEUE, MVNET_TX_QUEUE } from './config';
import {
  emptyStats,
  LoopbackDatapath,
  type MvnetQueue,
  type MvnetStats,
  type NetHdrLayout,
} from './datapath';
import { IotlbAddressSpace } from './iotlb';

/**
 * The datapath side of the device, per instance slot (a row of the parent's table, from 0 to
 * maxInstances - 1). The device keeps what the driver programmed (addresses, sizes, callbacks,
 * whether a queue is ready) in its `MvnetQueue`s; the host owns the walk of the rings and each
 * ring's place (the vq state). Every call takes effect before it returns.
 */
export interface MvnetHost {
  /**
   * Starts serving a slot whose queues are `vqs` (receiveq1, transmitq1). The host raises the
   * queues' interrupts through `vqs[i].interrupt()` while the queue is ready, and calls `broken`
   * when the datapath meets a broken ring (it has then stopped the slot's queues). Returns the
   * slot's counters, which stay final once the slot is detached.
   */
  attach(slot: number, vqs: readonly MvnetQueue[], broken: () => void): MvnetStats;
  /** Stops serving the slot: when this returns the host no longer touches its rings. */
  detach(slot: number): void;
  /** The driver notified a ready queue of the slot (kick_vq). */
  kick(slot: number): void;
  /**
   * Enables a queue on `config`, at vq state `lastAvail`, with the header layout of the
   * negotiated features; the result is Vringh.init's (0 or a negative errno).
   */
  ready(
    slot: number,
    queue: number,
    config: AnyVringhConfig,
    lastAvail: number,
    hdr: NetHdrLayout,
  ): number;
  /** Stops a ready queue; it keeps its place in the ring. */
  unready(slot: number, queue: number): void;
  /**
   * A device reset: every queue of the slot stops and forgets its place in the ring, and
   * interrupts or faults raised before it are dropped. When this returns the host no longer
   * touches the slot's rings, which the driver may then free.
   */
  reset(slot: number): void;
  /** The vq state (the last avail index) of a queue. */
  getState(slot: number, queue: number): number;
  /** Sets the vq state of a ready queue. */
  setState(slot: number, queue: number, value: number): void;
  /**
   * Replaces the slot's DMA map (set_map; null clears it), entries as `mdevVirtioSetMap`
   * checked them: from the next ready on, the slot's rings and buffers are read at IOVAs of the
   * map. Called only while no queue of the slot is ready. Throws a KernelError to refuse (EBUSY
   * while the datapath still runs a queue, EINVAL for a region this host cannot reach).
   */
  setMap(slot: number, map: readonly MdevVirtioMapEntry[] | null): void;
  /** Stops the host (the parent goes away); every slot was detached before. */
  close(): Promise<void>;
}

interface InThreadSlot {
  vqs: readonly MvnetQueue[];
  datapath: LoopbackDatapath;
  work: Work;
  /** The slot's DMA map, which its queues read through while one is set. */
  iotlb: IotlbAddressSpace;
}

/**
 * The datapath on a workqueue in the caller's thread: a kick queues the slot's work, which runs
 * `budget` frames and requeues itself while there are more. Interrupts are the queues' callbacks,
 * called from the work.
 */
export class InThreadHost implements MvnetHost {
  private readonly slots = new Map<number, InThreadSlot>();

  /** `memory`: the host memory the queues read while no DMA map is set. */
  constructor(
    private readonly wq: Workqueue,
    private readonly budget: number,
    private readonly memory: AddressSpace,
  ) {}

  attach(slot: number, vqs: readonly MvnetQueue[], broken: () => void): MvnetStats {
    const stats = emptyStats();
    const datapath = new LoopbackDatapath(vqs[MVNET_RX_QUEUE]!, vqs[MVNET_TX_QUEUE]!, stats);
    const work: Work = new Work(() => {
      const result = datapath.run(this.budget);
      if (result === 'more') this.wq.queue(work);
      else if (result === 'broken') broken();
    });
    this.slots.set(slot, { vqs, datapath, work, iotlb: new IotlbAddressSpace(this.memory) });
    return stats;
  }

  detach(slot: number): void {
    const s = this.slots.get(slot);
    if (!s) return;
    void this.wq.cancelSync(s.work);
    this.slots.delete(slot);
  }

  kick(slot: number): void {
    const s = this.slots.get(slot);
    if (s) this.wq.queue(s.work);
  }

  ready(
    slot: number,
    queue: number,
    config: AnyVringhConfig,
    lastAvail: number,
    hdr: NetHdrLayout,
  ): number {
    const s = this.slot(slot);
    const err = s.vqs[queue]!.initRing(config, lastAvail);
    s.datapath.hdr = hdr;
    return err;
  }

  unready(): void {
    // The datapath looks at `ready` of both queues on every run: nothing to stop here.
  }

  reset(slot: number): void {
    const s = this.slot(slot);
    // A queued run would otherwise walk the rings the driver sets up after the reset.
    void this.wq.cancelSync(s.work);
    for (const vq of s.vqs) vq.resetRing();
  }

  getState(slot: number, queue: number): number {
    return this.slot(slot).vqs[queue]!.vrh.getLastAvailIdx();
  }

  setState(slot: number, queue: number, value: number): void {
    this.slot(slot).vqs[queue]!.vrh.setLastAvailIdx(value);
  }

  setMap(slot: number, map: readonly MdevVirtioMapEntry[] | null): void {
    const s = this.slot(slot);
    s.iotlb.setMap(map);
    // Without a map the queues read the host memory directly (see MvnetQueue.readThrough).
    const through = map === null ? this.memory : s.iotlb;
    for (const vq of s.vqs) vq.readThrough(through);
  }

  async close(): Promise<void> {
    for (const slot of [...this.slots.keys()]) this.detach(slot);
  }

  private slot(slot: number): InThreadSlot {
    const s = this.slots.get(slot);
    if (!s) throw new KernelError('ENODEV', `mvnet: slot ${slot} is not attached`);
    return s;
  }
}

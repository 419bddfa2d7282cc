import { KernelError, Work, Workqueue } from '@mdev/driver-core';
import { type AddressSpace, type VirtqueueLike, Vringh } from '@mdev/virtio-ring';
import type { VirtioConfigOps, VqCallback } from '../config-ops';
import type { HostRam } from '../host-memory';
import {
  VirtioDevice,
  virtioConfigChanged,
  vringCreateVirtqueue,
  vringDelVirtqueue,
} from '../virtio';
import {
  featureBit,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_RING_F_EVENT_IDX,
} from '../virtio-config';

/** One queue of a test device, as a device sees it through the transport's set_vq_* calls. */
export interface TestDeviceQueue {
  num: number;
  ready: boolean;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  vringh: Vringh;
  cb: (() => void) | null;
}

/** Options of a VirtioTestDevice. */
export interface VirtioTestDeviceOptions {
  deviceId: number;
  vendorId?: number;
  /** Features the device offers. */
  features: bigint;
  /** Bytes of device config. */
  config?: Uint8Array;
  /** Number of queues. */
  numQueues: number;
  /** get_vq_num_max (256 by default; 0 makes queue setup fail with ENOENT). */
  numMax?: number;
  /** How the device translates ring and buffer addresses (the host memory by default). */
  space?: AddressSpace;
  /** The memory the device's transport allocates rings from. */
  ram: HostRam;
}

/**
 * The device side of a virtio device for tests: status, features, config with a generation
 * counter, and queues read through virtio-ring's Vringh, with knobs to misbehave. A kick
 * schedules `process()` on a workqueue, as a device's datapath would run. Subclasses implement
 * the datapath.
 */
export class VirtioTestDevice {
  readonly deviceId: number;
  readonly vendorId: number;
  /** Features offered; change before the driver binds to test negotiation. */
  deviceFeatures: bigint;
  /** Knob: set_features fails (EINVAL) when the driver accepts any of these bits. */
  refusedFeatures = 0n;
  /** Knob: the device does not keep FEATURES_OK when the driver sets it. */
  clearFeaturesOk = false;
  /** Knob: called in the middle of every config read, to change config under a reader. */
  onConfigRead: ((offset: number, len: number) => void) | null = null;
  status = 0;
  /** The features the driver wrote (set_features). */
  driverFeatures = 0n;
  config: Uint8Array;
  generation = 0;
  numMax: number;
  readonly queues: TestDeviceQueue[];
  readonly ram: HostRam;
  readonly space: AddressSpace;
  /** Status writes and resets, in order, for tests of the core's sequence. */
  readonly statusLog: number[] = [];
  /** Times the device set NEEDS_RESET because a ring was bad. */
  faults = 0;
  protected configCb: (() => void) | null = null;
  protected readonly wq = new Workqueue('virtio-test-device');
  protected readonly work = new Work(() => this.run());

  constructor(opts: VirtioTestDeviceOptions) {
    this.deviceId = opts.deviceId;
    this.vendorId = opts.vendorId ?? 0;
    this.deviceFeatures = opts.features;
    this.config = opts.config ?? new Uint8Array(0);
    this.numMax = opts.numMax ?? 256;
    this.ram = opts.ram;
    this.space = opts.space ?? opts.ram.memory;
    this.queues = [];
    for (let i = 0; i < opts.numQueues; i++) {
      this.queues.push({
        num: 0,
        ready: false,
        descAddr: 0,
        availAddr: 0,
        usedAddr: 0,
        vringh: new Vringh(this.space),
        cb: null,
      });
    }
  }

  getStatus(): number {
    return this.status;
  }

  setStatus(status: number): void {
    this.statusLog.push(status);
    if (status === 0) {
      this.reset();
      return;
    }
    if (this.clearFeaturesOk) status &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    const wasOk = (this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0;
    this.status = status;
    if (!wasOk && status & VIRTIO_CONFIG_S_DRIVER_OK) this.kick();
  }

  /** Device reset: status 0, queues not ready, datapath state dropped. */
  reset(): void {
    this.status = 0;
    this.driverFeatures = 0n;
    for (const q of this.queues) {
      q.ready = false;
      q.cb = null;
    }
    this.configCb = null;
    void this.wq.cancelSync(this.work);
    this.resetDatapath();
  }

  /** set_features: 0, or -EINVAL when the driver accepted a refused bit. */
  setFeatures(features: bigint): number {
    if (features & this.refusedFeatures) return -22;
    if (features & ~this.deviceFeatures) return -22;
    this.driverFeatures = features;
    return 0;
  }

  getConfig(offset: number, buf: Uint8Array): void {
    const half = buf.length >> 1;
    for (let i = 0; i < buf.length; i++) {
      if (i === half && this.onConfigRead) this.onConfigRead(offset, buf.length);
      buf[i] = this.config[offset + i] ?? 0;
    }
  }

  setConfig(offset: number, buf: Uint8Array): void {
    if (offset + buf.length > this.config.length) return;
    this.config.set(buf, offset);
  }

  /** Changes config bytes as the device would: a new generation, then a config interrupt. */
  changeConfig(offset: number, bytes: Uint8Array, interrupt = true): void {
    this.config.set(bytes, offset);
    this.generation++;
    if (interrupt) this.raiseConfigChange();
  }

  /** Raises a config-change interrupt. */
  raiseConfigChange(): void {
    this.configCb?.();
  }

  setConfigCb(cb: (() => void) | null): void {
    this.configCb = cb;
  }

  setVqAddress(index: number, desc: number, avail: number, used: number): number {
    const q = this.queues[index];
    if (!q) return -22;
    q.descAddr = desc;
    q.availAddr = avail;
    q.usedAddr = used;
    return 0;
  }

  setVqNum(index: number, num: number): void {
    const q = this.queues[index];
    if (q) q.num = num;
  }

  setVqCb(index: number, cb: (() => void) | null): void {
    const q = this.queues[index];
    if (q) q.cb = cb;
  }

  setVqReady(index: number, ready: boolean): void {
    const q = this.queues[index];
    if (!q) return;
    if (!ready) {
      q.ready = false;
      return;
    }
    const eventIdx = (this.driverFeatures & featureBit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const err = q.vringh.init({
      num: q.num,
      descAddr: q.descAddr,
      availAddr: q.availAddr,
      usedAddr: q.usedAddr,
      eventIdx,
    });
    q.ready = err === 0;
  }

  getVqReady(index: number): boolean {
    return this.queues[index]?.ready ?? false;
  }

  getVqNumMax(index: number): number {
    return index < this.queues.length ? this.numMax : 0;
  }

  /** A doorbell: schedules the datapath. */
  kickVq(_index: number): void {
    this.kick();
  }

  protected kick(): void {
    if (this.status & VIRTIO_CONFIG_S_DRIVER_OK) this.wq.queue(this.work);
  }

  /** Runs when the datapath work runs; returns true to run again (budget used up). */
  protected process(): boolean {
    return false;
  }

  /** Drops datapath state on reset. */
  protected resetDatapath(): void {}

  /** Marks the device broken as the spec says for a bad ring: NEEDS_RESET and a config interrupt. */
  protected fault(): void {
    this.faults++;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    this.raiseConfigChange();
  }

  /** Signals queue `index` if the driver wants an interrupt for what was completed. */
  protected signal(index: number): void {
    const q = this.queues[index];
    if (q?.ready && q.vringh.needNotify() === 1) q.cb?.();
  }

  private run(): void {
    if (!(this.status & VIRTIO_CONFIG_S_DRIVER_OK)) return;
    if (this.process()) this.wq.queue(this.work);
  }

  /** Resolves once the datapath is idle (for tests). */
  async settle(): Promise<void> {
    for (let i = 0; i < 10_000; i++) {
      await this.wq.flush(this.work);
      await new Promise<void>((r) => setImmediate(r));
      if (!this.work.isPending && !this.work.isRunning) return;
    }
  }
}

/**
 * A transport double for tests (the shape of virtio_mdev's config ops): forwards every config op
 * to a VirtioTestDevice and sets queues up in the order virtio_mdev does.
 */
export class TestTransport implements VirtioConfigOps {
  constructor(readonly device: VirtioTestDevice) {}

  get(_vdev: VirtioDevice, offset: number, buf: Uint8Array): void {
    this.device.getConfig(offset, buf);
  }
  set(_vdev: VirtioDevice, offset: number, buf: Uint8Array): void {
    this.device.setConfig(offset, buf);
  }
  generation(): number {
    return this.device.generation;
  }
  getStatus(): number {
    return this.device.getStatus();
  }
  setStatus(_vdev: VirtioDevice, status: number): void {
    this.device.setStatus(status);
  }
  reset(): void {
    this.device.setStatus(0);
  }
  getFeatures(): bigint {
    return this.device.deviceFeatures;
  }
  finalizeFeatures(vdev: VirtioDevice): void {
    const err = this.device.setFeatures(vdev.features);
    if (err !== 0) throw KernelError.fromErrno(err, 'finalize_features: the device refused');
  }
  busName(): string {
    return 'test-transport';
  }

  findVqs<T = unknown>(
    vdev: VirtioDevice,
    names: readonly (string | null)[],
    callbacks: readonly (VqCallback<T> | null)[],
  ): (VirtqueueLike<T> | null)[] {
    const out: (VirtqueueLike<T> | null)[] = [];
    let index = 0;
    try {
      for (let i = 0; i < names.length; i++) {
        const name = names[i];
        if (name === null || name === undefined) {
          out.push(null);
          continue;
        }
        out.push(this.setupVq<T>(vdev, index++, callbacks[i] ?? null, name));
      }
    } catch (err) {
      this.delVqs(vdev);
      throw err;
    }
    this.device.setConfigCb(() => virtioConfigChanged(vdev));
    return out;
  }

  private setupVq<T>(
    vdev: VirtioDevice,
    index: number,
    callback: VqCallback<T> | null,
    name: string,
  ): VirtqueueLike<T> {
    const dev = this.device;
    if (dev.getVqReady(index)) throw new KernelError('ENOENT', `vq ${index} is already set up`);
    const num = dev.getVqNumMax(index);
    if (num === 0) throw new KernelError('ENOENT', `vq ${index}: the device has no queue`);
    const vq = vringCreateVirtqueue<T>(vdev, {
      index,
      num,
      name,
      callback,
      notify: () => {
        dev.kickVq(index);
        return true;
      },
    });
    if (!vq) throw new KernelError('ENOMEM', `vq ${index}: no memory for the ring`);
    dev.setVqCb(index, () => {
      vq.interrupt();
    });
    dev.setVqNum(index, vq.num);
    if (dev.setVqAddress(index, vq.descAddr, vq.availAddr, vq.usedAddr) !== 0) {
      vringDelVirtqueue(vdev, vq as VirtqueueLike<unknown>);
      throw new KernelError('EINVAL', `vq ${index}: the device refused the ring addresses`);
    }
    dev.setVqReady(index, true);
    return vq;
  }

  delVqs(vdev: VirtioDevice): void {
    for (const vq of [...vdev.vqs]) {
      this.device.setVqReady(vq.index, false);
      vringDelVirtqueue(vdev, vq);
    }
  }
}

/** A VirtioDevice over a TestTransport, ready for registerVirtioDevice. */
export function createTestVirtioDevice(device: VirtioTestDevice): VirtioDevice {
  return new VirtioDevice({
    id: { device: device.deviceId, vendor: device.vendorId },
    config: new TestTransport(device),
    ram: device.ram,
  });
}

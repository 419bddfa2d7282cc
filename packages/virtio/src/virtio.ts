import {
  type Attribute,
  Bus,
  Device,
  type DmaMapOps,
  Driver,
  KernelError,
} from '@mdev/driver-core';
import { createVirtqueue, type VirtqueueLike } from '@mdev/virtio-ring';
import type { VirtioConfigOps, VqCallback } from './config-ops';
import { type HostRam, hostRam } from './host-memory';
import {
  featureBit,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_TRANSPORT_F_END,
  VIRTIO_TRANSPORT_F_START,
} from './virtio-config';
import { VIRTIO_DEV_ANY_ID } from './virtio-ids';

/** Mirrors struct virtio_device_id. */
export interface VirtioDeviceId {
  device: number;
  vendor: number;
}

/** Options of a VirtioDevice (what a transport fills in before register_virtio_device). */
export interface VirtioDeviceOptions {
  id: VirtioDeviceId;
  config: VirtioConfigOps;
  /** The transport-level device (the mdev); its `dmaOps` map the rings with ACCESS_PLATFORM. */
  parent?: Device | null;
  /** The memory rings and driver buffers are allocated from (the system `hostRam` by default). */
  ram?: HostRam;
}

/**
 * Mirrors struct virtio_device: a device on the virtio bus, driven through its transport's
 * `config` ops. A transport creates it (or a subclass), sets `parent`, and calls
 * `registerVirtioDevice`.
 */
export class VirtioDevice extends Device {
  /** The virtio<N> index, -1 until registered. */
  index = -1;
  readonly id: VirtioDeviceId;
  readonly config: VirtioConfigOps;
  /** The negotiated features (vdev->features). */
  features = 0n;
  /** Host memory for rings and driver buffers. */
  readonly ram: HostRam;
  /** The virtqueues the transport created for the device (vdev->vqs). */
  readonly vqs: VirtqueueLike<unknown>[] = [];
  /** Whether config-change callbacks reach the driver (vdev->config_enabled). */
  configEnabled = false;
  /** A config change arrived while callbacks were disabled (vdev->config_change_pending). */
  configChangePending = false;
  /** The driver's private data (vdev->priv). */
  priv: unknown = null;

  constructor(options: VirtioDeviceOptions) {
    super({ name: 'virtio', parent: options.parent ?? null });
    this.id = { device: options.id.device, vendor: options.id.vendor };
    this.config = options.config;
    this.ram = options.ram ?? hostRam;
    this.groups = [{ attrs: virtioDevAttrs(this) }];
  }

  /** The bound virtio driver, if any. */
  get virtioDriver(): VirtioDriver | null {
    return this.driver ? (driverMap.get(this.driver) ?? null) : null;
  }
}

function hex(n: number, width: number): string {
  return `0x${(n >>> 0).toString(16).padStart(width, '0')}`;
}

function virtioDevAttrs(vdev: VirtioDevice): Attribute[] {
  return [
    { name: 'device', mode: 0o444, show: () => hex(vdev.id.device, 4) },
    { name: 'vendor', mode: 0o444, show: () => hex(vdev.id.vendor, 4) },
    { name: 'status', mode: 0o444, show: () => hex(vdev.config.getStatus(vdev), 8) },
    { name: 'modalias', mode: 0o444, show: () => modalias(vdev) },
    {
      // One character per feature bit, bit 0 first, as the kernel's features_show prints them.
      name: 'features',
      mode: 0o444,
      show: () => {
        let s = '';
        for (let i = 0; i < 64; i++) s += (vdev.features >> BigInt(i)) & 1n ? '1' : '0';
        return s;
      },
    },
  ];
}

function modalias(vdev: VirtioDevice): string {
  const h = (n: number) => (n >>> 0).toString(16).toUpperCase().padStart(8, '0');
  return `virtio:d${h(vdev.id.device)}v${h(vdev.id.vendor)}`;
}

/** Mirrors struct virtio_driver. */
export interface VirtioDriver {
  name: string;
  /** The devices it drives; `vendor` VIRTIO_DEV_ANY_ID matches any vendor. */
  idTable: readonly VirtioDeviceId[];
  /** The features it understands: a bit mask, or a list of bit numbers (feature_table). */
  featureTable: bigint | readonly number[];
  /** Checks or trims `vdev.features` before they are finalized; throw to refuse the device. */
  validate?(vdev: VirtioDevice): void;
  probe(vdev: VirtioDevice): void;
  remove(vdev: VirtioDevice): void;
  configChanged?(vdev: VirtioDevice): void;
}

const driverMap = new Map<Driver, VirtioDriver>();
const registeredDrivers = new Map<VirtioDriver, Driver>();

function asVirtio(dev: Device): VirtioDevice {
  if (!(dev instanceof VirtioDevice)) throw new TypeError(`${dev.name} is not a virtio device`);
  return dev;
}

function idMatches(vdev: VirtioDevice, id: VirtioDeviceId): boolean {
  if (id.device !== vdev.id.device && id.device !== VIRTIO_DEV_ANY_ID) return false;
  return id.vendor === VIRTIO_DEV_ANY_ID || id.vendor === vdev.id.vendor;
}

/** Mirrors the virtio bus_type (drivers/virtio/virtio.c): `/sys/bus/virtio`. */
export const virtioBus = new Bus({
  name: 'virtio',
  match(dev, drv) {
    const vdrv = driverMap.get(drv);
    if (!vdrv || !(dev instanceof VirtioDevice)) return false;
    return vdrv.idTable.some((id) => idMatches(dev, id));
  },
  probe: (dev) => virtioDevProbe(asVirtio(dev)),
  remove: (dev) => virtioDevRemove(asVirtio(dev)),
  uevent(dev, env) {
    if (dev instanceof VirtioDevice) env.MODALIAS = modalias(dev);
  },
});

function ensureBus(): void {
  if (!virtioBus.isRegistered) virtioBus.register();
}

const usedIndices = new Set<number>();

function allocIndex(): number {
  let i = 0;
  while (usedIndices.has(i)) i++;
  usedIndices.add(i);
  return i;
}

/** Mirrors virtio_add_status(): ORs `status` into the device status. */
export function virtioAddStatus(vdev: VirtioDevice, status: number): void {
  vdev.config.setStatus(vdev, vdev.config.getStatus(vdev) | status);
}

/** Mirrors virtio_reset_device(). */
export function virtioResetDevice(vdev: VirtioDevice): void {
  vdev.config.reset(vdev);
}

/** Mirrors virtio_device_ready(): sets DRIVER_OK; the driver may use its queues from now on. */
export function virtioDeviceReady(vdev: VirtioDevice): void {
  const status = vdev.config.getStatus(vdev);
  if (status & VIRTIO_CONFIG_S_DRIVER_OK) {
    throw new KernelError('EINVAL', `virtio_device_ready: ${vdev.name} is already ready`);
  }
  vdev.config.setStatus(vdev, status | VIRTIO_CONFIG_S_DRIVER_OK);
}

/** Mirrors virtio_break_device(): every queue of the device is broken from now on. */
export function virtioBreakDevice(vdev: VirtioDevice): void {
  for (const vq of vdev.vqs) vq.markBroken('device broken');
}

/** Mirrors virtio_has_feature(). */
export function virtioHasFeature(vdev: VirtioDevice, bit: number): boolean {
  return (vdev.features & featureBit(bit)) !== 0n;
}

/** Mirrors __virtio_set_bit() (for a driver's validate). */
export function virtioSetBit(vdev: VirtioDevice, bit: number): void {
  vdev.features |= featureBit(bit);
}

/** Mirrors __virtio_clear_bit() (for a driver's validate). */
export function virtioClearBit(vdev: VirtioDevice, bit: number): void {
  vdev.features &= ~featureBit(bit);
}

const RING_TRANSPORT_FEATURES = [
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_ORDER_PLATFORM,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_IN_ORDER,
];

/**
 * Mirrors vring_transport_features(): clears the transport bits (28..40) the ring does not
 * implement. VIRTIO_F_RING_PACKED stays, as in the kernel: @mdev/virtio-ring has both layouts.
 */
export function vringTransportFeatures(vdev: VirtioDevice): void {
  for (let i = VIRTIO_TRANSPORT_F_START; i < VIRTIO_TRANSPORT_F_END; i++) {
    if (!RING_TRANSPORT_FEATURES.includes(i)) virtioClearBit(vdev, i);
  }
}

/**
 * Mirrors virtio_finalize_features(): hands the negotiated features to the device, then (for a
 * VERSION_1 device) sets FEATURES_OK and reads it back. ENODEV when the device clears it.
 */
export function virtioFinalizeFeatures(vdev: VirtioDevice): void {
  vdev.config.finalizeFeatures(vdev);
  if (!virtioHasFeature(vdev, VIRTIO_F_VERSION_1)) return;
  virtioAddStatus(vdev, VIRTIO_CONFIG_S_FEATURES_OK);
  const status = vdev.config.getStatus(vdev);
  if (!(status & VIRTIO_CONFIG_S_FEATURES_OK)) {
    throw new KernelError(
      'ENODEV',
      `virtio: device refuses features: ${vdev.features.toString(16)}`,
    );
  }
}

function tableMask(table: bigint | readonly number[]): bigint {
  if (typeof table === 'bigint') return table;
  let m = 0n;
  for (const bit of table) m |= featureBit(bit);
  return m;
}

function virtioDevProbe(vdev: VirtioDevice): void {
  const drv = vdev.virtioDriver;
  if (!drv) throw new KernelError('ENODEV', `virtio: ${vdev.name} has no virtio driver`);
  // Tell the device we found a driver for it.
  virtioAddStatus(vdev, VIRTIO_CONFIG_S_DRIVER);
  try {
    const deviceFeatures = vdev.config.getFeatures(vdev);
    vdev.features = tableMask(drv.featureTable) & deviceFeatures;
    // The transport bits the device offers are kept for the ring and transport to decide on.
    for (let i = VIRTIO_TRANSPORT_F_START; i < VIRTIO_TRANSPORT_F_END; i++) {
      if (deviceFeatures & featureBit(i)) virtioSetBit(vdev, i);
    }
    vringTransportFeatures(vdev);
    drv.validate?.(vdev);
    virtioFinalizeFeatures(vdev);
    drv.probe(vdev);
    // A driver that did not set DRIVER_OK itself gets it now.
    if (!(vdev.config.getStatus(vdev) & VIRTIO_CONFIG_S_DRIVER_OK)) virtioDeviceReady(vdev);
    virtioConfigEnable(vdev);
  } catch (err) {
    // A driver whose probe failed half-way may have left queues behind.
    if (vdev.vqs.length > 0) {
      vdev.config.reset(vdev);
      vdev.config.delVqs(vdev);
    }
    virtioAddStatus(vdev, VIRTIO_CONFIG_S_FAILED);
    throw err;
  }
}

function virtioDevRemove(vdev: VirtioDevice): void {
  const drv = vdev.virtioDriver;
  virtioConfigDisable(vdev);
  drv?.remove(vdev);
  // The driver should have reset the device and deleted its queues; make sure of both.
  if (vdev.config.getStatus(vdev) !== 0) vdev.config.reset(vdev);
  if (vdev.vqs.length > 0) vdev.config.delVqs(vdev);
  vdev.features = 0n;
  // Acknowledge the device's existence again.
  virtioAddStatus(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE);
}

/** Mirrors virtio_config_enable(): delivers a change that arrived while disabled. */
export function virtioConfigEnable(vdev: VirtioDevice): void {
  vdev.configEnabled = true;
  if (vdev.configChangePending) {
    vdev.configChangePending = false;
    vdev.virtioDriver?.configChanged?.(vdev);
  }
}

/** Mirrors virtio_config_disable(). */
export function virtioConfigDisable(vdev: VirtioDevice): void {
  vdev.configEnabled = false;
}

/**
 * Mirrors virtio_config_changed(): the transport calls it on a config interrupt; the driver's
 * configChanged runs only while config callbacks are enabled (else it is delivered on enable).
 */
export function virtioConfigChanged(vdev: VirtioDevice): void {
  if (!vdev.configEnabled) {
    vdev.configChangePending = true;
    return;
  }
  vdev.virtioDriver?.configChanged?.(vdev);
}

/**
 * Mirrors register_virtio_device(): names the device virtio<N>, resets it, sets ACKNOWLEDGE and
 * adds it to the virtio bus (a matching driver binds now).
 */
export function registerVirtioDevice(vdev: VirtioDevice): void {
  ensureBus();
  if (vdev.index >= 0) throw new KernelError('EEXIST', `${vdev.name} is already registered`);
  const index = allocIndex();
  vdev.index = index;
  vdev.name = `virtio${index}`;
  vdev.bus = virtioBus;
  vdev.configEnabled = false;
  vdev.configChangePending = false;
  try {
    // Start from a reset device, whatever a previous driver left behind. A device that does not
    // read back 0 afterwards cannot be driven (the transport's reset warns; it does not throw, as
    // it also runs on teardown paths that must complete).
    vdev.config.reset(vdev);
    if (vdev.config.getStatus(vdev) !== 0) {
      throw new KernelError('EIO', `${vdev.name}: the device does not complete its reset`);
    }
    virtioAddStatus(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    vdev.add();
  } catch (err) {
    usedIndices.delete(index);
    vdev.index = -1;
    throw err;
  }
}

/** Mirrors unregister_virtio_device(): unbinds the driver, removes the device, frees the index. */
export function unregisterVirtioDevice(vdev: VirtioDevice): void {
  const index = vdev.index;
  if (index < 0) return;
  vdev.del();
  usedIndices.delete(index);
  vdev.index = -1;
  vdev.put();
}

/** Mirrors register_virtio_driver(): binds every matching device. EBUSY when registered twice. */
export function registerVirtioDriver(drv: VirtioDriver): void {
  ensureBus();
  if (registeredDrivers.has(drv)) {
    throw new KernelError('EBUSY', `virtio driver ${drv.name} is already registered`);
  }
  const core = new Driver({ name: drv.name, bus: virtioBus });
  driverMap.set(core, drv);
  registeredDrivers.set(drv, core);
  try {
    core.register();
  } catch (err) {
    driverMap.delete(core);
    registeredDrivers.delete(drv);
    throw err;
  }
}

/** Mirrors unregister_virtio_driver(): removes it from every device it drives. */
export function unregisterVirtioDriver(drv: VirtioDriver): void {
  const core = registeredDrivers.get(drv);
  if (!core) return;
  core.unregister();
  driverMap.delete(core);
  registeredDrivers.delete(drv);
}

/** The virtio devices on the bus, in the order they were added. */
export function virtioDevices(): VirtioDevice[] {
  return virtioBus.isRegistered
    ? virtioBus.devices().filter((d): d is VirtioDevice => d instanceof VirtioDevice)
    : [];
}

const MAX_GENERATION_RETRIES = 1000;

/**
 * Reads config bytes with the generation retry loop (the kernel's __virtio_cread_many): a read
 * that straddles a config change is retried until the generation is stable. EIO when the device
 * keeps changing its config.
 */
export function virtioCreadBytes(vdev: VirtioDevice, offset: number, buf: Uint8Array): void {
  for (let tries = 0; tries < MAX_GENERATION_RETRIES; tries++) {
    const gen = vdev.config.generation(vdev);
    vdev.config.get(vdev, offset, buf);
    if (vdev.config.generation(vdev) === gen) return;
  }
  throw new KernelError('EIO', `virtio: config of ${vdev.name} never settled`);
}

// Config space is little-endian for VERSION_1 and guest-native for legacy devices; both are
// little-endian on the hosts virtio-ring supports.
function cread(vdev: VirtioDevice, offset: number, len: number): DataView {
  const buf = new Uint8Array(len);
  virtioCreadBytes(vdev, offset, buf);
  return new DataView(buf.buffer);
}

/** Mirrors virtio_cread8(). */
export function virtioCread8(vdev: VirtioDevice, offset: number): number {
  return cread(vdev, offset, 1).getUint8(0);
}
/** Mirrors virtio_cread16() (little-endian). */
export function virtioCread16(vdev: VirtioDevice, offset: number): number {
  return cread(vdev, offset, 2).getUint16(0, true);
}
/** Mirrors virtio_cread32() (little-endian). */
export function virtioCread32(vdev: VirtioDevice, offset: number): number {
  return cread(vdev, offset, 4).getUint32(0, true);
}
/** Mirrors virtio_cread64() (little-endian), read as one generation-consistent unit. */
export function virtioCread64(vdev: VirtioDevice, offset: number): bigint {
  return cread(vdev, offset, 8).getBigUint64(0, true);
}

function cwrite(
  vdev: VirtioDevice,
  offset: number,
  len: number,
  fill: (dv: DataView) => void,
): void {
  const buf = new Uint8Array(len);
  fill(new DataView(buf.buffer));
  vdev.config.set(vdev, offset, buf);
}

/** Mirrors virtio_cwrite8(). */
export function virtioCwrite8(vdev: VirtioDevice, offset: number, value: number): void {
  cwrite(vdev, offset, 1, (dv) => dv.setUint8(0, value));
}
/** Mirrors virtio_cwrite16() (little-endian). */
export function virtioCwrite16(vdev: VirtioDevice, offset: number, value: number): void {
  cwrite(vdev, offset, 2, (dv) => dv.setUint16(0, value, true));
}
/** Mirrors virtio_cwrite32() (little-endian). */
export function virtioCwrite32(vdev: VirtioDevice, offset: number, value: number): void {
  cwrite(vdev, offset, 4, (dv) => dv.setUint32(0, value, true));
}
/** Mirrors virtio_cwrite64() (little-endian). */
export function virtioCwrite64(vdev: VirtioDevice, offset: number, value: bigint): void {
  cwrite(vdev, offset, 8, (dv) => dv.setBigUint64(0, value, true));
}

/** Options of vringCreateVirtqueue. */
export interface VringCreateOptions<T> {
  index: number;
  /** The device's maximum queue size. */
  num: number;
  mayReduceNum?: boolean;
  /** The device's ring alignment (vring_align); the descriptor table and device area start at it. */
  align?: number;
  /** The transport's kick; false when the device is gone. */
  notify: (vq: VirtqueueLike<T>) => boolean;
  callback: VqCallback<T> | null;
  name: string;
}

/**
 * Mirrors vring_use_dma_api(): with VIRTIO_F_ACCESS_PLATFORM the rings and buffers are mapped
 * through the DMA ops of the transport device (`vdev.parent.dmaOps`); else addresses are identity.
 */
export function vringDmaOps(vdev: VirtioDevice): DmaMapOps {
  const platform = vdev.parent?.dmaOps ?? null;
  if (virtioHasFeature(vdev, VIRTIO_F_ACCESS_PLATFORM) && platform) return platform;
  return vdev.ram.dma;
}

/**
 * Mirrors vring_create_virtqueue() for a transport: a virtqueue in the device's host memory,
 * packed when VIRTIO_F_RING_PACKED was negotiated and split otherwise, mapped as `vringDmaOps`
 * says, with EVENT_IDX, INDIRECT_DESC and IN_ORDER as negotiated. The queue joins `vdev.vqs`.
 * Null when the ring cannot be allocated (ENOMEM).
 */
export function vringCreateVirtqueue<T>(
  vdev: VirtioDevice,
  opts: VringCreateOptions<T>,
): VirtqueueLike<T> | null {
  const vq = createVirtqueue<T>({
    packed: virtioHasFeature(vdev, VIRTIO_F_RING_PACKED),
    index: opts.index,
    num: opts.num,
    mayReduceNum: opts.mayReduceNum ?? true,
    align: opts.align,
    memory: vdev.ram.memory,
    dma: vringDmaOps(vdev),
    eventIdx: virtioHasFeature(vdev, VIRTIO_RING_F_EVENT_IDX),
    indirect: virtioHasFeature(vdev, VIRTIO_RING_F_INDIRECT_DESC),
    inOrder: virtioHasFeature(vdev, VIRTIO_F_IN_ORDER),
    notify: opts.notify,
    callback: opts.callback,
    name: opts.name,
  });
  if (vq) vdev.vqs.push(vq as VirtqueueLike<unknown>);
  return vq;
}

/** Mirrors vring_del_virtqueue(): frees the ring and takes it out of `vdev.vqs`. */
export function vringDelVirtqueue(vdev: VirtioDevice, vq: VirtqueueLike<unknown>): void {
  const i = vdev.vqs.indexOf(vq);
  if (i >= 0) vdev.vqs.splice(i, 1);
  vq.delete();
}

/** Mirrors virtio_find_vqs(). */
export function virtioFindVqs<T = unknown>(
  vdev: VirtioDevice,
  names: readonly (string | null)[],
  callbacks: readonly (VqCallback<T> | null)[],
): (VirtqueueLike<T> | null)[] {
  return vdev.config.findVqs<T>(vdev, names, callbacks);
}

import { RingForward } from '@mdev/virtio-ring';
import type { HostRam } from '../host-memory';
import {
  featureSet,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
} from '../virtio-config';
import { VIRTIO_ID_NET } from '../virtio-ids';
import {
  ETH_ALEN,
  VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MTU,
  VIRTIO_NET_CONFIG_SIZE,
  VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_MRG_RXBUF_SIZE,
  VIRTIO_NET_HDR_NUM_BUFFERS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_S_LINK_UP,
} from '../virtio-net';
import { VirtioTestDevice } from './test-device';

/** The receive queue index of a single-pair virtio-net device (receiveq1, virtio 1.2 5.1.2). */
export const LOOPBACK_RX_QUEUE = 0;
/** The transmit queue index (transmitq1). */
export const LOOPBACK_TX_QUEUE = 1;

/** Everything the loopback device offers unless told otherwise. */
export const LOOPBACK_DEFAULT_FEATURES = featureSet(
  VIRTIO_F_VERSION_1,
  VIRTIO_F_ANY_LAYOUT,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_MRG_RXBUF,
);

/** Options of a LoopbackNetDevice. */
export interface LoopbackNetDeviceOptions {
  ram: HostRam;
  features?: bigint;
  mac?: Uint8Array;
  mtu?: number;
  linkUp?: boolean;
  numMax?: number;
  /** Looks at the transmit queue per datapath run before it requeues itself. */
  budget?: number;
}

/**
 * A virtio-net test device: every frame sent on the transmit queue comes back on the receive
 * queue. The device strips the driver's header and writes its own as virtio 1.x says (no
 * offloads: flags 0, GSO_NONE; `num_buffers` = the receive buffers used with MRG_RXBUF, else 1).
 * With MRG_RXBUF a frame spans as many receive buffers as it needs. A frame waits on the transmit
 * queue while receive buffers are short; nothing is dropped, except a frame that cannot fit one
 * receive buffer without MRG_RXBUF (counted in `oversize`). A run makes at most `budget` looks
 * at the transmit queue (`RingForward` says what counts).
 */
export class LoopbackNetDevice extends VirtioTestDevice {
  /** Frames looped back. */
  frames = 0;
  /** Receive buffers filled (more than `frames` when frames span mergeable buffers). */
  rxBuffers = 0;
  /** Frames dropped because a receive buffer could not hold them (no MRG_RXBUF). */
  oversize = 0;
  /** Transmit chains shorter than the header (counted, completed, not looped). */
  malformed = 0;
  readonly budget: number;
  // The datapath: @mdev/virtio-ring's forward step, set up for the negotiated header each run.
  private readonly fwd = new RingForward();

  constructor(opts: LoopbackNetDeviceOptions) {
    const config = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
    super({
      deviceId: VIRTIO_ID_NET,
      features: opts.features ?? LOOPBACK_DEFAULT_FEATURES,
      config,
      numQueues: 2,
      numMax: opts.numMax ?? 256,
      ram: opts.ram,
    });
    this.budget = opts.budget ?? 64;
    const mac = opts.mac ?? Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
    config.set(mac.subarray(0, ETH_ALEN), VIRTIO_NET_CONFIG_MAC);
    const dv = new DataView(config.buffer);
    dv.setUint16(VIRTIO_NET_CONFIG_STATUS, opts.linkUp === false ? 0 : VIRTIO_NET_S_LINK_UP, true);
    dv.setUint16(VIRTIO_NET_CONFIG_MTU, opts.mtu ?? 1500, true);
  }

  /** Changes the link state in config (VIRTIO_NET_S_LINK_UP) and raises a config interrupt. */
  setLink(up: boolean): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, up ? VIRTIO_NET_S_LINK_UP : 0, true);
    this.changeConfig(VIRTIO_NET_CONFIG_STATUS, b);
  }

  private negotiated(bit: number): boolean {
    return (this.driverFeatures & (1n << BigInt(bit))) !== 0n;
  }

  protected override process(): boolean {
    const rxq = this.queues[LOOPBACK_RX_QUEUE]!;
    const txq = this.queues[LOOPBACK_TX_QUEUE]!;
    if (!rxq.ready || !txq.ready) return false;
    const mrg = this.negotiated(VIRTIO_NET_F_MRG_RXBUF);
    const hdrLen =
      mrg || this.negotiated(VIRTIO_F_VERSION_1)
        ? VIRTIO_NET_HDR_MRG_RXBUF_SIZE
        : VIRTIO_NET_HDR_SIZE;
    const fwd = this.fwd;
    // A transmit chain must carry a header and at least one byte of frame; the driver's header
    // is not forwarded: the device writes the receive header (zeros, and num_buffers when the
    // header has it: the receive buffers used with MRG_RXBUF, else 1).
    fwd.minLen = hdrLen + 1;
    fwd.deviceHeader = hdrLen;
    fwd.numBuffersAt = hdrLen === VIRTIO_NET_HDR_MRG_RXBUF_SIZE ? VIRTIO_NET_HDR_NUM_BUFFERS : -1;
    fwd.mergeable = mrg;
    // Held, not dropped, while receive buffers are short.
    const result = fwd.run(txq.vringh, rxq.vringh, this.budget, true);
    this.frames += fwd.rxFrames;
    this.rxBuffers += fwd.rxChains;
    this.oversize += fwd.oversize;
    this.malformed += fwd.malformed;
    if (fwd.txNotify) txq.cb?.();
    if (fwd.rxNotify) rxq.cb?.();
    if (result === 'broken') {
      this.fault();
      return false;
    }
    // 'idle' and 'starved' asked for the kick that will run the datapath again.
    return result === 'more';
  }
}

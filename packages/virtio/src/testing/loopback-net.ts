import { VringhIov } from '@mdev/virtio-ring';
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
  /** Frames per datapath run before it requeues itself. */
  budget?: number;
}

/**
 * A virtio-net test device: every frame sent on the transmit queue comes back on the receive
 * queue. The device strips the driver's header and writes its own as virtio 1.x says (no
 * offloads: flags 0, GSO_NONE; `num_buffers` = the receive buffers used with MRG_RXBUF, else 1).
 * With MRG_RXBUF a frame spans as many receive buffers as it needs. A frame waits on the transmit
 * queue while receive buffers are short; nothing is dropped, except a frame that cannot fit one
 * receive buffer without MRG_RXBUF (counted in `oversize`).
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
  private readonly riov = new VringhIov(16);
  private readonly wiovs: VringhIov[] = [];
  private heads = new Uint32Array(64);
  private lens = new Uint32Array(64);
  private readonly hdr = new Uint8Array(VIRTIO_NET_HDR_MRG_RXBUF_SIZE);
  private readonly hdrLegacy = this.hdr.subarray(0, VIRTIO_NET_HDR_SIZE);
  // A frame taken from the transmit queue that waits for receive buffers, and the buffers held.
  private txHeld = false;
  private txHead = 0;
  private rxHeld = 0;
  private rxCap = 0;

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

  protected override resetDatapath(): void {
    this.txHeld = false;
    this.rxHeld = 0;
    this.rxCap = 0;
  }

  private wiov(k: number): VringhIov {
    while (this.wiovs.length <= k) this.wiovs.push(new VringhIov(8));
    if (k >= this.heads.length) {
      const h = new Uint32Array(this.heads.length * 2);
      h.set(this.heads);
      this.heads = h;
      const l = new Uint32Array(this.lens.length * 2);
      l.set(this.lens);
      this.lens = l;
    }
    return this.wiovs[k]!;
  }

  protected override process(): boolean {
    const rxq = this.queues[LOOPBACK_RX_QUEUE]!;
    const txq = this.queues[LOOPBACK_TX_QUEUE]!;
    if (!rxq.ready || !txq.ready) return false;
    const tx = txq.vringh;
    const rx = rxq.vringh;
    const mrg = this.negotiated(VIRTIO_NET_F_MRG_RXBUF);
    const hdrLen =
      mrg || this.negotiated(VIRTIO_F_VERSION_1)
        ? VIRTIO_NET_HDR_MRG_RXBUF_SIZE
        : VIRTIO_NET_HDR_SIZE;
    let done = 0;
    let blockedOnRx = false;
    let txDone = 0;
    let rxDone = 0;
    tx.notifyDisable();
    while (done < this.budget) {
      if (!this.txHeld) {
        const r = tx.getDesc(this.riov, null);
        if (r === 0) break;
        if (r < 0) {
          this.fault();
          return false;
        }
        this.txHead = tx.head;
        this.txHeld = true;
      }
      const frameLen = this.riov.total - hdrLen;
      if (frameLen <= 0) {
        this.malformed++;
        tx.complete(this.txHead, 0);
        this.txHeld = false;
        txDone++;
        continue;
      }
      const need = hdrLen + frameLen;
      while (this.rxCap < need && (mrg || this.rxHeld === 0)) {
        const w = this.wiov(this.rxHeld);
        const g = rx.getDesc(null, w);
        if (g === 0) break;
        if (g < 0) {
          this.fault();
          return false;
        }
        this.heads[this.rxHeld++] = rx.head;
        this.rxCap += w.total;
      }
      if (this.rxCap < need) {
        if (!mrg && this.rxHeld === 1) {
          // The one receive buffer cannot hold the frame: drop it, keep the buffer for the next.
          this.oversize++;
          tx.complete(this.txHead, 0);
          this.txHeld = false;
          txDone++;
          continue;
        }
        blockedOnRx = true;
        break;
      }
      // The driver's header is not forwarded; the device writes the receive header.
      if (skipBytes(this.riov, hdrLen) !== hdrLen) this.malformed++;
      this.hdr.fill(0);
      if (hdrLen === VIRTIO_NET_HDR_MRG_RXBUF_SIZE) {
        const n = mrg ? this.rxHeld : 1;
        this.hdr[VIRTIO_NET_HDR_NUM_BUFFERS] = n & 0xff;
        this.hdr[VIRTIO_NET_HDR_NUM_BUFFERS + 1] = n >> 8;
      }
      const w0 = this.wiovs[0]!;
      rx.push(w0, hdrLen === this.hdr.length ? this.hdr : this.hdrLegacy);
      for (let k = 0; k < this.rxHeld; k++) {
        this.lens[k] = (k === 0 ? hdrLen : 0) + rx.copy(this.riov, this.wiovs[k]!);
      }
      // virtio_wmb is inside complete: the data above is visible before the used index.
      tx.complete(this.txHead, 0);
      rx.completeMulti(this.heads, this.lens, this.rxHeld);
      txDone++;
      rxDone += this.rxHeld;
      this.rxBuffers += this.rxHeld;
      this.txHeld = false;
      this.rxHeld = 0;
      this.rxCap = 0;
      this.frames++;
      done++;
    }
    if (txDone > 0) this.signal(LOOPBACK_TX_QUEUE);
    if (rxDone > 0) this.signal(LOOPBACK_RX_QUEUE);
    if (done === this.budget) return true;
    // Idle: ask for kicks again, and run again if buffers arrived meanwhile.
    if (blockedOnRx) return !rx.notifyEnable();
    return !tx.notifyEnable();
  }
}

/** Advances `iov` past `n` bytes without copying them; returns the bytes skipped. */
function skipBytes(iov: VringhIov, n: number): number {
  let done = 0;
  while (done < n && iov.i < iov.used) {
    const left = iov.len[iov.i]! - iov.consumed;
    const step = Math.min(left, n - done);
    done += step;
    iov.consumed += step;
    if (iov.consumed === iov.len[iov.i]) {
      iov.i++;
      iov.consumed = 0;
    }
  }
  return done;
}

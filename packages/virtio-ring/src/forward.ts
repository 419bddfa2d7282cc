import { VringhIov } from './vringh';
import type { VringhLike } from './vringh-packed';

/**
 * How a forward run ended: `idle`, the TX ring is empty and asks for a kick; `more`, the budget
 * ran out with work perhaps left (run again); `starved`, a frame waits on the TX ring for a
 * receive buffer (RX kicks are enabled); `broken`, a ring fault (`error`, `brokenRing`).
 */
export type ForwardResult = 'idle' | 'more' | 'starved' | 'broken';

/**
 * One ring-to-ring forward step, the datapath of a loopback device (or of any backend that moves
 * frames from a transmit ring to a receive ring): take a TX chain, find an RX chain, copy,
 * complete both, and say whether each ring's driver wants an interrupt. Nothing here knows a
 * device: what differs between devices is an option below, and what happened is counted in the
 * fields of the last run, which the device adds to its own statistics.
 *
 * A TX chain shorter than `minLen` is completed (length 0) and counted in `malformed`, without
 * taking a receive buffer. A frame is copied whole into one RX chain (or, `mergeable`, into as
 * many as it needs); a frame larger than the one RX chain it finds is dropped and counted in
 * `oversize`, and the RX chain is given back unused: cut short, it would look like a real shorter
 * frame. When no RX chain is there, the frame is dropped (completed, counted in `noRxBuffer`), or
 * with `holdWhenNoRx` left on the TX ring, RX kicks enabled, and the run ends `starved`. TX
 * chains complete with length 0, RX chains with the bytes written. Each ring's used index is
 * stored once, when the run ends (`Vringh.completeDeferred`): the driver sees a run's
 * completions together.
 *
 * The budget: every look at the TX ring counts one, whether it finds a chain (forwarded,
 * dropped, malformed: all alike) or not (the look again after asking for a kick included), and
 * the run stops before a look once `budget` looks were made (`>=`: any budget ends a run). Of the
 * two rules the loopbacks had, this is vendor-vf's, taken because it bounds a run whatever the
 * driver does: under the other (only chains count), a driver that moves avail->idx back and
 * forth can make every look find nothing and every kick request find something, and keep the
 * thread, and every device it serves, in one run for ever. The cost is one extra look per run.
 *
 * With `rx === tx` the step serves a request/response queue (an echo device): each chain's
 * readable bytes are copied into its own writable part, as far as they fit, and the chain
 * completes with the bytes written.
 */
export class RingForward {
  /** The shortest TX chain that is a frame (a virtio-net header, say); 0 takes any. */
  minLen = 0;
  /**
   * Bytes at the start of a frame the device writes itself, as zeros, instead of copying the
   * driver's (a virtio-net receive header with no offloads); 0 copies frames as they are.
   */
  deviceHeader = 0;
  /**
   * Offset of a le16 in the RX copy that the step sets to the number of RX chains the frame took
   * (virtio-net's num_buffers, virtio 1.2 5.1.6.4.1), when the copy covers it; -1 for none.
   */
  numBuffersAt = -1;
  /** A frame may span several RX chains (VIRTIO_NET_F_MRG_RXBUF). */
  mergeable = false;

  // What the last run did.
  /** TX chains completed (forwarded or dropped) and their readable bytes. */
  txChains = 0;
  txBytes = 0;
  /** Frames delivered, the RX chains they took and the bytes written into them. */
  rxFrames = 0;
  rxChains = 0;
  rxBytes = 0;
  /** Frames dropped: no receive buffer, shorter than `minLen`, larger than the RX chain. */
  noRxBuffer = 0;
  malformed = 0;
  oversize = 0;
  /** Whether the TX and RX drivers want an interrupt (needNotify) after the run. */
  txNotify = false;
  rxNotify = false;
  /** The negative errno of the fault when the run ended `broken`, and on which ring. */
  error = 0;
  brokenRing: 'tx' | 'rx' | '' = '';

  private readonly r = new VringhIov();
  private readonly wiovs: VringhIov[] = [new VringhIov()];
  private heads = new Uint32Array(8);
  private lens = new Uint32Array(8);
  private zeroHeader = new Uint8Array(0);

  /** Runs the step until the TX ring is empty, the budget is spent, RX starves or a ring breaks. */
  run(tx: VringhLike, rx: VringhLike, budget: number, holdWhenNoRx = false): ForwardResult {
    const r = this.r;
    const w = this.wiovs[0]!;
    const minLen = this.minLen;
    const numBuffersAt = this.numBuffersAt;
    const echo = rx === tx;
    const echoW = echo ? w : null;
    // Frames are copied as they are (no header of the device's own).
    const asIs = this.deviceHeader === 0;
    let n = 0;
    // Counted locally and stored once per run.
    let txChains = 0;
    let txBytes = 0;
    let rxFrames = 0;
    let rxChains = 0;
    let rxBytes = 0;
    let noRxBuffer = 0;
    let malformed = 0;
    let oversize = 0;
    let result: ForwardResult = 'idle';
    this.error = 0;
    this.brokenRing = '';
    tx.notifyDisable();
    // RX kicks are wanted only while a held frame waits for a buffer (below); otherwise each
    // refill by a driver that polls its RX ring would wake the device for nothing.
    if (!echo) rx.notifyDisable();
    for (;;) {
      if (n >= budget) {
        result = 'more';
        break;
      }
      n++;
      const got = tx.getDesc(r, echoW);
      if (got === 0) {
        // Ask for a kick, then look once more: the driver may have added a chain meanwhile.
        if (tx.notifyEnable()) break;
        tx.notifyDisable();
        continue;
      }
      if (got < 0) {
        this.error = got;
        this.brokenRing = 'tx';
        result = 'broken';
        break;
      }
      const len = r.total;
      if (echo) {
        const written = tx.copy(r, w);
        tx.completeDeferred(tx.head, written);
        txChains++;
        txBytes += len;
        rxFrames++;
        rxChains++;
        rxBytes += written;
        continue;
      }
      if (len < minLen) {
        // Not a frame (virtio-net: every packet starts with a header, virtio 1.2 5.1.6.2). It
        // must not cost the driver a receive buffer.
        tx.completeDeferred(tx.head, 0);
        txChains++;
        txBytes += len;
        malformed++;
        continue;
      }
      let rgot = rx.getDesc(null, w);
      if (rgot === 0 && holdWhenNoRx === true && !rx.notifyEnable()) {
        // A receive buffer came while kicks were being asked for.
        rx.notifyDisable();
        rgot = rx.getDesc(null, w);
      }
      if (rgot === 1 && asIs === true && w.total >= len) {
        // The common case: the frame, as it is, into the one RX chain it fits.
        const written = tx.copy(r, w);
        // Written before the run publishes the buffer (needNotify below).
        if (numBuffersAt >= 0 && written >= numBuffersAt + 2) w.storeLe16(numBuffersAt, 1);
        tx.completeDeferred(tx.head, 0);
        rx.completeDeferred(rx.head, written);
        txChains++;
        txBytes += len;
        rxFrames++;
        rxChains++;
        rxBytes += written;
        continue;
      }
      let held = rgot;
      this.heads[0] = rx.head;
      if (rgot === 1 && w.total < len && this.mergeable === true) {
        held = this.gather(rx, len, holdWhenNoRx);
      }
      if (held < 0) {
        tx.abandon(1);
        this.error = held;
        this.brokenRing = 'rx';
        result = 'broken';
        break;
      }
      if (held === 0) {
        if (holdWhenNoRx === true) {
          // Kicks on the RX ring are enabled: the driver's refill ends the wait.
          tx.abandon(1);
          result = 'starved';
          break;
        }
        tx.completeDeferred(tx.head, 0);
        txChains++;
        txBytes += len;
        noRxBuffer++;
        continue;
      }
      if (held === 1 && w.total < len) {
        rx.abandon(1);
        tx.completeDeferred(tx.head, 0);
        txChains++;
        txBytes += len;
        oversize++;
        continue;
      }
      let hdr = 0;
      if (this.deviceHeader > 0) {
        hdr = skip(r, this.deviceHeader);
        if (this.zeroHeader.length !== hdr) this.zeroHeader = new Uint8Array(hdr);
        rx.push(w, this.zeroHeader);
      }
      if (held === 1) {
        const written = hdr + tx.copy(r, w);
        // Written before the run publishes the buffer (needNotify below).
        if (numBuffersAt >= 0 && written >= numBuffersAt + 2) w.storeLe16(numBuffersAt, 1);
        tx.completeDeferred(tx.head, 0);
        rx.completeDeferred(this.heads[0]!, written);
        rxBytes += written;
      } else {
        let written = 0;
        for (let k = 0; k < held; k++) {
          const l = (k === 0 ? hdr : 0) + tx.copy(r, this.wiovs[k]!);
          this.lens[k] = l;
          written += l;
        }
        if (numBuffersAt >= 0 && this.lens[0]! >= numBuffersAt + 2) w.storeLe16(numBuffersAt, held);
        tx.completeDeferred(tx.head, 0);
        rx.completeMulti(this.heads, this.lens, held);
        rxBytes += written;
      }
      txChains++;
      txBytes += len;
      rxFrames++;
      rxChains += held;
    }
    this.txChains = txChains;
    this.txBytes = txBytes;
    this.rxFrames = rxFrames;
    this.rxChains = rxChains;
    this.rxBytes = rxBytes;
    this.noRxBuffer = noRxBuffer;
    this.malformed = malformed;
    this.oversize = oversize;
    this.txNotify = tx.needNotify() === 1;
    this.rxNotify = echo ? this.txNotify : rx.needNotify() === 1;
    return result;
  }

  /**
   * Takes more RX chains after the first (in `wiovs[0]`, head in `heads[0]`) until they hold
   * `len` bytes. Returns the chains held, 0 when too few came (all given back; with `hold`, RX
   * kicks are then enabled), or a negative errno.
   */
  private gather(rx: VringhLike, len: number, hold: boolean): number {
    let held = 1;
    let cap = this.wiovs[0]!.total;
    while (cap < len) {
      const w = this.wiov(held);
      let got = rx.getDesc(null, w);
      if (got === 0 && hold === true && !rx.notifyEnable()) {
        rx.notifyDisable();
        got = rx.getDesc(null, w);
      }
      if (got < 0) return got;
      if (got === 0) {
        rx.abandon(held);
        return 0;
      }
      this.heads[held++] = rx.head;
      cap += w.total;
    }
    return held;
  }

  private wiov(k: number): VringhIov {
    while (this.wiovs.length <= k) this.wiovs.push(new VringhIov());
    if (k >= this.heads.length) {
      const heads = new Uint32Array(this.heads.length * 2);
      heads.set(this.heads);
      this.heads = heads;
      const lens = new Uint32Array(this.lens.length * 2);
      lens.set(this.lens);
      this.lens = lens;
    }
    return this.wiovs[k]!;
  }
}

/** Moves `iov` past `n` bytes without copying them; returns the bytes skipped. */
function skip(iov: VringhIov, n: number): number {
  let done = 0;
  while (done < n && iov.i < iov.used) {
    const step = Math.min(iov.len[iov.i]! - iov.consumed, n - done);
    done += step;
    iov.consumed += step;
    if (iov.consumed === iov.len[iov.i]) {
      iov.i++;
      iov.consumed = 0;
    }
  }
  return done;
}

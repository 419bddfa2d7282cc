import { randomUUID } from 'node:crypto';
import { sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDeviceRemove, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { type MvnetLoopback, mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { hostRam } from '@mdev/virtio';
import { virtioMdevExit, virtioMdevInit } from '@mdev/virtio-mdev-transport';
import {
  NETDEV_TX_BUSY,
  type NetDevice,
  netdevList,
  registerVirtioNetDriver,
  unregisterVirtioNetDriver,
  VirtNet,
} from '@mdev/virtio-net';
import {
  frameIntact,
  frameSeq,
  initFrame,
  MAX_FRAME,
  MIN_FRAME,
  SEQ_OFFSET,
  stampFrame,
} from './frame';
import { PcapWriter } from './pcap';

export const MVNET_TYPE_PATH =
  '/sys/devices/virtual/mvnet_loopback/mvnet_loopback/mdev_supported_types/mvnet_loopback-virtio';

/** What a pktgen run does. */
export interface PktgenOptions {
  /** Frames to send (ignored when `duration` is set). */
  count: number;
  /** Seconds to send for, instead of a count. */
  duration?: number;
  /** Frame size in bytes, 60 to 1514. */
  size: number;
  /** Frames per burst: the doorbell rings once per burst. */
  burst: number;
  /** Verify every received frame's content (order is always checked). */
  verify: boolean;
  /** Write received frames to this pcap file. */
  pcap?: string;
  /** Called about every 200 ms with the frames sent and received so far. */
  onProgress?: (sent: number, received: number, target: number) => void;
}

/** The figures of a run. */
export interface PktgenResult {
  device: string;
  uuid: string;
  size: number;
  tx: number;
  rx: number;
  dropped: number;
  corrupted: number;
  reordered: number;
  lost: number;
  seconds: number;
  mpps: number;
  gbps: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
}

/** The stack pktgen runs on: mvnet_loopback, the transport, virtio-net, one mdev and its netdev. */
export interface PktgenStack {
  mvnet: MvnetLoopback;
  mdev: MdevDevice;
  netdev: NetDevice;
  uuid: string;
  teardown(): void;
}

/**
 * Sets the stack up the way the kernel documentation does: the parent is registered, the
 * transport and virtio-net are loaded, `echo $UUID > .../create`, virtio0 appears, virtio-net
 * binds and its net device is opened.
 */
export function setupStack(uuid: string = randomUUID()): PktgenStack {
  virtioMdevInit();
  registerVirtioNetDriver();
  const mvnet = mvnetLoopbackInit({ memory: hostRam.memory, dma: hostRam.dma });
  const teardownModules = () => {
    mvnet.exit();
    unregisterVirtioNetDriver();
    virtioMdevExit();
    mdevVirtioExit();
  };
  try {
    sysfs.write(`${MVNET_TYPE_PATH}/create`, `${uuid}\n`);
    const mdev = mdevDevices().find((m) => m.uuid === uuid)!;
    const netdev = netdevList().find((d) => d instanceof VirtNet && d.vdev.parent === mdev);
    if (!netdev) throw new Error(`pktgen: no net device bound to mdev ${uuid}`);
    netdev.open();
    return {
      mvnet,
      mdev,
      netdev,
      uuid,
      teardown() {
        if (netdev.isUp) netdev.stop();
        if (mdev.isAdded) mdevDeviceRemove(mdev);
        teardownModules();
      },
    };
  } catch (err) {
    teardownModules();
    throw err;
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Sends frames with sequence numbers through the net device and checks every frame that comes
 * back: order always, content unless `verify` is off. Ends when every sent frame is accounted
 * for (received or dropped by the device) or nothing moved for two seconds.
 */
export async function runPktgen(stack: PktgenStack, opts: PktgenOptions): Promise<PktgenResult> {
  const { netdev, mvnet, mdev } = stack;
  if (
    !Number.isInteger(opts.size) ||
    opts.size < MIN_FRAME ||
    opts.size > Math.min(MAX_FRAME, netdev.maxFrameLen)
  ) {
    throw new RangeError(`pktgen: --size must be ${MIN_FRAME} to ${MAX_FRAME}`);
  }
  if (!Number.isInteger(opts.burst) || opts.burst < 1)
    throw new RangeError('pktgen: --burst must be >= 1');
  const mac = netdev.mac;
  const frame = new Uint8Array(opts.size);
  initFrame(frame, mac);
  const pcap = opts.pcap ? new PcapWriter(opts.pcap) : null;
  const deviceStats = mvnet.stateOf(mdev).stats;
  const droppedBefore = deviceStats.txDropped;

  let rx = 0;
  let rxBytes = 0;
  let corrupted = 0;
  let reordered = 0;
  let expected = 0;
  let lastRxAt = 0;
  netdev.onReceive = (buf, offset, length) => {
    rx++;
    rxBytes += length;
    lastRxAt = performance.now();
    if (length < SEQ_OFFSET + 4) {
      corrupted++;
      return;
    }
    const seq = frameSeq(buf, offset);
    if (seq < expected) reordered++;
    else expected = seq + 1;
    if (opts.verify && !frameIntact(buf, offset, length, opts.size, mac)) corrupted++;
    pcap?.write(buf, offset, length);
  };

  const heapBefore = process.memoryUsage().heapUsed;
  const target = opts.duration ? Number.POSITIVE_INFINITY : opts.count;
  const start = performance.now();
  const stopAt = opts.duration ? start + opts.duration * 1000 : Number.POSITIVE_INFINITY;
  let tx = 0;
  let lastProgress = start;
  let wake: (() => void) | null = null;
  netdev.onTxWake = () => {
    wake?.();
    wake = null;
  };
  const netBefore = netdev.stats;
  // Frames the device found no receive buffer for, plus those the driver gave up on (a broken
  // queue, or a device removed mid-run).
  const dropped = () => {
    const s = netdev.stats;
    return (
      deviceStats.txDropped -
      droppedBefore +
      s.txDropped -
      netBefore.txDropped +
      s.rxDropped -
      netBefore.rxDropped
    );
  };

  while (tx < target && performance.now() < stopAt && netdev.isUp) {
    let n = 0;
    while (n < opts.burst && tx < target) {
      if (opts.verify) stampFrame(frame, tx);
      else {
        frame[SEQ_OFFSET] = tx >>> 24;
        frame[SEQ_OFFSET + 1] = (tx >>> 16) & 0xff;
        frame[SEQ_OFFSET + 2] = (tx >>> 8) & 0xff;
        frame[SEQ_OFFSET + 3] = tx & 0xff;
      }
      const more = n < opts.burst - 1 && tx < target - 1;
      if (netdev.xmit(frame, more) === NETDEV_TX_BUSY) break;
      tx++;
      n++;
    }
    netdev.flush();
    if (n === 0 && netdev.txStopped) {
      // The ring is full: wait for the wake callback (or the next turn, whichever is first).
      await Promise.race([new Promise<void>((r) => (wake = r)), nextTurn()]);
    } else {
      await nextTurn();
    }
    const now = performance.now();
    if (opts.onProgress && now - lastProgress >= 200) {
      lastProgress = now;
      opts.onProgress(tx, rx, target);
    }
  }
  // Drain: wait until every frame is received or dropped, or nothing moves for two seconds.
  let lastSeen = rx + dropped();
  let idleSince = performance.now();
  while (rx + dropped() < tx && netdev.isUp) {
    await nextTurn();
    const seen = rx + dropped();
    const now = performance.now();
    if (seen !== lastSeen) {
      lastSeen = seen;
      idleSince = now;
    } else if (now - idleSince > 2000) break;
  }
  const end = lastRxAt > start ? lastRxAt : performance.now();
  netdev.onReceive = null;
  netdev.onTxWake = null;
  await pcap?.close();
  const seconds = (end - start) / 1000;
  const drops = dropped();
  return {
    device: netdev.name,
    uuid: stack.uuid,
    size: opts.size,
    tx,
    rx,
    dropped: drops,
    corrupted,
    reordered,
    lost: tx - rx - drops,
    seconds,
    mpps: seconds > 0 ? rx / seconds / 1e6 : 0,
    gbps: seconds > 0 ? (rxBytes * 8) / seconds / 1e9 : 0,
    heapBeforeBytes: heapBefore,
    heapAfterBytes: process.memoryUsage().heapUsed,
  };
}

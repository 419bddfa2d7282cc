import { randomUUID } from 'node:crypto';
import { sysfs, Work, Workqueue } from '@mdev/driver-core';
import { type MdevDevice, mdevDeviceRemove, mdevDevices } from '@mdev/mdev-core';
import { mdevVirtioExit } from '@mdev/mdev-virtio';
import { type MvnetLoopback, type MvnetStats, mvnetLoopbackInit } from '@mdev/mvnet-loopback';
import { type HostRam, hostRam } from '@mdev/virtio';
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
  FramePattern,
  initFrame,
  MAX_FRAME,
  MIN_FRAME,
  SEQ_OFFSET,
  seqBefore,
  writeSeq,
} from './frame';
import { PcapWriter } from './pcap';

// What the sender and the receive handler use per frame, as module constants: an imported
// binding is loaded through its module cell and checked for a hole on every use (and a function
// compared before every call), where V8 folds a module constant into the code.
const TX_BUSY = NETDEV_TX_BUSY;
const SEQ_END = SEQ_OFFSET + 4;
const seqIsBefore = seqBefore;

export const MVNET_TYPE_PATH =
  '/sys/devices/virtual/mvnet_loopback/mvnet_loopback/mdev_supported_types/mvnet_loopback-virtio';

/** What a pktgen run does. */
export interface PktgenOptions {
  /** Frames to send (ignored when `duration` is set). */
  count: number;
  /** Seconds to send for, instead of a count. */
  duration?: number;
  /** Frame size in bytes, 60 to `frameSizeLimit(netdev)` (1514, or less on a smaller MTU). */
  size: number;
  /** Frames per burst: the doorbell rings once per burst. */
  burst: number;
  /** Verify every received frame's content (order is always checked). */
  verify: boolean;
  /**
   * Write received frames to this pcap file (opened first: PcapError if it cannot be). A FIFO
   * is opened once it has a reader; `onPcapWait` is called if the run has to wait for one.
   */
  pcap?: string;
  /** Called once when `pcap` is a FIFO no process reads yet, before waiting for a reader. */
  onPcapWait?: () => void;
  /**
   * Stops the run when aborted: no frame is sent after it, the frames in flight are drained and
   * the result (with `interrupted` set) counts what was sent and received so far.
   */
  signal?: AbortSignal;
  /**
   * Called about every 200 ms with the frames sent and received so far, the frames to send
   * (Infinity with a `duration`) and the seconds since sending began.
   */
  onProgress?: (sent: number, received: number, target: number, elapsed: number) => void;
}

/** The figures of a run. */
export interface PktgenResult {
  /** The parent driver pktgen ran over, by its `--device` name (e.g. `mvnet_loopback`). */
  parent: string;
  /** The net device the frames went through (e.g. `eth0`). */
  netdev: string;
  /** The mdev under the net device; empty over a device of another kind (`via` says which). */
  uuid: string;
  /** What the net device is, when it is no mdev: `vhost-user /run/sock`. */
  via?: string;
  /** Why the device went away before the run ended (a vhost-user backend that hung up). */
  gone?: string;
  /** Probe frames sent before the run to see the path was live (not in `tx`; a peer counts them). */
  probes?: number;
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
  /** The run was stopped by `signal` before it sent every frame it was asked to. */
  interrupted: boolean;
  /** The pcap file written (`pcap` option): its path and the frames written to it. */
  pcap?: { path: string; frames: number };
}

/** How the stack is built. */
export interface StackOptions {
  /** The parent driver to run over (see `registerPktgenDevice`); default `mvnet_loopback`. */
  device?: string;
  /** Run the device's datapath in a worker thread (worker mode). */
  offload?: boolean;
  /** The device's largest queue (a power of two, 2 to 32768; default 256). */
  queueSize?: number;
  /**
   * The ring layout: `packed` has the device offer VIRTIO_F_RING_PACKED, which virtio-net
   * accepts (virtio 1.2 2.8); default `split`.
   */
  ring?: 'split' | 'packed';
}

/** A registered parent driver, as pktgen uses it. */
export interface PktgenParent {
  /** The sysfs directory of the mdev type pktgen creates its device through. */
  typePath: string;
  /**
   * Frames the device dropped (a TX frame with no RX buffer to land in) for this mdev. Asked
   * once while the mdev exists; it must keep answering (the final count) after the mdev is
   * removed, so a run cut short by a removal still adds up.
   */
  txDropped(mdev: MdevDevice): number;
  /** Unregisters the parent driver (which removes its mdevs). */
  exit(): void;
}

/**
 * A parent driver pktgen can run over (`mdev pktgen --device NAME`): `init` registers it with
 * the kernel's host memory (`hostRam` of @mdev/virtio) and the stack's options.
 */
export interface PktgenDevice {
  /** One line for `--help`. */
  summary: string;
  init(options: StackOptions): PktgenParent;
}

/** The mvnet_loopback parent as pktgen holds it (tools and tests reach the device through it). */
interface MvnetParent extends PktgenParent {
  mvnet: MvnetLoopback;
}

const isMvnetParent = (p: PktgenParent): p is MvnetParent => 'mvnet' in p;

const mvnetDevice: PktgenDevice = {
  summary: 'the mvnet_loopback sample: every transmitted frame comes back',
  init(options): MvnetParent {
    // The counters of each mdev, held so they can still be read after the mdev is removed.
    const kept = new WeakMap<MdevDevice, MvnetStats>();
    const mvnet = mvnetLoopbackInit({
      memory: hostRam.memory,
      dma: hostRam.dma,
      offload: options.offload,
      queueSize: options.queueSize,
      packed: options.ring === 'packed',
    });
    return {
      typePath: MVNET_TYPE_PATH,
      txDropped(mdev) {
        let stats = kept.get(mdev);
        if (!stats) {
          stats = mvnet.stateOf(mdev).stats;
          kept.set(mdev, stats);
        }
        return stats.txDropped;
      },
      exit: () => mvnet.exit(),
      mvnet,
    };
  },
};

const pktgenDevices = new Map<string, PktgenDevice>([['mvnet_loopback', mvnetDevice]]);

/** Makes a parent driver available to pktgen as `--device name`. EEXIST-like error if taken. */
export function registerPktgenDevice(name: string, device: PktgenDevice): void {
  if (pktgenDevices.has(name)) throw new Error(`pktgen: a device named ${name} is registered`);
  pktgenDevices.set(name, device);
}

/** The devices pktgen can run over, by name. */
export function pktgenDeviceList(): [string, PktgenDevice][] {
  return [...pktgenDevices.entries()];
}

/** What `runPktgen` needs of the device it runs over: a net device and the device's counts. */
export interface PktgenTarget {
  /** The name the parent driver is registered under (`--device`), e.g. `mvnet_loopback`. */
  device: string;
  netdev: NetDevice;
  /** The mdev under the net device, or empty (then `via` says what the device is). */
  uuid: string;
  via?: string;
  /**
   * Frames the device dropped so far (a TX frame with no RX buffer to land in). It must keep
   * answering (the final count) after the device is gone, so a run cut short still adds up.
   */
  deviceDropped(): number;
  /** The memory the driver's buffers are in (the frame pattern goes beside them); hostRam. */
  ram?: HostRam;
  /**
   * Most frames in flight (sent and not yet back or dropped): a device that drops what finds
   * the receive ring full (testpmd's io forwarding does) loses nothing while the window is below
   * the ring's size. Unbounded by default: mvnet_loopback holds a frame until a buffer is there.
   */
  window?: number;
  /** Why the device went away, once it has (null before): the run ends then, with the counts. */
  gone?(): string | null;
  /** Probe frames sent before the run to see the path was live (reported, not in `tx`). */
  probes?: number;
}

/** The stack pktgen runs on: a parent driver, the transport, virtio-net, one mdev and its netdev. */
export interface PktgenStack extends PktgenTarget {
  /** The name the parent driver is registered under (`--device`), e.g. `mvnet_loopback`. */
  device: string;
  /** The parent driver. */
  parent: PktgenParent;
  /** The mvnet_loopback parent when that is the device, else null. */
  mvnet: MvnetLoopback | null;
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
export function setupStack(uuid: string = randomUUID(), options: StackOptions = {}): PktgenStack {
  const name = options.device ?? 'mvnet_loopback';
  const device = pktgenDevices.get(name);
  if (!device) {
    throw new RangeError(
      `pktgen: no device '${name}' (known: ${[...pktgenDevices.keys()].join(', ')})`,
    );
  }
  virtioMdevInit();
  registerVirtioNetDriver();
  let parent: PktgenParent;
  try {
    parent = device.init(options);
  } catch (err) {
    unregisterVirtioNetDriver();
    virtioMdevExit();
    mdevVirtioExit();
    throw err;
  }
  const teardownModules = () => {
    parent.exit();
    unregisterVirtioNetDriver();
    virtioMdevExit();
    mdevVirtioExit();
  };
  try {
    sysfs.write(`${parent.typePath}/create`, `${uuid}\n`);
    const mdev = mdevDevices().find((m) => m.uuid === uuid)!;
    const netdev = netdevList().find((d) => d instanceof VirtNet && d.vdev.parent === mdev);
    if (!netdev) throw new Error(`pktgen: no net device bound to mdev ${uuid}`);
    netdev.open();
    return {
      device: name,
      deviceDropped: () => parent.txDropped(mdev),
      parent,
      mvnet: isMvnetParent(parent) ? parent.mvnet : null,
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

/**
 * How often a sender stopped on a full ring looks again without a TX wake: only a device that
 * went away or an interface taken down leaves it waiting that long.
 */
const STALL_CHECK_MS = 10;

/** The workqueue the sender runs on (the pktgen kthread). */
const pktgenWq = new Workqueue('pktgen');

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The largest frame pktgen sends over `netdev`: 1514 bytes, or its maximum frame if smaller. */
export function frameSizeLimit(netdev: NetDevice): number {
  return Math.min(MAX_FRAME, netdev.maxFrameLen);
}

/**
 * Sends frames with sequence numbers through the net device and checks every frame that comes
 * back: order always, content unless `verify` is off. Ends when every sent frame is accounted
 * for (received or dropped by the device) or nothing moved for two seconds.
 */
export async function runPktgen(stack: PktgenTarget, opts: PktgenOptions): Promise<PktgenResult> {
  const { netdev } = stack;
  const ram = stack.ram ?? hostRam;
  const limit = frameSizeLimit(netdev);
  if (!Number.isInteger(opts.size) || opts.size < MIN_FRAME || opts.size > limit) {
    throw new RangeError(`pktgen: --size must be an integer from ${MIN_FRAME} to ${limit}`);
  }
  if (!Number.isInteger(opts.burst) || opts.burst < 1)
    throw new RangeError('pktgen: --burst must be an integer >= 1');
  const mac = netdev.mac;
  const size = opts.size;
  const frame = new Uint8Array(size);
  initFrame(frame, mac);
  // The prepared frames live in host RAM, beside the driver's buffers, so that stamping and
  // checking are copies and compares within one memory (see FramePattern).
  const patternBytes = FramePattern.bytesFor(size);
  const patternAddr = ram.alloc(patternBytes, 64);
  const pattern = new FramePattern(
    size,
    mac,
    patternAddr === null ? undefined : ram.memory.view(patternAddr, patternBytes),
  );
  let pcap: PcapWriter | null = null;
  let result: PktgenResult;
  try {
    // Opened before the first frame: an unwritable path fails the run at once.
    if (opts.pcap !== undefined) {
      pcap = await PcapWriter.open(opts.pcap, { onWait: opts.onPcapWait, signal: opts.signal });
    }
    result = await sendAndCheck(stack, opts, pattern, frame, pcap);
  } catch (err) {
    try {
      pcap?.close();
    } catch {
      // The run's own error is the one to report.
    }
    throw err;
  } finally {
    if (patternAddr !== null) ram.free(patternAddr);
  }
  // A write that failed during the run is reported here (PcapError).
  if (pcap) {
    pcap.close();
    result.pcap = { path: pcap.path, frames: pcap.frames };
  }
  return result;
}

async function sendAndCheck(
  stack: PktgenTarget,
  opts: PktgenOptions,
  pattern: FramePattern,
  frame: Uint8Array,
  pcap: PcapWriter | null,
): Promise<PktgenResult> {
  const { netdev } = stack;
  const size = opts.size;
  const window = stack.window ?? Number.POSITIVE_INFINITY;
  const gone = stack.gone ?? (() => null);
  const { verify, burst } = opts;
  // Frames sent so far; frame `tx` is built straight into the driver's transmit buffer, as the
  // kernel's pktgen builds its skb where the NIC reads it.
  let tx = 0;
  const build = verify
    ? (buf: Uint8Array, offset: number) => pattern.stampAt(buf, offset, tx)
    : (buf: Uint8Array, offset: number) => {
        buf.set(frame, offset);
        writeSeq(buf, offset, tx);
      };
  const droppedBefore = stack.deviceDropped();

  let rx = 0;
  let rxBytes = 0;
  let corrupted = 0;
  let reordered = 0;
  let expected = 0;
  netdev.onReceive = (buf, offset, length) => {
    rx++;
    rxBytes += length;
    if (length < SEQ_END) {
      corrupted++;
      return;
    }
    const seq = pattern.seqOf(buf, offset);
    // Both in 32 bits, as the sequence field is: tx goes past 2^32 on a long enough run.
    if (seqIsBefore(seq, expected)) reordered++;
    else expected = (seq + 1) >>> 0;
    if (verify && !pattern.intact(buf, offset, length)) corrupted++;
    pcap?.write(buf, offset, length);
  };

  const heapBefore = process.memoryUsage().heapUsed;
  const target = opts.duration ? Number.POSITIVE_INFINITY : opts.count;
  const start = performance.now();
  const stopAt = opts.duration ? start + opts.duration * 1000 : Number.POSITIVE_INFINITY;
  let lastProgress = start;
  const netBefore = netdev.stats;
  // Frames the device found no receive buffer for, plus those the driver gave up on (a broken
  // queue, or a device removed mid-run).
  const dropped = () => {
    const s = netdev.stats;
    return (
      stack.deviceDropped() -
      droppedBefore +
      s.txDropped -
      netBefore.txDropped +
      s.rxDropped -
      netBefore.rxDropped
    );
  };

  // The sender is a work item on the thread's worker pool, like the kernel's pktgen thread: a
  // burst per run, then it requeues itself, so the device's work and the NAPI poll its interrupt
  // schedules run between bursts in the same event-loop turn.
  let interrupted = false;
  let onAbort: (() => void) | null = null;
  await new Promise<void>((resolve) => {
    // Armed while the ring is full: the TX wake requeues the sender, and this timer does too in
    // case no wake comes because the interface went down or the device went away.
    let watchdog: NodeJS.Timeout | undefined;
    const requeue = () => {
      clearTimeout(watchdog);
      watchdog = undefined;
      pktgenWq.queue(sender);
    };
    const sender = new Work(() => {
      if (
        interrupted ||
        !(tx < target && netdev.isUp) ||
        (opts.duration && performance.now() >= stopAt) ||
        gone() !== null
      ) {
        netdev.onTxWake = null;
        clearTimeout(watchdog);
        resolve();
        return;
      }
      let n = 0;
      // The window: frames sent and not yet back or dropped (rx and drops move in NAPI, between
      // two runs of the sender, so this holds for the whole burst).
      const end =
        window === Number.POSITIVE_INFINITY ? target : Math.min(target, rx + dropped() + window);
      while (n < burst && tx < end) {
        const more = n < burst - 1 && tx < end - 1;
        if (netdev.xmitWith(size, build, more) === TX_BUSY) break;
        tx++;
        n++;
      }
      netdev.flush();
      if (opts.onProgress && (tx & 0x3fff) < n) {
        const now = performance.now();
        if (now - lastProgress >= 200) {
          lastProgress = now;
          opts.onProgress(tx, rx, target, (now - start) / 1000);
        }
      }
      if (n === 0 && netdev.txStopped) {
        // A full ring: wait for the TX wake (the device completed frames).
        watchdog ??= setTimeout(requeue, STALL_CHECK_MS);
        return;
      }
      pktgenWq.queue(sender);
    });
    netdev.onTxWake = requeue;
    // Ctrl-C: the sender stops at its next run (now, if it waits on a full ring).
    onAbort = () => {
      interrupted = true;
      requeue();
    };
    if (opts.signal?.aborted) interrupted = true;
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    pktgenWq.queue(sender);
  });
  if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  // Drain: wait until every frame is received or dropped, or nothing moves for two seconds.
  let lastSeen = rx + dropped();
  let idleSince = performance.now();
  let end = performance.now();
  while (rx + dropped() < tx && netdev.isUp && gone() === null) {
    await nextTurn();
    const seen = rx + dropped();
    const now = performance.now();
    if (seen !== lastSeen) {
      lastSeen = seen;
      idleSince = now;
      end = now;
    } else if (now - idleSince > 2000) break;
  }
  netdev.onReceive = null;
  netdev.onTxWake = null;
  const seconds = (end - start) / 1000;
  const drops = dropped();
  const why = gone();
  return {
    parent: stack.device,
    netdev: netdev.name,
    uuid: stack.uuid,
    ...(stack.via === undefined ? {} : { via: stack.via }),
    ...(why === null ? {} : { gone: why }),
    ...(stack.probes === undefined ? {} : { probes: stack.probes }),
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
    interrupted,
  };
}

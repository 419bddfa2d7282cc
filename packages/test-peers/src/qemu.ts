/**
 * A Linux guest under QEMU (TCG: no KVM here) whose virtio-net device is a vhost-user frontend
 * on a unix socket: the guest's own virtio_net driver sends and receives through the backend
 * listening there.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildInitramfs, type InitramfsOptions, LOG_TAG, STATS_TAG } from './initramfs';
import { requirePeer } from './peers';
import { type Exit, PeerProcess } from './process';

/** eth0's counters as the guest read them from `/sys/class/net/eth0/statistics`. */
export interface GuestStats {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
  rxDropped: number;
  txDropped: number;
}

export interface GuestOptions {
  /** The vhost-user backend's socket (QEMU connects to it). */
  socket: string;
  /** Bound on the whole run (default 90 s); on expiry QEMU is killed and the run throws. */
  timeoutMs?: number;
  /** Offers VIRTIO_F_RING_PACKED (`packed=on`). */
  packed?: boolean;
  /** Guest memory in MiB (default 512); shared (memfd) as vhost-user requires. */
  memMb?: number;
  /** The device's MAC address (default QEMU's). */
  mac?: string;
  /** A prebuilt initramfs, or options for `buildInitramfs`. */
  initramfs?: Buffer | InitramfsOptions;
  /** The kernel image (default: the kernel peer). */
  kernel?: string;
  /** Extra QEMU arguments, appended. */
  qemuArgs?: readonly string[];
  /** Called once QEMU is started, with its process (to kill it mid-run, say). */
  onStart?: (qemu: PeerProcess) => void;
}

export interface GuestResult {
  stats: GuestStats;
  /** The serial console. */
  log: string;
  exit: Exit;
  /** From spawning QEMU to its exit. */
  durationMs: number;
  /** The init script's progress and error lines (`mdev-guest: ...`). */
  events: string[];
  /**
   * What QEMU itself reported (its `qemu-system-x86_64: ...` lines): a vhost-user backend that
   * went away shows here as "Unexpected end-of-file" and "Failed to set msg fds".
   */
  qemuErrors: string[];
}

/**
 * The serial console as lines of text: without carriage returns and without the terminal
 * escapes SeaBIOS and the kernel print (a screen clear can precede the init script's first line).
 */
export function consoleText(raw: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the escapes are what is removed
  return raw.replace(/\x1b(?:\[[0-9;?]*[A-Za-z]|[A-Za-z])/g, '').replaceAll('\r', '');
}

/** QEMU's own messages in the console log (`qemu-system-x86_64: ...`), without the prefix. */
export function parseQemuErrors(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => /^qemu-system-[\w-]+: /.test(l))
    .map((l) => l.slice(l.indexOf(': ') + 2));
}

/** Parses the guest's counter line; undefined when the log has none. */
export function parseGuestStats(log: string): GuestStats | undefined {
  const line = log.split('\n').find((l) => l.includes(`${STATS_TAG} `));
  if (!line) return undefined;
  const v = (k: string) => {
    const m = new RegExp(`\\b${k}=(\\d+)`).exec(line);
    if (!m?.[1]) throw new Error(`guest stats line without ${k}: ${line}`);
    return Number(m[1]);
  };
  return {
    rxPackets: v('rx_packets'),
    txPackets: v('tx_packets'),
    rxBytes: v('rx_bytes'),
    txBytes: v('tx_bytes'),
    rxDropped: v('rx_dropped'),
    txDropped: v('tx_dropped'),
  };
}

/** The QEMU command line for a guest on `socket` (exported for the README and for tests). */
export function qemuArgs(opts: {
  socket: string;
  kernel: string;
  initrd: string;
  memMb?: number;
  packed?: boolean;
  mac?: string;
}): string[] {
  const mem = opts.memMb ?? 512;
  // romfile=: no iPXE option ROM, whose banner and prompt cost seconds under TCG.
  const dev = ['virtio-net-pci', 'netdev=n0', 'vectors=0', 'romfile='];
  if (opts.packed) dev.push('packed=on');
  if (opts.mac) dev.push(`mac=${opts.mac}`);
  return [
    '-nographic',
    '-no-reboot',
    '-m',
    `${mem}`,
    '-kernel',
    opts.kernel,
    '-initrd',
    opts.initrd,
    '-append',
    'console=ttyS0 panic=-1 quiet',
    '-object',
    `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    '-numa',
    'node,memdev=mem',
    '-chardev',
    // A comma in a QEMU option value is written twice.
    `socket,id=c0,path=${opts.socket.replaceAll(',', ',,')}`,
    '-netdev',
    'vhost-user,id=n0,chardev=c0',
    // vectors=0: no MSI-X. QEMU 7.2 under TCG crashes in msix_set_vector_notifiers when a
    // vhost-user virtio-net device uses MSI-X; with INTx it runs.
    '-device',
    dev.join(','),
  ];
}

/**
 * Boots the guest against the backend on `socket`, lets its init send frames and print eth0's
 * counters, and returns them with the console log once the guest has powered off. Throws, with
 * the console's tail, when the guest prints no counters (a timeout, a crash, no eth0).
 */
export async function runLinuxGuest(opts: GuestOptions): Promise<GuestResult> {
  const qemu = requirePeer('qemu').path;
  const kernel = opts.kernel ?? requirePeer('kernel').path;
  const initramfs = Buffer.isBuffer(opts.initramfs)
    ? opts.initramfs
    : buildInitramfs(opts.initramfs ?? {});
  const dir = mkdtempSync(join(tmpdir(), 'mdev-guest-'));
  let proc: PeerProcess | undefined;
  try {
    const initrd = join(dir, 'initramfs.cpio');
    writeFileSync(initrd, initramfs);
    const args = [...qemuArgs({ ...opts, kernel, initrd }), ...(opts.qemuArgs ?? [])];
    proc = new PeerProcess(qemu, args, { timeoutMs: opts.timeoutMs ?? 90_000, graceMs: 2000 });
    opts.onStart?.(proc);
    const exit = await proc.exited;
    const durationMs = performance.now() - proc.started;
    const log = consoleText(proc.output);
    const events = log
      .split('\n')
      .filter((l) => l.includes(LOG_TAG))
      .map((l) => l.slice(l.indexOf(LOG_TAG) + LOG_TAG.length).trim());
    const qemuErrors = parseQemuErrors(log);
    const stats = parseGuestStats(log);
    if (!stats) {
      const how = exit.timedOut ? `ran past its ${opts.timeoutMs ?? 90_000} ms` : 'ended';
      throw proc.error(`${how} without printing the guest's counters`);
    }
    return { stats, log, exit, durationMs, events, qemuErrors };
  } finally {
    await proc?.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * DPDK's testpmd as a vhost-user peer, without hugepages or PCI devices: as the backend
 * (`net_vhost`, it listens on the socket) or as the frontend (`net_virtio_user`, it connects).
 * It runs non-interactive, forwarding from start, printing port statistics every period; SIGINT
 * makes it stop forwarding and print each port's totals, which are parsed.
 */
import { rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePeer } from './peers';
import { type Exit, PeerProcess } from './process';

/** One port's totals from testpmd's "Forward statistics for port N" block. */
export interface ForwardStats {
  port: number;
  rxPackets: number;
  rxDropped: number;
  txPackets: number;
  /** Frames the forwarding engine could not place on the TX ring (a full ring). */
  txDropped: number;
}

/** One port's counters from a periodic "NIC statistics for port N" block (the PMD's own). */
export interface NicStats {
  port: number;
  rxPackets: number;
  rxMissed: number;
  rxBytes: number;
  txPackets: number;
  txErrors: number;
  txBytes: number;
}

export interface TestpmdOptions {
  /** `--vdev` arguments, one a device (see `vhostBackend` and `virtioUserFrontend`). */
  vdevs: readonly string[];
  /** `--lcores`; default both lcores (main and forwarding) on the last CPU: `0@1,1@1`. */
  lcores?: string;
  /** testpmd's own arguments (after `--`), e.g. `--forward-mode=flowgen`. */
  args?: readonly string[];
  /** Extra EAL arguments (before `--`). */
  eal?: readonly string[];
  /** Bound on the process's life (default 60 s): then SIGINT, SIGKILL after 5 s. */
  timeoutMs?: number;
  /** How long to wait for it to start forwarding (default 30 s). */
  startTimeoutMs?: number;
  /** `-m`, MiB of (non-huge) memory (default 1024). */
  memMb?: number;
  /** `--total-num-mbufs` (default 16384, which starts far faster than testpmd's default). */
  mbufs?: number;
  /** `--stats-period` in seconds (default 1). */
  statsPeriod?: number;
}

export interface TestpmdResult {
  /** Per-port totals printed at exit, indexed by port id. */
  ports: ForwardStats[];
  /** The last periodic NIC statistics seen per port, indexed by port id. */
  nic: NicStats[];
  log: string;
  exit: Exit;
  durationMs: number;
}

let serial = 0;

/**
 * Removes the EAL runtime directory of the file prefix (`/var/run/dpdk/<prefix>` for root,
 * `$XDG_RUNTIME_DIR/dpdk/<prefix>` or `/tmp/dpdk/<prefix>` otherwise, as in DPDK's
 * lib/eal/linux/eal.c): DPDK leaves it behind, with sockets in it when the process was killed.
 */
function removeRuntimeDir(filePrefix: string): void {
  const bases = ['/var/run/dpdk', join(tmpdir(), 'dpdk')];
  if (process.env.XDG_RUNTIME_DIR) bases.push(join(process.env.XDG_RUNTIME_DIR, 'dpdk'));
  for (const base of bases) rmSync(join(base, filePrefix), { recursive: true, force: true });
}

/** `--vdev` for testpmd as a vhost-user backend listening on `socket`. */
export function vhostBackend(
  socket: string,
  opts: { id?: number; queues?: number; client?: boolean } = {},
): string {
  const extra = opts.client ? ',client=1' : '';
  return `net_vhost${opts.id ?? 0},iface=${socket},queues=${opts.queues ?? 1}${extra}`;
}

/** `--vdev` for testpmd as a vhost-user frontend (virtio-user) connecting to `socket`. */
export function virtioUserFrontend(
  socket: string,
  opts: {
    id?: number;
    queues?: number;
    packed?: boolean;
    server?: boolean;
    queueSize?: number;
  } = {},
): string {
  let s = `net_virtio_user${opts.id ?? 0},path=${socket},queues=${opts.queues ?? 1}`;
  if (opts.packed) s += ',packed_vq=1';
  if (opts.server) s += ',server=1';
  if (opts.queueSize) s += `,queue_size=${opts.queueSize}`;
  return s;
}

const NUM = '(\\d+)';
const FORWARD_RE = new RegExp(
  `Forward statistics for port ${NUM}\\s+-+\\s+RX-packets:\\s*${NUM}\\s+RX-dropped:\\s*${NUM}` +
    `\\s+RX-total:\\s*${NUM}\\s+TX-packets:\\s*${NUM}\\s+TX-dropped:\\s*${NUM}`,
  'g',
);
const NIC_RE = new RegExp(
  `NIC statistics for port ${NUM}\\s+#+\\s+RX-packets:\\s*${NUM}\\s+RX-missed:\\s*${NUM}` +
    `\\s+RX-bytes:\\s*${NUM}[\\s\\S]*?TX-packets:\\s*${NUM}\\s+TX-errors:\\s*${NUM}` +
    `\\s+TX-bytes:\\s*${NUM}`,
  'g',
);

/** The per-port totals in testpmd's output (the last block for each port). */
export function parseForwardStats(out: string): ForwardStats[] {
  const ports: ForwardStats[] = [];
  for (const m of out.matchAll(FORWARD_RE)) {
    const [port, rx, rxDrop, , tx, txDrop] = m.slice(1).map(Number) as number[];
    ports[port!] = {
      port: port!,
      rxPackets: rx!,
      rxDropped: rxDrop!,
      txPackets: tx!,
      txDropped: txDrop!,
    };
  }
  return ports;
}

/**
 * The virtio feature bits the vhost library last agreed with a frontend ("negotiated Virtio
 * features" in its log), or undefined when none was logged.
 */
export function negotiatedFeatures(out: string): bigint | undefined {
  const all = [...out.matchAll(/negotiated Virtio features: (0x[0-9a-fA-F]+)/g)];
  const last = all.at(-1)?.[1];
  return last === undefined ? undefined : BigInt(last);
}

/** The last periodic NIC statistics per port in testpmd's output. */
export function parseNicStats(out: string): NicStats[] {
  const ports: NicStats[] = [];
  for (const m of out.matchAll(NIC_RE)) {
    const [port, rx, missed, rxBytes, tx, txErr, txBytes] = m.slice(1).map(Number) as number[];
    ports[port!] = {
      port: port!,
      rxPackets: rx!,
      rxMissed: missed!,
      rxBytes: rxBytes!,
      txPackets: tx!,
      txErrors: txErr!,
      txBytes: txBytes!,
    };
  }
  return ports;
}

/** A running testpmd; `stop()` ends it and returns its totals. */
export class Testpmd {
  #stopped: Promise<TestpmdResult> | undefined;

  constructor(
    readonly process: PeerProcess,
    readonly filePrefix: string,
  ) {}

  /** The latest periodic NIC statistics per port (empty before the first period). */
  nic(): NicStats[] {
    return parseNicStats(this.process.output);
  }

  /**
   * Waits until the periodic statistics show `port` with at least `rx` received (and `tx`
   * sent); rejects with the output's tail when `ms` passes or testpmd exits first.
   */
  async waitForPackets(port: number, want: { rx?: number; tx?: number }, ms = 30_000) {
    const end = performance.now() + ms;
    for (;;) {
      const s = this.nic()[port];
      if (s && s.rxPackets >= (want.rx ?? 0) && s.txPackets >= (want.tx ?? 0)) return s;
      if (this.process.exit)
        throw this.process.error(`exited before port ${port} reached ${JSON.stringify(want)}`);
      if (performance.now() > end) {
        throw this.process.error(`port ${port} did not reach ${JSON.stringify(want)} in ${ms} ms`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGINT (SIGKILL after 5 s), then the totals it printed. Idempotent. */
  stop(): Promise<TestpmdResult> {
    this.#stopped ??= (async () => {
      const exit = await this.process.stop('SIGINT');
      removeRuntimeDir(this.filePrefix);
      const log = this.process.output;
      return {
        ports: parseForwardStats(log),
        nic: parseNicStats(log),
        log,
        exit,
        durationMs: performance.now() - this.process.started,
      };
    })();
    return this.#stopped;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** The command line for `opts` with `filePrefix` (exported for the README and for tests). */
export function testpmdArgs(opts: TestpmdOptions, filePrefix: string): string[] {
  const cpu = Math.max(0, availableParallelism() - 1);
  return [
    '--no-huge',
    '-m',
    `${opts.memMb ?? 1024}`,
    '--no-pci',
    '--no-shconf',
    '--no-telemetry',
    `--file-prefix=${filePrefix}`,
    '--lcores',
    opts.lcores ?? `0@${cpu},1@${cpu}`,
    ...opts.vdevs.flatMap((v) => ['--vdev', v]),
    ...(opts.eal ?? []),
    '--',
    `--total-num-mbufs=${opts.mbufs ?? 16384}`,
    `--stats-period=${opts.statsPeriod ?? 1}`,
    ...(opts.args ?? []),
  ];
}

/**
 * Starts testpmd and resolves once it forwards (a vhost backend's socket then listens). A port
 * that fails to probe (no backend on a virtio-user socket, say) is an error, not a testpmd with
 * no ports. Whatever happens, the process is bounded by `timeoutMs`.
 */
export async function startTestpmd(opts: TestpmdOptions): Promise<Testpmd> {
  const bin = requirePeer('testpmd').path;
  const filePrefix = `mdev-${process.pid}-${++serial}`;
  const proc = new PeerProcess(bin, testpmdArgs(opts, filePrefix), {
    timeoutMs: opts.timeoutMs ?? 60_000,
    stopSignal: 'SIGINT',
  });
  const t = new Testpmd(proc, filePrefix);
  try {
    const m = await proc.waitFor(
      /No probed ethernet devices|probe failed|packet forwarding - ports=(\d+)/,
      opts.startTimeoutMs ?? 30_000,
    );
    if (m[1] === undefined) throw proc.error(`did not start: "${m[0]}"`);
    if (Number(m[1]) < opts.vdevs.length) {
      throw proc.error(`forwards on ${m[1]} ports, not the ${opts.vdevs.length} asked for`);
    }
    return t;
  } catch (err) {
    await t.stop();
    throw err;
  }
}

/**
 * Runs testpmd for `durationMs` (or until `until` settles, whichever first), then stops it and
 * returns its totals.
 */
export async function runTestpmd(
  opts: TestpmdOptions & { durationMs?: number; until?: Promise<unknown> },
): Promise<TestpmdResult> {
  const t = await startTestpmd(opts);
  try {
    let timer: NodeJS.Timeout | undefined;
    const waits: Promise<unknown>[] = [
      new Promise((r) => {
        timer = setTimeout(r, opts.durationMs ?? 5000);
      }),
    ];
    if (opts.until) waits.push(opts.until.catch(() => {}));
    await Promise.race(waits);
    clearTimeout(timer);
  } finally {
    await t.stop();
  }
  return t.stop();
}

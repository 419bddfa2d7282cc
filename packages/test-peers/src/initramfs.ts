/**
 * The guest's initramfs: busybox-static, the virtio-net modules of the guest kernel and an init
 * script that brings eth0 up, sends frames and prints eth0's counters on the serial console.
 */
import { spawnSync } from 'node:child_process';
import { type Dirent, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { type CpioEntry, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, writeCpio } from './cpio';
import { requirePeer } from './peers';

/**
 * The modules virtio_net needs, in load order (each after those it uses): the ring and the
 * virtio core (drivers/virtio/), the PCI transport's modern and legacy halves and virtio_pci
 * itself, then failover and net_failover, which virtio_net links against for its standby mode
 * (drivers/net/virtio_net.c).
 */
export const VIRTIO_NET_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
] as const;

/** The line the guest prints with eth0's counters (`/sys/class/net/eth0/statistics`). */
export const STATS_TAG = 'MDEV-GUEST-STATS';
/** Prefix of the init script's progress and error lines. */
export const LOG_TAG = 'mdev-guest:';

export interface InitramfsOptions {
  /** The unpacked kernel's modules tree (`lib/modules/<release>`); default: the kernel peer. */
  modulesDir?: string;
  /** A statically linked busybox; default: the busybox peer. */
  busybox?: string;
  /** Modules to load, in order (default `VIRTIO_NET_MODULES`); `.ko`, `.ko.xz` or `.ko.gz`. */
  modules?: readonly string[];
  /** eth0's address (link-local by default: `169.254.0.1/16`). */
  address?: string;
  /** The address arping asks for (nobody answers it; default `169.254.0.2`). */
  target?: string;
  /**
   * ARP requests sent: `arpings` busybox arping processes side by side, `count` requests each,
   * one a second (arping has no faster interval), so `arpings * count` frames in `count` s.
   * Default 10 of 2: 20 frames in about 2 s.
   */
  arping?: { arpings?: number; count?: number };
  /** Seconds to wait after sending, for frames still on their way back (default 1). */
  settleSeconds?: number;
  /** Keeps IPv6 on eth0 (off by default, so the only frames sent are the ARP requests). */
  ipv6?: boolean;
  /** Shell commands run after eth0 is up, in place of the arping step. */
  script?: string;
  /** gzip the archive (the kernel takes either). */
  gzip?: boolean;
}

const moduleIndex = new Map<string, Map<string, string>>();

/**
 * Module name to file, for every module under `<modulesDir>/kernel`: walked once per tree, and
 * again where a name is not in it.
 */
function modulesUnder(modulesDir: string, fresh = false): Map<string, string> {
  let index = moduleIndex.get(modulesDir);
  if (index && !fresh) return index;
  index = new Map();
  const stack = [join(modulesDir, 'kernel')];
  while (stack.length > 0) {
    const d = stack.pop()!;
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      const m = /^(.*)\.ko(\.xz|\.gz|\.zst)?$/.exec(e.name);
      if (e.isDirectory()) stack.push(p);
      else if (m?.[1] && !index.has(m[1])) index.set(m[1], p);
    }
  }
  moduleIndex.set(modulesDir, index);
  return index;
}

/** A module's bytes, decompressed (Debian ships plain .ko for 6.1; later kernels .ko.xz). */
function moduleBytes(modulesDir: string, name: string): Buffer {
  // Module names treat '-' and '_' alike (kernel/module/main.c, and modprobe's naming).
  const lookup = (index: Map<string, string>) =>
    index.get(name) ?? index.get(name.replaceAll('_', '-'));
  const path = lookup(modulesUnder(modulesDir)) ?? lookup(modulesUnder(modulesDir, true));
  if (!path) throw new Error(`initramfs: module ${name} not found under ${modulesDir}/kernel`);
  const raw = readFileSync(path);
  if (path.endsWith('.ko')) return raw;
  if (path.endsWith('.ko.gz')) return gunzipSync(raw);
  const tool = path.endsWith('.ko.xz') ? 'xz' : 'zstd';
  const r = spawnSync(tool, ['-dc'], { input: raw, maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) {
    const why = r.error?.message ?? r.stderr.toString().trim();
    throw new Error(`initramfs: ${tool} -dc ${path} failed: ${why}`);
  }
  return r.stdout;
}

function shellWord(s: string): string {
  if (!/^[A-Za-z0-9_./:@-]+$/.test(s))
    throw new Error(`initramfs: unsafe word ${JSON.stringify(s)}`);
  return s;
}

/** The init script (busybox sh) for `opts`. */
export function initScript(opts: InitramfsOptions = {}): string {
  const modules = (opts.modules ?? VIRTIO_NET_MODULES).map(shellWord);
  const address = shellWord(opts.address ?? '169.254.0.1/16');
  const target = shellWord(opts.target ?? '169.254.0.2');
  const arpings = opts.arping?.arpings ?? 10;
  const count = opts.arping?.count ?? 2;
  const settle = opts.settleSeconds ?? 1;
  for (const [k, v] of Object.entries({ arpings, count, settle })) {
    if (!Number.isInteger(v) || v < 0 || v > 1000) throw new Error(`initramfs: bad ${k} ${v}`);
  }
  const send =
    opts.script ??
    [
      `i=0; while [ $i -lt ${arpings} ]; do`,
      `  arping -c ${count} -I eth0 ${target} >/dev/null 2>&1 &`,
      '  i=$((i+1))',
      'done',
      'wait',
    ].join('\n');
  return `#!/bin/sh
export PATH=/bin:/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
log() { echo "${LOG_TAG} [$(cut -d' ' -f1 /proc/uptime)] $*"; }
log init
for m in ${modules.join(' ')}; do
  insmod /lib/modules/$m.ko || log "insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ -e /sys/class/net/eth0 ]; then
  ${opts.ipv6 ? '' : 'echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null'}
  ip link set eth0 up
  ip addr add ${address} dev eth0
  log "eth0 up $(cat /sys/class/net/eth0/address)"
${send}
  log sent
  sleep ${settle}
  s=/sys/class/net/eth0/statistics
  echo "${STATS_TAG} rx_packets=$(cat $s/rx_packets) tx_packets=$(cat $s/tx_packets)" \\
    "rx_bytes=$(cat $s/rx_bytes) tx_bytes=$(cat $s/tx_bytes) rx_dropped=$(cat $s/rx_dropped)" \\
    "tx_dropped=$(cat $s/tx_dropped)"
else
  log "no eth0"
fi
poweroff -f
`;
}

/**
 * Builds the initramfs (newc cpio, gzip optional): `/bin/busybox` with `/bin/sh` linked to it,
 * `/dev/console`, the modules as `/lib/modules/<name>.ko` (decompressed) and `/init`.
 */
export function buildInitramfs(opts: InitramfsOptions = {}): Buffer {
  const modulesDir = opts.modulesDir ?? requirePeer('kernel').modules!;
  const busybox = opts.busybox ?? requirePeer('busybox').path;
  if (!existsSync(busybox)) throw new Error(`initramfs: no busybox at ${busybox}`);
  const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
  const entries: CpioEntry[] = [
    dir('bin'),
    dir('sbin'),
    dir('dev'),
    dir('proc'),
    dir('sys'),
    dir('tmp'),
    dir('lib'),
    dir('lib/modules'),
    // busybox --install -s links its applets into these four.
    dir('usr'),
    dir('usr/bin'),
    dir('usr/sbin'),
    // The kernel opens /dev/console for init's stdio before init mounts devtmpfs.
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: readFileSync(busybox) },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
  ];
  for (const m of opts.modules ?? VIRTIO_NET_MODULES) {
    const data = moduleBytes(modulesDir, m);
    entries.push({ name: `lib/modules/${m}.ko`, mode: S_IFREG | 0o644, data });
  }
  entries.push({ name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(initScript(opts)) });
  const cpio = writeCpio(entries);
  return opts.gzip ? gzipSync(cpio) : cpio;
}

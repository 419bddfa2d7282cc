/**
 * Finding the peers on this machine: each lookup answers with where the peer is or why it is
 * not usable, so a test can say why it skips (or, in CI, why it fails).
 */
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  openSync,
  readdirSync,
  readSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/** The programs and images the peer tests run. */
export type PeerName = 'testpmd' | 'qemu' | 'busybox' | 'kernel';

/** A peer that was found. For the kernel, `path` is the image and `modules` its modules tree. */
export interface Peer {
  name: PeerName;
  path: string;
  /** kernel: `<root>/lib/modules/<release>`. */
  modules?: string;
  /** kernel: the release (`6.1.0-57-amd64`). */
  release?: string;
}

/** A peer that was not found, with the reason and what installs it. */
export interface MissingPeer {
  name: PeerName;
  reason: string;
}

export type PeerLookup = Peer | MissingPeer;

export function isMissing(p: PeerLookup): p is MissingPeer {
  return 'reason' in p;
}

/** Thrown where a peer is required and absent; the message says which and why. */
export class PeerMissingError extends Error {
  constructor(readonly missing: readonly MissingPeer[]) {
    super(missing.map((m) => `${m.name}: ${m.reason}`).join('; '));
    this.name = 'PeerMissingError';
  }
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, cmd);
    if (executable(p)) return p;
  }
  return undefined;
}

/**
 * Whether the ELF file at `path` has no program interpreter (PT_INTERP), that is, runs in an
 * initramfs that holds nothing else. Undefined when it is not a 64-bit little-endian ELF file.
 */
export function isStaticElf(path: string): boolean | undefined {
  const fd = openSync(path, 'r');
  try {
    const eh = Buffer.alloc(64);
    if (readSync(fd, eh, 0, 64, 0) < 64) return undefined;
    // e_ident: "\x7fELF", EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian).
    if (eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1) return undefined;
    const phoff = Number(eh.readBigUInt64LE(32));
    const phentsize = eh.readUInt16LE(54);
    const phnum = eh.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, ph, 0, ph.byteLength, phoff) < ph.byteLength) return undefined;
    for (let i = 0; i < phnum; i++) {
      if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) return false;
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * Where `.ci/run` unpacks the guest kernel: `$MDEV_KERNEL_DIR`, else
 * `$XDG_CACHE_HOME/mdev/kernel` (`~/.cache/mdev/kernel`).
 */
export function kernelDir(): string {
  const env = process.env.MDEV_KERNEL_DIR;
  if (env) return env;
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'mdev', 'kernel');
}

/** Compares dotted/dashed version strings numerically field by field (`6.1.0-57` > `6.1.0-9`). */
function compareRelease(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const c = Number.isNaN(nx) || Number.isNaN(ny) ? x.localeCompare(y) : nx - ny;
    if (c !== 0) return c;
  }
  return 0;
}

function findKernel(): PeerLookup {
  const root = kernelDir();
  const boot = join(root, 'boot');
  let images: string[];
  try {
    images = readdirSync(boot).filter((f) => f.startsWith('vmlinuz-'));
  } catch {
    images = [];
  }
  const releases = images
    .map((f) => f.slice('vmlinuz-'.length))
    .sort(compareRelease)
    .reverse();
  for (const release of releases) {
    for (const lib of ['lib', 'usr/lib']) {
      const modules = join(root, lib, 'modules', release);
      if (existsSync(join(modules, 'kernel'))) {
        return { name: 'kernel', path: join(boot, `vmlinuz-${release}`), modules, release };
      }
    }
  }
  const where =
    releases.length > 0 ? `no modules for ${releases.join(', ')} under` : 'no vmlinuz-* in';
  return {
    name: 'kernel',
    reason:
      `${where} ${boot} (bash .ci/run unpacks a Debian ` +
      'linux-image-6.1.0-*-amd64-unsigned there; or set MDEV_KERNEL_DIR)',
  };
}

function findProgram(name: PeerName, env: string, cmd: string, pkg: string): PeerLookup {
  const override = process.env[env];
  if (override) {
    return executable(override)
      ? { name, path: override }
      : { name, reason: `${env}=${override} is not an executable file` };
  }
  const path = which(cmd);
  return path ? { name, path } : { name, reason: `${cmd} not on PATH (Debian package ${pkg})` };
}

function findBusybox(): PeerLookup {
  const override = process.env.MDEV_BUSYBOX;
  const candidates = override ? [override] : [which('busybox'), '/bin/busybox'];
  const seen: string[] = [];
  for (const path of candidates) {
    if (path === undefined || !executable(path)) continue;
    if (isStaticElf(path) === true) return { name: 'busybox', path };
    seen.push(path);
  }
  return {
    name: 'busybox',
    reason:
      seen.length > 0
        ? `${seen.join(', ')} is not statically linked (Debian package busybox-static)`
        : 'no busybox (Debian package busybox-static)',
  };
}

/** Finds one peer: where it is, or why it is missing. Environment overrides in parentheses. */
export function peer(name: PeerName): PeerLookup {
  switch (name) {
    case 'testpmd': // (MDEV_TESTPMD)
      return findProgram(name, 'MDEV_TESTPMD', 'dpdk-testpmd', 'dpdk-dev');
    case 'qemu': // (MDEV_QEMU)
      return findProgram(name, 'MDEV_QEMU', 'qemu-system-x86_64', 'qemu-system-x86');
    case 'busybox': // (MDEV_BUSYBOX)
      return findBusybox();
    case 'kernel': // (MDEV_KERNEL_DIR)
      return findKernel();
    default:
      throw new Error(`unknown peer ${JSON.stringify(name)}`);
  }
}

/** The peers among `names` that are missing (empty when all are there). */
export function missingPeers(names: readonly PeerName[]): MissingPeer[] {
  return names.map(peer).filter(isMissing);
}

/** The peer, or a PeerMissingError saying why it cannot be used. */
export function requirePeer(name: PeerName): Peer {
  const p = peer(name);
  if (isMissing(p)) throw new PeerMissingError([p]);
  return p;
}

/** True where missing peers must fail tests rather than skip them (`CI` set and not false). */
export function peersRequired(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

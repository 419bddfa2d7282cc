/**
 * Typed wrappers over the addon. Every fd they create is non-blocking and close-on-exec and comes
 * back as an owned `Fd`. System call failures throw Errors shaped like Node's (`code`, negative
 * `errno`, `syscall`); "would block" is a result (`null`, `0`, `false`), not an error.
 */
import { readlinkSync } from 'node:fs';
import { Fd } from './fd';
import { native } from './native';

/** poll(2) event bits. */
export const POLLIN: number = native.POLLIN;
export const POLLOUT: number = native.POLLOUT;
export const POLLERR: number = native.POLLERR;
export const POLLHUP: number = native.POLLHUP;
export const POLLNVAL: number = native.POLLNVAL;
/** The most fds one message may carry through `sendFds`/`receiveFds`. */
export const MAX_FDS_PER_MESSAGE: number = native.MAX_FDS;

/** An fd argument: an owned `Fd`, or a number someone else owns. */
export type FdLike = Fd | number;

function num(fd: FdLike): number {
  return typeof fd === 'number' ? fd : fd.value;
}

export interface ListenOptions {
  /** listen(2) backlog; default 1 (one frontend at a time). */
  backlog?: number;
  /** File mode of the socket; default 0o600, owner only. */
  mode?: number;
}

/**
 * A listening unix stream socket bound to `path`. The socket file is created with `mode` (owner
 * only by default) from the start: there is no moment in which another user could connect.
 * EADDRINUSE when the path exists.
 */
export function listenUnix(path: string, options: ListenOptions = {}): Fd {
  return new Fd(native.listen(path, options.backlog ?? 1, options.mode ?? 0o600));
}

/** A unix stream socket connected to `path` (ENOENT, ECONNREFUSED when nobody listens). */
export function connectUnix(path: string): Fd {
  return new Fd(native.connect(path));
}

/** The next pending connection of a listening socket, or null when there is none. */
export function acceptUnix(listener: FdLike): Fd | null {
  const fd = native.accept(num(listener));
  return fd === null ? null : new Fd(fd);
}

/** Two connected unix stream sockets (socketpair(2)). */
export function socketPair(): [Fd, Fd] {
  const [a, b] = native.socketpair();
  return [new Fd(a), new Fd(b)];
}

/**
 * sendmsg(2) of `data` with `fds` attached (SCM_RIGHTS) to its first byte. Returns the bytes
 * sent (possibly fewer than `data.length`), or null when the socket buffer is full. The fds stay
 * owned by the caller: the peer receives duplicates.
 */
export function sendFds(
  sock: FdLike,
  data: Uint8Array,
  fds: readonly FdLike[] = [],
): number | null {
  return native.sendmsg(num(sock), data, fds.map(num));
}

export interface Received {
  /** Bytes read into the buffer; 0 is the end of the stream. */
  bytes: number;
  /** The fds that came with these bytes, owned by the caller now. */
  fds: Fd[];
  /** More fds were sent than `maxFds` allowed: the extra ones were closed, never leaked. */
  ctrunc: boolean;
}

/** recvmsg(2) into `buffer`, keeping at most `maxFds` fds. Null when nothing is there. */
export function receiveFds(sock: FdLike, buffer: Uint8Array, maxFds: number): Received | null {
  const r = native.recvmsg(num(sock), buffer, maxFds);
  if (r === null) return null;
  return { bytes: r.bytes, fds: r.fds.map((fd) => new Fd(fd)), ctrunc: r.ctrunc };
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** SO_PEERCRED: who is on the other end of a connected unix socket. */
export function peerCredentials(sock: FdLike): PeerCredentials {
  return native.peerCred(num(sock));
}

export interface MapOptions {
  /** Offset into the file; a multiple of the page size (mmap(2)). Default 0. */
  offset?: number;
  length: number;
  /** PROT_WRITE as well as PROT_READ; default true. */
  writable?: boolean;
}

/**
 * mmap(2) with MAP_SHARED: the file's pages as an ArrayBuffer, shared with every other mapping
 * of the same file (in this process, its workers, or the peer). Nothing is copied. `Atomics`
 * work on Int32Array/BigInt64Array views of it. The mapping ends with `unmap()` or when the
 * buffer is garbage-collected. The fd may be closed once mapped.
 */
export function mapShared(fd: FdLike, options: MapOptions): ArrayBuffer {
  return native.mmap(num(fd), options.offset ?? 0, options.length, options.writable ?? true);
}

/**
 * Unmaps a buffer from `mapShared()` now. The buffer is detached first: its views read as
 * length 0 and can never reach the freed pages. Returns false when it was unmapped already.
 */
export function unmap(buffer: ArrayBuffer): boolean {
  return native.unmap(buffer);
}

/** memfd_create(2) and ftruncate(2): anonymous shared memory of `size` bytes, zero-filled. */
export function createMemfd(name: string, size: number): Fd {
  const fd = new Fd(native.memfdCreate(name));
  try {
    native.ftruncate(fd.value, size);
  } catch (err) {
    fd.close();
    throw err;
  }
  return fd;
}

/**
 * fstat(2) of an fd: its size in bytes, and whether it is a regular file (a memfd, a tmpfs or
 * hugetlbfs file), the only kind whose pages `mapShared` can map and whose size says how many.
 */
export function fileSize(fd: FdLike): { size: number; regular: boolean } {
  return native.fileSize(num(fd));
}

/**
 * Seals a file against shrinking (F_SEAL_SHRINK), or finds it sealed so already; false where
 * the file takes no seals (not a memfd, or one made without sealing allowed; `createMemfd`
 * allows it). Touching a mapped page beyond the end of a file kills the process with SIGBUS, so
 * a mapping of a file another process owns is safe only while that file cannot shrink.
 */
export function sealShrink(fd: FdLike): boolean {
  return native.sealShrink(num(fd));
}

/** ftruncate(2). */
export function truncate(fd: FdLike, size: number): void {
  native.ftruncate(num(fd), size);
}

/** eventfd(2): a counter that a kick or call signals and a poller drains. */
export function createEventFd(initval = 0): Fd {
  return new Fd(native.eventfd(initval));
}

/**
 * Whether an fd is an eventfd (its /proc/self/fd link reads `anon_inode:[eventfd]`). A kick,
 * call or error fd a peer sends may be anything; written to as an eventfd, a file would take
 * the 8 bytes into its contents and a socket or a read-only file would fail the write.
 */
export function isEventFd(fd: FdLike): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${num(fd)}`) === 'anon_inode:[eventfd]';
  } catch {
    return false;
  }
}

/** Adds `value` (default 1) to an eventfd; false when the counter would overflow. */
export function signalEventFd(fd: FdLike, value = 1): boolean {
  return native.eventfdWrite(num(fd), value);
}

/** Reads and resets an eventfd's counter; 0 when it was not signalled. */
export function drainEventFd(fd: FdLike): number {
  return native.eventfdRead(num(fd));
}

export interface PollEntry {
  fd: FdLike;
  /** POLLIN, POLLOUT, ... */
  events: number;
}

/**
 * poll(2): waits until one of the fds is ready or `timeoutMs` passes (-1: no limit, 0: just
 * look) and returns the revents of each entry (0: not ready). It blocks the calling thread, so
 * it is for a worker that sleeps on kick fds; an interrupted wait returns all zeros.
 */
export function pollFds(entries: readonly PollEntry[], timeoutMs: number): number[] {
  return native.poll(
    entries.map((e) => num(e.fd)),
    entries.map((e) => e.events),
    timeoutMs,
  );
}

/** A watch of one fd on the thread's event loop (`watchFd`). */
export interface FdWatch {
  /** Ends the watch: no callback runs after this. Returns false when it had ended already. */
  stop(): boolean;
}

/**
 * Calls `onReady(revents)` from this thread's event loop whenever `fd` is ready for `events`
 * (POLLIN, POLLOUT, POLLHUP; POLLERR comes with an error), as libuv watches a socket of
 * Node's own: the way a datapath running in the event loop hears kicks without blocking in
 * `pollFds`. The callback runs as any I/O callback does (a throw is an uncaught exception).
 * The watch keeps the thread alive until stopped; the fd must stay open until then, and only
 * one watch per fd may run at a time. A thread that ends stops its watches.
 */
export function watchFd(fd: FdLike, events: number, onReady: (revents: number) => void): FdWatch {
  const handle = native.watch(num(fd), events, onReady);
  return { stop: () => native.unwatch(handle) };
}

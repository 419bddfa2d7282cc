/**
 * Loads the package's addon (native/vhost_user.c, built to build/Release/vhost_user.node). The
 * path is relative to this module, and the same from src/ (tests run on sources) and from dist/
 * (the published build), so nothing is copied. The addon is context-aware: worker threads load
 * it too.
 */
import { createRequire } from 'node:module';

/** What the addon exports; the typed wrappers in sys.ts are the public face. */
export interface NativeBinding {
  listen(path: string, backlog: number, mode: number): number;
  connect(path: string): number;
  accept(fd: number): number | null;
  socketpair(): [number, number];
  sendmsg(fd: number, data: Uint8Array, fds: readonly number[]): number | null;
  recvmsg(
    fd: number,
    data: Uint8Array,
    maxFds: number,
  ): { bytes: number; fds: number[]; ctrunc: boolean } | null;
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  mmap(fd: number, offset: number, length: number, writable: boolean): ArrayBuffer;
  unmap(buffer: ArrayBuffer): boolean;
  memfdCreate(name: string): number;
  ftruncate(fd: number, length: number): void;
  eventfd(initval: number): number;
  eventfdWrite(fd: number, value: number): boolean;
  eventfdRead(fd: number): number;
  poll(fds: readonly number[], events: readonly number[], timeoutMs: number): number[];
  close(fd: number): void;
  watch(fd: number, events: number, callback: (revents: number) => void): object;
  unwatch(handle: object): boolean;
  fileSize(fd: number): { size: number; regular: boolean };
  sealShrink(fd: number): boolean;
  readonly POLLIN: number;
  readonly POLLOUT: number;
  readonly POLLERR: number;
  readonly POLLHUP: number;
  readonly POLLNVAL: number;
  readonly MAX_FDS: number;
  readonly MAX_POLL_FDS: number;
}

const ADDON = '../build/Release/vhost_user.node';

function load(): NativeBinding {
  try {
    return createRequire(import.meta.url)(ADDON) as NativeBinding;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(
      `@mdev/vhost-user: cannot load its addon (${why}). It is built by ` +
        '`node scripts/build-native.mjs` in the package folder of the repository (a C ' +
        'compiler and the headers of the running node); see the package README.',
      { cause: err },
    );
  }
}

/** The addon, loaded on first import of this module. */
export const native: NativeBinding = load();

/**
 * The backend's socket file: listening on a path as QEMU's `-chardev socket,path=...` (client)
 * and DPDK's virtio-user expect, replacing a stale file left by a process that died, never a
 * live one or a file that is not a socket.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { KernelError } from '@mdev/driver-core';
import { connectUnix, type Fd, listenUnix } from '@mdev/vhost-user';

function errCode(err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code;
}

/**
 * A listening socket at `path`, owner-only (mode 0600 from its creation on). A socket file
 * nobody listens on (ECONNREFUSED) is stale and replaced. EADDRINUSE when a live process listens
 * there; EEXIST when the path is something other than a socket (it is never removed).
 */
export function listenReplacingStale(path: string): Fd {
  try {
    return listenUnix(path);
  } catch (err) {
    if (errCode(err) !== 'EADDRINUSE') throw err;
  }
  let isSocket = false;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    // Gone in between: try once more below.
  }
  if (isSocket) {
    let live = true;
    try {
      connectUnix(path).close();
    } catch (err) {
      // EAGAIN: a full backlog, so somebody listens.
      if (errCode(err) === 'ECONNREFUSED') live = false;
      else if (errCode(err) !== 'EAGAIN') throw err;
    }
    if (live) {
      throw new KernelError('EADDRINUSE', `vhost_mdev: ${path} is in use by another process`);
    }
    unlinkSync(path);
  } else {
    try {
      lstatSync(path);
      throw new KernelError('EEXIST', `vhost_mdev: ${path} exists and is not a socket`);
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
    }
  }
  return listenUnix(path);
}

import { native } from './native';

/**
 * An owned file descriptor: closed exactly once, by whoever holds it last. After `close()` or
 * `release()` the number is gone from this object, so a stale copy cannot close an fd number
 * the process has since reused for something else.
 */
export class Fd {
  #fd: number;

  constructor(fd: number) {
    if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new RangeError(`not a file descriptor: ${fd}`);
    }
    this.#fd = fd;
  }

  /** The fd number, for a system call. Throws EBADF once closed or released. */
  get value(): number {
    if (this.#fd < 0) throw closedError();
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the fd; later calls do nothing. Returns whether this call closed it. */
  close(): boolean {
    const fd = this.#fd;
    if (fd < 0) return false;
    this.#fd = -1;
    native.close(fd);
    return true;
  }

  /**
   * Gives up ownership and returns the number (for example to hand it to a worker thread, which
   * wraps it in its own `Fd`). This object no longer closes it.
   */
  release(): number {
    const fd = this.value;
    this.#fd = -1;
    return fd;
  }

  toString(): string {
    return this.#fd < 0 ? 'Fd(closed)' : `Fd(${this.#fd})`;
  }
}

/** Closes every fd of the list that is still open (cleanup paths). */
export function closeAll(fds: Iterable<Fd>): void {
  for (const fd of fds) fd.close();
}

function closedError(): Error {
  return Object.assign(new Error('EBADF: file descriptor already closed or released'), {
    code: 'EBADF',
    errno: -9,
    syscall: 'fd',
  });
}

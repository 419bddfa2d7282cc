/**
 * The errno values the project uses, as Linux defines them in include/uapi/asm-generic/errno-base.h
 * and errno.h. Kernel functions return `-Exxx`; we throw `KernelError` carrying the same number.
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ERANGE: 34,
  ELOOP: 40,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
} as const;

export type ErrnoCode = keyof typeof ERRNO;

/**
 * The brand of a KernelError, in the global symbol registry: two copies of this package (two
 * versions installed side by side, or one bundled twice) brand their errors alike, so
 * `KernelError.is()` and `instanceof KernelError` hold for an error of either copy. undici brands
 * its errors the same way.
 */
const kKernelError = Symbol.for('@mdev/driver-core.KernelError');

/**
 * An error the kernel would return as `-Exxx`, with Node's shape: `code` is the symbolic name
 * (`'EEXIST'`) and `errno` the negative number (`-17`). Tests assert `code`, never the message.
 */
export class KernelError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;

  constructor(code: ErrnoCode, message: string) {
    super(`${message} (${code})`);
    this.name = 'KernelError';
    this.code = code;
    this.errno = -ERRNO[code];
    Object.defineProperty(this, kKernelError, { value: true });
  }

  /** `err instanceof KernelError`, true for the errors of every copy of this package. */
  static override [Symbol.hasInstance](err: unknown): boolean {
    return (
      typeof err === 'object' &&
      err !== null &&
      (err as Record<symbol, unknown>)[kKernelError] === true
    );
  }

  /** True when `err` is a KernelError (of any copy of this package), and of `code` when given. */
  static is(err: unknown, code?: ErrnoCode): err is KernelError {
    return err instanceof KernelError && (code === undefined || err.code === code);
  }

  /** The KernelError for a negative errno number returned by a lower layer. */
  static fromErrno(errno: number, message: string): KernelError {
    const n = Math.abs(errno);
    const code = (Object.keys(ERRNO) as ErrnoCode[]).find((c) => ERRNO[c] === n) ?? 'EIO';
    return new KernelError(code, message);
  }
}

/** Shorthand for `new KernelError(code, message)`. */
export function kernelError(code: ErrnoCode, message: string): KernelError {
  return new KernelError(code, message);
}

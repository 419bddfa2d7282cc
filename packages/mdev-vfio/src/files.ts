import { KernelError } from '@mdev/driver-core';
import { PAGE_SIZE } from './uapi';

/**
 * The files a VFIO user holds by number: eventfds passed in SET_IRQS and dma-bufs returned by
 * GET_GFX_DMABUF travel through the ioctl structs as s32 fds, byte for byte, and the driver
 * looks them up here (the kernel's fdget()).
 */
const files = new Map<number, VfioFile>();
let nextFd = 3;

/** A file in the table: something with an fd number that can be closed. */
export abstract class VfioFile {
  readonly fd: number;
  private open = true;

  constructor() {
    this.fd = nextFd++;
    files.set(this.fd, this);
  }

  get closed(): boolean {
    return !this.open;
  }

  /** close(fd): the number stops resolving; subclasses drop their resources. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    files.delete(this.fd);
    this.onClose();
  }

  protected onClose(): void {}
}

/** Mirrors fdget(): the open file behind `fd`. EBADF when no such file is open. */
export function fdget(fd: number): VfioFile {
  const f = files.get(fd);
  if (!f) throw new KernelError('EBADF', `fd ${fd} is not open`);
  return f;
}

/** A listener of an eventfd: called after each signal, with the eventfd and the amount added. */
export type EventfdListener = (efd: Eventfd, n: number) => void;

/**
 * An eventfd (eventfd(2)): a 64-bit counter a device adds to with `signal()` (eventfd_signal())
 * and the user drains with `read()`. It counts every signal and calls its listeners, so a user
 * can wait for interrupts, count them, or act on each.
 */
export class Eventfd extends VfioFile {
  /** The counter: signals not yet consumed by `read()`. */
  count = 0;
  /** Every signal since creation (not reset by `read()`). */
  total = 0;
  private readonly listeners = new Set<EventfdListener>();

  /** Mirrors eventfd_signal(ctx, n): adds `n`; returns `n`, or 0 on a closed eventfd. */
  signal(n = 1): number {
    if (this.closed) return 0;
    this.count += n;
    this.total += n;
    for (const l of [...this.listeners]) l(this, n);
    return n;
  }

  /** read(2) on the eventfd: returns the counter and resets it. EAGAIN when it is 0. */
  read(): number {
    if (this.count === 0) throw new KernelError('EAGAIN', `eventfd ${this.fd}: no signal pending`);
    const n = this.count;
    this.count = 0;
    return n;
  }

  /** Calls `listener` after each signal; returns the function that removes it. */
  onSignal(listener: EventfdListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves at the next signal (or now, when the counter is not 0). */
  wait(): Promise<number> {
    if (this.count > 0) return Promise.resolve(this.count);
    return new Promise((resolve) => {
      const off = this.onSignal(() => {
        off();
        resolve(this.count);
      });
    });
  }

  protected override onClose(): void {
    this.listeners.clear();
  }
}

/**
 * Mirrors eventfd_ctx_fdget(): the eventfd behind an fd from a SET_IRQS payload. EBADF for a
 * number that is not open, EINVAL for a file that is not an eventfd.
 */
export function eventfdCtxFdget(fd: number): Eventfd {
  const f = fdget(fd);
  if (!(f instanceof Eventfd)) throw new KernelError('EINVAL', `fd ${fd} is not an eventfd`);
  return f;
}

/** What a driver exports as a dma-buf. */
export interface DmaBufOptions {
  /** The buffer's memory, shared: the view is handed out, never copied. */
  memory: Uint8Array;
  /** Called once when the last user closes the dma-buf. */
  release?(): void;
}

/**
 * A dma-buf: a shared view of device memory exported as a file (dma_buf_export + dma_buf_fd).
 * `mmap()` hands out views of the same memory, so what the device draws is what the user sees.
 */
export class DmaBuf extends VfioFile {
  readonly size: number;
  private memory: Uint8Array | null;
  private readonly releaseFn: (() => void) | undefined;

  constructor(options: DmaBufOptions) {
    super();
    this.memory = options.memory;
    this.size = options.memory.length;
    this.releaseFn = options.release;
  }

  /**
   * mmap(2) of the dma-buf: a view (no copy) of `length` bytes at `offset`. EINVAL for an
   * offset that is not page aligned or a range past the end, EBADF once closed.
   */
  mmap(offset = 0, length = this.size - offset): Uint8Array {
    if (!this.memory) throw new KernelError('EBADF', `dma-buf ${this.fd} is closed`);
    if (!Number.isInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `dma-buf mmap: offset ${offset} is not page aligned`);
    }
    if (!Number.isInteger(length) || length <= 0 || offset + length > this.size) {
      throw new KernelError('EINVAL', `dma-buf mmap: ${length} bytes at ${offset} past the end`);
    }
    return this.memory.subarray(offset, offset + length);
  }

  protected override onClose(): void {
    this.memory = null;
    this.releaseFn?.();
  }
}

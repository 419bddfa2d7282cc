// The numbers a VFIO user hands the samples' ops, checked at the op's entry. vfio_mdev passes
// them on as C would (an loff_t, an unsigned int request, a vm_area_struct); an op called with
// anything C could not carry answers EINVAL, as the kernel does for a negative file position
// (rw_verify_area) or a bad mapping, never a RangeError or a wrong access.
import { KernelError } from '@mdev/driver-core';
import type { VfioVma } from '@mdev/mdev-vfio';

/** A read/write file position and buffer: EINVAL unless pos is a safe integer >= 0. */
export function checkAccess(sample: string, buf: Uint8Array, pos: number): void {
  if (!Number.isSafeInteger(pos) || pos < 0) {
    throw new KernelError('EINVAL', `${sample}: bad file position ${pos}`);
  }
  if (!(buf instanceof Uint8Array)) {
    throw new KernelError('EINVAL', `${sample}: the buffer is not a byte array`);
  }
}

/** An ioctl request: EINVAL unless it is an unsigned int. */
export function checkIoctl(sample: string, cmd: number): void {
  if (!Number.isInteger(cmd) || cmd < 0 || cmd > 0xffff_ffff) {
    throw new KernelError('EINVAL', `${sample}: ${cmd} is not an ioctl request`);
  }
}

/** An mmap: EINVAL unless the page offset is an integer >= 0 and the length one > 0. */
export function checkVma(sample: string, vma: VfioVma): void {
  if (!Number.isSafeInteger(vma.pgoff) || vma.pgoff < 0) {
    throw new KernelError('EINVAL', `${sample}: bad mmap page offset ${vma.pgoff}`);
  }
  if (!Number.isSafeInteger(vma.length) || vma.length <= 0) {
    throw new KernelError('EINVAL', `${sample}: bad mmap length ${vma.length}`);
  }
}

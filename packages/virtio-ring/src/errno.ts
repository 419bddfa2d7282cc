/**
 * The errno numbers the ring code returns as negative values (it has no dependencies, so it does
 * not use driver-core's KernelError; callers convert). Values are Linux's.
 */
export const EINVAL = 22;
export const ELOOP = 40;
export const EPROTO = 71;
export const EFAULT = 14;
export const ENOMEM = 12;
export const ENOSPC = 28;
export const EIO = 5;

/**
 * A vhost-user frontend's memory as the backend holds it: the regions of one SET_MEM_TABLE,
 * each mapped from its fd, with the two address spaces a frontend speaks in. Buffers in the
 * rings carry guest addresses (the device's IOVAs, so they become the device's DMA map); the
 * ring addresses of SET_VRING_ADDR are the frontend's own virtual addresses ("user addresses"),
 * translated here to guest addresses before the device sees them.
 */

import { KernelError } from '@mdev/driver-core';
import { MDEV_VIRTIO_MAP_PAGE, type MdevVirtioMapEntry, VHOST_ACCESS_RW } from '@mdev/mdev-virtio';
import {
  closeAll,
  type Fd,
  fileSize,
  mapShared,
  sealShrink,
  unmap,
  type VhostUserMemoryRegion,
} from '@mdev/vhost-user';

/** One mapped region. `u8` is the region's bytes: guest address `guestAddr` is `u8[0]`. */
export interface MappedRegion {
  readonly guestAddr: number;
  readonly size: number;
  readonly userAddr: number;
  /** The mapping of the fd from its start to the region's end; `u8` is its region part. */
  readonly buffer: ArrayBuffer;
  readonly u8: Uint8Array;
  readonly fd: Fd;
}

function overlaps(a: number, aSize: number, b: number, bSize: number): boolean {
  return a < b + bSize && b < a + aSize;
}

/**
 * The regions of one memory table, mapped. Made by `FrontendMemory.map`, which takes ownership
 * of every region's fd whatever happens; `close()` unmaps and closes them all.
 */
export class FrontendMemory {
  readonly regions: readonly MappedRegion[];
  #closed = false;

  private constructor(regions: MappedRegion[]) {
    this.regions = regions;
  }

  /**
   * Checks and maps a memory table. Refused (KernelError EINVAL) before anything is mapped:
   * an empty region, guest or user ranges that overlap another region's, guest addresses or
   * sizes that are not whole pages (the device's map is made of pages), an fd that is not a
   * regular file or is shorter than `mmapOffset + size` (a touch past the end of a file would
   * kill the process with SIGBUS). A memfd is also sealed against shrinking, so the frontend
   * cannot pull the pages away later; a file that takes no seals (hugetlbfs) is trusted not to
   * shrink, as every vhost-user backend trusts it. The fds are closed on failure.
   */
  static map(table: readonly VhostUserMemoryRegion[]): FrontendMemory {
    const mapped: MappedRegion[] = [];
    try {
      for (const [i, r] of table.entries()) {
        const where = `region ${i} (guest 0x${r.guestAddr.toString(16)}+0x${r.size.toString(16)})`;
        if (r.size === 0) throw new KernelError('EINVAL', `${where} is empty`);
        if (r.guestAddr % MDEV_VIRTIO_MAP_PAGE !== 0 || r.size % MDEV_VIRTIO_MAP_PAGE !== 0) {
          throw new KernelError('EINVAL', `${where} is not made of whole pages`);
        }
        const end = r.mmapOffset + r.size;
        if (
          !Number.isSafeInteger(end) ||
          !Number.isSafeInteger(r.guestAddr + r.size) ||
          !Number.isSafeInteger(r.userAddr + r.size)
        ) {
          throw new KernelError('EINVAL', `${where} runs past 2^53`);
        }
        for (const other of table.slice(0, i)) {
          if (
            overlaps(r.guestAddr, r.size, other.guestAddr, other.size) ||
            overlaps(r.userAddr, r.size, other.userAddr, other.size)
          ) {
            throw new KernelError('EINVAL', `${where} overlaps another region`);
          }
        }
        // Sealed first, then measured: a file that shrank between the two would be mapped past
        // its end.
        sealShrink(r.fd);
        const file = fileSize(r.fd);
        if (!file.regular) throw new KernelError('EINVAL', `${where}: its fd is not a file`);
        if (file.size < end) {
          throw new KernelError(
            'EINVAL',
            `${where}: its file has ${file.size} bytes, the region ends at ${end}`,
          );
        }
        let buffer: ArrayBuffer;
        try {
          buffer = mapShared(r.fd, { length: end });
        } catch (err) {
          throw new KernelError('ENOMEM', `${where}: ${(err as Error).message}`);
        }
        mapped.push({
          guestAddr: r.guestAddr,
          size: r.size,
          userAddr: r.userAddr,
          buffer,
          u8: new Uint8Array(buffer, r.mmapOffset, r.size),
          fd: r.fd,
        });
      }
    } catch (err) {
      for (const m of mapped) unmap(m.buffer);
      closeAll(table.map((r) => r.fd));
      throw err;
    }
    return new FrontendMemory(mapped);
  }

  /**
   * The guest address of the frontend's virtual address range `[userAddr, userAddr + len)`, or
   * null when no one region holds it all.
   */
  toGuest(userAddr: number, len: number): number | null {
    for (const r of this.regions) {
      if (userAddr >= r.userAddr && userAddr + len <= r.userAddr + r.size) {
        return r.guestAddr + (userAddr - r.userAddr);
      }
    }
    return null;
  }

  /**
   * The device's DMA map: guest addresses are the IOVAs, each region readable and writable.
   * Each entry's region carries its fd, so a device whose datapath runs in a worker maps the
   * same pages there.
   */
  mapEntries(): MdevVirtioMapEntry[] {
    return this.regions.map((r) => ({
      iova: r.guestAddr,
      size: r.size,
      region: { u8: new Uint8Array(r.buffer), fd: r.fd.value },
      offset: r.u8.byteOffset,
      perm: VHOST_ACCESS_RW,
    }));
  }

  /** Unmaps every region and closes its fd. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const r of this.regions) {
      unmap(r.buffer);
      r.fd.close();
    }
  }
}

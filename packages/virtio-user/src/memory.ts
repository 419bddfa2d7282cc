/**
 * Host memory a vhost-user backend can map: one memfd, mapped here and handed to the backend
 * with SET_MEM_TABLE, as DPDK's virtio-user hands over its hugepage files. The rings and every
 * buffer the driver posts are allocated from it, so the backend reads and writes them in place.
 */

import {
  createMemfd,
  type Fd,
  mapShared,
  unmap,
  type VhostUserMemoryRegion,
} from '@mdev/vhost-user';
import { HostRam } from '@mdev/virtio';

/** Where the memory starts: the address the driver and the backend both use for it. */
const USER_RAM_BASE = 0x10_0000;
const PAGE = 4096;

/** A HostRam of one memfd region: rings and buffers a backend in another process can reach. */
export class UserRam {
  readonly ram: HostRam;
  readonly size: number;
  #memfd: Fd | null = null;
  #buffer: ArrayBuffer | null = null;

  /** `size` bytes (rounded up to whole pages): allocations past it fail, as ENOMEM. */
  constructor(size: number, name = 'virtio-user') {
    if (!Number.isInteger(size) || size < PAGE) {
      throw new RangeError(`virtio-user: memory of ${size} bytes (at least one page)`);
    }
    this.size = Math.ceil(size / PAGE) * PAGE;
    this.ram = new HostRam({
      base: USER_RAM_BASE,
      regionSize: this.size,
      limit: this.size,
      // The backend maps these pages: its ring ends use Atomics on them from the start.
      shared: true,
      backing: (bytes) => {
        if (this.#memfd) throw new RangeError('virtio-user: the memory has one region');
        const memfd = createMemfd(name, bytes);
        try {
          this.#buffer = mapShared(memfd, { length: bytes });
        } catch (err) {
          memfd.close();
          throw err;
        }
        this.#memfd = memfd;
        return this.#buffer;
      },
    });
    this.ram.grow(this.size);
  }

  /**
   * The memory table a backend gets: one region whose guest address is also its address in
   * "the frontend's address space", so ring and buffer addresses are the same numbers.
   */
  get regions(): VhostUserMemoryRegion[] {
    const region = this.ram.memory.regions[0];
    if (!region || !this.#memfd) throw new Error('virtio-user: the memory is released');
    return [
      {
        guestAddr: region.base,
        size: region.size,
        userAddr: region.base,
        mmapOffset: 0,
        fd: this.#memfd,
      },
    ];
  }

  /** Unmaps the memory and closes its memfd. Nothing may touch it afterwards. Idempotent. */
  release(): void {
    if (this.#buffer) unmap(this.#buffer);
    this.#buffer = null;
    this.#memfd?.close();
    this.#memfd = null;
  }
}

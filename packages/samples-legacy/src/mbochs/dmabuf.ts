import { KernelError } from '@mdev/driver-core';
import { DmaBuf } from '@mdev/mdev-vfio';
import { MBOCHS_PAGE_SIZE } from './defs';
import type { MbochsMode } from './framebuffer';
import type { MbochsMemory } from './memory';

/**
 * Mirrors struct mbochs_dmabuf: the pages of one scanout mode, known by a small id that
 * QUERY_GFX_PLANE hands out and GET_GFX_DMABUF exchanges for an exported dma-buf.
 */
export class MbochsDmabuf {
  readonly id: number;
  readonly mode: MbochsMode;
  /** Page views of the framebuffer, from the page holding `mode.offset` (the page array). */
  readonly pages: Uint8Array[];
  /** Set when the device is closed: no longer found by id, freed when its last fd closes. */
  unlinked = false;
  /** The open fds of the exported dma-buf (dmabuf->buf is set while there is one). */
  private readonly fds = new Set<DmaBuf>();

  constructor(id: number, mode: MbochsMode, memory: MbochsMemory) {
    this.id = id;
    this.mode = mode;
    const first = Math.floor(mode.offset / MBOCHS_PAGE_SIZE);
    const count = Math.ceil(mode.size / MBOCHS_PAGE_SIZE);
    this.pages = memory.pages(first, count);
  }

  /** Whether the buffer is exported: at least one of its fds is open. */
  get exported(): boolean {
    return this.fds.size > 0;
  }

  /** How many fds of the exported buffer are open. */
  get openFds(): number {
    return this.fds.size;
  }

  /**
   * Mirrors mbochs_dmabuf_export() + get_dma_buf() + dma_buf_fd(): each call returns a new fd
   * over the one shared buffer, so closing one fd leaves the others working; the buffer is
   * released (mbochs_release_dmabuf()) when its last fd closes. A scanout that does not start
   * on a page boundary cannot be exported (EINVAL, "framebuffer not page-aligned"). Each fd is
   * a view of the pages, which lie back to back in the device's video memory: no copy.
   */
  export(): DmaBuf {
    if (this.mode.offset % MBOCHS_PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `mbochs: dmabuf ${this.id}: framebuffer not page-aligned`);
    }
    const first = this.pages[0]!;
    const memory = new Uint8Array(
      first.buffer,
      first.byteOffset,
      this.pages.length * MBOCHS_PAGE_SIZE,
    );
    const buf = new DmaBuf({
      memory,
      // The last fd gone is mbochs_release_dmabuf(): the buffer is no longer exported, and an
      // unlinked one is freed with it (here: nothing holds it any more).
      release: () => {
        this.fds.delete(buf);
      },
    });
    this.fds.add(buf);
    return buf;
  }
}

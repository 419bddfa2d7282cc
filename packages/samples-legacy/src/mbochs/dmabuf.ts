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
  /** The exported dma-buf, while one is open. */
  buf: DmaBuf | null = null;
  /** Set when the device is closed: no longer found by id, freed when its dma-buf closes. */
  unlinked = false;

  constructor(id: number, mode: MbochsMode, memory: MbochsMemory) {
    this.id = id;
    this.mode = mode;
    const first = Math.floor(mode.offset / MBOCHS_PAGE_SIZE);
    const count = Math.ceil(mode.size / MBOCHS_PAGE_SIZE);
    this.pages = memory.pages(first, count);
  }

  /**
   * Mirrors mbochs_dmabuf_export(): a scanout that does not start on a page boundary cannot be
   * exported (EINVAL, "framebuffer not page-aligned"). The dma-buf is one shared view of the
   * pages, which lie back to back in the device's video memory: no copy.
   */
  export(): DmaBuf {
    if (this.mode.offset % MBOCHS_PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `mbochs: dmabuf ${this.id}: framebuffer not page-aligned`);
    }
    if (this.buf && !this.buf.closed) return this.buf;
    const first = this.pages[0]!;
    const memory = new Uint8Array(
      first.buffer,
      first.byteOffset,
      this.pages.length * MBOCHS_PAGE_SIZE,
    );
    const buf = new DmaBuf({
      memory,
      // mbochs_release_dmabuf(): the exported buffer is gone; an unlinked one is freed with it.
      release: () => {
        if (this.buf === buf) this.buf = null;
      },
    });
    this.buf = buf;
    return buf;
  }
}

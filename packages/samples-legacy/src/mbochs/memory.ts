import { MBOCHS_PAGE_SIZE } from './defs';

/**
 * The video memory of an mbochs device (BAR0). The sample allocates pages on first touch and
 * drops them all when the device is closed; here the backing store is one SharedArrayBuffer made
 * on first touch and dropped on close. Views handed out before a drop (an mmap, a dma-buf) keep
 * the old memory alive, as page references do in the kernel.
 */
export class MbochsMemory {
  readonly memsize: number;
  readonly pagecount: number;
  private backing: Uint8Array | null = null;

  constructor(memsize: number) {
    if (memsize % MBOCHS_PAGE_SIZE !== 0) throw new RangeError(`mbochs: memsize ${memsize}`);
    this.memsize = memsize;
    this.pagecount = memsize / MBOCHS_PAGE_SIZE;
  }

  /** True once the memory has been touched since creation or the last drop. */
  get allocated(): boolean {
    return this.backing !== null;
  }

  /** All of video memory, made (zeroed) on first use. No copy. */
  get bytes(): Uint8Array {
    this.backing ??= new Uint8Array(new SharedArrayBuffer(this.memsize));
    return this.backing;
  }

  /** A view of `[offset, offset + length)`; RangeError outside the memory. No copy. */
  view(offset: number, length: number): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > this.memsize) {
      throw new RangeError(`mbochs memory: [${offset}, +${length}) is outside ${this.memsize}`);
    }
    return this.bytes.subarray(offset, offset + length);
  }

  /** Views of `count` pages from page `first` (the dma-buf's page array). No copy. */
  pages(first: number, count: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      out.push(this.view((first + i) * MBOCHS_PAGE_SIZE, MBOCHS_PAGE_SIZE));
    }
    return out;
  }

  /** mbochs_put_pages(): forget the memory; the next touch starts from zeros. */
  drop(): void {
    this.backing = null;
  }
}

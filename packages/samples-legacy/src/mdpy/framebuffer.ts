import type { MdpyTypeDef } from './defs';
import { mdpyMemsize } from './defs';

/**
 * The mdpy framebuffer: BAR0, `memsize` bytes in a SharedArrayBuffer so an mmap of the region is a
 * view that the device, the user and a worker thread all see (the sample's vmalloc_user memory).
 * Pixels are little-endian XRGB8888, `width * 4` bytes per line.
 */
export class MdpyFramebuffer {
  readonly type: MdpyTypeDef;
  readonly memsize: number;
  readonly stride: number;
  /** The whole BAR; the visible picture is the first `stride * height` bytes. */
  readonly bytes: Uint8Array;

  constructor(type: MdpyTypeDef) {
    this.type = type;
    this.memsize = mdpyMemsize(type);
    this.stride = type.width * type.bytepp;
    this.bytes = new Uint8Array(new SharedArrayBuffer(this.memsize));
  }

  /**
   * mdpy_reset(): row `i` is filled with the byte `i * 255 / height` (integer division), a grey
   * gradient from black at the top to almost white at the bottom, X byte included.
   */
  drawGradient(): void {
    const { height } = this.type;
    for (let i = 0; i < height; i++) {
      const start = i * this.stride;
      this.bytes.fill(Math.floor((i * 255) / height), start, start + this.stride);
    }
  }

  /**
   * A view of `length` bytes from `offset` within the BAR; no copy. RangeError when the span
   * leaves the BAR (callers check user input first and throw the errno).
   */
  view(offset: number, length: number): Uint8Array {
    if (offset < 0 || length < 0 || offset + length > this.memsize) {
      throw new RangeError(`mdpy framebuffer: [${offset}, +${length}) is outside the BAR`);
    }
    return this.bytes.subarray(offset, offset + length);
  }
}

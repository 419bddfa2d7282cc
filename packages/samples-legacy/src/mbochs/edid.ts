import {
  VFIO_DEVICE_GFX_LINK_STATE_DOWN,
  VFIO_DEVICE_GFX_LINK_STATE_UP,
  VFIO_REGION_GFX_EDID_EDID_MAX_SIZE,
  VFIO_REGION_GFX_EDID_EDID_OFFSET,
  VFIO_REGION_GFX_EDID_EDID_SIZE,
  VFIO_REGION_GFX_EDID_LINK_STATE,
  VFIO_REGION_GFX_EDID_MAX_XRES,
  VFIO_REGION_GFX_EDID_MAX_YRES,
  VFIO_REGION_GFX_EDID_SIZE,
} from '@mdev/mdev-vfio';
import { MBOCHS_EDID_BLOB_OFFSET, MBOCHS_EDID_MAX_SIZE } from './defs';

/**
 * The EDID region of mbochs (VFIO_REGION_TYPE_GFX / VFIO_REGION_SUBTYPE_GFX_EDID): a
 * struct vfio_region_gfx_edid register block at the start, the blob at `edid_offset`.
 *
 * The host's update protocol (vfio.h): set link_state down, write the blob and edid_size, set
 * link_state up. The guest sees the blob at the start of the MMIO BAR while the link is up.
 */
export class MbochsEdid {
  /** edid_offset (read-only): where the blob starts inside the region. */
  readonly edidOffset = MBOCHS_EDID_BLOB_OFFSET;
  /** edid_max_size (read-only). */
  readonly edidMaxSize = MBOCHS_EDID_MAX_SIZE;
  /** edid_size (read/write). */
  edidSize = 0;
  /** max_xres / max_yres (read-only; 0 = no limit). */
  readonly maxXres: number;
  readonly maxYres: number;
  /** link_state (read/write): 0 until the host sets it, then UP or DOWN. */
  linkState = 0;
  readonly blob = new Uint8Array(MBOCHS_EDID_MAX_SIZE);

  constructor(maxXres: number, maxYres: number) {
    this.maxXres = maxXres;
    this.maxYres = maxYres;
  }

  get linkUp(): boolean {
    return this.linkState === VFIO_DEVICE_GFX_LINK_STATE_UP;
  }

  private regValue(offset: number): number {
    switch (offset) {
      case VFIO_REGION_GFX_EDID_EDID_OFFSET:
        return this.edidOffset;
      case VFIO_REGION_GFX_EDID_EDID_MAX_SIZE:
        return this.edidMaxSize;
      case VFIO_REGION_GFX_EDID_EDID_SIZE:
        return this.edidSize;
      case VFIO_REGION_GFX_EDID_MAX_XRES:
        return this.maxXres;
      case VFIO_REGION_GFX_EDID_MAX_YRES:
        return this.maxYres;
      case VFIO_REGION_GFX_EDID_LINK_STATE:
        return this.linkState;
      default:
        return 0;
    }
  }

  /**
   * An access to the region at `offset` (relative to the region start). Registers take aligned
   * 4-byte accesses only; the blob takes any access inside edid_max_size. Anything else is ignored
   * as in the sample, except that a refused read returns zeros rather than stale bytes.
   */
  access(offset: number, buf: Uint8Array, isWrite: boolean): void {
    const count = buf.length;
    if (offset < this.edidOffset) {
      const ok = count === 4 && offset % 4 === 0 && offset + count <= VFIO_REGION_GFX_EDID_SIZE;
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      if (!isWrite) {
        if (ok) dv.setUint32(0, this.regValue(offset) >>> 0, true);
        else buf.fill(0);
        return;
      }
      if (!ok) return;
      const value = dv.getUint32(0, true);
      if (offset === VFIO_REGION_GFX_EDID_LINK_STATE) {
        // Only the two states vfio.h defines; anything else leaves the link as it was.
        if (value === VFIO_DEVICE_GFX_LINK_STATE_UP || value === VFIO_DEVICE_GFX_LINK_STATE_DOWN)
          this.linkState = value;
      } else if (offset === VFIO_REGION_GFX_EDID_EDID_SIZE) {
        // The sample stored any size; a size past the blob's capacity is refused.
        if (value <= this.edidMaxSize) this.edidSize = value;
      }
      return;
    }
    const at = offset - this.edidOffset;
    if (at + count > this.edidMaxSize) {
      if (!isWrite) buf.fill(0);
      return;
    }
    if (isWrite) this.blob.set(buf, at);
    else buf.set(this.blob.subarray(at, at + count));
  }

  /**
   * The guest's view at MMIO BAR offset 0x000-0x3ff: the blob's first edid_size bytes while the
   * link is up, zeros otherwise.
   */
  readForGuest(offset: number, buf: Uint8Array): void {
    buf.fill(0);
    if (!this.linkUp || offset >= this.edidSize) return;
    const end = Math.min(this.edidSize, offset + buf.length);
    buf.set(this.blob.subarray(offset, end));
  }
}

/** Options of `generateEdid`. */
export interface EdidOptions {
  /** Preferred mode; both in 1..4095 (the detailed timing descriptor's 12-bit fields). */
  width: number;
  height: number;
  /** Refresh rate of the preferred mode in Hz; default 60. */
  refresh?: number;
  /** Monitor name, up to 13 ASCII characters; default "mbochs". */
  name?: string;
  /** Three-letter PNP manufacturer id; default "RHT". */
  vendor?: string;
  /** Product code; default 0x1234. */
  product?: number;
  /** Serial number; default 0. */
  serial?: number;
}

// EDID 1.4 base block layout (VESA E-EDID release A2, section 3).
const EDID_BLOCK_SIZE = 128;
const EDID_HEADER = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
const EDID_VENDOR = 8;
const EDID_PRODUCT = 10;
const EDID_SERIAL = 12;
const EDID_WEEK = 16;
const EDID_YEAR = 17;
const EDID_VERSION = 18;
const EDID_REVISION = 19;
const EDID_INPUT = 20;
const EDID_SIZE_H_CM = 21;
const EDID_SIZE_V_CM = 22;
const EDID_GAMMA = 23;
const EDID_FEATURES = 24;
const EDID_CHROMA = 25;
const EDID_ESTABLISHED = 35;
const EDID_STANDARD = 38;
const EDID_DESCRIPTORS = 54;
const EDID_DESCRIPTOR_SIZE = 18;
const EDID_EXTENSIONS = 126;
const EDID_CHECKSUM = 127;
/** sRGB primaries and D65 white point, packed as the chromaticity block wants them. */
const EDID_SRGB_CHROMA = [0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54];
// Blanking of the generated preferred mode (reduced-blanking style, in pixels and lines).
const H_FRONT = 48;
const H_SYNC = 32;
const H_BLANK = 160;
const V_FRONT = 3;
const V_SYNC = 5;
const V_BLANK = 30;
/** Assumed pixel pitch for the image size fields: about 96 dpi. */
const MM_PER_PIXEL = 0.264;

/**
 * A 128-byte EDID 1.4 base block for a monitor whose preferred mode is `width` x `height`, with
 * a valid checksum: what a host writes into the EDID region before setting the link up.
 */
export function generateEdid(opts: EdidOptions): Uint8Array {
  const { width, height } = opts;
  const refresh = opts.refresh ?? 60;
  for (const [what, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 4095) {
      throw new RangeError(`generateEdid: ${what} ${v} is outside 1..4095`);
    }
  }
  const vendor = opts.vendor ?? 'RHT';
  if (!/^[A-Z]{3}$/.test(vendor)) throw new RangeError(`generateEdid: bad vendor id "${vendor}"`);
  const name = opts.name ?? 'mbochs';
  if (!/^[\x20-\x7e]{0,13}$/.test(name)) throw new RangeError(`generateEdid: bad name "${name}"`);

  const e = new Uint8Array(EDID_BLOCK_SIZE);
  const dv = new DataView(e.buffer);
  e.set(EDID_HEADER, 0);
  // Manufacturer: three 5-bit letters ('A' = 1), big-endian.
  const letters = [...vendor].map((c) => c.charCodeAt(0) - 64);
  dv.setUint16(EDID_VENDOR, (letters[0]! << 10) | (letters[1]! << 5) | letters[2]!, false);
  dv.setUint16(EDID_PRODUCT, (opts.product ?? 0x1234) & 0xffff, true);
  dv.setUint32(EDID_SERIAL, (opts.serial ?? 0) >>> 0, true);
  e[EDID_WEEK] = 1;
  e[EDID_YEAR] = 2019 - 1990;
  e[EDID_VERSION] = 1;
  e[EDID_REVISION] = 4;
  e[EDID_INPUT] = 0xa5; // digital, 8 bits per colour, DisplayPort
  const hmm = Math.round(width * MM_PER_PIXEL);
  const vmm = Math.round(height * MM_PER_PIXEL);
  e[EDID_SIZE_H_CM] = Math.min(255, Math.round(hmm / 10));
  e[EDID_SIZE_V_CM] = Math.min(255, Math.round(vmm / 10));
  e[EDID_GAMMA] = 120; // (2.2 * 100) - 100
  e[EDID_FEATURES] = 0x06; // RGB 4:4:4, sRGB default, preferred timing is native
  e.set(EDID_SRGB_CHROMA, EDID_CHROMA);
  e[EDID_ESTABLISHED] = 0x21; // 640x480@60, 800x600@60
  e[EDID_ESTABLISHED + 1] = 0x08; // 1024x768@60
  for (let i = 0; i < 8; i++) {
    e[EDID_STANDARD + 2 * i] = 0x01; // unused standard timing
    e[EDID_STANDARD + 2 * i + 1] = 0x01;
  }

  // Descriptor 1: the detailed timing of the preferred mode.
  const d = EDID_DESCRIPTORS;
  const htotal = width + H_BLANK;
  const vtotal = height + V_BLANK;
  const clock10k = Math.round((htotal * vtotal * refresh) / 10000);
  if (clock10k > 0xffff)
    throw new RangeError(`generateEdid: pixel clock too high for ${refresh} Hz`);
  dv.setUint16(d, clock10k, true);
  e[d + 2] = width & 0xff;
  e[d + 3] = H_BLANK & 0xff;
  e[d + 4] = ((width >> 8) << 4) | (H_BLANK >> 8);
  e[d + 5] = height & 0xff;
  e[d + 6] = V_BLANK & 0xff;
  e[d + 7] = ((height >> 8) << 4) | (V_BLANK >> 8);
  e[d + 8] = H_FRONT & 0xff;
  e[d + 9] = H_SYNC & 0xff;
  e[d + 10] = ((V_FRONT & 0xf) << 4) | (V_SYNC & 0xf);
  e[d + 11] = ((H_FRONT >> 8) << 6) | ((H_SYNC >> 8) << 4) | ((V_FRONT >> 4) << 2) | (V_SYNC >> 4);
  e[d + 12] = hmm & 0xff;
  e[d + 13] = vmm & 0xff;
  e[d + 14] = (((hmm >> 8) & 0xf) << 4) | ((vmm >> 8) & 0xf);
  e[d + 17] = 0x1e; // digital separate sync, both polarities positive

  // Descriptor 2: range limits (50-125 Hz vertical, 30-160 kHz horizontal).
  const r = d + EDID_DESCRIPTOR_SIZE;
  e.set([0, 0, 0, 0xfd, 0, 50, 125, 30, 160], r);
  e[r + 9] = Math.min(255, Math.ceil(clock10k / 1000)); // max pixel clock in 10 MHz
  e.set([0x00, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20], r + 10);

  // Descriptor 3: the monitor name, ended by a line feed and padded with spaces.
  const n = r + EDID_DESCRIPTOR_SIZE;
  e.set([0, 0, 0, 0xfc, 0], n);
  const text = new Uint8Array(13).fill(0x20);
  for (let i = 0; i < name.length; i++) text[i] = name.charCodeAt(i);
  if (name.length < 13) text[name.length] = 0x0a;
  e.set(text, n + 5);

  // Descriptor 4: a dummy descriptor.
  e.set([0, 0, 0, 0x10, 0], n + EDID_DESCRIPTOR_SIZE);

  e[EDID_EXTENSIONS] = 0;
  let sum = 0;
  for (let i = 0; i < EDID_CHECKSUM; i++) sum += e[i]!;
  e[EDID_CHECKSUM] = (256 - (sum & 0xff)) & 0xff;
  return e;
}

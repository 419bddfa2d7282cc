import { type ByteOps, byteOpsOf } from '@mdev/virtio-ring';

/**
 * Test frames: an Ethernet header (to and from the device's own MAC, EtherType 0x88B5, the IEEE
 * local experimental type), a 32-bit sequence number, then bytes derived from it, so a receiver
 * can check both order and content.
 */
export const PKTGEN_ETHERTYPE = 0x88b5;
export const SEQ_OFFSET = 14;
export const PAYLOAD_OFFSET = 18;
/** The smallest and largest frame sizes pktgen sends (no FCS). */
export const MIN_FRAME = 60;
export const MAX_FRAME = 1514;

// What the per-frame code below reads: an exported binding is loaded through its module cell
// and checked for a hole on every use, and a function declaration is compared before every call,
// where V8 folds a module constant into the code (a few dozen instructions a frame in all).
const seqOffset = SEQ_OFFSET;

/** The byte at `i` of the frame with sequence number `seq` (past the sequence field). */
export function patternByte(seq: number, i: number): number {
  return (seq * 31 + i * 7) & 0xff;
}

/** Writes the fixed header of a frame template once. */
export function initFrame(frame: Uint8Array, mac: Uint8Array): void {
  frame.set(mac, 0);
  frame.set(mac, 6);
  frame[12] = PKTGEN_ETHERTYPE >> 8;
  frame[13] = PKTGEN_ETHERTYPE & 0xff;
}

/** Writes sequence number `seq` (big-endian) into the frame at `buf[offset]`. */
export function writeSeq(buf: Uint8Array, offset: number, seq: number): void {
  const o = offset + seqOffset;
  buf[o] = seq >>> 24;
  buf[o + 1] = (seq >>> 16) & 0xff;
  buf[o + 2] = (seq >>> 8) & 0xff;
  buf[o + 3] = seq & 0xff;
}

/** Stamps a sequence number and its payload into the template (no allocation). */
export function stampFrame(frame: Uint8Array, seq: number): void {
  writeSeq(frame, 0, seq);
  for (let i = PAYLOAD_OFFSET; i < frame.length; i++) frame[i] = patternByte(seq, i);
}

/** Reads the sequence number of a received frame. */
export function frameSeq(buf: Uint8Array, offset: number): number {
  const o = offset + seqOffset;
  return ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
}

/**
 * Whether sequence number `seq` comes before `expected`, both 32-bit (the field's width): the
 * difference is taken modulo 2^32, as TCP compares its sequence numbers, so that the frames after
 * tx passes 2^32 (sequence 0 again) count as ahead of 0xffffffff, not as reordered. A frame more
 * than 2^31 behind reads as ahead, which no run comes near.
 */
export function seqBefore(seq: number, expected: number): boolean {
  return ((seq - expected) | 0) < 0;
}

/** Whether a received frame has the header and payload its sequence number says. */
export function frameIntact(
  buf: Uint8Array,
  offset: number,
  length: number,
  expectLen: number,
  mac: Uint8Array,
): boolean {
  if (length !== expectLen) return false;
  for (let i = 0; i < 6; i++) {
    if (buf[offset + i] !== mac[i] || buf[offset + 6 + i] !== mac[i]) return false;
  }
  if (buf[offset + 12] !== PKTGEN_ETHERTYPE >> 8 || buf[offset + 13] !== (PKTGEN_ETHERTYPE & 0xff))
    return false;
  const seq = frameSeq(buf, offset);
  for (let i = PAYLOAD_OFFSET; i < length; i++) {
    if (buf[offset + i] !== patternByte(seq, i)) return false;
  }
  return true;
}

const HOST_LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * What a frame's byte view is, kept for the next call with the same view (frames arrive in the
 * same view call after call): its offset in its buffer, whether that buffer is the pattern's,
 * and a 32-bit view and a DataView of all of the buffer. Reading `.buffer` costs a call into the
 * runtime, and so does `.byteOffset` in code that V8 optimises in a background thread (Node's
 * default): per frame that was a fifth of pktgen's time.
 */
class ViewInfo {
  /** The view's byte offset in its buffer. */
  base = 0;
  /** Whether the view is over the pattern's buffer. */
  same = false;
  private view: Uint8Array | null = null;
  private viewBuffer: ArrayBufferLike | null = null;
  private words32: Uint32Array | null = null;
  private dataView: DataView | null = null;

  constructor(private readonly buffer: ArrayBufferLike) {}

  /** Points the fields at `buf`, unless it is the view of the last call. */
  update(buf: Uint8Array): void {
    if (buf === this.view) return;
    this.view = buf;
    this.base = buf.byteOffset;
    this.viewBuffer = buf.buffer;
    this.same = this.viewBuffer === this.buffer;
    this.words32 = null;
    this.dataView = null;
  }

  /** A 32-bit view of all of the buffer of the view last given to `update`. */
  words(): Uint32Array {
    if (this.words32 === null) {
      const buffer = this.viewBuffer!;
      this.words32 = new Uint32Array(buffer, 0, buffer.byteLength >> 2);
    }
    return this.words32;
  }

  /**
   * A DataView of all of the buffer of the view last given to `update`: the big-endian sequence
   * field is one access with one bounds check there, where byte by byte it takes four.
   */
  data(): DataView {
    if (this.dataView === null) this.dataView = new DataView(this.viewBuffer!);
    return this.dataView;
  }
}

/**
 * The frames of one run, prepared once: since `patternByte` depends on the sequence number only
 * through `seq * 31 mod 256`, there are 256 distinct payloads. Stamping copies a prepared frame
 * and writes the sequence number; checking compares it with the prepared one. Nothing is
 * allocated per frame. Agrees with `stampFrame` and `frameIntact`.
 *
 * Given `storage` in a buffer with byte ops (host RAM: @mdev/virtio-ring's `byteOpsOf`), frames
 * in that same buffer are copied and compared by wasm; otherwise by 32-bit words where the frame
 * is 4-aligned, and by bytes where it is not.
 */
export class FramePattern {
  /** Bytes of `storage` a pattern of `size`-byte frames takes. */
  static bytesFor(size: number): number {
    return 256 * ((size + 3) & ~3);
  }

  readonly size: number;
  private readonly stride: number;
  private readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  /** `bytes.byteOffset`, read once. */
  private readonly bytesBase: number;
  /** A DataView of the buffer of `bytes`, for the sequence field of a template. */
  private readonly bytesData: DataView;
  private readonly frames: Uint8Array[] = [];
  // Bytes 12-13 of word 3 and 18-19 of word 4 (little-endian lanes).
  private readonly maskWord3 = 0x0000_ffff;
  private readonly maskWord4 = 0xffff_0000 | 0;
  // Byte ops of the storage's buffer; the views frames are written to and checked in.
  private readonly ops: ByteOps | null;
  private readonly txView: ViewInfo;
  private readonly rxView: ViewInfo;

  constructor(size: number, mac: Uint8Array, storage?: Uint8Array) {
    if (!Number.isInteger(size) || size < MIN_FRAME) {
      throw new RangeError(`FramePattern: frames are at least ${MIN_FRAME} bytes, not ${size}`);
    }
    this.size = size;
    this.stride = (size + 3) & ~3;
    const bytes = FramePattern.bytesFor(size);
    if (storage === undefined) {
      this.words = new Uint32Array(bytes >> 2);
    } else if (storage.length < bytes || storage.byteOffset % 4 !== 0) {
      throw new RangeError(`FramePattern: storage must be ${bytes} bytes at a 4-aligned offset`);
    } else {
      this.words = new Uint32Array(storage.buffer, storage.byteOffset, bytes >> 2);
    }
    this.bytes = new Uint8Array(this.words.buffer, this.words.byteOffset, bytes);
    this.bytesBase = this.bytes.byteOffset;
    this.bytesData = new DataView(this.bytes.buffer);
    this.ops = byteOpsOf(this.bytes.buffer);
    this.txView = new ViewInfo(this.bytes.buffer);
    this.rxView = new ViewInfo(this.bytes.buffer);
    for (let c = 0; c < 256; c++) {
      // Payload class c belongs to sequence numbers with seq * 31 = c (mod 256); 223 is the
      // inverse of 31 mod 256, so (c * 223) & 0xff is one of them.
      const f = this.bytes.subarray(c * this.stride, c * this.stride + size);
      initFrame(f, mac);
      stampFrame(f, (c * 223) & 0xff);
      f.fill(0, SEQ_OFFSET, PAYLOAD_OFFSET);
      this.frames[c] = f;
    }
  }

  /** Writes frame `seq` into `frame` (of `size` bytes). */
  stamp(frame: Uint8Array, seq: number): void {
    this.stampAt(frame, 0, seq);
  }

  /** Writes frame `seq` at `buf[offset, offset + size)`. */
  stampAt(buf: Uint8Array, offset: number, seq: number): void {
    const c = (seq * 31) & 0xff;
    const view = this.txView;
    view.update(buf);
    const start = view.base + offset;
    if (this.ops !== null && view.same === true) {
      this.ops.copy(start, this.bytesBase + c * this.stride, this.size);
    } else if ((start & 3) === 0 && HOST_LE) {
      // By 32-bit words: `set` into shared memory copies byte by byte when source and target
      // differ in alignment mod 8, as they do behind a 12-byte virtio-net header.
      const w = view.words();
      const tw = this.words;
      const base = start >> 2;
      const tb = (c * this.stride) >> 2;
      const full = this.size >> 2;
      for (let i = 0; i < full; i++) w[base + i] = tw[tb + i]!;
      for (let i = full << 2; i < this.size; i++)
        buf[offset + i] = this.bytes[c * this.stride + i]!;
    } else {
      buf.set(this.frames[c]!, offset);
    }
    // As writeSeq does (big-endian, modulo 2^32).
    view.data().setUint32(start + seqOffset, seq);
  }

  /** The sequence number of the frame at `buf[offset]`, as `frameSeq` reads it. */
  seqOf(buf: Uint8Array, offset: number): number {
    const view = this.rxView;
    view.update(buf);
    return view.data().getUint32(view.base + offset + seqOffset);
  }

  /** Whether the received frame is exactly frame `frameSeq(buf, offset)` of this run. */
  intact(buf: Uint8Array, offset: number, length: number): boolean {
    if (length !== this.size) return false;
    const view = this.rxView;
    view.update(buf);
    const start = view.base + offset;
    const seq = view.data().getUint32(start + seqOffset);
    const c = (seq * 31) & 0xff;
    const t = c * this.stride;
    if (this.ops !== null && view.same === true) {
      // The template's sequence field is free (stamping writes its own after the copy): it takes
      // this frame's, so that one compare covers the frame.
      this.bytesData.setUint32(this.bytesBase + t + seqOffset, seq);
      return this.ops.equal(start, this.bytesBase + t, length);
    }
    if ((start & 3) === 0 && HOST_LE) {
      const w = view.words();
      const tw = this.words;
      const base = start >> 2;
      const tb = t >> 2;
      const full = length >> 2;
      // Every word but the sequence number's bytes (14-17), which the template leaves zero:
      // word 3 holds bytes 12-15 (type, then the sequence's high half), word 4 bytes 16-19 (its
      // low half, then payload). The masks keep the other bytes (words are little-endian here;
      // a big-endian host takes the byte loop below).
      if (
        w[base] !== tw[tb] ||
        w[base + 1] !== tw[tb + 1] ||
        w[base + 2] !== tw[tb + 2] ||
        ((w[base + 3]! ^ tw[tb + 3]!) & this.maskWord3) !== 0 ||
        ((w[base + 4]! ^ tw[tb + 4]!) & this.maskWord4) !== 0
      ) {
        return false;
      }
      for (let i = 5; i < full; i++) if (w[base + i] !== tw[tb + i]) return false;
      for (let i = full << 2; i < length; i++) {
        if (buf[offset + i] !== this.bytes[t + i]) return false;
      }
      return true;
    }
    for (let i = 0; i < length; i++) {
      if (i >= SEQ_OFFSET && i < PAYLOAD_OFFSET) continue;
      if (buf[offset + i] !== this.bytes[t + i]) return false;
    }
    return true;
  }
}

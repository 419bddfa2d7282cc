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

/** Stamps a sequence number and its payload into the template (no allocation). */
export function stampFrame(frame: Uint8Array, seq: number): void {
  frame[SEQ_OFFSET] = seq >>> 24;
  frame[SEQ_OFFSET + 1] = (seq >>> 16) & 0xff;
  frame[SEQ_OFFSET + 2] = (seq >>> 8) & 0xff;
  frame[SEQ_OFFSET + 3] = seq & 0xff;
  for (let i = PAYLOAD_OFFSET; i < frame.length; i++) frame[i] = patternByte(seq, i);
}

/** Reads the sequence number of a received frame. */
export function frameSeq(buf: Uint8Array, offset: number): number {
  const o = offset + SEQ_OFFSET;
  return ((buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!) >>> 0;
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

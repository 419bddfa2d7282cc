/**
 * The split virtqueue layout of <linux/virtio_ring.h> and virtio 1.2 section 2.7 ("Split
 * Virtqueues"). Every offset and size the ring code uses is defined here, once.
 */

/** This marks a buffer as continuing via the next field (VRING_DESC_F_NEXT, 2.7.5). */
export const VRING_DESC_F_NEXT = 1;
/** This marks a buffer as device write-only (otherwise device read-only) (VRING_DESC_F_WRITE). */
export const VRING_DESC_F_WRITE = 2;
/** This means the buffer contains a list of buffer descriptors (VRING_DESC_F_INDIRECT, 2.7.5.3). */
export const VRING_DESC_F_INDIRECT = 4;

/** The device uses this in used->flags to advise the driver: don't kick me (VRING_USED_F_NO_NOTIFY). */
export const VRING_USED_F_NO_NOTIFY = 1;
/** The driver uses this in avail->flags to advise the device: don't interrupt me (VRING_AVAIL_F_NO_INTERRUPT). */
export const VRING_AVAIL_F_NO_INTERRUPT = 1;

/** Feature bit: indirect descriptors (VIRTIO_RING_F_INDIRECT_DESC, 6.3). */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
/** Feature bit: used_event/avail_event fields (VIRTIO_RING_F_EVENT_IDX, 2.7.7). */
export const VIRTIO_RING_F_EVENT_IDX = 29;

/** sizeof(struct vring_desc): le64 addr, le32 len, le16 flags, le16 next. */
export const VRING_DESC_SIZE = 16;
export const VRING_DESC_ADDR = 0;
export const VRING_DESC_LEN = 8;
export const VRING_DESC_FLAGS = 12;
export const VRING_DESC_NEXT = 14;

/** struct vring_avail: le16 flags, le16 idx, le16 ring[num], then le16 used_event. */
export const VRING_AVAIL_FLAGS = 0;
export const VRING_AVAIL_IDX = 2;
export const VRING_AVAIL_RING = 4;
/** sizeof(vring_avail.ring[0]). */
export const VRING_AVAIL_ELEM_SIZE = 2;

/** struct vring_used: le16 flags, le16 idx, struct vring_used_elem ring[num], then le16 avail_event. */
export const VRING_USED_FLAGS = 0;
export const VRING_USED_IDX = 2;
export const VRING_USED_RING = 4;
/** sizeof(struct vring_used_elem): le32 id, le32 len. */
export const VRING_USED_ELEM_SIZE = 8;
export const VRING_USED_ELEM_ID = 0;
export const VRING_USED_ELEM_LEN = 4;

/**
 * Word offsets of the same fields for the typed-array views the ring ends keep on each area (a
 * little-endian host, where the views are the wire format): descriptor `i` of a `Uint32Array`
 * over the table starts at word `i * VRING_DESC_WORDS32`, of a `Uint16Array` at
 * `i * VRING_DESC_WORDS16`. Each is the byte offset above divided by the word size.
 */
export const VRING_DESC_WORDS32 = VRING_DESC_SIZE / 4;
export const VRING_DESC_WORDS16 = VRING_DESC_SIZE / 2;
/** The low and high le32 halves of vring_desc.addr, in 32-bit words. */
export const VRING_DESC32_ADDR_LO = VRING_DESC_ADDR / 4;
export const VRING_DESC32_ADDR_HI = VRING_DESC_ADDR / 4 + 1;
/** vring_desc.len in 32-bit words. */
export const VRING_DESC32_LEN = VRING_DESC_LEN / 4;
/** vring_desc.flags and vring_desc.next in 16-bit words. */
export const VRING_DESC16_FLAGS = VRING_DESC_FLAGS / 2;
export const VRING_DESC16_NEXT = VRING_DESC_NEXT / 2;
/** vring_avail.flags, .idx and .ring[0] in 16-bit words of the driver area. */
export const VRING_AVAIL16_FLAGS = VRING_AVAIL_FLAGS / 2;
export const VRING_AVAIL16_IDX = VRING_AVAIL_IDX / 2;
export const VRING_AVAIL16_RING = VRING_AVAIL_RING / 2;
/** vring_used.flags and .idx in 16-bit words of the device area. */
export const VRING_USED16_FLAGS = VRING_USED_FLAGS / 2;
export const VRING_USED16_IDX = VRING_USED_IDX / 2;
/**
 * vring_used.ring[slot].id and .len in 32-bit words of the device area: element `slot` starts at
 * word `VRING_USED32_RING + slot * VRING_USED_ELEM_WORDS32`.
 */
export const VRING_USED32_RING = VRING_USED_RING / 4;
export const VRING_USED_ELEM_WORDS32 = VRING_USED_ELEM_SIZE / 4;
export const VRING_USED32_ELEM_ID = VRING_USED_ELEM_ID / 4;
export const VRING_USED32_ELEM_LEN = VRING_USED_ELEM_LEN / 4;

/** Alignment of the descriptor table, driver area and device area in VERSION_1 (2.7, table). */
export const VRING_DESC_ALIGN_SIZE = 16;
export const VRING_AVAIL_ALIGN_SIZE = 2;
export const VRING_USED_ALIGN_SIZE = 4;

/** The legacy alignment of the used ring (VIRTIO_PCI_VRING_ALIGN). */
export const VRING_LEGACY_ALIGN = 4096;

/** The largest split queue size: "Queue Size value is always a power of 2. The maximum Queue Size value is 32768" (2.7). */
export const VIRTQUEUE_MAX_SIZE = 32768;

/** Bytes of the descriptor table for `num` entries. */
export function vringDescSize(num: number): number {
  return VRING_DESC_SIZE * num;
}

/** Bytes of the driver (avail) area, with used_event. */
export function vringAvailSize(num: number): number {
  return VRING_AVAIL_RING + VRING_AVAIL_ELEM_SIZE * num + 2;
}

/** Bytes of the device (used) area, with avail_event. */
export function vringUsedSize(num: number): number {
  return VRING_USED_RING + VRING_USED_ELEM_SIZE * num + 2;
}

/** Offset of used_event inside the driver area: just after avail->ring[num] (vring_used_event()). */
export function vringUsedEventOffset(num: number): number {
  return VRING_AVAIL_RING + VRING_AVAIL_ELEM_SIZE * num;
}

/** Offset of avail_event inside the device area: just after used->ring[num] (vring_avail_event()). */
export function vringAvailEventOffset(num: number): number {
  return VRING_USED_RING + VRING_USED_ELEM_SIZE * num;
}

/** used_event in 16-bit words of the driver area (vring_used_event()). */
export function vringUsedEvent16(num: number): number {
  return vringUsedEventOffset(num) / 2;
}

/** avail_event in 16-bit words of the device area (vring_avail_event()). */
export function vringAvailEvent16(num: number): number {
  return vringAvailEventOffset(num) / 2;
}

const U32 = 0x1_0000_0000;

/**
 * Reads a le64 address field (vring_desc.addr, a queue address) stored as two 32-bit words at
 * `w32[i]` (low) and `w32[i + 1]` (high). -1 when the address is above 2^53 - 1, where a JS
 * number is no longer exact: no address a ring may carry here (MAX_ADDR in memory.ts).
 */
export function loadAddr64(w32: Uint32Array, i: number): number {
  // joinAddr64, written out: one call less to inline on the per-frame path.
  const hi = w32[i + 1]!;
  return hi >= 0x20_0000 ? -1 : hi * U32 + w32[i]!;
}

/** Joins the two le32 halves of a 64-bit address, as `loadAddr64`; -1 above 2^53 - 1. */
export function joinAddr64(lo: number, hi: number): number {
  return hi >= 0x20_0000 ? -1 : hi * U32 + lo;
}

/**
 * Writes the address `addr` (an integer from 0 to 2^53 - 1) as the two 32-bit words of a le64
 * field at `w32[i]` (low) and `w32[i + 1]` (high).
 */
export function storeAddr64(w32: Uint32Array, i: number, addr: number): void {
  const lo = addr >>> 0; // ToUint32: the low half, exact for integers below 2^53
  w32[i] = lo;
  w32[i + 1] = (addr - lo) / U32;
}

/** Rounds `n` up to a multiple of the power-of-two `align`. */
export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/**
 * Mirrors vring_size(num, align): the bytes of a contiguous legacy ring, whose used ring starts
 * at the next `align` boundary after the avail ring.
 */
export function vringSize(num: number, align: number): number {
  return alignUp(VRING_DESC_SIZE * num + 2 * (3 + num), align) + 2 * 3 + VRING_USED_ELEM_SIZE * num;
}

/** Byte offsets of the three areas inside a contiguous ring laid out as vring_init() does. */
export function vringLayout(
  num: number,
  align: number,
): { desc: 0; avail: number; used: number; size: number } {
  const avail = vringDescSize(num);
  const used = alignUp(avail + VRING_AVAIL_RING + VRING_AVAIL_ELEM_SIZE * num + 2, align);
  return { desc: 0, avail, used, size: vringSize(num, align) };
}

/**
 * Mirrors vring_need_event(event_idx, new_idx, old): whether the other side asked to be notified
 * for an index between `old` (exclusive) and `newIdx` (inclusive), all modulo 2^16 (2.7.7.2).
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, old: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - old) & 0xffff);
}

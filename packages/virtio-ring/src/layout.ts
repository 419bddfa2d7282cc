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

/**
 * The packed virtqueue layout of <linux/virtio_ring.h> and virtio 1.2 section 2.8 ("Packed
 * Virtqueues"): one descriptor ring both sides write, and two event suppression structures (the
 * driver's, which the device reads before an interrupt, and the device's, which the driver reads
 * before a kick). The three areas take the places of the split ring's descriptor table, driver
 * area and device area: the same three addresses are handed to the device.
 */

/** sizeof(struct vring_packed_desc): le64 addr, le32 len, le16 id, le16 flags. */
export const VRING_PACKED_DESC_SIZE = 16;
export const VRING_PACKED_DESC_ADDR = 0;
export const VRING_PACKED_DESC_LEN = 8;
export const VRING_PACKED_DESC_ID = 12;
export const VRING_PACKED_DESC_FLAGS = 14;

/** The descriptor's word offsets for the typed-array views (little-endian host, as in layout.ts). */
export const VRING_PACKED_DESC_WORDS32 = VRING_PACKED_DESC_SIZE / 4;
export const VRING_PACKED_DESC_WORDS16 = VRING_PACKED_DESC_SIZE / 2;
export const VRING_PACKED_DESC32_ADDR_LO = VRING_PACKED_DESC_ADDR / 4;
export const VRING_PACKED_DESC32_LEN = VRING_PACKED_DESC_LEN / 4;
export const VRING_PACKED_DESC16_ID = VRING_PACKED_DESC_ID / 2;
export const VRING_PACKED_DESC16_FLAGS = VRING_PACKED_DESC_FLAGS / 2;

/**
 * The avail and used flags of a descriptor, as shifts (VRING_PACKED_DESC_F_AVAIL/_USED are
 * defined as shifts in the header, "instead of shifted values").
 */
export const VRING_PACKED_DESC_F_AVAIL = 7;
export const VRING_PACKED_DESC_F_USED = 15;

/** sizeof(struct vring_packed_desc_event): le16 off_wrap, le16 flags. */
export const VRING_PACKED_EVENT_SIZE = 4;
export const VRING_PACKED_EVENT_OFF_WRAP = 0;
export const VRING_PACKED_EVENT_FLAGS = 2;
/** The same two fields in 16-bit words. */
export const VRING_PACKED_EVENT16_OFF_WRAP = VRING_PACKED_EVENT_OFF_WRAP / 2;
export const VRING_PACKED_EVENT16_FLAGS = VRING_PACKED_EVENT_FLAGS / 2;

/** Event suppression flags (2.8.10): notify always, never, or at the descriptor in off_wrap. */
export const VRING_PACKED_EVENT_FLAG_ENABLE = 0x0;
export const VRING_PACKED_EVENT_FLAG_DISABLE = 0x1;
/** Only valid with VIRTIO_RING_F_EVENT_IDX. */
export const VRING_PACKED_EVENT_FLAG_DESC = 0x2;
/** The wrap counter's bit in off_wrap (a shift). */
export const VRING_PACKED_EVENT_F_WRAP_CTR = 15;

/** Alignment of the descriptor ring and of both event structures (2.8.10.1, table). */
export const VRING_PACKED_DESC_ALIGN_SIZE = 16;
export const VRING_PACKED_EVENT_ALIGN_SIZE = 4;

/**
 * The largest packed queue size: "Queue Size value ... can be any value up to 32768", not only a
 * power of two (2.8, and 4.1.4.3.2's queue_size for packed rings).
 */
export const VIRTQUEUE_PACKED_MAX_SIZE = 32768;

/** Bytes of the descriptor ring for `num` entries. */
export function vringPackedDescSize(num: number): number {
  return VRING_PACKED_DESC_SIZE * num;
}

/**
 * Flags of a descriptor the driver makes available in lap `wrap` (2.8.1): the avail flag equal to
 * the driver's wrap counter and the used flag its inverse.
 */
export function packedAvailFlags(wrap: number): number {
  return wrap !== 0 ? 1 << VRING_PACKED_DESC_F_AVAIL : 1 << VRING_PACKED_DESC_F_USED;
}

/** Flags of a descriptor the device marks used in lap `wrap`: both flags equal to the counter. */
export function packedUsedFlags(wrap: number): number {
  return wrap !== 0 ? (1 << VRING_PACKED_DESC_F_AVAIL) | (1 << VRING_PACKED_DESC_F_USED) : 0;
}

/**
 * The packed half of a vq state (the kernel's struct vdpa_vq_state_packed): where the device
 * reads the next available descriptor and writes the next used one, each with its wrap counter.
 */
export interface PackedVqState {
  lastAvailIdx: number;
  lastAvailCounter: number;
  lastUsedIdx: number;
  lastUsedCounter: number;
}

/**
 * A packed index with its wrap counter in bit 15, the encoding of off_wrap, of
 * VHOST_GET/SET_VRING_BASE for packed rings and of DPDK's last_avail_idx.
 */
export function packWrapIdx(idx: number, wrap: number): number {
  return (idx & 0x7fff) | (wrap !== 0 ? 0x8000 : 0);
}

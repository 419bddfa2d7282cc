/**
 * The VF's hardware interface: where each register sits in its memory BAR, and the words of the
 * "link" the host and the VF's engine share (posted MMIO writes, interrupt messages).
 *
 * The BAR holds the four virtio-pci modern structures a virtio 1.x PCI function exposes (virtio
 * 1.2, 4.1.4): the common configuration, the ISR status byte, the notification area and the
 * device-specific configuration; plus two vendor areas of this VF: the queue state registers
 * (what an IFC VF keeps for live migration) and 64-bit statistics counters. All little-endian.
 */

/** Bytes of the VF's memory BAR (one page, like a small PCI BAR). */
export const VF_BAR_SIZE = 0x1000;

// struct virtio_pci_common_cfg (<linux/virtio_pci.h>, virtio 1.2 4.1.4.3), at BAR offset 0.
// The names and offsets are the uapi header's VIRTIO_PCI_COMMON_* macros.
/** Offset of the common configuration structure in the BAR. */
export const VF_COMMON_CFG = 0x000;
/** le32 device_feature_select (read-write): which 32 feature bits device_feature shows. */
export const VIRTIO_PCI_COMMON_DFSELECT = 0;
/** le32 device_feature (read-only). */
export const VIRTIO_PCI_COMMON_DF = 4;
/** le32 driver_feature_select (read-write); guest_feature_select in the uapi struct. */
export const VIRTIO_PCI_COMMON_GFSELECT = 8;
/** le32 driver_feature (read-write); guest_feature in the uapi struct. */
export const VIRTIO_PCI_COMMON_GF = 12;
/** le16 msix_config (read-write): the MSI-X vector of configuration changes. */
export const VIRTIO_PCI_COMMON_MSIX = 16;
/** le16 num_queues (read-only). */
export const VIRTIO_PCI_COMMON_NUMQ = 18;
/** u8 device_status (read-write; 0 resets the device). */
export const VIRTIO_PCI_COMMON_STATUS = 20;
/** u8 config_generation (read-only): changes when the device configuration changes. */
export const VIRTIO_PCI_COMMON_CFGGENERATION = 21;
/** le16 queue_select (read-write): which queue the queue_* fields below show. */
export const VIRTIO_PCI_COMMON_Q_SELECT = 22;
/** le16 queue_size (read-write, a power of 2; 0 for a queue that does not exist). */
export const VIRTIO_PCI_COMMON_Q_SIZE = 24;
/** le16 queue_msix_vector (read-write). */
export const VIRTIO_PCI_COMMON_Q_MSIX = 26;
/** le16 queue_enable (read-write). */
export const VIRTIO_PCI_COMMON_Q_ENABLE = 28;
/** le16 queue_notify_off (read-only). */
export const VIRTIO_PCI_COMMON_Q_NOFF = 30;
/** le32 queue_desc_lo / queue_desc_hi (read-write): the descriptor area. */
export const VIRTIO_PCI_COMMON_Q_DESCLO = 32;
export const VIRTIO_PCI_COMMON_Q_DESCHI = 36;
/** le32 queue_avail_lo / queue_avail_hi (read-write): the driver area. */
export const VIRTIO_PCI_COMMON_Q_AVAILLO = 40;
export const VIRTIO_PCI_COMMON_Q_AVAILHI = 44;
/** le32 queue_used_lo / queue_used_hi (read-write): the device area. */
export const VIRTIO_PCI_COMMON_Q_USEDLO = 48;
export const VIRTIO_PCI_COMMON_Q_USEDHI = 52;
/** sizeof(struct virtio_pci_common_cfg). */
export const VIRTIO_PCI_COMMON_CFG_SIZE = 56;

/** VIRTIO_MSI_NO_VECTOR (<linux/virtio_pci.h>): no MSI-X vector; the device uses INTx and ISR. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

// The ISR status capability (virtio 1.2, 4.1.4.5): one byte; reading it clears it.
/** Offset of the ISR status byte in the BAR. */
export const VF_ISR = 0x040;
/** ISR bit 0: a queue interrupt. */
export const VIRTIO_PCI_ISR_QUEUE = 0x1;
/** ISR bit 1: a configuration change (VIRTIO_PCI_ISR_CONFIG in <linux/virtio_pci.h>). */
export const VIRTIO_PCI_ISR_CONFIG = 0x2;

// The device-specific configuration (virtio 1.2, 4.1.4.6): struct virtio_net_config.
/** Offset of the device configuration in the BAR. */
export const VF_DEVICE_CFG = 0x080;
/** Bytes of device configuration the VF implements: mac, status, max_virtqueue_pairs, mtu. */
export const VF_DEVICE_CFG_SIZE = 12;

// The notification area (virtio 1.2, 4.1.4.4): queue q's doorbell is at
// VF_NOTIFY + queue_notify_off(q) * VF_NOTIFY_OFF_MULTIPLIER; the driver writes the queue index.
/** Offset of the notification area in the BAR. */
export const VF_NOTIFY = 0x100;
/** notify_off_multiplier of the notification capability: one 32-bit doorbell per queue. */
export const VF_NOTIFY_OFF_MULTIPLIER = 4;

// Vendor area: queue state, one 32-bit register per queue (an IFC VF keeps last_avail_idx and
// last_used_idx of every ring in a live-migration area of its BAR the same way).
/** Offset of the queue state registers in the BAR. */
export const VF_QUEUE_STATE = 0x200;
/** Bytes of one queue's state register. */
export const VF_QUEUE_STATE_STRIDE = 4;
/** le16 last_avail_idx (read-write while the queue is disabled; read-only while it runs). */
export const VF_QUEUE_STATE_LAST_AVAIL = 0;
/** le16 last_used_idx (read-only). */
export const VF_QUEUE_STATE_LAST_USED = 2;

// Vendor area: statistics, 64-bit little-endian counters the engine updates after each run,
// under a sequence word: odd while an update is under way, so a reader retries until it read
// the same even value before and after the counters.
/** Offset of the statistics area in the BAR: le32 sequence. */
export const VF_STATS = 0x300;
/** Offset of the first counter (le64 each, in VF_STAT_NAMES order). */
export const VF_STATS_COUNTERS = 0x308;
/** The counters, in BAR order (8 bytes each). */
export const VF_STAT_NAMES = [
  'tx_packets',
  'tx_bytes',
  'rx_packets',
  'rx_bytes',
  'tx_dropped',
  'rx_truncated',
  'ring_errors',
  'kicks',
  'interrupts',
] as const;
/** One counter's name. */
export type VfStatName = (typeof VF_STAT_NAMES)[number];

/** The VF's queues: receiveq1 and transmitq1 of virtio-net (virtio 1.2, 5.1.2). */
export const VF_RX_QUEUE = 0;
export const VF_TX_QUEUE = 1;
export const VF_NUM_QUEUES = 2;

/**
 * MSI-X vectors of the VF: vector 0 for configuration changes, vector 1 + q for queue q (the
 * assignment the parent driver programs; the VF accepts any vector below this count).
 */
export const VF_MSIX_VECTORS = 3;

// PCI identity (virtio 1.2, 4.1.2): vendor 0x1af4 and device 0x1040 + virtio device id for a
// modern virtio function; the subsystem ids name the card's maker (example values).
export const VF_PCI_VENDOR_ID = 0x1af4;
export const VF_PCI_DEVICE_ID = 0x1041;
export const VF_PCI_SUBSYSTEM_VENDOR_ID = 0x1af4;
export const VF_PCI_SUBSYSTEM_ID = 0x0001;
/** The virtio device id of a modern virtio PCI function: its PCI device id minus 0x1040. */
export const VIRTIO_PCI_MODERN_DEVICE_BASE = 0x1040;

/**
 * The link between the host and the VF (Int32 word indexes of a SharedArrayBuffer): what PCIe
 * carries besides the BAR bytes. The host's MMIO writes are posted into a FIFO that the VF's
 * engine applies in order (a write to a select register changes what the next read sees, so
 * order matters); a host read first waits until the engine has applied every write posted
 * before it, as a PCI read flushes posted writes. Interrupts come back as MSI-X messages: a
 * pending-vector bitmap plus a word the host waits on.
 */
export const LINK_ATTENTION = 0; // host -> VF: bumped after every posted write or platform message
export const LINK_FIFO_HEAD = 1; // host -> VF: posted writes published
export const LINK_FIFO_TAIL = 2; // VF -> host: posted writes applied
export const LINK_IRQ = 3; // VF -> host: bumped when pending bits were set
export const LINK_IRQ_PENDING = 4; // VF -> host: bit v = MSI-X vector v; LINK_IRQ_INTX = INTx
export const LINK_STOP = 5; // host -> VF: 1 = power off; VF -> host: LINK_STOPPED once off
export const LINK_IOMMU_SEQ = 6; // VF -> host: the last IOMMU table change applied
export const LINK_IOMMU_RESULT = 7; // VF -> host: its result (0 or a negative errno)
export const LINK_FIFO = 8; // first FIFO entry: [offset | width << 16, value]
/** Entries of the posted-write FIFO: a power of two, as a slot is a counter masked by it. */
export const LINK_FIFO_ENTRIES = 256;
/** Int32 words of the link. */
export const LINK_WORDS = LINK_FIFO + LINK_FIFO_ENTRIES * 2;
/**
 * LINK_STOP once the engine has left its loop and let go of what it mapped for its IOMMU table
 * (the host waits for it, so a removed VF holds no mapping of a frontend's memory).
 */
export const LINK_STOPPED = 2;
/** The INTx line in LINK_IRQ_PENDING (used for a notification without an MSI-X vector). */
export const LINK_IRQ_INTX = 1 << 31;

/** The shared memory of one VF: its BAR and its link. */
export interface VfShared {
  bar: SharedArrayBuffer;
  link: SharedArrayBuffer;
}

/** Allocates a powered-off VF's BAR and link. */
export function allocVfShared(): VfShared {
  return {
    bar: new SharedArrayBuffer(VF_BAR_SIZE),
    link: new SharedArrayBuffer(LINK_WORDS * 4),
  };
}

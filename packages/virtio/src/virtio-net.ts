/**
 * The virtio-net device interface of <linux/virtio_net.h> (virtio 1.2 section 5.1): feature bits,
 * status bits, and the layouts of struct virtio_net_config and the packet header.
 */

/** Host handles pkts w/ partial csum (VIRTIO_NET_F_CSUM, virtio_net.h). */
export const VIRTIO_NET_F_CSUM = 0;
/** Guest handles pkts w/ partial csum (VIRTIO_NET_F_GUEST_CSUM, virtio_net.h). */
export const VIRTIO_NET_F_GUEST_CSUM = 1;
/** Dynamic offload configuration (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, virtio_net.h). */
export const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = 2;
/** Initial MTU advice (VIRTIO_NET_F_MTU, virtio_net.h). */
export const VIRTIO_NET_F_MTU = 3;
/** Host has given MAC address (VIRTIO_NET_F_MAC, virtio_net.h). */
export const VIRTIO_NET_F_MAC = 5;
/** Host handles pkts w/ any GSO type, legacy (VIRTIO_NET_F_GSO, virtio_net.h). */
export const VIRTIO_NET_F_GSO = 6;
/** Guest can handle TSOv4 in (VIRTIO_NET_F_GUEST_TSO4, virtio_net.h). */
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
/** Guest can handle TSOv6 in (VIRTIO_NET_F_GUEST_TSO6, virtio_net.h). */
export const VIRTIO_NET_F_GUEST_TSO6 = 8;
/** Guest can handle TSO[6] w/ ECN in (VIRTIO_NET_F_GUEST_ECN, virtio_net.h). */
export const VIRTIO_NET_F_GUEST_ECN = 9;
/** Guest can handle UFO in (VIRTIO_NET_F_GUEST_UFO, virtio_net.h). */
export const VIRTIO_NET_F_GUEST_UFO = 10;
/** Host can handle TSOv4 in (VIRTIO_NET_F_HOST_TSO4, virtio_net.h). */
export const VIRTIO_NET_F_HOST_TSO4 = 11;
/** Host can handle TSOv6 in (VIRTIO_NET_F_HOST_TSO6, virtio_net.h). */
export const VIRTIO_NET_F_HOST_TSO6 = 12;
/** Host can handle TSO[6] w/ ECN in (VIRTIO_NET_F_HOST_ECN, virtio_net.h). */
export const VIRTIO_NET_F_HOST_ECN = 13;
/** Host can handle UFO in (VIRTIO_NET_F_HOST_UFO, virtio_net.h). */
export const VIRTIO_NET_F_HOST_UFO = 14;
/** Host can merge receive buffers (VIRTIO_NET_F_MRG_RXBUF, virtio_net.h). */
export const VIRTIO_NET_F_MRG_RXBUF = 15;
/** virtio_net_config.status available (VIRTIO_NET_F_STATUS, virtio_net.h). */
export const VIRTIO_NET_F_STATUS = 16;
/** Control channel available (VIRTIO_NET_F_CTRL_VQ, virtio_net.h). */
export const VIRTIO_NET_F_CTRL_VQ = 17;
/** Control channel RX mode support (VIRTIO_NET_F_CTRL_RX, virtio_net.h). */
export const VIRTIO_NET_F_CTRL_RX = 18;
/** Control channel VLAN filtering (VIRTIO_NET_F_CTRL_VLAN, virtio_net.h). */
export const VIRTIO_NET_F_CTRL_VLAN = 19;
/** Extra RX mode control support (VIRTIO_NET_F_CTRL_RX_EXTRA, virtio_net.h). */
export const VIRTIO_NET_F_CTRL_RX_EXTRA = 20;
/** Guest can announce device on the network (VIRTIO_NET_F_GUEST_ANNOUNCE, virtio_net.h). */
export const VIRTIO_NET_F_GUEST_ANNOUNCE = 21;
/** Device supports multiqueue with automatic receive steering (VIRTIO_NET_F_MQ, virtio_net.h). */
export const VIRTIO_NET_F_MQ = 22;
/** Set MAC address through the control channel (VIRTIO_NET_F_CTRL_MAC_ADDR, virtio_net.h). */
export const VIRTIO_NET_F_CTRL_MAC_ADDR = 23;
/** Device supports notification coalescing (VIRTIO_NET_F_NOTF_COAL, virtio_net.h). */
export const VIRTIO_NET_F_NOTF_COAL = 53;
/** Supports hash report (VIRTIO_NET_F_HASH_REPORT, virtio_net.h). */
export const VIRTIO_NET_F_HASH_REPORT = 57;
/** Supports RSS RX steering (VIRTIO_NET_F_RSS, virtio_net.h). */
export const VIRTIO_NET_F_RSS = 60;
/** Extended coalescing info (VIRTIO_NET_F_RSC_EXT, virtio_net.h). */
export const VIRTIO_NET_F_RSC_EXT = 61;
/** Act as standby for another device with the same MAC (VIRTIO_NET_F_STANDBY, virtio_net.h). */
export const VIRTIO_NET_F_STANDBY = 62;
/** Device sets linkspeed and duplex (VIRTIO_NET_F_SPEED_DUPLEX, virtio_net.h). */
export const VIRTIO_NET_F_SPEED_DUPLEX = 63;

/** Link is up (VIRTIO_NET_S_LINK_UP, virtio_net.h). */
export const VIRTIO_NET_S_LINK_UP = 1;
/** Announcement is needed (VIRTIO_NET_S_ANNOUNCE, virtio_net.h). */
export const VIRTIO_NET_S_ANNOUNCE = 2;

/** Use csum_start, csum_offset (VIRTIO_NET_HDR_F_NEEDS_CSUM, virtio_net.h). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** Csum is valid (VIRTIO_NET_HDR_F_DATA_VALID, virtio_net.h). */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** rsc info in csum_ fields (VIRTIO_NET_HDR_F_RSC_INFO, virtio_net.h). */
export const VIRTIO_NET_HDR_F_RSC_INFO = 4;
/** Not a GSO frame (VIRTIO_NET_HDR_GSO_NONE, virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** GSO frame, IPv4 TCP (VIRTIO_NET_HDR_GSO_TCPV4, virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
/** GSO frame, IPv4 UDP (VIRTIO_NET_HDR_GSO_UDP, virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_UDP = 3;
/** GSO frame, IPv6 TCP (VIRTIO_NET_HDR_GSO_TCPV6, virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** TCP has ECN set (VIRTIO_NET_HDR_GSO_ECN, virtio_net.h). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** Length of an Ethernet address (ETH_ALEN, if_ether.h). */
export const ETH_ALEN = 6;

/**
 * struct virtio_net_config (packed, virtio_net.h; virtio 1.2 5.1.4): u8 mac[6]; le16 status;
 * le16 max_virtqueue_pairs; le16 mtu; le32 speed; u8 duplex; u8 rss_max_key_size;
 * le16 rss_max_indirection_table_length; le32 supported_hash_types.
 */
export const VIRTIO_NET_CONFIG_MAC = 0;
export const VIRTIO_NET_CONFIG_STATUS = 6;
export const VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS = 8;
export const VIRTIO_NET_CONFIG_MTU = 10;
export const VIRTIO_NET_CONFIG_SPEED = 12;
export const VIRTIO_NET_CONFIG_DUPLEX = 16;
export const VIRTIO_NET_CONFIG_RSS_MAX_KEY_SIZE = 17;
export const VIRTIO_NET_CONFIG_RSS_MAX_INDIRECTION_TABLE_LENGTH = 18;
export const VIRTIO_NET_CONFIG_SUPPORTED_HASH_TYPES = 20;
/** sizeof(struct virtio_net_config). */
export const VIRTIO_NET_CONFIG_SIZE = 24;

/**
 * struct virtio_net_hdr (virtio_net.h, the legacy header without num_buffers): u8 flags;
 * u8 gso_type; le16 hdr_len; le16 gso_size; le16 csum_start; le16 csum_offset.
 */
export const VIRTIO_NET_HDR_FLAGS = 0;
export const VIRTIO_NET_HDR_GSO_TYPE = 1;
export const VIRTIO_NET_HDR_HDR_LEN = 2;
export const VIRTIO_NET_HDR_GSO_SIZE = 4;
export const VIRTIO_NET_HDR_CSUM_START = 6;
export const VIRTIO_NET_HDR_CSUM_OFFSET = 8;
/** sizeof(struct virtio_net_hdr). */
export const VIRTIO_NET_HDR_SIZE = 10;

/**
 * struct virtio_net_hdr_mrg_rxbuf / struct virtio_net_hdr_v1 (virtio_net.h): the legacy header
 * followed by le16 num_buffers. VERSION_1 always uses this 12-byte header (virtio 1.2 5.1.6).
 */
export const VIRTIO_NET_HDR_NUM_BUFFERS = 10;
/** sizeof(struct virtio_net_hdr_mrg_rxbuf) == sizeof(struct virtio_net_hdr_v1). */
export const VIRTIO_NET_HDR_MRG_RXBUF_SIZE = 12;

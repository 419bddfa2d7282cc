/*
 * Prints the virtio uapi constants, and the sizes and offsets of the virtio-net structures, as
 * the system's <linux/virtio_*.h> headers define them: one "NAME value" line each, named like
 * the TypeScript constants of @mdev/virtio so the conformance test can compare them one by one.
 */
#include <stddef.h>
#include <stdio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#define P(name) printf("%s %llu\n", #name, (unsigned long long)(name))
#define V(name, value) printf("%s %llu\n", name, (unsigned long long)(value))

int main(void)
{
#ifdef VIRTIO_ID_NET
	P(VIRTIO_ID_NET);
#endif
#ifdef VIRTIO_ID_BLOCK
	P(VIRTIO_ID_BLOCK);
#endif
#ifdef VIRTIO_ID_CONSOLE
	P(VIRTIO_ID_CONSOLE);
#endif
#ifdef VIRTIO_ID_RNG
	P(VIRTIO_ID_RNG);
#endif
#ifdef VIRTIO_ID_BALLOON
	P(VIRTIO_ID_BALLOON);
#endif
#ifdef VIRTIO_ID_IOMEM
	P(VIRTIO_ID_IOMEM);
#endif
#ifdef VIRTIO_ID_RPMSG
	P(VIRTIO_ID_RPMSG);
#endif
#ifdef VIRTIO_ID_SCSI
	P(VIRTIO_ID_SCSI);
#endif
#ifdef VIRTIO_ID_9P
	P(VIRTIO_ID_9P);
#endif
#ifdef VIRTIO_ID_MAC80211_WLAN
	P(VIRTIO_ID_MAC80211_WLAN);
#endif
#ifdef VIRTIO_ID_RPROC_SERIAL
	P(VIRTIO_ID_RPROC_SERIAL);
#endif
#ifdef VIRTIO_ID_CAIF
	P(VIRTIO_ID_CAIF);
#endif
#ifdef VIRTIO_ID_MEMORY_BALLOON
	P(VIRTIO_ID_MEMORY_BALLOON);
#endif
#ifdef VIRTIO_ID_GPU
	P(VIRTIO_ID_GPU);
#endif
#ifdef VIRTIO_ID_CLOCK
	P(VIRTIO_ID_CLOCK);
#endif
#ifdef VIRTIO_ID_INPUT
	P(VIRTIO_ID_INPUT);
#endif
#ifdef VIRTIO_ID_VSOCK
	P(VIRTIO_ID_VSOCK);
#endif
#ifdef VIRTIO_ID_CRYPTO
	P(VIRTIO_ID_CRYPTO);
#endif
#ifdef VIRTIO_ID_SIGNAL_DIST
	P(VIRTIO_ID_SIGNAL_DIST);
#endif
#ifdef VIRTIO_ID_PSTORE
	P(VIRTIO_ID_PSTORE);
#endif
#ifdef VIRTIO_ID_IOMMU
	P(VIRTIO_ID_IOMMU);
#endif
#ifdef VIRTIO_ID_MEM
	P(VIRTIO_ID_MEM);
#endif
#ifdef VIRTIO_ID_SOUND
	P(VIRTIO_ID_SOUND);
#endif
#ifdef VIRTIO_ID_FS
	P(VIRTIO_ID_FS);
#endif
#ifdef VIRTIO_ID_PMEM
	P(VIRTIO_ID_PMEM);
#endif
#ifdef VIRTIO_ID_RPMB
	P(VIRTIO_ID_RPMB);
#endif
#ifdef VIRTIO_ID_MAC80211_HWSIM
	P(VIRTIO_ID_MAC80211_HWSIM);
#endif
#ifdef VIRTIO_ID_VIDEO_ENCODER
	P(VIRTIO_ID_VIDEO_ENCODER);
#endif
#ifdef VIRTIO_ID_VIDEO_DECODER
	P(VIRTIO_ID_VIDEO_DECODER);
#endif
#ifdef VIRTIO_ID_SCMI
	P(VIRTIO_ID_SCMI);
#endif
#ifdef VIRTIO_ID_NITRO_SEC_MOD
	P(VIRTIO_ID_NITRO_SEC_MOD);
#endif
#ifdef VIRTIO_ID_I2C_ADAPTER
	P(VIRTIO_ID_I2C_ADAPTER);
#endif
#ifdef VIRTIO_ID_WATCHDOG
	P(VIRTIO_ID_WATCHDOG);
#endif
#ifdef VIRTIO_ID_CAN
	P(VIRTIO_ID_CAN);
#endif
#ifdef VIRTIO_ID_DMABUF
	P(VIRTIO_ID_DMABUF);
#endif
#ifdef VIRTIO_ID_PARAM_SERV
	P(VIRTIO_ID_PARAM_SERV);
#endif
#ifdef VIRTIO_ID_AUDIO_POLICY
	P(VIRTIO_ID_AUDIO_POLICY);
#endif
#ifdef VIRTIO_ID_BT
	P(VIRTIO_ID_BT);
#endif
#ifdef VIRTIO_ID_GPIO
	P(VIRTIO_ID_GPIO);
#endif
#ifdef VIRTIO_TRANS_ID_NET
	P(VIRTIO_TRANS_ID_NET);
#endif
#ifdef VIRTIO_TRANS_ID_BLOCK
	P(VIRTIO_TRANS_ID_BLOCK);
#endif
#ifdef VIRTIO_TRANS_ID_BALLOON
	P(VIRTIO_TRANS_ID_BALLOON);
#endif
#ifdef VIRTIO_TRANS_ID_CONSOLE
	P(VIRTIO_TRANS_ID_CONSOLE);
#endif
#ifdef VIRTIO_TRANS_ID_SCSI
	P(VIRTIO_TRANS_ID_SCSI);
#endif
#ifdef VIRTIO_TRANS_ID_RNG
	P(VIRTIO_TRANS_ID_RNG);
#endif
#ifdef VIRTIO_TRANS_ID_9P
	P(VIRTIO_TRANS_ID_9P);
#endif
#ifdef VIRTIO_CONFIG_S_ACKNOWLEDGE
	P(VIRTIO_CONFIG_S_ACKNOWLEDGE);
#endif
#ifdef VIRTIO_CONFIG_S_DRIVER
	P(VIRTIO_CONFIG_S_DRIVER);
#endif
#ifdef VIRTIO_CONFIG_S_DRIVER_OK
	P(VIRTIO_CONFIG_S_DRIVER_OK);
#endif
#ifdef VIRTIO_CONFIG_S_FEATURES_OK
	P(VIRTIO_CONFIG_S_FEATURES_OK);
#endif
#ifdef VIRTIO_CONFIG_S_NEEDS_RESET
	P(VIRTIO_CONFIG_S_NEEDS_RESET);
#endif
#ifdef VIRTIO_CONFIG_S_FAILED
	P(VIRTIO_CONFIG_S_FAILED);
#endif
#ifdef VIRTIO_TRANSPORT_F_START
	P(VIRTIO_TRANSPORT_F_START);
#endif
#ifdef VIRTIO_TRANSPORT_F_END
	P(VIRTIO_TRANSPORT_F_END);
#endif
#ifdef VIRTIO_F_NOTIFY_ON_EMPTY
	P(VIRTIO_F_NOTIFY_ON_EMPTY);
#endif
#ifdef VIRTIO_F_ANY_LAYOUT
	P(VIRTIO_F_ANY_LAYOUT);
#endif
#ifdef VIRTIO_F_VERSION_1
	P(VIRTIO_F_VERSION_1);
#endif
#ifdef VIRTIO_F_ACCESS_PLATFORM
	P(VIRTIO_F_ACCESS_PLATFORM);
#endif
#ifdef VIRTIO_F_IOMMU_PLATFORM
	P(VIRTIO_F_IOMMU_PLATFORM);
#endif
#ifdef VIRTIO_F_RING_PACKED
	P(VIRTIO_F_RING_PACKED);
#endif
#ifdef VIRTIO_F_IN_ORDER
	P(VIRTIO_F_IN_ORDER);
#endif
#ifdef VIRTIO_F_ORDER_PLATFORM
	P(VIRTIO_F_ORDER_PLATFORM);
#endif
#ifdef VIRTIO_F_SR_IOV
	P(VIRTIO_F_SR_IOV);
#endif
#ifdef VIRTIO_F_RING_RESET
	P(VIRTIO_F_RING_RESET);
#endif
#ifdef VIRTIO_NET_F_CSUM
	P(VIRTIO_NET_F_CSUM);
#endif
#ifdef VIRTIO_NET_F_GUEST_CSUM
	P(VIRTIO_NET_F_GUEST_CSUM);
#endif
#ifdef VIRTIO_NET_F_CTRL_GUEST_OFFLOADS
	P(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
#endif
#ifdef VIRTIO_NET_F_MTU
	P(VIRTIO_NET_F_MTU);
#endif
#ifdef VIRTIO_NET_F_MAC
	P(VIRTIO_NET_F_MAC);
#endif
#ifdef VIRTIO_NET_F_GUEST_TSO4
	P(VIRTIO_NET_F_GUEST_TSO4);
#endif
#ifdef VIRTIO_NET_F_GUEST_TSO6
	P(VIRTIO_NET_F_GUEST_TSO6);
#endif
#ifdef VIRTIO_NET_F_GUEST_ECN
	P(VIRTIO_NET_F_GUEST_ECN);
#endif
#ifdef VIRTIO_NET_F_GUEST_UFO
	P(VIRTIO_NET_F_GUEST_UFO);
#endif
#ifdef VIRTIO_NET_F_HOST_TSO4
	P(VIRTIO_NET_F_HOST_TSO4);
#endif
#ifdef VIRTIO_NET_F_HOST_TSO6
	P(VIRTIO_NET_F_HOST_TSO6);
#endif
#ifdef VIRTIO_NET_F_HOST_ECN
	P(VIRTIO_NET_F_HOST_ECN);
#endif
#ifdef VIRTIO_NET_F_HOST_UFO
	P(VIRTIO_NET_F_HOST_UFO);
#endif
#ifdef VIRTIO_NET_F_MRG_RXBUF
	P(VIRTIO_NET_F_MRG_RXBUF);
#endif
#ifdef VIRTIO_NET_F_STATUS
	P(VIRTIO_NET_F_STATUS);
#endif
#ifdef VIRTIO_NET_F_CTRL_VQ
	P(VIRTIO_NET_F_CTRL_VQ);
#endif
#ifdef VIRTIO_NET_F_CTRL_RX
	P(VIRTIO_NET_F_CTRL_RX);
#endif
#ifdef VIRTIO_NET_F_CTRL_VLAN
	P(VIRTIO_NET_F_CTRL_VLAN);
#endif
#ifdef VIRTIO_NET_F_CTRL_RX_EXTRA
	P(VIRTIO_NET_F_CTRL_RX_EXTRA);
#endif
#ifdef VIRTIO_NET_F_GUEST_ANNOUNCE
	P(VIRTIO_NET_F_GUEST_ANNOUNCE);
#endif
#ifdef VIRTIO_NET_F_MQ
	P(VIRTIO_NET_F_MQ);
#endif
#ifdef VIRTIO_NET_F_CTRL_MAC_ADDR
	P(VIRTIO_NET_F_CTRL_MAC_ADDR);
#endif
#ifdef VIRTIO_NET_F_NOTF_COAL
	P(VIRTIO_NET_F_NOTF_COAL);
#endif
#ifdef VIRTIO_NET_F_HASH_REPORT
	P(VIRTIO_NET_F_HASH_REPORT);
#endif
#ifdef VIRTIO_NET_F_RSS
	P(VIRTIO_NET_F_RSS);
#endif
#ifdef VIRTIO_NET_F_RSC_EXT
	P(VIRTIO_NET_F_RSC_EXT);
#endif
#ifdef VIRTIO_NET_F_STANDBY
	P(VIRTIO_NET_F_STANDBY);
#endif
#ifdef VIRTIO_NET_F_SPEED_DUPLEX
	P(VIRTIO_NET_F_SPEED_DUPLEX);
#endif
#ifdef VIRTIO_NET_F_GSO
	P(VIRTIO_NET_F_GSO);
#endif
#ifdef VIRTIO_NET_S_LINK_UP
	P(VIRTIO_NET_S_LINK_UP);
#endif
#ifdef VIRTIO_NET_S_ANNOUNCE
	P(VIRTIO_NET_S_ANNOUNCE);
#endif
#ifdef VIRTIO_NET_HDR_F_NEEDS_CSUM
	P(VIRTIO_NET_HDR_F_NEEDS_CSUM);
#endif
#ifdef VIRTIO_NET_HDR_F_DATA_VALID
	P(VIRTIO_NET_HDR_F_DATA_VALID);
#endif
#ifdef VIRTIO_NET_HDR_F_RSC_INFO
	P(VIRTIO_NET_HDR_F_RSC_INFO);
#endif
#ifdef VIRTIO_NET_HDR_GSO_NONE
	P(VIRTIO_NET_HDR_GSO_NONE);
#endif
#ifdef VIRTIO_NET_HDR_GSO_TCPV4
	P(VIRTIO_NET_HDR_GSO_TCPV4);
#endif
#ifdef VIRTIO_NET_HDR_GSO_UDP
	P(VIRTIO_NET_HDR_GSO_UDP);
#endif
#ifdef VIRTIO_NET_HDR_GSO_TCPV6
	P(VIRTIO_NET_HDR_GSO_TCPV6);
#endif
#ifdef VIRTIO_NET_HDR_GSO_ECN
	P(VIRTIO_NET_HDR_GSO_ECN);
#endif
#ifdef VIRTIO_RING_F_INDIRECT_DESC
	P(VIRTIO_RING_F_INDIRECT_DESC);
#endif
#ifdef VIRTIO_RING_F_EVENT_IDX
	P(VIRTIO_RING_F_EVENT_IDX);
#endif
#ifdef ETH_ALEN
	P(ETH_ALEN);
#endif

	V("VIRTIO_NET_CONFIG_MAC", offsetof(struct virtio_net_config, mac));
	V("VIRTIO_NET_CONFIG_STATUS", offsetof(struct virtio_net_config, status));
	V("VIRTIO_NET_CONFIG_MAX_VIRTQUEUE_PAIRS", offsetof(struct virtio_net_config, max_virtqueue_pairs));
	V("VIRTIO_NET_CONFIG_MTU", offsetof(struct virtio_net_config, mtu));
	V("VIRTIO_NET_CONFIG_SPEED", offsetof(struct virtio_net_config, speed));
	V("VIRTIO_NET_CONFIG_DUPLEX", offsetof(struct virtio_net_config, duplex));
	V("VIRTIO_NET_CONFIG_RSS_MAX_KEY_SIZE", offsetof(struct virtio_net_config, rss_max_key_size));
	V("VIRTIO_NET_CONFIG_RSS_MAX_INDIRECTION_TABLE_LENGTH",
	  offsetof(struct virtio_net_config, rss_max_indirection_table_length));
	V("VIRTIO_NET_CONFIG_SUPPORTED_HASH_TYPES", offsetof(struct virtio_net_config, supported_hash_types));
	V("VIRTIO_NET_CONFIG_SIZE", sizeof(struct virtio_net_config));

	V("VIRTIO_NET_HDR_FLAGS", offsetof(struct virtio_net_hdr, flags));
	V("VIRTIO_NET_HDR_GSO_TYPE", offsetof(struct virtio_net_hdr, gso_type));
	V("VIRTIO_NET_HDR_HDR_LEN", offsetof(struct virtio_net_hdr, hdr_len));
	V("VIRTIO_NET_HDR_GSO_SIZE", offsetof(struct virtio_net_hdr, gso_size));
	V("VIRTIO_NET_HDR_CSUM_START", offsetof(struct virtio_net_hdr, csum_start));
	V("VIRTIO_NET_HDR_CSUM_OFFSET", offsetof(struct virtio_net_hdr, csum_offset));
	V("VIRTIO_NET_HDR_SIZE", sizeof(struct virtio_net_hdr));
	V("VIRTIO_NET_HDR_NUM_BUFFERS", offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers));
	V("VIRTIO_NET_HDR_MRG_RXBUF_SIZE", sizeof(struct virtio_net_hdr_mrg_rxbuf));
	V("VIRTIO_NET_HDR_V1_NUM_BUFFERS", offsetof(struct virtio_net_hdr_v1, num_buffers));
	V("VIRTIO_NET_HDR_V1_SIZE", sizeof(struct virtio_net_hdr_v1));
	return 0;
}

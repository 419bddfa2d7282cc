/**
 * Device IDs of <linux/virtio_ids.h> (virtio 1.2 section 5, "Device Types"). The transitional
 * PCI IDs are kept for completeness; a virtio device's `id.device` is one of the VIRTIO_ID_*.
 */

/** virtio net (VIRTIO_ID_NET, virtio_ids.h). */
export const VIRTIO_ID_NET = 1;
/** virtio block (VIRTIO_ID_BLOCK, virtio_ids.h). */
export const VIRTIO_ID_BLOCK = 2;
/** virtio console (VIRTIO_ID_CONSOLE, virtio_ids.h). */
export const VIRTIO_ID_CONSOLE = 3;
/** virtio rng (VIRTIO_ID_RNG, virtio_ids.h). */
export const VIRTIO_ID_RNG = 4;
/** virtio balloon (VIRTIO_ID_BALLOON, virtio_ids.h). */
export const VIRTIO_ID_BALLOON = 5;
/** virtio ioMemory (VIRTIO_ID_IOMEM, virtio_ids.h). */
export const VIRTIO_ID_IOMEM = 6;
/** virtio remote processor messaging (VIRTIO_ID_RPMSG, virtio_ids.h). */
export const VIRTIO_ID_RPMSG = 7;
/** virtio scsi (VIRTIO_ID_SCSI, virtio_ids.h). */
export const VIRTIO_ID_SCSI = 8;
/** 9p virtio console (VIRTIO_ID_9P, virtio_ids.h). */
export const VIRTIO_ID_9P = 9;
/** virtio WLAN MAC (VIRTIO_ID_MAC80211_WLAN, virtio_ids.h). */
export const VIRTIO_ID_MAC80211_WLAN = 10;
/** virtio remoteproc serial link (VIRTIO_ID_RPROC_SERIAL, virtio_ids.h). */
export const VIRTIO_ID_RPROC_SERIAL = 11;
/** virtio caif (VIRTIO_ID_CAIF, virtio_ids.h). */
export const VIRTIO_ID_CAIF = 12;
/** virtio memory balloon (VIRTIO_ID_MEMORY_BALLOON, virtio_ids.h). */
export const VIRTIO_ID_MEMORY_BALLOON = 13;
/** virtio GPU (VIRTIO_ID_GPU, virtio_ids.h). */
export const VIRTIO_ID_GPU = 16;
/** virtio clock/timer (VIRTIO_ID_CLOCK, virtio_ids.h). */
export const VIRTIO_ID_CLOCK = 17;
/** virtio input (VIRTIO_ID_INPUT, virtio_ids.h). */
export const VIRTIO_ID_INPUT = 18;
/** virtio vsock transport (VIRTIO_ID_VSOCK, virtio_ids.h). */
export const VIRTIO_ID_VSOCK = 19;
/** virtio crypto (VIRTIO_ID_CRYPTO, virtio_ids.h). */
export const VIRTIO_ID_CRYPTO = 20;
/** virtio signal distribution device (VIRTIO_ID_SIGNAL_DIST, virtio_ids.h). */
export const VIRTIO_ID_SIGNAL_DIST = 21;
/** virtio pstore device (VIRTIO_ID_PSTORE, virtio_ids.h). */
export const VIRTIO_ID_PSTORE = 22;
/** virtio IOMMU (VIRTIO_ID_IOMMU, virtio_ids.h). */
export const VIRTIO_ID_IOMMU = 23;
/** virtio mem (VIRTIO_ID_MEM, virtio_ids.h). */
export const VIRTIO_ID_MEM = 24;
/** virtio sound (VIRTIO_ID_SOUND, virtio_ids.h). */
export const VIRTIO_ID_SOUND = 25;
/** virtio filesystem (VIRTIO_ID_FS, virtio_ids.h). */
export const VIRTIO_ID_FS = 26;
/** virtio pmem (VIRTIO_ID_PMEM, virtio_ids.h). */
export const VIRTIO_ID_PMEM = 27;
/** virtio rpmb (VIRTIO_ID_RPMB, virtio_ids.h). */
export const VIRTIO_ID_RPMB = 28;
/** virtio mac80211-hwsim (VIRTIO_ID_MAC80211_HWSIM, virtio_ids.h). */
export const VIRTIO_ID_MAC80211_HWSIM = 29;
/** virtio video encoder (VIRTIO_ID_VIDEO_ENCODER, virtio_ids.h). */
export const VIRTIO_ID_VIDEO_ENCODER = 30;
/** virtio video decoder (VIRTIO_ID_VIDEO_DECODER, virtio_ids.h). */
export const VIRTIO_ID_VIDEO_DECODER = 31;
/** virtio SCMI (VIRTIO_ID_SCMI, virtio_ids.h). */
export const VIRTIO_ID_SCMI = 32;
/** virtio nitro secure module (VIRTIO_ID_NITRO_SEC_MOD, virtio_ids.h). */
export const VIRTIO_ID_NITRO_SEC_MOD = 33;
/** virtio i2c adapter (VIRTIO_ID_I2C_ADAPTER, virtio_ids.h). */
export const VIRTIO_ID_I2C_ADAPTER = 34;
/** virtio watchdog (VIRTIO_ID_WATCHDOG, virtio_ids.h). */
export const VIRTIO_ID_WATCHDOG = 35;
/** virtio can (VIRTIO_ID_CAN, virtio_ids.h). */
export const VIRTIO_ID_CAN = 36;
/** virtio dmabuf (VIRTIO_ID_DMABUF, virtio_ids.h). */
export const VIRTIO_ID_DMABUF = 37;
/** virtio parameter server (VIRTIO_ID_PARAM_SERV, virtio_ids.h). */
export const VIRTIO_ID_PARAM_SERV = 38;
/** virtio audio policy (VIRTIO_ID_AUDIO_POLICY, virtio_ids.h). */
export const VIRTIO_ID_AUDIO_POLICY = 39;
/** virtio bluetooth (VIRTIO_ID_BT, virtio_ids.h). */
export const VIRTIO_ID_BT = 40;
/** virtio gpio (VIRTIO_ID_GPIO, virtio_ids.h). */
export const VIRTIO_ID_GPIO = 41;

/** transitional virtio net PCI device ID (VIRTIO_TRANS_ID_NET, virtio_ids.h). */
export const VIRTIO_TRANS_ID_NET = 0x1000;
/** transitional virtio block PCI device ID (VIRTIO_TRANS_ID_BLOCK, virtio_ids.h). */
export const VIRTIO_TRANS_ID_BLOCK = 0x1001;
/** transitional virtio balloon PCI device ID (VIRTIO_TRANS_ID_BALLOON, virtio_ids.h). */
export const VIRTIO_TRANS_ID_BALLOON = 0x1002;
/** transitional virtio console PCI device ID (VIRTIO_TRANS_ID_CONSOLE, virtio_ids.h). */
export const VIRTIO_TRANS_ID_CONSOLE = 0x1003;
/** transitional virtio SCSI PCI device ID (VIRTIO_TRANS_ID_SCSI, virtio_ids.h). */
export const VIRTIO_TRANS_ID_SCSI = 0x1004;
/** transitional virtio rng PCI device ID (VIRTIO_TRANS_ID_RNG, virtio_ids.h). */
export const VIRTIO_TRANS_ID_RNG = 0x1005;
/** transitional virtio 9p console PCI device ID (VIRTIO_TRANS_ID_9P, virtio_ids.h). */
export const VIRTIO_TRANS_ID_9P = 0x1009;

/** The device ID that matches any device in a driver's id table (VIRTIO_DEV_ANY_ID, mod_devicetable.h). */
export const VIRTIO_DEV_ANY_ID = 0xffffffff;

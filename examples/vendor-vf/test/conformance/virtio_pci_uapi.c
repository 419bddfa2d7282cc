/*
 * Conformance probe for the vendor-vf example, built against the system's <linux/virtio_pci.h>
 * and <linux/virtio_net.h>: prints "name value" lines of the structure layouts and constants the
 * VF's register file copies.
 */
#include <linux/virtio_net.h>
#include <linux/virtio_pci.h>
#include <stddef.h>
#include <stdio.h>

#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))
#define OFF(field) P("offsetof_" #field, offsetof(struct virtio_pci_common_cfg, field))
#define SZ(field) P("sizeof_" #field, sizeof(((struct virtio_pci_common_cfg *)0)->field))
#define FIELD(field) do { OFF(field); SZ(field); } while (0)

int main(void)
{
	P("sizeof_virtio_pci_common_cfg", sizeof(struct virtio_pci_common_cfg));
	FIELD(device_feature_select);
	FIELD(device_feature);
	FIELD(guest_feature_select);
	FIELD(guest_feature);
	FIELD(msix_config);
	FIELD(num_queues);
	FIELD(device_status);
	FIELD(config_generation);
	FIELD(queue_select);
	FIELD(queue_size);
	FIELD(queue_msix_vector);
	FIELD(queue_enable);
	FIELD(queue_notify_off);
	FIELD(queue_desc_lo);
	FIELD(queue_desc_hi);
	FIELD(queue_avail_lo);
	FIELD(queue_avail_hi);
	FIELD(queue_used_lo);
	FIELD(queue_used_hi);
	P("VIRTIO_PCI_COMMON_DFSELECT", VIRTIO_PCI_COMMON_DFSELECT);
	P("VIRTIO_PCI_COMMON_DF", VIRTIO_PCI_COMMON_DF);
	P("VIRTIO_PCI_COMMON_GFSELECT", VIRTIO_PCI_COMMON_GFSELECT);
	P("VIRTIO_PCI_COMMON_GF", VIRTIO_PCI_COMMON_GF);
	P("VIRTIO_PCI_COMMON_MSIX", VIRTIO_PCI_COMMON_MSIX);
	P("VIRTIO_PCI_COMMON_NUMQ", VIRTIO_PCI_COMMON_NUMQ);
	P("VIRTIO_PCI_COMMON_STATUS", VIRTIO_PCI_COMMON_STATUS);
	P("VIRTIO_PCI_COMMON_CFGGENERATION", VIRTIO_PCI_COMMON_CFGGENERATION);
	P("VIRTIO_PCI_COMMON_Q_SELECT", VIRTIO_PCI_COMMON_Q_SELECT);
	P("VIRTIO_PCI_COMMON_Q_SIZE", VIRTIO_PCI_COMMON_Q_SIZE);
	P("VIRTIO_PCI_COMMON_Q_MSIX", VIRTIO_PCI_COMMON_Q_MSIX);
	P("VIRTIO_PCI_COMMON_Q_ENABLE", VIRTIO_PCI_COMMON_Q_ENABLE);
	P("VIRTIO_PCI_COMMON_Q_NOFF", VIRTIO_PCI_COMMON_Q_NOFF);
	P("VIRTIO_PCI_COMMON_Q_DESCLO", VIRTIO_PCI_COMMON_Q_DESCLO);
	P("VIRTIO_PCI_COMMON_Q_DESCHI", VIRTIO_PCI_COMMON_Q_DESCHI);
	P("VIRTIO_PCI_COMMON_Q_AVAILLO", VIRTIO_PCI_COMMON_Q_AVAILLO);
	P("VIRTIO_PCI_COMMON_Q_AVAILHI", VIRTIO_PCI_COMMON_Q_AVAILHI);
	P("VIRTIO_PCI_COMMON_Q_USEDLO", VIRTIO_PCI_COMMON_Q_USEDLO);
	P("VIRTIO_PCI_COMMON_Q_USEDHI", VIRTIO_PCI_COMMON_Q_USEDHI);
	P("VIRTIO_MSI_NO_VECTOR", VIRTIO_MSI_NO_VECTOR);
	P("VIRTIO_PCI_ISR_CONFIG", VIRTIO_PCI_ISR_CONFIG);
	/* The device configuration the VF implements ends with mtu. */
	P("virtio_net_config_end_of_mtu",
	  offsetof(struct virtio_net_config, mtu) + sizeof(((struct virtio_net_config *)0)->mtu));
	return 0;
}

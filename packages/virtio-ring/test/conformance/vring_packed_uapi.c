/*
 * Conformance probe for @mdev/virtio-ring's packed layout, built against the system's
 * <linux/virtio_ring.h>: prints the sizes, offsets and flags of struct vring_packed_desc and
 * struct vring_packed_desc_event, and the word offsets of their fields, one "name value" a line.
 */
#include <linux/virtio_ring.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))

int main(void)
{
	struct vring_packed_desc d;
	struct vring_packed_desc_event e;

	P("sizeof_vring_packed_desc", sizeof(struct vring_packed_desc));
	P("offsetof_vring_packed_desc_addr", offsetof(struct vring_packed_desc, addr));
	P("offsetof_vring_packed_desc_len", offsetof(struct vring_packed_desc, len));
	P("offsetof_vring_packed_desc_id", offsetof(struct vring_packed_desc, id));
	P("offsetof_vring_packed_desc_flags", offsetof(struct vring_packed_desc, flags));
	P("sizeof_vring_packed_desc_event", sizeof(struct vring_packed_desc_event));
	P("offsetof_vring_packed_desc_event_off_wrap",
	  offsetof(struct vring_packed_desc_event, off_wrap));
	P("offsetof_vring_packed_desc_event_flags", offsetof(struct vring_packed_desc_event, flags));
	P("word32_vring_packed_desc_addr_lo", (uint32_t *)&d.addr - (uint32_t *)&d);
	P("word32_vring_packed_desc_len", (uint32_t *)&d.len - (uint32_t *)&d);
	P("word16_vring_packed_desc_id", (uint16_t *)&d.id - (uint16_t *)&d);
	P("word16_vring_packed_desc_flags", (uint16_t *)&d.flags - (uint16_t *)&d);
	P("words32_vring_packed_desc", sizeof(d) / sizeof(uint32_t));
	P("words16_vring_packed_desc", sizeof(d) / sizeof(uint16_t));
	P("word16_vring_packed_desc_event_off_wrap", (uint16_t *)&e.off_wrap - (uint16_t *)&e);
	P("word16_vring_packed_desc_event_flags", (uint16_t *)&e.flags - (uint16_t *)&e);
	P("VRING_PACKED_DESC_F_AVAIL", VRING_PACKED_DESC_F_AVAIL);
	P("VRING_PACKED_DESC_F_USED", VRING_PACKED_DESC_F_USED);
	P("VRING_PACKED_EVENT_FLAG_ENABLE", VRING_PACKED_EVENT_FLAG_ENABLE);
	P("VRING_PACKED_EVENT_FLAG_DISABLE", VRING_PACKED_EVENT_FLAG_DISABLE);
	P("VRING_PACKED_EVENT_FLAG_DESC", VRING_PACKED_EVENT_FLAG_DESC);
	P("VRING_PACKED_EVENT_F_WRAP_CTR", VRING_PACKED_EVENT_F_WRAP_CTR);
	return 0;
}

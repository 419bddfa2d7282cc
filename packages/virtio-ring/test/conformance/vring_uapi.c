/*
 * Conformance probe for @mdev/virtio-ring, built against the system's <linux/virtio_ring.h>.
 *
 *   vring_uapi layout                 print sizes, offsets, flags, vring_size and vring_need_event
 *   vring_uapi walk FILE BASE NUM DESC AVAIL USED
 *                                     FILE is a memory image starting at guest address BASE holding
 *                                     a ring written by a driver; print every available chain and
 *                                     complete it (used len = its writable bytes), rewriting FILE
 *   vring_uapi make FILE BASE NUM ALIGN
 *                                     lay a ring out with vring_init() in a new image, make three
 *                                     chains available (direct, mixed, indirect) and print them
 */
#include <linux/virtio_ring.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))

static int layout(void)
{
	P("sizeof_vring_desc", sizeof(struct vring_desc));
	P("offsetof_vring_desc_addr", offsetof(struct vring_desc, addr));
	P("offsetof_vring_desc_len", offsetof(struct vring_desc, len));
	P("offsetof_vring_desc_flags", offsetof(struct vring_desc, flags));
	P("offsetof_vring_desc_next", offsetof(struct vring_desc, next));
	P("sizeof_vring_avail", sizeof(struct vring_avail));
	P("offsetof_vring_avail_flags", offsetof(struct vring_avail, flags));
	P("offsetof_vring_avail_idx", offsetof(struct vring_avail, idx));
	P("offsetof_vring_avail_ring", offsetof(struct vring_avail, ring));
	P("sizeof_vring_used_elem", sizeof(struct vring_used_elem));
	P("offsetof_vring_used_elem_id", offsetof(struct vring_used_elem, id));
	P("offsetof_vring_used_elem_len", offsetof(struct vring_used_elem, len));
	P("offsetof_vring_used_flags", offsetof(struct vring_used, flags));
	P("offsetof_vring_used_idx", offsetof(struct vring_used, idx));
	P("offsetof_vring_used_ring", offsetof(struct vring_used, ring));
	P("VRING_DESC_F_NEXT", VRING_DESC_F_NEXT);
	P("VRING_DESC_F_WRITE", VRING_DESC_F_WRITE);
	P("VRING_DESC_F_INDIRECT", VRING_DESC_F_INDIRECT);
	P("VRING_USED_F_NO_NOTIFY", VRING_USED_F_NO_NOTIFY);
	P("VRING_AVAIL_F_NO_INTERRUPT", VRING_AVAIL_F_NO_INTERRUPT);
	P("VIRTIO_RING_F_INDIRECT_DESC", VIRTIO_RING_F_INDIRECT_DESC);
	P("VIRTIO_RING_F_EVENT_IDX", VIRTIO_RING_F_EVENT_IDX);
	P("VRING_AVAIL_ALIGN_SIZE", VRING_AVAIL_ALIGN_SIZE);
	P("VRING_USED_ALIGN_SIZE", VRING_USED_ALIGN_SIZE);
	P("VRING_DESC_ALIGN_SIZE", VRING_DESC_ALIGN_SIZE);
	/* The word offsets the ring ends index their typed-array views with. */
	struct vring_desc wd;
	struct vring_used_elem we;
	P("word32_vring_desc_addr_lo", (uint32_t *)&wd.addr - (uint32_t *)&wd);
	P("word32_vring_desc_len", (uint32_t *)&wd.len - (uint32_t *)&wd);
	P("word16_vring_desc_flags", (uint16_t *)&wd.flags - (uint16_t *)&wd);
	P("word16_vring_desc_next", (uint16_t *)&wd.next - (uint16_t *)&wd);
	P("words32_vring_desc", sizeof(wd) / sizeof(uint32_t));
	P("words16_vring_desc", sizeof(wd) / sizeof(uint16_t));
	P("words32_vring_used_elem", sizeof(we) / sizeof(uint32_t));
	P("word32_vring_used_elem_id", (uint32_t *)&we.id - (uint32_t *)&we);
	P("word32_vring_used_elem_len", (uint32_t *)&we.len - (uint32_t *)&we);
	{
		unsigned n = 256;
		unsigned char *mem = aligned_alloc(4096, (vring_size(n, 4096) + 4095) & ~4095u);
		struct vring vr;
		vring_init(&vr, n, mem, 4096);
		P("word16_vring_avail_flags", (uint16_t *)&vr.avail->flags - (uint16_t *)vr.avail);
		P("word16_vring_avail_idx", (uint16_t *)&vr.avail->idx - (uint16_t *)vr.avail);
		P("word16_vring_avail_ring", (uint16_t *)&vr.avail->ring[0] - (uint16_t *)vr.avail);
		P("word16_vring_used_flags", (uint16_t *)&vr.used->flags - (uint16_t *)vr.used);
		P("word16_vring_used_idx", (uint16_t *)&vr.used->idx - (uint16_t *)vr.used);
		P("word32_vring_used_ring", (uint32_t *)&vr.used->ring[0] - (uint32_t *)vr.used);
		P("word16_used_event_256", (uint16_t *)&vring_used_event(&vr) - (uint16_t *)vr.avail);
		P("word16_avail_event_256", (uint16_t *)&vring_avail_event(&vr) - (uint16_t *)vr.used);
		free(mem);
	}
	/* How a le64 address lies in two 32-bit words (little-endian host). */
	static const unsigned long long addrs[] = { 0, 1, 0xffffffffull, 0x100000000ull,
						    0x123456789abcull, 0x1fffffffffffffull };
	for (unsigned i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		wd.addr = addrs[i];
		uint32_t w[2];
		memcpy(w, &wd.addr, sizeof(w));
		printf("addr64 %llu %u %u\n", addrs[i], w[0], w[1]);
	}
	static const unsigned nums[] = { 1, 2, 8, 256, 1024, 32768 };
	static const unsigned aligns[] = { 4, 64, 4096 };
	for (unsigned i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		for (unsigned j = 0; j < sizeof(aligns) / sizeof(aligns[0]); j++) {
			/* vring_init on a page-aligned buffer gives the area offsets. */
			struct vring vr;
			unsigned size = vring_size(nums[i], aligns[j]);
			unsigned char *mem = aligned_alloc(4096, (size + 4095) & ~4095u);
			vring_init(&vr, nums[i], mem, aligns[j]);
			printf("vring_size %u %u %u %ld %ld\n", nums[i], aligns[j], size,
			       (long)((unsigned char *)vr.avail - mem), (long)((unsigned char *)vr.used - mem));
			printf("event_offsets %u %u %ld %ld\n", nums[i], aligns[j],
			       (long)((unsigned char *)&vring_used_event(&vr) - mem),
			       (long)((unsigned char *)&vring_avail_event(&vr) - mem));
			free(mem);
		}
	static const unsigned v[] = { 0, 1, 2, 3, 100, 0x7fff, 0x8000, 0xfffe, 0xffff };
	for (unsigned a = 0; a < 9; a++)
		for (unsigned b = 0; b < 9; b++)
			for (unsigned c = 0; c < 9; c++)
				printf("need_event %u %u %u %d\n", v[a], v[b], v[c],
				       vring_need_event(v[a], v[b], v[c]));
	return 0;
}

static unsigned char *load(const char *file, size_t *size)
{
	FILE *f = fopen(file, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*size = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *p = malloc(*size);
	if (!p || fread(p, 1, *size, f) != *size)
		return NULL;
	fclose(f);
	return p;
}

static int store(const char *file, const unsigned char *p, size_t size)
{
	FILE *f = fopen(file, "wb");
	if (!f || fwrite(p, 1, size, f) != size)
		return 1;
	return fclose(f);
}

/* The host is little-endian (checked by the test), so the __virtio fields read directly. */
static unsigned char *img;
static size_t img_size;
static uint64_t img_base;

static void *at(uint64_t addr, uint64_t len)
{
	if (addr < img_base || addr - img_base > img_size || len > img_size - (addr - img_base)) {
		printf("fault %llu %llu\n", (unsigned long long)addr, (unsigned long long)len);
		exit(3);
	}
	return img + (addr - img_base);
}

static int walk(char **argv)
{
	img_base = strtoull(argv[3], NULL, 0);
	unsigned num = (unsigned)strtoul(argv[4], NULL, 0);
	if (!(img = load(argv[2], &img_size)))
		return 2;
	struct vring_desc *desc = at(strtoull(argv[5], NULL, 0), num * sizeof(*desc));
	struct vring_avail *avail = at(strtoull(argv[6], NULL, 0), sizeof(*avail) + 2 * num + 2);
	struct vring_used *used = at(strtoull(argv[7], NULL, 0),
				     sizeof(*used) + sizeof(struct vring_used_elem) * num + 2);
	uint16_t idx;
	for (idx = used->idx; idx != avail->idx; idx++) {
		unsigned head = avail->ring[idx % num];
		uint32_t written = 0;
		printf("chain %u\n", head);
		struct vring_desc *table = desc;
		unsigned i = head, n = 0;
		for (;;) {
			struct vring_desc *d = &table[i];
			if (d->flags & VRING_DESC_F_INDIRECT) {
				printf("indirect %u\n", d->len);
				table = at(d->addr, d->len);
				i = 0;
				continue;
			}
			unsigned char *b = at(d->addr, d->len);
			printf("seg %s %llu %u %u\n", d->flags & VRING_DESC_F_WRITE ? "w" : "r",
			       (unsigned long long)d->addr, d->len, d->len ? b[0] : 0);
			if (d->flags & VRING_DESC_F_WRITE) {
				memset(b, 0x5a, d->len);
				written += d->len;
			}
			if (!(d->flags & VRING_DESC_F_NEXT) || ++n > num)
				break;
			i = d->next;
		}
		used->ring[idx % num].id = head;
		used->ring[idx % num].len = written;
	}
	used->idx = idx;
	return store(argv[2], img, img_size);
}

static int make(char **argv)
{
	img_base = strtoull(argv[3], NULL, 0);
	unsigned num = (unsigned)strtoul(argv[4], NULL, 0);
	unsigned long align = strtoul(argv[5], NULL, 0);
	unsigned ring = vring_size(num, align);
	img_size = ((ring + 4095) & ~4095u) + 4096;
	img = aligned_alloc(4096, img_size);
	memset(img, 0, img_size);
	struct vring vr;
	vring_init(&vr, num, img, align);
	uint64_t data = img_base + img_size - 4096; /* buffers in the last page */
	unsigned char *dp = img + img_size - 4096;
	memcpy(dp, "hello, device", 13);
	/* chain 0: one readable buffer */
	vr.desc[0] = (struct vring_desc){ .addr = data, .len = 13, .flags = 0, .next = 0 };
	/* chain 1: readable 5 bytes at data+100, writable 16 at data+200 and 32 at data+300 */
	memcpy(dp + 100, "abcde", 5);
	vr.desc[1] = (struct vring_desc){ .addr = data + 100, .len = 5, .flags = VRING_DESC_F_NEXT, .next = 3 };
	vr.desc[3] = (struct vring_desc){ .addr = data + 200, .len = 16,
					  .flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, .next = 2 };
	vr.desc[2] = (struct vring_desc){ .addr = data + 300, .len = 32, .flags = VRING_DESC_F_WRITE, .next = 0 };
	/* chain 4: an indirect table at data+1024 holding a readable 7 and a writable 64 */
	struct vring_desc *ind = (struct vring_desc *)(dp + 1024);
	memcpy(dp + 400, "payload", 7);
	ind[0] = (struct vring_desc){ .addr = data + 400, .len = 7, .flags = VRING_DESC_F_NEXT, .next = 1 };
	ind[1] = (struct vring_desc){ .addr = data + 512, .len = 64, .flags = VRING_DESC_F_WRITE, .next = 0 };
	vr.desc[4] = (struct vring_desc){ .addr = data + 1024, .len = 2 * sizeof(struct vring_desc),
					  .flags = VRING_DESC_F_INDIRECT, .next = 0 };
	vr.avail->ring[0] = 0;
	vr.avail->ring[1] = 1;
	vr.avail->ring[2] = 4;
	vr.avail->idx = 3;
	vr.avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	vring_used_event(&vr) = 2;
	printf("desc %llu\n", (unsigned long long)(img_base + ((unsigned char *)vr.desc - img)));
	printf("avail %llu\n", (unsigned long long)(img_base + ((unsigned char *)vr.avail - img)));
	printf("used %llu\n", (unsigned long long)(img_base + ((unsigned char *)vr.used - img)));
	printf("expect 0 r %llu 13\n", (unsigned long long)data);
	printf("expect 1 r %llu 5 w %llu 16 w %llu 32\n", (unsigned long long)(data + 100),
	       (unsigned long long)(data + 200), (unsigned long long)(data + 300));
	printf("expect 4 r %llu 7 w %llu 64\n", (unsigned long long)(data + 400),
	       (unsigned long long)(data + 512));
	return store(argv[2], img, img_size);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "layout"))
		return layout();
	if (argc >= 8 && !strcmp(argv[1], "walk"))
		return walk(argv);
	if (argc >= 6 && !strcmp(argv[1], "make"))
		return make(argv);
	fprintf(stderr, "usage: vring_uapi layout | walk FILE BASE NUM DESC AVAIL USED | make FILE BASE NUM ALIGN\n");
	return 1;
}

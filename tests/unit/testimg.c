// SPDX-License-Identifier: GPL-2.0
/*
 * Synthetic in-memory qcow2 images for the Check suites (see testimg.h).
 */
#include <check.h>

#include "testimg.h"

void put_be32(u8 *p, u32 v)
{
	__be32 b = cpu_to_be32(v);

	memcpy(p, &b, sizeof(b));
}

void put_be64(u8 *p, u64 v)
{
	__be64 b = cpu_to_be64(v);

	memcpy(p, &b, sizeof(b));
}

u64 rd_be64(const u8 *p)
{
	__be64 b;

	memcpy(&b, p, sizeof(b));
	return be64_to_cpu(b);
}

static void timg_grow(struct timg *t, u64 size)
{
	if (size > t->cap) {
		u64 cap = t->cap ? t->cap : 1 << 16;

		while (cap < size)
			cap *= 2;
		t->data = realloc(t->data, cap);
		ck_assert_ptr_nonnull(t->data);
		memset(t->data + t->cap, 0, cap - t->cap);
		t->cap = cap;
	}
	if (size > t->size)
		t->size = size;
}

u64 timg_alloc(struct timg *t, u32 n)
{
	u64 off = (t->size + t->cs - 1) & ~(u64)(t->cs - 1);

	timg_grow(t, off + (u64)n * t->cs);
	return off;
}

void timg_init(struct timg *t, int version, u32 cluster_bits, u64 vsize,
	       bool extl2)
{
	u32 l2_bits = cluster_bits - (extl2 ? 4 : 3);
	u64 span = 1ULL << (cluster_bits + l2_bits);
	u64 l1_bytes;
	u8 *h;

	memset(t, 0, sizeof(*t));
	t->version = version;
	t->cluster_bits = cluster_bits;
	t->cs = 1U << cluster_bits;
	t->extl2 = extl2;
	t->vsize = vsize;
	t->l1_entries = (vsize + span - 1) / span;
	l1_bytes = (u64)t->l1_entries * 8;

	timg_alloc(t, 2);
	t->l1_off = timg_alloc(t, l1_bytes ? (l1_bytes + t->cs - 1) / t->cs : 1);

	h = t->data;
	put_be32(h + H_MAGIC, QCOW2_MAGIC);
	put_be32(h + H_VERSION, version);
	put_be32(h + H_CLUSTER_BITS, cluster_bits);
	put_be64(h + H_SIZE, vsize);
	put_be32(h + H_L1_SIZE, t->l1_entries);
	put_be64(h + H_L1_OFF, t->l1_off);
	put_be64(h + H_REFT_OFF, t->cs);
	put_be32(h + H_REFT_CLUSTERS, 1);
	if (version == 3) {
		t->hdr_len = 112;
		put_be64(h + H_INCOMPAT, extl2 ? QCOW2_INCOMPAT_EXTL2 : 0);
		put_be32(h + H_REFCOUNT_ORDER, 4);
		put_be32(h + H_HEADER_LEN, t->hdr_len);
	} else {
		t->hdr_len = 72;
	}
}

void timg_free(struct timg *t)
{
	free(t->data);
	memset(t, 0, sizeof(*t));
}

void timg_add_ext(struct timg *t, u32 type, const void *data, u32 len)
{
	u8 *p = t->data + t->hdr_len;
	u32 off = t->hdr_len;

	/* Find the end marker (type 0) of the current extensions. */
	while (rd_be64(p)) {
		u32 l = be32_to_cpu(*(__be32 *)(p + 4));

		off += 8 + ((l + 7) & ~7U);
		p = t->data + off;
	}
	put_be32(p, type);
	put_be32(p + 4, len);
	if (len)
		memcpy(p + 8, data, len);
}

u64 timg_l2(struct timg *t, u64 gc)
{
	u32 l2_bits = t->cluster_bits - (t->extl2 ? 4 : 3);
	u64 l1_idx = gc >> l2_bits;
	u8 *e = t->data + t->l1_off + l1_idx * 8;
	u64 off;

	ck_assert_uint_lt(l1_idx, t->l1_entries);
	off = rd_be64(e) & QCOW2_L1E_OFFSET_MASK;
	if (!off) {
		off = timg_alloc(t, 1);
		e = t->data + t->l1_off + l1_idx * 8;
		put_be64(e, off | QCOW2_OFLAG_COPIED);
	}
	return off;
}

void timg_set_l2(struct timg *t, u64 gc, u64 entry, u64 bitmap)
{
	u32 l2_bits = t->cluster_bits - (t->extl2 ? 4 : 3);
	u64 l2 = timg_l2(t, gc);
	u64 idx = gc & ((1ULL << l2_bits) - 1);
	u8 *e = t->data + l2 + idx * (t->extl2 ? 16 : 8);

	put_be64(e, entry);
	if (t->extl2)
		put_be64(e + 8, bitmap);
}

u64 timg_data(struct timg *t, u64 gc, u8 fill)
{
	u64 off;

	timg_l2(t, gc);
	off = timg_alloc(t, 1);
	memset(t->data + off, fill, t->cs);
	timg_set_l2(t, gc, off | QCOW2_OFLAG_COPIED,
		    t->extl2 ? 0xffffffffULL : 0);
	return off;
}

static int timg_pread(void *priv, void *buf, size_t len, u64 off)
{
	struct timg *t = priv;
	size_t n = 0;

	t->reads++;
	if (t->fail_at_read && t->reads == (u64)t->fail_at_read)
		return -EIO;
	if (off < t->size)
		n = t->size - off < len ? t->size - off : len;
	memcpy(buf, t->data + off, n);
	memset((u8 *)buf + n, 0, len - n);
	return 0;
}

int timg_decode(struct timg *t, struct qcow2_header *h, struct qcow2_err *e)
{
	size_t len = t->size < QCOW2_MAX_CLUSTER_SIZE ? t->size :
		     QCOW2_MAX_CLUSTER_SIZE;

	return qcow2_header_decode(t->data, len, t->size, h, e);
}

int timg_open(struct timg *t, struct qcow2_image *img, u64 flags,
	      u64 cache_bytes, struct qcow2_err *err)
{
	struct qcow2_open_opts o = { .flags = flags,
				     .l2_cache_bytes = cache_bytes };
	struct qcow2_io io = { .pread = timg_pread, .priv = t };

	memset(img, 0, sizeof(*img));
	return qcow2_image_open(img, &io, t->size, &o, err);
}

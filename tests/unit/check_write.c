// SPDX-License-Identifier: GPL-2.0
/*
 * Check suite: the engine's write path on images made by qemu-img, served
 * from memory through a qcow2_io that records every write and flush:
 * allocation, overwrite in place, discard and reuse, refcount widths 1 to
 * 64, and the order of metadata write-back.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "testimg.h"

#define KiB 1024ULL
#define MAX_LOG 4096

struct rec {
	u64 off;		/* pwrite: bytes; flush: 0 */
	u64 len;		/* pwrite: bytes; flush: 0 */
	bool flush;
};

struct mem {
	u8 *data;
	u64 size, cap;
	struct rec log[MAX_LOG];
	u32 nr_log;
};

static struct mem m;
static struct qcow2_image img;
static bool opened;
static u8 fill;

static void mem_reserve(u64 size)
{
	if (size > m.cap) {
		u64 cap = m.cap ? m.cap : 1 << 20;

		while (cap < size)
			cap *= 2;
		m.data = realloc(m.data, cap);
		ck_assert_ptr_nonnull(m.data);
		memset(m.data + m.cap, 0, cap - m.cap);
		m.cap = cap;
	}
	if (size > m.size)
		m.size = size;
}

static void mem_log(u64 off, u64 len, bool flush)
{
	if (m.nr_log < MAX_LOG)
		m.log[m.nr_log++] = (struct rec){ off, len, flush };
}

static int mem_pread(void *priv, void *buf, size_t len, u64 off)
{
	size_t n = 0;

	(void)priv;
	if (off < m.size)
		n = min_t(u64, len, m.size - off);
	memcpy(buf, m.data + off, n);
	memset((u8 *)buf + n, 0, len - n);
	return 0;
}

static int mem_pwrite(void *priv, const void *buf, size_t len, u64 off)
{
	(void)priv;
	mem_reserve(off + len);
	memcpy(m.data + off, buf, len);
	mem_log(off, len, false);
	return 0;
}

static int mem_flush(void *priv)
{
	(void)priv;
	mem_log(0, 0, true);
	return 0;
}

static int mem_punch(void *priv, u64 off, u64 len)
{
	(void)priv;
	if (off < m.size)
		memset(m.data + off, 0, min_t(u64, len, m.size - off));
	return 0;
}

/* Data writes: head, @fill bytes, tail. */
static int src_write(void *arg, u64 host_off, const u8 *head, u32 head_len,
		     u64 guest_off, u64 len, const u8 *tail, u32 tail_len)
{
	(void)arg;
	(void)guest_off;
	mem_reserve(host_off + head_len + len + tail_len);
	if (head_len)
		memcpy(m.data + host_off, head, head_len);
	memset(m.data + host_off + head_len, fill, len);
	if (tail_len)
		memcpy(m.data + host_off + head_len + len, tail, tail_len);
	mem_log(host_off, head_len + len + tail_len, false);
	return 0;
}

/* The guest view of a single image without compression. */
static int src_read(void *arg, u64 guest_off, u32 len, u8 *buf)
{
	struct qcow2_extent e;
	int ret;

	(void)arg;
	while (len) {
		ret = qcow2_map(&img, guest_off, len, &e);
		if (ret)
			return ret;
		if (e.type == QCOW2_EXT_DATA)
			mem_pread(NULL, buf, e.len, e.host_off);
		else
			memset(buf, 0, e.len);
		buf += e.len;
		guest_off += e.len;
		len -= e.len;
	}
	return 0;
}

static const struct qcow2_wsrc src = {
	.write = src_write,
	.read = src_read,
};

static void setup(void)
{
	qcow2_log_quiet = 1;
	memset(&m, 0, sizeof(m));
	opened = false;
}

static void teardown(void)
{
	if (opened)
		qcow2_image_close(&img);
	free(m.data);
	memset(&m, 0, sizeof(m));
}

/* qemu-img create -o @opts, loaded into memory and opened writable. */
static void open_new(const char *opts, const char *size)
{
	struct qcow2_open_opts oo = { .flags = QCOW2_OPEN_WRITABLE };
	struct qcow2_io io = { .pread = mem_pread, .pwrite = mem_pwrite,
			       .flush = mem_flush, .punch = mem_punch };
	struct qcow2_err err = { { 0 } };
	char path[] = "/tmp/check_write.XXXXXX", cmd[512];
	FILE *fp;
	long n;
	int fd, ret;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -o %s %s %s",
		 opts, path, size);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
	fp = fopen(path, "rb");
	ck_assert_ptr_nonnull(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	mem_reserve(n);
	ck_assert_uint_eq(fread(m.data, 1, n, fp), (size_t)n);
	fclose(fp);
	unlink(path);

	memset(&img, 0, sizeof(img));
	ret = qcow2_image_open(&img, &io, m.size, &oo, &err);
	ck_assert_msg(!ret, "open: %d %s", ret, err.msg);
	ck_assert(img.writable);
	opened = true;
}

static u64 be64_at(u64 off)
{
	return rd_be64(m.data + off);
}

/* The refcount of host cluster @c, decoded here, independent of lib/. */
static u64 refcount(u64 c)
{
	u32 cb = be32_to_cpu(*(__be32 *)(m.data + H_CLUSTER_BITS));
	u32 order = be32_to_cpu(*(__be32 *)(m.data + H_REFCOUNT_ORDER));
	u32 bits = 1U << order;
	u64 per_block = (1ULL << cb) * 8 / bits, idx = c % per_block, v = 0;
	u64 rt = be64_at(H_REFT_OFF), blk;
	u32 i;

	if (be32_to_cpu(*(__be32 *)(m.data + H_MAGIC)) != QCOW2_MAGIC)
		ck_abort_msg("not an image");
	blk = be64_at(rt + c / per_block * 8) & QCOW2_L1E_OFFSET_MASK;
	if (!blk)
		return 0;
	if (bits < 8)
		return (m.data[blk + idx * bits / 8] >> (idx * bits % 8)) &
		       ((1U << bits) - 1);
	for (i = 0; i < bits / 8; i++)
		v = (v << 8) | m.data[blk + idx * (bits / 8) + i];
	return v;
}

static u64 host_of(u64 guest_off)
{
	struct qcow2_extent e;

	ck_assert_int_eq(qcow2_map(&img, guest_off, 512, &e), 0);
	ck_assert_int_eq(e.type, QCOW2_EXT_DATA);
	return e.host_off;
}

static void do_write(u64 off, u64 len, u8 byte)
{
	int ret;

	fill = byte;
	ret = qcow2_write(&img, off, len, &src);
	ck_assert_msg(!ret, "write %llu+%llu: %d", (unsigned long long)off,
		      (unsigned long long)len, ret);
}

static void do_flush(void)
{
	ck_assert_int_eq(qcow2_flush(&img), 0);
}

START_TEST(alloc_fresh)
{
	u64 h;

	open_new("cluster_size=65536", "16M");
	do_write(64 * KiB, 64 * KiB, 0xa1);
	do_flush();
	h = host_of(64 * KiB);
	ck_assert_uint_eq(h % (64 * KiB), 0);
	ck_assert_uint_eq(m.data[h], 0xa1);
	ck_assert_uint_eq(m.data[h + 64 * KiB - 1], 0xa1);
	ck_assert_uint_eq(refcount(h >> 16), 1);
	ck_assert_uint_eq(refcount(0), 1);
	ck_assert_uint_ge(img.ws.alloc_clusters, 2);	/* L2 + data */
	/* The L2 entry says COPIED: we own it. */
	ck_assert(img.l1[0] & cpu_to_be64(QCOW2_OFLAG_COPIED));
}

START_TEST(partial_write_cow)
{
	u64 h;

	open_new("cluster_size=4096", "1M");
	do_write(4096 + 1024, 512, 0xb2);
	do_flush();
	h = host_of(4096);
	ck_assert_uint_eq(m.data[h], 0);		/* head: old zeroes */
	ck_assert_uint_eq(m.data[h + 1024], 0xb2);
	ck_assert_uint_eq(m.data[h + 1536], 0);		/* tail */
	ck_assert_uint_eq(refcount(h >> 12), 1);
}

START_TEST(overwrite_in_place)
{
	u64 h, allocs, size;

	open_new("cluster_size=65536", "16M");
	do_write(0, 64 * KiB, 0x11);
	do_flush();
	h = host_of(0);
	allocs = img.ws.alloc_clusters;
	size = m.size;
	do_write(512, 4096, 0x22);
	do_write(0, 64 * KiB, 0x33);
	do_flush();
	ck_assert_uint_eq(host_of(0), h);
	ck_assert_uint_eq(img.ws.alloc_clusters, allocs);
	ck_assert_uint_eq(m.size, size);
	ck_assert_uint_eq(m.data[h + 600], 0x33);
}

START_TEST(discard_frees_and_reuses)
{
	u64 a, b, c;

	open_new("cluster_size=65536", "16M");
	do_write(0, 64 * KiB, 0x11);
	do_write(64 * KiB, 64 * KiB, 0x22);
	do_flush();
	a = host_of(0);
	b = host_of(64 * KiB);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_eq(qcow2_discard(&img, 0, 64 * KiB), 0);
	do_flush();
	ck_assert_uint_eq(refcount(a >> 16), 0);
	ck_assert_uint_eq(refcount(b >> 16), 1);
	ck_assert_uint_ge(img.ws.freed_clusters, 1);
	/* A partial-cluster discard changes nothing. */
	ck_assert_uint_eq(qcow2_discard(&img, 64 * KiB + 512, 4096), 0);
	do_flush();
	ck_assert_uint_eq(host_of(64 * KiB), b);
	/* The next allocation takes the freed cluster. */
	do_write(5 * 64 * KiB, 64 * KiB, 0x33);
	do_flush();
	c = host_of(5 * 64 * KiB);
	ck_assert_uint_eq(c, a);
	ck_assert_uint_eq(refcount(c >> 16), 1);
}

/* Every width: the header, tables and new clusters get refcount 1. */
START_TEST(refcount_widths)
{
	static const u32 widths[] = { 1, 2, 4, 8, 16, 32, 64 };
	u32 bits = widths[_i];
	char opts[96];
	u64 h[3], c;
	int i;

	snprintf(opts, sizeof(opts), "cluster_size=4096,refcount_bits=%u",
		 bits);
	open_new(opts, "4M");
	for (i = 0; i < 3; i++)
		do_write(i * 8 * KiB, 4096, 0x40 + i);
	do_flush();
	for (i = 0; i < 3; i++) {
		h[i] = host_of(i * 8 * KiB);
		ck_assert_uint_eq(refcount(h[i] >> 12), 1);
	}
	ck_assert_uint_eq(refcount(0), 1);
	/* Every cluster of the file is in use, nothing past it. */
	for (c = 0; c < m.size >> 12; c++)
		ck_assert_msg(refcount(c) == 1,
			      "width %u: cluster %llu has refcount %llu", bits,
			      (unsigned long long)c,
			      (unsigned long long)refcount(c));
	ck_assert_uint_eq(refcount(m.size >> 12), 0);
	/* Freed again: back to zero at this width. */
	ck_assert_uint_eq(qcow2_discard(&img, 8 * KiB, 4096), 0);
	do_flush();
	ck_assert_uint_eq(refcount(h[1] >> 12), 0);
}

/* What a logged write touched: an L2 table, a refcount block, or else. */
enum what { W_OTHER, W_RC, W_L2 };

static enum what classify(const struct rec *r, u32 cs)
{
	u64 rt = be64_at(H_REFT_OFF), e;
	u32 rt_clusters = be32_to_cpu(*(__be32 *)(m.data + H_REFT_CLUSTERS));
	u64 l1 = be64_at(H_L1_OFF);
	u32 l1_size = be32_to_cpu(*(__be32 *)(m.data + H_L1_SIZE));
	u64 i, c = r->off & ~(u64)(cs - 1);

	for (i = 0; i < (u64)rt_clusters * cs / 8; i++) {
		e = be64_at(rt + i * 8) & QCOW2_L1E_OFFSET_MASK;
		if (e && e == c)
			return W_RC;
	}
	for (i = 0; i < l1_size; i++) {
		e = be64_at(l1 + i * 8) & QCOW2_L1E_OFFSET_MASK;
		if (e && e == c)
			return W_L2;
	}
	return W_OTHER;
}

/*
 * Refcount blocks reach the disk before the L2 slices that reference the
 * new clusters, with a flush in between; the data before both.
 */
START_TEST(flush_order)
{
	u32 cs = 4096, i, last_rc = 0, first_l2 = ~0U, flush_between = 0;
	u32 first_data = ~0U, last_data = 0;
	bool have_rc = false;
	u64 h;

	open_new("cluster_size=4096", "64M");
	/* Two L2 tables, several data clusters. */
	do_write(0, 3 * 4096, 0x51);
	do_write(32 << 20, 4096, 0x52);
	m.nr_log = 0;
	do_flush();
	h = host_of(0);
	ck_assert_uint_lt(m.nr_log, MAX_LOG);
	for (i = 0; i < m.nr_log; i++) {
		const struct rec *r = &m.log[i];

		if (r->flush)
			continue;
		switch (classify(r, cs)) {
		case W_RC:
			last_rc = i;
			have_rc = true;
			break;
		case W_L2:
			if (first_l2 == ~0U)
				first_l2 = i;
			break;
		default:
			if (r->off <= h && h < r->off + r->len) {
				first_data = min_t(u32, first_data, i);
				last_data = i;
			}
		}
	}
	/* Data went out in qcow2_write(), before this flush. */
	ck_assert_uint_eq(first_data, ~0U);
	(void)last_data;
	ck_assert_msg(have_rc, "no refcount block written by the flush");
	ck_assert_msg(first_l2 != ~0U, "no L2 table written by the flush");
	ck_assert_msg(last_rc < first_l2,
		      "refcount block write #%u after L2 write #%u", last_rc,
		      first_l2);
	for (i = last_rc + 1; i < first_l2; i++)
		flush_between += m.log[i].flush;
	ck_assert_msg(flush_between, "no flush between refcount block write #%u and L2 write #%u",
		      last_rc, first_l2);
	/* And the last thing of all is a flush. */
	ck_assert(m.log[m.nr_log - 1].flush);
}

/* Zero writes: v3 images get the zero flag without data writes. */
START_TEST(write_zeroes_v3)
{
	struct qcow2_extent e;
	u64 h;

	open_new("cluster_size=65536", "16M");
	do_write(0, 2 * 64 * KiB, 0x61);
	do_flush();
	h = host_of(64 * KiB);
	fill = 0;
	ck_assert_int_eq(qcow2_write_zeroes(&img, 0, 64 * KiB, 0, &src), 0);
	ck_assert_int_eq(qcow2_write_zeroes(&img, 64 * KiB, 64 * KiB,
					    QCOW2_ZERO_MAY_UNMAP, &src), 0);
	do_flush();
	ck_assert_int_eq(qcow2_map(&img, 0, 2 * 64 * KiB, &e), 0);
	ck_assert_int_eq(e.type, QCOW2_EXT_ZERO);
	ck_assert_uint_eq(e.len, 2 * 64 * KiB);
	ck_assert_uint_eq(refcount(h >> 16), 0);
}

static Suite *write_suite(void)
{
	Suite *s = suite_create("write");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, alloc_fresh);
	tcase_add_test(tc, partial_write_cow);
	tcase_add_test(tc, overwrite_in_place);
	tcase_add_test(tc, discard_frees_and_reuses);
	tcase_add_loop_test(tc, refcount_widths, 0, 7);
	tcase_add_test(tc, flush_order);
	tcase_add_test(tc, write_zeroes_v3);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(write_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * Check suite: qcow2_image_open() and qcow2_map() on synthetic in-memory
 * images: extent types, coalescing across clusters, slices and L2 tables,
 * compressed clusters, subclusters, corruption and I/O errors.
 */
#include <check.h>

#include "testimg.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

static struct timg t;
static struct qcow2_image img;
static struct qcow2_err err;
static bool opened;

static void setup(void)
{
	qcow2_log_quiet = 1;
	opened = false;
}

static void teardown(void)
{
	if (opened)
		qcow2_image_close(&img);
	timg_free(&t);
}

static void open_img(u64 cache_bytes)
{
	int ret = timg_open(&t, &img, 0, cache_bytes, &err);

	ck_assert_msg(!ret, "open: %d %s", ret, err.msg);
	opened = true;
}

static struct qcow2_extent map(u64 off, u64 len)
{
	struct qcow2_extent e;
	int ret = qcow2_map(&img, off, len, &e);

	ck_assert_msg(!ret, "mapping %llu+%llu: %d", (unsigned long long)off,
		      (unsigned long long)len, ret);
	ck_assert_uint_gt(e.len, 0);
	ck_assert_uint_le(e.len, len);
	return e;
}

#define ck_ext(e, ty, ln) do {					\
	const struct qcow2_extent *__e = &(e);				\
									\
	ck_assert_int_eq(__e->type, (ty));				\
	ck_assert_uint_eq(__e->len, (ln));				\
} while (0)

START_TEST(unallocated_disk)
{
	struct qcow2_extent e;

	timg_init(&t, 3, 16, 64 * MiB, false);
	open_img(0);
	e = map(0, 64 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 64 * MiB);
	e = map(12345, 100);
	ck_ext(e, QCOW2_EXT_UNALLOC, 100);
	ck_assert_int_eq(qcow2_map(&img, 0, 0, &e), -EINVAL);
}

START_TEST(beyond_virtual_size)
{
	struct qcow2_extent e;

	timg_init(&t, 3, 16, 64 * MiB + 4096, false);
	open_img(0);
	e = map(64 * MiB + 4096, 100);
	ck_ext(e, QCOW2_EXT_ZERO, 100);
	e = map(~0ULL - 10, 5);
	ck_ext(e, QCOW2_EXT_ZERO, 5);
	/* Extents stop at the virtual size. */
	e = map(64 * MiB, 1 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 4096);
	e = map(0, ~0ULL);
	ck_ext(e, QCOW2_EXT_UNALLOC, 64 * MiB + 4096);
}

START_TEST(data_contiguous)
{
	struct qcow2_extent e;
	u64 first = 0, gc;

	timg_init(&t, 3, 12, 16 * MiB, false);
	for (gc = 0; gc < 10; gc++) {
		u64 off = timg_data(&t, gc, 0x10 + gc);

		if (!gc)
			first = off;
		else
			ck_assert_uint_eq(off, first + gc * 4096);
	}
	open_img(0);
	e = map(0, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 40960);
	ck_assert_uint_eq(e.host_off, first);
	e = map(1000, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 40960 - 1000);
	ck_assert_uint_eq(e.host_off, first + 1000);
	e = map(5000, 100);
	ck_ext(e, QCOW2_EXT_DATA, 100);
	ck_assert_uint_eq(e.host_off, first + 5000);
	e = map(40960, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 16 * MiB - 40960);
}

START_TEST(data_across_tables)
{
	struct qcow2_extent e;
	u64 first = 0, gc;

	/* 512-byte clusters: a table is one 64-entry slice, 32 KiB. */
	timg_init(&t, 3, 9, 16 * MiB, false);
	for (gc = 0; gc < 200; gc += 64)
		timg_l2(&t, gc);
	for (gc = 0; gc < 200; gc++) {
		u64 off = timg_data(&t, gc, gc);

		if (!gc)
			first = off;
	}
	open_img(0);
	e = map(0, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 200 * 512);
	ck_assert_uint_eq(e.host_off, first);
	e = map(63 * 512 + 7, 1000);
	ck_ext(e, QCOW2_EXT_DATA, 1000);
	ck_assert_uint_eq(e.host_off, first + 63 * 512 + 7);
}

START_TEST(data_across_slices)
{
	struct qcow2_extent e;
	u64 first = 0, gc;

	/* 64 KiB clusters: 4 KiB slices of 512 entries in 8192-entry tables. */
	timg_init(&t, 3, 16, 1 * GiB, false);
	for (gc = 500; gc < 530; gc++) {
		u64 off = timg_data(&t, gc, gc);

		if (gc == 500)
			first = off;
	}
	open_img(0);
	e = map(500 * 65536, 1 * GiB);
	ck_ext(e, QCOW2_EXT_DATA, 30 * 65536);
	ck_assert_uint_eq(e.host_off, first);
	e = map(0, 1 * GiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 500 * 65536);
}

START_TEST(data_then_unallocated_table)
{
	struct qcow2_extent e;
	u64 last;

	/* The last cluster of the first L2 table, then no table at all. */
	timg_init(&t, 3, 12, 16 * MiB, false);
	last = timg_data(&t, 511, 0x5f);
	open_img(0);
	e = map(2 * MiB - 4096 + 10, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096 - 10);
	ck_assert_uint_eq(e.host_off, last + 10);
	e = map(2 * MiB, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 14 * MiB);
}

START_TEST(data_not_contiguous)
{
	struct qcow2_extent e;
	u64 a, b, c2, c3;

	timg_init(&t, 3, 12, 16 * MiB, false);
	a = timg_data(&t, 0, 1);
	timg_alloc(&t, 1);		/* a gap */
	b = timg_data(&t, 1, 2);
	/* Host order opposite to guest order. */
	c3 = timg_data(&t, 3, 3);
	c2 = timg_data(&t, 2, 4);
	ck_assert_uint_eq(c2, c3 + 4096);
	open_img(0);
	e = map(0, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
	ck_assert_uint_eq(e.host_off, a);
	e = map(4096, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
	ck_assert_uint_eq(e.host_off, b);
	e = map(8192, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
	ck_assert_uint_eq(e.host_off, c2);
	e = map(3 * 4096, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
	ck_assert_uint_eq(e.host_off, c3);
}

START_TEST(zero_and_unalloc_merge)
{
	struct qcow2_extent e;
	u64 pre;

	timg_init(&t, 3, 16, 64 * MiB, false);
	pre = timg_alloc(&t, 1);
	timg_set_l2(&t, 0, QCOW2_OFLAG_ZERO, 0);
	timg_set_l2(&t, 1, pre | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO, 0);
	timg_set_l2(&t, 2, QCOW2_OFLAG_ZERO, 0);
	/* 3, 4: unallocated entries; 5: preallocated cluster, unread. */
	timg_data(&t, 5, 0xee);
	open_img(0);
	e = map(100, 64 * MiB);
	ck_ext(e, QCOW2_EXT_ZERO, 3 * 65536 - 100);
	e = map(3 * 65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 2 * 65536);
	e = map(5 * 65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 65536);
	e = map(6 * 65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 64 * MiB - 6 * 65536);
}

START_TEST(v2_zero_flag)
{
	struct qcow2_extent e;

	timg_init(&t, 2, 16, 64 * MiB, false);
	timg_set_l2(&t, 1, QCOW2_OFLAG_ZERO, 0);
	open_img(0);
	e = map(0, 64 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 65536);
	e = map(65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_ZERO, 65536);
}

START_TEST(compressed_clusters)
{
	struct qcow2_extent e;
	u64 data, comp;
	u32 x = 62 - (16 - 8);

	timg_init(&t, 3, 16, 64 * MiB, false);
	data = timg_data(&t, 1, 0x11);
	comp = timg_alloc(&t, 1) + 300;
	timg_set_l2(&t, 2, QCOW2_OFLAG_COMPRESSED | comp | (3ULL << x), 0);
	timg_set_l2(&t, 3, QCOW2_OFLAG_COMPRESSED | (comp + 1500), 0);
	open_img(0);

	e = map(65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 65536);
	ck_assert_uint_eq(e.host_off, data);
	e = map(2 * 65536 + 100, 64 * MiB);
	ck_ext(e, QCOW2_EXT_COMPRESSED, 65536 - 100);
	ck_assert_uint_eq(e.comp_off, comp);
	ck_assert_uint_eq(e.comp_bytes, 4 * 512 - 300);
	ck_assert_uint_eq(e.cluster_off, 100);
	e = map(2 * 65536 + 100, 50);
	ck_ext(e, QCOW2_EXT_COMPRESSED, 50);
	ck_assert_uint_eq(e.cluster_off, 100);
	e = map(3 * 65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_COMPRESSED, 65536);
	ck_assert_uint_eq(e.comp_off, comp + 1500);
	ck_assert_uint_eq(e.comp_bytes, 512 - ((300 + 1500) & 511));
	ck_assert_uint_eq(e.cluster_off, 0);
	e = map(4 * 65536, 64 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 64 * MiB - 4 * 65536);
}

START_TEST(extl2_subclusters)
{
	struct qcow2_extent e;
	u64 h0, h1;
	/* 16 KiB clusters, 512-byte subclusters. */
	timg_init(&t, 3, 14, 16 * MiB, true);
	h0 = timg_data(&t, 0, 0xa0);
	h1 = timg_data(&t, 1, 0xa1);
	ck_assert_uint_eq(h1, h0 + 16384);
	/* gc 0: sc 0-3 data, 4-5 zero, 6-27 unallocated, 28-31 data. */
	timg_set_l2(&t, 0, h0 | QCOW2_OFLAG_COPIED,
		    0xfULL | (0x30ULL << 32) | (0xfULL << 28));
	/* gc 1: sc 0-3 data, then zero (a preallocated cluster). */
	timg_set_l2(&t, 1, h1 | QCOW2_OFLAG_COPIED,
		    0xfULL | (0xfffffff0ULL << 32));
	/* gc 2: no host cluster, all zero; gc 3: sc 5 zero only. */
	timg_set_l2(&t, 2, 0, 0xffffffffULL << 32);
	timg_set_l2(&t, 3, 0, BIT_ULL(32 + 5));
	open_img(0);

	e = map(100, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 2048 - 100);
	ck_assert_uint_eq(e.host_off, h0 + 100);
	e = map(2048, 16 * MiB);
	ck_ext(e, QCOW2_EXT_ZERO, 1024);
	e = map(3072, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 22 * 512);
	/* Data runs from gc 0 sc 28 into gc 1 sc 3: contiguous host. */
	e = map(28 * 512, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4 * 512 + 4 * 512);
	ck_assert_uint_eq(e.host_off, h0 + 28 * 512);
	/* Zero from gc 1 sc 4 through gc 2; gc 3 starts unallocated. */
	e = map(16384 + 2048, 16 * MiB);
	ck_ext(e, QCOW2_EXT_ZERO, 16384 - 2048 + 16384);
	e = map(3 * 16384, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 5 * 512);
	e = map(3 * 16384 + 5 * 512 + 1, 16 * MiB);
	ck_ext(e, QCOW2_EXT_ZERO, 511);
	e = map(3 * 16384 + 6 * 512, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 16 * MiB - 3 * 16384 - 6 * 512);
}

START_TEST(extl2_compressed)
{
	struct qcow2_extent e;
	u64 comp;

	timg_init(&t, 3, 16, 16 * MiB, true);
	comp = timg_alloc(&t, 1) + 4096;
	timg_set_l2(&t, 0, QCOW2_OFLAG_COMPRESSED | comp, 0);
	timg_set_l2(&t, 1, QCOW2_OFLAG_COMPRESSED | comp, 1);
	open_img(0);
	e = map(3000, 16 * MiB);
	ck_ext(e, QCOW2_EXT_COMPRESSED, 65536 - 3000);
	ck_assert_uint_eq(e.cluster_off, 3000);
	ck_assert_uint_eq(e.comp_bytes, 512);
	ck_assert_int_eq(qcow2_map(&img, 65536, 100, &e), -EUCLEAN);
}

START_TEST(data_beyond_eof)
{
	struct qcow2_extent e;
	u64 a, last;

	timg_init(&t, 3, 12, 16 * MiB, false);
	a = timg_data(&t, 0, 1);
	timg_set_l2(&t, 1, (t.size + 4096) | QCOW2_OFLAG_COPIED, 0);
	last = timg_data(&t, 5, 5);
	/* The file ends inside the last data cluster: fine, zero-filled. */
	t.size = last + 512;
	open_img(0);
	e = map(0, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
	ck_assert_uint_eq(e.host_off, a);
	ck_assert_int_eq(qcow2_map(&img, 4096, 100, &e), -EUCLEAN);
	ck_assert_uint_eq(e.len, 0);
	e = map(5 * 4096, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
}

START_TEST(compressed_beyond_eof)
{
	struct qcow2_extent e;

	timg_init(&t, 3, 12, 16 * MiB, false);
	timg_set_l2(&t, 0, QCOW2_OFLAG_COMPRESSED | (t.size + 4096 + 7), 0);
	open_img(0);
	ck_assert_int_eq(qcow2_map(&img, 0, 100, &e), -EUCLEAN);
}

START_TEST(l2_beyond_eof)
{
	struct qcow2_extent e;

	timg_init(&t, 3, 12, 16 * MiB, false);
	timg_data(&t, 0, 1);
	put_be64(t.data + t.l1_off + 8, 1ULL << 40);
	put_be64(t.data + t.l1_off + 16, timg_alloc(&t, 1) | BIT_ULL(63));
	open_img(0);
	e = map(0, 16 * MiB);
	ck_ext(e, QCOW2_EXT_DATA, 4096);
	e = map(4096, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 2 * MiB - 4096);
	ck_assert_int_eq(qcow2_map(&img, 2 * MiB, 100, &e), -EUCLEAN);
	/* The last cluster of the file as an L2 table is fine. */
	e = map(4 * MiB, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 12 * MiB);
}

START_TEST(corrupt_entries)
{
	struct qcow2_extent e;

	timg_init(&t, 3, 12, 16 * MiB, false);
	timg_data(&t, 0, 1);
	timg_set_l2(&t, 2, 0x1000 | BIT_ULL(3), 0);
	put_be64(t.data + t.l1_off + 8, BIT_ULL(60));
	open_img(0);
	/* A corrupt entry after the first cluster ends the extent. */
	e = map(4096, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 4096);
	ck_assert_int_eq(qcow2_map(&img, 8192, 100, &e), -EUCLEAN);
	ck_assert_int_eq(qcow2_map(&img, 2 * MiB, 100, &e), -EUCLEAN);
	e = map(3 * 4096, 16 * MiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 2 * MiB - 3 * 4096);
}

START_TEST(io_errors)
{
	struct qcow2_extent e;
	u64 reads;

	timg_init(&t, 3, 12, 16 * MiB, false);
	timg_data(&t, 0, 1);
	open_img(0);
	reads = t.reads;
	t.fail_at_read = reads + 1;
	ck_assert_int_eq(qcow2_map(&img, 0, 100, &e), -EIO);
	e = map(0, 100);
	ck_ext(e, QCOW2_EXT_DATA, 100);
	qcow2_image_close(&img);
	opened = false;

	/* Header and L1 reads. */
	t.reads = 0;
	t.fail_at_read = 1;
	ck_assert_int_eq(timg_open(&t, &img, 0, 0, &err), -EIO);
	t.reads = 0;
	t.fail_at_read = 2;
	ck_assert_int_eq(timg_open(&t, &img, 0, 0, &err), -EIO);
	ck_assert_msg(strstr(err.msg, "L1 table"), "%s", err.msg);
}

START_TEST(sparse_64g)
{
	struct qcow2_extent e;
	u64 d;

	timg_init(&t, 3, 9, 64 * GiB, false);
	d = timg_data(&t, 40 * GiB / 512, 0x40);
	open_img(0);
	ck_assert_uint_eq(img.h.l1_size, 2 * 1024 * 1024);
	e = map(0, 64 * GiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 40 * GiB);
	e = map(40 * GiB, 64 * GiB);
	ck_ext(e, QCOW2_EXT_DATA, 512);
	ck_assert_uint_eq(e.host_off, d);
	e = map(40 * GiB + 512, 64 * GiB);
	ck_ext(e, QCOW2_EXT_UNALLOC, 24 * GiB - 512);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), QCOW2_L2C_DEFAULT_MAX_BYTES);
}

START_TEST(open_cache_sizes)
{
	timg_init(&t, 3, 16, 64 * MiB, false);
	/* 1024 clusters, 512 entries per slice: 2 slices cover the disk. */
	open_img(0);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), 2 * 4096);
	qcow2_image_close(&img);
	timg_free(&t);

	timg_init(&t, 3, 12, 1 * GiB, false);
	open_img(0);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), 512 * 4096);
	qcow2_image_close(&img);
	/* An explicit size wins, rounded up, at least the minimum. */
	open_img(10000);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), 3 * 4096);
	qcow2_image_close(&img);
	open_img(1);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img),
			  QCOW2_L2C_MIN_SLICES * 4096);
	qcow2_image_close(&img);
	/* A huge request is cut to what maps the whole disk: 512 slices. */
	open_img(0);
	ck_assert_uint_eq(qcow2_l2c_slices_for(&img, ~0ULL), 512);
	ck_assert_uint_eq(qcow2_l2c_cover_bytes(&img), 512 * 4096);
	qcow2_image_close(&img);
	timg_free(&t);

	/* 512-byte clusters: 512-byte slices. */
	timg_init(&t, 3, 9, 1 * MiB, false);
	open_img(1);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), QCOW2_L2C_MIN_SLICES * 512);
}

START_TEST(open_refusals)
{
	timg_init(&t, 3, 16, 64 * MiB, false);
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_CORRUPT);
	ck_assert_int_eq(timg_open(&t, &img, QCOW2_OPEN_WRITABLE, 0, &err),
			 -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, "image is marked corrupt and cannot be written; attach it read-only, or run qemu-img check -r all");
	/* Read-only it opens, as in QEMU. */
	ck_assert_int_eq(timg_open(&t, &img, 0, 0, &err), 0);
	qcow2_image_close(&img);
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_DIRTY);
	ck_assert_int_eq(timg_open(&t, &img, QCOW2_OPEN_WRITABLE, 0, &err),
			 -EOPNOTSUPP);
	put_be64(t.data + H_L1_OFF, 1ULL << 40);
	ck_assert_int_eq(timg_open(&t, &img, 0, 0, &err), -EUCLEAN);
	ck_assert_msg(strstr(err.msg, "L1 table at offset 0x10000000000"),
		      "%s", err.msg);
	/* Tiny and empty files. */
	t.size = 0;
	ck_assert_int_eq(timg_open(&t, &img, 0, 0, &err), -EINVAL);
	t.size = 50;
	ck_assert_int_eq(timg_open(&t, &img, 0, 0, &err), -EINVAL);
}

START_TEST(empty_image)
{
	struct qcow2_extent e;

	timg_init(&t, 3, 16, 0, false);
	open_img(0);
	ck_assert_ptr_null(img.l1);
	e = map(0, 4096);
	ck_ext(e, QCOW2_EXT_ZERO, 4096);
}

static Suite *map_suite(void)
{
	Suite *s = suite_create("map");
	TCase *tc = tcase_create("map");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, unallocated_disk);
	tcase_add_test(tc, beyond_virtual_size);
	tcase_add_test(tc, data_contiguous);
	tcase_add_test(tc, data_across_tables);
	tcase_add_test(tc, data_across_slices);
	tcase_add_test(tc, data_then_unallocated_table);
	tcase_add_test(tc, data_not_contiguous);
	tcase_add_test(tc, zero_and_unalloc_merge);
	tcase_add_test(tc, v2_zero_flag);
	tcase_add_test(tc, compressed_clusters);
	tcase_add_test(tc, extl2_subclusters);
	tcase_add_test(tc, extl2_compressed);
	tcase_add_test(tc, data_beyond_eof);
	tcase_add_test(tc, compressed_beyond_eof);
	tcase_add_test(tc, l2_beyond_eof);
	tcase_add_test(tc, corrupt_entries);
	tcase_add_test(tc, io_errors);
	tcase_add_test(tc, sparse_64g);
	tcase_add_test(tc, open_cache_sizes);
	tcase_add_test(tc, open_refusals);
	tcase_add_test(tc, empty_image);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(map_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

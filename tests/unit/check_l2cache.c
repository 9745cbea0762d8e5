// SPDX-License-Identifier: GPL-2.0
/*
 * Check suite: the L2 slice cache: geometry checks, LRU eviction at the
 * minimum size, statistics, failed reads, runtime resize, and mapping
 * results that do not depend on the cache size.
 */
#include <check.h>

#include "testimg.h"

#define MiB (1024ULL * 1024)
/* 4 KiB clusters: one L2 table is one slice and covers 2 MiB. */
#define TABLE_SPAN (2 * MiB)
#define NR_TABLES 8

static struct timg t;
static struct qcow2_image img;
static struct qcow2_err err;

static void setup(void)
{
	u64 i;

	qcow2_log_quiet = 1;
	timg_init(&t, 3, 12, NR_TABLES * TABLE_SPAN, false);
	/* Table i maps its first cluster to data filled with i. */
	for (i = 0; i < NR_TABLES; i++)
		timg_data(&t, i * (TABLE_SPAN / 4096), 0x10 + i);
}

static void teardown(void)
{
	qcow2_image_close(&img);
	timg_free(&t);
}

static void open_img(u64 cache_bytes)
{
	int ret = timg_open(&t, &img, 0, cache_bytes, &err);

	ck_assert_msg(!ret, "open: %d %s", ret, err.msg);
}

/* Map the first cluster of table @i and check it is data. */
static void touch(unsigned int i)
{
	struct qcow2_extent e;

	ck_assert_int_eq(qcow2_map(&img, i * TABLE_SPAN, 4096, &e), 0);
	ck_assert_int_eq(e.type, QCOW2_EXT_DATA);
	ck_assert_uint_eq(t.data[e.host_off], 0x10 + i);
}

static void ck_stats(u64 hits, u64 misses, u64 evictions)
{
	struct qcow2_cache_stats st;

	qcow2_l2c_get_stats(&img, &st);
	ck_assert_uint_eq(st.hits, hits);
	ck_assert_uint_eq(st.misses, misses);
	ck_assert_uint_eq(st.evictions, evictions);
}

START_TEST(init_geometry)
{
	struct qcow2_cache c;

	ck_assert_int_eq(qcow2_cache_init(&c, 4096, 1), -EINVAL);
	ck_assert_int_eq(qcow2_cache_init(&c, 256, 4), -EINVAL);
	ck_assert_int_eq(qcow2_cache_init(&c, 8192, 4), -EINVAL);
	ck_assert_int_eq(qcow2_cache_init(&c, 3000, 4), -EINVAL);
	ck_assert_int_eq(qcow2_cache_init(&c, 4096,
					QCOW2_L2C_MAX_BYTES / 4096 + 1),
			 -EINVAL);
	ck_assert_int_eq(qcow2_cache_init(&c, 512, 5), 0);
	ck_assert_uint_eq(c.nr_slots, 5);
	ck_assert_uint_eq(c.nr_buckets, 8);
	ck_assert_uint_eq(c.nr_used, 0);
	qcow2_cache_destroy(&c);
	qcow2_cache_destroy(&c);
	/* The fixture's image is opened so teardown can close it. */
	open_img(0);
}

START_TEST(lru_eviction_min)
{
	open_img(1);
	ck_assert_uint_eq(img.l2c.nr_slots, QCOW2_L2C_MIN_SLICES);
	touch(0);			/* miss */
	touch(1);			/* miss */
	touch(0);			/* hit: 0 is now most recent */
	ck_stats(1, 2, 0);
	touch(2);			/* miss: evicts 1 */
	ck_stats(1, 3, 1);
	touch(0);			/* hit */
	ck_stats(2, 3, 1);
	touch(1);			/* miss: evicts 2 */
	ck_stats(2, 4, 2);
	touch(2);			/* miss: evicts 0 */
	ck_stats(2, 5, 3);
	ck_assert_uint_eq(img.l2c.nr_used, 2);
}

START_TEST(no_eviction_when_big)
{
	unsigned int round, i;

	open_img(0);
	ck_assert_uint_ge(img.l2c.nr_slots, NR_TABLES);
	for (round = 0; round < 3; round++)
		for (i = 0; i < NR_TABLES; i++)
			touch(i);
	ck_stats(2 * NR_TABLES, NR_TABLES, 0);
}

START_TEST(failed_read_not_cached)
{
	struct qcow2_extent e;

	open_img(1);
	touch(0);
	touch(1);
	t.fail_at_read = t.reads + 1;
	ck_assert_int_eq(qcow2_map(&img, 2 * TABLE_SPAN, 4096, &e), -EIO);
	/* The LRU victim was dropped, and its slot is free again. */
	ck_assert_uint_eq(img.l2c.nr_used, 1);
	touch(2);
	touch(1);
	ck_stats(1, 4, 1);
	ck_assert_uint_eq(img.l2c.nr_used, 2);
}

START_TEST(resize)
{
	open_img(1);
	touch(0);
	touch(1);
	touch(2);
	ck_assert_int_eq(qcow2_l2c_resize(&img, 1 * MiB), 0);
	/* Never more than maps the whole disk, however much is asked. */
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), qcow2_l2c_cover_bytes(&img));
	ck_assert_uint_lt(qcow2_l2c_bytes(&img), 1 * MiB);
	/* Counters carry over; the new cache starts empty. */
	ck_stats(0, 3, 1);
	touch(0);
	touch(0);
	ck_stats(1, 4, 1);
	ck_assert_int_eq(qcow2_l2c_resize(&img, 0), 0);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), QCOW2_L2C_MIN_SLICES * 4096);
	touch(3);
	touch(4);
	touch(5);
	ck_stats(1, 7, 2);
	ck_assert_int_eq(qcow2_l2c_resize(&img, 5000), 0);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), 2 * 4096);
	ck_assert_int_eq(qcow2_l2c_resize(&img, 3 * 4096), 0);
	ck_assert_uint_eq(qcow2_l2c_bytes(&img), 3 * 4096);
}

/* Same extents whatever the cache size, in a scattered access order. */
START_TEST(results_independent_of_size)
{
	static const u64 sizes[] = { 1, 3 * 4096, 0 };
	struct qcow2_extent ref[64], e;
	unsigned int s, k;
	u64 seed;

	for (s = 0; s < ARRAY_SIZE(sizes); s++) {
		open_img(sizes[s]);
		seed = 12345;
		for (k = 0; k < ARRAY_SIZE(ref); k++) {
			u64 off;

			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			off = (seed >> 11) % (NR_TABLES * TABLE_SPAN);
			ck_assert_int_eq(qcow2_map(&img, off, 64 * 1024, &e), 0);
			if (!s)
				ref[k] = e;
			else
				ck_assert(!memcmp(&ref[k], &e, sizeof(e)));
		}
		if (s + 1 < ARRAY_SIZE(sizes))
			qcow2_image_close(&img);
	}
}

/* A slot being loaded is found busy, never evicted, and published after. */
START_TEST(loading_slot)
{
	struct qcow2_cache c;
	bool busy;
	s32 a, b;
	u8 *buf;

	ck_assert_int_eq(qcow2_cache_init(&c, 512, 2), 0);
	buf = qcow2_cache_reserve(&c, &a);
	ck_assert_ptr_nonnull(buf);
	qcow2_cache_insert_loading(&c, a, 512);
	ck_assert_ptr_null(qcow2_cache_lookup_ex(&c, 512, &busy));
	ck_assert(busy);
	ck_assert(!qcow2_cache_drop(&c, 512));
	ck_assert_ptr_null(qcow2_cache_lookup_dirty(&c, 512));
	/* The other slot is the only one to take; then nothing is left. */
	ck_assert_ptr_nonnull(qcow2_cache_reserve(&c, &b));
	qcow2_cache_publish(&c, b, 1024);
	ck_assert_ptr_nonnull(qcow2_cache_lookup_dirty(&c, 1024));
	ck_assert_ptr_null(qcow2_cache_reserve(&c, &b));
	memset(buf, 0xab, 512);
	qcow2_cache_loaded(&c, a, true);
	ck_assert_ptr_eq(qcow2_cache_lookup_ex(&c, 512, &busy), buf);
	ck_assert(!busy);
	ck_assert_uint_eq(c.nr_loading, 0);
	/* A failed load forgets its key and frees its slot. */
	ck_assert(qcow2_cache_drop(&c, 512));
	buf = qcow2_cache_reserve(&c, &a);
	ck_assert_ptr_nonnull(buf);
	qcow2_cache_insert_loading(&c, a, 2048);
	qcow2_cache_loaded(&c, a, false);
	ck_assert_ptr_null(qcow2_cache_lookup_ex(&c, 2048, &busy));
	ck_assert(!busy);
	ck_assert_ptr_nonnull(qcow2_cache_reserve(&c, &a));
	qcow2_cache_destroy(&c);
}
END_TEST

struct wb_log {
	u64 keys[64];
	u32 n;
	u64 fail_key;
};

static int wb_record(void *arg, u64 key, const u8 *data, u32 bytes)
{
	struct wb_log *l = arg;

	(void)data;
	(void)bytes;
	if (key == l->fail_key)
		return -EIO;
	l->keys[l->n++] = key;
	return 0;
}

/* Dirty slots are written in ascending key order; failed ones stay dirty. */
START_TEST(writeback_sorted)
{
	static const u64 order[] = { 9, 3, 7, 1, 8, 2, 6, 4, 5, 0 };
	struct wb_log log = { .fail_key = 7 * 512 };
	struct qcow2_cache c;
	u32 i;
	s32 slot;

	ck_assert_int_eq(qcow2_cache_init(&c, 512, 16), 0);
	for (i = 0; i < ARRAY_SIZE(order); i++) {
		ck_assert_ptr_nonnull(qcow2_cache_reserve(&c, &slot));
		qcow2_cache_publish(&c, slot, order[i] * 512);
		ck_assert_ptr_nonnull(qcow2_cache_lookup_dirty(&c, order[i] * 512));
		/* Marking twice counts once. */
		ck_assert_ptr_nonnull(qcow2_cache_lookup_dirty(&c, order[i] * 512));
	}
	ck_assert_uint_eq(c.nr_dirty, 10);
	ck_assert_int_eq(qcow2_cache_writeback(&c, wb_record, &log), -EIO);
	ck_assert_uint_eq(log.n, 9);
	for (i = 1; i < log.n; i++)
		ck_assert_uint_lt(log.keys[i - 1], log.keys[i]);
	ck_assert_uint_eq(c.nr_dirty, 1);
	log.fail_key = ~0ULL;
	log.n = 0;
	ck_assert_int_eq(qcow2_cache_writeback(&c, wb_record, &log), 0);
	ck_assert_uint_eq(log.n, 1);
	ck_assert_uint_eq(log.keys[0], 7 * 512);
	ck_assert_uint_eq(c.nr_dirty, 0);
	qcow2_cache_destroy(&c);
}
END_TEST

/*
 * Shrinking gives back clean slots only, least recently used first, keeps
 * as many clean as asked, and bare slots come back on later misses.
 */
START_TEST(shrink_clean_only)
{
	struct wb_log log = { .fail_key = ~0ULL };
	struct qcow2_cache c;
	u32 i;
	s32 slot;

	ck_assert_int_eq(qcow2_cache_init(&c, 512, 8), 0);
	for (i = 0; i < 8; i++) {
		ck_assert_ptr_nonnull(qcow2_cache_reserve(&c, &slot));
		qcow2_cache_publish(&c, slot, i * 512);
	}
	/* Keys 0 and 1 dirty; key 7 most recently used. */
	ck_assert_ptr_nonnull(qcow2_cache_lookup_dirty(&c, 0));
	ck_assert_ptr_nonnull(qcow2_cache_lookup_dirty(&c, 512));
	ck_assert_ptr_nonnull(qcow2_cache_lookup(&c, 7 * 512));
	/* 6 clean; keep 2 besides the 2 dirty ones. */
	ck_assert_uint_eq(qcow2_cache_shrinkable(&c, 2), 4);
	ck_assert_uint_eq(qcow2_cache_shrink(&c, 100, 2), 4);
	ck_assert_uint_eq(qcow2_cache_capacity(&c), 4);
	ck_assert_uint_eq(c.stats.released, 4);
	ck_assert_uint_eq(qcow2_cache_shrinkable(&c, 2), 0);
	ck_assert_uint_eq(qcow2_cache_shrink(&c, 100, 2), 0);
	/* Dirty slots and the most recent clean ones stayed. */
	ck_assert_ptr_nonnull(qcow2_cache_lookup(&c, 0));
	ck_assert_ptr_nonnull(qcow2_cache_lookup(&c, 512));
	ck_assert_ptr_nonnull(qcow2_cache_lookup(&c, 7 * 512));
	ck_assert_ptr_null(qcow2_cache_lookup(&c, 2 * 512));
	ck_assert_uint_eq(c.nr_dirty, 2);
	ck_assert_int_eq(qcow2_cache_writeback(&c, wb_record, &log), 0);
	ck_assert_uint_eq(log.n, 2);
	/* Misses grow bare slots back before evicting anything. */
	for (i = 0; i < 4; i++) {
		ck_assert_ptr_nonnull(qcow2_cache_reserve(&c, &slot));
		qcow2_cache_publish(&c, slot, (20 + i) * 512);
	}
	ck_assert_uint_eq(qcow2_cache_capacity(&c), 8);
	ck_assert_ptr_nonnull(qcow2_cache_lookup(&c, 7 * 512));
	ck_assert_uint_eq(c.stats.evictions, 0);
	qcow2_cache_destroy(&c);
}
END_TEST

static Suite *l2cache_suite(void)
{
	Suite *s = suite_create("l2cache");
	TCase *tc = tcase_create("l2cache");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, init_geometry);
	tcase_add_test(tc, lru_eviction_min);
	tcase_add_test(tc, no_eviction_when_big);
	tcase_add_test(tc, failed_read_not_cached);
	tcase_add_test(tc, resize);
	tcase_add_test(tc, results_independent_of_size);
	tcase_add_test(tc, loading_slot);
	tcase_add_test(tc, writeback_sorted);
	tcase_add_test(tc, shrink_clean_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(l2cache_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

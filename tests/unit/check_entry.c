// SPDX-License-Identifier: GPL-2.0
/*
 * Check suite: L1 and L2 entry decoding, every cluster type, both zero
 * encodings, compressed descriptors and extended L2 bitmaps.
 */
#include <check.h>

#include "testimg.h"

#define ALL_ALLOC	0x00000000ffffffffULL
#define ALL_ZERO	0xffffffff00000000ULL

static struct qcow2_header hdr(u32 cluster_bits, bool extl2)
{
	struct qcow2_header h;

	memset(&h, 0, sizeof(h));
	h.version = 3;
	h.cluster_bits = cluster_bits;
	h.cluster_size = 1U << cluster_bits;
	h.extended_l2 = extl2;
	h.l2_entry_bytes = extl2 ? 16 : 8;
	h.l2_bits = cluster_bits - (extl2 ? 4 : 3);
	h.subcluster_bits = cluster_bits - (extl2 ? 5 : 0);
	if (extl2)
		h.incompatible_features = QCOW2_INCOMPAT_EXTL2;
	return h;
}

START_TEST(l1_entries)
{
	struct qcow2_header h = hdr(16, false);
	u64 off = 1;

	ck_assert_int_eq(qcow2_l1_entry_decode(&h, 0, &off), 0);
	ck_assert_uint_eq(off, 0);
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, 0x50000, &off), 0);
	ck_assert_uint_eq(off, 0x50000);
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, QCOW2_OFLAG_COPIED |
					       0x50000, &off), 0);
	ck_assert_uint_eq(off, 0x50000);
	/* Bits 9-55 only; a cluster-aligned offset. */
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, 0x50200, &off), -EUCLEAN);
	ck_assert_uint_eq(off, 0);
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, 0x50001, &off), -EUCLEAN);
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, BIT_ULL(56) | 0x50000,
					       &off), -EUCLEAN);
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, QCOW2_OFLAG_COMPRESSED,
					       &off), -EUCLEAN);
	h = hdr(9, false);
	ck_assert_int_eq(qcow2_l1_entry_decode(&h, 0x50200, &off), 0);
	ck_assert_uint_eq(off, 0x50200);
}

START_TEST(standard_entries)
{
	struct qcow2_header h = hdr(16, false);
	struct qcow2_l2_desc d;

	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, 0, 0, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_UNALLOC_PLAIN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x70000, 0, 0, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_NORMAL);
	ck_assert_uint_eq(d.host_off, 0x70000);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COPIED |
					       0xff0000ULL << 16, 0, 0, &d),
			 0);
	ck_assert_int_eq(d.type, QCOW2_SC_NORMAL);
	ck_assert_uint_eq(d.host_off, 0xff0000ULL << 16);
	/* COPIED without an offset is still unallocated. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COPIED, 0, 0,
					       &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_UNALLOC_PLAIN);
}

START_TEST(standard_corrupt)
{
	struct qcow2_header h = hdr(16, false);
	struct qcow2_l2_desc d;
	unsigned int bit;

	/* Misaligned host offsets, for data and preallocated zeroes. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x70200, 0, 0, &d),
			 -EUCLEAN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x70200 | 1, 0, 0, &d),
			 -EUCLEAN);
	for (bit = 1; bit <= 8; bit++)
		ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x70000 |
						       BIT_ULL(bit), 0, 0, &d),
				 -EUCLEAN);
	for (bit = 56; bit <= 61; bit++)
		ck_assert_int_eq(qcow2_l2_entry_decode(&h, BIT_ULL(bit), 0, 0,
						       &d), -EUCLEAN);
	/* Bitmap or subcluster index without extended L2 entries. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x70000, 1, 0, &d),
			 -EINVAL);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x70000, 0, 1, &d),
			 -EINVAL);
}

START_TEST(zero_both_encodings)
{
	struct qcow2_header h = hdr(16, false);
	struct qcow2_l2_desc d;

	/* Without a host cluster. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_ZERO, 0, 0, &d),
			 0);
	ck_assert_int_eq(d.type, QCOW2_SC_ZERO_PLAIN);
	/* With a preallocated host cluster. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COPIED |
					       0x30000 | QCOW2_OFLAG_ZERO,
					       0, 0, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_ZERO_ALLOC);
	ck_assert_uint_eq(d.host_off, 0x30000);
	/* Honoured in version 2 images too, as QEMU does. */
	h.version = 2;
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x30000 | QCOW2_OFLAG_ZERO,
					       0, 0, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_ZERO_ALLOC);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x30200 | QCOW2_OFLAG_ZERO,
					       0, 0, &d), -EUCLEAN);
}

/* Build a compressed descriptor for @cb-bit clusters. */
static u64 comp_entry(u32 cb, u64 off, u64 extra_sectors)
{
	u32 x = 62 - (cb - 8);

	return QCOW2_OFLAG_COMPRESSED | off | (extra_sectors << x);
}

START_TEST(compressed_math)
{
	static const struct {
		u32 cb;
		u64 off;
		u64 nb;
		u32 bytes;
	} cases[] = {
		{ 9, 0x12345, 0, 512 - 0x145 },
		{ 9, 0x12345, 1, 1024 - 0x145 },
		{ 12, 0x10000, 3, 2048 },
		{ 12, 0x10001, 7, 4096 - 1 },
		{ 16, 0xabcdef123ULL, 0, 512 - 0x123 },
		{ 16, 0xabcdef000ULL, 255, 131072 },
		{ 16, (1ULL << 54) - 1, 17, 18 * 512 - 511 },
		{ 21, (1ULL << 49) - 512, 8191, 8192 * 512 },
		{ 21, 0x200000 + 77, 100, 101 * 512 - 77 },
	};
	struct qcow2_l2_desc d;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct qcow2_header h = hdr(cases[i].cb, false);
		u64 e = comp_entry(cases[i].cb, cases[i].off, cases[i].nb);

		ck_assert_int_eq(qcow2_l2_entry_decode(&h, e, 0, 0, &d), 0);
		ck_assert_int_eq(d.type, QCOW2_SC_COMPRESSED);
		ck_assert_uint_eq(d.comp_off, cases[i].off);
		ck_assert_uint_eq(d.comp_bytes, cases[i].bytes);
		/* Bit 63 is not part of the descriptor. */
		ck_assert_int_eq(qcow2_l2_entry_decode(&h,
						       e | QCOW2_OFLAG_COPIED,
						       0, 0, &d), 0);
		ck_assert_uint_eq(d.comp_bytes, cases[i].bytes);
	}
}

START_TEST(compressed_high_offset_bits)
{
	struct qcow2_header h = hdr(9, false);
	struct qcow2_l2_desc d;

	/* cluster_bits 9: x = 61, bits 56..60 belong to the offset field. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COMPRESSED |
					       BIT_ULL(56), 0, 0, &d),
			 -EUCLEAN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COMPRESSED |
					       BIT_ULL(60), 0, 0, &d),
			 -EUCLEAN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COMPRESSED |
					       BIT_ULL(61) | BIT_ULL(55), 0, 0,
					       &d), 0);
	ck_assert_uint_eq(d.comp_bytes, 1024);
	ck_assert_uint_eq(d.comp_off, BIT_ULL(55));
	h = hdr(13, false);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COMPRESSED |
					       BIT_ULL(56), 0, 0, &d),
			 -EUCLEAN);
	h = hdr(14, false);
	/* x = 56: bit 56 is the sector count. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COMPRESSED |
					       BIT_ULL(56), 0, 0, &d), 0);
	ck_assert_uint_eq(d.comp_bytes, 1024);
}

START_TEST(compressed_extl2)
{
	struct qcow2_header h = hdr(16, true);
	struct qcow2_l2_desc d;
	u64 e = comp_entry(16, 0x123400, 2);

	ck_assert_int_eq(qcow2_l2_entry_decode(&h, e, 0, 5, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_COMPRESSED);
	ck_assert_uint_eq(d.comp_bytes, 1536);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, e, 1, 0, &d), -EUCLEAN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, e, BIT_ULL(63), 0, &d),
			 -EUCLEAN);
}

START_TEST(compressed_data_file)
{
	struct qcow2_header h = hdr(16, false);
	struct qcow2_l2_desc d;

	h.incompatible_features |= QCOW2_INCOMPAT_DATA_FILE;
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, comp_entry(16, 0x1000, 0),
					       0, 0, &d), -EUCLEAN);
	/* Offset 0 is real in a data file when COPIED says allocated. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, QCOW2_OFLAG_COPIED, 0, 0,
					       &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_NORMAL);
	ck_assert_uint_eq(d.host_off, 0);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, 0, 0, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_UNALLOC_PLAIN);
}

START_TEST(extl2_bitmaps)
{
	struct qcow2_header h = hdr(16, true);
	struct qcow2_l2_desc d;
	u64 host = QCOW2_OFLAG_COPIED | 0x40000;
	/* sc 0 allocated, sc 1 zero, sc 2 neither, sc 31 allocated. */
	u64 bm = BIT_ULL(0) | BIT_ULL(31) | BIT_ULL(32 + 1);

	ck_assert_int_eq(qcow2_l2_entry_decode(&h, host, bm, 0, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_NORMAL);
	ck_assert_uint_eq(d.host_off, 0x40000);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, host, bm, 1, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_ZERO_ALLOC);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, host, bm, 2, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_UNALLOC_ALLOC);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, host, bm, 31, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_NORMAL);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, host, bm, 32, &d),
			 -EINVAL);

	/* No host cluster: zero or unallocated, never allocated. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, ALL_ZERO, 7, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_ZERO_PLAIN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, BIT_ULL(40), 7, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_UNALLOC_PLAIN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, BIT_ULL(40), 8, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_ZERO_PLAIN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, 0, 8, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_UNALLOC_PLAIN);

	/* The zero flag (bit 0) means nothing with extended L2 entries. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, host | QCOW2_OFLAG_ZERO,
					       ALL_ALLOC, 3, &d), 0);
	ck_assert_int_eq(d.type, QCOW2_SC_NORMAL);
}

START_TEST(extl2_corrupt)
{
	struct qcow2_header h = hdr(16, true);
	struct qcow2_l2_desc d;

	/* Allocated and zero at once, even for another subcluster. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x40000,
					       BIT_ULL(4) | BIT_ULL(36), 0,
					       &d), -EUCLEAN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, BIT_ULL(4) |
					       BIT_ULL(36), 4, &d), -EUCLEAN);
	/* Allocated without a host cluster. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0, BIT_ULL(3), 0, &d),
			 -EUCLEAN);
	/* Misaligned host cluster. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x40200, ALL_ALLOC, 0, &d),
			 -EUCLEAN);
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x40200, ALL_ZERO, 0, &d),
			 -EUCLEAN);
	/* Reserved bits. */
	ck_assert_int_eq(qcow2_l2_entry_decode(&h, 0x40000 | BIT_ULL(57),
					       ALL_ALLOC, 0, &d), -EUCLEAN);
}

static Suite *entry_suite(void)
{
	Suite *s = suite_create("entry");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, l1_entries);
	tcase_add_test(tc, standard_entries);
	tcase_add_test(tc, standard_corrupt);
	tcase_add_test(tc, zero_both_encodings);
	tcase_add_test(tc, compressed_math);
	tcase_add_test(tc, compressed_high_offset_bits);
	tcase_add_test(tc, compressed_extl2);
	tcase_add_test(tc, compressed_data_file);
	tcase_add_test(tc, extl2_bitmaps);
	tcase_add_test(tc, extl2_corrupt);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(entry_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

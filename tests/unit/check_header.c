// SPDX-License-Identifier: GPL-2.0
/*
 * Check suite: qcow2_header_decode() and qcow2_header_check_supported() on
 * valid headers and on every refusal.
 */
#include <check.h>

#include "testimg.h"

#define MiB (1024ULL * 1024)

/* Whole refusal messages, as users see them. */
static const char want_l1[] =
	"L1 table at offset 0x1000000000 is outside the image file (196608 bytes)";
static const char want_backing[] =
	"image has a backing file (base image.qcow2) that was not given";
static const char want_data_file[] =
	"image has an external data file (disk.data) that was not given";

static struct timg t;
static struct qcow2_header h;
static struct qcow2_err err;

static int decode(void)
{
	memset(&err, 0x55, sizeof(err));
	return timg_decode(&t, &h, &err);
}

#define ck_msg(s) do {						\
	const char *__want = (s);					\
									\
	ck_assert_msg(strstr(err.msg, __want),				\
		      "message '%s' lacks '%s'", err.msg, __want);	\
} while (0)

static void v3_64k(void)
{
	timg_init(&t, 3, 16, 64 * MiB, false);
}

static void teardown(void)
{
	timg_free(&t);
}

START_TEST(valid_v2)
{
	timg_init(&t, 2, 16, 64 * MiB, false);
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.version, 2);
	ck_assert_uint_eq(h.cluster_size, 65536);
	ck_assert_uint_eq(h.refcount_order, 4);
	ck_assert_uint_eq(h.header_length, 72);
	ck_assert_uint_eq(h.l2_bits, 13);
	ck_assert_uint_eq(h.l2_entry_bytes, 8);
	ck_assert_uint_eq(h.l1_needed, 1);
	ck_assert_uint_eq(h.size, 64 * MiB);
	ck_assert(!h.extended_l2);
	ck_assert_str_eq(err.msg, "");
	ck_assert_int_eq(qcow2_header_check_supported(&h, QCOW2_OPEN_WRITABLE,
						      &err), 0);
}

START_TEST(valid_v3)
{
	v3_64k();
	put_be64(t.data + H_COMPAT, QCOW2_COMPAT_LAZY_REFCOUNTS);
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.version, 3);
	ck_assert_uint_eq(h.header_length, 112);
	ck_assert_uint_eq(h.compatible_features, QCOW2_COMPAT_LAZY_REFCOUNTS);
	ck_assert_uint_eq(h.l1_size, 1);
	ck_assert_uint_eq(h.l1_table_offset, 2 * 65536);
	ck_assert_uint_eq(h.refcount_table_offset, 65536);
	ck_assert_uint_eq(h.compression_type, 0);
}

START_TEST(valid_v3_short_header)
{
	v3_64k();
	put_be32(t.data + H_HEADER_LEN, 104);
	t.data[H_COMPRESSION] = 1;	/* not part of a 104-byte header */
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.compression_type, 0);
}

START_TEST(valid_extl2_zstd)
{
	timg_init(&t, 3, 16, 64 * MiB, true);
	put_be64(t.data + H_INCOMPAT,
		 QCOW2_INCOMPAT_EXTL2 | QCOW2_INCOMPAT_COMPRESSION);
	t.data[H_COMPRESSION] = QCOW2_COMPRESSION_ZSTD;
	ck_assert_int_eq(decode(), 0);
	ck_assert(h.extended_l2);
	ck_assert_uint_eq(h.l2_entry_bytes, 16);
	ck_assert_uint_eq(h.l2_bits, 12);
	ck_assert_uint_eq(h.subcluster_bits, 11);
	ck_assert_uint_eq(h.compression_type, QCOW2_COMPRESSION_ZSTD);
}

START_TEST(every_cluster_size)
{
	u32 cb;

	for (cb = QCOW2_MIN_CLUSTER_BITS; cb <= QCOW2_MAX_CLUSTER_BITS; cb++) {
		timg_init(&t, 3, cb, 16 * MiB, false);
		ck_assert_int_eq(decode(), 0);
		ck_assert_uint_eq(h.cluster_size, 1U << cb);
		ck_assert_uint_eq(h.l1_needed,
				  (16 * MiB + (1ULL << (2 * cb - 3)) - 1) >>
				  (2 * cb - 3));
		timg_free(&t);
	}
}

START_TEST(bad_magic)
{
	v3_64k();
	t.data[0] = 'X';
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("not a qcow2 image");
}

START_TEST(bad_version)
{
	v3_64k();
	put_be32(t.data + H_VERSION, 1);
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_msg("unsupported qcow2 version 1");
	put_be32(t.data + H_VERSION, 4);
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
}

START_TEST(bad_cluster_bits)
{
	v3_64k();
	put_be32(t.data + H_CLUSTER_BITS, 8);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("cluster_bits 8");
	put_be32(t.data + H_CLUSTER_BITS, 22);
	ck_assert_int_eq(decode(), -EINVAL);
	put_be32(t.data + H_CLUSTER_BITS, 0xffffffff);
	ck_assert_int_eq(decode(), -EINVAL);
}

START_TEST(bad_header_length)
{
	v3_64k();
	put_be32(t.data + H_HEADER_LEN, 96);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("header_length 96");
	put_be32(t.data + H_HEADER_LEN, 108);
	ck_assert_int_eq(decode(), -EINVAL);
	put_be32(t.data + H_HEADER_LEN, 65536 + 8);
	ck_assert_int_eq(decode(), -EINVAL);
}

START_TEST(bad_refcount_order)
{
	v3_64k();
	put_be32(t.data + H_REFCOUNT_ORDER, 6);
	ck_assert_int_eq(decode(), 0);
	put_be32(t.data + H_REFCOUNT_ORDER, 7);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("refcount_order 7");
}

START_TEST(unknown_incompat_bits)
{
	v3_64k();
	put_be64(t.data + H_INCOMPAT, BIT_ULL(5) | BIT_ULL(9));
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, "unsupported incompatible feature bits: 5, 9");
	put_be64(t.data + H_INCOMPAT, BIT_ULL(63) | QCOW2_INCOMPAT_DIRTY);
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, "unsupported incompatible feature bits: 63");
}

START_TEST(unknown_incompat_named)
{
	u8 ft[3 * QCOW2_FEATURE_ENTRY_BYTES] = { 0 };

	v3_64k();
	/* A compatible feature with the same bit must not be used. */
	ft[0] = 1;
	ft[1] = 9;
	memcpy(ft + 2, "wrong", 5);
	ft[48] = 0;
	ft[49] = 9;
	memcpy(ft + 50, "time travel", 11);
	/* Full-length name: not NUL-terminated, with a control byte. */
	ft[96] = 0;
	ft[97] = 12;
	memset(ft + 98, 'n', QCOW2_FEATURE_NAME_BYTES);
	ft[98] = '\n';
	timg_add_ext(&t, QCOW2_EXT_FEATURE_TABLE, ft, sizeof(ft));
	put_be64(t.data + H_INCOMPAT, BIT_ULL(9) | BIT_ULL(12) | BIT_ULL(10));
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_assert_msg(!strncmp(err.msg,
			       "unsupported incompatible feature bits: 9 (time travel), 10, 12 (?nnn",
			       68), "got '%s'", err.msg);
	ck_assert_uint_lt(strlen(err.msg), QCOW2_ERR_MSG_BYTES);
}

START_TEST(unknown_bits_message_fits)
{
	v3_64k();
	put_be64(t.data + H_INCOMPAT, ~QCOW2_INCOMPAT_KNOWN);
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_assert_uint_eq(strlen(err.msg), QCOW2_ERR_MSG_BYTES - 1);
	ck_msg("bits: 5, 6, 7");
}

START_TEST(compression_type_rules)
{
	v3_64k();
	/* Bit set, field zero. */
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_COMPRESSION);
	ck_assert_int_eq(decode(), -EINVAL);
	/* Bit set, field absent. */
	t.data[H_COMPRESSION] = 1;
	put_be32(t.data + H_HEADER_LEN, 104);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("absent");
	/* Field set without the bit. */
	put_be32(t.data + H_HEADER_LEN, 112);
	put_be64(t.data + H_INCOMPAT, 0);
	ck_assert_int_eq(decode(), -EINVAL);
	/* Unknown type. */
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_COMPRESSION);
	t.data[H_COMPRESSION] = 2;
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_msg("unsupported compression type 2");
	t.data[H_COMPRESSION] = 1;
	ck_assert_int_eq(decode(), 0);
}

START_TEST(crypt_method)
{
	u8 crypto[16] = { 0 };

	v3_64k();
	put_be32(t.data + H_CRYPT, 3);
	ck_assert_int_eq(decode(), -EINVAL);
	put_be32(t.data + H_CRYPT, QCOW2_CRYPT_LUKS);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("without crypto header extension");
	put_be64(crypto, 5 * 65536);
	timg_add_ext(&t, QCOW2_EXT_CRYPTO, crypto, 16);
	ck_assert_int_eq(decode(), 0);
	ck_assert(h.has_crypto_ext);
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, &err),
			 -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, "image is encrypted (LUKS); encrypted images are not supported");
	put_be32(t.data + H_CRYPT, QCOW2_CRYPT_AES);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("crypto header extension without LUKS");
}

START_TEST(aes_refused)
{
	v3_64k();
	put_be32(t.data + H_CRYPT, QCOW2_CRYPT_AES);
	ck_assert_int_eq(decode(), 0);
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, &err),
			 -EOPNOTSUPP);
	ck_msg("encrypted (AES)");
}

START_TEST(crypto_ext_length)
{
	u8 crypto[24] = { 0 };

	v3_64k();
	put_be32(t.data + H_CRYPT, QCOW2_CRYPT_LUKS);
	timg_add_ext(&t, QCOW2_EXT_CRYPTO, crypto, 24);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("crypto header extension has 24 bytes");
}

START_TEST(table_alignment)
{
	v3_64k();
	put_be64(t.data + H_L1_OFF, t.l1_off + 512);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("L1 table offset");
	put_be64(t.data + H_L1_OFF, t.l1_off);
	put_be64(t.data + H_REFT_OFF, 65536 + 8);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("refcount table");
	put_be64(t.data + H_REFT_OFF, 65536);
	put_be64(t.data + H_SNAPSHOTS_OFF, 4096);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("snapshot table");
}

START_TEST(tables_outside_file)
{
	v3_64k();
	put_be64(t.data + H_L1_OFF, 0x1000000000ULL);
	ck_assert_int_eq(decode(), -EUCLEAN);
	ck_assert_str_eq(err.msg, want_l1);
	put_be64(t.data + H_L1_OFF, t.size);
	ck_assert_int_eq(decode(), -EUCLEAN);
	put_be64(t.data + H_L1_OFF, t.l1_off);
	put_be64(t.data + H_REFT_OFF, 1ULL << 40);
	ck_assert_int_eq(decode(), -EUCLEAN);
	ck_msg("refcount table at offset 0x10000000000 is outside");
	put_be64(t.data + H_REFT_OFF, 65536);
	put_be32(t.data + H_NB_SNAPSHOTS, 1);
	put_be64(t.data + H_SNAPSHOTS_OFF, 1ULL << 40);
	ck_assert_int_eq(decode(), -EUCLEAN);
	ck_msg("snapshot table");
	/* Overflow-prone offsets. */
	put_be64(t.data + H_SNAPSHOTS_OFF, ~0ULL << 16);
	ck_assert_int_eq(decode(), -EUCLEAN);
}

START_TEST(l1_size_limits)
{
	v3_64k();
	/* 64 MiB with 64 KiB clusters needs one L1 entry; none is too few. */
	put_be32(t.data + H_L1_SIZE, 0);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("L1 table too small");
	put_be32(t.data + H_L1_SIZE, QCOW2_MAX_L1_BYTES / 8 + 1);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("L1 table too large");
	put_be32(t.data + H_L1_SIZE, QCOW2_MAX_L1_BYTES / 8);
	ck_assert_int_eq(decode(), 0);
	put_be32(t.data + H_L1_SIZE, 0xffffffff);
	ck_assert_int_eq(decode(), -EINVAL);
	/* A larger disk needs more entries. */
	put_be32(t.data + H_L1_SIZE, 1);
	put_be64(t.data + H_SIZE, 512 * MiB + 1);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("2 needed");
}

START_TEST(virtual_size_limit)
{
	v3_64k();
	put_be64(t.data + H_SIZE, QCOW2_MAX_VIRTUAL_SIZE + 1);
	ck_assert_int_eq(decode(), -EINVAL);
	put_be64(t.data + H_SIZE, ~0ULL);
	ck_assert_int_eq(decode(), -EINVAL);
	/* The largest size needs 2^61 / 2^29 L1 entries: too many. */
	put_be64(t.data + H_SIZE, QCOW2_MAX_VIRTUAL_SIZE);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("L1 table too small");
}

START_TEST(empty_disk)
{
	v3_64k();
	put_be64(t.data + H_SIZE, 0);
	put_be32(t.data + H_L1_SIZE, 0);
	put_be64(t.data + H_L1_OFF, 0);
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.l1_needed, 0);
	/* A non-empty L1 table on top of the header is not. */
	put_be32(t.data + H_L1_SIZE, 1);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("overlaps the header");
}

START_TEST(refcount_table_limit)
{
	v3_64k();
	put_be32(t.data + H_REFT_CLUSTERS, QCOW2_MAX_REFTABLE_BYTES / 65536);
	ck_assert_int_eq(decode(), 0);
	put_be32(t.data + H_REFT_CLUSTERS,
		 QCOW2_MAX_REFTABLE_BYTES / 65536 + 1);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("refcount table too large");
	put_be32(t.data + H_REFT_CLUSTERS, 0xffffffff);
	ck_assert_int_eq(decode(), -EINVAL);
}

START_TEST(snapshot_limit)
{
	v3_64k();
	put_be64(t.data + H_SNAPSHOTS_OFF, 65536);
	put_be32(t.data + H_NB_SNAPSHOTS, QCOW2_MAX_SNAPSHOTS);
	ck_assert_int_eq(decode(), 0);
	put_be32(t.data + H_NB_SNAPSHOTS, QCOW2_MAX_SNAPSHOTS + 1);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("too many snapshots");
}

START_TEST(backing_file)
{
	static const char name[] = "base image.qcow2";

	v3_64k();
	memcpy(t.data + 4096, name, sizeof(name) - 1);
	put_be64(t.data + H_BACKING_OFF, 4096);
	put_be32(t.data + H_BACKING_LEN, sizeof(name) - 1);
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.backing_file.off, 4096);
	ck_assert_uint_eq(h.backing_file.len, sizeof(name) - 1);
	ck_assert_str_eq(h.backing_file_hint, name);
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, &err),
			 -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, want_backing);
	ck_assert_int_eq(qcow2_header_check_supported(&h,
						      QCOW2_OPEN_ALLOW_BACKING,
						      &err), 0);
	/* Empty name: no backing file, as in QEMU. */
	put_be32(t.data + H_BACKING_LEN, 0);
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.backing_file.off, 0);
}

START_TEST(backing_file_bad)
{
	v3_64k();
	put_be64(t.data + H_BACKING_OFF, 4096);
	put_be32(t.data + H_BACKING_LEN, 1024);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("backing file name too long (1024 bytes, max 1023)");
	put_be32(t.data + H_BACKING_LEN, 1023);
	ck_assert_int_eq(decode(), 0);
	put_be64(t.data + H_BACKING_OFF, 65536 - 1000);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("not in the header cluster");
	put_be64(t.data + H_BACKING_OFF, ~0ULL - 10);
	ck_assert_int_eq(decode(), -EINVAL);
	put_be64(t.data + H_BACKING_OFF, 64);	/* inside the header */
	ck_assert_int_eq(decode(), -EINVAL);
}

START_TEST(ext_overruns)
{
	u8 junk[64] = { 0 };

	v3_64k();
	/* Data length past the cluster end. */
	put_be32(t.data + t.hdr_len, 0x12345678);
	put_be32(t.data + t.hdr_len + 4, 65536);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("overruns");
	put_be32(t.data + t.hdr_len + 4, 0xfffffff8);
	ck_assert_int_eq(decode(), -EINVAL);
	/* Extensions must stop before the backing file name. */
	put_be32(t.data + t.hdr_len + 4, 64);
	ck_assert_int_eq(decode(), 0);
	put_be64(t.data + H_BACKING_OFF, t.hdr_len + 32);
	put_be32(t.data + H_BACKING_LEN, 4);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("overruns");
	/* An extension header cut by the backing name. */
	memset(t.data + t.hdr_len, 0, 8);
	put_be64(t.data + H_BACKING_OFF, t.hdr_len + 4);
	put_be32(t.data + t.hdr_len, 0x12345678);
	ck_assert_int_eq(decode(), -EINVAL);
	(void)junk;
}

START_TEST(ext_unknown_skipped)
{
	u8 data[13] = "hello, world";
	u8 fmt[6] = "qcow2x";

	v3_64k();
	timg_add_ext(&t, 0x11223344, data, sizeof(data));
	timg_add_ext(&t, QCOW2_EXT_BACKING_FORMAT, fmt, 5);
	ck_assert_int_eq(decode(), 0);
	ck_assert_uint_eq(h.backing_format.len, 5);
	ck_assert_uint_eq(h.backing_format.off, t.hdr_len + 8 + 16 + 8);
	ck_assert(!memcmp(t.data + h.backing_format.off, "qcow2", 5));
}

START_TEST(ext_lengths)
{
	u8 buf[1100] = { 0 };

	v3_64k();
	timg_add_ext(&t, QCOW2_EXT_BACKING_FORMAT, buf, 16);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("backing format name too long");
	timg_free(&t);

	v3_64k();
	timg_add_ext(&t, QCOW2_EXT_DATA_FILE, buf, 1024);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("data file name too long");
	timg_free(&t);

	v3_64k();
	timg_add_ext(&t, QCOW2_EXT_BITMAPS, buf, 23);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("bitmaps extension too short");
	timg_free(&t);

	v3_64k();
	timg_add_ext(&t, QCOW2_EXT_BITMAPS, buf, 24);
	ck_assert_int_eq(decode(), 0);
	ck_assert(h.has_bitmaps_ext);
}

START_TEST(ext_error_after_unknown_bit)
{
	/* Unknown features are reported before a bad extension. */
	v3_64k();
	put_be64(t.data + H_INCOMPAT, BIT_ULL(20));
	put_be32(t.data + t.hdr_len, QCOW2_EXT_BITMAPS);
	put_be32(t.data + t.hdr_len + 4, 8);
	ck_assert_int_eq(decode(), -EOPNOTSUPP);
	ck_msg("bits: 20");
}

START_TEST(data_file)
{
	static const char name[] = "disk.data";

	v3_64k();
	timg_add_ext(&t, QCOW2_EXT_DATA_FILE, name, sizeof(name) - 1);
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_DATA_FILE);
	ck_assert_int_eq(decode(), 0);
	ck_assert_str_eq(h.data_file_hint, name);
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, &err),
			 -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, want_data_file);
	ck_assert_int_eq(qcow2_header_check_supported(&h,
						      QCOW2_OPEN_ALLOW_DATA_FILE,
						      &err), 0);
}

START_TEST(raw_data_bit)
{
	v3_64k();
	put_be64(t.data + H_AUTOCLEAR, QCOW2_AUTOCLEAR_DATA_FILE_RAW);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("raw external data bit");
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_DATA_FILE);
	ck_assert_int_eq(decode(), 0);
}

START_TEST(extl2_small_clusters)
{
	timg_init(&t, 3, 13, 16 * MiB, false);
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_EXTL2);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("extended L2");
}

START_TEST(short_file)
{
	v3_64k();
	ck_assert_int_eq(qcow2_header_decode(t.data, 71, 71, &h, &err),
			 -EINVAL);
	ck_msg("too small");
	ck_assert_int_eq(qcow2_header_decode(t.data, 100, 100, &h, &err),
			 -EINVAL);
	/* A header cut short by the caller's buffer. */
	ck_assert_int_eq(qcow2_header_decode(t.data, 4096, t.size, &h, &err),
			 -EINVAL);
	/* buf_len beyond the file is clamped to it. */
	ck_assert_int_eq(qcow2_header_decode(t.data, 65536, 100, &h, &err),
			 -EINVAL);
}

START_TEST(cut_short_by_eof)
{
	u8 crypto[16] = { 0 };

	v3_64k();
	/* header_length past the end of a tiny file. */
	ck_assert_int_eq(qcow2_header_decode(t.data, 108, 108, &h, &err),
			 -EINVAL);
	ck_msg("runs past end of file");
	/* A backing file name past the end of the file. */
	put_be64(t.data + H_BACKING_OFF, 200);
	put_be32(t.data + H_BACKING_LEN, 100);
	ck_assert_int_eq(qcow2_header_decode(t.data, 256, 256, &h, &err),
			 -EINVAL);
	ck_msg("backing file name runs past end of file");
	/* Extensions in a file that ends inside the header cluster. */
	put_be64(t.data + H_BACKING_OFF, 0);
	put_be64(t.data + H_L1_OFF, 0);
	put_be32(t.data + H_L1_SIZE, 0);
	put_be64(t.data + H_SIZE, 0);
	put_be64(t.data + H_REFT_OFF, 0);
	put_be32(t.data + t.hdr_len, 0x1234);
	put_be32(t.data + t.hdr_len + 4, 4);
	ck_assert_int_eq(qcow2_header_decode(t.data, 128, 128, &h, &err), 0);
	ck_assert_int_eq(qcow2_header_decode(t.data, 122, 122, &h, &err),
			 -EINVAL);
	ck_msg("overruns");
	ck_assert_int_eq(qcow2_header_decode(t.data, 116, 116, &h, &err),
			 -EINVAL);
	timg_free(&t);

	/* A misaligned crypto header. */
	v3_64k();
	put_be32(t.data + H_CRYPT, QCOW2_CRYPT_LUKS);
	put_be64(crypto, 5 * 65536 + 512);
	timg_add_ext(&t, QCOW2_EXT_CRYPTO, crypto, 16);
	ck_assert_int_eq(decode(), -EINVAL);
	ck_msg("not cluster aligned");
}

START_TEST(supported_flags)
{
	v3_64k();
	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_CORRUPT);
	ck_assert_int_eq(decode(), 0);
	/* Read-only is allowed, as qemu-io -r allows it. */
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, &err), 0);
	ck_assert_int_eq(qcow2_header_check_supported(&h, QCOW2_OPEN_WRITABLE,
						      &err), -EOPNOTSUPP);
	ck_assert_str_eq(err.msg, "image is marked corrupt and cannot be written; attach it read-only, or run qemu-img check -r all");

	put_be64(t.data + H_INCOMPAT, QCOW2_INCOMPAT_DIRTY);
	ck_assert_int_eq(decode(), 0);
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, &err), 0);
	ck_assert_int_eq(qcow2_header_check_supported(&h, QCOW2_OPEN_WRITABLE,
						      &err), -EOPNOTSUPP);
	ck_msg("dirty");
	ck_assert_int_eq(qcow2_header_check_supported(&h, BIT_ULL(40), &err),
			 -EINVAL);
	ck_assert_int_eq(qcow2_header_check_supported(&h, 0, NULL), 0);
	ck_assert_int_eq(qcow2_header_decode(t.data, 10, 10, &h, NULL),
			 -EINVAL);
}

static Suite *header_suite(void)
{
	Suite *s = suite_create("header");
	TCase *tc = tcase_create("decode");

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, valid_v2);
	tcase_add_test(tc, valid_v3);
	tcase_add_test(tc, valid_v3_short_header);
	tcase_add_test(tc, valid_extl2_zstd);
	tcase_add_test(tc, every_cluster_size);
	tcase_add_test(tc, bad_magic);
	tcase_add_test(tc, bad_version);
	tcase_add_test(tc, bad_cluster_bits);
	tcase_add_test(tc, bad_header_length);
	tcase_add_test(tc, bad_refcount_order);
	tcase_add_test(tc, unknown_incompat_bits);
	tcase_add_test(tc, unknown_incompat_named);
	tcase_add_test(tc, unknown_bits_message_fits);
	tcase_add_test(tc, compression_type_rules);
	tcase_add_test(tc, crypt_method);
	tcase_add_test(tc, aes_refused);
	tcase_add_test(tc, crypto_ext_length);
	tcase_add_test(tc, table_alignment);
	tcase_add_test(tc, tables_outside_file);
	tcase_add_test(tc, l1_size_limits);
	tcase_add_test(tc, virtual_size_limit);
	tcase_add_test(tc, empty_disk);
	tcase_add_test(tc, refcount_table_limit);
	tcase_add_test(tc, snapshot_limit);
	tcase_add_test(tc, backing_file);
	tcase_add_test(tc, backing_file_bad);
	tcase_add_test(tc, ext_overruns);
	tcase_add_test(tc, ext_unknown_skipped);
	tcase_add_test(tc, ext_lengths);
	tcase_add_test(tc, ext_error_after_unknown_bit);
	tcase_add_test(tc, data_file);
	tcase_add_test(tc, raw_data_bit);
	tcase_add_test(tc, extl2_small_clusters);
	tcase_add_test(tc, short_file);
	tcase_add_test(tc, cut_short_by_eof);
	tcase_add_test(tc, supported_flags);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(header_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

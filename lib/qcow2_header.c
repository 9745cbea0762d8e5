// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 header decoding: every field of the header and its extensions is
 * checked against the spec and a named limit before anything else of the
 * image is read, because the image may be hostile.
 */
#include "qcow2.h"

/* Byte offset of the compression_type field; present if header_length > it. */
#define QCOW2_COMPRESSION_TYPE_OFF	104U

/* Extension headers and data are padded to this alignment. */
#define QCOW2_EXT_ALIGN			8U

/* Where the header extensions are, what was found, the first error. */
struct hdr_exts {
	u64 start;		/* bytes from file start */
	u64 end;		/* exclusive */
	u64 ft_off;		/* feature name table, 0 if absent */
	u32 ft_len;		/* bytes */
	int ret;		/* first error while walking, 0 if none */
};

/* Copy a header-cluster string for messages: printable ASCII only. */
static void name_hint(char *dst, size_t dst_len, const u8 *src, u32 src_len)
{
	size_t i, n = min_t(size_t, src_len, dst_len - 1);

	for (i = 0; i < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[n] = '\0';
}

static int hdr_decode_fixed(const u8 *buf, size_t buf_len,
			    struct qcow2_header *h, struct qcow2_err *err)
{
	struct qcow2_disk_header dh;
	u32 magic;

	QCOW2_BUILD_BUG_ON(sizeof(struct qcow2_disk_header) != 112);
	QCOW2_BUILD_BUG_ON(sizeof(struct qcow2_disk_ext_hdr) != 8);

	if (buf_len < QCOW2_V2_HEADER_BYTES) {
		qcow2_err_set(err, "file too small for a qcow2 header (%zu bytes)",
			      buf_len);
		return -EINVAL;
	}
	memset(&dh, 0, sizeof(dh));
	memcpy(&dh, buf, QCOW2_V2_HEADER_BYTES);

	magic = be32_to_cpu(dh.magic);
	if (magic != QCOW2_MAGIC) {
		qcow2_err_set(err, "not a qcow2 image (magic %#x)", magic);
		return -EINVAL;
	}
	h->version = be32_to_cpu(dh.version);
	if (h->version != 2 && h->version != 3) {
		qcow2_err_set(err, "unsupported qcow2 version %u (2 and 3 are)",
			      h->version);
		return -EOPNOTSUPP;
	}
	h->cluster_bits = be32_to_cpu(dh.cluster_bits);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		qcow2_err_set(err, "cluster_bits %u out of range %u..%u",
			      h->cluster_bits, QCOW2_MIN_CLUSTER_BITS,
			      QCOW2_MAX_CLUSTER_BITS);
		return -EINVAL;
	}
	h->cluster_size = 1U << h->cluster_bits;

	if (h->version == 2) {
		h->refcount_order = 4;
		h->header_length = QCOW2_V2_HEADER_BYTES;
	} else {
		if (buf_len < QCOW2_V3_HEADER_MIN_BYTES) {
			qcow2_err_set(err, "file too small for a qcow2 v3 header (%zu bytes)",
				      buf_len);
			return -EINVAL;
		}
		memcpy(&dh, buf, QCOW2_V3_HEADER_MIN_BYTES);
		h->header_length = be32_to_cpu(dh.header_length);
		if (h->header_length < QCOW2_V3_HEADER_MIN_BYTES ||
		    !IS_ALIGNED(h->header_length, QCOW2_EXT_ALIGN) ||
		    h->header_length > h->cluster_size) {
			qcow2_err_set(err, "header_length %u invalid (multiple of 8, %u..%u)",
				      h->header_length,
				      QCOW2_V3_HEADER_MIN_BYTES, h->cluster_size);
			return -EINVAL;
		}
		if (h->header_length > buf_len) {
			qcow2_err_set(err, "header_length %u runs past end of file",
				      h->header_length);
			return -EINVAL;
		}
		memcpy(&dh, buf, min_t(u32, h->header_length, sizeof(dh)));
		h->incompatible_features = be64_to_cpu(dh.incompatible_features);
		h->compatible_features = be64_to_cpu(dh.compatible_features);
		h->autoclear_features = be64_to_cpu(dh.autoclear_features);
		h->refcount_order = be32_to_cpu(dh.refcount_order);
		if (h->refcount_order > QCOW2_MAX_REFCOUNT_ORDER) {
			qcow2_err_set(err, "refcount_order %u exceeds %u",
				      h->refcount_order,
				      QCOW2_MAX_REFCOUNT_ORDER);
			return -EINVAL;
		}
		if (h->header_length > QCOW2_COMPRESSION_TYPE_OFF)
			h->compression_type = dh.compression_type;
	}

	h->size = be64_to_cpu(dh.size);
	h->crypt_method = be32_to_cpu(dh.crypt_method);
	h->l1_size = be32_to_cpu(dh.l1_size);
	h->l1_table_offset = be64_to_cpu(dh.l1_table_offset);
	h->refcount_table_offset = be64_to_cpu(dh.refcount_table_offset);
	h->refcount_table_clusters = be32_to_cpu(dh.refcount_table_clusters);
	h->nb_snapshots = be32_to_cpu(dh.nb_snapshots);
	h->snapshots_offset = be64_to_cpu(dh.snapshots_offset);

	/* The backing file name is the only header field with a length. */
	h->backing_file.off = 0;
	if (be64_to_cpu(dh.backing_file_offset)) {
		u64 off = be64_to_cpu(dh.backing_file_offset);
		u32 len = be32_to_cpu(dh.backing_file_size);

		if (len > QCOW2_MAX_BACKING_NAME) {
			qcow2_err_set(err, "backing file name too long (%u bytes, max %u)",
				      len, QCOW2_MAX_BACKING_NAME);
			return -EINVAL;
		}
		if (off < h->header_length || off > h->cluster_size ||
		    len > h->cluster_size - off) {
			qcow2_err_set(err,
				      "backing file name at %#llx+%u is not in the header cluster",
				      off, len);
			return -EINVAL;
		}
		/* QEMU treats an empty name as no backing file. */
		if (len) {
			h->backing_file.off = off;
			h->backing_file.len = len;
		}
	}
	return 0;
}

/*
 * Walk the header extensions. Stops at the first problem and records it in
 * x->ret (-EINVAL), so that an unknown incompatible feature, which may explain the
 * problem, can still be reported first.
 */
static void hdr_walk_exts(const u8 *buf, size_t area, struct qcow2_header *h,
			  struct hdr_exts *x, struct qcow2_err *err)
{
	u64 off = x->start;

	while (off < x->end) {
		u32 type, len;
		u64 data;

		/* The file ends inside the header cluster: zeroes, the end. */
		if (off >= area)
			return;
		if (x->end - off < sizeof(struct qcow2_disk_ext_hdr) ||
		    off + sizeof(struct qcow2_disk_ext_hdr) > area) {
			qcow2_err_set(err, "header extension at %#llx overruns the extension area",
				      off);
			x->ret = -EINVAL;
			return;
		}
		type = qcow2_get_be32(buf + off);
		len = qcow2_get_be32(buf + off + 4);
		data = off + sizeof(struct qcow2_disk_ext_hdr);
		if (type == QCOW2_EXT_END)
			return;
		if (len > x->end - data || len > area - data) {
			qcow2_err_set(err,
				      "header extension %#x at %#llx overruns its area (%u bytes)",
				      type, off, len);
			x->ret = -EINVAL;
			return;
		}

		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			if (len > QCOW2_MAX_FORMAT_NAME) {
				qcow2_err_set(err,
					      "backing format name too long (%u bytes, max %u)",
					      len, QCOW2_MAX_FORMAT_NAME);
				x->ret = -EINVAL;
				return;
			}
			h->backing_format.off = data;
			h->backing_format.len = len;
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			x->ft_off = data;
			x->ft_len = len;
			break;
		case QCOW2_EXT_CRYPTO:
			if (len != QCOW2_CRYPTO_EXT_BYTES) {
				qcow2_err_set(err, "crypto header extension has %u bytes, not %u",
					      len, QCOW2_CRYPTO_EXT_BYTES);
				x->ret = -EINVAL;
				return;
			}
			if (!IS_ALIGNED(qcow2_get_be64(buf + data),
					(u64)h->cluster_size)) {
				qcow2_err_set(err, "crypto header offset %#llx not cluster aligned",
					      qcow2_get_be64(buf + data));
				x->ret = -EINVAL;
				return;
			}
			h->has_crypto_ext = true;
			break;
		case QCOW2_EXT_DATA_FILE:
			if (len > QCOW2_MAX_DATA_FILE_NAME) {
				qcow2_err_set(err, "data file name too long (%u bytes, max %u)",
					      len, QCOW2_MAX_DATA_FILE_NAME);
				x->ret = -EINVAL;
				return;
			}
			h->data_file.off = data;
			h->data_file.len = len;
			break;
		case QCOW2_EXT_BITMAPS:
			if (len < QCOW2_BITMAPS_EXT_MIN_BYTES) {
				qcow2_err_set(err,
					      "bitmaps extension too short (%u bytes, min %u)",
					      len, QCOW2_BITMAPS_EXT_MIN_BYTES);
				x->ret = -EINVAL;
				return;
			}
			h->has_bitmaps_ext = true;
			h->nb_bitmaps = qcow2_get_be32(buf + data);
			h->bitmap_dir_size = qcow2_get_be64(buf + data + 8);
			h->bitmap_dir_offset = qcow2_get_be64(buf + data + 16);
			/* Checked as QEMU does, when the bitmaps count. */
			if (!(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
				break;
			if (qcow2_get_be32(buf + data + 4) || !h->nb_bitmaps ||
			    h->nb_bitmaps > QCOW2_MAX_BITMAPS ||
			    !h->bitmap_dir_size ||
			    h->bitmap_dir_size > QCOW2_MAX_BITMAP_DIR_BYTES ||
			    (h->bitmap_dir_offset & (h->cluster_size - 1)) ||
			    h->bitmap_dir_offset >= QCOW2_MAX_HOST_OFFSET) {
				qcow2_err_set(err,
					      "invalid bitmaps extension (%u bitmaps, directory %#llx+%llu)",
					      h->nb_bitmaps, h->bitmap_dir_offset,
					      h->bitmap_dir_size);
				x->ret = -EINVAL;
				return;
			}
			break;
		default:
			/* Unknown extensions may be ignored (spec). */
			break;
		}
		/* len <= 2 MiB here, so neither addition overflows. */
		off = data + ((len + QCOW2_EXT_ALIGN - 1) &
			      ~(QCOW2_EXT_ALIGN - 1));
	}
}

/* Append " (name)" for incompatible feature @bit if the table names it. */
static size_t feature_name(const u8 *buf, const struct hdr_exts *x,
			   unsigned int bit, char *out, size_t out_len)
{
	u32 i;

	for (i = 0; i + QCOW2_FEATURE_ENTRY_BYTES <= x->ft_len;
	     i += QCOW2_FEATURE_ENTRY_BYTES) {
		const u8 *e = buf + x->ft_off + i;
		char name[QCOW2_FEATURE_NAME_BYTES + 1];
		size_t n;

		if (e[0] != QCOW2_FEATURE_TYPE_INCOMPAT || e[1] != bit)
			continue;
		n = strnlen((const char *)e + 2, QCOW2_FEATURE_NAME_BYTES);
		if (!n)
			return 0;
		name_hint(name, sizeof(name), e + 2, n);
		return snprintf(out, out_len, " (%s)", name);
	}
	return 0;
}

static int hdr_report_unknown(const u8 *buf, const struct qcow2_header *h,
			      const struct hdr_exts *x, struct qcow2_err *err)
{
	u64 unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
	size_t pos, len;
	unsigned int bit;
	bool first = true;

	if (!err)
		return -EOPNOTSUPP;
	len = sizeof(err->msg);
	pos = snprintf(err->msg, len, "unsupported incompatible feature bits:");
	for (bit = 0; bit < 64 && pos < len; bit++) {
		if (!(unknown & BIT_ULL(bit)))
			continue;
		pos += snprintf(err->msg + pos, len - pos, "%s %u",
				first ? "" : ",", bit);
		first = false;
		if (pos < len)
			pos += feature_name(buf, x, bit, err->msg + pos,
					    len - pos);
	}
	return -EOPNOTSUPP;
}

static int hdr_check_features(struct qcow2_header *h, struct qcow2_err *err)
{
	bool bit = h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION;

	if (bit && h->header_length <= QCOW2_COMPRESSION_TYPE_OFF) {
		qcow2_err_set(err, "compression type bit set but compression_type field absent");
		return -EINVAL;
	}
	if (bit && h->compression_type == QCOW2_COMPRESSION_DEFLATE) {
		qcow2_err_set(err, "compression type bit set with deflate compression");
		return -EINVAL;
	}
	if (!bit && h->compression_type != QCOW2_COMPRESSION_DEFLATE) {
		qcow2_err_set(err, "compression_type %u without the compression type bit",
			      h->compression_type);
		return -EINVAL;
	}
	if (h->compression_type > QCOW2_COMPRESSION_ZSTD) {
		qcow2_err_set(err, "unsupported compression type %u",
			      h->compression_type);
		return -EOPNOTSUPP;
	}

	h->extended_l2 = h->incompatible_features & QCOW2_INCOMPAT_EXTL2;
	if (h->extended_l2 && h->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS) {
		qcow2_err_set(err, "extended L2 entries need clusters of at least %u bytes, not %u",
			      1U << QCOW2_EXTL2_MIN_CLUSTER_BITS,
			      h->cluster_size);
		return -EINVAL;
	}

	if (h->crypt_method > QCOW2_CRYPT_LUKS) {
		qcow2_err_set(err, "invalid crypt_method %u", h->crypt_method);
		return -EINVAL;
	}
	if (h->has_crypto_ext && h->crypt_method != QCOW2_CRYPT_LUKS) {
		qcow2_err_set(err, "crypto header extension without LUKS encryption");
		return -EINVAL;
	}
	if (h->crypt_method == QCOW2_CRYPT_LUKS && !h->has_crypto_ext) {
		qcow2_err_set(err, "LUKS encryption without crypto header extension");
		return -EINVAL;
	}

	if ((h->autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) &&
	    !(h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)) {
		qcow2_err_set(err, "raw external data bit set without an external data file");
		return -EINVAL;
	}
	return 0;
}

/* A table must start inside the file; reads past its end see zeroes. */
static int hdr_check_in_file(const char *what, u64 off, u64 file_size,
			     struct qcow2_err *err)
{
	if (off < file_size)
		return 0;
	qcow2_err_set(err, "%s at offset %#llx is outside the image file (%llu bytes)",
		      what, off,
		      file_size);
	return -EUCLEAN;
}

static int hdr_check_aligned(const char *what, u64 off,
			     const struct qcow2_header *h,
			     struct qcow2_err *err)
{
	if (IS_ALIGNED(off, (u64)h->cluster_size))
		return 0;
	qcow2_err_set(err, "%s offset %#llx is not cluster aligned", what,
		      off);
	return -EINVAL;
}

/**
 * qcow2_l1_check() - validate an L1 table (active or a snapshot's)
 * @h: header with the geometry fields (cluster_bits, l2_bits) decoded
 * @l1_off: host offset of the table
 * @l1_size: entries
 * @size: virtual size the table must cover, bytes (<= QCOW2_MAX_VIRTUAL_SIZE)
 * @file_size: bytes in the image file
 * @err: reason on failure, may be NULL
 *
 * Context: any; pure function of its arguments.
 * Return: 0, -EINVAL (too large, too small, misaligned, over the header) or
 * -EUCLEAN (outside the file).
 */
int qcow2_l1_check(const struct qcow2_header *h, u64 l1_off, u32 l1_size,
		   u64 size, u64 file_size, struct qcow2_err *err)
{
	u32 l1_shift = h->cluster_bits + h->l2_bits;
	u64 needed;
	int ret;

	if (l1_size > QCOW2_MAX_L1_BYTES / sizeof(u64)) {
		qcow2_err_set(err, "L1 table too large (%u entries, max %zu)",
			      l1_size, QCOW2_MAX_L1_BYTES / sizeof(u64));
		return -EINVAL;
	}
	/* size <= 2^61 and l1_shift <= 39: no overflow. */
	needed = (size + (1ULL << l1_shift) - 1) >> l1_shift;
	if (needed > l1_size) {
		qcow2_err_set(err, "L1 table too small (%u entries, %llu needed for %llu bytes)",
			      l1_size, needed, size);
		return -EINVAL;
	}
	ret = hdr_check_aligned("L1 table", l1_off, h, err);
	if (ret || !l1_size)
		return ret;
	if (!l1_off) {
		qcow2_err_set(err, "L1 table overlaps the header");
		return -EINVAL;
	}
	return hdr_check_in_file("L1 table", l1_off, file_size, err);
}

static int hdr_check_tables(struct qcow2_header *h, u64 file_size,
			    struct qcow2_err *err)
{
	u32 l1_shift;
	int ret;

	h->l2_entry_bytes = h->extended_l2 ? 16 : 8;
	h->l2_bits = h->cluster_bits - (h->extended_l2 ? 4 : 3);
	h->subcluster_bits = h->cluster_bits -
			     (h->extended_l2 ? 5 : 0);
	l1_shift = h->cluster_bits + h->l2_bits;

	if (h->size > QCOW2_MAX_VIRTUAL_SIZE) {
		qcow2_err_set(err, "virtual size %llu exceeds %llu",
			      h->size,
			      QCOW2_MAX_VIRTUAL_SIZE);
		return -EINVAL;
	}
	ret = qcow2_l1_check(h, h->l1_table_offset, h->l1_size, h->size,
			     file_size, err);
	if (ret)
		return ret;
	h->l1_needed = (h->size + (1ULL << l1_shift) - 1) >> l1_shift;

	ret = hdr_check_aligned("refcount table", h->refcount_table_offset, h,
				err);
	if (ret)
		return ret;
	if ((u64)h->refcount_table_clusters << h->cluster_bits >
	    QCOW2_MAX_REFTABLE_BYTES) {
		qcow2_err_set(err, "refcount table too large (%u clusters, max %u bytes)",
			      h->refcount_table_clusters,
			      QCOW2_MAX_REFTABLE_BYTES);
		return -EINVAL;
	}
	if (h->refcount_table_clusters) {
		ret = hdr_check_in_file("refcount table",
					h->refcount_table_offset, file_size,
					err);
		if (ret)
			return ret;
	}

	if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		qcow2_err_set(err, "too many snapshots (%u, max %u)",
			      h->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
		return -EINVAL;
	}
	ret = hdr_check_aligned("snapshot table", h->snapshots_offset, h, err);
	if (ret)
		return ret;
	if (h->nb_snapshots)
		return hdr_check_in_file("snapshot table", h->snapshots_offset,
					 file_size, err);
	return 0;
}

/**
 * qcow2_header_decode() - decode and validate an image header
 * @buf: the first bytes of the image file
 * @buf_len: bytes in @buf: min(file size, QCOW2_MAX_CLUSTER_SIZE) is enough
 * @file_size: size of the image file in bytes
 * @h: decoded header on success
 * @err: reason on failure, may be NULL
 *
 * Context: any; pure function of its arguments.
 * Return: see the declaration in qcow2.h.
 */
int qcow2_header_decode(const void *buf, size_t buf_len, u64 file_size,
			struct qcow2_header *h, struct qcow2_err *err)
{
	const u8 *p = buf;
	struct hdr_exts x;
	size_t area;
	int ret;

	memset(h, 0, sizeof(*h));
	memset(&x, 0, sizeof(x));
	if (err)
		err->msg[0] = '\0';
	/* Bytes past the end of file are not part of the image. */
	if (buf_len > file_size)
		buf_len = file_size;

	ret = hdr_decode_fixed(p, buf_len, h, err);
	if (ret)
		return ret;

	if (buf_len < h->cluster_size && buf_len < file_size) {
		qcow2_err_set(err,
			      "header buffer of %zu bytes is shorter than a cluster",
			      buf_len);
		return -EINVAL;
	}
	area = min_t(size_t, buf_len, h->cluster_size);

	x.start = h->header_length;
	x.end = h->backing_file.off ? h->backing_file.off : h->cluster_size;
	hdr_walk_exts(p, area, h, &x, err);

	if (h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN)
		return hdr_report_unknown(p, h, &x, err);
	if (x.ret)
		return x.ret;

	if (h->backing_file.off) {
		if (h->backing_file.off + h->backing_file.len > area) {
			qcow2_err_set(err, "backing file name runs past end of file");
			return -EINVAL;
		}
		name_hint(h->backing_file_hint, sizeof(h->backing_file_hint),
			  p + h->backing_file.off, h->backing_file.len);
	}
	if (h->data_file.off)
		name_hint(h->data_file_hint, sizeof(h->data_file_hint),
			  p + h->data_file.off, h->data_file.len);

	ret = hdr_check_features(h, err);
	if (ret)
		return ret;
	return hdr_check_tables(h, file_size, err);
}

/**
 * qcow2_header_check_supported() - refuse what the caller cannot serve
 * @h: a header accepted by qcow2_header_decode()
 * @open_flags: QCOW2_OPEN_* the caller supports
 * @err: reason on failure, naming the feature; may be NULL
 *
 * Context: any; pure function of its arguments.
 * Return: 0, -EINVAL (unknown @open_flags bits) or -EOPNOTSUPP.
 */
int qcow2_header_check_supported(const struct qcow2_header *h, u64 open_flags,
				 struct qcow2_err *err)
{
	const u64 known = QCOW2_OPEN_WRITABLE | QCOW2_OPEN_ALLOW_BACKING |
			  QCOW2_OPEN_ALLOW_DATA_FILE;

	if (open_flags & ~known) {
		qcow2_err_set(err, "unknown open flags %#llx",
			      (open_flags & ~known));
		return -EINVAL;
	}
	if (h->crypt_method == QCOW2_CRYPT_LUKS) {
		qcow2_err_set(err, "image is encrypted (LUKS); encrypted images are not supported");
		return -EOPNOTSUPP;
	}
	if (h->crypt_method != QCOW2_CRYPT_NONE) {
		qcow2_err_set(err, "image is encrypted (AES); encrypted images are not supported");
		return -EOPNOTSUPP;
	}
	/* As QEMU: a corrupt image may be read, never written. */
	if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT) &&
	    (open_flags & QCOW2_OPEN_WRITABLE)) {
		qcow2_err_set(err,
			      "image is marked corrupt and cannot be written; attach it read-only, or run qemu-img check -r all");
		return -EOPNOTSUPP;
	}
	if ((h->incompatible_features & QCOW2_INCOMPAT_DIRTY) &&
	    (open_flags & QCOW2_OPEN_WRITABLE)) {
		qcow2_err_set(err,
			      "image is dirty; run qemu-img check -r all before writing to it");
		return -EOPNOTSUPP;
	}
	if (h->backing_file.off && !(open_flags & QCOW2_OPEN_ALLOW_BACKING)) {
		qcow2_err_set(err,
			      "image has a backing file (%s) that was not given",
			      h->backing_file_hint);
		return -EOPNOTSUPP;
	}
	if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) &&
	    !(open_flags & QCOW2_OPEN_ALLOW_DATA_FILE)) {
		qcow2_err_set(err,
			      "image has an external data file (%s) that was not given",
			      h->data_file.off ? h->data_file_hint : "unnamed");
		return -EOPNOTSUPP;
	}
	return 0;
}

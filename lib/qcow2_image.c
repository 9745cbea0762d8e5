// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 image: open (header, active L1 table, L2 cache sizing), close, and
 * qcow2_map(), which turns a guest range into the longest extent whose bytes
 * share one type and, for data, are contiguous in the image file.
 */
#include "qcow2.h"

#ifndef __KERNEL__
/* Userspace only: tests set it to silence expected corruption reports. */
int qcow2_log_quiet;
#endif

/* Metadata reads are rounded up to this, so hosts can use direct I/O. */
#define QCOW2_META_IO_ALIGN	4096U

static u64 round_up_io(u64 n)
{
	return (n + QCOW2_META_IO_ALIGN - 1) & ~(u64)(QCOW2_META_IO_ALIGN - 1);
}

static u32 slice_bits(const struct qcow2_header *h)
{
	return min_t(u32, h->cluster_bits, QCOW2_L2C_MAX_SLICE_BITS);
}

/* log2 of the L2 entries per slice. */
static u32 slice_entry_bits(const struct qcow2_header *h)
{
	return slice_bits(h) - (h->extended_l2 ? 4 : 3);
}

static int image_read_header(struct qcow2_image *img, struct qcow2_err *err)
{
	u64 len = min_t(u64, img->file_size, QCOW2_MAX_CLUSTER_SIZE);
	u64 alloc_len = round_up_io(len ? len : 1);
	void *buf;
	int ret;

	buf = qcow2_alloc(alloc_len);
	if (!buf) {
		qcow2_err_set(err, "out of memory for the header");
		return -ENOMEM;
	}
	if (len) {
		ret = img->io.pread(img->io.priv, buf, alloc_len, 0);
		if (ret) {
			qcow2_err_set(err, "cannot read the header: error %d",
				      ret);
			goto free_buf;
		}
	}
	ret = qcow2_header_decode(buf, len, img->file_size, &img->h, err);
free_buf:
	qcow2_free(buf);
	return ret;
}

static int image_load_l1(struct qcow2_image *img, struct qcow2_err *err)
{
	u64 len = round_up_io((u64)img->h.l1_size * sizeof(u64));
	int ret;

	if (!img->h.l1_size)
		return 0;
	img->l1 = qcow2_alloc(len);
	if (!img->l1) {
		qcow2_err_set(err, "out of memory for the L1 table (%u entries)",
			      img->h.l1_size);
		return -ENOMEM;
	}
	ret = img->io.pread(img->io.priv, img->l1, len,
			    img->h.l1_table_offset);
	if (ret) {
		qcow2_err_set(err, "cannot read the L1 table at %#llx: error %d",
			      img->h.l1_table_offset, ret);
		qcow2_free(img->l1);
		img->l1 = NULL;
		return ret < 0 ? ret : -EIO;
	}
	return 0;
}

/*
 * Serve a snapshot's L1 table instead of the active layer's. As QEMU does
 * (qemu-nbd -l, qemu-img convert -l), the image keeps its current virtual
 * size: guest clusters beyond the snapshot's L1 table read as zero.
 */
static int image_use_snapshot(struct qcow2_image *img, const char *want,
			      u64 flags, struct qcow2_err *err)
{
	struct qcow2_header *h = &img->h;
	struct qcow2_snapshot s;
	int ret;

	if (flags & QCOW2_OPEN_WRITABLE) {
		qcow2_err_set(err, "a snapshot can only be attached read-only");
		return -EINVAL;
	}
	ret = qcow2_snapshot_find(img, want, &s, err);
	if (ret)
		return ret;
	if (s.disk_size > QCOW2_MAX_VIRTUAL_SIZE) {
		qcow2_err_set(err, "snapshot '%.48s': virtual size %llu exceeds %llu",
			      s.name, s.disk_size, QCOW2_MAX_VIRTUAL_SIZE);
		return -EUCLEAN;
	}
	/* The table must cover the disk as it was when the snapshot was taken. */
	ret = qcow2_l1_check(h, s.l1_table_offset, s.l1_size, s.disk_size,
			     img->file_size, err);
	if (ret)
		return ret;
	h->l1_table_offset = s.l1_table_offset;
	h->l1_size = s.l1_size;
	return 0;
}

/* Default cache: every L2 slice of the virtual disk, capped. */
static u64 image_default_l2c_bytes(const struct qcow2_image *img)
{
	return min_t(u64, qcow2_l2c_cover_bytes(img),
		     QCOW2_L2C_DEFAULT_MAX_BYTES);
}

/**
 * qcow2_image_open() - validate an image and prepare it for mapping
 * @img: zeroed by the caller
 * @io: metadata reader
 * @file_size: bytes in the image file
 * @opts: flags and cache size; NULL means read-only with defaults
 * @err: reason on failure, may be NULL
 *
 * Context: may sleep (allocates, reads through @io).
 * Return: 0 or -errno (see qcow2_header_decode(), plus -ENOMEM, -EIO).
 */
int qcow2_image_open(struct qcow2_image *img, const struct qcow2_io *io,
		     u64 file_size, const struct qcow2_open_opts *opts,
		     struct qcow2_err *err)
{
	u64 flags = opts ? opts->flags : 0;
	u64 cache_bytes = opts ? opts->l2_cache_bytes : 0;
	u32 slice_bytes;
	int ret;

	if (err)
		err->msg[0] = '\0';
	if (!io || !io->pread) {
		qcow2_err_set(err, "no metadata reader");
		return -EINVAL;
	}
	img->io = *io;
	img->file_size = file_size;
	img->l1 = NULL;

	ret = image_read_header(img, err);
	if (ret)
		return ret;
	ret = qcow2_header_check_supported(&img->h, flags, err);
	if (ret)
		return ret;
	if (opts && opts->snapshot) {
		ret = image_use_snapshot(img, opts->snapshot, flags, err);
		if (ret)
			return ret;
	}
	ret = image_load_l1(img, err);
	if (ret)
		return ret;

	slice_bytes = 1U << slice_bits(&img->h);
	img->l2c.slot_bytes = slice_bytes;
	if (!cache_bytes)
		cache_bytes = image_default_l2c_bytes(img);
	ret = qcow2_cache_init(&img->l2c, slice_bytes,
			       qcow2_l2c_slices_for(img, cache_bytes));
	if (ret) {
		qcow2_err_set(err, "out of memory for the L2 cache");
		goto free_l1;
	}
	qcow2_mutex_init(&img->l2c_lock);
	qcow2_waitq_init(&img->l2c_wq);
	img->has_backing = img->h.backing_file.len != 0;
	if (flags & QCOW2_OPEN_WRITABLE) {
		ret = qcow2_write_open(img, opts, err);
		if (ret) {
			qcow2_waitq_destroy(&img->l2c_wq);
			qcow2_mutex_destroy(&img->l2c_lock);
			qcow2_cache_destroy(&img->l2c);
			goto free_l1;
		}
	}
	return 0;

free_l1:
	qcow2_free(img->l1);
	img->l1 = NULL;
	return ret;
}

/**
 * qcow2_image_close() - release everything qcow2_image_open() set up
 * @img: an image opened successfully
 *
 * Context: may sleep; no qcow2_map() may run concurrently.
 */
void qcow2_image_close(struct qcow2_image *img)
{
	qcow2_write_close(img);
	qcow2_waitq_destroy(&img->l2c_wq);
	qcow2_mutex_destroy(&img->l2c_lock);
	qcow2_cache_destroy(&img->l2c);
	qcow2_free(img->l1);
	img->l1 = NULL;
}

/* One format for every corruption report: table, index, entry, what. */
static void map_log_corrupt(const char *table, u64 table_off, u64 idx,
			    u64 entry, const char *what)
{
	qcow2_log_ratelimited("%s table at %#llx, index %llu: entry %#llx: %s",
			      table, table_off, idx, entry, what);
}

/*
 * Grow @ext by @n bytes of @type (data at @host). Return false, leaving
 * @ext alone, if the bytes cannot join it.
 */
static bool ext_add(struct qcow2_extent *ext, enum qcow2_ext_type type,
		    u64 host, u64 n)
{
	if (!ext->len) {
		ext->type = type;
		ext->host_off = type == QCOW2_EXT_DATA ? host : 0;
		ext->len = n;
		return true;
	}
	if (ext->type != type)
		return false;
	if (type == QCOW2_EXT_DATA && host != ext->host_off + ext->len)
		return false;
	ext->len += n;
	return true;
}

/* Where qcow2_map() is: the guest position and the end of this call. */
struct map_pos {
	u64 pos;		/* next guest byte to classify */
	u64 end;		/* exclusive; <= virtual size */
};

enum map_step {
	MAP_STOP,		/* @ext is complete */
	MAP_MORE,		/* keep going at mp->pos */
};

/*
 * Classify the (sub)cluster at mp->pos from its decoded entry and add it to
 * @ext. Returns MAP_MORE, MAP_STOP or -EUCLEAN.
 */
static int map_unit(struct qcow2_image *img, const struct qcow2_l2_desc *d,
		    u64 unit_start, u32 unit_bytes, u64 cluster_start,
		    struct map_pos *mp, struct qcow2_extent *ext)
{
	const struct qcow2_header *h = &img->h;
	u64 n = min_t(u64, unit_start + unit_bytes, mp->end) - mp->pos;
	u64 host;
	bool ok;

	switch (d->type) {
	case QCOW2_SC_NORMAL:
		if (!(h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) &&
		    d->host_off >= img->file_size)
			return ext->len ? MAP_STOP : -EUCLEAN;
		host = d->host_off + (mp->pos - cluster_start);
		ok = ext_add(ext, QCOW2_EXT_DATA, host, n);
		break;
	case QCOW2_SC_COMPRESSED:
		if (ext->len)
			return MAP_STOP;
		if (d->comp_off >= img->file_size)
			return -EUCLEAN;
		ext->type = QCOW2_EXT_COMPRESSED;
		ext->comp_off = d->comp_off;
		ext->comp_bytes = d->comp_bytes;
		ext->cluster_off = mp->pos - cluster_start;
		ext->len = min_t(u64, cluster_start + h->cluster_size,
				 mp->end) - mp->pos;
		mp->pos += ext->len;
		return MAP_STOP;
	case QCOW2_SC_ZERO_PLAIN:
	case QCOW2_SC_ZERO_ALLOC:
		ok = ext_add(ext, QCOW2_EXT_ZERO, 0, n);
		break;
	default:
		ok = ext_add(ext, QCOW2_EXT_UNALLOC, 0, n);
		break;
	}
	if (!ok)
		return MAP_STOP;
	mp->pos += n;
	return MAP_MORE;
}

/* Map from mp->pos through the L2 slice holding it, up to @limit. */
static int map_slice(struct qcow2_image *img, u64 l2_off, u64 limit,
		     struct map_pos *mp, struct qcow2_extent *ext)
{
	const struct qcow2_header *h = &img->h;
	u32 epsb = slice_entry_bits(h);
	u64 cl = mp->pos >> h->cluster_bits;
	u32 l2_idx = cl & ((1U << h->l2_bits) - 1);
	u64 slice_off = l2_off + ((u64)(l2_idx >> epsb) << slice_bits(h));
	u32 slice_bytes = 1U << slice_bits(h);
	u32 i = l2_idx & ((1U << epsb) - 1);
	u64 end = min_t(u64, mp->end, limit);
	const u8 *data;
	int ret;

	/* l2_off < 2^56 and the slice index < 2^18: no overflow. */
	if (slice_off + slice_bytes > img->file_size) {
		if (ext->len)
			return MAP_STOP;
		map_log_corrupt("L1", h->l1_table_offset,
				mp->pos >> (h->cluster_bits + h->l2_bits),
				l2_off, "L2 table beyond end of file");
		return -EUCLEAN;
	}
	ret = __qcow2_l2c_get(img, slice_off, &data);
	if (ret)
		return ext->len ? MAP_STOP : ret;

	for (; i < (1U << epsb) && mp->pos < end; i++, cl++, l2_idx++) {
		const u8 *e = data + i * h->l2_entry_bytes;
		u64 entry = qcow2_get_be64(e);
		u64 bitmap = h->extended_l2 ? qcow2_get_be64(e + 8) : 0;
		u64 cluster_start = cl << h->cluster_bits;
		u64 cluster_end = cluster_start + h->cluster_size;
		struct map_pos sub = { .pos = mp->pos, .end = end };

		while (sub.pos < end && sub.pos < cluster_end) {
			u32 sc = (sub.pos - cluster_start) >>
				 h->subcluster_bits;
			u64 unit_start = cluster_start +
					 ((u64)sc << h->subcluster_bits);
			struct qcow2_l2_desc d;

			ret = qcow2_l2_entry_decode(h, entry, bitmap, sc, &d);
			if (ret) {
				if (ext->len)
					return MAP_STOP;
				map_log_corrupt("L2", l2_off, l2_idx, entry,
						h->extended_l2 ?
						"invalid entry or subcluster bitmap" :
						"reserved bits set or misaligned");
				return ret;
			}
			ret = map_unit(img, &d, unit_start,
				       1U << h->subcluster_bits, cluster_start,
				       &sub, ext);
			if (ret == -EUCLEAN) {
				map_log_corrupt("L2", l2_off, l2_idx, entry,
						"cluster beyond end of file");
				return ret;
			}
			mp->pos = sub.pos;
			if (ret == MAP_STOP)
				return MAP_STOP;
		}
	}
	return MAP_MORE;
}

static int __map(struct qcow2_image *img, struct map_pos *mp,
		 struct qcow2_extent *ext)
{
	const struct qcow2_header *h = &img->h;
	u32 l1_shift = h->cluster_bits + h->l2_bits;
	int ret;

	qcow2_mutex_assert_held(&img->l2c_lock);

	while (mp->pos < mp->end) {
		u64 l1_idx = mp->pos >> l1_shift;
		/* pos < size <= 2^61 and l1_shift <= 39: no overflow. */
		u64 limit = min_t(u64, (l1_idx + 1) << l1_shift, mp->end);
		u64 entry, l2_off = 0;

		if (l1_idx < h->l1_size) {
			entry = be64_to_cpu(img->l1[l1_idx]);
			ret = qcow2_l1_entry_decode(h, entry, &l2_off);
			if (ret && ext->len)
				return 0;
			if (ret) {
				map_log_corrupt("L1", h->l1_table_offset,
						l1_idx, entry,
						"reserved bits set or misaligned");
				return ret;
			}
		}
		if (!l2_off) {
			if (!ext_add(ext, QCOW2_EXT_UNALLOC, 0,
				     limit - mp->pos))
				return 0;
			mp->pos = limit;
			continue;
		}
		ret = map_slice(img, l2_off, limit, mp, ext);
		if (ret != MAP_MORE)
			return ret < 0 ? ret : 0;
	}
	return 0;
}

/**
 * qcow2_map() - find where guest bytes live
 * @img: open image
 * @guest_off: first guest byte
 * @len: bytes wanted, > 0
 * @ext: the longest extent from @guest_off (at most @len bytes) whose bytes
 *       share one type and, for DATA, are contiguous on the host
 *
 * An extent never crosses the virtual size: bytes at or beyond it are one
 * ZERO extent. A corrupt entry after the first byte ends the extent early
 * instead of failing; the next call, starting there, reports it.
 *
 * Context: may sleep; takes l2c_lock, which the caller must not hold. Does
 * not allocate.
 * Return: 0 (then ext->len > 0), -EINVAL (@len is 0), -EUCLEAN (corrupt
 * table entry, logged rate-limited with table and offset), -EIO.
 */
int qcow2_map(struct qcow2_image *img, u64 guest_off, u64 len,
	      struct qcow2_extent *ext)
{
	struct map_pos mp = { .pos = guest_off };
	int ret;

	memset(ext, 0, sizeof(*ext));
	if (!len)
		return -EINVAL;
	if (guest_off >= img->h.size) {
		ext->type = QCOW2_EXT_ZERO;
		ext->len = len;
		return 0;
	}
	mp.end = guest_off + min_t(u64, len, img->h.size - guest_off);

	qcow2_mutex_lock(&img->l2c_lock);
	ret = __map(img, &mp, ext);
	qcow2_mutex_unlock(&img->l2c_lock);

	if (ret)
		memset(ext, 0, sizeof(*ext));
	return ret;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * Persistent dirty bitmaps ("Bitmaps extension" of the spec), kept valid
 * while the image is written, as QEMU keeps them:
 *
 *  - qcow2_bitmaps_open() (from qcow2_write_open(), nothing written) reads
 *    the bitmap directory when autoclear bit 0 says the bitmaps are
 *    consistent, refuses writing an image whose bitmaps cannot be kept
 *    (one in use, an unknown type or flag, extra data QEMU would refuse),
 *    and loads the bits of every enabled ("auto") bitmap;
 *  - the first change (qcow2_write_enter()) sets the in_use flag of those
 *    bitmaps in the directory, durably, before anything else changes;
 *    autoclear bit 0 stays set;
 *  - every write, write-zeroes and discard sets the bits of its range
 *    (qcow2_bitmaps_mark(), lock-free: in-place writes hold no lock);
 *  - qcow2_bitmaps_store() (from qcow2_write_close(), after the last
 *    flush) writes the changed bitmap clusters, allocating those that were
 *    all zeroes, makes their refcounts durable, writes the tables, and
 *    clears in_use.
 *
 * Disabled bitmaps are never touched. A crash between the first change and
 * the store leaves in_use set: QEMU then reports the bitmap inconsistent,
 * exactly as after a crash of QEMU itself, and never trusts stale bits.
 *
 * Bit order: bit k of the bitmap covers guest bytes [k << g, (k + 1) << g)
 * and is bit (k % 8) of byte k / 8 of the bitmap data; in memory the data
 * is an array of 64-bit words, little-endian on disk.
 */
#include "qcow2.h"

/* Bitmap directory entry (spec: "Bitmap directory"). */
#define BME_TABLE_OFFSET	0
#define BME_TABLE_SIZE		8
#define BME_FLAGS		12
#define BME_TYPE		16
#define BME_GRAN_BITS		17
#define BME_NAME_SIZE		18
#define BME_EXTRA_SIZE		20
#define BME_HDR_BYTES		24
#define BME_MAX_NAME		1023U

#define BME_FLAG_IN_USE		BIT(0)
#define BME_FLAG_AUTO		BIT(1)
#define BME_FLAG_EXTRA_COMPAT	BIT(2)
#define BME_FLAGS_KNOWN		(BME_FLAG_IN_USE | BME_FLAG_AUTO | \
				 BME_FLAG_EXTRA_COMPAT)
#define BME_TYPE_DIRTY_TRACKING	1

/* Bitmap table entry. */
#define BMT_ALL_ONES		1ULL
#define BMT_OFFSET_MASK		0x00fffffffffffe00ULL
#define BMT_RESERVED_MASK	0xff000000000001feULL

/* Clusters of bits bitmap @g (granularity bits) needs for the disk. */
static u64 bm_clusters(const struct qcow2_header *h, u32 g)
{
	u64 nbits = DIV_ROUND_UP_ULL(h->size, 1ULL << g);

	return DIV_ROUND_UP_ULL(DIV_ROUND_UP_ULL(nbits, 8), h->cluster_size);
}

static u64 bm_nbits(const struct qcow2_header *h, const struct qcow2_bitmap *b)
{
	return DIV_ROUND_UP_ULL(h->size, 1ULL << b->gran_bits);
}

static void bm_free_one(struct qcow2_bitmap *b)
{
	qcow2_free(b->table);
	qcow2_free(b->bits);
	qcow2_free(b->dirty);
	b->table = NULL;
	b->bits = NULL;
	b->dirty = NULL;
}

/* Read the table and the bits of enabled bitmap @b. */
static int bm_load(struct qcow2_image *img, struct qcow2_bitmap *b,
		   int nlen, const char *name, struct qcow2_err *err)
{
	const struct qcow2_header *h = &img->h;
	u64 cs = h->cluster_size, need = bm_clusters(h, b->gran_bits);
	u64 words = (need * cs) / 8, nbits, i, j;
	u8 *raw;
	int ret;

	b->table = qcow2_alloc((size_t)b->table_size * 8);
	b->bits = qcow2_zalloc(need * cs);
	b->dirty = qcow2_zalloc(DIV_ROUND_UP_ULL(need, 64) * 8);
	if (!b->table || !b->bits || !b->dirty) {
		qcow2_err_set(err, "out of memory for bitmap '%.*s'", nlen, name);
		return -ENOMEM;
	}
	ret = qcow2_io_ret(img->io.pread(img->io.priv, b->table,
					 (size_t)b->table_size * 8, b->table_off));
	if (ret) {
		qcow2_err_set(err, "cannot read the table of bitmap '%.*s': error %d",
			      nlen, name, ret);
		return ret;
	}
	for (j = 0; j < b->table_size; j++) {
		u64 e = qcow2_get_be64((u8 *)&b->table[j]), off = e & BMT_OFFSET_MASK;

		b->table[j] = e;
		if ((e & BMT_RESERVED_MASK) || (off && (e & BMT_ALL_ONES)) ||
		    (off & (cs - 1)) || off >= img->file_size) {
			qcow2_err_set(err,
				      "bitmap '%.*s': invalid table entry %llu (%#llx)",
				      nlen, name, j, e);
			return -EINVAL;
		}
		raw = (u8 *)b->bits + j * cs;
		if (off) {
			ret = qcow2_io_ret(img->io.pread(img->io.priv, raw, cs,
							 off));
			if (ret) {
				qcow2_err_set(err, "cannot read bitmap '%.*s': error %d",
					      nlen, name, ret);
				return ret;
			}
		} else if (e & BMT_ALL_ONES) {
			memset(raw, 0xff, cs);
		}
	}
	for (i = 0; i < words; i++) {
		__le64 v;

		memcpy(&v, &b->bits[i], sizeof(v));
		qcow2_atomic64_set(&b->bits[i], le64_to_cpu(v));
	}
	/* Bits past the end of the disk stay clear. */
	nbits = bm_nbits(h, b);
	if (nbits & 63)
		qcow2_atomic64_set(&b->bits[nbits / 64],
				   qcow2_atomic64_read(&b->bits[nbits / 64]) &
				   (BIT_ULL(nbits & 63) - 1));
	for (i = DIV_ROUND_UP_ULL(nbits, 64); i < words; i++)
		qcow2_atomic64_set(&b->bits[i], 0);
	return 0;
}

/*
 * Check directory entry @e of @left bytes; on success *@len is its padded
 * length. Refusals name the bitmap and what QEMU users can do about it.
 */
static int bm_check_entry(struct qcow2_image *img, const u8 *e, u64 left,
			  u64 *len, struct qcow2_err *err)
{
	const struct qcow2_header *h = &img->h;
	u32 flags, extra, nsize, g;
	const char *name;
	int nlen;

	if (left < BME_HDR_BYTES)
		goto overrun;
	flags = qcow2_get_be32(e + BME_FLAGS);
	extra = qcow2_get_be32(e + BME_EXTRA_SIZE);
	nsize = qcow2_get_be16(e + BME_NAME_SIZE);
	g = e[BME_GRAN_BITS];
	*len = ALIGN_DOWN((u64)BME_HDR_BYTES + extra + nsize + 7, 8);
	if (*len > left)
		goto overrun;
	name = (const char *)e + BME_HDR_BYTES + extra;
	nlen = min_t(u32, nsize, 64);
	if (!nsize || nsize > BME_MAX_NAME) {
		qcow2_err_set(err, "bitmap directory: invalid name length %u",
			      nsize);
		return -EINVAL;
	}
	if (flags & BME_FLAG_IN_USE) {
		qcow2_err_set(err,
			      "bitmap '%.*s' inconsistent: qemu-img bitmap --remove it, or attach -r",
			      min_t(int, nlen, 24), name);
		return -EBUSY;
	}
	if ((flags & ~BME_FLAGS_KNOWN) || e[BME_TYPE] != BME_TYPE_DIRTY_TRACKING ||
	    (extra && !(flags & BME_FLAG_EXTRA_COMPAT))) {
		qcow2_err_set(err,
			      "bitmap '%.*s' has a type, flags or extra data this driver cannot keep; it can only be attached read-only",
			      nlen, name);
		return -EOPNOTSUPP;
	}
	if (g < QCOW2_BITMAP_MIN_GRAN_BITS || g > QCOW2_BITMAP_MAX_GRAN_BITS ||
	    (qcow2_get_be64(e + BME_TABLE_OFFSET) & (h->cluster_size - 1)) ||
	    !qcow2_get_be64(e + BME_TABLE_OFFSET) ||
	    qcow2_get_be32(e + BME_TABLE_SIZE) < bm_clusters(h, g) ||
	    qcow2_get_be64(e + BME_TABLE_OFFSET) >= img->file_size ||
	    (u64)qcow2_get_be32(e + BME_TABLE_SIZE) * 8 >
	    img->file_size - qcow2_get_be64(e + BME_TABLE_OFFSET)) {
		qcow2_err_set(err,
			      "bitmap '%.*s': invalid granularity or table (%u bits, %#llx, %u entries)",
			      nlen, name, g, qcow2_get_be64(e + BME_TABLE_OFFSET),
			      qcow2_get_be32(e + BME_TABLE_SIZE));
		return -EINVAL;
	}
	return 0;

overrun:
	qcow2_err_set(err, "bitmap directory entry overruns the directory");
	return -EINVAL;
}

/**
 * qcow2_bitmaps_open() - read the bitmaps a writer must keep valid
 * @img: image being opened for writing (header, refcounts loaded)
 * @err: reason on failure
 *
 * Without the bitmaps extension, or with autoclear bit 0 clear (the
 * bitmaps are stale already and QEMU ignores them), there is nothing to
 * keep. Writes nothing.
 *
 * Return: 0, -EBUSY (an inconsistent bitmap), -EOPNOTSUPP (one this
 * engine cannot keep), -EINVAL (a malformed directory or table), -ENOMEM,
 * -E2BIG (the bits would need more than QCOW2_BITMAP_MAX_BYTES) or an I/O
 * error.
 */
int qcow2_bitmaps_open(struct qcow2_image *img, struct qcow2_err *err)
{
	const struct qcow2_header *h = &img->h;
	u64 pos, len, total = 0;
	u32 i, nr_auto = 0;
	int ret;

	if (!h->has_bitmaps_ext || h->version < 3 ||
	    !(h->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	if (h->bitmap_dir_offset >= img->file_size ||
	    h->bitmap_dir_size > img->file_size - h->bitmap_dir_offset) {
		qcow2_err_set(err, "bitmap directory %#llx+%llu is outside the file",
			      h->bitmap_dir_offset, h->bitmap_dir_size);
		return -EINVAL;
	}
	img->bm_dir = qcow2_alloc(h->bitmap_dir_size);
	img->bm = qcow2_zalloc(sizeof(*img->bm) * h->nb_bitmaps);
	if (!img->bm_dir || !img->bm) {
		qcow2_err_set(err, "out of memory for the bitmap directory");
		ret = -ENOMEM;
		goto fail;
	}
	ret = qcow2_io_ret(img->io.pread(img->io.priv, img->bm_dir,
					 h->bitmap_dir_size, h->bitmap_dir_offset));
	if (ret) {
		qcow2_err_set(err, "cannot read the bitmap directory: error %d",
			      ret);
		goto fail;
	}
	/* Every entry is checked before any bitmap is loaded. */
	for (i = 0, pos = 0; i < h->nb_bitmaps; i++, pos += len) {
		const u8 *e = img->bm_dir + pos;

		ret = bm_check_entry(img, e, h->bitmap_dir_size - pos, &len,
				     err);
		if (ret)
			goto fail;
		if (!(qcow2_get_be32(e + BME_FLAGS) & BME_FLAG_AUTO))
			continue;
		img->bm[nr_auto].table_off = qcow2_get_be64(e + BME_TABLE_OFFSET);
		/*
		 * Only the entries that cover the disk are kept (QEMU allows
		 * a longer table): memory stays bounded by the bits.
		 */
		img->bm[nr_auto].table_size = bm_clusters(h, e[BME_GRAN_BITS]);
		img->bm[nr_auto].gran_bits = e[BME_GRAN_BITS];
		img->bm[nr_auto].dir_pos = pos;
		/* Saturated: 65535 bitmaps of a 2^61-byte disk overflow u64. */
		total = min_t(u64, total + bm_clusters(h, e[BME_GRAN_BITS]) *
			      h->cluster_size, (u64)QCOW2_BITMAP_MAX_BYTES + 1);
		nr_auto++;
	}
	if (pos != h->bitmap_dir_size) {
		qcow2_err_set(err, "bitmap directory is %llu bytes, its %u entries %llu",
			      h->bitmap_dir_size, h->nb_bitmaps, pos);
		ret = -EINVAL;
		goto fail;
	}
	if (total > QCOW2_BITMAP_MAX_BYTES) {
		qcow2_err_set(err,
			      "enabled bitmaps need more than %u MiB of memory to be kept: attach read-only, or use a coarser granularity",
			      QCOW2_BITMAP_MAX_BYTES >> 20);
		ret = -E2BIG;
		goto fail;
	}
	for (i = 0; i < nr_auto; i++) {
		const u8 *e = img->bm_dir + img->bm[i].dir_pos;
		u32 extra = qcow2_get_be32(e + BME_EXTRA_SIZE);

		img->nr_bm = i + 1;
		ret = bm_load(img, &img->bm[i],
			      min_t(u32, qcow2_get_be16(e + BME_NAME_SIZE), 64),
			      (const char *)e + BME_HDR_BYTES + extra, err);
		if (ret)
			goto fail;
	}
	img->nr_bm = nr_auto;
	img->bm_keep = true;
	return 0;

fail:
	qcow2_bitmaps_close(img);
	return ret;
}

void qcow2_bitmaps_close(struct qcow2_image *img)
{
	u32 i;

	for (i = 0; img->bm && i < img->nr_bm; i++)
		bm_free_one(&img->bm[i]);
	qcow2_free(img->bm);
	qcow2_free(img->bm_dir);
	img->bm = NULL;
	img->bm_dir = NULL;
	img->nr_bm = 0;
	img->bm_keep = false;
	img->bm_in_use = false;
}

/* Write the directory with the in_use flags of the kept bitmaps @on. */
static int bm_dir_write(struct qcow2_image *img, bool on)
{
	const struct qcow2_header *h = &img->h;
	int ret;
	u32 i;

	for (i = 0; i < img->nr_bm; i++) {
		u8 *f = img->bm_dir + img->bm[i].dir_pos + BME_FLAGS;
		u32 flags = qcow2_get_be32(f);

		qcow2_put_be32(f, on ? flags | BME_FLAG_IN_USE : flags & ~BME_FLAG_IN_USE);
	}
	ret = qcow2_overlap_check(img, QCOW2_OL_DATA, h->bitmap_dir_offset,
				  h->bitmap_dir_size);
	if (!ret)
		ret = qcow2_io_ret(img->io.pwrite(img->io.priv, img->bm_dir,
						  h->bitmap_dir_size,
						  h->bitmap_dir_offset));
	if (!ret)
		ret = qcow2_io_flush(&img->io);
	return ret;
}

/**
 * qcow2_bitmaps_enter() - mark the kept bitmaps in use, before a change
 * @img: writable image, wlock held
 *
 * Return: 0 or the -errno of the directory write (nothing may change then).
 */
int qcow2_bitmaps_enter(struct qcow2_image *img)
{
	int ret;

	qcow2_mutex_assert_held(&img->wlock);
	if (!img->nr_bm || img->bm_in_use)
		return 0;
	ret = bm_dir_write(img, true);
	if (ret)
		return ret;
	img->bm_in_use = true;
	return 0;
}

/**
 * qcow2_bitmaps_mark() - the guest range [@off, @off + @len) changes
 * @img: writable image
 * @off: first byte
 * @len: bytes, > 0, within the virtual size
 *
 * Context: any; takes no lock (atomic bit operations only), so in-place
 * writes call it too. Called before the change is made.
 */
void qcow2_bitmaps_mark(struct qcow2_image *img, u64 off, u64 len)
{
	u32 cbits = img->h.cluster_bits + 3, i;

	for (i = 0; i < img->nr_bm; i++) {
		struct qcow2_bitmap *b = &img->bm[i];
		u64 k = off >> b->gran_bits;
		u64 last = (off + len - 1) >> b->gran_bits;

		while (k <= last) {
			u32 s = k & 63;
			u64 n = min_t(u64, 64 - s, last - k + 1);
			u64 m = n == 64 ? ~0ULL : (BIT_ULL(n) - 1) << s;
			struct qcow2_atomic64 *w = &b->bits[k / 64];
			u64 c = k >> cbits;

			if ((qcow2_atomic64_read(w) & m) != m &&
			    (qcow2_atomic64_fetch_or(w, m) & m) != m)
				qcow2_atomic64_fetch_or(&b->dirty[c / 64],
							BIT_ULL(c & 63));
			k += n;
		}
	}
}

/* Write cluster @j of bitmap @b; allocate it if it has none. */
static int bm_store_cluster(struct qcow2_image *img, struct qcow2_bitmap *b,
			    u64 j, bool *table_changed)
{
	u64 cs = img->h.cluster_size, off = b->table[j] & BMT_OFFSET_MASK, i;
	struct qcow2_atomic64 *w = b->bits + j * (cs / 8);
	u8 *buf = img->cow_head;
	bool fresh = false;
	int ret;

	for (i = 0; i < cs / 8; i++) {
		__le64 v = cpu_to_le64(qcow2_atomic64_read(&w[i]));

		memcpy(buf + i * 8, &v, sizeof(v));
	}
	if (!off) {
		ret = qcow2_alloc_clusters(img, 1, &off, NULL);
		if (ret)
			return ret;
		fresh = true;
	}
	ret = qcow2_overlap_check(img, QCOW2_OL_DATA, off, cs);
	if (!ret)
		ret = qcow2_io_ret(img->io.pwrite(img->io.priv, buf, cs, off));
	if (ret) {
		if (fresh)
			qcow2_rc_update(img, off, cs, -1, false);
		return ret;
	}
	qcow2_grow_file(img, off + cs);
	if (fresh) {
		b->table[j] = off;
		*table_changed = true;
	}
	return 0;
}

static int bm_store_table(struct qcow2_image *img, struct qcow2_bitmap *b)
{
	size_t bytes = (size_t)b->table_size * 8;
	__be64 *t = qcow2_alloc(bytes);
	u32 j;
	int ret;

	if (!t)
		return -ENOMEM;
	for (j = 0; j < b->table_size; j++)
		t[j] = cpu_to_be64(b->table[j]);
	ret = qcow2_overlap_check(img, QCOW2_OL_DATA, b->table_off, bytes);
	if (!ret)
		ret = qcow2_io_ret(img->io.pwrite(img->io.priv, t, bytes,
						  b->table_off));
	qcow2_free(t);
	return ret;
}

/**
 * qcow2_bitmaps_store() - write the kept bitmaps back and clear in_use
 * @img: writable image, wlock held, no write in flight, flushed
 *
 * Order: the changed bitmap clusters (new ones allocated); the ordered
 * flush, so their refcounts are durable; the tables that name new
 * clusters; flush; the directory with in_use cleared; flush. A crash
 * anywhere leaves in_use set (QEMU: inconsistent) or the bitmaps complete.
 *
 * Return: 0 or -errno (the bitmaps then stay in use on disk).
 */
int qcow2_bitmaps_store(struct qcow2_image *img)
{
	u32 cbits = img->h.cluster_bits + 3, i;
	bool any_table = false;
	int ret = 0;

	qcow2_mutex_assert_held(&img->wlock);
	if (!img->bm_in_use)
		return 0;
	if (img->wfail)
		return -EROFS;
	for (i = 0; i < img->nr_bm && !ret; i++) {
		struct qcow2_bitmap *b = &img->bm[i];
		u64 need = DIV_ROUND_UP_ULL(bm_nbits(&img->h, b), 1ULL << cbits);
		bool changed = false;
		u64 j;

		for (j = 0; j < need && !ret; j++) {
			if (!(qcow2_atomic64_read(&b->dirty[j / 64]) &
			      BIT_ULL(j & 63)))
				continue;
			ret = bm_store_cluster(img, b, j, &changed);
		}
		if (!ret && changed) {
			/* The new clusters' refcounts first. */
			ret = qcow2_meta_flush(img);
			if (!ret)
				ret = bm_store_table(img, b);
			any_table = true;
		}
	}
	if (!ret && any_table)
		ret = qcow2_io_flush(&img->io);
	if (!ret)
		ret = bm_dir_write(img, false);
	if (ret) {
		qcow2_write_fail(img, ret, "storing persistent bitmaps");
		return ret;
	}
	for (i = 0; i < img->nr_bm; i++) {
		struct qcow2_bitmap *b = &img->bm[i];
		u64 need = DIV_ROUND_UP_ULL(bm_nbits(&img->h, b), 1ULL << cbits);

		u64 j;

		for (j = 0; j < DIV_ROUND_UP_ULL(need, 64); j++)
			qcow2_atomic64_set(&b->dirty[j], 0);
	}
	img->bm_in_use = false;
	return 0;
}

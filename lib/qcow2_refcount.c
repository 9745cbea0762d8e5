// SPDX-License-Identifier: GPL-2.0
/*
 * Refcounts and cluster allocation for writable images.
 *
 * The refcount table lives in memory whole (at most QCOW2_MAX_REFTABLE_BYTES);
 * refcount blocks are cached in slices of min(cluster size, 4 KiB) in the
 * refcount cache (img->rc), a slot cache whose dirty slices are written back
 * by qcow2_meta_flush() or, under pressure, by rc_writeback().
 *
 * Why refcount slices may be written back at any moment: the only decrease
 * of a refcount happens in qcow2_apply_frees(), after every table that
 * referenced the cluster has been written and flushed. Every other change is
 * an increase, and an increase on disk before the table that references the
 * cluster is exactly the order the format needs (at worst a leak).
 *
 * Allocation scans refcounts upward from free_hint for a run of free
 * clusters. A range of clusters without a refcount block is free; when the
 * scan reaches one, it puts a new refcount block at the first cluster of
 * that range, so the block describes itself. When the refcount table has no
 * entry for a range, it grows (rt_grow()).
 *
 * Width: refcounts are 1 << refcount_order bits wide (1 to 64); widths
 * below a byte are packed from the least significant bit, as QEMU does.
 *
 * Lock: everything here runs with wlock held and l2c_lock not held
 * ("writer context"). The refcount cache, free_hint, alloc_end and the
 * pending frees are wlock's alone. The refcount table (rt, rt_entries and
 * the header fields naming it) and file_size are also read by the
 * in-place write path under l2c_lock (the overlap check), so they change
 * under both.
 */
#include "qcow2.h"

static u32 rc_slice_bits(const struct qcow2_image *img)
{
	return min_t(u32, img->h.cluster_bits, QCOW2_L2C_MAX_SLICE_BITS);
}

/* log2 of refcount entries in one refcount block. */
static u32 rb_entry_bits(const struct qcow2_image *img)
{
	return img->h.cluster_bits + 3 - img->h.refcount_order;
}

static u64 rc_max(const struct qcow2_image *img)
{
	u32 bits = 1U << img->h.refcount_order;

	return bits == 64 ? ~0ULL : (1ULL << bits) - 1;
}

static u64 rc_load(const u8 *p, u32 order, u32 idx)
{
	u32 bit;

	switch (order) {
	case 0:
	case 1:
	case 2:
		bit = idx << order;
		return (p[bit >> 3] >> (bit & 7)) & ((1U << (1U << order)) - 1);
	case 3:
		return p[idx];
	case 4:
		return ((u32)p[2 * idx] << 8) | p[2 * idx + 1];
	case 5: {
		__be32 v;

		memcpy(&v, p + 4 * idx, 4);
		return be32_to_cpu(v);
	}
	default: {
		__be64 v;

		memcpy(&v, p + 8 * idx, 8);
		return be64_to_cpu(v);
	}
	}
}

static void rc_store(u8 *p, u32 order, u32 idx, u64 val)
{
	u32 bit, mask;

	switch (order) {
	case 0:
	case 1:
	case 2:
		bit = idx << order;
		mask = ((1U << (1U << order)) - 1) << (bit & 7);
		p[bit >> 3] = (p[bit >> 3] & ~mask) |
			      (((u32)val << (bit & 7)) & mask);
		break;
	case 3:
		p[idx] = val;
		break;
	case 4:
		p[2 * idx] = val >> 8;
		p[2 * idx + 1] = val;
		break;
	case 5: {
		__be32 v = cpu_to_be32((u32)val);

		memcpy(p + 4 * idx, &v, 4);
		break;
	}
	default: {
		__be64 v = cpu_to_be64(val);

		memcpy(p + 8 * idx, &v, 8);
		break;
	}
	}
}

static int rc_write_slice(void *arg, u64 key, const u8 *data, u32 bytes)
{
	struct qcow2_image *img = arg;
	int ret;

	ret = qcow2_overlap_check(img, QCOW2_OL_REFBLOCK, key, bytes);
	if (ret)
		return ret;
	ret = img->io.pwrite(img->io.priv, data, bytes, key);
	return ret < 0 ? ret : (ret ? -EIO : 0);
}

/* Write every dirty refcount slice; see the file comment for why any time. */
int qcow2_rc_writeback(struct qcow2_image *img)
{
	int ret = qcow2_cache_writeback(&img->rc, rc_write_slice, img);

	if (ret)
		qcow2_write_fail(img, ret, "writing refcount blocks");
	return ret;
}

/*
 * The refcount slice holding cluster @cl's entry, with its index in *idx.
 * *data is NULL if the cluster has no refcount block (refcount 0).
 */
static int rc_slice(struct qcow2_image *img, u64 cl, bool dirty, u8 **data,
		    u32 *idx)
{
	u32 eb = rb_entry_bits(img);
	u32 sb = rc_slice_bits(img);
	u64 rt_idx = cl >> eb;
	u32 in_block = cl & ((1ULL << eb) - 1);
	u32 per_slice_bits = sb + 3 - img->h.refcount_order;
	u64 rte, rb_off, key;
	u8 *buf;
	s32 slot;
	int ret;

	*data = NULL;
	*idx = in_block & ((1U << per_slice_bits) - 1);
	if (rt_idx >= img->rt_entries)
		return 0;
	/* As QEMU, the reserved bits 0-8 are ignored; 56-63 are not. */
	rte = be64_to_cpu(img->rt[rt_idx]) & ~GENMASK_ULL(8, 0);
	rb_off = rte & QCOW2_L1E_OFFSET_MASK;
	if (!rte)
		return 0;
	/* A block unaligned or past the end of the file: corrupt, as QEMU. */
	if (rte != rb_off || (rb_off & (img->h.cluster_size - 1)) ||
	    rb_off >= img->alloc_end) {
		qcow2_log_ratelimited("refcount table entry %llu: block %#llx %s: image corrupt",
				      rt_idx, rte, rte == rb_off && rb_off < img->alloc_end ?
				      "not cluster aligned" :
				      "past the end of the file");
		return qcow2_mark_corrupt(img);
	}
	key = rb_off + ((u64)(in_block >> per_slice_bits) << sb);

	buf = dirty ? qcow2_cache_lookup_dirty(&img->rc, key) :
		      qcow2_cache_lookup(&img->rc, key);
	if (buf) {
		*data = buf;
		return 0;
	}
	buf = qcow2_cache_reserve(&img->rc, &slot);
	if (!buf) {
		ret = qcow2_rc_writeback(img);
		if (ret)
			return ret;
		buf = qcow2_cache_reserve(&img->rc, &slot);
		if (!buf)
			return -EIO;
	}
	ret = img->io.pread(img->io.priv, buf, 1U << sb, key);
	if (ret) {
		qcow2_cache_unreserve(&img->rc, slot);
		return ret < 0 ? ret : -EIO;
	}
	qcow2_cache_publish(&img->rc, slot, key);
	*data = dirty ? qcow2_cache_lookup_dirty(&img->rc, key) : buf;
	return 0;
}

/**
 * qcow2_rc_get() - the refcount of host cluster @cl
 * @img: writable image, writer context
 * @cl: cluster index
 * @val: its refcount (0 without a refcount block)
 *
 * Return: 0 or -errno.
 */
int qcow2_rc_get(struct qcow2_image *img, u64 cl, u64 *val)
{
	u8 *data;
	u32 idx;
	int ret = rc_slice(img, cl, false, &data, &idx);

	*val = 0;
	if (ret || !data)
		return ret;
	*val = rc_load(data, img->h.refcount_order, idx);
	return 0;
}

/* Set a refcount whose block exists (the allocator made sure of it). */
static int rc_set(struct qcow2_image *img, u64 cl, u64 val)
{
	u8 *data;
	u32 idx;
	int ret = rc_slice(img, cl, true, &data, &idx);

	if (ret)
		return ret;
	if (!data)
		return -EUCLEAN;
	rc_store(data, img->h.refcount_order, idx, val);
	return 0;
}

/**
 * qcow2_rc_update() - add @delta to the refcount of every cluster touched
 * @img: writable image, writer context
 * @off: first byte
 * @len: bytes, > 0
 * @delta: +1 or -1
 * @punch: punch clusters reaching 0 out of the file
 *
 * Return: 0, -ERANGE (the refcount would overflow its width), -EUCLEAN (a
 * decrease below 0 or a cluster without a refcount block: corrupt image),
 * or an I/O error.
 */
int qcow2_rc_update(struct qcow2_image *img, u64 off, u64 len, int delta,
		    bool punch)
{
	u32 cb = img->h.cluster_bits;
	u64 first = off >> cb, last = (off + len - 1) >> cb, cl;
	int ret;

	for (cl = first; cl <= last; cl++) {
		u64 v;

		ret = qcow2_rc_get(img, cl, &v);
		if (ret)
			return ret;
		if (delta > 0 && v == rc_max(img)) {
			qcow2_log_ratelimited("refcount of cluster %#llx would exceed %llu",
					      cl << cb, rc_max(img));
			return -ERANGE;
		}
		if (delta < 0 && !v) {
			qcow2_log_ratelimited("refcount of cluster %#llx is already 0",
					      cl << cb);
			return -EUCLEAN;
		}
		ret = rc_set(img, cl, delta > 0 ? v + 1 : v - 1);
		if (ret)
			return ret;
		if (delta < 0 && v == 1) {
			img->ws.freed_clusters++;
			if (cl < img->free_hint)
				img->free_hint = cl;
			if (punch && img->io.punch)
				img->io.punch(img->io.priv, cl << cb, 1ULL << cb);
		}
	}
	return 0;
}

/* Mark refcount-table entries [lo, hi) as changed. */
static void rt_dirty(struct qcow2_image *img, u32 lo, u32 hi)
{
	if (img->rt_dirty_lo == img->rt_dirty_hi) {
		img->rt_dirty_lo = lo;
		img->rt_dirty_hi = hi;
		return;
	}
	img->rt_dirty_lo = min_t(u32, img->rt_dirty_lo, lo);
	img->rt_dirty_hi = max_t(u32, img->rt_dirty_hi, hi);
}

/**
 * qcow2_zero_clusters_on_disk() - write zeroes over a freshly allocated range
 * @img: writable image, writer context
 * @off: cluster aligned
 * @len: bytes, cluster multiple
 * @kind: QCOW2_OL_* of what the range is about to hold, for the overlap check
 */
int qcow2_zero_clusters_on_disk(struct qcow2_image *img, u64 off, u64 len,
				u32 kind)
{
	u64 pos;
	int ret;

	ret = qcow2_overlap_check(img, kind, off, len);
	if (ret)
		return ret;
	for (pos = 0; pos < len; pos += QCOW2_ZERO_BUF_BYTES) {
		u32 n = min_t(u64, len - pos, QCOW2_ZERO_BUF_BYTES);

		ret = img->io.pwrite(img->io.priv, img->zero_buf, n, off + pos);
		if (ret)
			return ret < 0 ? ret : -EIO;
	}
	qcow2_grow_file(img, off + len);
	return 0;
}

/**
 * qcow2_grow_file() - note that the image file now reaches @end
 * @img: writable image, writer context
 * @end: byte after the last one written
 *
 * Context: takes l2c_lock, which guards file_size for readers.
 */
void qcow2_grow_file(struct qcow2_image *img, u64 end)
{
	if (end <= img->file_size)
		return;
	qcow2_mutex_lock(&img->l2c_lock);
	if (end > img->file_size)
		img->file_size = end;
	qcow2_mutex_unlock(&img->l2c_lock);
}

/* Set refcount table entry @idx, which the overlap check reads. */
static void rt_set(struct qcow2_image *img, u64 idx, u64 off)
{
	qcow2_mutex_lock(&img->l2c_lock);
	img->rt[idx] = cpu_to_be64(off);
	if (idx >= img->rt_hi)
		img->rt_hi = idx + 1;
	qcow2_mutex_unlock(&img->l2c_lock);
}

/* Drop cached slices of a cluster that is about to hold something new. */
static void cache_forget_cluster(struct qcow2_image *img,
				 struct qcow2_cache *c, u64 off)
{
	u64 key;

	for (key = off; key < off + img->h.cluster_size; key += c->slot_bytes)
		qcow2_cache_drop(c, key);
}

/*
 * Put a new refcount block for table entry @rt_idx at cluster @cl, the
 * first cluster of the range it describes, so it counts itself.
 */
static int rb_create(struct qcow2_image *img, u64 rt_idx, u64 cl)
{
	u32 cb = img->h.cluster_bits;
	u64 off = cl << cb;
	int ret;

	ret = qcow2_zero_clusters_on_disk(img, off, 1ULL << cb,
					  QCOW2_OL_REFBLOCK);
	if (ret)
		return ret;
	cache_forget_cluster(img, &img->rc, off);
	rt_set(img, rt_idx, off);
	rt_dirty(img, rt_idx, rt_idx + 1);
	if (off + (1ULL << cb) > img->alloc_end)
		img->alloc_end = off + (1ULL << cb);
	ret = rc_set(img, cl, 1);
	if (ret)
		return ret;
	img->ws.alloc_clusters++;
	return 0;
}

static int rt_grow(struct qcow2_image *img, u64 need_idx);

/**
 * qcow2_alloc_clusters() - allocate up to @n contiguous host clusters
 * @img: writable image, writer context
 * @n: clusters wanted, 1..QCOW2_MAX_ALLOC_RUN
 * @off: host offset of the first
 * @got: clusters allocated, 1..@n; NULL means all @n are required
 *
 * Looks for @n free clusters in a row; a run that reaches a range without a
 * refcount block (or beyond the refcount table) ends there, since that
 * range's new block will take its first cluster, and the shorter run is
 * returned when @got allows it. Their refcounts become 1 in the cache. The
 * caller writes what they hold before any table references them, and gives
 * them back with qcow2_rc_update(-1) if that fails.
 *
 * Return: 0, -ENOSPC (the image would outgrow the format's limits), or an
 * I/O error.
 */
int qcow2_alloc_clusters(struct qcow2_image *img, u32 n, u64 *off, u32 *got)
{
	u32 cb = img->h.cluster_bits;
	u32 eb = rb_entry_bits(img);
	u64 max_cl = QCOW2_MAX_HOST_OFFSET >> cb;
	u64 cl = img->free_hint, start = cl, first_free = ~0ULL;
	u32 run = 0, i;
	int ret;

	if (!n || n > QCOW2_MAX_ALLOC_RUN)
		return -EINVAL;
	/* An image on a block device ends where the device does. */
	if (img->max_file_size)
		max_cl = min_t(u64, max_cl, img->max_file_size >> cb);
	/* Cluster 0 is the header: never free, never scanned. */
	if (!cl)
		cl = 1;
	start = cl;
	while (run < n) {
		u64 rt_idx = cl >> eb, v;

		if (cl >= max_cl)
			return -ENOSPC;
		if (rt_idx >= img->rt_entries ||
		    !(be64_to_cpu(img->rt[rt_idx]) & ~GENMASK_ULL(8, 0))) {
			if (run && got)
				break;
			if (rt_idx < img->rt_entries) {
				ret = rb_create(img, rt_idx, cl);
				if (ret)
					return ret;
				cl++;
				start = cl;
				run = 0;
				continue;
			}
			/* A table being placed must fit the table it grew to. */
			if (img->rt_moving)
				return -ENOSPC;
			ret = rt_grow(img, rt_idx);
			if (ret)
				return ret;
			/* The new table took clusters: start over. */
			cl = img->free_hint ? img->free_hint : 1;
			start = cl;
			run = 0;
			first_free = ~0ULL;
			continue;
		}
		ret = qcow2_rc_get(img, cl, &v);
		if (ret)
			return ret;
		cl++;
		if (v) {
			if (run && first_free == ~0ULL)
				first_free = start;
			start = cl;
			run = 0;
			continue;
		}
		run++;
	}
	for (i = 0; i < run; i++) {
		ret = rc_set(img, start + i, 1);
		if (ret)
			return ret;
	}
	/* The scan began at free_hint: everything before first_free is used. */
	img->free_hint = first_free != ~0ULL ? first_free : start + run;
	*off = start << cb;
	if (got)
		*got = run;
	if (*off + ((u64)run << cb) > img->alloc_end)
		img->alloc_end = *off + ((u64)run << cb);
	img->ws.alloc_clusters += run;
	return 0;
}

/*
 * Place a new refcount table of @t clusters at the end of the image, with
 * the refcount blocks its own clusters need right behind it: the blocks for
 * ranges [E, E + t + k) that have none, k found by iteration. Beyond
 * alloc_end nothing is allocated, so no range there has a block yet.
 */
static int rt_place(struct qcow2_image *img, u64 t, u64 *table_off)
{
	u32 cb = img->h.cluster_bits, eb = rb_entry_bits(img);
	u64 e = img->alloc_end >> cb, k = 0, need, r, x, blk;
	int ret;

	for (;;) {
		need = 0;
		for (r = e >> eb; r <= (e + t + k - 1) >> eb; r++) {
			if (r >= img->rt_entries)
				return -ENOSPC;
			if (!(be64_to_cpu(img->rt[r]) & QCOW2_L1E_OFFSET_MASK))
				need++;
		}
		if (need == k)
			break;
		k = need;
	}
	blk = e + t;
	for (r = e >> eb; r <= (e + t + k - 1) >> eb; r++) {
		if (be64_to_cpu(img->rt[r]) & QCOW2_L1E_OFFSET_MASK)
			continue;
		ret = qcow2_zero_clusters_on_disk(img, blk << cb, 1ULL << cb,
						  QCOW2_OL_REFBLOCK);
		if (ret)
			return ret;
		cache_forget_cluster(img, &img->rc, blk << cb);
		rt_set(img, r, blk << cb);
		blk++;
	}
	img->alloc_end = (e + t + k) << cb;
	for (x = e; x < e + t + k; x++) {
		ret = rc_set(img, x, 1);
		if (ret)
			return ret;
	}
	img->ws.alloc_clusters += t + k;
	*table_off = e << cb;
	return 0;
}

/*
 * Grow the refcount table so it has entry @need_idx: a bigger copy at the end
 * of the file, then the header switched to it in one sector write, then the
 * old table freed. Until the header write is durable the old table is the
 * valid one, and nothing it describes changed meanwhile (everything was
 * flushed first).
 */
static int rt_grow(struct qcow2_image *img, u64 need_idx)
{
	u32 cb = img->h.cluster_bits, eb = rb_entry_bits(img);
	u64 old_off = img->h.refcount_table_offset;
	u32 old_clusters = img->h.refcount_table_clusters;
	u64 new_clusters, new_off = 0, cover;
	__be64 *old_rt = img->rt, *new_rt;
	u32 old_entries = img->rt_entries;
	int ret;

	/* Room for @need_idx, for the table itself and its blocks, and more. */
	cover = max_t(u64, need_idx, (img->alloc_end >> cb >> eb) + 1) + 1;
	new_clusters = max_t(u64, 2ULL * old_clusters,
			     ((cover * sizeof(u64) + (1ULL << cb) - 1) >> cb) + 1);
	if (new_clusters << cb > QCOW2_MAX_REFTABLE_BYTES)
		new_clusters = QCOW2_MAX_REFTABLE_BYTES >> cb;
	if (new_clusters <= old_clusters ||
	    (new_clusters << cb) < cover * sizeof(u64)) {
		qcow2_log_ratelimited("refcount table cannot grow beyond %u bytes",
				      QCOW2_MAX_REFTABLE_BYTES);
		return -ENOSPC;
	}
	ret = qcow2_meta_flush(img);
	if (ret)
		return ret;

	new_rt = qcow2_zalloc(new_clusters << cb);
	if (!new_rt)
		return -ENOMEM;
	memcpy(new_rt, old_rt, (u64)old_entries * sizeof(u64));
	qcow2_mutex_lock(&img->l2c_lock);
	img->rt = new_rt;
	img->rt_entries = (new_clusters << cb) / sizeof(u64);
	qcow2_mutex_unlock(&img->l2c_lock);
	img->rt_moving = true;

	ret = rt_place(img, new_clusters, &new_off);
	if (ret == -ENOSPC)
		goto undo;
	if (!ret)
		ret = qcow2_rc_writeback(img);
	if (!ret)
		ret = qcow2_overlap_check(img, QCOW2_OL_REFTABLE, new_off,
					  new_clusters << cb);
	/* The table is written after every block it names is durable. */
	if (!ret)
		ret = qcow2_io_flush(&img->io);
	if (!ret)
		ret = img->io.pwrite(img->io.priv, new_rt, new_clusters << cb,
				     new_off);
	if (!ret)
		ret = qcow2_io_flush(&img->io);
	if (ret)
		goto fail;
	qcow2_grow_file(img, new_off + (new_clusters << cb));

	qcow2_mutex_lock(&img->l2c_lock);
	img->h.refcount_table_offset = new_off;
	img->h.refcount_table_clusters = new_clusters;
	qcow2_mutex_unlock(&img->l2c_lock);
	ret = qcow2_header_write(img);
	if (ret)
		goto fail;
	img->rt_moving = false;
	img->rt_dirty_lo = 0;
	img->rt_dirty_hi = 0;
	qcow2_free(old_rt);
	return qcow2_free_later(img, old_off, (u64)old_clusters << cb, false);

undo:
	qcow2_mutex_lock(&img->l2c_lock);
	img->rt = old_rt;
	img->rt_entries = old_entries;
	img->rt_hi = min_t(u32, img->rt_hi, old_entries);
	qcow2_mutex_unlock(&img->l2c_lock);
	img->rt_moving = false;
	qcow2_free(new_rt);
	return ret;
fail:
	/* The on-disk state still names the old table; memory does not. */
	qcow2_write_fail(img, ret < 0 ? ret : -EIO,
			 "growing the refcount table");
	return ret < 0 ? ret : -EIO;
}

/**
 * qcow2_rt_writeback() - write the changed part of the refcount table
 * @img: writable image, writer context
 *
 * Whole 512-byte sectors around the changed entries; the caller flushed the
 * refcount blocks they name first.
 */
int qcow2_rt_writeback(struct qcow2_image *img)
{
	u64 lo, hi, end = (u64)img->rt_entries * sizeof(u64);
	int ret;

	if (img->rt_dirty_lo == img->rt_dirty_hi || img->rt_moving)
		return 0;
	lo = ALIGN_DOWN((u64)img->rt_dirty_lo * sizeof(u64), 512);
	hi = (u64)img->rt_dirty_hi * sizeof(u64);
	hi = min_t(u64, ALIGN_DOWN(hi + 511, 512), end);
	ret = qcow2_overlap_check(img, QCOW2_OL_REFTABLE,
				  img->h.refcount_table_offset + lo, hi - lo);
	if (!ret)
		ret = img->io.pwrite(img->io.priv, (u8 *)img->rt + lo, hi - lo,
				     img->h.refcount_table_offset + lo);
	if (ret) {
		ret = ret < 0 ? ret : -EIO;
		qcow2_write_fail(img, ret, "writing the refcount table");
		return ret;
	}
	img->rt_dirty_lo = 0;
	img->rt_dirty_hi = 0;
	return 0;
}

/**
 * qcow2_free_later() - note a host range whose last reference is gone
 * @img: writable image, writer context
 * @off: first byte (for compressed data: the first byte of it)
 * @len: bytes
 * @data_file: the range is in the external data file
 *
 * Its refcounts drop (and it is punched) in the next qcow2_meta_flush(),
 * after the tables that stopped referencing it are durable. Until then the
 * clusters stay allocated, so nothing reuses them.
 */
int qcow2_free_later(struct qcow2_image *img, u64 off, u64 len, bool data_file)
{
	struct qcow2_pending_free *f;

	if (!len)
		return 0;
	if (img->nr_frees) {
		f = &img->frees[img->nr_frees - 1];
		if (f->data_file == data_file && f->off + f->len == off &&
		    !((off | len) & (img->h.cluster_size - 1))) {
			f->len += len;
			return 0;
		}
	}
	if (img->nr_frees == img->max_frees) {
		int ret = qcow2_meta_flush(img);

		if (ret)
			return ret;
	}
	f = &img->frees[img->nr_frees++];
	f->off = off;
	f->len = len;
	f->data_file = data_file;
	return 0;
}

/**
 * qcow2_apply_frees() - drop the refcounts of ranges noted by free_later
 * @img: writable image, writer context; the tables are durable
 */
int qcow2_apply_frees(struct qcow2_image *img)
{
	u32 i;
	int ret = 0;

	/* Requests that mapped these clusters before they were freed. */
	if (img->nr_frees && img->io.drain)
		img->io.drain(img->io.priv);

	for (i = 0; i < img->nr_frees; i++) {
		struct qcow2_pending_free *f = &img->frees[i];

		if (f->data_file) {
			if (img->data_io.punch)
				img->data_io.punch(img->data_io.priv, f->off,
						   f->len);
			continue;
		}
		ret = qcow2_rc_update(img, f->off, f->len, -1, true);
		if (ret) {
			qcow2_write_fail(img, ret, "freeing clusters");
			break;
		}
	}
	img->nr_frees = 0;
	return ret;
}

/**
 * qcow2_refcount_open() - load what the write path needs
 * @img: image being opened writable: header, L1 and L2 cache ready
 * @rc_bytes: refcount cache size, 0 for the default
 * @err: reason on failure
 */
int qcow2_refcount_open(struct qcow2_image *img, u64 rc_bytes,
			struct qcow2_err *err)
{
	u32 cb = img->h.cluster_bits;
	u64 rt_bytes = (u64)img->h.refcount_table_clusters << cb;
	u32 slice = 1U << rc_slice_bits(img);
	u64 nr;
	int ret;

	img->rt = qcow2_zalloc(max_t(u64, rt_bytes, 512));
	if (!img->rt)
		goto nomem;
	if (rt_bytes) {
		ret = img->io.pread(img->io.priv, img->rt, rt_bytes,
				    img->h.refcount_table_offset);
		if (ret) {
			qcow2_err_set(err, "cannot read the refcount table: error %d",
				      ret);
			return ret < 0 ? ret : -EIO;
		}
	}
	img->rt_entries = rt_bytes / sizeof(u64);
	/* The overlap check scans only up to the last block in use. */
	for (img->rt_hi = img->rt_entries; img->rt_hi; img->rt_hi--)
		if (img->rt[img->rt_hi - 1])
			break;
	if (!rc_bytes)
		rc_bytes = QCOW2_RC_DEFAULT_BYTES;
	nr = min_t(u64, rc_bytes, QCOW2_RC_MAX_BYTES) / slice;
	ret = qcow2_cache_init(&img->rc, slice,
			       max_t(u64, nr, QCOW2_CACHE_MIN_SLOTS));
	if (ret)
		goto nomem;
	img->max_frees = QCOW2_MAX_PENDING_FREES;
	img->frees = qcow2_alloc(sizeof(*img->frees) * img->max_frees);
	if (!img->frees)
		goto nomem;
	img->alloc_end = (img->file_size + (1ULL << cb) - 1) & ~((1ULL << cb) - 1);
	img->free_hint = 1;
	return 0;

nomem:
	qcow2_err_set(err, "out of memory for the refcount structures");
	return -ENOMEM;
}

void qcow2_refcount_close(struct qcow2_image *img)
{
	qcow2_cache_destroy(&img->rc);
	qcow2_free(img->rt);
	img->rt = NULL;
	qcow2_free(img->frees);
	img->frees = NULL;
}

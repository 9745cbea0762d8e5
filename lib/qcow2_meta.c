// SPDX-License-Identifier: GPL-2.0
/*
 * Metadata write-back for writable images: the ordered flush, the overlap
 * check every metadata and data write passes, header updates (autoclear
 * bits, corrupt bit, refcount table switch) and the fail-stop state.
 *
 * Ordering (qcow2_meta_flush()):
 *
 *   1. flush the data file and the image file: guest data, and the zeroes
 *      or copies written into newly allocated tables, are durable;
 *   2. write dirty refcount slices; if the refcount table changed, flush
 *      and write it: a new refcount block is durable before the table
 *      entry that names it;
 *   3. flush, then write dirty L2 slices: every refcount increase, and the
 *      data, are durable before an L2 entry points at the cluster;
 *   4. flush, then write the changed L1 sectors: an L2 table is durable
 *      before the L1 entry that points at it;
 *   5. flush; now drop the refcounts of clusters whose references went away
 *      (qcow2_apply_frees()), write them, flush, punch: a reference is gone
 *      on disk before its refcount decreases.
 *
 * Flushes are skipped where nothing was written since the last one. A crash
 * at any point leaves an image whose tables only point at durable data and
 * whose refcounts are at least the number of references: at worst leaked
 * clusters, never corruption.
 *
 * Fail-stop: a failed metadata write, or an overlap, sets img->wfail; every
 * later change is refused with -EROFS, so the image on disk stays as the
 * last successful flush left it (plus whatever the failing step wrote,
 * which the order above keeps harmless).
 *
 * Lock: everything here runs in writer context: wlock held, l2c_lock not
 * held (see qcow2_write.c for the lock rules). The L2 write-back takes
 * l2c_lock only to list the dirty slices and to mark them clean; the writes
 * and every flush run without it, so lookups and loads of other slices go
 * on during a write-back.
 */
#include "qcow2.h"

/* Header byte offsets that the write path updates. */
#define QCOW2_HDR_RT_OFFSET		48	/* refcount_table_offset */
#define QCOW2_HDR_RT_CLUSTERS		56	/* refcount_table_clusters */
#define QCOW2_HDR_INCOMPAT		72	/* incompatible_features */
#define QCOW2_HDR_AUTOCLEAR		88	/* autoclear_features */
#define QCOW2_HDR_SECTOR		512

static const char *const ol_names[] = {
	[QCOW2_OL_DATA] = "guest data",
	[QCOW2_OL_HEADER] = "the header",
	[QCOW2_OL_L1] = "the active L1 table",
	[QCOW2_OL_REFTABLE] = "the refcount table",
	[QCOW2_OL_REFBLOCK] = "a refcount block",
	[QCOW2_OL_L2] = "an L2 table",
	[QCOW2_OL_SNAPSHOTS] = "the snapshot table or a snapshot's L1 table",
};

/**
 * qcow2_write_fail() - stop writing: the image turns read-only
 * @img: writable image
 * @err: the -errno that stopped it
 * @what: what the engine was doing, for the log
 */
void qcow2_write_fail(struct qcow2_image *img, int err, const char *what)
{
	if (img->wfail)
		return;
	img->wfail = err < 0 ? err : -EIO;
	qcow2_log_ratelimited("error %d while %s: the image is now read-only",
			      img->wfail, what);
}

int qcow2_io_flush(const struct qcow2_io *io)
{
	int ret = io->flush(io->priv);

	return ret < 0 ? ret : (ret ? -EIO : 0);
}

/**
 * qcow2_header_write() - write the header sector from img->h, then flush
 * @img: writable image, writer context
 *
 * Only the fields the write path changes are refreshed in the saved copy
 * of the first sector; everything else (unknown compatible bits, header
 * extensions in that sector) is written back exactly as read. The fields
 * sit in one 512-byte sector, which disks write atomically.
 */
int qcow2_header_write(struct qcow2_image *img)
{
	u8 *b = img->hdr_buf;
	int ret;

	qcow2_put_be64(b + QCOW2_HDR_RT_OFFSET, img->h.refcount_table_offset);
	qcow2_put_be32(b + QCOW2_HDR_RT_CLUSTERS, img->h.refcount_table_clusters);
	if (img->h.version >= 3) {
		qcow2_put_be64(b + QCOW2_HDR_INCOMPAT, img->h.incompatible_features);
		qcow2_put_be64(b + QCOW2_HDR_AUTOCLEAR, img->h.autoclear_features);
	}
	ret = img->io.pwrite(img->io.priv, b, QCOW2_HDR_SECTOR, 0);
	if (ret)
		return ret < 0 ? ret : -EIO;
	return qcow2_io_flush(&img->io);
}

static bool ranges_meet(u64 a, u64 alen, u64 b, u64 blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

/* Which metadata [off, off + len) would overwrite, or QCOW2_OL_DATA. */
static u32 overlap_find(struct qcow2_image *img, u32 kind, u64 off, u64 len,
			u64 *where)
{
	const struct qcow2_header *h = &img->h;
	u64 cs = h->cluster_size;
	u32 i;

	*where = 0;
	if (ranges_meet(off, len, 0, cs))
		return QCOW2_OL_HEADER;
	if (kind != QCOW2_OL_L1 &&
	    ranges_meet(off, len, h->l1_table_offset, (u64)h->l1_size * 8)) {
		*where = h->l1_table_offset;
		return QCOW2_OL_L1;
	}
	if (kind != QCOW2_OL_REFTABLE &&
	    ranges_meet(off, len, h->refcount_table_offset,
			(u64)h->refcount_table_clusters << h->cluster_bits)) {
		*where = h->refcount_table_offset;
		return QCOW2_OL_REFTABLE;
	}
	for (i = 0; i < img->nr_meta_ranges; i++) {
		u64 mo = img->meta_ranges[2 * i], ml = img->meta_ranges[2 * i + 1];

		if (ranges_meet(off, len, mo, ml)) {
			*where = mo;
			return QCOW2_OL_SNAPSHOTS;
		}
	}
	/* Refcount blocks and active L2 tables, from the in-memory tables. */
	if (kind != QCOW2_OL_REFBLOCK &&
	    img->rt_hi <= QCOW2_OVERLAP_SCAN_MAX) {
		for (i = 0; i < img->rt_hi; i++) {
			u64 rb = be64_to_cpu(img->rt[i]) & QCOW2_L1E_OFFSET_MASK;

			if (rb && ranges_meet(off, len, rb, cs)) {
				*where = rb;
				return QCOW2_OL_REFBLOCK;
			}
		}
	}
	if (kind != QCOW2_OL_L2 && h->l1_size <= QCOW2_OVERLAP_SCAN_MAX) {
		for (i = 0; i < h->l1_size; i++) {
			u64 l2 = be64_to_cpu(img->l1[i]) & QCOW2_L1E_OFFSET_MASK;

			if (l2 && ranges_meet(off, len, l2, cs)) {
				*where = l2;
				return QCOW2_OL_L2;
			}
		}
	}
	return QCOW2_OL_DATA;
}

/**
 * qcow2_overlap_hit() - would [@off, @off + @len) overwrite other metadata?
 * @img: writable image; wlock or l2c_lock held (both guard what is read)
 * @kind: QCOW2_OL_* of what is being written
 * @off: first byte
 * @len: bytes
 *
 * qcow2_overlap_check() without its consequences, for a caller that takes
 * the full check's path (writer context) on a hit.
 *
 * Return: true on a hit.
 */
bool qcow2_overlap_hit(struct qcow2_image *img, u32 kind, u64 off, u64 len)
{
	u64 where;

	return overlap_find(img, kind, off, len, &where) != QCOW2_OL_DATA;
}

/**
 * qcow2_overlap_check() - refuse a write that would hit other metadata
 * @img: writable image, writer context
 * @kind: QCOW2_OL_* of what is being written (its own kind is not checked)
 * @off: first byte
 * @len: bytes
 *
 * Checks the header cluster, the active L1 table, the refcount table, the
 * snapshot table and snapshot L1 tables always; refcount blocks and active
 * L2 tables while the in-memory tables naming them have at most
 * QCOW2_OVERLAP_SCAN_MAX entries. On a hit the image gets the corrupt bit
 * (v3), turns read-only and the hit is logged; nothing is written.
 *
 * Return: 0 or -EUCLEAN.
 */
int qcow2_overlap_check(struct qcow2_image *img, u32 kind, u64 off, u64 len)
{
	u64 where;
	u32 hit = overlap_find(img, kind, off, len, &where);

	if (hit == QCOW2_OL_DATA)
		return 0;
	img->ws.overlaps++;
	qcow2_log_ratelimited("overlap: %s at %#llx+%llu would hit %s at %#llx: image corrupt",
			      ol_names[kind], off, len, ol_names[hit], where);
	return qcow2_mark_corrupt(img);
}

/**
 * qcow2_mark_corrupt() - metadata was found corrupt: stop writing, as QEMU
 * @img: writable image, writer context; the caller logged what it found
 *
 * The image gets the corrupt bit (v3), so QEMU and later attaches refuse
 * to write it until qemu-img check -r repairs it, and turns read-only now;
 * nothing else is written.
 *
 * Return: -EUCLEAN.
 */
int qcow2_mark_corrupt(struct qcow2_image *img)
{
	if (!img->wfail) {
		img->wfail = -EUCLEAN;
		if (img->h.version >= 3) {
			img->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
			if (qcow2_header_write(img))
				qcow2_log_ratelimited("could not set the corrupt bit");
		}
	}
	return -EUCLEAN;
}

static int l2_write_slice(void *arg, u64 key, const u8 *data, u32 bytes)
{
	struct qcow2_image *img = arg;
	int ret;

	ret = qcow2_overlap_check(img, QCOW2_OL_L2, key, bytes);
	if (ret)
		return ret;
	ret = img->io.pwrite(img->io.priv, data, bytes, key);
	return ret < 0 ? ret : (ret ? -EIO : 0);
}

static int l1_writeback(struct qcow2_image *img)
{
	u64 lo, hi, end = (u64)img->h.l1_size * sizeof(u64);
	int ret;

	lo = ALIGN_DOWN((u64)img->l1_dirty_lo * sizeof(u64), 512);
	hi = ALIGN_DOWN((u64)img->l1_dirty_hi * sizeof(u64) + 511, 512);
	/* The L1 buffer is read rounded up, so the last sector is whole. */
	hi = min_t(u64, hi, ALIGN_DOWN(end + 511, 512));
	ret = qcow2_overlap_check(img, QCOW2_OL_L1, img->h.l1_table_offset + lo,
				  hi - lo);
	if (ret)
		return ret;
	ret = img->io.pwrite(img->io.priv, (u8 *)img->l1 + lo, hi - lo,
			     img->h.l1_table_offset + lo);
	if (ret)
		return ret < 0 ? ret : -EIO;
	img->l1_dirty_lo = 0;
	img->l1_dirty_hi = 0;
	return 0;
}

/*
 * Under way, slices already written are clean but not yet durable: the
 * in-place path must not take them for durable (qcow2_write_map_inplace()).
 */
static void meta_wb_busy(struct qcow2_image *img, bool busy)
{
	qcow2_mutex_lock(&img->l2c_lock);
	img->meta_wb_busy = busy;
	qcow2_mutex_unlock(&img->l2c_lock);
}

static int meta_writeback(struct qcow2_image *img);

/**
 * qcow2_meta_flush() - the ordered write-back (see the file comment)
 * @img: writable image, writer context
 *
 * Return: 0 or -errno; on an error the image has stopped (wfail).
 */
int qcow2_meta_flush(struct qcow2_image *img)
{
	bool rt = img->rt_dirty_lo != img->rt_dirty_hi && !img->rt_moving;
	bool l1 = img->l1_dirty_lo != img->l1_dirty_hi;
	bool any = img->rc.nr_dirty || rt || img->l2c.nr_dirty || l1 ||
		   img->nr_frees;
	int ret;

	if (img->wfail)
		return -EROFS;
	if (img->has_data_file) {
		ret = qcow2_io_flush(&img->data_io);
		/*
		 * Nothing dirty: the image file has had no write since the
		 * last write-back ended with its flush (every metadata write
		 * leaves something dirty or flushes itself), so the data
		 * file's flush is all this one costs.
		 */
		if (ret)
			goto fail;
		if (!any)
			return 0;
	}
	ret = qcow2_io_flush(&img->io);
	if (ret || !any)
		goto out;
	img->ws.meta_flushes++;
	meta_wb_busy(img, true);
	ret = meta_writeback(img);
	meta_wb_busy(img, false);
	return ret;

fail:
	qcow2_write_fail(img, ret, "writing back metadata");
out:
	if (ret && !img->wfail)
		qcow2_write_fail(img, ret, "flushing the image file");
	return ret;
}

/* Steps 2-5 of the ordered write-back, after the data flush. */
static int meta_writeback(struct qcow2_image *img)
{
	bool rt = img->rt_dirty_lo != img->rt_dirty_hi && !img->rt_moving;
	bool l1 = img->l1_dirty_lo != img->l1_dirty_hi;
	int ret;

	/* It stops writing on failure itself. */
	ret = qcow2_rc_writeback(img);
	if (ret)
		return ret;
	if (rt) {
		ret = qcow2_io_flush(&img->io);
		if (!ret)
			ret = qcow2_rt_writeback(img);
		if (ret)
			goto fail;
	}
	if (img->l2c.nr_dirty) {
		ret = qcow2_io_flush(&img->io);
		if (!ret) {
			qcow2_mutex_lock(&img->l2c_lock);
			ret = qcow2_cache_writeback_unlocked(&img->l2c,
							     &img->l2c_lock,
							     l2_write_slice,
							     img);
			qcow2_mutex_unlock(&img->l2c_lock);
		}
		if (ret)
			goto fail;
	}
	if (l1) {
		ret = qcow2_io_flush(&img->io);
		if (!ret)
			ret = l1_writeback(img);
		if (ret)
			goto fail;
	}
	ret = qcow2_io_flush(&img->io);
	if (ret)
		goto fail;
	if (img->nr_frees) {
		ret = qcow2_apply_frees(img);
		if (!ret)
			ret = qcow2_rc_writeback(img);
		if (!ret)
			ret = qcow2_io_flush(&img->io);
		if (ret)
			goto fail;
	}
	return 0;

fail:
	qcow2_write_fail(img, ret, "writing back metadata");
	return ret;
}

struct snap_ranges {
	struct qcow2_image *img;
	u64 table_end;
	u32 nr;
};

static int snap_collect(void *arg, const struct qcow2_snapshot *s)
{
	struct snap_ranges *sr = arg;
	struct qcow2_image *img = sr->img;

	if (s->entry_end > sr->table_end)
		sr->table_end = s->entry_end;
	if (img->meta_ranges && s->l1_size) {
		img->meta_ranges[2 * sr->nr] = s->l1_table_offset;
		img->meta_ranges[2 * sr->nr + 1] = (u64)s->l1_size * 8;
	}
	sr->nr++;
	return 0;
}

/* Snapshot table and snapshot L1 tables, for the overlap check. */
static int meta_ranges_load(struct qcow2_image *img, struct qcow2_err *err)
{
	struct snap_ranges sr = { .img = img };
	u32 n = img->h.nb_snapshots;
	int ret;

	if (!n)
		return 0;
	img->meta_ranges = qcow2_zalloc(sizeof(u64) * 2 * (n + 1));
	if (!img->meta_ranges) {
		qcow2_err_set(err, "out of memory for the snapshot list");
		return -ENOMEM;
	}
	sr.table_end = img->h.snapshots_offset;
	ret = qcow2_snapshot_walk(img, snap_collect, &sr, err);
	if (ret)
		return ret;
	img->meta_ranges[2 * n] = img->h.snapshots_offset;
	img->meta_ranges[2 * n + 1] = sr.table_end - img->h.snapshots_offset;
	img->nr_meta_ranges = n + 1;
	return 0;
}

/**
 * qcow2_write_enter() - the header changes owed before the first write
 * @img: writable image, wlock held
 *
 * Marks the persistent bitmaps being kept in use, then clears the
 * autoclear bits (all but bit 0 while bitmaps are kept), durably, before
 * anything else of the image changes; a no-op once done. On failure
 * nothing else may be written.
 *
 * Return: 0 or the -errno of the directory or header write.
 */
int qcow2_write_enter(struct qcow2_image *img)
{
	u64 old = img->h.autoclear_features;
	u64 keep = img->bm_keep ? QCOW2_AUTOCLEAR_BITMAPS : 0;
	int ret;

	qcow2_mutex_assert_held(&img->wlock);
	if (!img->hdr_pending)
		return 0;
	/* Bitmaps being kept are marked in use before anything changes. */
	ret = qcow2_bitmaps_enter(img);
	if (ret)
		return ret;
	if (old & ~keep) {
		img->h.autoclear_features = old & keep;
		ret = qcow2_header_write(img);
		if (ret) {
			img->h.autoclear_features = old;
			return ret;
		}
	}
	qcow2_mutex_lock(&img->l2c_lock);
	img->hdr_pending = false;
	qcow2_mutex_unlock(&img->l2c_lock);
	return 0;
}

/**
 * qcow2_write_open() - prepare an opened image for writing
 * @img: image with header, L1 and L2 cache loaded, flags WRITABLE
 * @opts: data_io and refcount cache size
 * @err: reason on failure
 *
 * Loads the refcount table and the snapshot ranges. Writes nothing: the
 * autoclear bits (which the spec requires a writer that does not maintain
 * what they stand for to clear) are cleared by the first change, see
 * qcow2_write_enter(); unknown compatible bits and header extensions stay
 * as they are.
 */
int qcow2_write_open(struct qcow2_image *img,
		     const struct qcow2_open_opts *opts, struct qcow2_err *err)
{
	struct qcow2_header *h = &img->h;
	int ret;

	if (!img->io.pwrite || !img->io.flush) {
		qcow2_err_set(err, "the image file was not opened for writing");
		return -EINVAL;
	}
	img->has_data_file = h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
	if (img->has_data_file) {
		if (!opts->data_io || !opts->data_io->flush) {
			qcow2_err_set(err, "the data file was not opened for writing");
			return -EINVAL;
		}
		img->data_io = *opts->data_io;
	} else {
		img->data_io = img->io;
	}
	img->has_backing = h->backing_file.len != 0;
	img->max_file_size = opts->max_file_size;
	img->hdr_buf = qcow2_alloc_io(QCOW2_HDR_SECTOR);
	img->zero_buf = qcow2_alloc_io(QCOW2_ZERO_BUF_BYTES);
	img->cow_head = qcow2_alloc(h->cluster_size);
	img->cow_tail = qcow2_alloc(h->cluster_size);
	if (!img->hdr_buf || !img->zero_buf || !img->cow_head ||
	    !img->cow_tail) {
		qcow2_err_set(err, "out of memory for the write path");
		ret = -ENOMEM;
		goto fail;
	}
	memset(img->zero_buf, 0, QCOW2_ZERO_BUF_BYTES);
	ret = img->io.pread(img->io.priv, img->hdr_buf, QCOW2_HDR_SECTOR, 0);
	if (ret) {
		qcow2_err_set(err, "cannot read the header: error %d", ret);
		ret = ret < 0 ? ret : -EIO;
		goto fail;
	}
	ret = meta_ranges_load(img, err);
	if (ret)
		goto fail;
	ret = qcow2_refcount_open(img, opts->rc_cache_bytes, err);
	if (ret)
		goto fail;
	ret = qcow2_bitmaps_open(img, err);
	if (ret)
		goto fail;
	qcow2_mutex_init(&img->wlock);
	qcow2_waitq_init(&img->inflight_wq);
	img->writable = true;

	/* Made by the first change (qcow2_write_enter()), not here. */
	img->hdr_pending = h->version >= 3 &&
			   ((h->autoclear_features &
			     ~(img->bm_keep ? QCOW2_AUTOCLEAR_BITMAPS : 0)) ||
			    img->nr_bm);
	return 0;

fail:
	qcow2_write_close(img);
	return ret;
}

/**
 * qcow2_write_close() - write back and release the write path
 * @img: image; qcow2_write_open() may have failed half way
 *
 * A last ordered flush unless the image has stopped; errors are logged.
 */
void qcow2_write_close(struct qcow2_image *img)
{
	if (img->writable) {
		qcow2_write_finish(img);
		qcow2_waitq_destroy(&img->inflight_wq);
		qcow2_mutex_destroy(&img->wlock);
		img->writable = false;
	}
	qcow2_bitmaps_close(img);
	qcow2_refcount_close(img);
	qcow2_free_io(img->hdr_buf);
	qcow2_free_io(img->zero_buf);
	qcow2_free(img->cow_head);
	qcow2_free(img->cow_tail);
	qcow2_free(img->meta_ranges);
	img->hdr_buf = NULL;
	img->zero_buf = NULL;
	img->cow_head = NULL;
	img->cow_tail = NULL;
	img->meta_ranges = NULL;
}

/**
 * qcow2_flush() - make every completed write durable
 * @img: writable image
 *
 * Context: may sleep; takes wlock (l2c_lock only briefly, never across
 * I/O: lookups, reads and in-place writes go on during the flush).
 * Return: 0, -EROFS, or the -errno of the failing step.
 */
int qcow2_flush(struct qcow2_image *img)
{
	int ret;

	if (!img->writable)
		return -EROFS;
	qcow2_mutex_lock(&img->wlock);
	ret = qcow2_meta_flush(img);
	/* Frees applied above wrote refcounts: one more pass settles them. */
	if (!ret && (img->rc.nr_dirty || img->nr_frees))
		ret = qcow2_meta_flush(img);
	qcow2_mutex_unlock(&img->wlock);
	return ret;
}

/**
 * qcow2_write_finish() - the last flush: data, metadata, bitmaps
 * @img: writable image with no write in flight or to come
 *
 * qcow2_flush(), then the persistent bitmaps are stored and marked
 * consistent again (qcow2_bitmaps_store()). Called again (or by
 * qcow2_write_close()) it only flushes.
 *
 * Context: may sleep; takes wlock.
 * Return: 0 or the -errno of the failing step.
 */
int qcow2_write_finish(struct qcow2_image *img)
{
	int ret = qcow2_flush(img);

	if (ret)
		return ret;
	qcow2_mutex_lock(&img->wlock);
	ret = qcow2_bitmaps_store(img);
	qcow2_mutex_unlock(&img->wlock);
	return ret;
}

int qcow2_rc_resize(struct qcow2_image *img, u64 bytes)
{
	struct qcow2_cache fresh, old;
	u64 nr;
	int ret;

	if (!img->writable)
		return -EROFS;
	nr = min_t(u64, bytes, QCOW2_RC_MAX_BYTES) / img->rc.slot_bytes;
	ret = qcow2_cache_init(&fresh, img->rc.slot_bytes,
			       max_t(u64, nr, QCOW2_CACHE_MIN_SLOTS));
	if (ret)
		return ret;
	qcow2_mutex_lock(&img->wlock);
	ret = qcow2_rc_writeback(img);
	if (!ret) {
		old = img->rc;
		fresh.stats = old.stats;
		img->rc = fresh;
	}
	qcow2_mutex_unlock(&img->wlock);
	qcow2_cache_destroy(ret ? &fresh : &old);
	return ret;
}

u64 qcow2_rc_bytes(const struct qcow2_image *img)
{
	return (u64)img->rc.nr_slots * img->rc.slot_bytes;
}

/*
 * Statistics are read without wlock, which may be held across I/O: each
 * counter is one aligned 64-bit word, so a reader sees a recent value,
 * never a torn one (sysfs must not wait for the image file).
 */
void qcow2_rc_get_stats(struct qcow2_image *img, struct qcow2_cache_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!img->writable)
		return;
	st->hits = READ_ONCE(img->rc.stats.hits);
	st->misses = READ_ONCE(img->rc.stats.misses);
	st->evictions = READ_ONCE(img->rc.stats.evictions);
}

void qcow2_write_get_stats(struct qcow2_image *img,
			   struct qcow2_write_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!img->writable)
		return;
	st->alloc_clusters = READ_ONCE(img->ws.alloc_clusters);
	st->freed_clusters = READ_ONCE(img->ws.freed_clusters);
	st->cow_bytes = READ_ONCE(img->ws.cow_bytes);
	st->l2_tables_allocated = READ_ONCE(img->ws.l2_tables_allocated);
	st->meta_flushes = READ_ONCE(img->ws.meta_flushes);
	st->overlaps = READ_ONCE(img->ws.overlaps);
}

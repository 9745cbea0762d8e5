// SPDX-License-Identifier: GPL-2.0
/*
 * L2 table slice cache: a policy on the slot cache (qcow2_cache.c).
 *
 * Policy: L2 tables are cached in slices of min(cluster size, 4 KiB) bytes,
 * so a lookup reads at most one page of metadata however large the clusters
 * are, and the cache can be sized in small steps. A slice is keyed by its host
 * offset in the image file. When every slot holds a slice, the least
 * recently used clean one is evicted. On a writable image the write path
 * changes slices in place and marks them dirty; dirty slices are never
 * evicted, only written back in order by qcow2_meta_flush().
 *
 * Misses: the slot is inserted as loading under its key, the lock is
 * dropped for the read, and the slot is published (or forgotten, if the
 * read failed) under the lock again. Lookups of other slices go on during
 * the read; a lookup of the same slice waits on l2c_wq for l2c_seq to move,
 * which every finished load does. So a slot never holds bytes that were not
 * read, no slice is read twice at once, and l2c_lock is never held across
 * I/O.
 *
 * Lock: struct qcow2_image::l2c_lock guards the whole cache, including the
 * statistics, l2c_seq and the L1 table. A pointer __qcow2_l2c_get() returns
 * is valid only until the lock is released, and __qcow2_l2c_get() itself
 * may drop and retake it, so callers look slices up again after any call
 * that may sleep. Resizing builds the new cache outside the lock, waits for
 * loads in flight and swaps it in under the lock.
 */
#include "qcow2.h"

/**
 * qcow2_l2c_cover_bytes() - bytes of L2 slices that map the whole disk
 * @img: image with its header decoded
 *
 * More cache than this can never be used, so no request may allocate more.
 *
 * Context: any.
 * Return: bytes, a multiple of the slice size.
 */
u64 qcow2_l2c_cover_bytes(const struct qcow2_image *img)
{
	const struct qcow2_header *h = &img->h;
	u32 slice_bits = min_t(u32, h->cluster_bits, QCOW2_L2C_MAX_SLICE_BITS);
	u32 epsb = slice_bits - (h->extended_l2 ? 4 : 3);
	/* size <= 2^61: neither sum overflows. */
	u64 clusters = (h->size + h->cluster_size - 1) >> h->cluster_bits;
	u64 slices = (clusters + (1ULL << epsb) - 1) >> epsb;

	return slices << slice_bits;
}

/**
 * qcow2_l2c_slices_for() - slices a cache of @bytes holds for @img
 * @img: image whose cache geometry (slice size) applies
 * @bytes: requested bytes, clamped to what maps the whole disk and to
 *         QCOW2_L2C_MAX_BYTES
 *
 * Context: any.
 * Return: slice count, rounded up, at least QCOW2_L2C_MIN_SLICES.
 */
u32 qcow2_l2c_slices_for(const struct qcow2_image *img, u64 bytes)
{
	u32 slice_bytes = img->l2c.slot_bytes;
	u32 nr;

	bytes = min_t(u64, bytes, qcow2_l2c_cover_bytes(img));
	/* Clamped below 2^31: a 32-bit division is enough. */
	if (bytes > QCOW2_L2C_MAX_BYTES)
		bytes = QCOW2_L2C_MAX_BYTES;
	nr = ((u32)bytes + slice_bytes - 1) / slice_bytes;
	return max_t(u32, nr, QCOW2_L2C_MIN_SLICES);
}

/**
 * __qcow2_l2c_get() - find or read one L2 slice
 * @img: open image; l2c_lock held
 * @slice_off: host offset of the slice, slice aligned
 * @data: the slice's bytes (big-endian entries), valid until the lock drops
 *
 * Context: l2c_lock held on entry and return, but dropped while a miss
 * reads the slice or while waiting for another caller's read of it.
 * Return: 0, -EAGAIN (every slot is dirty: the writer must write back
 * first), or the -errno of the read (the cache is unchanged then).
 */
int __qcow2_l2c_get(struct qcow2_image *img, u64 slice_off, const u8 **data)
{
	struct qcow2_cache *c = &img->l2c;
	bool busy;
	u8 *buf;
	s32 slot;
	int ret;

	qcow2_mutex_assert_held(&img->l2c_lock);

	for (;;) {
		*data = qcow2_cache_lookup_ex(c, slice_off, &busy);
		if (*data)
			return 0;
		buf = busy ? NULL : qcow2_cache_reserve(c, &slot);
		if (buf)
			break;
		/*
		 * Every slot dirty: only a writer can get here (see
		 * qcow2_write.c), and it writes back first. Slots being
		 * loaded come free when their loads end: wait for one.
		 */
		if (!busy && !c->nr_loading)
			return -EAGAIN;
		qcow2_wait_change(&img->l2c_wq, &img->l2c_lock, &img->l2c_seq,
				  img->l2c_seq);
	}

	qcow2_cache_insert_loading(c, slot, slice_off);
	qcow2_mutex_unlock(&img->l2c_lock);
	ret = img->io.pread(img->io.priv, buf, c->slot_bytes, slice_off);
	qcow2_mutex_lock(&img->l2c_lock);
	/* The cache cannot have been replaced: resize waits for loads. */
	qcow2_cache_loaded(c, slot, !ret);
	WRITE_ONCE(img->l2c_seq, img->l2c_seq + 1);
	qcow2_wake_all(&img->l2c_wq);
	if (ret)
		return ret < 0 ? ret : -EIO;
	*data = buf;
	return 0;
}

/**
 * qcow2_l2c_resize() - change the L2 cache capacity
 * @img: open image
 * @bytes: new size; rounded up to slices, at least QCOW2_L2C_MIN_SLICES,
 *         at most QCOW2_L2C_MAX_BYTES
 *
 * The new cache starts empty; the statistics carry over. On a writable
 * image the dirty slices are written back (ordered) first.
 *
 * Context: may sleep; takes wlock (writable) and l2c_lock, which the caller
 * must not hold.
 * Return: 0, -ENOMEM or a write-back error (old cache kept).
 */
int qcow2_l2c_resize(struct qcow2_image *img, u64 bytes)
{
	struct qcow2_cache fresh, old;
	int ret;

	ret = qcow2_cache_init(&fresh, img->l2c.slot_bytes,
			       qcow2_l2c_slices_for(img, bytes));
	if (ret)
		return ret;

	/* A writable image writes its dirty slices back first. */
	if (img->writable) {
		qcow2_mutex_lock(&img->wlock);
		if (img->l2c.nr_dirty)
			ret = qcow2_meta_flush(img);
	}
	qcow2_mutex_lock(&img->l2c_lock);
	while (img->l2c.nr_loading)
		qcow2_wait_change(&img->l2c_wq, &img->l2c_lock, &img->l2c_seq,
				  img->l2c_seq);
	if (!ret) {
		old = img->l2c;
		fresh.stats = old.stats;
		img->l2c = fresh;
	}
	qcow2_mutex_unlock(&img->l2c_lock);
	if (img->writable)
		qcow2_mutex_unlock(&img->wlock);

	qcow2_cache_destroy(ret ? &fresh : &old);
	return ret;
}

/**
 * qcow2_l2c_bytes() - current L2 cache capacity in bytes
 * @img: open image
 *
 * Context: any; reads two words without the lock (a racing resize may
 * give a stale value, never a torn one on 64-bit hosts).
 * Return: capacity in bytes.
 */
u64 qcow2_l2c_bytes(const struct qcow2_image *img)
{
	return (u64)img->l2c.nr_slots * img->l2c.slot_bytes;
}

/**
 * qcow2_l2c_get_stats() - snapshot the L2 cache counters
 * @img: open image
 * @st: filled with the counters since open
 *
 * Context: may sleep; takes l2c_lock.
 */
void qcow2_l2c_get_stats(struct qcow2_image *img, struct qcow2_cache_stats *st)
{
	qcow2_mutex_lock(&img->l2c_lock);
	*st = img->l2c.stats;
	qcow2_mutex_unlock(&img->l2c_lock);
}

/**
 * qcow2_image_shrinkable() - cached slices memory pressure could take back
 * @img: open image
 *
 * Context: any; an estimate read without locks (for a shrinker's count).
 * Return: clean L2 (and refcount) slices beyond what must stay cached.
 */
u64 qcow2_image_shrinkable(struct qcow2_image *img)
{
	u64 n = qcow2_cache_shrinkable(&img->l2c, READ_ONCE(img->l2c.nr_dirty));

	if (img->writable)
		n += qcow2_cache_shrinkable(&img->rc,
					    READ_ONCE(img->rc.nr_dirty));
	return n;
}

/**
 * qcow2_image_shrink() - give back the memory of up to @nr clean slices
 * @img: open image
 * @nr: slices wanted
 *
 * L2 slices first, then refcount slices. As many clean slices as dirty
 * ones stay cached, so readers always find a clean slot to reuse and
 * writers keep their room (see qcow2_write.c); nothing is written back.
 *
 * Context: may be called from memory reclaim: only tries the locks
 * (l2c_lock, wlock) and gives up on a busy one, never sleeps for I/O.
 * Return: slices given back.
 */
u64 qcow2_image_shrink(struct qcow2_image *img, u64 nr)
{
	u64 done = 0;

	if (qcow2_mutex_trylock(&img->l2c_lock)) {
		done = qcow2_cache_shrink(&img->l2c,
					  min_t(u64, nr, 0xffffffffU),
					  img->l2c.nr_dirty);
		qcow2_mutex_unlock(&img->l2c_lock);
	}
	if (done < nr && img->writable && qcow2_mutex_trylock(&img->wlock)) {
		done += qcow2_cache_shrink(&img->rc,
					   min_t(u64, nr - done, 0xffffffffU),
					   img->rc.nr_dirty);
		qcow2_mutex_unlock(&img->wlock);
	}
	return done;
}

/**
 * qcow2_image_released() - slices given back under memory pressure so far
 * @img: open image
 *
 * Context: any; counters read without locks.
 */
u64 qcow2_image_released(struct qcow2_image *img)
{
	u64 n = READ_ONCE(img->l2c.stats.released);

	if (img->writable)
		n += READ_ONCE(img->rc.stats.released);
	return n;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * Guest writes, write-zeroes and discard on a writable image.
 *
 * A write is cut into steps, each inside one L2 slice, each one of:
 *
 *  - in place: clusters the image owns (COPIED) whose bytes are data
 *    already; runs of host-contiguous clusters become one write;
 *  - whole-cluster allocation: clusters that need a new host cluster (not
 *    allocated, zero, compressed, shared with a snapshot); a run of them
 *    gets contiguous host clusters and ONE write carries the old head of
 *    the first cluster, the guest bytes and the old tail of the last
 *    (copy-on-write merged into the data write);
 *  - subcluster allocation (extended L2): a cluster partly written whose
 *    other subclusters must keep their state; only the touched
 *    subclusters are written (their old head/tail merged again) and
 *    marked allocated.
 *
 * The L2 entry changes in the cache only after the data write completed;
 * the old host cluster, if any, is freed once the new entry is durable
 * (qcow2_free_later()).
 *
 * Locks (the full list and order are in qcow2.h): every operation here
 * that changes the image runs in writer context, wlock held for the whole
 * operation. l2c_lock is taken only around reading and changing L1 and L2
 * entries, never across I/O: allocation, refcount I/O, copy-on-write reads,
 * data writes and write-back run with it dropped, so lookups and reads go
 * on. An L2 slice may be evicted whenever l2c_lock is dropped (if clean), so
 * each access looks it up again; wlock keeps its entries unchanged
 * meanwhile.
 *
 * Allocating steps (whole clusters, subclusters) take their host clusters
 * under wlock, then record themselves in img->inflight and drop wlock for
 * their copy-on-write reads and their data write, on buffers of their own;
 * they retake it to make the new L2 entries visible. A writer whose range
 * meets such a record waits for it (w_wait_inflight()), as QEMU's cluster
 * allocations wait for the ones they depend on; others go on meanwhile.
 * When buffers cannot be had, the step keeps wlock and uses the image's
 * own (img->cow_head, cow_tail), so writing always makes progress.
 *
 * In-place writes of owned clusters do not need wlock at all:
 * qcow2_write_map_inplace() maps them under l2c_lock alone and the caller
 * writes the data with no engine lock held. Such a write may still be in
 * flight when a discard or an overwrite frees its cluster; the freed
 * cluster is neither punched nor reused until the caller's drain callback
 * (qcow2_io::drain) says every such write has finished.
 *
 * Cache pressure: before a change that may dirty one more L2 slice, the
 * writer runs the ordered write-back if that would leave less than half the
 * slices clean (w_dirty_room()), so a reader, at any moment, finds a clean
 * slice to evict and never needs to write anything. A cache that maps the
 * whole disk (the default up to 8 MiB of L2) needs no such room.
 */
#include "qcow2.h"

#define QCOW2_L2_BITMAP_ALLOC		0x00000000ffffffffULL
#define QCOW2_L2_BITMAP_ZERO		0xffffffff00000000ULL

enum wmode {
	W_INPLACE,	/* owned data: write where it is */
	W_FULL,		/* new host cluster, whole cluster written */
	W_SUB,		/* extended L2: only the touched subclusters */
};

struct wclass {
	enum wmode mode;
	u64 host;	/* INPLACE, SUB: the cluster's host offset, 0 if none */
};

enum zmode {
	Z_DISCARD,
	Z_ZERO_UNMAP,
	Z_ZERO_KEEP,
};

static u32 w_slice_bits(const struct qcow2_header *h)
{
	return min_t(u32, h->cluster_bits, QCOW2_L2C_MAX_SLICE_BITS);
}

static u32 w_slice_entry_bits(const struct qcow2_header *h)
{
	return w_slice_bits(h) - (h->extended_l2 ? 4 : 3);
}

/*
 * Make the L2 table of L1 entry @l1_idx one the image owns: allocate it
 * (zeroed) if absent, copy it if it is shared with a snapshot.
 */
static int l2_make_writable(struct qcow2_image *img, u64 l1_idx, u64 old_off)
{
	u32 cs = img->h.cluster_size;
	u64 new_off, key;
	int ret;

	ret = qcow2_alloc_clusters(img, 1, &new_off, NULL);
	if (ret)
		return ret;
	if (old_off) {
		ret = qcow2_overlap_check(img, QCOW2_OL_L2, new_off, cs);
		if (!ret)
			ret = qcow2_io_ret(img->io.pread(img->io.priv, img->cow_head,
							 cs, old_off));
		if (!ret)
			ret = qcow2_io_ret(img->io.pwrite(img->io.priv,
							  img->cow_head, cs,
							  new_off));
		if (!ret)
			qcow2_grow_file(img, new_off + cs);
	} else {
		ret = qcow2_zero_clusters_on_disk(img, new_off, cs,
						  QCOW2_OL_L2);
	}
	if (ret) {
		qcow2_rc_update(img, new_off, cs, -1, false);
		return ret;
	}
	if (old_off) {
		ret = qcow2_free_later(img, old_off, cs, false);
		if (ret)
			return ret;
	}
	qcow2_mutex_lock(&img->l2c_lock);
	for (key = new_off; key < new_off + cs; key += img->l2c.slot_bytes)
		qcow2_cache_drop(&img->l2c, key);
	img->l1[l1_idx] = cpu_to_be64(new_off | QCOW2_OFLAG_COPIED);
	qcow2_mutex_unlock(&img->l2c_lock);
	if (img->l1_dirty_lo == img->l1_dirty_hi) {
		img->l1_dirty_lo = l1_idx;
		img->l1_dirty_hi = l1_idx + 1;
	} else {
		img->l1_dirty_lo = min_t(u32, img->l1_dirty_lo, l1_idx);
		img->l1_dirty_hi = max_t(u32, img->l1_dirty_hi, l1_idx + 1);
	}
	img->ws.l2_tables_allocated++;
	return 0;
}

/*
 * Where the L2 entry of guest cluster @cl lives: *slice_off (0 if there is
 * no table) and its index *idx in that slice. With @make, the table is made
 * one the image owns first. Writer context; l1 changes only under wlock, so
 * it is read here without l2c_lock.
 */
static int w_slice(struct qcow2_image *img, u64 cl, bool make, u64 *slice_off,
		   u32 *idx)
{
	const struct qcow2_header *h = &img->h;
	u64 l1_idx = cl >> h->l2_bits;
	u32 l2_idx = cl & ((1U << h->l2_bits) - 1);
	u32 epsb = w_slice_entry_bits(h);
	u64 entry, l2_off;
	int ret;

	*slice_off = 0;
	if (l1_idx >= h->l1_size)
		return -EUCLEAN;
	entry = be64_to_cpu(img->l1[l1_idx]);
	ret = qcow2_l1_entry_decode(h, entry, &l2_off);
	if (ret) {
		qcow2_log_ratelimited("L1 table at %#llx, index %llu: bad entry %#llx",
				      h->l1_table_offset, l1_idx, entry);
		return ret;
	}
	if (l2_off >= img->alloc_end) {
		qcow2_log_ratelimited("L1 table at %#llx, index %llu: L2 %#llx past EOF",
				      h->l1_table_offset, l1_idx, l2_off);
		return -EUCLEAN;
	}
	if (make && (!l2_off || !(entry & QCOW2_OFLAG_COPIED))) {
		ret = l2_make_writable(img, l1_idx, l2_off);
		if (ret)
			return ret;
		l2_off = be64_to_cpu(img->l1[l1_idx]) & QCOW2_L1E_OFFSET_MASK;
	}
	if (!l2_off)
		return 0;
	*slice_off = l2_off + ((u64)(l2_idx >> epsb) << w_slice_bits(h));
	*idx = l2_idx & ((1U << epsb) - 1);
	return 0;
}

/*
 * The bytes of L2 slice @slice_off, l2c_lock held (it may be dropped and
 * retaken inside). When every slice is dirty, the writer writes back first.
 */
static int w_get(struct qcow2_image *img, u64 slice_off, u8 **data)
{
	const u8 *d;
	int ret;

	qcow2_mutex_assert_held(&img->l2c_lock);
	ret = __qcow2_l2c_get(img, slice_off, &d);
	if (ret == -EAGAIN) {
		qcow2_mutex_unlock(&img->l2c_lock);
		ret = qcow2_meta_flush(img);
		qcow2_mutex_lock(&img->l2c_lock);
		if (!ret)
			ret = __qcow2_l2c_get(img, slice_off, &d);
	}
	*data = ret ? NULL : (u8 *)d;
	return ret;
}

/* Mark the cached slice @slice_off dirty before changing it; l2c_lock held. */
static u8 *w_dirty(struct qcow2_image *img, u64 slice_off)
{
	return qcow2_cache_lookup_dirty(&img->l2c, slice_off);
}

/*
 * Before a change may mark one more slice dirty: keep at least half the L2
 * cache clean at every moment, so that a reader (which never writes back)
 * always finds a slot to read into, waiting at most for loads in flight.
 * Only the writer marks slices dirty, one slice per change.
 */
static int w_dirty_room(struct qcow2_image *img)
{
	/* Slots shrunk under memory pressure do not count. */
	u32 slots = qcow2_cache_capacity(&img->l2c);

	/*
	 * A cache that holds every L2 slice of the disk needs no room kept:
	 * dirty slices are the disk's own, so a reader's missing slice
	 * always finds a slot that is not dirty.
	 */
	if ((u64)slots * img->l2c.slot_bytes >= qcow2_l2c_cover_bytes(img))
		return 0;
	if ((READ_ONCE(img->l2c.nr_dirty) + 1) * 2 > slots)
		return qcow2_meta_flush(img);
	return 0;
}

/*
 * Make room for @n more pending frees, so that recording them under
 * l2c_lock never has to write anything back.
 */
static int w_frees_room(struct qcow2_image *img, u32 n)
{
	if (img->nr_frees + n <= img->max_frees)
		return 0;
	return qcow2_meta_flush(img);
}

/* Decode one (sub)cluster, logging corruption as the reader does. */
static int w_decode(struct qcow2_image *img, u64 entry, u64 bitmap, u32 sc,
		    u64 cl, struct qcow2_l2_desc *d)
{
	int ret = qcow2_l2_entry_decode(&img->h, entry, bitmap, sc, d);

	if (ret)
		qcow2_log_ratelimited("L2 entry of guest cluster %llu: bad %#llx/%#llx",
				      cl, entry, bitmap);
	return ret;
}

/* Free what an L2 entry pointed at, once the entry replacing it is durable. */
static int free_old(struct qcow2_image *img, u64 entry, u64 cl)
{
	struct qcow2_l2_desc d;
	u64 host;
	int ret;

	if (entry & QCOW2_OFLAG_COMPRESSED) {
		ret = w_decode(img, entry, 0, 0, cl, &d);
		if (ret)
			return ret;
		return qcow2_free_later(img, d.comp_off, d.comp_bytes, false);
	}
	host = entry & QCOW2_L2E_OFFSET_MASK;
	if (!host)
		return 0;
	return qcow2_free_later(img, host, img->h.cluster_size,
				img->has_data_file);
}

/* How cluster @cl, written at [a, b) of it, is to be written. */
static int classify(struct qcow2_image *img, u64 cl, const u8 *e, u32 a,
		    u32 b, struct wclass *w)
{
	const struct qcow2_header *h = &img->h;
	u64 entry = qcow2_get_be64(e);
	u64 bitmap = h->extended_l2 ? qcow2_get_be64(e + 8) : 0;
	struct qcow2_l2_desc d;
	u32 sc, first, last;
	int ret;

	ret = w_decode(img, entry, bitmap, 0, cl, &d);
	if (ret)
		return ret;
	w->host = 0;
	if (!h->extended_l2) {
		if (d.type == QCOW2_SC_NORMAL && (entry & QCOW2_OFLAG_COPIED)) {
			w->mode = W_INPLACE;
			w->host = d.host_off;
		} else {
			w->mode = W_FULL;
		}
		return 0;
	}
	if (entry & QCOW2_OFLAG_COMPRESSED) {
		w->mode = W_FULL;
		return 0;
	}
	w->host = entry & QCOW2_L2E_OFFSET_MASK;
	if (w->host && !(entry & QCOW2_OFLAG_COPIED)) {
		w->mode = W_FULL;
		w->host = 0;
		return 0;
	}
	if (!w->host) {
		w->mode = (!a && b == h->cluster_size) ? W_FULL : W_SUB;
		return 0;
	}
	first = a >> h->subcluster_bits;
	last = (b - 1) >> h->subcluster_bits;
	w->mode = W_INPLACE;
	for (sc = first; sc <= last; sc++) {
		ret = w_decode(img, entry, bitmap, sc, cl, &d);
		if (ret)
			return ret;
		if (d.type != QCOW2_SC_NORMAL)
			w->mode = W_SUB;
	}
	return 0;
}

static int check_data(struct qcow2_image *img, u64 host, u64 len)
{
	if (img->has_data_file)
		return 0;
	return qcow2_overlap_check(img, QCOW2_OL_DATA, host, len);
}

/* After a step: keep half the L2 cache clean, bound pending frees. */
static int w_pressure(struct qcow2_image *img)
{
	if (img->rc.nr_dirty * 2 > qcow2_cache_capacity(&img->rc))
		return qcow2_meta_flush(img);
	return 0;
}

/* Give back clusters allocated for a write that failed. */
static void w_unalloc(struct qcow2_image *img, u64 host, u64 len)
{
	if (img->has_data_file)
		return;
	if (qcow2_rc_update(img, host, len, -1, false))
		qcow2_write_fail(img, -EIO, "releasing clusters of a failed write");
}

/*
 * Host clusters for up to *n guest clusters from @cl: allocated (maybe
 * fewer, *n updated), or the same offsets in a data file.
 */
static int w_alloc(struct qcow2_image *img, u64 cl, u32 *n, u64 *host)
{
	if (img->has_data_file) {
		*host = cl << img->h.cluster_bits;
		return 0;
	}
	return qcow2_alloc_clusters(img, *n, host, n);
}

static void w_grow_file(struct qcow2_image *img, u64 end)
{
	if (!img->has_data_file)
		qcow2_grow_file(img, end);
}

/* Does any allocation in flight own guest clusters of [cl, end)? */
static bool w_inflight_meets(struct qcow2_image *img, u64 cl, u64 end)
{
	struct qcow2_inflight *r;

	for (r = img->inflight; r; r = r->next)
		if (r->cl < end && cl < r->end)
			return true;
	return false;
}

/* Wait, wlock dropped meanwhile, until no allocation owns [cl, end). */
static void w_wait_inflight(struct qcow2_image *img, u64 cl, u64 end)
{
	qcow2_mutex_assert_held(&img->wlock);
	while (w_inflight_meets(img, cl, end))
		qcow2_wait_change(&img->inflight_wq, &img->wlock,
				  &img->inflight_seq, img->inflight_seq);
}

/* The list changes under wlock and l2c_lock: either lock reads it. */
static void w_inflight_add(struct qcow2_image *img, struct qcow2_inflight *rec)
{
	qcow2_mutex_lock(&img->l2c_lock);
	rec->next = img->inflight;
	img->inflight = rec;
	qcow2_mutex_unlock(&img->l2c_lock);
}

static void w_inflight_del(struct qcow2_image *img, struct qcow2_inflight *rec)
{
	struct qcow2_inflight **p;

	qcow2_mutex_lock(&img->l2c_lock);
	for (p = &img->inflight; *p; p = &(*p)->next) {
		if (*p == rec) {
			*p = rec->next;
			break;
		}
	}
	WRITE_ONCE(img->inflight_seq, img->inflight_seq + 1);
	qcow2_mutex_unlock(&img->l2c_lock);
	qcow2_wake_all(&img->inflight_wq);
}

/*
 * The data phase of an allocating step on guest clusters [cl, cl + n):
 * copy-on-write reads of the old bytes at [head_off, +hl) and
 * [tail_off, +tl), then one write at @host of head, guest bytes
 * [off, +wlen) and tail. Runs with wlock dropped, the clusters recorded as
 * in flight, on buffers of its own; without buffers, with wlock held on
 * the image's (also when the copies in flight already hold
 * QCOW2_MAX_COW_INFLIGHT bytes, so memory stays bounded whatever the queue
 * depth and cluster size). Writer context on entry and return.
 */
static int w_data(struct qcow2_image *img, u64 cl, u32 n, u64 host,
		  u64 head_off, u32 hl, u64 off, u64 wlen, u64 tail_off,
		  u32 tl, const struct qcow2_wsrc *src)
{
	struct qcow2_inflight rec = { .cl = cl, .end = cl + n };
	/* Bounded: past QCOW2_MAX_COW_INFLIGHT, copies wait their turn. */
	bool room = img->cow_inflight_bytes + hl + tl <= QCOW2_MAX_COW_INFLIGHT;
	u8 *head = room && hl ? qcow2_alloc(hl) : NULL;
	u8 *tail = room && tl ? qcow2_alloc(tl) : NULL;
	bool alone = room && (!hl || head) && (!tl || tail);
	int ret = 0;

	if (alone) {
		img->cow_inflight_bytes += hl + tl;
		w_inflight_add(img, &rec);
		qcow2_mutex_unlock(&img->wlock);
	} else {
		qcow2_free(head);
		qcow2_free(tail);
		head = img->cow_head;
		tail = img->cow_tail;
	}
	if (hl)
		ret = src->read(src->arg, head_off, hl, head);
	if (!ret && tl)
		ret = src->read(src->arg, tail_off, tl, tail);
	if (!ret)
		ret = src->write(src->arg, host, head, hl, off, wlen, tail, tl);
	if (alone) {
		qcow2_mutex_lock(&img->wlock);
		img->cow_inflight_bytes -= hl + tl;
		w_inflight_del(img, &rec);
		qcow2_free(head);
		qcow2_free(tail);
	}
	return ret;
}

/* Whole-cluster allocation of @n clusters from @cl; the write is [off, +wlen). */
static int step_full(struct qcow2_image *img, u64 cl, u32 n, u64 off, u64 wlen,
		     u64 slice_off, u32 idx, const struct qcow2_wsrc *src,
		     u64 *done)
{
	u32 cb = img->h.cluster_bits;
	u64 start = cl << cb, run;
	u32 hl = off - start, tl;
	u64 host;
	u8 *data;
	u32 i, epsb = w_slice_entry_bits(&img->h);
	int ret;

	ret = w_alloc(img, cl, &n, &host);
	if (ret)
		return ret;
	/* A shorter run: this step writes only what it covers. */
	run = (u64)n << cb;
	if (off + wlen > start + run)
		wlen = start + run - off;
	*done = wlen;
	tl = start + run - (off + wlen);

	ret = check_data(img, host, run);
	if (!ret)
		ret = w_data(img, cl, n, host, start, hl, off, wlen, off + wlen,
			     tl, src);
	if (!ret)
		ret = w_frees_room(img, n);
	if (ret) {
		w_unalloc(img, host, run);
		return ret;
	}

	w_grow_file(img, host + run);
	img->ws.cow_bytes += hl + tl;
	if (idx + n > (1U << epsb)) {
		ret = -EIO;
		goto fail;
	}
	ret = w_dirty_room(img);
	if (ret)
		goto fail;
	qcow2_mutex_lock(&img->l2c_lock);
	ret = w_get(img, slice_off, &data);
	if (ret) {
		qcow2_mutex_unlock(&img->l2c_lock);
		goto fail;
	}
	data = w_dirty(img, slice_off);
	for (i = 0; i < n; i++) {
		u8 *e = data + (idx + i) * img->h.l2_entry_bytes;
		u64 old = qcow2_get_be64(e), nh = host + ((u64)i << cb);

		/* A data file maps guest to host 1:1: the cluster stays. */
		if ((old & QCOW2_OFLAG_COMPRESSED) ||
		    (old & QCOW2_L2E_OFFSET_MASK) != nh) {
			/* Room was made above: this records, never flushes. */
			ret = free_old(img, old, cl + i);
			if (ret)
				break;
		}
		qcow2_put_be64(e, nh | QCOW2_OFLAG_COPIED);
		if (img->h.extended_l2)
			qcow2_put_be64(e + 8, QCOW2_L2_BITMAP_ALLOC);
	}
	qcow2_mutex_unlock(&img->l2c_lock);
	if (!ret)
		return 0;
fail:
	qcow2_write_fail(img, ret, "updating an L2 table");
	return ret;
}

static u64 sc_mask(u32 first, u32 last)
{
	return (last >= 31 ? 0xffffffffULL : ((1ULL << (last + 1)) - 1)) &
	       ~((1ULL << first) - 1);
}

/*
 * Extended L2: write [off, off + wlen) inside cluster @cl, subclusters
 * only. @entry and @bitmap are its L2 entry as classify() saw it.
 */
static int step_sub(struct qcow2_image *img, u64 cl, const struct wclass *w,
		    u64 off, u64 wlen, u64 entry, u64 bitmap, u64 slice_off,
		    u32 idx, const struct qcow2_wsrc *src)
{
	const struct qcow2_header *h = &img->h;
	u32 cb = h->cluster_bits, sb = h->subcluster_bits;
	u64 start = cl << cb, host = w->host;
	u32 a = off - start, b = a + wlen;
	u32 first = a >> sb, last = (b - 1) >> sb;
	u32 A = first << sb, B = (last + 1) << sb;
	struct qcow2_l2_desc d;
	bool fresh = !host;
	u32 hl = 0, tl = 0;
	u8 *data;
	int ret;

	/* Head and tail come from old contents unless they are data already. */
	if (a > A) {
		ret = w_decode(img, entry, bitmap, first, cl, &d);
		if (ret)
			return ret;
		if (d.type != QCOW2_SC_NORMAL)
			hl = a - A;
	}
	if (b < B) {
		ret = w_decode(img, entry, bitmap, last, cl, &d);
		if (ret)
			return ret;
		if (d.type != QCOW2_SC_NORMAL)
			tl = B - b;
	}
	if (fresh) {
		u32 one = 1;

		ret = w_alloc(img, cl, &one, &host);
		if (ret)
			return ret;
	}

	ret = check_data(img, host, h->cluster_size);
	if (!ret)
		ret = w_data(img, cl, 1, host + a - hl, start + A, hl, off, wlen,
			     off + wlen, tl, src);
	if (ret) {
		if (fresh)
			w_unalloc(img, host, h->cluster_size);
		return ret;
	}

	w_grow_file(img, host + b + tl);
	img->ws.cow_bytes += hl + tl;
	ret = w_dirty_room(img);
	if (ret) {
		qcow2_write_fail(img, ret, "updating an L2 table");
		return ret;
	}
	qcow2_mutex_lock(&img->l2c_lock);
	ret = w_get(img, slice_off, &data);
	if (ret) {
		qcow2_mutex_unlock(&img->l2c_lock);
		qcow2_write_fail(img, ret, "updating an L2 table");
		return ret;
	}
	data = w_dirty(img, slice_off) + idx * h->l2_entry_bytes;
	bitmap = qcow2_get_be64(data + 8);
	bitmap |= sc_mask(first, last);
	bitmap &= ~(sc_mask(first, last) << 32);
	qcow2_put_be64(data, host | QCOW2_OFLAG_COPIED);
	qcow2_put_be64(data + 8, bitmap);
	qcow2_mutex_unlock(&img->l2c_lock);
	return 0;
}

/*
 * Classify clusters from @cl (written at [a, b) of the first) in the slice
 * @data: the first one's class in *w and its entry, and in *k how many
 * clusters from @cl, up to @end, can go in the same step. l2c_lock held.
 */
static int w_classify_run(struct qcow2_image *img, u64 cl, const u8 *data,
			  u32 idx, u32 a, u32 b, u64 end, struct wclass *w,
			  u32 *k, u64 *entry, u64 *bitmap)
{
	const struct qcow2_header *h = &img->h;
	u32 cb = h->cluster_bits, cs = h->cluster_size;
	u32 epsb = w_slice_entry_bits(h);
	u64 pos = (cl << cb) + b;
	struct wclass wn;
	const u8 *e;
	int ret;

	e = data + idx * h->l2_entry_bytes;
	*entry = qcow2_get_be64(e);
	*bitmap = h->extended_l2 ? qcow2_get_be64(e + 8) : 0;
	ret = classify(img, cl, e, a, b, w);
	if (ret)
		return ret;
	*k = 1;
	if (w->mode == W_SUB)
		return 0;
	for (; idx + *k < (1U << epsb) && pos < end; (*k)++) {
		u32 nb = min_t(u64, cs, end - pos);

		if (w->mode == W_FULL && *k >= QCOW2_MAX_ALLOC_RUN)
			break;
		ret = classify(img, cl + *k,
			       data + (idx + *k) * h->l2_entry_bytes, 0, nb,
			       &wn);
		if (ret || wn.mode != w->mode)
			break;
		if (w->mode == W_INPLACE &&
		    wn.host != w->host + ((u64)*k << cb))
			break;
		pos += nb;
	}
	return 0;
}

/* One step of a write from @off, at most @len bytes, inside one L2 slice. */
static int write_step(struct qcow2_image *img, u64 off, u64 len,
		      const struct qcow2_wsrc *src, u64 *done)
{
	const struct qcow2_header *h = &img->h;
	u32 cb = h->cluster_bits, cs = h->cluster_size;
	u64 cl = off >> cb, end = off + len, slice_off, entry, bitmap, span;
	u32 idx, k, a = off & (cs - 1), epsb = w_slice_entry_bits(h);
	u32 b = min_t(u64, cs, a + len);
	struct wclass w;
	u8 *data;
	int ret;

	/* Clusters this step may touch: to the end of the write or slice. */
	w_wait_inflight(img, cl, min_t(u64, (end - 1) >> cb,
				       (((cl >> epsb) + 1) << epsb) - 1) + 1);
	ret = w_slice(img, cl, true, &slice_off, &idx);
	if (ret)
		return ret;
	if (!slice_off)
		return -EIO;
	qcow2_mutex_lock(&img->l2c_lock);
	ret = w_get(img, slice_off, &data);
	if (!ret)
		ret = w_classify_run(img, cl, data, idx, a, b, end, &w, &k,
				     &entry, &bitmap);
	qcow2_mutex_unlock(&img->l2c_lock);
	if (ret)
		return ret;
	span = min_t(u64, end, (cl + k) << cb) - off;

	switch (w.mode) {
	case W_INPLACE:
		*done = span;
		ret = check_data(img, w.host + a, *done);
		if (ret)
			return ret;
		return src->write(src->arg, w.host + a, NULL, 0, off, *done,
				  NULL, 0);
	case W_FULL:
		return step_full(img, cl, k, off, span, slice_off, idx, src,
				 done);
	default:
		*done = b - a;
		return step_sub(img, cl, &w, off, *done, entry, bitmap,
				slice_off, idx, src);
	}
}

static int w_begin(struct qcow2_image *img, u64 off, u64 len)
{
	if (!img->writable)
		return -EROFS;
	if (!len || off >= img->h.size || len > img->h.size - off ||
	    ((off | len) & 511))
		return -EINVAL;
	return 0;
}

/* qcow2_write() with wlock held. */
static int write_locked(struct qcow2_image *img, u64 off, u64 len,
			const struct qcow2_wsrc *src)
{
	int ret = 0;

	qcow2_mutex_assert_held(&img->wlock);
	while (len) {
		u64 done = 0;

		if (img->wfail) {
			ret = -EROFS;
			break;
		}
		ret = write_step(img, off, len, src, &done);
		if (!ret)
			ret = w_pressure(img);
		if (ret)
			break;
		off += done;
		len -= done;
	}
	return ret;
}

/**
 * qcow2_write_map_inplace() - where a write goes if it changes no metadata
 * @img: writable image
 * @guest_off: first byte, a multiple of 512
 * @len: bytes, a multiple of 512, > 0, within the virtual size
 * @host_off: where the bytes go in the data file (the image file, or the
 *            external data file), contiguous
 * @durable: set when the mapping itself is durable: the slice is clean and
 *           no write-back is under way, so a FUA write needs only its own
 *           data made durable (O_DSYNC), no qcow2_flush()
 *
 * Succeeds when every byte of the range lies in clusters (subclusters,
 * with extended L2) the image owns and holds as data, contiguous on the
 * host, mapped by one L2 slice, and the host range passes the overlap
 * check. The caller then writes the bytes there itself, with no engine
 * lock held, and must hold off qcow2_io::drain from the call until its
 * write has completed (so that the cluster is not freed under it). Such a
 * write is durable after the next qcow2_flush(), like any other.
 *
 * Context: may sleep (a slice miss reads it); takes l2c_lock only, never
 * wlock, so it does not wait for writers, allocations or flushes.
 * Return: 0, -EAGAIN (the write needs qcow2_write(): allocation, copy-on-
 * write, a corrupt entry or an overlap to report), -EBUSY (an allocation
 * in flight owns part of the range: qcow2_write_wait() for it, then ask
 * again), -EROFS or -EINVAL.
 */
int qcow2_write_map_inplace(struct qcow2_image *img, u64 guest_off, u64 len,
			    u64 *host_off, bool *durable)
{
	const struct qcow2_header *h = &img->h;
	u32 cb = h->cluster_bits, cs = h->cluster_size;
	u32 epsb = w_slice_entry_bits(h);
	u64 cl = guest_off >> cb, end = guest_off + len, l1_idx, entry, l2_off;
	u64 slice_off, bitmap, last_cl;
	u32 l2_idx, idx, k, a = guest_off & (cs - 1);
	u32 b = min_t(u64, cs, a + len);
	const u8 *data;
	struct wclass w;
	int ret = w_begin(img, guest_off, len);

	if (ret)
		return ret;
	if (READ_ONCE(img->wfail))
		return -EROFS;
	l1_idx = cl >> h->l2_bits;
	l2_idx = cl & ((1U << h->l2_bits) - 1);
	last_cl = (end - 1) >> cb;
	/* One slice of one table: the common case, and enough for a bypass. */
	if (l1_idx >= h->l1_size || (last_cl >> epsb) != (cl >> epsb))
		return -EAGAIN;

	qcow2_mutex_lock(&img->l2c_lock);
	ret = -EAGAIN;
	/* The first write of all clears the autoclear bits first. */
	if (img->hdr_pending)
		goto out;
	entry = be64_to_cpu(img->l1[l1_idx]);
	if (!(entry & QCOW2_OFLAG_COPIED) ||
	    qcow2_l1_entry_decode(h, entry, &l2_off) || !l2_off)
		goto out;
	slice_off = l2_off + ((u64)(l2_idx >> epsb) << w_slice_bits(h));
	idx = l2_idx & ((1U << epsb) - 1);
	if (slice_off + (1U << w_slice_bits(h)) > img->file_size)
		goto out;
	ret = __qcow2_l2c_get(img, slice_off, &data);
	/* -EAGAIN: every slice dirty, the writer writes back. */
	if (ret)
		goto out;
	ret = w_classify_run(img, cl, data, idx, a, b, end, &w, &k, &entry,
			     &bitmap);
	if (ret || w.mode != W_INPLACE || ((cl + k) << cb) < end) {
		/* Being allocated: in place, once that allocation is done. */
		ret = w_inflight_meets(img, cl, last_cl + 1) ? -EBUSY : -EAGAIN;
		goto out;
	}
	*host_off = w.host + a;
	if (!img->has_data_file &&
	    qcow2_overlap_hit(img, QCOW2_OL_DATA, *host_off, len))
		ret = -EAGAIN;
	/*
	 * A clean slice outside a write-back was last written by one that
	 * completed, with the L1 and refcounts it depends on, and flushed.
	 */
	*durable = !img->meta_wb_busy &&
		   !qcow2_cache_is_dirty(&img->l2c, slice_off);
out:
	qcow2_mutex_unlock(&img->l2c_lock);
	/* Bitmaps in use already (hdr_pending is clear): mark, lock-free. */
	if (!ret)
		qcow2_bitmaps_mark(img, guest_off, len);
	return ret;
}

/**
 * qcow2_write_wait() - wait until no allocation in flight owns the range
 * @img: writable image
 * @guest_off: first byte
 * @len: bytes, > 0
 *
 * For a caller whose qcow2_write_map_inplace() said -EBUSY: once the
 * allocation is done, the range is (usually) owned data, written in place.
 * The caller must not hold anything a writer waits for (for the kernel: no
 * request epoch).
 *
 * Context: may sleep; takes wlock.
 */
void qcow2_write_wait(struct qcow2_image *img, u64 guest_off, u64 len)
{
	u32 cb = img->h.cluster_bits;

	qcow2_mutex_lock(&img->wlock);
	w_wait_inflight(img, guest_off >> cb, ((guest_off + len - 1) >> cb) + 1);
	qcow2_mutex_unlock(&img->wlock);
}

int qcow2_write(struct qcow2_image *img, u64 guest_off, u64 len,
		const struct qcow2_wsrc *src)
{
	int ret = w_begin(img, guest_off, len);

	if (ret)
		return ret;
	qcow2_mutex_lock(&img->wlock);
	ret = qcow2_write_enter(img);
	if (!ret) {
		qcow2_bitmaps_mark(img, guest_off, len);
		ret = write_locked(img, guest_off, len, src);
	}
	qcow2_mutex_unlock(&img->wlock);
	return ret;
}

/* New state of a whole cluster zeroed or discarded; false: leave it. */
static bool zero_entry(struct qcow2_image *img, enum zmode mode, u64 entry,
		       u64 *ne, u64 *nb, bool *free_it)
{
	const struct qcow2_header *h = &img->h;
	bool compressed = entry & QCOW2_OFLAG_COMPRESSED;
	u64 host = compressed ? 0 : entry & QCOW2_L2E_OFFSET_MASK;
	bool has = compressed || host;
	bool keep = mode == Z_ZERO_KEEP && host &&
		    (entry & QCOW2_OFLAG_COPIED);

	*nb = 0;
	*free_it = has;
	if (mode == Z_DISCARD) {
		if (h->version < 3 && img->has_backing)
			return false;
		if (h->extended_l2) {
			*ne = 0;
			*nb = (img->has_backing || has) ? QCOW2_L2_BITMAP_ZERO : 0;
		} else if (h->version < 3) {
			*ne = 0;
		} else {
			*ne = (img->has_backing || has) ? QCOW2_OFLAG_ZERO : 0;
		}
		return true;
	}
	*free_it = has && !keep;
	if (h->extended_l2) {
		*ne = keep ? host | QCOW2_OFLAG_COPIED : 0;
		*nb = QCOW2_L2_BITMAP_ZERO;
	} else {
		*ne = keep ? host | QCOW2_OFLAG_COPIED | QCOW2_OFLAG_ZERO :
			     QCOW2_OFLAG_ZERO;
	}
	return true;
}

/* Zero or discard whole clusters from @off, within one L2 slice. */
static int zero_step(struct qcow2_image *img, u64 off, u64 len,
		     enum zmode mode, u64 *done)
{
	const struct qcow2_header *h = &img->h;
	u32 cb = h->cluster_bits, epsb = w_slice_entry_bits(h), idx, k;
	u64 cl = off >> cb, n, slice_off;
	u64 l1_idx = cl >> h->l2_bits, l2_off = 0;
	u8 *data;
	int ret;

	n = (len + h->cluster_size - 1) >> cb;
	/* Without a table and without a backing layer, it reads zero already. */
	if (!img->has_backing && l1_idx < h->l1_size) {
		ret = qcow2_l1_entry_decode(h, be64_to_cpu(img->l1[l1_idx]),
					    &l2_off);
		if (ret)
			return ret;
		if (!l2_off) {
			u64 tbl_end = (l1_idx + 1) << (cb + h->l2_bits);

			*done = min_t(u64, len, tbl_end - off);
			return 0;
		}
	}
	n = min_t(u64, n, (((cl >> epsb) + 1) << epsb) - cl);
	w_wait_inflight(img, cl, cl + n);
	ret = w_slice(img, cl, true, &slice_off, &idx);
	if (ret)
		return ret;
	if (!slice_off)
		return -EIO;
	ret = w_frees_room(img, n);
	if (!ret)
		ret = w_dirty_room(img);
	if (ret)
		return ret;
	qcow2_mutex_lock(&img->l2c_lock);
	ret = w_get(img, slice_off, &data);
	for (k = 0; !ret && k < n; k++) {
		u8 *e = data + (idx + k) * h->l2_entry_bytes;
		u64 entry = qcow2_get_be64(e), bitmap = h->extended_l2 ? qcow2_get_be64(e + 8) : 0;
		struct qcow2_l2_desc d;
		bool free_it;
		u64 ne, nb;

		ret = w_decode(img, entry, bitmap, 0, cl + k, &d);
		if (ret)
			break;
		if (!zero_entry(img, mode, entry, &ne, &nb, &free_it))
			continue;
		if (ne == entry && nb == bitmap)
			continue;
		/* Room was made above: this records, never flushes. */
		if (free_it) {
			ret = free_old(img, entry, cl + k);
			if (ret)
				break;
		}
		e = w_dirty(img, slice_off) + (idx + k) * h->l2_entry_bytes;
		qcow2_put_be64(e, ne);
		if (h->extended_l2)
			qcow2_put_be64(e + 8, nb);
	}
	qcow2_mutex_unlock(&img->l2c_lock);
	if (ret)
		return ret;
	*done = min_t(u64, len, n << cb);
	return 0;
}

/*
 * Extended L2: zero whole subclusters [off, off + len) inside one cluster
 * by their bitmap. Clusters that cannot carry the change (compressed, or
 * shared) are written with zeroes instead.
 */
static int zero_sub(struct qcow2_image *img, u64 off, u64 len,
		    const struct qcow2_wsrc *src)
{
	const struct qcow2_header *h = &img->h;
	u32 cb = h->cluster_bits, sb = h->subcluster_bits, idx;
	u64 cl = off >> cb, slice_off, entry, bitmap, mask;
	u32 first = (off - (cl << cb)) >> sb;
	u32 last = (off + len - 1 - (cl << cb)) >> sb;
	struct qcow2_l2_desc d;
	bool as_data = false;
	u8 *data, *e;
	int ret;

	w_wait_inflight(img, cl, cl + 1);
	ret = w_slice(img, cl, true, &slice_off, &idx);
	if (ret)
		return ret;
	if (!slice_off)
		return -EIO;
	ret = w_dirty_room(img);
	if (ret)
		return ret;
	qcow2_mutex_lock(&img->l2c_lock);
	ret = w_get(img, slice_off, &data);
	if (ret)
		goto out;
	e = data + idx * h->l2_entry_bytes;
	entry = qcow2_get_be64(e);
	bitmap = qcow2_get_be64(e + 8);
	ret = w_decode(img, entry, bitmap, 0, cl, &d);
	if (ret)
		goto out;
	if ((entry & QCOW2_OFLAG_COMPRESSED) ||
	    ((entry & QCOW2_L2E_OFFSET_MASK) &&
	     !(entry & QCOW2_OFLAG_COPIED))) {
		as_data = true;
		goto out;
	}
	mask = sc_mask(first, last);
	e = w_dirty(img, slice_off) + idx * h->l2_entry_bytes;
	qcow2_put_be64(e + 8, (bitmap & ~mask) | (mask << 32));
out:
	qcow2_mutex_unlock(&img->l2c_lock);
	if (as_data)
		ret = write_locked(img, off, len, src);
	return ret;
}

int qcow2_write_zeroes(struct qcow2_image *img, u64 guest_off, u64 len,
		       u32 flags, const struct qcow2_wsrc *src)
{
	const struct qcow2_header *h = &img->h;
	enum zmode mode = (flags & QCOW2_ZERO_MAY_UNMAP) ? Z_ZERO_UNMAP :
							   Z_ZERO_KEEP;
	u64 cs = h->cluster_size, end;
	u32 unit;
	int ret = w_begin(img, guest_off, len);

	if (ret)
		return ret;
	if (flags & ~QCOW2_ZERO_MAY_UNMAP)
		return -EINVAL;
	qcow2_mutex_lock(&img->wlock);
	ret = qcow2_write_enter(img);
	if (ret)
		goto out;
	qcow2_bitmaps_mark(img, guest_off, len);
	if (h->version < 3) {
		ret = write_locked(img, guest_off, len, src);
		goto out;
	}
	unit = h->extended_l2 ? 1U << h->subcluster_bits : cs;
	end = guest_off + len;
	while (guest_off < end && !ret) {
		u64 cl_start = guest_off & ~(cs - 1);
		u64 cl_end = min_t(u64, cl_start + cs, h->size);
		u64 unit_end = min_t(u64, (guest_off & ~((u64)unit - 1)) + unit,
				     h->size);
		u64 n, done = 0;

		if (img->wfail) {
			ret = -EROFS;
			break;
		}
		if ((guest_off & (unit - 1)) || end < unit_end) {
			/* Part of a unit: write zeroes as data. */
			n = min_t(u64, end, unit_end) - guest_off;
			ret = write_locked(img, guest_off, n, src);
			guest_off += n;
			continue;
		}
		if (guest_off != cl_start || end < cl_end) {
			/* Whole subclusters of one cluster. */
			n = min_t(u64, end, cl_end) - guest_off;
			if (end < cl_end)
				n &= ~((u64)unit - 1);
			ret = zero_sub(img, guest_off, n, src);
			done = n;
		} else {
			n = end - guest_off;
			if (end != h->size)
				n &= ~(cs - 1);
			ret = zero_step(img, guest_off, n, mode, &done);
		}
		if (!ret)
			ret = w_pressure(img);
		guest_off += done;
	}
out:
	qcow2_mutex_unlock(&img->wlock);
	return ret;
}

int qcow2_discard(struct qcow2_image *img, u64 guest_off, u64 len)
{
	const struct qcow2_header *h = &img->h;
	u64 cs = h->cluster_size, start, end;
	int ret;

	if (!img->writable)
		return -EROFS;
	if (!len || guest_off >= h->size || len > h->size - guest_off)
		return -EINVAL;
	start = (guest_off + cs - 1) & ~(cs - 1);
	end = guest_off + len;
	if (end != h->size)
		end &= ~(cs - 1);
	if (start >= end || (h->version < 3 && img->has_backing))
		return 0;

	qcow2_mutex_lock(&img->wlock);
	ret = qcow2_write_enter(img);
	if (!ret)
		qcow2_bitmaps_mark(img, guest_off, len);
	while (start < end && !ret) {
		u64 done = 0;

		if (img->wfail) {
			ret = -EROFS;
			break;
		}
		ret = zero_step(img, start, end - start, Z_DISCARD, &done);
		if (!ret)
			ret = w_pressure(img);
		start += done;
	}
	qcow2_mutex_unlock(&img->wlock);
	return ret;
}

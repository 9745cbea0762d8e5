// SPDX-License-Identifier: GPL-2.0
/*
 * L2 table slice cache.
 *
 * Policy: L2 tables are cached in slices of min(cluster size, 4 KiB) bytes,
 * so a lookup reads at most one page of metadata however large the clusters
 * are, and the cache can be sized in small steps. A slice is keyed by its host
 * offset in the image file. When every slice holds a table, the least
 * recently used one is evicted. The cache is read-only: the engine never
 * modifies a slice, so eviction never writes.
 *
 * States: each of the nr_slices slots is either free (on the free list,
 * linked through lru_next) or in use (in exactly one hash chain and in the
 * LRU list). A lookup that misses takes a free slot or evicts the LRU tail,
 * reads into it and only then makes it visible; a failed read puts the slot
 * back on the free list, so a slot never holds bytes that were not read.
 *
 * Invariants: nr_used == slots in use == length of the LRU list; every slot
 * owns its own data buffer, allocated in qcow2_l2c_init() so that lookups
 * never allocate (they run on the I/O path); nr_buckets is a power of two
 * >= nr_slices, so chains stay short.
 *
 * Lock: struct qcow2_image::l2c_lock guards the whole cache, including the
 * statistics. __qcow2_l2c_get() runs with it held and may sleep in
 * qcow2_io::pread; a pointer it returns is valid only until the lock is
 * released, because any later miss may evict that slice. Resizing builds the
 * new cache outside the lock and swaps it in under the lock.
 */
#include "qcow2.h"

/* 2^64 / golden ratio, as the kernel's hash_64(). */
#define QCOW2_L2C_HASH_MUL	0x61c8864680b583ebULL
#define QCOW2_L2C_MIN_SLICE_BYTES	512U
#define QCOW2_L2C_NONE		(-1)

struct qcow2_l2c_slice {
	u64 key;		/* host offset of the slice; valid when in use */
	u8 *data;		/* slice_bytes, from qcow2_alloc_io() */
	s32 hash_next;		/* next slot in this bucket, or NONE */
	s32 lru_prev;		/* more recently used slot, or NONE */
	s32 lru_next;		/* less recently used (or next free) slot */
};

static u32 l2c_bucket(const struct qcow2_l2_cache *c, u64 key)
{
	/* Keys are multiples of 512: drop the always-zero bits first. */
	return (u32)(((key >> 9) * QCOW2_L2C_HASH_MUL) >> 32) &
	       (c->nr_buckets - 1);
}

static void l2c_lru_unlink(struct qcow2_l2_cache *c, s32 i)
{
	struct qcow2_l2c_slice *s = &c->slices[i];

	if (s->lru_prev != QCOW2_L2C_NONE)
		c->slices[s->lru_prev].lru_next = s->lru_next;
	else
		c->lru_head = s->lru_next;
	if (s->lru_next != QCOW2_L2C_NONE)
		c->slices[s->lru_next].lru_prev = s->lru_prev;
	else
		c->lru_tail = s->lru_prev;
	s->lru_prev = QCOW2_L2C_NONE;
	s->lru_next = QCOW2_L2C_NONE;
}

static void l2c_lru_push_head(struct qcow2_l2_cache *c, s32 i)
{
	struct qcow2_l2c_slice *s = &c->slices[i];

	s->lru_prev = QCOW2_L2C_NONE;
	s->lru_next = c->lru_head;
	if (c->lru_head != QCOW2_L2C_NONE)
		c->slices[c->lru_head].lru_prev = i;
	else
		c->lru_tail = i;
	c->lru_head = i;
}

static void l2c_hash_remove(struct qcow2_l2_cache *c, s32 i)
{
	s32 *link = &c->buckets[l2c_bucket(c, c->slices[i].key)];

	while (*link != QCOW2_L2C_NONE) {
		if (*link == i) {
			*link = c->slices[i].hash_next;
			c->slices[i].hash_next = QCOW2_L2C_NONE;
			return;
		}
		link = &c->slices[*link].hash_next;
	}
}

static s32 l2c_find(const struct qcow2_l2_cache *c, u64 key)
{
	s32 i = c->buckets[l2c_bucket(c, key)];

	while (i != QCOW2_L2C_NONE && c->slices[i].key != key)
		i = c->slices[i].hash_next;
	return i;
}

/* Take a slot for a new slice: a free one, else evict the LRU tail. */
static s32 l2c_take_slot(struct qcow2_l2_cache *c)
{
	s32 i = c->free_head;

	if (i != QCOW2_L2C_NONE) {
		c->free_head = c->slices[i].lru_next;
		c->slices[i].lru_next = QCOW2_L2C_NONE;
		return i;
	}
	i = c->lru_tail;
	l2c_lru_unlink(c, i);
	l2c_hash_remove(c, i);
	c->nr_used--;
	c->stats.evictions++;
	return i;
}

static void l2c_put_free(struct qcow2_l2_cache *c, s32 i)
{
	c->slices[i].lru_prev = QCOW2_L2C_NONE;
	c->slices[i].lru_next = c->free_head;
	c->free_head = i;
}

/**
 * qcow2_l2c_init() - allocate an empty L2 cache
 * @c: cache to set up, contents ignored
 * @slice_bytes: bytes per slice, power of two, 512..QCOW2_L2C_MAX_SLICE_BYTES
 * @nr_slices: capacity, QCOW2_L2C_MIN_SLICES..QCOW2_L2C_MAX_BYTES/slice_bytes
 *
 * Context: may sleep.
 * Return: 0, -EINVAL (bad geometry) or -ENOMEM.
 */
int qcow2_l2c_init(struct qcow2_l2_cache *c, u32 slice_bytes, u32 nr_slices)
{
	u32 i, nr_buckets = 1;

	memset(c, 0, sizeof(*c));
	if (slice_bytes < QCOW2_L2C_MIN_SLICE_BYTES ||
	    slice_bytes > QCOW2_L2C_MAX_SLICE_BYTES ||
	    (slice_bytes & (slice_bytes - 1)) ||
	    nr_slices < QCOW2_L2C_MIN_SLICES ||
	    nr_slices > QCOW2_L2C_MAX_BYTES / slice_bytes)
		return -EINVAL;
	while (nr_buckets < nr_slices)
		nr_buckets <<= 1;

	c->slices = qcow2_zalloc(sizeof(*c->slices) * nr_slices);
	if (!c->slices)
		goto fail;
	c->buckets = qcow2_alloc(sizeof(*c->buckets) * nr_buckets);
	if (!c->buckets)
		goto free_slices;
	c->slice_bytes = slice_bytes;
	c->nr_slices = nr_slices;
	c->nr_buckets = nr_buckets;
	for (i = 0; i < nr_slices; i++) {
		c->slices[i].data = qcow2_alloc_io(slice_bytes);
		if (!c->slices[i].data)
			goto free_data;
		c->slices[i].hash_next = QCOW2_L2C_NONE;
		c->slices[i].lru_prev = QCOW2_L2C_NONE;
		c->slices[i].lru_next = i + 1 < nr_slices ? (s32)(i + 1) :
							    QCOW2_L2C_NONE;
	}
	for (i = 0; i < nr_buckets; i++)
		c->buckets[i] = QCOW2_L2C_NONE;
	c->free_head = 0;
	c->lru_head = QCOW2_L2C_NONE;
	c->lru_tail = QCOW2_L2C_NONE;
	return 0;

free_data:
	while (i--)
		qcow2_free_io(c->slices[i].data);
	qcow2_free(c->buckets);
free_slices:
	qcow2_free(c->slices);
fail:
	memset(c, 0, sizeof(*c));
	return -ENOMEM;
}

/**
 * qcow2_l2c_destroy() - free a cache set up by qcow2_l2c_init()
 * @c: cache; zeroed afterwards, so destroying twice is harmless
 *
 * Context: any context that may free memory.
 */
void qcow2_l2c_destroy(struct qcow2_l2_cache *c)
{
	u32 i;

	if (c->slices) {
		for (i = 0; i < c->nr_slices; i++)
			qcow2_free_io(c->slices[i].data);
	}
	qcow2_free(c->slices);
	qcow2_free(c->buckets);
	memset(c, 0, sizeof(*c));
}

/**
 * qcow2_l2c_slices_for() - slices a cache of @bytes holds for @img
 * @img: image whose cache geometry (slice size) applies
 * @bytes: requested bytes, clamped to QCOW2_L2C_MAX_BYTES
 *
 * Context: any.
 * Return: slice count, rounded up, at least QCOW2_L2C_MIN_SLICES.
 */
u32 qcow2_l2c_slices_for(const struct qcow2_image *img, u64 bytes)
{
	u32 slice_bytes = img->l2c.slice_bytes;
	u32 nr;

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
 * Context: l2c_lock held; may sleep in qcow2_io::pread on a miss.
 * Return: 0 or the -errno of the read (the cache is unchanged then).
 */
int __qcow2_l2c_get(struct qcow2_image *img, u64 slice_off, const u8 **data)
{
	struct qcow2_l2_cache *c = &img->l2c;
	s32 i;
	int ret;

	qcow2_mutex_assert_held(&img->l2c_lock);

	i = l2c_find(c, slice_off);
	if (i != QCOW2_L2C_NONE) {
		c->stats.hits++;
		if (c->lru_head != i) {
			l2c_lru_unlink(c, i);
			l2c_lru_push_head(c, i);
		}
		*data = c->slices[i].data;
		return 0;
	}

	c->stats.misses++;
	i = l2c_take_slot(c);
	ret = img->io.pread(img->io.priv, c->slices[i].data, c->slice_bytes,
			    slice_off);
	if (ret) {
		l2c_put_free(c, i);
		return ret < 0 ? ret : -EIO;
	}
	c->slices[i].key = slice_off;
	c->slices[i].hash_next = c->buckets[l2c_bucket(c, slice_off)];
	c->buckets[l2c_bucket(c, slice_off)] = i;
	l2c_lru_push_head(c, i);
	c->nr_used++;
	*data = c->slices[i].data;
	return 0;
}

/**
 * qcow2_l2c_resize() - change the L2 cache capacity
 * @img: open image
 * @bytes: new size; rounded up to slices, at least QCOW2_L2C_MIN_SLICES,
 *         at most QCOW2_L2C_MAX_BYTES
 *
 * The new cache starts empty; the statistics carry over.
 *
 * Context: may sleep; takes l2c_lock, which the caller must not hold.
 * Return: 0, -ENOMEM (old cache kept).
 */
int qcow2_l2c_resize(struct qcow2_image *img, u64 bytes)
{
	struct qcow2_l2_cache fresh, old;
	int ret;

	ret = qcow2_l2c_init(&fresh, img->l2c.slice_bytes,
			     qcow2_l2c_slices_for(img, bytes));
	if (ret)
		return ret;

	qcow2_mutex_lock(&img->l2c_lock);
	old = img->l2c;
	fresh.stats = old.stats;
	img->l2c = fresh;
	qcow2_mutex_unlock(&img->l2c_lock);

	qcow2_l2c_destroy(&old);
	return 0;
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
	return (u64)img->l2c.nr_slices * img->l2c.slice_bytes;
}

/**
 * qcow2_l2c_get_stats() - snapshot the L2 cache counters
 * @img: open image
 * @st: filled with the counters since open
 *
 * Context: may sleep; takes l2c_lock.
 */
void qcow2_l2c_get_stats(struct qcow2_image *img, struct qcow2_l2c_stats *st)
{
	qcow2_mutex_lock(&img->l2c_lock);
	*st = img->l2c.stats;
	qcow2_mutex_unlock(&img->l2c_lock);
}

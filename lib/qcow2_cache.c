// SPDX-License-Identifier: GPL-2.0
/*
 * Slot cache: a fixed number of equal-sized buffers keyed by a u64, with a
 * hash for lookup and an LRU list for eviction. The L2 table cache
 * (qcow2_l2cache.c) and the chain mapping cache (qcow2_chain.c) are policies
 * on top of it.
 *
 * States: each of the nr_slots slots is free (on the free list, linked
 * through lru_next), reserved (taken by qcow2_cache_reserve(), in no list,
 * being filled by its caller), or in use (in exactly one hash chain and in
 * the LRU list). A slot becomes visible to lookups only once published, so
 * a lookup never sees a half-filled buffer.
 *
 * Invariants: nr_used == slots in use == length of the LRU list; every slot
 * owns its buffer, allocated in qcow2_cache_init() so that no operation but
 * init allocates (they run on the I/O path); nr_buckets is a power of two
 * >= nr_slots, so chains stay short. Keys are multiples of 512.
 *
 * Loading slots: a reserved slot may be inserted under its key while its
 * owner fills it with the lock dropped (qcow2_cache_insert_loading()). It
 * is in its hash chain, so nobody else loads the same key, but in no LRU
 * list, so it is never evicted; lookups report it busy, and the caller
 * waits for qcow2_cache_loaded() instead of reading the buffer.
 *
 * Dirty slots: a writer may mark a slot in use as dirty. A dirty slot is
 * never evicted: reserve takes the least recently used clean slot, and
 * fails when every slot is dirty; the owner then writes the dirty slots back
 * (qcow2_cache_writeback()) and retries. Writers keep enough slots clean
 * that readers never meet that failure (see qcow2_write.c). Dirty slots are
 * also listed with their keys in c->dirty, so a write-back sorts just them:
 * O(d log d) for d dirty slots, whatever the cache size.
 *
 * Lock: none of its own. The owner's lock guards the whole cache, including
 * the statistics; a buffer returned by lookup is valid only until that lock
 * is released, because any later reserve may evict it. A dirty slot's
 * buffer stays put until it is written back, which is what lets
 * qcow2_cache_writeback_unlocked() write it with the lock dropped.
 */
#include "qcow2.h"

/* 2^64 / golden ratio, as the kernel's hash_64(). */
#define QCOW2_CACHE_HASH_MUL	0x61c8864680b583ebULL
#define QCOW2_CACHE_MIN_SLOT_BYTES	512U
#define QCOW2_CACHE_NONE		(-1)

struct qcow2_cache_slot {
	u64 key;		/* lookup key; valid when in use */
	u8 *data;		/* slot_bytes, from qcow2_alloc_io() */
	bool dirty;		/* in use, changed since last written back */
	bool loading;		/* in its hash chain, being filled */
	bool written;		/* write-back: written, to be marked clean */
	s32 hash_next;		/* next slot in this bucket, or NONE */
	s32 lru_prev;		/* more recently used slot, or NONE */
	s32 lru_next;		/* less recently used (or next free) slot */
};

static u32 cache_bucket(const struct qcow2_cache *c, u64 key)
{
	/* Keys are multiples of 512: drop the always-zero bits first. */
	return (u32)(((key >> 9) * QCOW2_CACHE_HASH_MUL) >> 32) &
	       (c->nr_buckets - 1);
}

static void cache_lru_unlink(struct qcow2_cache *c, s32 i)
{
	struct qcow2_cache_slot *s = &c->slots[i];

	if (s->lru_prev != QCOW2_CACHE_NONE)
		c->slots[s->lru_prev].lru_next = s->lru_next;
	else
		c->lru_head = s->lru_next;
	if (s->lru_next != QCOW2_CACHE_NONE)
		c->slots[s->lru_next].lru_prev = s->lru_prev;
	else
		c->lru_tail = s->lru_prev;
	s->lru_prev = QCOW2_CACHE_NONE;
	s->lru_next = QCOW2_CACHE_NONE;
}

static void cache_lru_push_head(struct qcow2_cache *c, s32 i)
{
	struct qcow2_cache_slot *s = &c->slots[i];

	s->lru_prev = QCOW2_CACHE_NONE;
	s->lru_next = c->lru_head;
	if (c->lru_head != QCOW2_CACHE_NONE)
		c->slots[c->lru_head].lru_prev = i;
	else
		c->lru_tail = i;
	c->lru_head = i;
}

static void cache_hash_remove(struct qcow2_cache *c, s32 i)
{
	s32 *link = &c->buckets[cache_bucket(c, c->slots[i].key)];

	while (*link != QCOW2_CACHE_NONE) {
		if (*link == i) {
			*link = c->slots[i].hash_next;
			c->slots[i].hash_next = QCOW2_CACHE_NONE;
			return;
		}
		link = &c->slots[*link].hash_next;
	}
}

static s32 cache_find(const struct qcow2_cache *c, u64 key)
{
	s32 i = c->buckets[cache_bucket(c, key)];

	while (i != QCOW2_CACHE_NONE && c->slots[i].key != key)
		i = c->slots[i].hash_next;
	return i;
}

static void cache_hash_insert(struct qcow2_cache *c, s32 slot, u64 key)
{
	u32 b = cache_bucket(c, key);

	c->slots[slot].key = key;
	c->slots[slot].hash_next = c->buckets[b];
	c->buckets[b] = slot;
}

static void cache_mark_dirty(struct qcow2_cache *c, s32 i)
{
	struct qcow2_cache_slot *s = &c->slots[i];

	if (s->dirty)
		return;
	s->dirty = true;
	c->dirty[c->nr_dirty].key = s->key;
	c->dirty[c->nr_dirty].slot = i;
	c->nr_dirty++;
}

static int cache_dirty_cmp(const void *a, const void *b)
{
	const struct qcow2_cache_dirty *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

/* Drop the entries of c->dirty whose slots were written (s->written). */
static void cache_dirty_compact(struct qcow2_cache *c)
{
	u32 i, n = 0;

	for (i = 0; i < c->nr_dirty; i++) {
		struct qcow2_cache_slot *s = &c->slots[c->dirty[i].slot];

		if (s->written) {
			s->written = false;
			s->dirty = false;
			continue;
		}
		c->dirty[n++] = c->dirty[i];
	}
	c->nr_dirty = n;
}

/*
 * Take a slot for a new key: a free one, else evict the least recently used
 * clean one. NONE if every slot is dirty.
 */
static s32 cache_take_slot(struct qcow2_cache *c)
{
	s32 i = c->free_head;

	if (i != QCOW2_CACHE_NONE) {
		c->free_head = c->slots[i].lru_next;
		c->slots[i].lru_next = QCOW2_CACHE_NONE;
		return i;
	}
	/* A slot shrunk earlier grows back while memory allows. */
	i = c->bare_head;
	if (i != QCOW2_CACHE_NONE) {
		u8 *data = qcow2_alloc_cache_try(c->slot_bytes);

		if (data) {
			c->bare_head = c->slots[i].lru_next;
			c->slots[i].lru_next = QCOW2_CACHE_NONE;
			c->slots[i].data = data;
			WRITE_ONCE(c->nr_bare, c->nr_bare - 1);
			return i;
		}
	}
	i = c->lru_tail;
	while (i != QCOW2_CACHE_NONE && c->slots[i].dirty)
		i = c->slots[i].lru_prev;
	if (i == QCOW2_CACHE_NONE)
		return i;
	cache_lru_unlink(c, i);
	cache_hash_remove(c, i);
	c->nr_used--;
	c->stats.evictions++;
	return i;
}

static void cache_put_free(struct qcow2_cache *c, s32 i)
{
	c->slots[i].lru_prev = QCOW2_CACHE_NONE;
	c->slots[i].lru_next = c->free_head;
	c->free_head = i;
}

/**
 * qcow2_cache_init() - allocate an empty slot cache
 * @c: cache to set up, contents ignored
 * @slot_bytes: bytes per slice, power of two, 512..QCOW2_CACHE_MAX_SLOT_BYTES
 * @nr_slots: capacity, QCOW2_CACHE_MIN_SLOTS..QCOW2_CACHE_MAX_BYTES/slot_bytes
 *
 * Context: may sleep.
 * Return: 0, -EINVAL (bad geometry) or -ENOMEM.
 */
int qcow2_cache_init(struct qcow2_cache *c, u32 slot_bytes, u32 nr_slots)
{
	u32 i, nr_buckets = 1;

	memset(c, 0, sizeof(*c));
	if (slot_bytes < QCOW2_CACHE_MIN_SLOT_BYTES ||
	    slot_bytes > QCOW2_CACHE_MAX_SLOT_BYTES ||
	    (slot_bytes & (slot_bytes - 1)) ||
	    nr_slots < QCOW2_CACHE_MIN_SLOTS ||
	    nr_slots > QCOW2_CACHE_MAX_BYTES / slot_bytes)
		return -EINVAL;
	while (nr_buckets < nr_slots)
		nr_buckets <<= 1;

	c->slots = qcow2_zalloc(sizeof(*c->slots) * nr_slots);
	if (!c->slots)
		goto fail;
	c->buckets = qcow2_alloc(sizeof(*c->buckets) * nr_buckets);
	if (!c->buckets)
		goto free_slices;
	c->dirty = qcow2_alloc(sizeof(*c->dirty) * nr_slots);
	if (!c->dirty)
		goto free_buckets;
	c->slot_bytes = slot_bytes;
	c->nr_slots = nr_slots;
	c->nr_buckets = nr_buckets;
	for (i = 0; i < nr_slots; i++) {
		c->slots[i].data = qcow2_alloc_cache(slot_bytes);
		if (!c->slots[i].data)
			goto free_data;
		c->slots[i].hash_next = QCOW2_CACHE_NONE;
		c->slots[i].lru_prev = QCOW2_CACHE_NONE;
		c->slots[i].lru_next = i + 1 < nr_slots ? (s32)(i + 1) :
							    QCOW2_CACHE_NONE;
	}
	for (i = 0; i < nr_buckets; i++)
		c->buckets[i] = QCOW2_CACHE_NONE;
	c->free_head = 0;
	c->bare_head = QCOW2_CACHE_NONE;
	c->lru_head = QCOW2_CACHE_NONE;
	c->lru_tail = QCOW2_CACHE_NONE;
	return 0;

free_data:
	while (i--)
		qcow2_free_io(c->slots[i].data);
	qcow2_free(c->dirty);
free_buckets:
	qcow2_free(c->buckets);
free_slices:
	qcow2_free(c->slots);
fail:
	memset(c, 0, sizeof(*c));
	return -ENOMEM;
}

/**
 * qcow2_cache_destroy() - free a cache set up by qcow2_cache_init()
 * @c: cache; zeroed afterwards, so destroying twice is harmless
 *
 * Context: any context that may free memory.
 */
void qcow2_cache_destroy(struct qcow2_cache *c)
{
	u32 i;

	if (c->slots) {
		for (i = 0; i < c->nr_slots; i++)
			qcow2_free_io(c->slots[i].data);
	}
	qcow2_free(c->slots);
	qcow2_free(c->buckets);
	qcow2_free(c->dirty);
	memset(c, 0, sizeof(*c));
}

/**
 * qcow2_cache_lookup() - find the buffer cached for @key
 * @c: cache, owner's lock held
 * @key: key, a multiple of 512
 *
 * A hit becomes the most recently used slot. Counts a hit or a miss.
 *
 * Context: owner's lock held.
 * Return: the slot's buffer, or NULL if @key is not cached.
 */
u8 *qcow2_cache_lookup(struct qcow2_cache *c, u64 key)
{
	bool busy;

	return qcow2_cache_lookup_ex(c, key, &busy);
}

/**
 * qcow2_cache_lookup_ex() - qcow2_cache_lookup() that tells a busy key apart
 * @c: cache, owner's lock held
 * @key: key, a multiple of 512
 * @busy: set when @key is being loaded (see qcow2_cache_insert_loading()):
 *        then NULL is returned and nothing is counted
 *
 * Context: owner's lock held.
 * Return: the slot's buffer, or NULL.
 */
u8 *qcow2_cache_lookup_ex(struct qcow2_cache *c, u64 key, bool *busy)
{
	s32 i = cache_find(c, key);

	*busy = false;
	if (i == QCOW2_CACHE_NONE) {
		c->stats.misses++;
		return NULL;
	}
	if (c->slots[i].loading) {
		*busy = true;
		return NULL;
	}
	c->stats.hits++;
	if (c->lru_head != i) {
		cache_lru_unlink(c, i);
		cache_lru_push_head(c, i);
	}
	return c->slots[i].data;
}

/**
 * qcow2_cache_reserve() - take a slot to fill, evicting if the cache is full
 * @c: cache, owner's lock held
 * @slot: the slot's number, for qcow2_cache_publish() or _unreserve()
 *
 * Context: owner's lock held.
 * Return: the slot's buffer (slot_bytes), invisible to lookups until
 * published; NULL if every slot is dirty (nothing can be evicted).
 */
u8 *qcow2_cache_reserve(struct qcow2_cache *c, s32 *slot)
{
	*slot = cache_take_slot(c);
	if (*slot == QCOW2_CACHE_NONE)
		return NULL;
	return c->slots[*slot].data;
}

/**
 * qcow2_cache_publish() - make a filled slot visible under @key
 * @c: cache, owner's lock held
 * @slot: from qcow2_cache_reserve()
 * @key: key, a multiple of 512, not already cached
 *
 * Context: owner's lock held.
 */
void qcow2_cache_publish(struct qcow2_cache *c, s32 slot, u64 key)
{
	cache_hash_insert(c, slot, key);
	cache_lru_push_head(c, slot);
	c->nr_used++;
}

/**
 * qcow2_cache_insert_loading() - claim @key for a reserved slot being filled
 * @c: cache, owner's lock held
 * @slot: from qcow2_cache_reserve()
 * @key: key, a multiple of 512, not already cached
 *
 * The owner may drop the lock, fill the buffer, retake the lock and call
 * qcow2_cache_loaded(). Meanwhile lookups of @key report it busy.
 *
 * Context: owner's lock held.
 */
void qcow2_cache_insert_loading(struct qcow2_cache *c, s32 slot, u64 key)
{
	cache_hash_insert(c, slot, key);
	c->slots[slot].loading = true;
	c->nr_loading++;
}

/**
 * qcow2_cache_loaded() - end a load begun by qcow2_cache_insert_loading()
 * @c: cache, owner's lock held
 * @slot: the loading slot
 * @ok: the buffer was filled: publish it; else forget the key
 *
 * Context: owner's lock held.
 */
void qcow2_cache_loaded(struct qcow2_cache *c, s32 slot, bool ok)
{
	c->slots[slot].loading = false;
	c->nr_loading--;
	if (!ok) {
		cache_hash_remove(c, slot);
		cache_put_free(c, slot);
		return;
	}
	cache_lru_push_head(c, slot);
	c->nr_used++;
}

/**
 * qcow2_cache_unreserve() - give back a reserved slot that was not filled
 * @c: cache, owner's lock held
 * @slot: from qcow2_cache_reserve()
 *
 * Context: owner's lock held.
 */
void qcow2_cache_unreserve(struct qcow2_cache *c, s32 slot)
{
	cache_put_free(c, slot);
}

/**
 * qcow2_cache_lookup_dirty() - find @key and mark its slot dirty
 * @c: cache, owner's lock held
 * @key: key
 *
 * For a writer that changes the bytes of a cached slot: call it before
 * changing them, with the lock held throughout.
 *
 * Context: owner's lock held.
 * Return: the slot's buffer, or NULL if @key is not cached.
 */
u8 *qcow2_cache_lookup_dirty(struct qcow2_cache *c, u64 key)
{
	s32 i = cache_find(c, key);

	if (i == QCOW2_CACHE_NONE || c->slots[i].loading)
		return NULL;
	cache_mark_dirty(c, i);
	if (c->lru_head != i) {
		cache_lru_unlink(c, i);
		cache_lru_push_head(c, i);
	}
	return c->slots[i].data;
}

/**
 * qcow2_cache_writeback() - write every dirty slot and mark it clean
 * @c: cache, owner's lock held
 * @fn: writes one slot: (arg, key, data, bytes); 0 or -errno
 * @arg: for @fn
 *
 * Slots are written in ascending key order, so neighbouring slices of one
 * table go out as sequential writes. A slot whose write fails stays dirty.
 *
 * Context: owner's lock held; @fn may sleep.
 * Return: 0, or the first error of @fn (every slot is still attempted).
 */
int qcow2_cache_writeback(struct qcow2_cache *c,
			  int (*fn)(void *arg, u64 key, const u8 *data,
				    u32 bytes),
			  void *arg)
{
	return qcow2_cache_writeback_unlocked(c, NULL, fn, arg);
}

/**
 * qcow2_cache_writeback_unlocked() - write back with the owner's lock dropped
 * @c: cache, @lock held
 * @lock: the owner's lock, dropped around the writes; NULL keeps it held
 * @fn: writes one slot: (arg, key, data, bytes); 0 or -errno
 * @arg: for @fn
 *
 * As qcow2_cache_writeback(). The caller guarantees that nobody marks a
 * slot dirty, changes a dirty slot or replaces the cache until this
 * returns (the writer's lock); lookups and loads of clean slots may go on
 * meanwhile, since dirty slots are never evicted.
 *
 * Context: @lock held on entry and on return; @fn may sleep.
 * Return: 0, or the first error of @fn (every slot is still attempted).
 */
int qcow2_cache_writeback_unlocked(struct qcow2_cache *c,
				   struct qcow2_mutex *lock,
				   int (*fn)(void *arg, u64 key,
					     const u8 *data, u32 bytes),
				   void *arg)
{
	u32 i, n = c->nr_dirty;
	int ret = 0;

	if (!n)
		return 0;
	qcow2_sort(c->dirty, n, sizeof(*c->dirty), cache_dirty_cmp);
	if (lock)
		qcow2_mutex_unlock(lock);
	for (i = 0; i < n; i++) {
		struct qcow2_cache_slot *s = &c->slots[c->dirty[i].slot];
		int r = fn(arg, s->key, s->data, c->slot_bytes);

		if (r && !ret)
			ret = r;
		s->written = !r;
	}
	if (lock)
		qcow2_mutex_lock(lock);
	cache_dirty_compact(c);
	return ret;
}

/**
 * qcow2_cache_is_dirty() - is @key cached and marked dirty?
 * @c: cache, owner's lock held
 * @key: key
 *
 * Context: owner's lock held.
 * Return: true if so.
 */
bool qcow2_cache_is_dirty(const struct qcow2_cache *c, u64 key)
{
	s32 i = cache_find(c, key);

	return i != QCOW2_CACHE_NONE && c->slots[i].dirty;
}

/**
 * qcow2_cache_drop() - forget @key if it is cached and clean
 * @c: cache, owner's lock held
 * @key: key
 *
 * Context: owner's lock held.
 * Return: true if @key is no longer cached.
 */
bool qcow2_cache_drop(struct qcow2_cache *c, u64 key)
{
	s32 i = cache_find(c, key);

	if (i == QCOW2_CACHE_NONE)
		return true;
	if (c->slots[i].dirty || c->slots[i].loading)
		return false;
	cache_lru_unlink(c, i);
	cache_hash_remove(c, i);
	c->nr_used--;
	cache_put_free(c, i);
	return true;
}

/* Slots that must keep their buffers: dirty, loading, reserved, @keep. */
static u32 cache_keep(const struct qcow2_cache *c, u32 keep)
{
	u32 busy = c->nr_slots - c->nr_bare - (c->nr_used - c->nr_dirty);

	/* busy counts the dirty, the free and the reserved slots. */
	return max_t(u32, keep, QCOW2_CACHE_MIN_SLOTS) + busy;
}

/**
 * qcow2_cache_shrinkable() - how many slots qcow2_cache_shrink() could free
 * @c: cache, owner's lock held (or a racy estimate without it)
 * @keep: slots that must keep a buffer besides the dirty and busy ones
 *
 * Return: clean slots in use beyond @keep (free slots are not counted:
 * the next miss would take them).
 */
u32 qcow2_cache_shrinkable(const struct qcow2_cache *c, u32 keep)
{
	u32 have = c->nr_slots - c->nr_bare;
	u32 need = cache_keep(c, keep);

	return have > need ? have - need : 0;
}

/**
 * qcow2_cache_shrink() - give back the buffers of clean slots
 * @c: cache, owner's lock held
 * @nr: slots wanted
 * @keep: clean slots to leave with buffers, besides the dirty and busy ones
 *
 * Takes the least recently used clean slots first; dirty and loading slots
 * are never touched, so no write-back is needed. The slots stay part of the
 * cache, bare, until a reserve can give them a buffer again.
 *
 * Context: owner's lock held; frees memory, never sleeps for I/O.
 * Return: slots given back.
 */
u32 qcow2_cache_shrink(struct qcow2_cache *c, u32 nr, u32 keep)
{
	u32 done = 0, can = qcow2_cache_shrinkable(c, keep);
	s32 i = c->lru_tail, prev;

	nr = min_t(u32, nr, can);
	while (done < nr && i != QCOW2_CACHE_NONE) {
		prev = c->slots[i].lru_prev;
		if (!c->slots[i].dirty) {
			cache_lru_unlink(c, i);
			cache_hash_remove(c, i);
			c->nr_used--;
			qcow2_free_io(c->slots[i].data);
			c->slots[i].data = NULL;
			c->slots[i].lru_next = c->bare_head;
			c->bare_head = i;
			WRITE_ONCE(c->nr_bare, c->nr_bare + 1);
			done++;
		}
		i = prev;
	}
	c->stats.released += done;
	return done;
}

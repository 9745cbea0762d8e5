// SPDX-License-Identifier: GPL-2.0
/*
 * Backing chains: a stack of layers, layer 0 on top, each a qcow2 image or a
 * raw file. A guest byte is served by the topmost layer that has it; zero
 * clusters hide what is below; past the end of a layer everything reads as
 * zero; below the last layer, too.
 *
 * Flat cost over deep chains: resolving one guest range walks the layers,
 * one qcow2_map() each, which on a 300-layer chain means 300 L2 lookups. The
 * result of that walk is kept in a mapping cache, a policy on the slot cache
 * (qcow2_cache.c): a slot holds every extent of one 64 KiB chunk of the guest
 * disk, each tagged with the layer that serves it. A warm read costs one hash
 * lookup whatever the depth. The cache resolves the layers below the top
 * only: the top layer may be writable and is always mapped live (one L2
 * lookup), and only what it leaves unallocated goes to the cache. Entries
 * never go stale: the lower layers are read-only while attached. A chunk
 * with more extents than a slot holds is resolved each time, not cached.
 *
 * Memory: every layer's L2 cache gets an equal share of the configured L2
 * budget (at least its minimum); the L1 tables of all layers together are
 * bounded by QCOW2_MAX_CHAIN_L1_BYTES; the mapping cache by its own size.
 *
 * Lock: mc_lock protects the mapping cache (and mc_seq); it is never held
 * across I/O. A miss inserts its slot as loading, drops the lock for the
 * walk and publishes the slot after it; a lookup of the same chunk waits
 * on mc_wq for that load, lookups of other chunks go on. It is taken before
 * a layer's l2c_lock only in the sense that the walk, run without it,
 * takes those.
 */
#include "qcow2.h"

#define QCOW2_MC_SLOT_BYTES		1024U
#define QCOW2_MC_CHUNK_BYTES		BIT_ULL(QCOW2_CHAIN_CHUNK_BITS)

/* One extent as stored in a mapping cache slot. */
struct qcow2_mc_ext {
	u64 off;		/* DATA: host offset; COMPRESSED: comp_off */
	u32 len;		/* guest bytes, <= chunk size */
	u32 comp_bytes;		/* COMPRESSED */
	u32 cluster_off;	/* COMPRESSED: offset of the first byte */
	u16 layer;
	u8 type;		/* enum qcow2_ext_type */
	u8 pad;
};

struct qcow2_mc_slot {
	u32 nr;			/* extents, covering the chunk in order */
	u32 pad;
	struct qcow2_mc_ext ext[];
};

#define QCOW2_MC_MAX_EXTS \
	((QCOW2_MC_SLOT_BYTES - sizeof(struct qcow2_mc_slot)) / \
	 sizeof(struct qcow2_mc_ext))

/* Resolve from @pos, at most @len bytes, walking down from layer @first. */
static int chain_resolve(struct qcow2_chain *c, u32 first, u64 pos, u64 len,
			 struct qcow2_chain_extent *ce)
{
	u32 i;
	int ret;

	memset(ce, 0, sizeof(*ce));
	ce->layer = first;
	for (i = first; i < c->nr_layers; i++) {
		struct qcow2_layer *l = &c->layers[i];

		ce->layer = i;
		if (pos >= l->size)
			break;
		len = min_t(u64, len, l->size - pos);
		if (l->format == QCOW2_LAYER_RAW) {
			ce->ext.type = QCOW2_EXT_DATA;
			ce->ext.host_off = pos;
			ce->ext.len = len;
			return 0;
		}
		ret = qcow2_map(&l->img, pos, len, &ce->ext);
		if (ret)
			return ret;
		if (ce->ext.type != QCOW2_EXT_UNALLOC)
			return 0;
		len = ce->ext.len;
	}
	/* Past a layer's end or below the base: zeroes. */
	ce->ext.type = QCOW2_EXT_ZERO;
	ce->ext.len = len;
	return 0;
}

/* Resolve a whole chunk into @slot; false if it does not fit. */
static int chain_fill_slot(struct qcow2_chain *c, u64 start,
			   struct qcow2_mc_slot *slot, bool *fits)
{
	u64 end = min_t(u64, start + QCOW2_MC_CHUNK_BYTES, c->size);
	struct qcow2_chain_extent ce;
	u64 pos = start;
	int ret;

	slot->nr = 0;
	*fits = false;
	while (pos < end) {
		struct qcow2_mc_ext *e;

		if (slot->nr == QCOW2_MC_MAX_EXTS)
			return 0;
		ret = chain_resolve(c, 1, pos, end - pos, &ce);
		if (ret)
			return ret;
		e = &slot->ext[slot->nr++];
		e->type = ce.ext.type;
		e->layer = ce.layer;
		e->len = ce.ext.len;
		e->off = ce.ext.type == QCOW2_EXT_COMPRESSED ?
			 ce.ext.comp_off : ce.ext.host_off;
		e->comp_bytes = ce.ext.comp_bytes;
		e->cluster_off = ce.ext.cluster_off;
		pos += ce.ext.len;
	}
	*fits = true;
	return 0;
}

/* The part of a cached extent from @skip bytes in, at most @len bytes. */
static void chain_from_slot(const struct qcow2_mc_ext *e, u64 skip, u64 len,
			    struct qcow2_chain_extent *ce)
{
	memset(ce, 0, sizeof(*ce));
	ce->layer = e->layer;
	ce->ext.type = e->type;
	ce->ext.len = min_t(u64, e->len - skip, len);
	if (e->type == QCOW2_EXT_DATA) {
		ce->ext.host_off = e->off + skip;
	} else if (e->type == QCOW2_EXT_COMPRESSED) {
		ce->ext.comp_off = e->off;
		ce->ext.comp_bytes = e->comp_bytes;
		ce->ext.cluster_off = e->cluster_off + skip;
	}
}

/* Walk the layers below the top for @pos, with mc_lock dropped. */
static int chain_resolve_unlocked(struct qcow2_chain *c, u64 pos, u64 len,
				  struct qcow2_chain_extent *ce)
{
	int ret;

	qcow2_mutex_unlock(&c->mc_lock);
	ret = chain_resolve(c, 1, pos, len, ce);
	qcow2_mutex_lock(&c->mc_lock);
	return ret;
}

/* A load of the mapping cache ended: wake who waits for one. */
static void chain_load_done(struct qcow2_chain *c, s32 nr, bool ok)
{
	qcow2_cache_loaded(&c->mc, nr, ok);
	WRITE_ONCE(c->mc_seq, c->mc_seq + 1);
	qcow2_wake_all(&c->mc_wq);
}

/*
 * One extent from @pos within its chunk, through the mapping cache.
 * mc_lock held on entry and return, dropped during any walk.
 */
static int chain_map_chunk(struct qcow2_chain *c, u64 pos, u64 len,
			   struct qcow2_chain_extent *ce)
{
	u64 start = pos & ~(QCOW2_MC_CHUNK_BYTES - 1);
	u64 chunk_left = start + QCOW2_MC_CHUNK_BYTES - pos;
	struct qcow2_mc_slot *slot;
	u64 at = start;
	bool fits, busy;
	s32 nr;
	u32 i;
	int ret;

	qcow2_mutex_assert_held(&c->mc_lock);
	len = min_t(u64, len, chunk_left);
	for (;;) {
		slot = (struct qcow2_mc_slot *)qcow2_cache_lookup_ex(&c->mc,
								     start,
								     &busy);
		if (slot || !busy)
			break;
		qcow2_wait_change(&c->mc_wq, &c->mc_lock, &c->mc_seq,
				  c->mc_seq);
	}
	if (!slot) {
		slot = (struct qcow2_mc_slot *)qcow2_cache_reserve(&c->mc,
								   &nr);
		/* Every slot being loaded: resolve this one uncached. */
		if (!slot)
			return chain_resolve_unlocked(c, pos, len, ce);
		qcow2_cache_insert_loading(&c->mc, nr, start);
		qcow2_mutex_unlock(&c->mc_lock);
		ret = chain_fill_slot(c, start, slot, &fits);
		qcow2_mutex_lock(&c->mc_lock);
		chain_load_done(c, nr, !ret && fits);
		if (ret)
			return ret;
		if (!fits)
			return chain_resolve_unlocked(c, pos, len, ce);
	}
	for (i = 0; i < slot->nr; i++) {
		if (pos < at + slot->ext[i].len) {
			chain_from_slot(&slot->ext[i], pos - at, len, ce);
			return 0;
		}
		at += slot->ext[i].len;
	}
	/* The slot covers the chunk up to the virtual size; pos is below it. */
	return -EUCLEAN;
}

static bool chain_can_merge(const struct qcow2_chain_extent *a,
			    const struct qcow2_chain_extent *b)
{
	if (a->ext.type != b->ext.type)
		return false;
	if (a->ext.type == QCOW2_EXT_ZERO)
		return true;
	return a->ext.type == QCOW2_EXT_DATA && a->layer == b->layer &&
	       b->ext.host_off == a->ext.host_off + a->ext.len;
}

/**
 * qcow2_chain_map() - find which layer serves guest bytes, and where
 * @c: open chain
 * @guest_off: first guest byte
 * @len: bytes wanted, > 0
 * @ce: the longest extent from @guest_off (at most @len bytes) of one kind,
 *      one layer and, for DATA, contiguous in that layer's data file. Its
 *      type is DATA, ZERO or COMPRESSED, never UNALLOC.
 *
 * Context: may sleep; takes mc_lock and layers' l2c_lock.
 * Return: 0, -EINVAL (@len is 0), -EUCLEAN, -EIO or -ENOMEM.
 */
int qcow2_chain_map(struct qcow2_chain *c, u64 guest_off, u64 len,
		    struct qcow2_chain_extent *ce)
{
	struct qcow2_chain_extent next;
	int ret;

	memset(ce, 0, sizeof(*ce));
	if (!len)
		return -EINVAL;
	if (guest_off >= c->size) {
		ce->ext.type = QCOW2_EXT_ZERO;
		ce->ext.len = len;
		return 0;
	}
	len = min_t(u64, len, c->size - guest_off);
	if (!c->mc.nr_slots)
		return chain_resolve(c, 0, guest_off, len, ce);

	/* The top layer live; what it leaves unallocated from the cache. */
	ret = qcow2_map(&c->layers[0].img, guest_off, len, &ce->ext);
	if (ret || ce->ext.type != QCOW2_EXT_UNALLOC)
		return ret;
	len = ce->ext.len;

	qcow2_mutex_lock(&c->mc_lock);
	ret = chain_map_chunk(c, guest_off, len, ce);
	/*
	 * Grow across chunk boundaries, so big reads stay big. A failure
	 * here only ends the extent: the next call meets it again.
	 */
	while (!ret && ce->ext.len < len &&
	       ce->ext.type != QCOW2_EXT_COMPRESSED &&
	       !((guest_off + ce->ext.len) & (QCOW2_MC_CHUNK_BYTES - 1))) {
		if (chain_map_chunk(c, guest_off + ce->ext.len,
				    len - ce->ext.len, &next) ||
		    !chain_can_merge(ce, &next))
			break;
		ce->ext.len += next.ext.len;
	}
	qcow2_mutex_unlock(&c->mc_lock);
	return ret;
}

static int chain_check_layer(struct qcow2_chain *c, u32 i,
			     const struct qcow2_layer_desc *d,
			     struct qcow2_err *err)
{
	const struct qcow2_header *h = &c->layers[i].img.h;
	bool has_backing = h->backing_file.len != 0;
	bool last = i + 1 == c->nr_layers;

	if (d->format == QCOW2_LAYER_RAW) {
		if (!i) {
			qcow2_err_set(err, "the top layer must be a qcow2 image");
			return -EINVAL;
		}
		if (!last) {
			qcow2_err_set(err, "layer %u is raw but more layers follow it",
				      i);
			return -EINVAL;
		}
		return 0;
	}
	if (has_backing && last) {
		qcow2_err_set(err, "layer %u names a backing file (%.48s) that was not given",
			      i, h->backing_file_hint);
		return -EINVAL;
	}
	if (!has_backing && !last) {
		qcow2_err_set(err, "layer %u has no backing file, but %u more layers were given",
			      i, c->nr_layers - 1 - i);
		return -EINVAL;
	}
	if (d->has_data_file &&
	    !(h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)) {
		qcow2_err_set(err, "layer %u: a data file was given but the image has none",
			      i);
		return -EINVAL;
	}
	return 0;
}

static int chain_open_layer(struct qcow2_chain *c, u32 i,
			    const struct qcow2_layer_desc *d,
			    const struct qcow2_open_opts *opts,
			    u64 *l1_bytes, struct qcow2_err *err)
{
	struct qcow2_layer *l = &c->layers[i];
	struct qcow2_open_opts lo = {
		.flags = QCOW2_OPEN_ALLOW_BACKING,
		.snapshot = i ? NULL : opts->snapshot,
		.rc_cache_bytes = i ? 0 : opts->rc_cache_bytes,
		.data_io = i ? NULL : opts->data_io,
		.max_file_size = i ? 0 : opts->max_file_size,
	};
	int ret;

	l->format = d->format;
	if (d->format == QCOW2_LAYER_RAW) {
		l->size = d->file_size;
		return chain_check_layer(c, i, d, err);
	}
	if (d->has_data_file)
		lo.flags |= QCOW2_OPEN_ALLOW_DATA_FILE;
	/* Only the top layer is ever written. */
	if (!i)
		lo.flags |= opts->flags;
	/*
	 * Each layer gets an equal share of the L2 budget (the engine rounds
	 * it up to its minimum); a lone image keeps the engine's default.
	 */
	if (opts->l2_cache_bytes)
		lo.l2_cache_bytes = opts->l2_cache_bytes / c->nr_layers;
	else if (c->nr_layers > 1)
		lo.l2_cache_bytes = QCOW2_L2C_DEFAULT_MAX_BYTES / c->nr_layers;
	if ((opts->l2_cache_bytes || c->nr_layers > 1) && !lo.l2_cache_bytes)
		lo.l2_cache_bytes = 1;

	ret = qcow2_image_open(&l->img, &d->io, d->file_size, &lo, err);
	if (ret)
		return ret;
	l->size = l->img.h.size;
	*l1_bytes += (u64)l->img.h.l1_size * sizeof(u64);
	if (*l1_bytes > QCOW2_MAX_CHAIN_L1_BYTES) {
		qcow2_err_set(err, "the L1 tables of the chain exceed %u bytes",
			      QCOW2_MAX_CHAIN_L1_BYTES);
		ret = -EINVAL;
	} else {
		ret = chain_check_layer(c, i, d, err);
	}
	if (ret)
		qcow2_image_close(&l->img);
	else
		l->img.has_backing = i + 1 < c->nr_layers;
	return ret;
}

/* Prefix an engine message with the layer it is about. */
static void chain_err_layer(struct qcow2_err *err, u32 i, u32 nr)
{
	char msg[QCOW2_ERR_MSG_BYTES];

	if (!err || nr == 1 || !err->msg[0] ||
	    !strncmp(err->msg, "layer ", 6))
		return;
	memcpy(msg, err->msg, sizeof(msg));
	qcow2_err_set(err, "layer %u: %.140s", i, msg);
}

static void chain_close_layers(struct qcow2_chain *c, u32 n)
{
	while (n--) {
		if (c->layers[n].format == QCOW2_LAYER_QCOW2)
			qcow2_image_close(&c->layers[n].img);
	}
}

/**
 * qcow2_chain_open() - open a stack of layers
 * @c: zeroed by the caller
 * @d: layer descriptions, @d[0] the top image
 * @nr: number of layers, 1..QCOW2_MAX_CHAIN_LAYERS
 * @opts: flags, snapshot and L2 budget for the whole chain
 * @err: reason on failure, naming the layer by its index
 *
 * Context: may sleep.
 * Return: 0 or -errno (see qcow2_image_open(); -EINVAL for an inconsistent
 * chain).
 */
int qcow2_chain_open(struct qcow2_chain *c, const struct qcow2_layer_desc *d,
		     u32 nr, const struct qcow2_open_opts *opts,
		     struct qcow2_err *err)
{
	u64 l1_bytes = 0, chunks, mc_bytes;
	u32 i;
	int ret;

	if (err)
		err->msg[0] = '\0';
	if (!nr || nr > QCOW2_MAX_CHAIN_LAYERS) {
		qcow2_err_set(err, "a chain has 1 to %u layers, not %u",
			      QCOW2_MAX_CHAIN_LAYERS, nr);
		return -EINVAL;
	}
	c->layers = qcow2_zalloc(sizeof(*c->layers) * nr);
	if (!c->layers) {
		qcow2_err_set(err, "out of memory for %u layers", nr);
		return -ENOMEM;
	}
	c->nr_layers = nr;
	for (i = 0; i < nr; i++) {
		ret = chain_open_layer(c, i, &d[i], opts, &l1_bytes, err);
		if (ret) {
			chain_err_layer(err, i, nr);
			goto close_layers;
		}
	}
	c->size = c->layers[0].size;

	if (nr > 1) {
		chunks = (c->size + QCOW2_MC_CHUNK_BYTES - 1) >>
			 QCOW2_CHAIN_CHUNK_BITS;
		mc_bytes = opts->map_cache_bytes ? opts->map_cache_bytes :
			   QCOW2_MC_DEFAULT_BYTES;
		mc_bytes = min_t(u64, mc_bytes, chunks * QCOW2_MC_SLOT_BYTES);
		mc_bytes = min_t(u64, mc_bytes, QCOW2_CACHE_MAX_BYTES);
		ret = qcow2_cache_init(&c->mc, QCOW2_MC_SLOT_BYTES,
				       max_t(u64, mc_bytes / QCOW2_MC_SLOT_BYTES,
					     QCOW2_CACHE_MIN_SLOTS));
		if (ret) {
			qcow2_err_set(err, "out of memory for the mapping cache");
			goto close_layers;
		}
	}
	qcow2_mutex_init(&c->mc_lock);
	qcow2_waitq_init(&c->mc_wq);
	return 0;

close_layers:
	chain_close_layers(c, i);
	qcow2_free(c->layers);
	c->layers = NULL;
	return ret;
}

/**
 * qcow2_chain_close() - release everything qcow2_chain_open() set up
 * @c: an open chain, no qcow2_chain_map() running
 *
 * Context: may sleep.
 */
void qcow2_chain_close(struct qcow2_chain *c)
{
	qcow2_waitq_destroy(&c->mc_wq);
	qcow2_mutex_destroy(&c->mc_lock);
	qcow2_cache_destroy(&c->mc);
	chain_close_layers(c, c->nr_layers);
	qcow2_free(c->layers);
	c->layers = NULL;
}

/**
 * qcow2_chain_get_mc_stats() - snapshot the mapping cache counters
 * @c: open chain
 * @st: filled with the counters (zero for a single-layer chain)
 *
 * Context: may sleep; takes mc_lock.
 */
void qcow2_chain_get_mc_stats(struct qcow2_chain *c,
			      struct qcow2_cache_stats *st)
{
	qcow2_mutex_lock(&c->mc_lock);
	*st = c->mc.stats;
	qcow2_mutex_unlock(&c->mc_lock);
}

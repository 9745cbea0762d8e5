// SPDX-License-Identifier: GPL-2.0
/*
 * Compressed clusters: deflate (raw, no zlib header) and zstd, decompressed
 * with the kernel's own zlib and zstd.
 *
 * Workspaces: one per possible CPU, each behind its own mutex, allocated on
 * first use. A worker takes the workspace of the CPU it runs on; if it
 * migrates meanwhile it merely shares a workspace with another CPU. There is
 * no global lock on the decompression path.
 *
 * Decompressed cluster cache: each device keeps its last few decompressed
 * clusters (QCOW2BLK_ZCACHE_BYTES, at least two clusters) so that a
 * sequential reader of a compressed cluster pays for one decompression,
 * not one per request. Entries are filled outside the cache lock and copied
 * out under it; the lock is a spinlock because nothing under it sleeps.
 */
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/vmalloc.h>
#include <linux/zlib.h>
#include <linux/zstd.h>

#include "qcow2blk_priv.h"

struct qcow2blk_zws {
	struct mutex lock;		/* protects the buffers below */
	void *zlib_ws;			/* zlib_inflate_workspacesize() */
	void *zstd_ws;			/* zstd_dctx_workspace_bound() */
	zstd_dctx *zstd;		/* lives in zstd_ws */
};

static struct qcow2blk_zws __percpu *qcow2blk_zws;

static int qcow2blk_inflate(struct qcow2blk_zws *ws, const void *src,
			    size_t src_len, void *dst, size_t dst_len)
{
	z_stream strm = {};
	int ret;

	if (!ws->zlib_ws) {
		ws->zlib_ws = vmalloc(zlib_inflate_workspacesize());
		if (!ws->zlib_ws)
			return -ENOMEM;
	}
	strm.workspace = ws->zlib_ws;
	strm.next_in = src;
	strm.avail_in = src_len;
	strm.next_out = dst;
	strm.avail_out = dst_len;

	/* Raw deflate: negative window bits, the largest window. */
	ret = zlib_inflateInit2(&strm, -MAX_WBITS);
	if (ret != Z_OK)
		return -EIO;
	ret = zlib_inflate(&strm, Z_FINISH);
	zlib_inflateEnd(&strm);
	/* The data may end with padding; a full cluster is what counts. */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && strm.avail_out == 0)
		return 0;
	return -EUCLEAN;
}

static int qcow2blk_unzstd(struct qcow2blk_zws *ws, const void *src,
			   size_t src_len, void *dst, size_t dst_len)
{
	size_t in = 0, out = 0, frame, n;

	if (!ws->zstd) {
		size_t size = zstd_dctx_workspace_bound();

		ws->zstd_ws = vmalloc(size);
		if (!ws->zstd_ws)
			return -ENOMEM;
		ws->zstd = zstd_init_dctx(ws->zstd_ws, size);
		if (!ws->zstd) {
			vfree(ws->zstd_ws);
			ws->zstd_ws = NULL;
			return -ENOMEM;
		}
	}

	/*
	 * The compressed bytes are rounded up to sectors, so frames are
	 * measured first and decoded one at a time until the cluster is full.
	 */
	while (out < dst_len) {
		if (in >= src_len)
			return -EUCLEAN;
		frame = zstd_find_frame_compressed_size(src + in, src_len - in);
		if (zstd_is_error(frame))
			return -EUCLEAN;
		n = zstd_decompress_dctx(ws->zstd, dst + out, dst_len - out,
					 src + in, frame);
		if (zstd_is_error(n))
			return -EUCLEAN;
		in += frame;
		out += n;
	}
	return 0;
}

static int qcow2blk_decompress(const struct qcow2_header *h, const void *src,
			       size_t src_len, void *dst)
{
	size_t dst_len = h->cluster_size;
	struct qcow2blk_zws *ws;
	int ret;

	ws = per_cpu_ptr(qcow2blk_zws, raw_smp_processor_id());
	mutex_lock(&ws->lock);
	if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
		ret = qcow2blk_unzstd(ws, src, src_len, dst, dst_len);
	else
		ret = qcow2blk_inflate(ws, src, src_len, dst, dst_len);
	mutex_unlock(&ws->lock);
	return ret;
}

/* Copy a cached cluster out if present. Returns true on a hit. */
static bool qcow2blk_zcache_copy(struct qcow2blk_dev *dev, u32 layer,
				 const struct qcow2_extent *ext,
				 struct iov_iter *iter)
{
	struct qcow2blk_zcache *zc = &dev->zc;
	struct qcow2blk_zentry *e;
	bool hit = false;

	spin_lock(&zc->lock);
	if (!zc->entries)
		goto out;
	list_for_each_entry(e, &zc->lru, lru) {
		if (e->comp_off != ext->comp_off || e->layer != layer)
			continue;
		list_move(&e->lru, &zc->lru);
		hit = copy_to_iter(e->data + ext->cluster_off, ext->len,
				   iter) == ext->len;
		break;
	}
	if (hit)
		zc->hits++;
	else
		zc->misses++;
out:
	spin_unlock(&zc->lock);
	return hit;
}

/* Keep @data (cluster_size bytes) in the cache; returns it if not kept. */
static void *qcow2blk_zcache_insert(struct qcow2blk_dev *dev, u32 layer,
				    u64 comp_off, void *data)
{
	struct qcow2blk_zcache *zc = &dev->zc;
	struct qcow2blk_zentry *e, *victim;
	void *old;

	spin_lock(&zc->lock);
	list_for_each_entry(e, &zc->lru, lru) {
		if (e->comp_off == comp_off && e->layer == layer) {
			/* Another worker got there first. */
			spin_unlock(&zc->lock);
			return data;
		}
	}
	victim = list_last_entry(&zc->lru, struct qcow2blk_zentry, lru);
	old = victim->data;
	victim->data = data;
	victim->comp_off = comp_off;
	victim->layer = layer;
	list_move(&victim->lru, &zc->lru);
	spin_unlock(&zc->lock);
	return old;
}

/* Allocate the cache entries the first time a compressed cluster is read. */
static int qcow2blk_zcache_alloc(struct qcow2blk_dev *dev)
{
	struct qcow2blk_zcache *zc = &dev->zc;
	struct qcow2blk_zentry *entries;
	unsigned int i;

	if (READ_ONCE(zc->entries))
		return 0;
	entries = kcalloc(zc->nr_entries, sizeof(*entries), GFP_NOIO);
	if (!entries)
		return -ENOMEM;
	for (i = 0; i < zc->nr_entries; i++)
		entries[i].comp_off = U64_MAX;

	spin_lock(&zc->lock);
	if (zc->entries) {
		spin_unlock(&zc->lock);
		kfree(entries);
		return 0;
	}
	for (i = 0; i < zc->nr_entries; i++)
		list_add_tail(&entries[i].lru, &zc->lru);
	WRITE_ONCE(zc->entries, entries);
	spin_unlock(&zc->lock);
	return 0;
}

/**
 * qcow2blk_read_compressed() - serve guest bytes from a compressed cluster
 * @dev: device
 * @layer: the layer holding the cluster (compressed data is always in the
 *         image file, never in an external data file)
 * @ext: a QCOW2_EXT_COMPRESSED extent from qcow2_chain_map()
 * @iter: destination, advanced by ext->len on success
 *
 * Context: process context (request worker), may sleep.
 * Return: 0, -EUCLEAN (data does not decompress to a full cluster), -EIO or
 * -ENOMEM.
 */
int qcow2blk_read_compressed(struct qcow2blk_dev *dev, u32 layer,
			     const struct qcow2_extent *ext,
			     struct iov_iter *iter)
{
	const struct qcow2_header *h = &dev->chain.layers[layer].img.h;
	u32 cluster_size = h->cluster_size;
	void *src = NULL, *dst = NULL;
	int ret;

	/* The engine never returns bytes beyond their cluster. */
	if (WARN_ON_ONCE(ext->cluster_off + ext->len > cluster_size))
		return -EIO;
	/* Image data: the descriptor format caps it at twice a cluster. */
	if (ext->comp_bytes > 2 * QCOW2_MAX_CLUSTER_SIZE) {
		pr_err_ratelimited("qcow2blk: qcow%d: layer %u: compressed cluster at host offset %llu claims %u bytes\n",
				   dev->index, layer, ext->comp_off,
				   ext->comp_bytes);
		return -EUCLEAN;
	}

	ret = qcow2blk_zcache_alloc(dev);
	if (ret)
		return ret;
	if (qcow2blk_zcache_copy(dev, layer, ext, iter))
		return 0;

	ret = -ENOMEM;
	src = kvmalloc(ext->comp_bytes, GFP_NOIO);
	dst = kvmalloc(cluster_size, GFP_NOIO);
	if (!src || !dst)
		goto out;

	ret = qcow2blk_meta_pread(&dev->layers[layer], src, ext->comp_bytes,
				  ext->comp_off);
	if (ret)
		goto out;
	ret = qcow2blk_decompress(h, src, ext->comp_bytes, dst);
	if (ret == -EUCLEAN) {
		pr_err_ratelimited("qcow2blk: qcow%d: layer %u: compressed cluster at host offset %llu (%u bytes) does not decompress\n",
				   dev->index, layer, ext->comp_off,
				   ext->comp_bytes);
		goto out;
	}
	if (ret)
		goto out;

	if (copy_to_iter(dst + ext->cluster_off, ext->len, iter) != ext->len) {
		ret = -EIO;
		goto out;
	}
	dst = qcow2blk_zcache_insert(dev, layer, ext->comp_off, dst);
out:
	kvfree(dst);
	kvfree(src);
	return ret;
}

/**
 * qcow2blk_zcache_init() - size a new device's decompressed cluster cache
 * @dev: device being attached, image open
 *
 * Context: process context.
 */
void qcow2blk_zcache_init(struct qcow2blk_dev *dev)
{
	struct qcow2blk_zcache *zc = &dev->zc;
	u32 i, largest = 0;

	/* Sized by the largest cluster in the chain, so bytes stay bounded. */
	for (i = 0; i < dev->chain.nr_layers; i++) {
		if (dev->chain.layers[i].format == QCOW2_LAYER_QCOW2)
			largest = max(largest,
				      dev->chain.layers[i].img.h.cluster_size);
	}
	spin_lock_init(&zc->lock);
	INIT_LIST_HEAD(&zc->lru);
	zc->entries = NULL;
	zc->nr_entries = max_t(unsigned int, QCOW2BLK_ZCACHE_MIN_ENTRIES,
			       QCOW2BLK_ZCACHE_BYTES / largest);
}

/**
 * qcow2blk_zcache_free() - drop a device's decompressed clusters
 * @dev: device being detached, no request in flight
 *
 * Context: process context.
 */
void qcow2blk_zcache_free(struct qcow2blk_dev *dev)
{
	struct qcow2blk_zcache *zc = &dev->zc;
	unsigned int i;

	if (!zc->entries)
		return;
	for (i = 0; i < zc->nr_entries; i++)
		kvfree(zc->entries[i].data);
	kfree(zc->entries);
	zc->entries = NULL;
}

/**
 * qcow2blk_compress_init() - set up the per-CPU workspaces (empty)
 *
 * Context: module init.
 * Return: 0 or -ENOMEM.
 */
int qcow2blk_compress_init(void)
{
	int cpu;

	qcow2blk_zws = alloc_percpu(struct qcow2blk_zws);
	if (!qcow2blk_zws)
		return -ENOMEM;
	for_each_possible_cpu(cpu)
		mutex_init(&per_cpu_ptr(qcow2blk_zws, cpu)->lock);
	return 0;
}

/**
 * qcow2blk_compress_exit() - free the per-CPU workspaces
 *
 * Context: module exit, no device left.
 */
void qcow2blk_compress_exit(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct qcow2blk_zws *ws = per_cpu_ptr(qcow2blk_zws, cpu);

		vfree(ws->zlib_ws);
		vfree(ws->zstd_ws);
		mutex_destroy(&ws->lock);
	}
	free_percpu(qcow2blk_zws);
}

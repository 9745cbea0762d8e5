// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2blk request path.
 *
 * queue_rq() only starts the request and queues its work item. The worker,
 * in process context with reclaim kept away from I/O (memalloc_noio), walks
 * the request's guest range through qcow2_map(): each extent is either
 * zero-filled, served from a decompressed cluster, or read from the image
 * file with one asynchronous kiocb over the request's own pages (direct I/O
 * when the file allows it). Clusters contiguous on the host come back from
 * the engine as one extent, hence one read.
 *
 * cmd->pending counts the reads in flight plus one held by the worker while
 * it issues; whoever drops it to zero completes the request.
 *
 * Writes (writable devices only): an overwrite of clusters the image owns
 * is mapped by qcow2_write_map_inplace() and sent like a read, as one
 * asynchronous kiocb over the request's pages (qcow2blk_write_inplace()).
 * Everything else is synchronous in the worker: the engine
 * (qcow2_write(), qcow2_write_zeroes(), qcow2_discard(), qcow2_flush())
 * decides where guest bytes go and calls back into struct qcow2_wsrc for
 * the data: one write over an ITER_BVEC iterator made of the engine's
 * copy-on-write head, the request's own pages (or the zero page) and its
 * tail, and a reader of the current guest view for the copy-on-write
 * parts. Allocating writes run that data write with the engine's wlock
 * dropped, so several are in flight at once; each gathers its bio_vecs in
 * an array of its own.
 *
 * Reads and in-place writes count themselves in the device's epoch
 * (struct qcow2blk_epoch) from before they map until they complete; the
 * engine drains it before freed clusters are reused or punched.
 *
 * Direct and buffered I/O: a layer probed for direct I/O (at 512 to 4096
 * bytes, its dio_align) reads and writes with IOCB_DIRECT whenever the
 * offset and the length are aligned to that and every buffer piece to 512
 * bytes; other pieces (odd tails, unaligned user pages) go
 * through the page cache. Both stay coherent: the kernel writes back and
 * invalidates cached pages of a range before direct I/O on it. Kernel
 * buffers of the engine (kmalloc or vmalloc) are turned into bio_vecs page
 * by page, so vmalloc tables go out direct too; nothing is bounced.
 */
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/mempool.h>
#include <linux/ioprio.h>
#include <linux/blkdev.h>
#include <linux/falloc.h>
#include <linux/vmalloc.h>

#include "qcow2blk_priv.h"

/* bio_vecs on the stack for one piece of a kernel-buffer read or write. */
#define QCOW2BLK_KBUF_BVECS		16

/* Extra aio beyond the one in each PDU; a pool keeps reclaim moving. */
#define QCOW2BLK_AIO_POOL_MIN		64

static struct kmem_cache *qcow2blk_aio_cache;
static mempool_t *qcow2blk_aio_pool;

static void qcow2blk_cmd_fail(struct qcow2blk_cmd *cmd, blk_status_t status)
{
	cmpxchg(&cmd->status, BLK_STS_OK, status);
}

static void qcow2blk_cmd_put(struct qcow2blk_cmd *cmd)
{
	if (atomic_dec_and_test(&cmd->pending))
		blk_mq_complete_request(blk_mq_rq_from_pdu(cmd));
}

/* ---- epochs of requests in flight (struct qcow2blk_epoch) -------------- */

/**
 * qcow2blk_epoch_init() - set up a device's request epochs
 * @e: the device's epoch state
 *
 * Context: attach.
 */
void qcow2blk_epoch_init(struct qcow2blk_epoch *e)
{
	spin_lock_init(&e->lock);
	e->cur = 0;
	atomic_set(&e->inflight[0], 0);
	atomic_set(&e->inflight[1], 0);
}

/* Count @cmd in the current epoch; before it maps anything. */
static void qcow2blk_epoch_enter(struct qcow2blk_dev *dev,
				 struct qcow2blk_cmd *cmd)
{
	struct qcow2blk_epoch *e = &dev->epoch;

	spin_lock(&e->lock);
	cmd->epoch = e->cur & 1;
	atomic_inc(&e->inflight[cmd->epoch]);
	spin_unlock(&e->lock);
}

/* @cmd is done with what it mapped. Any context. */
static void qcow2blk_epoch_exit(struct qcow2blk_dev *dev,
				struct qcow2blk_cmd *cmd)
{
	atomic_t *n;

	if (cmd->epoch < 0)
		return;
	n = &dev->epoch.inflight[cmd->epoch];
	cmd->epoch = -1;
	if (atomic_dec_and_test(n))
		wake_up_var(n);
}

/*
 * qcow2_io::drain of the top image: every request that may have mapped a
 * cluster before the caller freed it has completed. Runs in writer
 * context (wlock held); the requests waited for never need wlock. Drains
 * are serialized by wlock, so the old slot is empty before it is reused.
 */
static void qcow2blk_drain(void *priv)
{
	const struct qcow2blk_fio *fio = priv;
	struct qcow2blk_epoch *e = &fio->layer->dev->epoch;
	unsigned int old;

	spin_lock(&e->lock);
	old = e->cur & 1;
	e->cur++;
	spin_unlock(&e->lock);
	wait_var_event(&e->inflight[old], !atomic_read(&e->inflight[old]));
}

static void qcow2blk_complete_rq(struct request *rq)
{
	struct qcow2blk_cmd *cmd = blk_mq_rq_to_pdu(rq);

	qcow2blk_epoch_exit(cmd->dev, cmd);
	kfree(cmd->bvec);
	cmd->bvec = NULL;
	blk_mq_end_request(rq, cmd->status);
}

static void qcow2blk_aio_done(struct kiocb *iocb, long ret)
{
	struct qcow2blk_aio *aio = container_of(iocb, struct qcow2blk_aio,
						iocb);
	struct qcow2blk_cmd *cmd = aio->cmd;
	struct qcow2blk_dev *dev = cmd->dev;

	if (ret < 0) {
		atomic64_inc(&dev->stats.io_errors);
		pr_err_ratelimited("qcow2blk: qcow%d: read of image at %lld failed: %ld\n",
				   dev->index, iocb->ki_pos, ret);
		qcow2blk_cmd_fail(cmd, BLK_STS_IOERR);
	} else if (ret < aio->len) {
		/* Past the end of the image file: the rest reads as zero. */
		iov_iter_advance(&aio->iter, ret);
		iov_iter_zero(aio->len - ret, &aio->iter);
	}
	if (aio->pooled)
		mempool_free(aio, qcow2blk_aio_pool);
	qcow2blk_cmd_put(cmd);
}

/*
 * Direct I/O at @pos for @len bytes of @iter, on a file whose direct I/O
 * alignment is @align (0: none): offset and length aligned to it, memory
 * to 512 bytes (what block devices ask of buffers).
 */
static bool qcow2blk_dio_ok(u32 align, u64 pos, u64 len,
			    const struct iov_iter *iter)
{
	return align && IS_ALIGNED(pos | len, align) &&
	       !(iov_iter_alignment(iter) & (SECTOR_SIZE - 1));
}

static void qcow2blk_waio_done(struct kiocb *iocb, long ret);

/*
 * Send @aio (len and cmd set) as one asynchronous read or write of all of
 * @iter at @pos in @file, with kiocb @flags (IOCB_DSYNC for FUA); direct
 * when the file has it and the piece is aligned (unaligned ones, odd
 * virtual sizes, go through the page cache). Its completion drops the
 * request's count.
 */
static void qcow2blk_aio_submit(struct qcow2blk_aio *aio, struct request *rq,
				struct file *file, u32 align, u64 pos,
				struct iov_iter *iter, int flags, bool write)
{
	ssize_t ret;

	memset(&aio->iocb, 0, sizeof(aio->iocb));
	aio->iocb.ki_filp = file;
	aio->iocb.ki_pos = pos;
	aio->iocb.ki_complete = write ? qcow2blk_waio_done : qcow2blk_aio_done;
	aio->iocb.ki_ioprio = req_get_ioprio(rq);
	aio->iocb.ki_flags = flags;
	if (qcow2blk_dio_ok(align, pos, aio->len, iter))
		aio->iocb.ki_flags |= IOCB_DIRECT;

	atomic_inc(&aio->cmd->pending);
	if (write)
		ret = file->f_op->write_iter(&aio->iocb, iter);
	else
		ret = file->f_op->read_iter(&aio->iocb, iter);
	if (ret != -EIOCBQUEUED)
		aio->iocb.ki_complete(&aio->iocb, ret);
}

/* Read one extent of @layer into the next @len bytes of @iter. */
static void qcow2blk_submit_read(struct qcow2blk_cmd *cmd, struct request *rq,
				 struct iov_iter *iter,
				 const struct qcow2blk_layer *layer,
				 u64 host_off, size_t len, bool *first)
{
	struct qcow2blk_dev *dev = cmd->dev;
	/* Guest data lives in the data file when the layer has one. */
	struct file *file = layer->data_file ?: layer->file;
	u32 align = layer->data_file ? layer->data_dio_align : layer->dio_align;
	struct qcow2blk_aio *aio;
	struct iov_iter sub;

	if (*first) {
		aio = &cmd->aio;
		aio->pooled = false;
		*first = false;
	} else {
		aio = mempool_alloc(qcow2blk_aio_pool, GFP_NOIO);
		aio->pooled = true;
	}

	sub = *iter;
	iov_iter_truncate(&sub, len);
	iov_iter_advance(iter, len);
	aio->iter = sub;
	aio->len = len;
	aio->cmd = cmd;

	atomic64_inc(&dev->stats.data_ios);
	qcow2blk_aio_submit(aio, rq, file, align, host_off, &sub, 0, false);
}

/* Build an iterator over every page of @rq, as loop does. */
static int qcow2blk_rq_iter(struct qcow2blk_cmd *cmd, struct request *rq,
			    unsigned int dir, struct iov_iter *iter)
{
	struct bio *bio = rq->bio;
	struct req_iterator rq_iter;
	struct bio_vec tmp, *bvec;
	unsigned int nr = 0, i = 0;

	rq_for_each_bvec(tmp, rq, rq_iter)
		nr++;

	if (rq->bio != rq->biotail) {
		bvec = kmalloc_array(nr, sizeof(*bvec), GFP_NOIO);
		if (!bvec)
			return -ENOMEM;
		cmd->bvec = bvec;
		rq_for_each_bvec(tmp, rq, rq_iter)
			bvec[i++] = tmp;
		iov_iter_bvec(iter, dir, bvec, nr, blk_rq_bytes(rq));
		iter->iov_offset = 0;
	} else {
		/* One bio: use its vector in place, from where it starts. */
		iov_iter_bvec(iter, dir,
			      __bvec_iter_bvec(bio->bi_io_vec, bio->bi_iter),
			      nr, blk_rq_bytes(rq));
		iter->iov_offset = QCOW2BLK_BVEC_DONE(&bio->bi_iter);
	}
	return 0;
}

static blk_status_t qcow2blk_map_error(struct qcow2blk_dev *dev, int ret)
{
	if (ret == -EUCLEAN) {
		atomic64_inc(&dev->stats.corrupt_errors);
		return BLK_STS_IOERR;
	}
	if (ret == -ENOMEM)
		return BLK_STS_RESOURCE;
	atomic64_inc(&dev->stats.io_errors);
	return BLK_STS_IOERR;
}

static blk_status_t qcow2blk_do_read(struct qcow2blk_cmd *cmd,
				     struct request *rq)
{
	struct qcow2blk_dev *dev = cmd->dev;
	u64 pos = (u64)blk_rq_pos(rq) << SECTOR_SHIFT;
	u64 left = blk_rq_bytes(rq);
	struct qcow2_chain_extent ce;
	struct qcow2_extent *ext = &ce.ext;
	struct iov_iter iter;
	bool first = true;
	int ret;

	ret = qcow2blk_rq_iter(cmd, rq, ITER_DEST, &iter);
	if (ret)
		return BLK_STS_RESOURCE;

	/* Clusters mapped here are not freed until the read is done. */
	if (dev->writable)
		qcow2blk_epoch_enter(dev, cmd);
	while (left) {
		ret = qcow2_chain_map(&dev->chain, pos, left, &ce);
		if (ret)
			return qcow2blk_map_error(dev, ret);
		if (WARN_ON_ONCE(!ext->len || ext->len > left ||
				 ce.layer >= dev->nr_layers))
			return BLK_STS_IOERR;

		switch (ext->type) {
		case QCOW2_EXT_DATA:
			qcow2blk_submit_read(cmd, rq, &iter,
					     &dev->layers[ce.layer],
					     ext->host_off, ext->len, &first);
			break;
		case QCOW2_EXT_COMPRESSED:
			atomic64_inc(&dev->stats.compressed_reads);
			ret = qcow2blk_read_compressed(dev, ce.layer, ext,
						       &iter);
			if (ret)
				return qcow2blk_map_error(dev, ret);
			break;
		case QCOW2_EXT_ZERO:
			if (iov_iter_zero(ext->len, &iter) != ext->len)
				return BLK_STS_IOERR;
			break;
		default:
			/* The chain resolves UNALLOC; anything else is a bug. */
			WARN_ON_ONCE(1);
			return BLK_STS_IOERR;
		}
		pos += ext->len;
		left -= ext->len;
	}
	return BLK_STS_OK;
}

/* ---- synchronous file I/O ---------------------------------------------- */

/* The file holding guest data of @layer, and its direct I/O alignment. */
static struct file *qcow2blk_data_file(const struct qcow2blk_layer *layer,
				       u32 *align)
{
	*align = layer->data_file ? layer->data_dio_align : layer->dio_align;
	return layer->data_file ?: layer->file;
}

/*
 * Read or write all of @iter at @pos, synchronously. Direct I/O is used
 * when the file has it (@align, its alignment, not 0) and everything is
 * aligned. Reads past the end of the file fill the rest with zeroes; a
 * write that makes no progress is -EIO.
 */
static int qcow2blk_file_rw(struct file *file, u32 align, bool write,
			    struct iov_iter *iter, u64 pos)
{
	bool direct = qcow2blk_dio_ok(align, pos, iov_iter_count(iter), iter);
	struct iov_iter before;
	struct kiocb kiocb;
	ssize_t ret;

	while (iov_iter_count(iter)) {
		init_sync_kiocb(&kiocb, file);
		kiocb.ki_pos = pos;
		if (direct)
			kiocb.ki_flags |= IOCB_DIRECT;
		else
			kiocb.ki_flags &= ~IOCB_DIRECT;
		before = *iter;
		if (write) {
			file_start_write(file);
			ret = file->f_op->write_iter(&kiocb, iter);
			file_end_write(file);
		} else {
			ret = file->f_op->read_iter(&kiocb, iter);
		}
		if (ret < 0)
			return ret;
		if (ret == 0) {
			if (write)
				return -EIO;
			/* End of file: the rest reads as zero. */
			iov_iter_zero(iov_iter_count(iter), iter);
			break;
		}
		/* Some file systems leave the iterator beyond what they did. */
		*iter = before;
		iov_iter_advance(iter, ret);
		pos += ret;
	}
	return 0;
}

/* The page of kernel memory at @p: the direct map or vmalloc. */
static struct page *qcow2blk_kbuf_page(const void *p)
{
	return is_vmalloc_addr(p) ? vmalloc_to_page(p) : virt_to_page(p);
}

/*
 * Append up to @len bytes of kernel buffer @buf to @bv[*nr..max), one
 * entry per page. Returns the bytes appended (less when @bv filled).
 */
static size_t qcow2blk_kbuf_bvecs(const u8 *buf, size_t len,
				  struct bio_vec *bv, unsigned int *nr,
				  unsigned int max)
{
	size_t done = 0, n;

	while (done < len && *nr < max) {
		n = min_t(size_t, len - done,
			  PAGE_SIZE - offset_in_page(buf + done));
		bvec_set_page(&bv[(*nr)++], qcow2blk_kbuf_page(buf + done), n,
			      offset_in_page(buf + done));
		done += n;
	}
	return done;
}

/* Synchronous I/O between a kernel buffer (kmalloc or vmalloc) and @file. */
static int qcow2blk_kbuf_rw(struct file *file, u32 align, bool write,
			    void *buf, size_t len, u64 pos)
{
	struct bio_vec bv[QCOW2BLK_KBUF_BVECS];
	struct iov_iter iter;
	unsigned int nr;
	size_t n;
	int ret;

	while (len) {
		nr = 0;
		n = qcow2blk_kbuf_bvecs(buf, len, bv, &nr, ARRAY_SIZE(bv));
		iov_iter_bvec(&iter, write ? ITER_SOURCE : ITER_DEST, bv, nr,
			      n);
		ret = qcow2blk_file_rw(file, align, write, &iter, pos);
		if (ret)
			return ret;
		buf += n;
		len -= n;
		pos += n;
	}
	return 0;
}

/* ---- the engine's writers (struct qcow2_io of the top image) ---------- */

static struct file *qcow2blk_fio_file(const struct qcow2blk_fio *fio,
				      u32 *align)
{
	const struct qcow2blk_layer *l = fio->layer;

	*align = fio->data ? l->data_dio_align : l->dio_align;
	return fio->data ? l->data_file : l->file;
}

static int qcow2blk_fio_error(const struct qcow2blk_fio *fio,
			      const char *what, u64 off, int ret)
{
	struct qcow2blk_layer *l = fio->layer;

	atomic64_inc(&l->dev->stats.io_errors);
	pr_err_ratelimited("qcow2blk: qcow%d: %s of the %s at %llu failed: %d\n",
			   l->dev->index, what,
			   fio->data ? "data file" : "image", off, ret);
	/* A full host file system is worth telling apart. */
	return ret == -ENOSPC ? -ENOSPC : -EIO;
}

static int qcow2blk_fio_pread(void *priv, void *buf, size_t len, u64 off)
{
	const struct qcow2blk_fio *fio = priv;
	struct file *file;
	u32 align;
	int ret;

	file = qcow2blk_fio_file(fio, &align);
	ret = qcow2blk_kbuf_rw(file, align, false, buf, len, off);
	return ret ? qcow2blk_fio_error(fio, "read", off, ret) : 0;
}

static int qcow2blk_fio_pwrite(void *priv, const void *buf, size_t len,
			       u64 off)
{
	const struct qcow2blk_fio *fio = priv;
	struct file *file;
	u32 align;
	int ret;

	file = qcow2blk_fio_file(fio, &align);
	ret = qcow2blk_kbuf_rw(file, align, true, (void *)buf, len, off);
	return ret ? qcow2blk_fio_error(fio, "metadata write", off, ret) : 0;
}

static int qcow2blk_fio_flush(void *priv)
{
	const struct qcow2blk_fio *fio = priv;
	struct file *file;
	u32 align;
	int ret;

	file = qcow2blk_fio_file(fio, &align);
	ret = vfs_fsync(file, 1);
	return ret ? qcow2blk_fio_error(fio, "flush", 0, ret) : 0;
}

static int qcow2blk_fio_punch(void *priv, u64 off, u64 len)
{
	const struct qcow2blk_fio *fio = priv;
	struct file *file;
	u32 align;
	int ret;

	file = qcow2blk_fio_file(fio, &align);
	ret = vfs_fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    off, len);
	/* Not every file system can punch; the space is merely kept. */
	if (ret == -EOPNOTSUPP)
		return ret;
	return ret ? qcow2blk_fio_error(fio, "hole punch", off, ret) : 0;
}

/**
 * qcow2blk_fill_write_io() - the engine's writers for the top image
 * @layer: layer 0, files open for writing
 * @io: the image file's struct qcow2_io, all four callbacks
 * @data_io: the data file's, filled only when the layer has one
 *
 * Context: attach, process context.
 */
void qcow2blk_fill_write_io(struct qcow2blk_layer *layer, struct qcow2_io *io,
			    struct qcow2_io *data_io)
{
	layer->image_fio.layer = layer;
	layer->image_fio.data = false;
	io->pread = qcow2blk_fio_pread;
	io->pwrite = qcow2blk_fio_pwrite;
	io->flush = qcow2blk_fio_flush;
	io->punch = qcow2blk_fio_punch;
	io->drain = qcow2blk_drain;
	io->priv = &layer->image_fio;
	if (!layer->data_file)
		return;
	layer->data_fio.layer = layer;
	layer->data_fio.data = true;
	data_io->pread = qcow2blk_fio_pread;
	data_io->pwrite = qcow2blk_fio_pwrite;
	data_io->flush = qcow2blk_fio_flush;
	data_io->punch = qcow2blk_fio_punch;
	data_io->priv = &layer->data_fio;
}

/* ---- the write source (struct qcow2_wsrc) ----------------------------- */

/* One request's side of qcow2_wsrc, on the worker's stack. */
struct qcow2blk_wctx {
	struct qcow2blk_dev *dev;
	const struct bio_vec *bvec;	/* the request's data; NULL: zeroes */
	unsigned int nr_bvec;
	u64 guest_off;			/* first byte of the request */
	u64 len;			/* bytes of the request */
};

/* Gathers bio_vecs of one data write; writes a piece when they fill. */
struct qcow2blk_wvec {
	struct file *file;
	u32 align;			/* direct I/O alignment, 0: none */
	struct bio_vec *bv;		/* max entries */
	unsigned int max;
	unsigned int nr;		/* entries used */
	size_t bytes;			/* bytes in them */
	u64 pos;			/* file offset of the first */
};

static int qcow2blk_wvec_issue(struct qcow2blk_wvec *w)
{
	struct iov_iter iter;
	int ret;

	if (!w->nr)
		return 0;
	iov_iter_bvec(&iter, ITER_SOURCE, w->bv, w->nr, w->bytes);
	ret = qcow2blk_file_rw(w->file, w->align, true, &iter, w->pos);
	w->pos += w->bytes;
	w->nr = 0;
	w->bytes = 0;
	return ret;
}

static int qcow2blk_wvec_add(struct qcow2blk_wvec *w, struct page *page,
			     unsigned int len, unsigned int off)
{
	int ret;

	if (w->nr == w->max) {
		ret = qcow2blk_wvec_issue(w);
		if (ret)
			return ret;
	}
	bvec_set_page(&w->bv[w->nr++], page, len, off);
	w->bytes += len;
	return 0;
}

static int qcow2blk_wvec_add_kbuf(struct qcow2blk_wvec *w, const u8 *buf,
				  size_t len)
{
	size_t n;
	int ret;

	while (len) {
		n = qcow2blk_kbuf_bvecs(buf, len, w->bv, &w->nr, w->max);
		w->bytes += n;
		buf += n;
		len -= n;
		if (len) {
			ret = qcow2blk_wvec_issue(w);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* The request's bytes [@off, @off + @len) from its start, or zeroes. */
static int qcow2blk_wvec_add_guest(struct qcow2blk_wvec *w,
				   const struct qcow2blk_wctx *ctx, u64 off,
				   u64 len)
{
	const struct bio_vec *bv;
	unsigned int i, n;
	int ret;

	if (!ctx->bvec) {
		while (len) {
			n = min_t(u64, len, PAGE_SIZE);
			ret = qcow2blk_wvec_add(w, ZERO_PAGE(0), n, 0);
			if (ret)
				return ret;
			len -= n;
		}
		return 0;
	}
	for (i = 0; i < ctx->nr_bvec && len; i++) {
		bv = &ctx->bvec[i];
		if (off >= bv->bv_len) {
			off -= bv->bv_len;
			continue;
		}
		n = min_t(u64, len, bv->bv_len - off);
		ret = qcow2blk_wvec_add(w, bv->bv_page, n, bv->bv_offset + off);
		if (ret)
			return ret;
		off = 0;
		len -= n;
	}
	return WARN_ON_ONCE(len) ? -EIO : 0;
}

/* bio_vecs that @len bytes of kernel memory at @p take, one per page. */
static unsigned int qcow2blk_kbuf_nr_pages(const u8 *p, u32 len)
{
	return len ? DIV_ROUND_UP(offset_in_page(p) + len, PAGE_SIZE) : 0;
}

static int qcow2blk_wsrc_write(void *arg, u64 host_off, const u8 *head,
			       u32 head_len, u64 guest_off, u64 len,
			       const u8 *tail, u32 tail_len)
{
	struct qcow2blk_wctx *ctx = arg;
	struct qcow2blk_dev *dev = ctx->dev;
	struct qcow2blk_wvec w = {
		.pos = host_off,
	};
	unsigned int want;
	bool spare;
	int ret;

	/* The engine asks only for bytes of the request it was given. */
	if (WARN_ON_ONCE(guest_off < ctx->guest_off ||
			 guest_off - ctx->guest_off > ctx->len ||
			 len > ctx->len - (guest_off - ctx->guest_off)))
		return -EIO;
	w.file = qcow2blk_data_file(&dev->layers[0], &w.align);

	/* Writes run concurrently: each gathers its bio_vecs on its own. */
	want = qcow2blk_kbuf_nr_pages(head, head_len) +
	       qcow2blk_kbuf_nr_pages(tail, tail_len) +
	       (ctx->bvec ? ctx->nr_bvec : DIV_ROUND_UP(len, PAGE_SIZE));
	want = clamp_t(unsigned int, want, 1, QCOW2BLK_WRITE_BVECS);
	w.bv = kmalloc_array(want, sizeof(*w.bv), GFP_NOIO | __GFP_NOWARN);
	w.max = want;
	spare = !w.bv;
	if (spare) {
		mutex_lock(&dev->wbvec_lock);
		w.bv = dev->wbvec;
		w.max = QCOW2BLK_WRITE_BVECS;
	}

	ret = qcow2blk_wvec_add_kbuf(&w, head, head_len);
	if (!ret)
		ret = qcow2blk_wvec_add_guest(&w, ctx, guest_off -
					      ctx->guest_off, len);
	if (!ret)
		ret = qcow2blk_wvec_add_kbuf(&w, tail, tail_len);
	if (!ret)
		ret = qcow2blk_wvec_issue(&w);
	if (spare)
		mutex_unlock(&dev->wbvec_lock);
	else
		kfree(w.bv);
	atomic64_inc(&dev->stats.data_writes);
	if (ret) {
		atomic64_inc(&dev->stats.io_errors);
		pr_err_ratelimited("qcow2blk: qcow%d: data write of %llu bytes at %llu failed: %d\n",
				   dev->index, head_len + len + tail_len,
				   host_off, ret);
	}
	return ret;
}

/* What the guest sees now at [@guest_off, @guest_off + @len), into @buf. */
static int qcow2blk_read_guest(struct qcow2blk_dev *dev, u64 guest_off,
			       u32 len, u8 *buf)
{
	struct qcow2_chain_extent ce;
	struct qcow2_extent *ext = &ce.ext;
	struct qcow2blk_layer *layer;
	struct iov_iter iter;
	struct kvec kv;
	struct file *file;
	u32 align;
	int ret;

	while (len) {
		ret = qcow2_chain_map(&dev->chain, guest_off, len, &ce);
		if (ret)
			return ret;
		if (WARN_ON_ONCE(!ext->len || ext->len > len ||
				 ce.layer >= dev->nr_layers))
			return -EIO;
		layer = &dev->layers[ce.layer];

		switch (ext->type) {
		case QCOW2_EXT_DATA:
			file = qcow2blk_data_file(layer, &align);
			ret = qcow2blk_kbuf_rw(file, align, false, buf,
					       ext->len, ext->host_off);
			if (ret) {
				atomic64_inc(&dev->stats.io_errors);
				pr_err_ratelimited("qcow2blk: qcow%d: layer %u: copy-on-write read at %llu failed: %d\n",
						   dev->index, ce.layer,
						   ext->host_off, ret);
				return -EIO;
			}
			break;
		case QCOW2_EXT_COMPRESSED:
			kv.iov_base = buf;
			kv.iov_len = ext->len;
			iov_iter_kvec(&iter, ITER_DEST, &kv, 1, ext->len);
			ret = qcow2blk_read_compressed(dev, ce.layer, ext,
						       &iter);
			if (ret)
				return ret;
			break;
		case QCOW2_EXT_ZERO:
			memset(buf, 0, ext->len);
			break;
		default:
			WARN_ON_ONCE(1);
			return -EIO;
		}
		guest_off += ext->len;
		buf += ext->len;
		len -= ext->len;
	}
	return 0;
}

static int qcow2blk_wsrc_read(void *arg, u64 guest_off, u32 len, u8 *buf)
{
	struct qcow2blk_wctx *ctx = arg;

	return qcow2blk_read_guest(ctx->dev, guest_off, len, buf);
}

/* ---- write requests ---------------------------------------------------- */

/**
 * qcow2blk_check_wfail() - turn the disk read-only once the engine did
 * @dev: writable device
 *
 * The engine stops accepting writes after a failed metadata write or an
 * overlap (qcow2_image::wfail); the disk follows, once, with a log line.
 *
 * Context: process context.
 */
void qcow2blk_check_wfail(struct qcow2blk_dev *dev)
{
	int wfail = READ_ONCE(qcow2blk_top(dev)->wfail);

	if (!wfail || test_and_set_bit(QCOW2BLK_WS_FAIL_LOGGED, &dev->wstate))
		return;
	set_disk_ro(dev->disk, true);
	pr_err("qcow2blk: %s: %pD turned read-only: %s (error %d)\n",
	       dev->disk->disk_name, dev->layers[0].file,
	       wfail == -EUCLEAN ?
	       "metadata write would overlap other metadata, image marked corrupt" :
	       "image metadata could not be written",
	       wfail);
}

static blk_status_t qcow2blk_write_error(struct qcow2blk_dev *dev, int ret)
{
	switch (ret) {
	case 0:
		return BLK_STS_OK;
	case -ENOSPC:
		return BLK_STS_NOSPC;
	case -ENOMEM:
		return BLK_STS_RESOURCE;
	case -EUCLEAN:
		atomic64_inc(&dev->stats.corrupt_errors);
		return BLK_STS_IOERR;
	default:
		/* -EROFS, -EIO: I/O errors were counted where they happened. */
		return BLK_STS_IOERR;
	}
}

/* A flat copy of the request's bio_vecs, exact to its bytes. */
static int qcow2blk_rq_bvecs(struct qcow2blk_cmd *cmd, struct request *rq,
			     unsigned int *nr)
{
	struct req_iterator rq_iter;
	struct bio_vec tmp;
	unsigned int i = 0;

	*nr = 0;
	rq_for_each_bvec(tmp, rq, rq_iter)
		(*nr)++;
	cmd->bvec = kmalloc_array(*nr, sizeof(*cmd->bvec), GFP_NOIO);
	if (!cmd->bvec)
		return -ENOMEM;
	rq_for_each_bvec(tmp, rq, rq_iter)
		cmd->bvec[i++] = tmp;
	return 0;
}

/* An in-place write waits this many times for allocations it meets. */
#define QCOW2BLK_INPLACE_TRIES		4

static void qcow2blk_waio_done(struct kiocb *iocb, long ret)
{
	struct qcow2blk_aio *aio = container_of(iocb, struct qcow2blk_aio,
						iocb);
	struct qcow2blk_cmd *cmd = aio->cmd;
	struct qcow2blk_dev *dev = cmd->dev;

	if (ret >= 0 && ret != aio->len)
		ret = -EIO;
	if (ret < 0) {
		atomic64_inc(&dev->stats.io_errors);
		pr_err_ratelimited("qcow2blk: qcow%d: data write of %zu bytes at %lld failed: %ld\n",
				   dev->index, aio->len, iocb->ki_pos, ret);
		qcow2blk_cmd_fail(cmd, ret == -ENOSPC ? BLK_STS_NOSPC :
					BLK_STS_IOERR);
	}
	qcow2blk_cmd_put(cmd);
}

/*
 * A write of clusters the image owns: mapped under the L2 cache lock
 * alone and sent as one asynchronous kiocb over the request's pages, as
 * reads are, so such writes go out many at once and never wait for
 * allocations or flushes. The request stays in its epoch until it
 * completes, so its clusters cannot be freed under it.
 *
 * FUA: when the mapping is durable already (its slice clean, no write-back
 * under way), the kiocb carries IOCB_DSYNC and nothing else is needed;
 * otherwise the writer's path writes and flushes.
 *
 * Return: false when the write needs the engine's writer (allocation,
 * copy-on-write, FUA on a fresh mapping); else true, with *status set if
 * it failed here.
 */
static bool qcow2blk_write_inplace(struct qcow2blk_cmd *cmd,
				   struct request *rq, blk_status_t *status)
{
	struct qcow2blk_dev *dev = cmd->dev;
	u64 pos = (u64)blk_rq_pos(rq) << SECTOR_SHIFT, host;
	struct qcow2blk_aio *aio = &cmd->aio;
	size_t len = blk_rq_bytes(rq);
	struct iov_iter iter;
	struct file *file;
	unsigned int tries;
	bool durable;
	u32 align;
	ssize_t ret;

	*status = BLK_STS_OK;
	for (tries = 0;; tries++) {
		qcow2blk_epoch_enter(dev, cmd);
		ret = qcow2_write_map_inplace(qcow2blk_top(dev), pos, len,
					      &host, &durable);
		/*
		 * FUA needs the mapping durable too: when it is not yet, the
		 * writer's path and its flush make it so.
		 */
		if (!ret && (rq->cmd_flags & REQ_FUA) && !durable)
			ret = -EAGAIN;
		if (!ret)
			break;
		qcow2blk_epoch_exit(dev, cmd);
		if (ret == -EAGAIN || (ret == -EBUSY &&
				       tries == QCOW2BLK_INPLACE_TRIES))
			return false;
		if (ret != -EBUSY) {
			*status = qcow2blk_write_error(dev, ret);
			return true;
		}
		/*
		 * The clusters are being allocated by another write: once it
		 * is done they are ours to write in place. Out of the epoch,
		 * since that writer may need a flush that drains it.
		 */
		qcow2_write_wait(qcow2blk_top(dev), pos, len);
	}
	if (qcow2blk_rq_iter(cmd, rq, ITER_SOURCE, &iter)) {
		/* Completion leaves the epoch. */
		*status = BLK_STS_RESOURCE;
		return true;
	}
	file = qcow2blk_data_file(&dev->layers[0], &align);
	aio->pooled = false;
	aio->len = len;
	aio->cmd = cmd;
	atomic64_inc(&dev->stats.data_writes);
	qcow2blk_aio_submit(aio, rq, file, align, host, &iter,
			    rq->cmd_flags & REQ_FUA ? IOCB_DSYNC : 0, true);
	return true;
}

static blk_status_t qcow2blk_do_write(struct qcow2blk_cmd *cmd,
				      struct request *rq)
{
	struct qcow2blk_dev *dev = cmd->dev;
	struct qcow2_image *img = qcow2blk_top(dev);
	struct qcow2blk_wctx ctx = {
		.dev = dev,
		.guest_off = (u64)blk_rq_pos(rq) << SECTOR_SHIFT,
		.len = blk_rq_bytes(rq),
	};
	const struct qcow2_wsrc src = {
		.write = qcow2blk_wsrc_write,
		.read = qcow2blk_wsrc_read,
		.arg = &ctx,
	};
	blk_status_t status;
	int ret;

	switch (req_op(rq)) {
	case REQ_OP_FLUSH:
		ret = qcow2_flush(img);
		break;
	case REQ_OP_WRITE:
		if (qcow2blk_write_inplace(cmd, rq, &status))
			return status;
		ret = qcow2blk_rq_bvecs(cmd, rq, &ctx.nr_bvec);
		if (ret)
			return BLK_STS_RESOURCE;
		ctx.bvec = cmd->bvec;
		ret = qcow2_write(img, ctx.guest_off, ctx.len, &src);
		if (!ret && (rq->cmd_flags & REQ_FUA))
			ret = qcow2_flush(img);
		break;
	case REQ_OP_WRITE_ZEROES:
		ret = qcow2_write_zeroes(img, ctx.guest_off, ctx.len,
					 rq->cmd_flags & REQ_NOUNMAP ? 0 :
					 QCOW2_ZERO_MAY_UNMAP, &src);
		break;
	case REQ_OP_DISCARD:
		ret = qcow2_discard(img, ctx.guest_off, ctx.len);
		break;
	default:
		WARN_ON_ONCE(1);
		ret = -EIO;
		break;
	}
	qcow2blk_check_wfail(dev);
	return qcow2blk_write_error(dev, ret);
}

/**
 * qcow2blk_writer_enter() - make the current task fit to write the image
 *
 * As loop's workers: allocations never recurse into file system I/O
 * (memalloc_noio), and dirty-page throttling judges the task by its own
 * writes only (PF_LOCAL_THROTTLE), so writing back our own disk's pages
 * does not wait for itself. Every context that may write the image file
 * uses it: request workers, cache resizing, the final flush.
 *
 * Context: process context.
 * Return: the state for qcow2blk_writer_exit().
 */
unsigned int qcow2blk_writer_enter(void)
{
	unsigned int old = current->flags & PF_LOCAL_THROTTLE;

	current->flags |= PF_LOCAL_THROTTLE;
	return (memalloc_noio_save() << 1) | !!old;
}

/**
 * qcow2blk_writer_exit() - undo qcow2blk_writer_enter()
 * @state: what it returned
 *
 * Context: process context, the same task.
 */
void qcow2blk_writer_exit(unsigned int state)
{
	if (!(state & 1))
		current->flags &= ~PF_LOCAL_THROTTLE;
	memalloc_noio_restore(state >> 1);
}

/* Retry a request that ran out of memory, unless it has I/O in flight. */
#define QCOW2BLK_REQUEUE_MS		10

static void qcow2blk_work(struct work_struct *work)
{
	struct qcow2blk_cmd *cmd = container_of(work, struct qcow2blk_cmd,
						work);
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	unsigned int state = qcow2blk_writer_enter();
	blk_status_t status;

	if (req_op(rq) == REQ_OP_READ)
		status = qcow2blk_do_read(cmd, rq);
	else
		status = qcow2blk_do_write(cmd, rq);
	qcow2blk_writer_exit(state);
	/*
	 * Transient memory shortage: the request starts over later instead
	 * of failing (a write done again writes the same bytes). Only when
	 * nothing of it is in flight any more: the worker's count is the
	 * last.
	 */
	if (status == BLK_STS_RESOURCE && atomic_read(&cmd->pending) == 1) {
		qcow2blk_epoch_exit(cmd->dev, cmd);
		kfree(cmd->bvec);
		cmd->bvec = NULL;
		blk_mq_requeue_request(rq, false);
		blk_mq_delay_kick_requeue_list(rq->q, QCOW2BLK_REQUEUE_MS);
		return;
	}
	if (status)
		qcow2blk_cmd_fail(cmd, status);
	qcow2blk_cmd_put(cmd);
}

static blk_status_t qcow2blk_queue_rq(struct blk_mq_hw_ctx *hctx,
				      const struct blk_mq_queue_data *bd)
{
	struct request *rq = bd->rq;
	struct qcow2blk_cmd *cmd = blk_mq_rq_to_pdu(rq);
	struct qcow2blk_dev *dev = rq->q->queuedata;

	blk_mq_start_request(rq);

	switch (req_op(rq)) {
	case REQ_OP_READ:
		break;
	case REQ_OP_FLUSH:
		if (dev->writable)
			break;
		/* Read-only: nothing is ever dirty. */
		blk_mq_end_request(rq, BLK_STS_OK);
		return BLK_STS_OK;
	case REQ_OP_WRITE:
	case REQ_OP_WRITE_ZEROES:
	case REQ_OP_DISCARD:
		/* The block layer lets writes to read-only disks through. */
		if (!qcow2blk_dev_read_only(dev))
			break;
		fallthrough;
	default:
		pr_warn_ratelimited("qcow2blk: qcow%d: write to read-only device refused\n",
				    dev->index);
		return BLK_STS_IOERR;
	}

	cmd->dev = dev;
	cmd->status = BLK_STS_OK;
	cmd->bvec = NULL;
	cmd->epoch = -1;
	atomic_set(&cmd->pending, 1);
	queue_work(dev->wq, &cmd->work);
	return BLK_STS_OK;
}

static int qcow2blk_init_request(struct blk_mq_tag_set *set,
				 struct request *rq, unsigned int hctx_idx,
				 qcow2blk_numa_node_t numa_node)
{
	struct qcow2blk_cmd *cmd = blk_mq_rq_to_pdu(rq);

	INIT_WORK(&cmd->work, qcow2blk_work);
	return 0;
}

const struct blk_mq_ops qcow2blk_mq_ops = {
	.queue_rq	= qcow2blk_queue_rq,
	.complete	= qcow2blk_complete_rq,
	.init_request	= qcow2blk_init_request,
};

/*
 * Read image metadata synchronously. Buffers from qcow2_alloc_io() are
 * direct-I/O capable and go around the page cache when the device does;
 * everything else (header, L1 table at attach) is read through it.
 */
static int qcow2blk_pread_direct(struct file *file, void *buf, size_t len,
				 u64 off)
{
	struct bio_vec bv;
	struct iov_iter iter;
	struct kiocb kiocb;
	ssize_t ret;

	bv.bv_page = virt_to_page(buf);
	bv.bv_offset = offset_in_page(buf);
	bv.bv_len = len;
	iov_iter_bvec(&iter, ITER_DEST, &bv, 1, len);
	init_sync_kiocb(&kiocb, file);
	kiocb.ki_pos = off;
	kiocb.ki_flags |= IOCB_DIRECT;
	ret = file->f_op->read_iter(&kiocb, &iter);
	if (ret < 0)
		return ret;
	if (ret < len)
		memset(buf + ret, 0, len - ret);
	return 0;
}

static int qcow2blk_pread_buffered(struct file *file, void *buf, size_t len,
				   u64 off)
{
	loff_t pos = off;
	ssize_t ret;

	while (len) {
		ret = kernel_read(file, buf, len, &pos);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			memset(buf, 0, len);
			break;
		}
		buf += ret;
		len -= ret;
	}
	return 0;
}

/**
 * qcow2blk_meta_pread() - the engine's metadata reader (struct qcow2_io)
 * @priv: the layer (struct qcow2blk_layer) whose image file is read
 * @buf: destination
 * @len: bytes
 * @off: offset in the image file
 *
 * Context: process context, may sleep.
 * Return: 0 or -errno; bytes past the end of the file read as zero.
 */
int qcow2blk_meta_pread(void *priv, void *buf, size_t len, u64 off)
{
	struct qcow2blk_layer *layer = priv;
	int ret;

	if (layer->dio_align && !is_vmalloc_addr(buf) && len <= PAGE_SIZE &&
	    offset_in_page(buf) + len <= PAGE_SIZE &&
	    IS_ALIGNED((unsigned long)buf, SECTOR_SIZE) &&
	    IS_ALIGNED(len | off, layer->dio_align))
		ret = qcow2blk_pread_direct(layer->file, buf, len, off);
	else
		ret = qcow2blk_pread_buffered(layer->file, buf, len, off);
	if (ret) {
		atomic64_inc(&layer->dev->stats.io_errors);
		pr_err_ratelimited("qcow2blk: qcow%d: layer %u: metadata read at %llu failed: %d\n",
				   layer->dev->index, layer->index, off, ret);
		return -EIO;
	}
	return 0;
}

/**
 * qcow2blk_probe_dio_align() - the direct I/O alignment of @file
 * @file: an image or data file
 * @why: set to the error of the last attempt when there is none
 *
 * Tries it: direct reads of 512, 1024, 2048 and 4096 bytes at that offset,
 * from a buffer aligned as much; the first that works is the alignment
 * (the file system's block or the device's logical block size: 4096 on a
 * 4Kn disk). File systems without direct I/O fail every one.
 *
 * Context: process context, may sleep.
 * Return: the alignment in bytes, or 0 when direct I/O does not work.
 */
u32 qcow2blk_probe_dio_align(struct file *file, int *why)
{
	u32 align;
	void *buf;
	int ret;

	*why = -EOPNOTSUPP;
	if (!(file->f_mode & FMODE_CAN_ODIRECT))
		return 0;
	buf = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!buf) {
		*why = -ENOMEM;
		return 0;
	}
	for (align = SECTOR_SIZE; align <= PAGE_SIZE; align <<= 1) {
		ret = qcow2blk_pread_direct(file, buf, align, align);
		if (!ret)
			break;
		*why = ret;
	}
	kfree(buf);
	return align <= PAGE_SIZE ? align : 0;
}

/**
 * qcow2blk_io_init() - set up module-wide request resources
 *
 * Context: module init.
 * Return: 0 or -ENOMEM.
 */
int qcow2blk_io_init(void)
{
	qcow2blk_aio_cache = KMEM_CACHE(qcow2blk_aio, 0);
	if (!qcow2blk_aio_cache)
		return -ENOMEM;
	qcow2blk_aio_pool = mempool_create_slab_pool(QCOW2BLK_AIO_POOL_MIN,
						     qcow2blk_aio_cache);
	if (!qcow2blk_aio_pool) {
		kmem_cache_destroy(qcow2blk_aio_cache);
		return -ENOMEM;
	}
	return 0;
}

/**
 * qcow2blk_io_exit() - release what qcow2blk_io_init() set up
 *
 * Context: module exit, no device left.
 */
void qcow2blk_io_exit(void)
{
	mempool_destroy(qcow2blk_aio_pool);
	kmem_cache_destroy(qcow2blk_aio_cache);
}

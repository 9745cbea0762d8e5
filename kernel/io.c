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
 */
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/mempool.h>
#include <linux/ioprio.h>
#include <linux/blkdev.h>

#include "qcow2blk_priv.h"

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

static void qcow2blk_complete_rq(struct request *rq)
{
	struct qcow2blk_cmd *cmd = blk_mq_rq_to_pdu(rq);

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

/* Read one extent of @layer into the next @len bytes of @iter. */
static void qcow2blk_submit_read(struct qcow2blk_cmd *cmd, struct request *rq,
				 struct iov_iter *iter,
				 const struct qcow2blk_layer *layer,
				 u64 host_off, size_t len, bool *first)
{
	struct qcow2blk_dev *dev = cmd->dev;
	/* Guest data lives in the data file when the layer has one. */
	struct file *file = layer->data_file ?: layer->file;
	bool direct = layer->data_file ? layer->data_direct_io :
					 layer->direct_io;
	struct qcow2blk_aio *aio;
	struct iov_iter sub;
	ssize_t ret;

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

	memset(&aio->iocb, 0, sizeof(aio->iocb));
	aio->iocb.ki_filp = file;
	aio->iocb.ki_pos = host_off;
	aio->iocb.ki_complete = qcow2blk_aio_done;
	aio->iocb.ki_ioprio = req_get_ioprio(rq);
	/* Unaligned tails (odd virtual sizes) go through the page cache. */
	if (direct && IS_ALIGNED(host_off | len, SECTOR_SIZE))
		aio->iocb.ki_flags = IOCB_DIRECT;

	atomic_inc(&cmd->pending);
	atomic64_inc(&dev->stats.data_ios);
	ret = file->f_op->read_iter(&aio->iocb, &sub);
	if (ret != -EIOCBQUEUED)
		qcow2blk_aio_done(&aio->iocb, ret);
}

/* Build an iterator over every page of @rq, as loop does. */
static int qcow2blk_rq_iter(struct qcow2blk_cmd *cmd, struct request *rq,
			    struct iov_iter *iter)
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
		iov_iter_bvec(iter, ITER_DEST, bvec, nr, blk_rq_bytes(rq));
		iter->iov_offset = 0;
	} else {
		/* One bio: use its vector in place, from where it starts. */
		bvec = __bvec_iter_bvec(bio->bi_io_vec, bio->bi_iter);
		iov_iter_bvec(iter, ITER_DEST, bvec, nr, blk_rq_bytes(rq));
		iter->iov_offset = bio->bi_iter.bi_bvec_done;
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

	ret = qcow2blk_rq_iter(cmd, rq, &iter);
	if (ret)
		return BLK_STS_RESOURCE;

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

static void qcow2blk_work(struct work_struct *work)
{
	struct qcow2blk_cmd *cmd = container_of(work, struct qcow2blk_cmd,
						work);
	struct request *rq = blk_mq_rq_from_pdu(cmd);
	unsigned int noio = memalloc_noio_save();
	blk_status_t status;

	status = qcow2blk_do_read(cmd, rq);
	if (status)
		qcow2blk_cmd_fail(cmd, status);
	memalloc_noio_restore(noio);
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
		/* Read-only: nothing is ever dirty. */
		blk_mq_end_request(rq, BLK_STS_OK);
		return BLK_STS_OK;
	default:
		pr_warn_ratelimited("qcow2blk: qcow%d: write to read-only device refused\n",
				    dev->index);
		return BLK_STS_IOERR;
	}

	cmd->dev = dev;
	cmd->status = BLK_STS_OK;
	cmd->bvec = NULL;
	atomic_set(&cmd->pending, 1);
	queue_work(dev->wq, &cmd->work);
	return BLK_STS_OK;
}

static int qcow2blk_init_request(struct blk_mq_tag_set *set,
				 struct request *rq, unsigned int hctx_idx,
				 unsigned int numa_node)
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

	if (layer->direct_io && !is_vmalloc_addr(buf) && len <= PAGE_SIZE &&
	    offset_in_page(buf) + len <= PAGE_SIZE &&
	    IS_ALIGNED((unsigned long)buf | len | off, SECTOR_SIZE))
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
 * qcow2blk_probe_direct_io() - can data be read from @file with O_DIRECT?
 * @file: the image file
 *
 * Tries it: a 512-byte direct read at offset 512, the smallest unit the
 * device will ever ask for. File systems without direct I/O, or with a
 * larger alignment, fail it and the device reads through the page cache.
 *
 * Context: process context, may sleep.
 * Return: true if direct reads work.
 */
bool qcow2blk_probe_direct_io(struct file *file)
{
	void *buf;
	int ret;

	if (!(file->f_mode & FMODE_CAN_ODIRECT))
		return false;
	buf = kmalloc(SECTOR_SIZE, GFP_KERNEL);
	if (!buf)
		return false;
	ret = qcow2blk_pread_direct(file, buf, SECTOR_SIZE, SECTOR_SIZE);
	kfree(buf);
	return ret == 0;
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

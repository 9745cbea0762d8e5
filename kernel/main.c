// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2blk: QEMU qcow2 images as block devices /dev/qcowN.
 *
 * This file owns device lifetime: the table of devices, attach (validate the
 * image through the engine, then build the blk-mq disk), detach, and the
 * block device operations. Requests are served by io.c.
 *
 * A device holds a module reference from attach to detach, so the module
 * cannot be unloaded while any device exists. Detach of an open device fails
 * with -EBUSY; once detach has begun, new opens fail with -ENODEV.
 *
 * Writable devices: only the top image (and its external data file) is
 * written; backing layers and snapshots are always read-only. Writes reach
 * the image file as the engine orders them; what the engine still caches
 * (L2 and refcount changes) becomes durable on a flush request and when the
 * device is detached. The last close of the block device does not flush:
 * whoever cares about durability (file systems, sync(1), dd conv=fsync)
 * sends a flush, and detach always flushes before it lets go of the files.
 */
#include <linux/module.h>
#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#include <linux/xarray.h>
#include <linux/file.h>
#include <linux/uaccess.h>
#include <linux/sched/mm.h>

#include "qcow2blk_priv.h"

/*
 * Protects the device table, each device's ctl_state, pending and the
 * references the table hands out. Held only for short table work: never
 * across image I/O (attach reads headers, detach flushes, SET writes back
 * with it dropped), so one slow image file does not stall the control of
 * other devices. The netlink family runs with parallel_ops.
 */
DEFINE_MUTEX(qcow2blk_ctl_mutex);
static DEFINE_XARRAY_ALLOC(qcow2blk_devs);	/* index -> device */
static int qcow2blk_major;

/**
 * qcow2blk_dev_read_only() - does the device refuse writes now?
 * @dev: device
 *
 * Read-only when attached so, or once the engine stopped writing after an
 * error (qcow2_image::wfail).
 *
 * Context: any.
 * Return: true if writes are refused.
 */
bool qcow2blk_dev_read_only(struct qcow2blk_dev *dev)
{
	return !dev->writable || READ_ONCE(qcow2blk_top(dev)->wfail);
}

/**
 * qcow2blk_dev_state() - QCOW2BLK_S_* bits describing a device
 * @dev: device
 *
 * Context: any.
 * Return: the state bits.
 */
u64 qcow2blk_dev_state(struct qcow2blk_dev *dev)
{
	const struct qcow2_header *h = &qcow2blk_top(dev)->h;
	u64 state = 0;

	if (qcow2blk_dev_read_only(dev))
		state |= QCOW2BLK_S_READ_ONLY;
	if (dev->writable && READ_ONCE(qcow2blk_top(dev)->wfail))
		state |= QCOW2BLK_S_WRITE_FAILED;

	if (dev->layers[0].direct_io)
		state |= QCOW2BLK_S_DIRECT_IO;
	if (h->extended_l2)
		state |= QCOW2BLK_S_EXTENDED_L2;
	if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
		state |= QCOW2BLK_S_ZSTD;
	return state;
}

static int qcow2blk_open(struct gendisk *disk, bool write)
{
	struct qcow2blk_dev *dev = disk->private_data;
	int ret = 0;

	mutex_lock(&dev->lock);
	if (dev->removing)
		ret = -ENODEV;
	else if (write && qcow2blk_dev_read_only(dev))
		ret = -EROFS;
	else
		dev->open_count++;
	mutex_unlock(&dev->lock);
	return ret;
}

static void qcow2blk_release(struct gendisk *disk)
{
	struct qcow2blk_dev *dev = disk->private_data;

	mutex_lock(&dev->lock);
	dev->open_count--;
	mutex_unlock(&dev->lock);
}

QCOW2BLK_DEFINE_OPEN_RELEASE(qcow2blk_open, qcow2blk_release)

static void qcow2blk_fill_info(struct qcow2blk_dev *dev,
			       struct qcow2blk_info *info)
{
	memset(info, 0, sizeof(*info));
	info->version = QCOW2BLK_GENL_VERSION;
	info->index = dev->index;
	info->flags = dev->flags;
	info->state = qcow2blk_dev_state(dev);
	info->virtual_size = dev->chain.size;
	info->l2_cache_bytes = qcow2_l2c_bytes(qcow2blk_top(dev));
	info->cluster_size = qcow2blk_top(dev)->h.cluster_size;
	info->format_version = qcow2blk_top(dev)->h.version;
}

static int qcow2blk_ioctl(struct block_device *bdev, qcow2blk_mode_t mode,
			  unsigned int cmd, unsigned long arg)
{
	struct qcow2blk_dev *dev = bdev->bd_disk->private_data;
	struct qcow2blk_info __user *uinfo = (void __user *)arg;
	struct qcow2blk_info info;
	u32 version;

	switch (cmd) {
	case QCOW2BLK_IOC_GET_INFO:
		if (get_user(version, &uinfo->version))
			return -EFAULT;
		if (version != QCOW2BLK_GENL_VERSION)
			return -EINVAL;
		qcow2blk_fill_info(dev, &info);
		if (copy_to_user(uinfo, &info, sizeof(info)))
			return -EFAULT;
		return 0;
	default:
		return -ENOTTY;
	}
}

static const struct block_device_operations qcow2blk_fops = {
	.owner		= THIS_MODULE,
	.open		= qcow2blk_open_cb,
	.release	= qcow2blk_release_cb,
	.ioctl		= qcow2blk_ioctl,
};

/**
 * qcow2blk_dev_find() - look up a device by index
 * @index: N of /dev/qcowN
 *
 * Devices still being attached or already being detached are not found.
 *
 * Context: qcow2blk_ctl_mutex held, so the device cannot go away.
 * Return: the device or NULL.
 */
struct qcow2blk_dev *qcow2blk_dev_find(int index)
{
	struct qcow2blk_dev *dev;

	lockdep_assert_held(&qcow2blk_ctl_mutex);
	if (index < 0)
		return NULL;
	dev = xa_load(&qcow2blk_devs, index);
	return dev && dev->ctl_state == QCOW2BLK_CTL_READY ? dev : NULL;
}

/**
 * qcow2blk_dev_get() - look up a device and take a reference to it
 * @index: N of /dev/qcowN
 *
 * For control work done without qcow2blk_ctl_mutex: the caller takes
 * dev->ctl_lock and checks that ctl_state is still READY, and drops the
 * reference with qcow2blk_dev_put().
 *
 * Context: process context; takes qcow2blk_ctl_mutex.
 * Return: the device or NULL.
 */
struct qcow2blk_dev *qcow2blk_dev_get(int index)
{
	struct qcow2blk_dev *dev;

	mutex_lock(&qcow2blk_ctl_mutex);
	dev = qcow2blk_dev_find(index);
	if (dev)
		kref_get(&dev->ref);
	mutex_unlock(&qcow2blk_ctl_mutex);
	return dev;
}

static void qcow2blk_dev_release(struct kref *ref)
{
	struct qcow2blk_dev *dev = container_of(ref, struct qcow2blk_dev, ref);

	mutex_destroy(&dev->ctl_lock);
	mutex_destroy(&dev->lock);
	kfree(dev);
}

/* Drop a reference from qcow2blk_dev_get() or qcow2blk_dev_attach(). */
void qcow2blk_dev_put(struct qcow2blk_dev *dev)
{
	kref_put(&dev->ref, qcow2blk_dev_release);
}

/**
 * qcow2blk_dev_next() - iterate over devices in index order
 * @index: in: first index to consider; out: index of the device returned
 *
 * Context: qcow2blk_ctl_mutex held.
 * Return: the device or NULL when there is none left.
 */
struct qcow2blk_dev *qcow2blk_dev_next(unsigned long *index)
{
	struct qcow2blk_dev *dev;

	lockdep_assert_held(&qcow2blk_ctl_mutex);
	for (;;) {
		dev = xa_find(&qcow2blk_devs, index, ULONG_MAX, XA_PRESENT);
		if (!dev || dev->ctl_state == QCOW2BLK_CTL_READY)
			return dev;
		(*index)++;
	}
}

static int qcow2blk_init_tag_set(struct qcow2blk_dev *dev)
{
	struct blk_mq_tag_set *set = &dev->tag_set;

	set->ops = &qcow2blk_mq_ops;
	set->nr_hw_queues = num_online_cpus();
	set->queue_depth = QCOW2BLK_QUEUE_DEPTH;
	set->numa_node = NUMA_NO_NODE;
	set->cmd_size = sizeof(struct qcow2blk_cmd);
	set->flags = QCOW2BLK_MQ_F_MERGE;
	set->driver_data = dev;
	return blk_mq_alloc_tag_set(set);
}

static int qcow2blk_init_disk(struct qcow2blk_dev *dev)
{
	u32 cluster_size = qcow2blk_top(dev)->h.cluster_size;
	u32 lbs = dev->sector_size;
	u32 pbs = max_t(u32, lbs, min_t(u32, cluster_size, PAGE_SIZE));
	struct qcow2blk_limits lim = {
		.logical_block_size = lbs,
		.physical_block_size = pbs,
		.io_min = pbs,
		.max_hw_sectors = QCOW2BLK_MAX_HW_SECTORS,
	};
	struct gendisk *disk;

	if (dev->writable) {
		lim.write_cache = true;
		/* The engine frees whole clusters; it ignores the rest. */
		lim.discard_granularity = cluster_size;
		lim.max_discard_sectors = QCOW2BLK_MAX_ZERO_SECTORS;
		lim.max_write_zeroes_sectors = QCOW2BLK_MAX_ZERO_SECTORS;
	}

	disk = qcow2blk_alloc_disk(&dev->tag_set, &lim, dev);
	if (IS_ERR(disk))
		return PTR_ERR(disk);

	disk->major = qcow2blk_major;
	disk->first_minor = dev->index << QCOW2BLK_PART_SHIFT;
	disk->minors = 1 << QCOW2BLK_PART_SHIFT;
	disk->fops = &qcow2blk_fops;
	disk->private_data = dev;
	snprintf(disk->disk_name, DISK_NAME_LEN, QCOW2BLK_DISK_PREFIX "%d",
		 dev->index);
	/* Guest bytes past the virtual size read as zero up to the sector. */
	set_capacity(disk, DIV_ROUND_UP_ULL(dev->chain.size, SECTOR_SIZE));
	set_disk_ro(disk, !dev->writable);
	dev->disk = disk;
	return 0;
}

static void qcow2blk_err(struct qcow2_err *err, const char *msg)
{
	strscpy(err->msg, msg, sizeof(err->msg));
}

/*
 * Guest data on a file whose direct I/O needs more than 512-byte alignment
 * (a 4 KiB-sector disk below) makes a disk of that sector size, so that
 * every request can go direct; only when the virtual size is a multiple of
 * it, so no byte of the image becomes unreachable. An explicit size at
 * attach (--sector-size) wins.
 */
static int qcow2blk_pick_sector_size(struct qcow2blk_dev *dev, u32 want,
				     struct qcow2_err *err)
{
	const struct qcow2blk_layer *l = &dev->layers[0];
	u32 align = l->data_file ? l->data_dio_align : l->dio_align;

	if (want) {
		if (!IS_ALIGNED(dev->chain.size, want)) {
			qcow2blk_err(err, "the virtual size is not a multiple of the sector size");
			return -EINVAL;
		}
		dev->sector_size = want;
	} else if (align > SECTOR_SIZE && IS_ALIGNED(dev->chain.size, align)) {
		dev->sector_size = align;
	} else {
		dev->sector_size = SECTOR_SIZE;
	}
	return 0;
}

/*
 * What a file of the chain is, for identity: the inode of its contents. A
 * block device opened through two device nodes is one bdev inode.
 */
static struct inode *qcow2blk_file_id(struct file *file)
{
	return file->f_mapping->host;
}

/* Bytes of a regular file or a block device. */
static u64 qcow2blk_file_size(struct file *file)
{
	return i_size_read(qcow2blk_file_id(file));
}

static int qcow2blk_check_file(struct file *file, u32 layer, bool data,
			       struct qcow2_err *err)
{
	umode_t mode = file_inode(file)->i_mode;

	if (!S_ISREG(mode) && !S_ISBLK(mode)) {
		snprintf(err->msg, sizeof(err->msg),
			 "layer %u: %s is not a regular file or block device",
			 layer, data ? "data file" : "image");
		return -EINVAL;
	}
	if (!(file->f_mode & FMODE_READ) || !file->f_op->read_iter) {
		snprintf(err->msg, sizeof(err->msg),
			 "layer %u: file not open for reading", layer);
		return -EBADF;
	}
	return 0;
}

/* The top image of a writable attach: open for writing, in place. */
static int qcow2blk_check_writable(struct file *file, bool data,
				   struct qcow2_err *err)
{
	const char *what = data ? "data file" : "image";

	if (!(file->f_mode & FMODE_WRITE) || !file->f_op->write_iter) {
		snprintf(err->msg, sizeof(err->msg),
			 "%s not open for writing: open it read-write or attach read-only",
			 what);
		return -EBADF;
	}
	/* Appending writes would put every cluster at the end of file. */
	if (file->f_flags & O_APPEND) {
		snprintf(err->msg, sizeof(err->msg),
			 "%s open with O_APPEND: cannot write in place", what);
		return -EINVAL;
	}
	return 0;
}

/* Is @inode the image or data file of a layer above @layer? */
static bool qcow2blk_seen_above(const struct qcow2blk_attach *a, u32 layer,
				struct inode *inode)
{
	u32 i;

	for (i = 0; i < layer; i++) {
		if (qcow2blk_file_id(a->layers[i].file) == inode ||
		    (a->layers[i].data_file &&
		     qcow2blk_file_id(a->layers[i].data_file) == inode))
			return true;
	}
	return false;
}

/*
 * Does @dev use @inode as the image or data file of any layer? A device
 * being attached is judged by the files of its attach request.
 */
static bool qcow2blk_dev_uses(struct qcow2blk_dev *dev, struct inode *inode,
			      bool top_only)
{
	u32 i, n;

	if (dev->pending) {
		const struct qcow2blk_attach *a = dev->pending;

		n = top_only ? 1 : a->nr_layers;
		for (i = 0; i < n; i++) {
			if (qcow2blk_file_id(a->layers[i].file) == inode ||
			    (a->layers[i].data_file &&
			     qcow2blk_file_id(a->layers[i].data_file) == inode))
				return true;
		}
		return false;
	}
	n = top_only ? 1 : dev->nr_layers;
	for (i = 0; i < n; i++) {
		if (qcow2blk_file_id(dev->layers[i].file) == inode ||
		    (dev->layers[i].data_file &&
		     qcow2blk_file_id(dev->layers[i].data_file) == inode))
			return true;
	}
	return false;
}

/*
 * A written image belongs to one device: refuse a writable attach of a
 * file any device uses, and any attach of a file a writable device writes.
 */
static int qcow2blk_check_busy(const struct qcow2blk_attach *a,
			       struct qcow2_err *err)
{
	bool writable = !(a->flags & QCOW2BLK_F_READ_ONLY);
	struct qcow2blk_dev *dev;
	unsigned long index = 0;
	struct inode *inode;
	u32 i, j;

	lockdep_assert_held(&qcow2blk_ctl_mutex);
	/* Every device: those being attached or detached hold files too. */
	while ((dev = xa_find(&qcow2blk_devs, &index, ULONG_MAX,
			      XA_PRESENT))) {
		for (i = 0; i < a->nr_layers; i++) {
			for (j = 0; j < 2; j++) {
				struct file *f = j ? a->layers[i].data_file :
						     a->layers[i].file;

				if (!f)
					continue;
				inode = qcow2blk_file_id(f);
				if ((writable && !i &&
				     qcow2blk_dev_uses(dev, inode, false)) ||
				    (dev->writable &&
				     qcow2blk_dev_uses(dev, inode, true))) {
					snprintf(err->msg, sizeof(err->msg),
						 "layer %u: %s is in use by qcow%d%s",
						 i, j ? "data file" : "image",
						 dev->index,
						 dev->writable ?
						 " (attached read-write)" : "");
					return -EBUSY;
				}
			}
		}
		index++;
	}
	return 0;
}

/* Refuse what needs no image reading: flags, file types, loops. */
static int qcow2blk_check_attach(const struct qcow2blk_attach *a,
				 struct qcow2_err *err)
{
	u32 i;
	int ret;

	if (a->flags & ~QCOW2BLK_F_ALL) {
		qcow2blk_err(err, "unknown attach flags");
		return -EINVAL;
	}
	if (!(a->flags & QCOW2BLK_F_READ_ONLY)) {
		if (a->snapshot) {
			qcow2blk_err(err, "a snapshot can only be attached read-only");
			return -EINVAL;
		}
		ret = qcow2blk_check_writable(a->layers[0].file, false, err);
		if (!ret && a->layers[0].data_file)
			ret = qcow2blk_check_writable(a->layers[0].data_file,
						      true, err);
		if (ret)
			return ret;
	} else if (a->rc_cache_bytes) {
		qcow2blk_err(err, "a refcount cache size needs a writable attach");
		return -EINVAL;
	}
	if (a->index >= (int)QCOW2BLK_MAX_DEVICES) {
		qcow2blk_err(err, "device index out of range");
		return -EINVAL;
	}
	if (!a->nr_layers || a->nr_layers > QCOW2BLK_MAX_LAYERS) {
		qcow2blk_err(err, "too many layers in the backing chain");
		return -EINVAL;
	}
	for (i = 0; i < a->nr_layers; i++) {
		const struct qcow2blk_attach_layer *l = &a->layers[i];
		struct inode *inode = qcow2blk_file_id(l->file);

		if (l->format != QCOW2BLK_FMT_QCOW2 &&
		    l->format != QCOW2BLK_FMT_RAW) {
			snprintf(err->msg, sizeof(err->msg),
				 "layer %u: unknown format %u", i, l->format);
			return -EINVAL;
		}
		ret = qcow2blk_check_file(l->file, i, false, err);
		if (!ret && l->data_file)
			ret = qcow2blk_check_file(l->data_file, i, true, err);
		if (ret)
			return ret;
		if (qcow2blk_seen_above(a, i, inode) ||
		    (l->data_file &&
		     (qcow2blk_file_id(l->data_file) == inode ||
		      qcow2blk_seen_above(a, i,
					  qcow2blk_file_id(l->data_file))))) {
			snprintf(err->msg, sizeof(err->msg),
				 "layer %u: a file appears twice in the chain (a loop)",
				 i);
			return -ELOOP;
		}
	}
	return 0;
}

/* Take file references and describe every layer for the engine. */
/* The direct I/O alignment of @file; saying why when there is none. */
static u32 qcow2blk_probe_dio_align_log(struct file *file)
{
	int why;
	u32 align = qcow2blk_probe_dio_align(file, &why);

	if (!align)
		pr_info("qcow2blk: %pD: no direct I/O (error %d), using the page cache\n",
			file, why);
	return align;
}

static int qcow2blk_setup_layers(struct qcow2blk_dev *dev,
				 const struct qcow2blk_attach *a,
				 struct qcow2_layer_desc *desc,
				 struct qcow2_io *data_io)
{
	u32 i;

	dev->layers = kcalloc(a->nr_layers, sizeof(*dev->layers), GFP_KERNEL);
	if (!dev->layers)
		return -ENOMEM;
	dev->nr_layers = a->nr_layers;
	for (i = 0; i < a->nr_layers; i++) {
		struct qcow2blk_layer *l = &dev->layers[i];
		bool dio = !(a->flags & QCOW2BLK_F_BUFFERED_IO);

		l->dev = dev;
		l->index = i;
		l->file = get_file(a->layers[i].file);
		if (dio)
			l->dio_align = qcow2blk_probe_dio_align_log(l->file);
		l->direct_io = l->dio_align != 0;
		if (a->layers[i].data_file) {
			l->data_file = get_file(a->layers[i].data_file);
			if (dio)
				l->data_dio_align =
					qcow2blk_probe_dio_align_log(l->data_file);
			l->data_direct_io = l->data_dio_align != 0;
		}
		desc[i].format = a->layers[i].format == QCOW2BLK_FMT_RAW ?
				 QCOW2_LAYER_RAW : QCOW2_LAYER_QCOW2;
		desc[i].io.pread = qcow2blk_meta_pread;
		desc[i].io.priv = l;
		desc[i].file_size = qcow2blk_file_size(l->file);
		desc[i].has_data_file = !!l->data_file;
	}
	if (dev->writable)
		qcow2blk_fill_write_io(&dev->layers[0], &desc[0].io, data_io);
	return 0;
}

static void qcow2blk_put_layers(struct qcow2blk_dev *dev)
{
	u32 i;

	for (i = 0; i < dev->nr_layers; i++) {
		if (dev->layers[i].data_file)
			fput(dev->layers[i].data_file);
		fput(dev->layers[i].file);
	}
	kfree(dev->layers);
	dev->layers = NULL;
}

/* Take the table's place for @dev: busy checks, then the index. */
static int qcow2blk_dev_reserve(struct qcow2blk_dev *dev,
				const struct qcow2blk_attach *a,
				struct qcow2_err *err)
{
	struct xa_limit limit = XA_LIMIT(0, QCOW2BLK_MAX_DEVICES - 1);
	u32 index;
	int ret;

	mutex_lock(&qcow2blk_ctl_mutex);
	ret = qcow2blk_check_busy(a, err);
	if (ret)
		goto out;
	if (a->index >= 0) {
		index = a->index;
		ret = xa_insert(&qcow2blk_devs, index, dev, GFP_KERNEL);
		if (ret == -EBUSY)
			qcow2blk_err(err, "device index already in use");
	} else {
		ret = xa_alloc(&qcow2blk_devs, &index, dev, limit, GFP_KERNEL);
		if (ret == -EBUSY)
			qcow2blk_err(err, "no free device index");
	}
	if (!ret)
		dev->index = index;
out:
	mutex_unlock(&qcow2blk_ctl_mutex);
	return ret;
}

/* Give the table's place back; @dev was never announced. */
static void qcow2blk_dev_unreserve(struct qcow2blk_dev *dev)
{
	mutex_lock(&qcow2blk_ctl_mutex);
	xa_erase(&qcow2blk_devs, dev->index);
	mutex_unlock(&qcow2blk_ctl_mutex);
}

/**
 * qcow2blk_dev_attach() - create /dev/qcowN for an image or a chain
 * @a: the open files of every layer and the attach options
 * @err: reason on failure
 *
 * Everything that can be refused is checked before the disk is announced.
 * The device takes its index first (as ATTACHING: not found by lookups,
 * but its files count for the busy checks of other attaches), then opens
 * the chain and builds the disk with no global lock held.
 *
 * Context: process context; takes qcow2blk_ctl_mutex for table work only.
 * Return: the new device, READY, with a reference for the caller
 * (qcow2blk_dev_put()), or an ERR_PTR().
 */
struct qcow2blk_dev *qcow2blk_dev_attach(const struct qcow2blk_attach *a,
					 struct qcow2_err *err)
{
	struct qcow2_open_opts opts = {
		.flags = 0,
		.l2_cache_bytes = a->l2_cache_bytes,
		.rc_cache_bytes = a->rc_cache_bytes,
		.map_cache_bytes = a->map_cache_bytes,
		.snapshot = a->snapshot,
	};
	struct qcow2_io data_io = { };
	struct qcow2_layer_desc *desc;
	struct qcow2blk_dev *dev;
	int ret;

	ret = qcow2blk_check_attach(a, err);
	if (ret)
		return ERR_PTR(ret);

	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	desc = kcalloc(a->nr_layers, sizeof(*desc), GFP_KERNEL);
	if (!dev || !desc) {
		kfree(dev);
		kfree(desc);
		return ERR_PTR(-ENOMEM);
	}
	mutex_init(&dev->lock);
	mutex_init(&dev->ctl_lock);
	mutex_init(&dev->wbvec_lock);
	kref_init(&dev->ref);
	INIT_LIST_HEAD(&dev->shrink_node);
	qcow2blk_epoch_init(&dev->epoch);
	dev->flags = a->flags;
	dev->index = -1;
	dev->writable = !(a->flags & QCOW2BLK_F_READ_ONLY);
	dev->ctl_state = QCOW2BLK_CTL_ATTACHING;
	dev->pending = a;

	ret = qcow2blk_dev_reserve(dev, a, err);
	if (ret)
		goto out_free;
	if (dev->writable) {
		opts.flags |= QCOW2_OPEN_WRITABLE;
		dev->wbvec = kcalloc(QCOW2BLK_WRITE_BVECS,
				     sizeof(*dev->wbvec), GFP_KERNEL);
		if (!dev->wbvec) {
			ret = -ENOMEM;
			goto out_unreserve;
		}
	}
	if (a->snapshot) {
		dev->snapshot = kstrdup(a->snapshot, GFP_KERNEL);
		if (!dev->snapshot) {
			ret = -ENOMEM;
			goto out_unreserve;
		}
	}

	ret = qcow2blk_setup_layers(dev, a, desc, &data_io);
	if (ret)
		goto out_put_layers;
	if (dev->layers[0].data_file && dev->writable)
		opts.data_io = &data_io;
	/* A block device does not grow: allocations stop at its end. */
	if (S_ISBLK(file_inode(dev->layers[0].file)->i_mode))
		opts.max_file_size = qcow2blk_file_size(dev->layers[0].file);
	ret = qcow2_chain_open(&dev->chain, desc, a->nr_layers, &opts, err);
	if (ret)
		goto out_put_layers;
	qcow2blk_zcache_init(dev);
	/* The engine writes whole sectors; so must the last one be. */
	if (dev->writable && !IS_ALIGNED(dev->chain.size, SECTOR_SIZE)) {
		snprintf(err->msg, sizeof(err->msg),
			 "virtual size %llu is not a multiple of 512 bytes: attach read-only",
			 dev->chain.size);
		ret = -EOPNOTSUPP;
		goto out_close_chain;
	}
	if (dev->writable && WARN_ON_ONCE(!qcow2blk_top(dev)->writable)) {
		qcow2blk_err(err, "the engine did not open the image writable");
		ret = -EIO;
		goto out_close_chain;
	}

	ret = qcow2blk_pick_sector_size(dev, a->sector_size, err);
	if (ret)
		goto out_close_chain;
	mutex_lock(&qcow2blk_ctl_mutex);
	ret = qcow2blk_budget_charge(dev, err);
	mutex_unlock(&qcow2blk_ctl_mutex);
	if (ret)
		goto out_close_chain;

	dev->wq = alloc_workqueue("qcow2blk%d", WQ_MEM_RECLAIM | WQ_UNBOUND,
				  0, dev->index);
	if (!dev->wq) {
		ret = -ENOMEM;
		goto out_close_chain;
	}

	ret = qcow2blk_init_tag_set(dev);
	if (ret)
		goto out_destroy_wq;

	ret = qcow2blk_init_disk(dev);
	if (ret)
		goto out_free_tag_set;

	ret = device_add_disk(NULL, dev->disk, qcow2blk_attr_groups);
	if (ret)
		goto out_put_disk;

	__module_get(THIS_MODULE);
	kfree(desc);
	mutex_lock(&qcow2blk_ctl_mutex);
	dev->pending = NULL;
	dev->ctl_state = QCOW2BLK_CTL_READY;
	kref_get(&dev->ref);
	mutex_unlock(&qcow2blk_ctl_mutex);
	pr_info("qcow2blk: %s: attached %pD (qcow2 v%u, %llu bytes, %u-byte clusters, %u layer(s), %s I/O, %s)\n",
		dev->disk->disk_name, dev->layers[0].file,
		qcow2blk_top(dev)->h.version, dev->chain.size,
		qcow2blk_top(dev)->h.cluster_size, dev->nr_layers,
		dev->layers[0].direct_io ? "direct" : "buffered",
		dev->writable ? "read-write" : "read-only");
	return dev;

out_put_disk:
	put_disk(dev->disk);
out_free_tag_set:
	blk_mq_free_tag_set(&dev->tag_set);
out_destroy_wq:
	destroy_workqueue(dev->wq);
out_close_chain:
	/* Off the shrinker's list before the caches go. */
	mutex_lock(&qcow2blk_ctl_mutex);
	qcow2blk_budget_uncharge(dev);
	mutex_unlock(&qcow2blk_ctl_mutex);
	qcow2blk_zcache_free(dev);
	qcow2_chain_close(&dev->chain);
out_put_layers:
	qcow2blk_put_layers(dev);
out_unreserve:
	qcow2blk_dev_unreserve(dev);
out_free:
	kfree(dev->wbvec);
	kfree(dev->snapshot);
	kfree(desc);
	qcow2blk_dev_put(dev);
	return ERR_PTR(ret);
}

/*
 * Write back what the engine still caches, after the last request. A
 * failure is logged: the image file is then as a crash would leave it,
 * consistent for qemu-img check with leaked clusters at worst.
 */
static void qcow2blk_dev_final_flush(struct qcow2blk_dev *dev)
{
	unsigned int state;
	int ret;

	if (!dev->writable)
		return;
	/* The engine's allocations must not recurse into our own disk. */
	state = qcow2blk_writer_enter();
	/* Persistent bitmaps are stored and marked consistent here too. */
	ret = qcow2_write_finish(qcow2blk_top(dev));
	qcow2blk_writer_exit(state);
	if (ret)
		pr_err("qcow2blk: %s: flush at detach failed: %d%s\n",
		       dev->disk->disk_name, ret, ret == -EROFS ?
		       " (writing had stopped after an earlier error)" : "");
}

/*
 * Tear down a device that is no longer reachable (REMOVING); nothing can
 * open it. The disk goes and the image is flushed with no global lock
 * held; the table keeps the device (its files still count as in use)
 * until the flush is done.
 *
 * Context: dev->ctl_lock held, qcow2blk_ctl_mutex not held.
 */
static void qcow2blk_dev_destroy(struct qcow2blk_dev *dev)
{
	lockdep_assert_held(&dev->ctl_lock);
	del_gendisk(dev->disk);
	/* No request is left in flight once the disk is gone. */
	qcow2blk_dev_final_flush(dev);
	pr_info("qcow2blk: %s: detached\n", dev->disk->disk_name);
	mutex_lock(&qcow2blk_ctl_mutex);
	qcow2blk_budget_uncharge(dev);
	xa_erase(&qcow2blk_devs, dev->index);
	mutex_unlock(&qcow2blk_ctl_mutex);
	put_disk(dev->disk);
	blk_mq_free_tag_set(&dev->tag_set);
	destroy_workqueue(dev->wq);
	qcow2blk_zcache_free(dev);
	qcow2_chain_close(&dev->chain);
	qcow2blk_put_layers(dev);
	kfree(dev->wbvec);
	kfree(dev->snapshot);
	dev->wbvec = NULL;
	dev->snapshot = NULL;
	module_put(THIS_MODULE);
}

/**
 * qcow2blk_dev_detach() - remove /dev/qcowN
 * @index: N
 *
 * Context: process context; takes qcow2blk_ctl_mutex for table work, and
 * the device's ctl_lock (waiting for a SET under way) for the teardown.
 * Return: 0, -ENODEV (no such device) or -EBUSY (device is open).
 */
int qcow2blk_dev_detach(int index)
{
	struct qcow2blk_dev *dev;

	mutex_lock(&qcow2blk_ctl_mutex);
	dev = qcow2blk_dev_find(index);
	if (!dev) {
		mutex_unlock(&qcow2blk_ctl_mutex);
		return -ENODEV;
	}
	mutex_lock(&dev->lock);
	if (dev->open_count) {
		mutex_unlock(&dev->lock);
		mutex_unlock(&qcow2blk_ctl_mutex);
		return -EBUSY;
	}
	dev->removing = true;
	mutex_unlock(&dev->lock);
	dev->ctl_state = QCOW2BLK_CTL_REMOVING;
	mutex_unlock(&qcow2blk_ctl_mutex);

	mutex_lock(&dev->ctl_lock);
	qcow2blk_nl_event(QCOW2BLK_EVENT_DETACHED, dev);
	qcow2blk_dev_destroy(dev);
	mutex_unlock(&dev->ctl_lock);
	/* The table's reference. */
	qcow2blk_dev_put(dev);
	return 0;
}

static int __init qcow2blk_init(void)
{
	int ret;

	ret = qcow2blk_io_init();
	if (ret)
		return ret;
	ret = qcow2blk_compress_init();
	if (ret)
		goto out_io;
	ret = qcow2blk_budget_init();
	if (ret)
		goto out_compress;
	ret = register_blkdev(0, QCOW2BLK_DISK_PREFIX);
	if (ret < 0)
		goto out_budget;
	qcow2blk_major = ret;
	ret = qcow2blk_nl_init();
	if (ret)
		goto out_blkdev;
	pr_info("qcow2blk: loaded (major %d)\n", qcow2blk_major);
	return 0;

out_blkdev:
	unregister_blkdev(qcow2blk_major, QCOW2BLK_DISK_PREFIX);
out_budget:
	qcow2blk_budget_exit();
out_compress:
	qcow2blk_compress_exit();
out_io:
	qcow2blk_io_exit();
	return ret;
}

static void __exit qcow2blk_exit(void)
{
	/* Devices hold module references: none can be left here. */
	qcow2blk_nl_exit();
	WARN_ON_ONCE(!xa_empty(&qcow2blk_devs));
	unregister_blkdev(qcow2blk_major, QCOW2BLK_DISK_PREFIX);
	qcow2blk_budget_exit();
	qcow2blk_compress_exit();
	qcow2blk_io_exit();
}

module_init(qcow2blk_init);
module_exit(qcow2blk_exit);

MODULE_DESCRIPTION("QEMU qcow2 images as block devices");
MODULE_LICENSE("GPL");
MODULE_ALIAS_GENL_FAMILY(QCOW2BLK_GENL_NAME);

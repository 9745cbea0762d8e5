/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel interfaces that differ between the supported kernels
 * (Debian's 6.1 and 6.12). Features are detected by Kbuild from the target's
 * headers (QCOW2BLK_HAVE_*), never by version number.
 */
#ifndef QCOW2BLK_COMPAT_H
#define QCOW2BLK_COMPAT_H

#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <net/netlink.h>

/* Requests are merged by default since 6.14, which dropped the flag. */
#ifdef QCOW2BLK_HAVE_MQ_SHOULD_MERGE
#define QCOW2BLK_MQ_F_MERGE	BLK_MQ_F_SHOULD_MERGE
#else
#define QCOW2BLK_MQ_F_MERGE	0
#endif

/* How far into its current bio_vec a bvec_iter is (renamed in 7.x). */
#ifdef QCOW2BLK_HAVE_BI_BVEC_DONE
#define QCOW2BLK_BVEC_DONE(it)	((it)->bi_bvec_done)
#else
#define QCOW2BLK_BVEC_DONE(it)	((it)->bi_offset)
#endif

/* blk_mq_ops::init_request's NUMA node became an int in 7.x. */
#ifdef QCOW2BLK_INIT_REQUEST_NODE_INT
#define qcow2blk_numa_node_t	int
#else
#define qcow2blk_numa_node_t	unsigned int
#endif

/* Queue settings, applied the way the target kernel wants them. */
struct qcow2blk_limits {
	unsigned int logical_block_size;	/* bytes */
	unsigned int physical_block_size;	/* bytes */
	unsigned int io_min;			/* bytes */
	unsigned int max_hw_sectors;		/* 512-byte sectors */
	/* Writable devices only; all zero on read-only ones. */
	bool write_cache;			/* volatile cache, FUA */
	unsigned int discard_granularity;	/* bytes */
	unsigned int max_discard_sectors;	/* 512-byte sectors */
	unsigned int max_write_zeroes_sectors;	/* 512-byte sectors */
};

#ifdef QCOW2BLK_HAVE_ALLOC_DISK_LIMITS
static inline struct gendisk *
qcow2blk_alloc_disk(struct blk_mq_tag_set *set,
		    const struct qcow2blk_limits *l, void *queuedata)
{
	struct queue_limits lim = {
		.logical_block_size = l->logical_block_size,
		.physical_block_size = l->physical_block_size,
		.io_min = l->io_min,
		.max_hw_sectors = l->max_hw_sectors,
		.discard_granularity = l->discard_granularity,
		.max_hw_discard_sectors = l->max_discard_sectors,
		.max_write_zeroes_sectors = l->max_write_zeroes_sectors,
	};
	struct gendisk *disk;

#ifdef QCOW2BLK_HAVE_BLK_FEATURES
	/* The cache and FUA are queue features since 6.11. */
	if (l->write_cache)
		lim.features |= BLK_FEAT_WRITE_CACHE | BLK_FEAT_FUA;
#endif
	disk = blk_mq_alloc_disk(set, &lim, queuedata);
#ifndef QCOW2BLK_HAVE_BLK_FEATURES
	if (!IS_ERR(disk) && l->write_cache)
		blk_queue_write_cache(disk->queue, true, true);
#endif
	return disk;
}
#else
static inline struct gendisk *
qcow2blk_alloc_disk(struct blk_mq_tag_set *set,
		    const struct qcow2blk_limits *l, void *queuedata)
{
	struct gendisk *disk = blk_mq_alloc_disk(set, queuedata);

	if (IS_ERR(disk))
		return disk;
	blk_queue_logical_block_size(disk->queue, l->logical_block_size);
	blk_queue_physical_block_size(disk->queue, l->physical_block_size);
	blk_queue_io_min(disk->queue, l->io_min);
	blk_queue_max_hw_sectors(disk->queue, l->max_hw_sectors);
	disk->queue->limits.discard_granularity = l->discard_granularity;
	blk_queue_max_discard_sectors(disk->queue, l->max_discard_sectors);
	blk_queue_max_write_zeroes_sectors(disk->queue,
					   l->max_write_zeroes_sectors);
	if (l->write_cache)
		blk_queue_write_cache(disk->queue, true, true);
	/* Not rotational: the 6.12 default, explicit on older kernels. */
	blk_queue_flag_set(QUEUE_FLAG_NONROT, disk->queue);
	return disk;
}
#endif

/*
 * block_device_operations open/release/ioctl changed signature when
 * blk_mode_t replaced fmode_t. Drivers implement
 *   int name_open(struct gendisk *disk, bool write);
 *   void name_release(struct gendisk *disk);
 * and these macros define the callbacks the target kernel expects.
 */
#ifdef QCOW2BLK_HAVE_BLK_MODE_T
#define qcow2blk_mode_t blk_mode_t

#define QCOW2BLK_DEFINE_OPEN_RELEASE(open_fn, release_fn)		\
static int open_fn##_cb(struct gendisk *disk, blk_mode_t mode)		\
{									\
	return open_fn(disk, !!(mode & BLK_OPEN_WRITE));		\
}									\
static void release_fn##_cb(struct gendisk *disk)			\
{									\
	release_fn(disk);						\
}
#else
#define qcow2blk_mode_t fmode_t

#define QCOW2BLK_DEFINE_OPEN_RELEASE(open_fn, release_fn)		\
static int open_fn##_cb(struct block_device *bdev, fmode_t mode)	\
{									\
	return open_fn(bdev->bd_disk, !!(mode & FMODE_WRITE));		\
}									\
static void release_fn##_cb(struct gendisk *disk, fmode_t mode)	\
{									\
	release_fn(disk);						\
}
#endif

/*
 * Formatted extack messages appeared after 6.1. Without them the reply
 * carries a fixed summary and the details go to the kernel log.
 */
#ifdef NL_SET_ERR_MSG_FMT
/* Bounded so that long engine messages are cut, not warned about. */
#define QCOW2BLK_SET_ERR_MSG(extack, summary, detail)			\
	NL_SET_ERR_MSG_FMT(extack, "%.*s",				\
			   NETLINK_MAX_FMTMSG_LEN - 1, detail)
#else
#define QCOW2BLK_SET_ERR_MSG(extack, summary, detail)			\
	NL_SET_ERR_MSG(extack, summary)
#endif

/*
 * Shrinkers are allocated by the kernel since 6.7 (shrinker_alloc());
 * before, the driver embeds one and registers it.
 */
#define QCOW2BLK_SHRINK_BATCH	32

typedef unsigned long (*qcow2blk_shrink_fn)(struct shrinker *,
					    struct shrink_control *);

static inline void qcow2blk_shrinker_setup(struct shrinker *s,
					   qcow2blk_shrink_fn count,
					   qcow2blk_shrink_fn scan)
{
	s->count_objects = count;
	s->scan_objects = scan;
	s->seeks = DEFAULT_SEEKS;
	/* Slices are small and few: scan them in small batches. */
	s->batch = QCOW2BLK_SHRINK_BATCH;
}

#ifdef QCOW2BLK_HAVE_SHRINKER_ALLOC
static inline struct shrinker *
qcow2blk_shrinker_create(const char *name, qcow2blk_shrink_fn count,
			 qcow2blk_shrink_fn scan)
{
	struct shrinker *s = shrinker_alloc(0, "%s", name);

	if (s) {
		qcow2blk_shrinker_setup(s, count, scan);
		shrinker_register(s);
	}
	return s;
}

static inline void qcow2blk_shrinker_destroy(struct shrinker *s)
{
	shrinker_free(s);
}
#else
static inline struct shrinker *
qcow2blk_shrinker_create(const char *name, qcow2blk_shrink_fn count,
			 qcow2blk_shrink_fn scan)
{
	struct shrinker *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return NULL;
	qcow2blk_shrinker_setup(s, count, scan);
	if (register_shrinker(s, "%s", name)) {
		kfree(s);
		return NULL;
	}
	return s;
}

static inline void qcow2blk_shrinker_destroy(struct shrinker *s)
{
	unregister_shrinker(s);
	kfree(s);
}
#endif

#endif /* QCOW2BLK_COMPAT_H */

// SPDX-License-Identifier: GPL-2.0
/*
 * sysfs attributes of /sys/block/qcowN/qcow2/: one value per file,
 * documented in Documentation/ABI/testing/sysfs-block-qcow2blk. Show
 * functions only snapshot and format.
 */
#include <linux/blkdev.h>
#include <linux/sysfs.h>
#include <linux/slab.h>

#include "qcow2blk_priv.h"

static struct qcow2blk_dev *qcow2blk_sysfs_dev(struct device *d)
{
	return dev_to_disk(d)->private_data;
}

static ssize_t image_path_show(struct device *d, struct device_attribute *attr,
			       char *buf)
{
	struct qcow2blk_dev *dev = qcow2blk_sysfs_dev(d);
	char *tmp, *path;
	ssize_t ret;

	tmp = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!tmp)
		return -ENOMEM;
	path = file_path(dev->layers[0].file, tmp, PATH_MAX);
	if (IS_ERR(path))
		ret = PTR_ERR(path);
	else
		ret = sysfs_emit(buf, "%s\n", path);
	kfree(tmp);
	return ret;
}
static DEVICE_ATTR_RO(image_path);

#define QCOW2BLK_SHOW(name, fmt, expr)					\
static ssize_t name##_show(struct device *d,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	struct qcow2blk_dev *dev = qcow2blk_sysfs_dev(d);		\
									\
	return sysfs_emit(buf, fmt "\n", expr);				\
}									\
static DEVICE_ATTR_RO(name)

QCOW2BLK_SHOW(virtual_size_bytes, "%llu", dev->chain.size);
QCOW2BLK_SHOW(cluster_size_bytes, "%u", qcow2blk_top(dev)->h.cluster_size);
QCOW2BLK_SHOW(format_version, "%u", qcow2blk_top(dev)->h.version);
QCOW2BLK_SHOW(compression_type, "%s",
	      qcow2blk_top(dev)->h.compression_type ==
	      QCOW2_COMPRESSION_ZSTD ? "zstd" : "deflate");
QCOW2BLK_SHOW(extended_l2, "%d", qcow2blk_top(dev)->h.extended_l2);
QCOW2BLK_SHOW(direct_io, "%d", dev->layers[0].direct_io);
QCOW2BLK_SHOW(dio_align_bytes, "%u", dev->layers[0].data_file ?
	      dev->layers[0].data_dio_align : dev->layers[0].dio_align);
QCOW2BLK_SHOW(l2_cache_bytes, "%llu", qcow2_l2c_bytes(qcow2blk_top(dev)));
QCOW2BLK_SHOW(layers, "%u", dev->nr_layers);
QCOW2BLK_SHOW(snapshot, "%s", dev->snapshot ?: "");
QCOW2BLK_SHOW(map_cache_bytes, "%llu",
	      (u64)dev->chain.mc.nr_slots * dev->chain.mc.slot_bytes);
QCOW2BLK_SHOW(io_errors, "%lld", atomic64_read(&dev->stats.io_errors));
QCOW2BLK_SHOW(corrupt_errors, "%lld",
	      atomic64_read(&dev->stats.corrupt_errors));
QCOW2BLK_SHOW(data_reads, "%lld", atomic64_read(&dev->stats.data_ios));
QCOW2BLK_SHOW(compressed_reads, "%lld",
	      atomic64_read(&dev->stats.compressed_reads));

#define QCOW2BLK_SHOW_L2(name)						\
static ssize_t l2_##name##_show(struct device *d,			\
				struct device_attribute *attr, char *buf) \
{									\
	struct qcow2blk_dev *dev = qcow2blk_sysfs_dev(d);		\
	struct qcow2_cache_stats st;					\
									\
	qcow2_l2c_get_stats(qcow2blk_top(dev), &st);			\
	return sysfs_emit(buf, "%llu\n", st.name);			\
}									\
static DEVICE_ATTR_RO(l2_##name)

QCOW2BLK_SHOW_L2(hits);
QCOW2BLK_SHOW_L2(misses);
QCOW2BLK_SHOW_L2(evictions);

/* Write path: read-only devices have no engine state to ask; they show 0. */
QCOW2BLK_SHOW(writable, "%d", dev->writable);
QCOW2BLK_SHOW(write_error, "%d",
	      dev->writable ? -READ_ONCE(qcow2blk_top(dev)->wfail) : 0);
QCOW2BLK_SHOW(rc_cache_bytes, "%llu",
	      dev->writable ? qcow2_rc_bytes(qcow2blk_top(dev)) : 0);
QCOW2BLK_SHOW(data_writes, "%lld", atomic64_read(&dev->stats.data_writes));

static struct qcow2_cache_stats qcow2blk_rc_stats(struct qcow2blk_dev *dev)
{
	struct qcow2_cache_stats st = { };

	if (dev->writable)
		qcow2_rc_get_stats(qcow2blk_top(dev), &st);
	return st;
}

static struct qcow2_write_stats qcow2blk_write_stats(struct qcow2blk_dev *dev)
{
	struct qcow2_write_stats st = { };

	if (dev->writable)
		qcow2_write_get_stats(qcow2blk_top(dev), &st);
	return st;
}

QCOW2BLK_SHOW(rc_cache_hits, "%llu", qcow2blk_rc_stats(dev).hits);
QCOW2BLK_SHOW(rc_cache_misses, "%llu", qcow2blk_rc_stats(dev).misses);
QCOW2BLK_SHOW(rc_cache_evictions, "%llu", qcow2blk_rc_stats(dev).evictions);
QCOW2BLK_SHOW(alloc_clusters, "%llu",
	      qcow2blk_write_stats(dev).alloc_clusters);
QCOW2BLK_SHOW(freed_clusters, "%llu",
	      qcow2blk_write_stats(dev).freed_clusters);
QCOW2BLK_SHOW(cow_bytes, "%llu", qcow2blk_write_stats(dev).cow_bytes);
QCOW2BLK_SHOW(l2_tables_allocated, "%llu",
	      qcow2blk_write_stats(dev).l2_tables_allocated);
QCOW2BLK_SHOW(meta_flushes, "%llu", qcow2blk_write_stats(dev).meta_flushes);
QCOW2BLK_SHOW(overlaps, "%llu", qcow2blk_write_stats(dev).overlaps);

/* The module-wide cache budget (budget.c). */
QCOW2BLK_SHOW(cache_charged_bytes, "%llu", READ_ONCE(dev->cache_charge));
QCOW2BLK_SHOW(cache_shrunk, "%d", READ_ONCE(dev->cache_shrunk));
QCOW2BLK_SHOW(cache_released, "%llu", qcow2blk_dev_released(dev));

#define QCOW2BLK_SHOW_MC(name)						\
static ssize_t map_cache_##name##_show(struct device *d,		\
				       struct device_attribute *attr,	\
				       char *buf)			\
{									\
	struct qcow2blk_dev *dev = qcow2blk_sysfs_dev(d);		\
	struct qcow2_cache_stats st;					\
									\
	qcow2_chain_get_mc_stats(&dev->chain, &st);			\
	return sysfs_emit(buf, "%llu\n", st.name);			\
}									\
static DEVICE_ATTR_RO(map_cache_##name)

QCOW2BLK_SHOW_MC(hits);
QCOW2BLK_SHOW_MC(misses);

#define QCOW2BLK_SHOW_ZC(name)						\
static ssize_t zcache_##name##_show(struct device *d,			\
				    struct device_attribute *attr,	\
				    char *buf)				\
{									\
	struct qcow2blk_dev *dev = qcow2blk_sysfs_dev(d);		\
	u64 v;								\
									\
	spin_lock(&dev->zc.lock);					\
	v = dev->zc.name;						\
	spin_unlock(&dev->zc.lock);					\
	return sysfs_emit(buf, "%llu\n", v);				\
}									\
static DEVICE_ATTR_RO(zcache_##name)

QCOW2BLK_SHOW_ZC(hits);
QCOW2BLK_SHOW_ZC(misses);

static struct attribute *qcow2blk_attrs[] = {
	&dev_attr_image_path.attr,
	&dev_attr_virtual_size_bytes.attr,
	&dev_attr_cluster_size_bytes.attr,
	&dev_attr_format_version.attr,
	&dev_attr_compression_type.attr,
	&dev_attr_extended_l2.attr,
	&dev_attr_direct_io.attr,
	&dev_attr_dio_align_bytes.attr,
	&dev_attr_l2_cache_bytes.attr,
	&dev_attr_l2_hits.attr,
	&dev_attr_l2_misses.attr,
	&dev_attr_l2_evictions.attr,
	&dev_attr_layers.attr,
	&dev_attr_snapshot.attr,
	&dev_attr_map_cache_bytes.attr,
	&dev_attr_map_cache_hits.attr,
	&dev_attr_map_cache_misses.attr,
	&dev_attr_zcache_hits.attr,
	&dev_attr_zcache_misses.attr,
	&dev_attr_data_reads.attr,
	&dev_attr_compressed_reads.attr,
	&dev_attr_io_errors.attr,
	&dev_attr_corrupt_errors.attr,
	&dev_attr_writable.attr,
	&dev_attr_write_error.attr,
	&dev_attr_data_writes.attr,
	&dev_attr_rc_cache_bytes.attr,
	&dev_attr_rc_cache_hits.attr,
	&dev_attr_rc_cache_misses.attr,
	&dev_attr_rc_cache_evictions.attr,
	&dev_attr_alloc_clusters.attr,
	&dev_attr_freed_clusters.attr,
	&dev_attr_cow_bytes.attr,
	&dev_attr_l2_tables_allocated.attr,
	&dev_attr_meta_flushes.attr,
	&dev_attr_overlaps.attr,
	&dev_attr_cache_charged_bytes.attr,
	&dev_attr_cache_shrunk.attr,
	&dev_attr_cache_released.attr,
	NULL,
};

static const struct attribute_group qcow2blk_attr_group = {
	.name	= "qcow2",
	.attrs	= qcow2blk_attrs,
};

const struct attribute_group *qcow2blk_attr_groups[] = {
	&qcow2blk_attr_group,
	NULL,
};

// SPDX-License-Identifier: GPL-2.0
/*
 * Cache memory of all devices: one module-wide budget, and a shrinker that
 * gives clean cached slices back under memory pressure.
 *
 * Budget: the caches of a device (the L2 cache of every layer, the
 * refcount cache, the chain mapping cache) are charged at their capacity
 * against cache_budget_mb (module parameter, default 1/16 of RAM). An
 * attach whose caches do not fit in what other devices left has its L2
 * and refcount caches made smaller, in proportion, to half of what is
 * left (so later attaches find room too) or their minimum (sysfs
 * cache_shrunk says so); if even the minimum does not fit, the attach is
 * refused with a message naming the parameter. Resizing a cache through
 * SET is refused when it would exceed the budget. Charges change only
 * under qcow2blk_ctl_mutex.
 *
 * Shrinker: counts and frees clean L2 and refcount slices of every device
 * (qcow2_image_shrink()): dirty slices and as many clean ones as there are
 * dirty ones stay, so no write-back is ever needed and reads and writes
 * carry on. It only tries the engine's locks. The slot buffers are
 * allocated with __GFP_ACCOUNT, charged to the attaching task's memory
 * cgroup. Given back slices show in sysfs cache_released; a later miss
 * allocates them again while memory allows.
 *
 * Lock: qcow2blk_shrink_lock protects qcow2blk_shrink_devs (devices whose
 * images may be shrunk). Attach and detach take it (inside
 * qcow2blk_ctl_mutex, allocating nothing while they hold it); the
 * shrinker only tries it, then tries each image's l2c_lock and wlock.
 */
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/math64.h>
#include <linux/shrinker.h>

#include "qcow2blk_priv.h"

static unsigned int cache_budget_mb;
module_param(cache_budget_mb, uint, 0644);
MODULE_PARM_DESC(cache_budget_mb,
		 "MiB of cache memory for all devices together (default 1/16 of RAM); applies to later attaches and resizes");

/* Bytes charged by all devices; qcow2blk_ctl_mutex. */
static u64 qcow2blk_cache_used;

static int qcow2blk_cache_used_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%llu\n", READ_ONCE(qcow2blk_cache_used) >> 10);
}

static const struct kernel_param_ops qcow2blk_cache_used_ops = {
	.get = qcow2blk_cache_used_get,
};

module_param_cb(cache_used_kb, &qcow2blk_cache_used_ops, NULL, 0444);
MODULE_PARM_DESC(cache_used_kb, "KiB of the cache budget charged by attached devices");

static LIST_HEAD(qcow2blk_shrink_devs);
static DEFINE_MUTEX(qcow2blk_shrink_lock);
static struct shrinker *qcow2blk_shrinker;

static u64 qcow2blk_budget_bytes(void)
{
	return (u64)READ_ONCE(cache_budget_mb) << 20;
}

/* What @dev's caches take at their capacity. */
static u64 qcow2blk_dev_cache_bytes(struct qcow2blk_dev *dev)
{
	struct qcow2_chain *c = &dev->chain;
	u64 n = (u64)c->mc.nr_slots * c->mc.slot_bytes;
	u32 i;

	for (i = 0; i < c->nr_layers; i++)
		n += qcow2_l2c_bytes(&c->layers[i].img);
	if (dev->writable)
		n += qcow2_rc_bytes(qcow2blk_top(dev));
	return n;
}

/* Make @dev's L2 and refcount caches fit in @avail bytes, if they can. */
static int qcow2blk_budget_shrink(struct qcow2blk_dev *dev, u64 avail)
{
	struct qcow2_chain *c = &dev->chain;
	u64 need = qcow2blk_dev_cache_bytes(dev), l2 = 0, fixed;
	unsigned int state;
	u32 i;
	int ret = 0;

	for (i = 0; i < c->nr_layers; i++)
		l2 += qcow2_l2c_bytes(&c->layers[i].img);
	state = qcow2blk_writer_enter();
	if (dev->writable) {
		/* The refcount cache to its minimum first, if it must. */
		fixed = need - l2;
		if (fixed >= avail || l2 > avail - fixed)
			ret = qcow2_rc_resize(qcow2blk_top(dev), 0);
	}
	fixed = qcow2blk_dev_cache_bytes(dev) - l2;
	for (i = 0; !ret && i < c->nr_layers; i++) {
		struct qcow2_image *img = &c->layers[i].img;
		u64 want = avail > fixed ?
			   mul_u64_u64_div_u64(qcow2_l2c_bytes(img),
					       avail - fixed, l2) : 0;

		if (want < qcow2_l2c_bytes(img))
			ret = qcow2_l2c_resize(img, want);
	}
	qcow2blk_writer_exit(state);
	return ret;
}

/**
 * qcow2blk_budget_charge() - fit a new device's caches in the budget
 * @dev: opened, not yet visible
 * @err: reason on refusal
 *
 * Context: qcow2blk_ctl_mutex held.
 * Return: 0 (charged) or -ENOMEM.
 */
int qcow2blk_budget_charge(struct qcow2blk_dev *dev, struct qcow2_err *err)
{
	u64 budget = qcow2blk_budget_bytes(), avail, need;
	int ret;

	lockdep_assert_held(&qcow2blk_ctl_mutex);
	avail = budget > qcow2blk_cache_used ? budget - qcow2blk_cache_used : 0;
	need = qcow2blk_dev_cache_bytes(dev);
	if (need > avail) {
		/* Half of what is left, so later devices find room too. */
		ret = qcow2blk_budget_shrink(dev, avail / 2);
		need = qcow2blk_dev_cache_bytes(dev);
		if (ret || need > avail) {
			snprintf(err->msg, sizeof(err->msg),
				 "cache memory budget exhausted: %llu KiB needed, %llu of %llu KiB left (qcow2blk.cache_budget_mb)",
				 need >> 10, avail >> 10, budget >> 10);
			return -ENOMEM;
		}
		dev->cache_shrunk = true;
		pr_info("qcow2blk: caches made smaller to fit the budget: %llu KiB\n",
			need >> 10);
	}
	dev->cache_charge = need;
	WRITE_ONCE(qcow2blk_cache_used, qcow2blk_cache_used + need);
	mutex_lock(&qcow2blk_shrink_lock);
	list_add_tail(&dev->shrink_node, &qcow2blk_shrink_devs);
	mutex_unlock(&qcow2blk_shrink_lock);
	return 0;
}

/**
 * qcow2blk_budget_uncharge() - a device's caches are going away
 * @dev: charged by qcow2blk_budget_charge()
 *
 * After this the shrinker no longer touches @dev's images.
 *
 * Context: qcow2blk_ctl_mutex held.
 */
void qcow2blk_budget_uncharge(struct qcow2blk_dev *dev)
{
	lockdep_assert_held(&qcow2blk_ctl_mutex);
	if (!dev->cache_charge)
		return;
	mutex_lock(&qcow2blk_shrink_lock);
	list_del_init(&dev->shrink_node);
	mutex_unlock(&qcow2blk_shrink_lock);
	WRITE_ONCE(qcow2blk_cache_used, qcow2blk_cache_used - dev->cache_charge);
	dev->cache_charge = 0;
}

/**
 * qcow2blk_budget_reserve() - room for a cache of @dev to grow by @more
 * @dev: attached device
 * @more: bytes the resize may add (0 when it shrinks)
 *
 * Charged at once, so that resizes of other devices meanwhile see it;
 * qcow2blk_budget_recharge() settles the charge after the resize.
 *
 * Context: qcow2blk_ctl_mutex held.
 * Return: 0 or -ENOMEM (nothing charged).
 */
int qcow2blk_budget_reserve(struct qcow2blk_dev *dev, u64 more)
{
	lockdep_assert_held(&qcow2blk_ctl_mutex);
	if (qcow2blk_cache_used + more > qcow2blk_budget_bytes())
		return -ENOMEM;
	dev->cache_charge += more;
	WRITE_ONCE(qcow2blk_cache_used, qcow2blk_cache_used + more);
	return 0;
}

/**
 * qcow2blk_budget_recharge() - charge @dev's caches as they are now
 * @dev: attached device, after a resize
 *
 * Context: qcow2blk_ctl_mutex held.
 */
void qcow2blk_budget_recharge(struct qcow2blk_dev *dev)
{
	u64 now = qcow2blk_dev_cache_bytes(dev);

	lockdep_assert_held(&qcow2blk_ctl_mutex);
	WRITE_ONCE(qcow2blk_cache_used,
		   qcow2blk_cache_used - dev->cache_charge + now);
	dev->cache_charge = now;
}

/* Slices given back by @dev under memory pressure, for sysfs. */
u64 qcow2blk_dev_released(struct qcow2blk_dev *dev)
{
	u64 n = 0;
	u32 i;

	for (i = 0; i < dev->chain.nr_layers; i++)
		n += qcow2_image_released(&dev->chain.layers[i].img);
	return n;
}

static unsigned long qcow2blk_shrink_count(struct shrinker *s,
					   struct shrink_control *sc)
{
	struct qcow2blk_dev *dev;
	unsigned long n = 0;
	u32 i;

	if (!mutex_trylock(&qcow2blk_shrink_lock))
		return 0;
	list_for_each_entry(dev, &qcow2blk_shrink_devs, shrink_node)
		for (i = 0; i < dev->chain.nr_layers; i++)
			n += qcow2_image_shrinkable(&dev->chain.layers[i].img);
	mutex_unlock(&qcow2blk_shrink_lock);
	return n ? n : SHRINK_EMPTY;
}

static unsigned long qcow2blk_shrink_scan(struct shrinker *s,
					  struct shrink_control *sc)
{
	unsigned long freed = 0;
	struct qcow2blk_dev *dev;
	u32 i;

	if (!mutex_trylock(&qcow2blk_shrink_lock))
		return SHRINK_STOP;
	list_for_each_entry(dev, &qcow2blk_shrink_devs, shrink_node) {
		for (i = 0; i < dev->chain.nr_layers; i++) {
			if (freed >= sc->nr_to_scan)
				break;
			freed += qcow2_image_shrink(&dev->chain.layers[i].img,
						    sc->nr_to_scan - freed);
		}
	}
	mutex_unlock(&qcow2blk_shrink_lock);
	return freed;
}

int qcow2blk_budget_init(void)
{
	/* Shown as set: 1/16 of RAM unless given at load time. */
	if (!cache_budget_mb)
		cache_budget_mb = max_t(u64, (totalram_pages() >> 4) >>
					(20 - PAGE_SHIFT), 16);
	qcow2blk_shrinker = qcow2blk_shrinker_create("qcow2blk",
						     qcow2blk_shrink_count,
						     qcow2blk_shrink_scan);
	return qcow2blk_shrinker ? 0 : -ENOMEM;
}

void qcow2blk_budget_exit(void)
{
	qcow2blk_shrinker_destroy(qcow2blk_shrinker);
}

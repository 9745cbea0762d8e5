/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2blk internals: the device, the per-request state and the interfaces
 * between main.c (lifetime), io.c (request path), compress.c (compressed
 * clusters), netlink.c (control) and sysfs.c (attributes).
 *
 * Every lock of the driver and the engine, outermost first. Sleeping is
 * allowed under all but the spinlocks.
 *
 *   qcow2blk_dev::ctl_lock	control work on one device without the
 *				global mutex: SET, an attach's reply, a
 *				detach's teardown (may do image I/O)
 *   qcow2blk_ctl_mutex		device table, device ctl_state and
 *				references, the cache budget's charges
 *				(budget.c); never held across image I/O
 *   qcow2blk_shrink_lock		devices the shrinker may visit
 *				(budget.c); only tried in reclaim
 *   qcow2blk_dev::lock		open count and removal
 *   qcow2_image::wlock		engine writer context (lib/qcow2.h): writes
 *				that allocate or copy, zeroes, discard, flush,
 *				cache resizing; held across metadata I/O,
 *				dropped by allocating writes for their data
 *				I/O. Never taken by reads or in-place writes.
 *   qcow2blk_dev::wbvec_lock	the spare bio_vec array (data writes that
 *				could not allocate their own)
 *   qcow2_chain::mc_lock	chain mapping cache (engine)
 *   qcow2_image::l2c_lock	L2 cache, L1 table, file size, refcount
 *				table pointer (engine); never held across
 *				I/O: a miss drops it while reading
 *   qcow2blk_zcache::lock	decompressed clusters (spinlock, no I/O)
 *   qcow2blk_epoch::lock	epoch switch (spinlock, no I/O)
 *   per-CPU workspace mutex	decompression workspace (no other lock
 *				is taken while it is held)
 *
 * Waits outside locks: qcow2blk_drain() (writer context, wlock held) waits
 * for reads and in-place writes of the old epoch; those never take wlock,
 * so it cannot deadlock. A slice miss waits for another caller's load of
 * the same slice, which takes no lock while it reads.
 */
#ifndef QCOW2BLK_PRIV_H
#define QCOW2BLK_PRIV_H

#include <linux/blk-mq.h>
#include <linux/fs.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/percpu_counter.h>
#include <linux/uio.h>
#include <net/genetlink.h>

#include "lib/qcow2.h"
#include "uapi/qcow2blk.h"
#include "compat.h"

#define QCOW2BLK_MAX_DEVICES		(1U << (MINORBITS - QCOW2BLK_PART_SHIFT))
#define QCOW2BLK_QUEUE_DEPTH		128
/* Largest request: 1 MiB, so one request spans few L2 slices. */
#define QCOW2BLK_MAX_HW_SECTORS		2048
/*
 * bio_vecs of one data write to the image: a whole request (at most
 * QCOW2BLK_MAX_HW_SECTORS) plus a 64 KiB cluster of copy-on-write each
 * side fits; larger writes are issued in several pieces.
 */
#define QCOW2BLK_WRITE_BVECS		1024
/* Longest discard or write-zeroes request: 1 GiB, in sectors. */
#define QCOW2BLK_MAX_ZERO_SECTORS	(1U << (30 - SECTOR_SHIFT))
/* Decompressed clusters kept per device: bytes, at least two clusters. */
#define QCOW2BLK_ZCACHE_BYTES		(4U << 20)
#define QCOW2BLK_ZCACHE_MIN_ENTRIES	2

/* A decompressed cluster, keyed by layer and compressed data offset. */
struct qcow2blk_zentry {
	struct list_head lru;		/* in qcow2blk_zcache::lru */
	u64 comp_off;			/* key; ~0 when empty */
	u32 layer;			/* key */
	void *data;			/* that layer's cluster_size bytes */
};

struct qcow2blk_zcache {
	spinlock_t lock;		/* protects lru and every entry */
	struct list_head lru;		/* most recently used first */
	unsigned int nr_entries;	/* capacity, fixed at attach */
	struct qcow2blk_zentry *entries; /* allocated on first use */
	u64 hits;			/* guarded by lock */
	u64 misses;			/* guarded by lock */
};

/* Counters shown in sysfs; each updated without locks. */
struct qcow2blk_stats {
	atomic64_t io_errors;		/* requests failed by image I/O errors */
	atomic64_t corrupt_errors;	/* requests failed by bad metadata */
	atomic64_t data_ios;		/* reads issued to the image file */
	atomic64_t compressed_reads;	/* compressed extents served */
	atomic64_t data_writes;		/* writes issued to the data file */
};

/*
 * One file of a layer as the engine's struct qcow2_io sees it (its priv):
 * the image file or the external data file. Const after attach.
 */
struct qcow2blk_fio {
	struct qcow2blk_layer *layer;	/* owner */
	bool data;			/* the data file, else the image file */
};

/* One layer of a device's chain; all fields const after attach. */
struct qcow2blk_layer {
	struct qcow2blk_dev *dev;	/* owning device */
	u32 index;			/* 0 is the top image */
	struct file *file;		/* image file, reference held */
	struct file *data_file;		/* external data file, or NULL */
	bool direct_io;			/* I/O on file uses IOCB_DIRECT */
	bool data_direct_io;		/* I/O on data_file uses IOCB_DIRECT */
	u32 dio_align;			/* bytes, file's; 0 without direct I/O */
	u32 data_dio_align;		/* bytes, data_file's; likewise */
	struct qcow2blk_fio image_fio;	/* the top's writer: image file */
	struct qcow2blk_fio data_fio;	/* the top's writer: data file */
};

/*
 * Requests in flight that mapped clusters of the top image without wlock:
 * reads, and in-place writes (qcow2_write_map_inplace()). Before freed
 * clusters are reused or punched, the engine's drain callback starts a new
 * epoch and waits until every request of the old one has completed; see
 * io.c.
 */
struct qcow2blk_epoch {
	spinlock_t lock;		/* protects cur; taken by enter only */
	unsigned int cur;		/* inflight[cur & 1] counts new ones */
	atomic_t inflight[2];		/* requests begun in each epoch */
};

/* qcow2blk_dev::wstate bits */
#define QCOW2BLK_WS_FAIL_LOGGED		0	/* wfail reported, disk ro */

struct qcow2blk_dev {
	int index;			/* N of /dev/qcowN; const */
	u64 flags;			/* QCOW2BLK_F_* at attach; const */
	u32 nr_layers;			/* const */
	struct qcow2blk_layer *layers;	/* [0] is the top; const */
	char *snapshot;			/* attached snapshot, or NULL; const */
	bool writable;			/* top image open for writing; const */
	u32 sector_size;		/* logical block size, bytes; const */
	/*
	 * Write path: each data write gathers its bio_vecs in an array of
	 * its own; when that cannot be allocated it takes this spare one of
	 * QCOW2BLK_WRITE_BVECS entries, guarded by wbvec_lock, so writes
	 * always make progress. NULL when read-only.
	 */
	struct bio_vec *wbvec;
	struct mutex wbvec_lock;	/* protects wbvec's contents */
	unsigned long wstate;		/* QCOW2BLK_WS_* bits, atomic ops */
	struct qcow2blk_epoch epoch;	/* writable devices only */
	struct gendisk *disk;		/* const after attach */
	struct blk_mq_tag_set tag_set;
	struct workqueue_struct *wq;	/* request workers */

	/*
	 * Engine state: chain.mc_lock protects the mapping cache, each
	 * layer's img.l2c_lock its L2 cache.
	 */
	struct qcow2_chain chain;

	struct qcow2blk_zcache zc;
	struct qcow2blk_stats stats;

	struct mutex lock;		/* protects open_count, removing */
	unsigned int open_count;	/* guarded by lock */
	bool removing;			/* guarded by lock: no new opens */

	/*
	 * Control (main.c): ctl_state and pending change under
	 * qcow2blk_ctl_mutex; ref counts the table's reference and each
	 * control operation's (qcow2blk_dev_get()); ctl_lock serializes the
	 * control work done without the global mutex (SET, the reply of an
	 * attach, the teardown of a detach).
	 */
	enum {
		QCOW2BLK_CTL_ATTACHING,	/* being built: not found by lookups */
		QCOW2BLK_CTL_READY,
		QCOW2BLK_CTL_REMOVING,	/* being torn down */
	} ctl_state;
	const struct qcow2blk_attach *pending;	/* ATTACHING: its request */
	struct kref ref;
	struct mutex ctl_lock;		/* see above: one device's control work */

	/* Cache budget (budget.c): qcow2blk_ctl_mutex, list shrink_lock. */
	u64 cache_charge;		/* bytes charged, 0 if none */
	bool cache_shrunk;		/* made smaller to fit at attach */
	struct list_head shrink_node;	/* on qcow2blk_shrink_devs */
};

/* One read of the image file on behalf of a request. */
struct qcow2blk_aio {
	struct kiocb iocb;
	struct iov_iter iter;		/* the bytes it fills, for short reads */
	size_t len;			/* bytes asked for */
	struct qcow2blk_cmd *cmd;	/* owning request */
	bool pooled;			/* from qcow2blk_aio_pool */
};

/* blk-mq PDU: everything a request needs, allocated with the tag set. */
struct qcow2blk_cmd {
	struct work_struct work;
	struct qcow2blk_dev *dev;
	atomic_t pending;		/* outstanding aio, +1 while issuing */
	blk_status_t status;		/* first error, set with cmpxchg */
	s8 epoch;			/* qcow2blk_epoch slot held, or -1 */
	struct bio_vec *bvec;		/* for multi-bio requests, else NULL */
	struct qcow2blk_aio aio;	/* the first aio of the request */
};

extern struct mutex qcow2blk_ctl_mutex;

/* budget.c */
int qcow2blk_budget_init(void);
void qcow2blk_budget_exit(void);
int qcow2blk_budget_charge(struct qcow2blk_dev *dev, struct qcow2_err *err);
void qcow2blk_budget_uncharge(struct qcow2blk_dev *dev);
int qcow2blk_budget_reserve(struct qcow2blk_dev *dev, u64 more);
void qcow2blk_budget_recharge(struct qcow2blk_dev *dev);
u64 qcow2blk_dev_released(struct qcow2blk_dev *dev);
extern const struct attribute_group *qcow2blk_attr_groups[];

/* main.c */
struct qcow2blk_attach_layer {
	struct file *file;		/* reference owned by the caller */
	struct file *data_file;		/* likewise, or NULL */
	u32 format;			/* QCOW2BLK_FMT_* */
};

struct qcow2blk_attach {
	u32 nr_layers;			/* 1..QCOW2BLK_MAX_LAYERS */
	struct qcow2blk_attach_layer *layers;	/* [0] is the top image */
	u64 flags;			/* QCOW2BLK_F_* */
	u64 l2_cache_bytes;		/* 0: engine default */
	u64 map_cache_bytes;		/* 0: engine default */
	u64 rc_cache_bytes;		/* writable only; 0: engine default */
	u32 sector_size;		/* logical block size; 0: pick one */
	const char *snapshot;		/* NULL: active layer */
	int index;			/* -1: any */
};

struct qcow2blk_dev *qcow2blk_dev_attach(const struct qcow2blk_attach *a,
					 struct qcow2_err *err);
int qcow2blk_dev_detach(int index);
struct qcow2blk_dev *qcow2blk_dev_find(int index);
struct qcow2blk_dev *qcow2blk_dev_get(int index);
void qcow2blk_dev_put(struct qcow2blk_dev *dev);
struct qcow2blk_dev *qcow2blk_dev_next(unsigned long *index);
u64 qcow2blk_dev_state(struct qcow2blk_dev *dev);
bool qcow2blk_dev_read_only(struct qcow2blk_dev *dev);

/* The top image, which sets the device's geometry. */
static inline struct qcow2_image *qcow2blk_top(struct qcow2blk_dev *dev)
{
	return &dev->chain.layers[0].img;
}

/* io.c */
extern const struct blk_mq_ops qcow2blk_mq_ops;
int qcow2blk_io_init(void);
void qcow2blk_io_exit(void);
int qcow2blk_meta_pread(void *priv, void *buf, size_t len, u64 off);
u32 qcow2blk_probe_dio_align(struct file *file, int *why);
void qcow2blk_fill_write_io(struct qcow2blk_layer *layer, struct qcow2_io *io,
			    struct qcow2_io *data_io);
void qcow2blk_check_wfail(struct qcow2blk_dev *dev);
void qcow2blk_epoch_init(struct qcow2blk_epoch *e);
unsigned int qcow2blk_writer_enter(void);
void qcow2blk_writer_exit(unsigned int state);

/* compress.c */
int qcow2blk_compress_init(void);
void qcow2blk_compress_exit(void);
void qcow2blk_zcache_init(struct qcow2blk_dev *dev);
void qcow2blk_zcache_free(struct qcow2blk_dev *dev);
int qcow2blk_read_compressed(struct qcow2blk_dev *dev, u32 layer,
			     const struct qcow2_extent *ext,
			     struct iov_iter *iter);

/* netlink.c */
int qcow2blk_nl_init(void);
void qcow2blk_nl_exit(void);
void qcow2blk_nl_event(u8 cmd, struct qcow2blk_dev *dev);

#endif /* QCOW2BLK_PRIV_H */

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2 format engine: on-disk layout, limits, header validation, table
 * entry decoding, guest-to-host mapping and the L2 table cache. Portable C,
 * compiled into qcow2blk.ko and into userspace (tests, fuzzers, qcow2ctl).
 *
 * The engine does no I/O of its own: it reads image metadata through the
 * struct qcow2_io callbacks of its user, and returns extents describing where
 * guest data lives; the user moves the data.
 *
 * Locking, outermost first (the kernel's full list, with its own locks
 * around these, is at the top of kernel/qcow2blk_priv.h):
 *
 *   qcow2_image::wlock	writer context: every change of a writable
 *			image (writes that allocate, zeroes, discard,
 *			flush, cache resizing). Guards the refcount state
 *			and cache, allocation, pending frees, the write
 *			statistics and the COW buffers; held across
 *			metadata and data I/O. May sleep.
 *   qcow2_chain::mc_lock	the chain mapping cache. Never held across
 *			I/O: a miss drops it while it walks the lower
 *			layers (qcow2_chain.c).
 *   qcow2_image::l2c_lock	the L2 cache, l2c_seq, the L1 table and
 *			file_size, plus (writable) the refcount table
 *			pointer and entries. Never held across I/O: a miss
 *			drops it while the slice is read (qcow2_l2cache.c).
 *			Writers change L1/L2 entries and the refcount table
 *			with wlock and l2c_lock both held; readers and
 *			qcow2_write_map_inplace() take l2c_lock alone.
 *
 * Sleeping is allowed under every engine lock. Callers hold none of them
 * when calling the engine, except where a function says otherwise.
 */
#ifndef QCOW2_H
#define QCOW2_H

#include "qcow2_plat.h"

/* What a qcow2_io callback returned, as 0 or -errno (> 0: short I/O). */
static inline int qcow2_io_ret(int ret)
{
	return ret < 0 ? ret : (ret ? -EIO : 0);
}

/* Big-endian fields at any alignment, as the format stores them. */
static inline u16 qcow2_get_be16(const u8 *p)
{
	__be16 v;

	memcpy(&v, p, sizeof(v));
	return be16_to_cpu(v);
}

static inline u32 qcow2_get_be32(const u8 *p)
{
	__be32 v;

	memcpy(&v, p, sizeof(v));
	return be32_to_cpu(v);
}

static inline u64 qcow2_get_be64(const u8 *p)
{
	__be64 v;

	memcpy(&v, p, sizeof(v));
	return be64_to_cpu(v);
}

static inline void qcow2_put_be32(u8 *p, u32 x)
{
	__be32 v = cpu_to_be32(x);

	memcpy(p, &v, sizeof(v));
}

static inline void qcow2_put_be64(u8 *p, u64 x)
{
	__be64 v = cpu_to_be64(x);

	memcpy(p, &v, sizeof(v));
}

/* ---- On-disk constants (docs/interop/qcow2.rst) ------------------------ */

#define QCOW2_MAGIC			0x514649fbU	/* "QFI\xfb" */
#define QCOW2_V2_HEADER_BYTES		72
#define QCOW2_V3_HEADER_MIN_BYTES	104
#define QCOW2_MIN_CLUSTER_BITS		9
#define QCOW2_MAX_CLUSTER_BITS		21
#define QCOW2_EXTL2_MIN_CLUSTER_BITS	14
#define QCOW2_MAX_CLUSTER_SIZE		BIT(QCOW2_MAX_CLUSTER_BITS)
#define QCOW2_MAX_REFCOUNT_ORDER	6

/* Implementation limits, as QEMU's, against hostile images. */
#define QCOW2_MAX_L1_BYTES		(32U << 20)
#define QCOW2_MAX_REFTABLE_BYTES	(8U << 20)
#define QCOW2_MAX_SNAPSHOTS		65536U
#define QCOW2_MAX_BACKING_NAME		1023U
#define QCOW2_MAX_DATA_FILE_NAME	1023U
#define QCOW2_MAX_FORMAT_NAME		15U
/* Header extension sizes fixed by the spec. */
#define QCOW2_CRYPTO_EXT_BYTES		16U
#define QCOW2_BITMAPS_EXT_MIN_BYTES	24U
/* Persistent bitmaps: QEMU's limits (block/qcow2-bitmap.c). */
#define QCOW2_MAX_BITMAPS		65535U
#define QCOW2_MAX_BITMAP_DIR_BYTES	(64U << 20)
#define QCOW2_BITMAP_MIN_GRAN_BITS	9U
#define QCOW2_BITMAP_MAX_GRAN_BITS	31U
/* Bits of all bitmaps of one image kept in memory while writing. */
#define QCOW2_BITMAP_MAX_BYTES		(64U << 20)
#define QCOW2_FEATURE_ENTRY_BYTES	48U
#define QCOW2_FEATURE_NAME_BYTES	46U
#define QCOW2_FEATURE_TYPE_INCOMPAT	0
/* Host offsets in tables are bits 9-55. */
#define QCOW2_MAX_HOST_OFFSET		BIT_ULL(56)
/* Virtual sizes beyond this overflow byte arithmetic on 64-bit offsets. */
#define QCOW2_MAX_VIRTUAL_SIZE		BIT_ULL(61)

#define QCOW2_INCOMPAT_DIRTY_BITNR	0
#define QCOW2_INCOMPAT_CORRUPT_BITNR	1
#define QCOW2_INCOMPAT_DATA_FILE_BITNR	2
#define QCOW2_INCOMPAT_COMPRESSION_BITNR 3
#define QCOW2_INCOMPAT_EXTL2_BITNR	4
#define QCOW2_INCOMPAT_DIRTY		BIT_ULL(QCOW2_INCOMPAT_DIRTY_BITNR)
#define QCOW2_INCOMPAT_CORRUPT		BIT_ULL(QCOW2_INCOMPAT_CORRUPT_BITNR)
#define QCOW2_INCOMPAT_DATA_FILE	BIT_ULL(QCOW2_INCOMPAT_DATA_FILE_BITNR)
#define QCOW2_INCOMPAT_COMPRESSION	BIT_ULL(QCOW2_INCOMPAT_COMPRESSION_BITNR)
#define QCOW2_INCOMPAT_EXTL2		BIT_ULL(QCOW2_INCOMPAT_EXTL2_BITNR)
#define QCOW2_INCOMPAT_KNOWN		(QCOW2_INCOMPAT_DIRTY |		\
					 QCOW2_INCOMPAT_CORRUPT |	\
					 QCOW2_INCOMPAT_DATA_FILE |	\
					 QCOW2_INCOMPAT_COMPRESSION |	\
					 QCOW2_INCOMPAT_EXTL2)

#define QCOW2_COMPAT_LAZY_REFCOUNTS	BIT_ULL(0)
#define QCOW2_AUTOCLEAR_BITMAPS		BIT_ULL(0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW	BIT_ULL(1)

#define QCOW2_CRYPT_NONE		0
#define QCOW2_CRYPT_AES			1
#define QCOW2_CRYPT_LUKS		2

#define QCOW2_COMPRESSION_DEFLATE	0
#define QCOW2_COMPRESSION_ZSTD		1

#define QCOW2_EXT_END			0x00000000U
#define QCOW2_EXT_BACKING_FORMAT	0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE		0x6803f857U
#define QCOW2_EXT_BITMAPS		0x23852875U
#define QCOW2_EXT_CRYPTO		0x0537be77U
#define QCOW2_EXT_DATA_FILE		0x44415441U

/* L1 and L2 entry bits. */
#define QCOW2_OFLAG_COPIED		BIT_ULL(63)
#define QCOW2_OFLAG_COMPRESSED		BIT_ULL(62)
#define QCOW2_OFLAG_ZERO		BIT_ULL(0)
#define QCOW2_L1E_OFFSET_MASK		GENMASK_ULL(55, 9)
#define QCOW2_L1E_RESERVED_MASK		(GENMASK_ULL(62, 56) | GENMASK_ULL(8, 0))
#define QCOW2_L2E_OFFSET_MASK		GENMASK_ULL(55, 9)
#define QCOW2_L2E_STD_RESERVED_MASK	(GENMASK_ULL(61, 56) | GENMASK_ULL(8, 1))
#define QCOW2_SUBCLUSTERS		32
#define QCOW2_COMPRESSED_SECTOR		512

/* Header as stored, big-endian; v3 fields follow the v2 ones. */
struct qcow2_disk_header {
	__be32 magic;
	__be32 version;
	__be64 backing_file_offset;
	__be32 backing_file_size;
	__be32 cluster_bits;
	__be64 size;
	__be32 crypt_method;
	__be32 l1_size;
	__be64 l1_table_offset;
	__be64 refcount_table_offset;
	__be32 refcount_table_clusters;
	__be32 nb_snapshots;
	__be64 snapshots_offset;
	/* version 3 */
	__be64 incompatible_features;
	__be64 compatible_features;
	__be64 autoclear_features;
	__be32 refcount_order;
	__be32 header_length;
	/* present when header_length > 104 */
	u8 compression_type;
	u8 padding[7];
};

struct qcow2_disk_ext_hdr {
	__be32 type;
	__be32 len;
};

/* ---- Errors --------------------------------------------------------- */

/*
 * Human-readable reason for a refusal, filled by the engine, shown by
 * qcow2ctl and in the kernel's extended ack. Always NUL-terminated.
 */
#define QCOW2_ERR_MSG_BYTES		160

struct qcow2_err {
	char msg[QCOW2_ERR_MSG_BYTES];
};

/* Fill @err (may be NULL) with a printf-style reason; truncates safely. */
#define qcow2_err_set(err, fmt, ...) do {				\
	struct qcow2_err *__qe = (err);					\
									\
	if (__qe)							\
		snprintf(__qe->msg, sizeof(__qe->msg), fmt,		\
			 ##__VA_ARGS__);				\
} while (0)

/* ---- Decoded header ---------------------------------------------------- */

/*
 * Printable prefix of a name from the header cluster, for messages only:
 * NUL-terminated, non-printable bytes replaced by '?', truncated.
 */
#define QCOW2_NAME_HINT_BYTES		64

/* A string that lives in the header cluster: byte range, not terminated. */
struct qcow2_name_ref {
	u32 off;			/* bytes from start of file; 0 if absent */
	u32 len;			/* bytes */
};

struct qcow2_header {
	u32 version;			/* 2 or 3 */
	u32 cluster_bits;		/* 9..21 */
	u32 cluster_size;		/* bytes */
	u64 size;			/* virtual size, bytes */
	u32 crypt_method;		/* QCOW2_CRYPT_* */
	u32 l1_size;			/* entries */
	u64 l1_table_offset;		/* bytes, cluster aligned */
	u64 refcount_table_offset;	/* bytes, cluster aligned */
	u32 refcount_table_clusters;	/* clusters */
	u32 nb_snapshots;
	u64 snapshots_offset;		/* bytes, cluster aligned */
	u64 incompatible_features;	/* 0 for v2 */
	u64 compatible_features;	/* 0 for v2 */
	u64 autoclear_features;		/* 0 for v2 */
	u32 refcount_order;		/* 4 for v2 */
	u32 header_length;		/* bytes; 72 for v2 */
	u8 compression_type;		/* QCOW2_COMPRESSION_* */

	/* derived */
	bool extended_l2;		/* 128-bit L2 entries, subclusters */
	u32 l2_entry_bytes;		/* 8 or 16 */
	u32 l2_bits;			/* log2(entries per L2 table) */
	u32 subcluster_bits;		/* log2(subcluster size) */
	u32 l1_needed;			/* L1 entries that cover size */

	/* header extensions and names, located inside the header cluster */
	struct qcow2_name_ref backing_file;
	struct qcow2_name_ref backing_format;
	struct qcow2_name_ref data_file;
	bool has_crypto_ext;
	bool has_bitmaps_ext;
	u32 nb_bitmaps;			/* bitmaps extension */
	u64 bitmap_dir_size;		/* bytes */
	u64 bitmap_dir_offset;		/* bytes, cluster aligned */
	char backing_file_hint[QCOW2_NAME_HINT_BYTES];
	char data_file_hint[QCOW2_NAME_HINT_BYTES];
};

/* What the caller is prepared to serve; refusals name the first missing. */
#define QCOW2_OPEN_WRITABLE		BIT_ULL(0)
#define QCOW2_OPEN_ALLOW_BACKING	BIT_ULL(1)
#define QCOW2_OPEN_ALLOW_DATA_FILE	BIT_ULL(2)

/**
 * qcow2_header_decode() - decode and validate an image header
 * @buf: the first bytes of the image file
 * @buf_len: bytes in @buf: min(file size, QCOW2_MAX_CLUSTER_SIZE) is enough
 * @file_size: size of the image file in bytes
 * @h: decoded header on success
 * @err: reason on failure
 *
 * Checks everything that can be checked without reading more of the file:
 * magic, version, field ranges and alignment, tables inside the file, header
 * extensions, feature bits known to this engine.
 *
 * Return: 0, -EINVAL (not qcow2, or a field the spec or a QCOW2_MAX_* limit
 * forbids, including malformed header extensions), -EUCLEAN (a table that
 * starts outside the file), -EOPNOTSUPP (version other than 2 and 3, unknown
 * incompatible features or an unknown compression type).
 */
int qcow2_header_decode(const void *buf, size_t buf_len, u64 file_size,
			struct qcow2_header *h, struct qcow2_err *err);

/**
 * qcow2_header_check_supported() - refuse what the caller cannot serve
 * @h: a header accepted by qcow2_header_decode()
 * @open_flags: QCOW2_OPEN_* the caller supports
 * @err: reason on failure, naming the feature
 *
 * Return: 0 or -EOPNOTSUPP (encryption, backing file, data file, corrupt
 * or dirty image opened writable ...).
 */
int qcow2_header_check_supported(const struct qcow2_header *h, u64 open_flags,
				 struct qcow2_err *err);

/* ---- Entry decoding --------------------------------------------------- */

enum qcow2_sc_type {
	QCOW2_SC_NORMAL,		/* data at host_off */
	QCOW2_SC_COMPRESSED,		/* whole cluster, compressed */
	QCOW2_SC_ZERO_PLAIN,		/* reads zero, no host cluster */
	QCOW2_SC_ZERO_ALLOC,		/* reads zero, host cluster kept */
	QCOW2_SC_UNALLOC_PLAIN,		/* backing or zero, no host cluster */
	QCOW2_SC_UNALLOC_ALLOC,		/* backing or zero, host cluster kept */
};

struct qcow2_l2_desc {
	enum qcow2_sc_type type;
	u64 host_off;		/* NORMAL/ZERO_ALLOC: host offset of cluster */
	u64 comp_off;		/* COMPRESSED: byte offset of data */
	u32 comp_bytes;		/* COMPRESSED: bytes to read from comp_off */
};

/**
 * qcow2_l1_entry_decode() - check an L1 entry
 * @h: header
 * @entry: host-endian L1 entry
 * @l2_off: host offset of the L2 table, 0 if unallocated
 *
 * Return: 0 or -EUCLEAN (reserved bits set, misaligned offset).
 */
int qcow2_l1_entry_decode(const struct qcow2_header *h, u64 entry,
			  u64 *l2_off);

/**
 * qcow2_l2_entry_decode() - classify one (sub)cluster
 * @h: header
 * @entry: host-endian first word of the L2 entry
 * @bitmap: host-endian subcluster bitmap (extended L2 only, else 0)
 * @sc: subcluster index 0..31 (extended L2 only, else 0)
 * @d: result
 *
 * Return: 0 or -EUCLEAN (reserved bits, misaligned offset, allocation and
 * zero bits both set, bitmap on a compressed cluster ...).
 */
int qcow2_l2_entry_decode(const struct qcow2_header *h, u64 entry, u64 bitmap,
			  unsigned int sc, struct qcow2_l2_desc *d);

/* ---- Metadata I/O --------------------------------------------------- */

struct qcow2_io {
	/*
	 * Read @len bytes at @off into @buf (from qcow2_alloc_io() when @len
	 * is at most a page). Bytes beyond the end of file read as zero.
	 * Returns 0 or -errno. May sleep.
	 */
	int (*pread)(void *priv, void *buf, size_t len, u64 off);
	/*
	 * Writable images only (NULL otherwise). All may sleep and return 0
	 * or -errno.
	 *
	 * pwrite: write @len bytes from @buf at @off; @off and @len are
	 * multiples of 512 and @buf comes from qcow2_alloc_io() or is an
	 * engine table (L1, refcount table) allocated with qcow2_alloc().
	 * Writing past the end of file extends it. A short write is an error.
	 *
	 * flush: make every write that completed before the call durable
	 * (fdatasync).
	 *
	 * punch: deallocate [@off, @off + @len) so it reads as zero and the
	 * host gets the space back; -EOPNOTSUPP is not an error (the engine
	 * ignores it). May be NULL.
	 */
	int (*pwrite)(void *priv, const void *buf, size_t len, u64 off);
	int (*flush)(void *priv);
	int (*punch)(void *priv, u64 off, u64 len);
	/*
	 * Writable images, optional: wait until every guest read and every
	 * in-place write (qcow2_write_map_inplace()) that began before the
	 * call has completed. Called in writer context before freed clusters
	 * get their refcounts dropped or are punched, so no request still in
	 * flight on a cluster sees it reused. It must not wait for anything
	 * that needs wlock.
	 */
	void (*drain)(void *priv);
	void *priv;
};

/* ---- Slot cache (qcow2_cache.c) and the L2 cache policy ---------------- */

/*
 * A fixed number of equal-sized buffers keyed by a u64 (a multiple of 512),
 * least recently used evicted; no locking of its own. See qcow2_cache.c.
 */
#define QCOW2_CACHE_MIN_SLOTS		2
#define QCOW2_CACHE_MAX_SLOT_BYTES	4096U
/* Hard cap on any cache, so a tunable cannot exhaust memory. */
#define QCOW2_CACHE_MAX_BYTES		(1024U << 20)

struct qcow2_cache_slot;

/* A dirty slot and its key, for sorting at write-back. */
struct qcow2_cache_dirty {
	u64 key;
	s32 slot;
};

struct qcow2_cache_stats {
	u64 hits;		/* lookups served from memory */
	u64 misses;		/* lookups that found nothing */
	u64 evictions;		/* slots reused for another key */
	u64 released;		/* clean slots whose memory was returned */
};

struct qcow2_cache {
	u32 slot_bytes;			/* bytes per slot */
	u32 nr_slots;			/* capacity */
	u32 nr_used;			/* slots holding a key */
	u32 nr_dirty;			/* slots marked dirty */
	u32 nr_loading;			/* slots being filled, lock dropped */
	struct qcow2_cache_dirty *dirty; /* nr_dirty entries, any order */
	u32 nr_buckets;			/* hash buckets, power of two */
	struct qcow2_cache_slot *slots;	/* nr_slots entries */
	s32 *buckets;			/* index of first slot, -1 if none */
	s32 lru_head;			/* most recently used, -1 if empty */
	s32 lru_tail;			/* least recently used */
	s32 free_head;			/* first slot holding nothing */
	/*
	 * Slots whose buffer was given back under memory pressure
	 * (qcow2_cache_shrink()), linked through lru_next; a later reserve
	 * gives one a buffer again when memory allows.
	 */
	s32 bare_head;
	u32 nr_bare;
	struct qcow2_cache_stats stats;
};

/*
 * The L2 cache holds slices of L2 tables, min(cluster size, 4 KiB) bytes,
 * keyed by host offset; at least two slices.
 */
#define QCOW2_L2C_MIN_SLICES		QCOW2_CACHE_MIN_SLOTS
#define QCOW2_L2C_MAX_SLICE_BYTES	QCOW2_CACHE_MAX_SLOT_BYTES
#define QCOW2_L2C_MAX_SLICE_BITS	12U
#define QCOW2_L2C_DEFAULT_MAX_BYTES	(8U << 20)
#define QCOW2_L2C_MAX_BYTES		QCOW2_CACHE_MAX_BYTES

/* ---- Image and mapping ---------------------------------------------- */

#define QCOW2_ZERO_BUF_BYTES		4096U

/* Refcount block cache: slices of min(cluster, 4 KiB), as the L2 cache. */
#define QCOW2_RC_DEFAULT_BYTES		(256U << 10)
#define QCOW2_RC_MAX_BYTES		QCOW2_CACHE_MAX_BYTES

struct qcow2_open_opts {
	u64 flags;			/* QCOW2_OPEN_* */
	u64 l2_cache_bytes;		/* 0: default (cover disk, capped) */
	u64 rc_cache_bytes;		/* writable: 0 is QCOW2_RC_DEFAULT_BYTES */
	u64 map_cache_bytes;		/* chains: 0 is QCOW2_MC_DEFAULT_BYTES */
	const char *snapshot;		/* ID or name; NULL: active layer */
	/*
	 * Writable: the image file cannot grow past this many bytes (it is a
	 * block device); allocations beyond fail with -ENOSPC. 0: no limit.
	 */
	u64 max_file_size;
	/*
	 * Writable images with an external data file: its writer (flush and
	 * punch are used; data itself is written by the caller). NULL: the
	 * data lives in the image file.
	 */
	const struct qcow2_io *data_io;
};

/* Counters of the write path, since open. */
struct qcow2_write_stats {
	u64 alloc_clusters;		/* host clusters allocated */
	u64 freed_clusters;		/* host clusters whose refcount hit 0 */
	u64 cow_bytes;			/* old bytes merged into new clusters */
	u64 l2_tables_allocated;	/* new or copied L2 tables */
	u64 meta_flushes;		/* ordered metadata write-backs */
	u64 overlaps;			/* writes refused by the overlap check */
};

/*
 * An allocating write whose data is being written with wlock dropped: guest
 * clusters [cl, end) are its own until it has updated their L2 entries.
 * Lives on the writer's stack, in qcow2_image::inflight (wlock).
 */
struct qcow2_inflight {
	u64 cl;				/* first guest cluster */
	u64 end;			/* guest cluster after the last */
	struct qcow2_inflight *next;
};

/* A host cluster range whose references are gone but not yet durable. */
struct qcow2_pending_free {
	u64 off;			/* bytes, in the image file */
	u64 len;			/* bytes */
	bool data_file;			/* in the external data file: no refcount */
};

/* An enabled persistent dirty bitmap of a writable image (qcow2_bitmap.c). */
struct qcow2_bitmap {
	u64 table_off;			/* bitmap table, cluster aligned */
	u32 table_size;			/* entries kept: clusters of bits */
	u32 gran_bits;			/* log2(guest bytes per bit) */
	u32 dir_pos;			/* its entry's offset in bm_dir */
	u64 *table;			/* host-endian table entries */
	struct qcow2_atomic64 *bits;		/* table_size clusters of bits */
	struct qcow2_atomic64 *dirty;		/* one bit per table entry: changed */
};

struct qcow2_image {
	struct qcow2_header h;
	struct qcow2_io io;
	u64 file_size;			/* bytes, image file */
	__be64 *l1;			/* active L1 table, h.l1_size entries */
	struct qcow2_mutex l2c_lock;	/* protects l1, l2c, file_size */
	struct qcow2_cache l2c;	/* guarded by l2c_lock */
	struct qcow2_waitq l2c_wq;	/* waiters for a slice being loaded */
	u32 l2c_seq;			/* loads finished; l2c_lock */
	/* An ordered write-back is under way; changed under both locks. */
	bool meta_wb_busy;

	/*
	 * Writing (qcow2_write.c, qcow2_refcount.c, qcow2_meta.c); all zero
	 * on a read-only image. wlock serializes every operation that changes
	 * the image and is taken before l2c_lock; it guards everything below
	 * except where noted (rt and rt_entries change under l2c_lock too).
	 * Readers (qcow2_map) and qcow2_write_map_inplace() never take it.
	 */
	bool writable;
	int wfail;			/* 0, or why writing stopped (-errno) */
	/*
	 * The header update a writer owes the image (bitmaps in use, autoclear
	 * bits cleared)
	 * is not written yet: it is made by the first change, so an attach
	 * that is refused or never writes leaves the file as it was. Cleared
	 * under both locks; qcow2_write_map_inplace() reads it under l2c_lock.
	 */
	bool hdr_pending;
	u64 max_file_size;		/* 0, or where the file cannot grow */
	bool has_backing;		/* unallocated clusters expose a layer */
	bool has_data_file;
	struct qcow2_io data_io;	/* data file; == io without one */
	struct qcow2_mutex wlock;
	__be64 *rt;			/* refcount table, rt_entries */
	u32 rt_entries;
	u32 rt_hi;			/* entries from here on are 0 */
	u32 rt_dirty_lo, rt_dirty_hi;	/* dirty entries [lo, hi) */
	bool rt_moving;			/* rt is a new table not yet in use */
	u32 l1_dirty_lo, l1_dirty_hi;	/* dirty L1 entries [lo, hi); l2c_lock */
	struct qcow2_cache rc;		/* refcount block slices */
	u64 free_hint;			/* lowest cluster index maybe free */
	u64 alloc_end;			/* bytes: end of the highest cluster */
	struct qcow2_pending_free *frees;
	u32 nr_frees, max_frees;
	/* Allocations writing data; changed under wlock and l2c_lock. */
	struct qcow2_inflight *inflight;
	u32 inflight_seq;		/* allocations finished */
	u64 cow_inflight_bytes;		/* their copy-on-write buffers */
	struct qcow2_waitq inflight_wq;	/* writers waiting for one */
	u8 *cow_head, *cow_tail;	/* cluster_size each, for COW */
	u8 *zero_buf;			/* QCOW2_ZERO_BUF_BYTES of zeroes */
	u8 *hdr_buf;			/* first 512 bytes of the image file */
	u64 *meta_ranges;		/* snapshot table and L1s: off, len pairs */
	u32 nr_meta_ranges;
	struct qcow2_write_stats ws;
	/*
	 * Persistent dirty bitmaps (qcow2_bitmap.c), set up by
	 * qcow2_write_open(): bm_keep when the image's bitmaps are
	 * consistent and kept so (autoclear bit 0 stays set); bm[] the
	 * enabled ones, whose bits every change sets with no lock
	 * (struct qcow2_atomic64); the rest under wlock.
	 */
	bool bm_keep;
	bool bm_in_use;			/* their in_use flags are on disk */
	u8 *bm_dir;			/* the bitmap directory as read */
	struct qcow2_bitmap *bm;
	u32 nr_bm;
};

enum qcow2_ext_type {
	QCOW2_EXT_DATA,		/* guest bytes at host_off, contiguous */
	QCOW2_EXT_ZERO,		/* reads as zero */
	QCOW2_EXT_UNALLOC,	/* not in this image: backing, else zero */
	QCOW2_EXT_COMPRESSED,	/* within one compressed cluster */
};

struct qcow2_extent {
	enum qcow2_ext_type type;
	u64 len;		/* bytes of guest data described */
	u64 host_off;		/* DATA: host offset of the first byte */
	u64 comp_off;		/* COMPRESSED: host offset of compressed data */
	u32 comp_bytes;		/* COMPRESSED: bytes of compressed data */
	u32 cluster_off;	/* COMPRESSED: offset of guest_off in cluster */
};

/**
 * qcow2_image_open() - validate an image and prepare it for mapping
 * @img: zeroed by the caller
 * @io: metadata reader
 * @file_size: bytes in the image file
 * @opts: flags and cache size; NULL: read-only, default cache
 * @err: reason on failure (may be NULL)
 *
 * Reads the first min(file size, 2 MiB) bytes and the active L1 table,
 * checks them, refuses what @opts->flags cannot serve, and allocates the
 * L2 cache: by default enough slices to cover the whole virtual disk,
 * capped at QCOW2_L2C_DEFAULT_MAX_BYTES.
 *
 * Return: 0 or -errno (see qcow2_header_decode(), plus -ENOMEM, -EIO).
 */
int qcow2_image_open(struct qcow2_image *img, const struct qcow2_io *io,
		     u64 file_size, const struct qcow2_open_opts *opts,
		     struct qcow2_err *err);

/**
 * qcow2_image_close() - release everything qcow2_image_open() set up
 * @img: an image qcow2_image_open() accepted; no qcow2_map() may be running
 */
void qcow2_image_close(struct qcow2_image *img);

/**
 * qcow2_map() - find where guest bytes live
 * @img: open image
 * @guest_off: first guest byte
 * @len: bytes wanted, > 0
 * @ext: the longest extent from @guest_off (at most @len bytes) whose bytes
 *       share one type and, for DATA, are contiguous on the host
 *
 * DATA extents run on across clusters, L2 slices and tables while the host
 * offsets stay contiguous; ZERO and UNALLOC merge with their own kind; a
 * COMPRESSED extent stays inside one cluster. With extended L2 entries the
 * granularity is the subcluster. An extent ends at the virtual size; bytes
 * at or beyond it are one ZERO extent. A corrupt entry after the first byte
 * only ends the extent early: the next call, starting there, reports it.
 * A DATA extent may run past the end of the image file (those bytes read as
 * zero); one whose cluster starts there is corrupt.
 *
 * Context: may sleep; takes l2c_lock (the caller must not hold it) and may
 * read an L2 slice through qcow2_io::pread on a cache miss. Never allocates.
 * Return: 0 (then ext->len > 0), -EINVAL (@len is 0), -EUCLEAN (corrupt
 * table entry, logged rate-limited naming the table, index and offset) or
 * the -errno of the read.
 */
int qcow2_map(struct qcow2_image *img, u64 guest_off, u64 len,
	      struct qcow2_extent *ext);

/**
 * qcow2_l2c_resize() - change the L2 cache capacity
 * @img: open image
 * @bytes: new size; rounded up to slices, at least QCOW2_L2C_MIN_SLICES,
 *         at most QCOW2_L2C_MAX_BYTES
 *
 * The new cache starts empty; the statistics carry over. Takes l2c_lock.
 *
 * Return: 0, -ENOMEM (old cache kept).
 */
int qcow2_l2c_resize(struct qcow2_image *img, u64 bytes);

/** qcow2_l2c_bytes() - current L2 cache capacity in bytes */
u64 qcow2_l2c_bytes(const struct qcow2_image *img);

/** qcow2_l2c_get_stats() - snapshot the L2 cache counters */
void qcow2_l2c_get_stats(struct qcow2_image *img, struct qcow2_cache_stats *st);
u64 qcow2_image_shrinkable(struct qcow2_image *img);
u64 qcow2_image_shrink(struct qcow2_image *img, u64 nr);
u64 qcow2_image_released(struct qcow2_image *img);

/* ---- Writing (qcow2_write.c) ------------------------------------------ */

/*
 * The caller's side of a write: where guest bytes come from and how old
 * guest contents are read for copy-on-write. The engine calls these with
 * wlock held and l2c_lock not held.
 */
struct qcow2_wsrc {
	/*
	 * One write to the data file (the image file, or the external data
	 * file) at @host_off: @head_len bytes from @head, then the request's
	 * guest bytes [@guest_off, @guest_off + @len), then @tail_len bytes
	 * from @tail. A zero-writing source supplies zeroes for the guest
	 * part. @head/@tail come from the engine (qcow2_alloc(), may be
	 * vmalloc memory in the kernel). @host_off and every length are
	 * multiples of 512. Returns 0 or -errno.
	 */
	int (*write)(void *arg, u64 host_off, const u8 *head, u32 head_len,
		     u64 guest_off, u64 len, const u8 *tail, u32 tail_len);
	/*
	 * Read what the guest currently sees at [@guest_off, @guest_off +
	 * @len) into @buf: backing layers, compressed clusters, zeroes past
	 * the virtual size, exactly as a read of the device would. Never
	 * called for ranges the current operation has already written.
	 */
	int (*read)(void *arg, u64 guest_off, u32 len, u8 *buf);
	void *arg;
};

/* qcow2_write_zeroes() flags */
#define QCOW2_ZERO_MAY_UNMAP		BIT(0)	/* host clusters may be freed */

/**
 * qcow2_write() - write guest bytes, allocating and copying as needed
 * @img: image opened with QCOW2_OPEN_WRITABLE
 * @guest_off: first byte, a multiple of 512
 * @len: bytes, a multiple of 512, > 0, within the virtual size
 * @src: the data and the old-contents reader
 *
 * Clusters the image owns (COPIED) are written in place. Others get new
 * host clusters; the guest bytes and the old head and tail of the cluster
 * (from @src->read) go out as one write; with extended L2 entries only the
 * touched subclusters are allocated. The L2 entry changes in the cache after
 * the data write completed; it reaches the disk at the next ordered
 * write-back (qcow2_flush(), or cache pressure), after the data and the
 * refcounts are durable.
 *
 * Context: may sleep; takes wlock then l2c_lock.
 * Return: 0, -EROFS (the image stopped accepting writes: wfail), -ENOSPC or
 * another -errno of a data write (image consistent, nothing referenced),
 * -EUCLEAN (overlap with metadata: the image is marked corrupt and turns
 * read-only), -EIO (metadata I/O failed: image turns read-only).
 */
int qcow2_write(struct qcow2_image *img, u64 guest_off, u64 len,
		const struct qcow2_wsrc *src);

/**
 * qcow2_write_map_inplace() - the host range of a write that needs no
 * metadata change (owned data clusters), or -EAGAIN; see qcow2_write.c
 */
int qcow2_write_map_inplace(struct qcow2_image *img, u64 guest_off, u64 len,
			    u64 *host_off, bool *durable);
void qcow2_write_wait(struct qcow2_image *img, u64 guest_off, u64 len);

/**
 * qcow2_write_zeroes() - make guest bytes read as zero
 * @img: writable image
 * @guest_off: first byte, multiple of 512
 * @len: bytes, multiple of 512
 * @flags: QCOW2_ZERO_*
 * @src: used for the parts that must be written as data (v2 images, parts
 *       of clusters or subclusters); its write supplies zeroes
 *
 * v3 images: whole clusters (subclusters with extended L2) get the zero
 * flag; with QCOW2_ZERO_MAY_UNMAP their host clusters are freed, else an
 * owned host cluster is kept (preallocated zero cluster).
 */
int qcow2_write_zeroes(struct qcow2_image *img, u64 guest_off, u64 len,
		       u32 flags, const struct qcow2_wsrc *src);

/**
 * qcow2_discard() - give whole clusters back to the host, as QEMU does
 * @img: writable image
 * @guest_off: first byte
 * @len: bytes
 *
 * Only whole clusters inside the range are touched; partial clusters are
 * left alone. A discarded cluster reads as zero where that hides nothing
 * (v3 images get the zero flag; without a backing layer an unallocated
 * cluster reads zero anyway); on a v2 image with a backing layer clusters
 * are kept, since dropping them would expose the backing data. Freed host
 * clusters are punched out of the file after the L2 change is durable.
 */
int qcow2_discard(struct qcow2_image *img, u64 guest_off, u64 len);

/**
 * qcow2_flush() - make every completed write durable
 * @img: writable image
 *
 * Ordered write-back: data file flush; dirty refcount blocks, flush;
 * refcount table, flush; L2 slices, flush; L1, flush; then the clusters
 * freed since the last write-back get their refcounts decreased, written
 * and flushed, and are punched.
 *
 * Context: may sleep; takes wlock then l2c_lock.
 * Return: 0, -EROFS, or the -errno of the failing write (image turns
 * read-only).
 */
int qcow2_flush(struct qcow2_image *img);

/**
 * qcow2_rc_resize() - change the refcount cache capacity (writes it back)
 * qcow2_rc_bytes() - capacity in bytes
 * qcow2_rc_get_stats() - counters
 */
int qcow2_rc_resize(struct qcow2_image *img, u64 bytes);
u64 qcow2_rc_bytes(const struct qcow2_image *img);
void qcow2_rc_get_stats(struct qcow2_image *img, struct qcow2_cache_stats *st);
void qcow2_write_get_stats(struct qcow2_image *img,
			   struct qcow2_write_stats *st);

/* ---- Internal snapshots (qcow2_snapshot.c) ---------------------------- */

#define QCOW2_MAX_SNAPSHOT_EXTRA	1024U
#define QCOW2_MAX_SNAPSHOTS_BYTES	(64U << 20)
/* ID and name as printable strings, truncated. */
#define QCOW2_SNAPSHOT_STR_BYTES	128

struct qcow2_snapshot {
	u32 index;			/* position in the table */
	u64 l1_table_offset;		/* bytes */
	u32 l1_size;			/* entries */
	u64 disk_size;			/* virtual size at the snapshot, bytes */
	u64 vm_state_size;		/* bytes */
	u32 date_sec;
	u32 date_nsec;
	u64 vm_clock_nsec;
	u64 entry_end;			/* byte after this table entry */
	char id[QCOW2_SNAPSHOT_STR_BYTES];	/* NUL-terminated, truncated */
	char name[QCOW2_SNAPSHOT_STR_BYTES];	/* NUL-terminated, truncated */
	const u8 *raw_id;		/* whole ID, valid during a walk only */
	u32 id_len;
	const u8 *raw_name;		/* whole name, valid during a walk only */
	u32 name_len;
};

int qcow2_snapshot_walk(struct qcow2_image *img,
			int (*fn)(void *arg, const struct qcow2_snapshot *s),
			void *arg, struct qcow2_err *err);
int qcow2_snapshot_find(struct qcow2_image *img, const char *want,
			struct qcow2_snapshot *s, struct qcow2_err *err);

/* ---- Backing chains (qcow2_chain.c) ------------------------------------- */

#define QCOW2_MAX_CHAIN_LAYERS		1000U
/* The L1 tables of all layers together, bytes. */
#define QCOW2_MAX_CHAIN_L1_BYTES	(128U << 20)
/* Guest bytes per mapping cache slot: log2. */
#define QCOW2_CHAIN_CHUNK_BITS		16
#define QCOW2_MC_DEFAULT_BYTES		(8U << 20)

enum qcow2_layer_format {
	QCOW2_LAYER_QCOW2,
	QCOW2_LAYER_RAW,
};

/* What the caller opened for one layer. */
struct qcow2_layer_desc {
	enum qcow2_layer_format format;
	struct qcow2_io io;		/* QCOW2: metadata reader */
	u64 file_size;			/* bytes */
	bool has_data_file;		/* QCOW2: caller holds its data file */
};

struct qcow2_layer {
	enum qcow2_layer_format format;
	u64 size;			/* guest bytes this layer covers */
	struct qcow2_image img;		/* QCOW2 only */
};

struct qcow2_chain {
	u32 nr_layers;
	struct qcow2_layer *layers;	/* [0] is the top */
	u64 size;			/* virtual size: the top's */
	struct qcow2_mutex mc_lock;	/* protects mc and mc_seq */
	struct qcow2_cache mc;		/* resolved chunks; empty if 1 layer */
	struct qcow2_waitq mc_wq;	/* waiters for a chunk being loaded */
	u32 mc_seq;			/* loads finished; mc_lock */
};

/* An extent and the layer whose file holds it. */
struct qcow2_chain_extent {
	struct qcow2_extent ext;	/* DATA, ZERO or COMPRESSED */
	u32 layer;
};

int qcow2_chain_open(struct qcow2_chain *c, const struct qcow2_layer_desc *d,
		     u32 nr, const struct qcow2_open_opts *opts,
		     struct qcow2_err *err);
void qcow2_chain_close(struct qcow2_chain *c);
int qcow2_chain_map(struct qcow2_chain *c, u64 guest_off, u64 len,
		    struct qcow2_chain_extent *ce);
void qcow2_chain_get_mc_stats(struct qcow2_chain *c,
			      struct qcow2_cache_stats *st);

/* ---- Engine internals: shared between lib/ files, not for callers ------ */

/**
 * qcow2_cache_init() - allocate an empty slot cache
 * @c: cache to set up, contents ignored
 * @slot_bytes: bytes per slot, power of two, 512..QCOW2_CACHE_MAX_SLOT_BYTES
 * @nr_slots: capacity, QCOW2_CACHE_MIN_SLOTS..QCOW2_CACHE_MAX_BYTES/slot_bytes
 *
 * Context: may sleep (allocates every buffer up front, so nothing else
 * allocates).
 * Return: 0, -EINVAL (bad geometry) or -ENOMEM.
 */
int qcow2_cache_init(struct qcow2_cache *c, u32 slot_bytes, u32 nr_slots);

/**
 * qcow2_cache_destroy() - free a cache set up by qcow2_cache_init()
 * @c: cache; zeroed afterwards, so destroying twice is harmless
 *
 * Context: any context that may free memory.
 */
void qcow2_cache_destroy(struct qcow2_cache *c);

int qcow2_l1_check(const struct qcow2_header *h, u64 l1_off, u32 l1_size,
		   u64 size, u64 file_size, struct qcow2_err *err);

u8 *qcow2_cache_lookup(struct qcow2_cache *c, u64 key);
u8 *qcow2_cache_reserve(struct qcow2_cache *c, s32 *slot);
void qcow2_cache_publish(struct qcow2_cache *c, s32 slot, u64 key);
void qcow2_cache_unreserve(struct qcow2_cache *c, s32 slot);
u8 *qcow2_cache_lookup_ex(struct qcow2_cache *c, u64 key, bool *busy);
void qcow2_cache_insert_loading(struct qcow2_cache *c, s32 slot, u64 key);
void qcow2_cache_loaded(struct qcow2_cache *c, s32 slot, bool ok);
u8 *qcow2_cache_lookup_dirty(struct qcow2_cache *c, u64 key);
int qcow2_cache_writeback(struct qcow2_cache *c,
			  int (*fn)(void *arg, u64 key, const u8 *data,
				    u32 bytes),
			  void *arg);
int qcow2_cache_writeback_unlocked(struct qcow2_cache *c,
				   struct qcow2_mutex *lock,
				   int (*fn)(void *arg, u64 key,
					     const u8 *data, u32 bytes),
				   void *arg);
bool qcow2_cache_drop(struct qcow2_cache *c, u64 key);
u32 qcow2_cache_shrinkable(const struct qcow2_cache *c, u32 keep);
u32 qcow2_cache_shrink(struct qcow2_cache *c, u32 nr, u32 keep);

/* Slots that hold a buffer: the capacity left after shrinking. */
static inline u32 qcow2_cache_capacity(const struct qcow2_cache *c)
{
	return c->nr_slots - READ_ONCE(c->nr_bare);
}

bool qcow2_cache_is_dirty(const struct qcow2_cache *c, u64 key);

/**
 * qcow2_l2c_slices_for() - slices a cache of @bytes holds for @img
 * @img: image whose cache geometry applies
 * @bytes: requested bytes, clamped to QCOW2_L2C_MAX_BYTES
 *
 * Context: any.
 * Return: slice count, rounded up, at least QCOW2_L2C_MIN_SLICES.
 */
u64 qcow2_l2c_cover_bytes(const struct qcow2_image *img);

u32 qcow2_l2c_slices_for(const struct qcow2_image *img, u64 bytes);

/* Write path internals (qcow2_refcount.c, qcow2_meta.c), writer context. */
#define QCOW2_MAX_ALLOC_RUN		4096U	/* clusters per allocation */
#define QCOW2_MAX_PENDING_FREES		1024U
/* Copy-on-write buffers of allocations in flight, per image, bytes. */
#define QCOW2_MAX_COW_INFLIGHT		(32U << 20)
/* Tables longer than this are not scanned by the overlap check. */
#define QCOW2_OVERLAP_SCAN_MAX		65536U

/* What a metadata write is about to hold, for the overlap check. */
enum {
	QCOW2_OL_DATA,
	QCOW2_OL_HEADER,
	QCOW2_OL_L1,
	QCOW2_OL_REFTABLE,
	QCOW2_OL_REFBLOCK,
	QCOW2_OL_L2,
	QCOW2_OL_SNAPSHOTS,
};

int qcow2_write_open(struct qcow2_image *img,
		     const struct qcow2_open_opts *opts, struct qcow2_err *err);
void qcow2_write_close(struct qcow2_image *img);
int qcow2_refcount_open(struct qcow2_image *img, u64 rc_bytes,
			struct qcow2_err *err);
void qcow2_refcount_close(struct qcow2_image *img);
int qcow2_rc_get(struct qcow2_image *img, u64 cl, u64 *val);
int qcow2_rc_update(struct qcow2_image *img, u64 off, u64 len, int delta,
		    bool punch);
int qcow2_alloc_clusters(struct qcow2_image *img, u32 n, u64 *off, u32 *got);
int qcow2_zero_clusters_on_disk(struct qcow2_image *img, u64 off, u64 len,
				u32 kind);
int qcow2_free_later(struct qcow2_image *img, u64 off, u64 len,
		     bool data_file);
void qcow2_grow_file(struct qcow2_image *img, u64 end);
int qcow2_apply_frees(struct qcow2_image *img);
int qcow2_rc_writeback(struct qcow2_image *img);
int qcow2_rt_writeback(struct qcow2_image *img);
int qcow2_meta_flush(struct qcow2_image *img);
int qcow2_header_write(struct qcow2_image *img);
int qcow2_write_enter(struct qcow2_image *img);
int qcow2_io_flush(const struct qcow2_io *io);
int qcow2_overlap_check(struct qcow2_image *img, u32 kind, u64 off, u64 len);
bool qcow2_overlap_hit(struct qcow2_image *img, u32 kind, u64 off, u64 len);
void qcow2_write_fail(struct qcow2_image *img, int err, const char *what);
int qcow2_mark_corrupt(struct qcow2_image *img);
int qcow2_bitmaps_open(struct qcow2_image *img, struct qcow2_err *err);
void qcow2_bitmaps_close(struct qcow2_image *img);
int qcow2_bitmaps_enter(struct qcow2_image *img);
void qcow2_bitmaps_mark(struct qcow2_image *img, u64 off, u64 len);
int qcow2_bitmaps_store(struct qcow2_image *img);
int qcow2_write_finish(struct qcow2_image *img);

/**
 * __qcow2_l2c_get() - find or read one L2 slice
 * @img: open image; l2c_lock held
 * @slice_off: host offset of the slice, slice aligned
 * @data: the slice's bytes (big-endian entries), valid until the lock drops
 *
 * Context: l2c_lock held; may sleep in qcow2_io::pread on a miss.
 * Return: 0 or the -errno of the read (the cache is unchanged then).
 */
int __qcow2_l2c_get(struct qcow2_image *img, u64 slice_off, const u8 **data);

#endif /* QCOW2_H */

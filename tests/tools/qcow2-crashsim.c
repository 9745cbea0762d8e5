// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2-crashsim: power cuts simulated while the engine writes.
 *
 *   qcow2-crashsim [--iterations CUTS] [--seed S] [--seq N] [--check-every N]
 *                  [--kind NAME] [--keep DIR] [--lying-disk] [--no-drain]
 *                  [-v]
 *
 * Model. An image file is a "durable" byte array plus the list of writes
 * issued since the last flush, in order; a flush makes them durable. The
 * engine's metadata writes (qcow2_io) and its data writes (qcow2_wsrc, one
 * write each: head, guest bytes, tail) go to the same in-memory file; a
 * punched range is a write of zeroes.
 *
 * A sequence loads a fresh image made by qemu-img (several kinds, below),
 * opens it writable through the engine and runs random writes, zero writes
 * (with and without unmap), discards and flushes, keeping a shadow of the
 * guest: the contents at the last completed qcow2_flush() (what must
 * survive), and for every 512-byte sector the values written since. After
 * every step it takes a power cut: the durable bytes plus a prefix, or a
 * random subset, of the unflushed writes, the last one possibly torn at a
 * 512-byte boundary. Each cut image is checked:
 *   (a) the engine reopens it read-only, and every guest sector holds its
 *       last flushed contents or one of the values written after that
 *       (zero writes: zero; discards: zero or what was there);
 *   (b) refcounts (our own walk of the header, refcount table and blocks,
 *       L1 and L2 tables, snapshot tables): a cluster with fewer references
 *       counted than its refcount is a leak (counted), one with more is
 *       corruption (failure); so is a reference past the end of the file or
 *       a COPIED flag that disagrees with a refcount of 1;
 *   (c) every --check-every'th cut and every failing one is also written to
 *       a file and given to `qemu-img check`: exit 0, or 3 (leaks only).
 *
 * In-place writes in flight: half the writes first ask
 * qcow2_write_map_inplace() for their host range, as the kernel does; if
 * the engine gives one, the write is only recorded, in flight, and lands
 * in the file later (at a random later step, before a check of the live
 * image, when a write or zero write meets its range, or when the engine's
 * drain callback asks for every one), in any order, like the kernel's
 * asynchronous kiocbs. A flush does not wait for them: one still in
 * flight when a flush starts is not required to survive it. A discard may
 * race with one: the discarded range then reads zero whatever lands,
 * and the drain callback is what keeps the freed cluster from being
 * reused under the write. --race runs one scripted instance of that race
 * per image kind; --no-drain leaves the callback out, a self-test: the
 * checks must then catch the write landing on the reused cluster.
 *
 * The run is deterministic for a seed. A failure prints the seed, the
 * sequence, the step and the cut; --seq N --seed S replays that sequence
 * alone, --keep DIR leaves the failing cut images there. --lying-disk
 * turns flushes into no-ops, a self-test: the checks must then fail.
 * Exit status 0, 1 if any cut failed, 2 on bad usage or setup errors.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qimg.h"

#define SECTOR			512U
/* Values a sector may hold since the last flush, beyond its durable one. */
#define MAX_CANDS		12
/* Random operations per sequence. */
#define SEQ_OPS			18
#define MAX_FAIL_REPORTS	20
/* In-place writes in flight at once. */
#define MAX_INFLIGHT		4

/* ---- in-memory files ---------------------------------------------------- */

struct mwrite {
	u64 off;
	u32 len;
	u8 *data;			/* NULL: zeroes (a punch) */
};

struct mfile {
	u8 *cur;			/* every write applied */
	u64 cur_size;
	u8 *dur;			/* the durable contents */
	u64 dur_size;
	u64 cap;			/* bytes allocated for cur, dur and cut */
	struct mwrite *pend;		/* unflushed writes, in order */
	u32 nr_pend, max_pend;
	u64 writes, flushes;
	/* Called after each write and before each flush: cuts mid-call. */
	void (*hook)(void *arg, bool flush);
	void *hook_arg;
	bool lie;			/* flushes do nothing: a self-test */
};

/* A read-only memory file: a layer of a cut image, or the backing file. */
struct mro {
	const u8 *data;
	u64 size;
};

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p) {
		fprintf(stderr, "qcow2-crashsim: out of memory\n");
		exit(2);
	}
	return p;
}

static void mfile_reserve(struct mfile *f, u64 size)
{
	u64 cap = f->cap ? f->cap : 1 << 20;

	if (size <= f->cap)
		return;
	while (cap < size)
		cap *= 2;
	f->cur = xrealloc(f->cur, cap);
	f->dur = xrealloc(f->dur, cap);
	memset(f->cur + f->cap, 0, cap - f->cap);
	memset(f->dur + f->cap, 0, cap - f->cap);
	f->cap = cap;
}

static void mfile_clear_pending(struct mfile *f)
{
	u32 i;

	for (i = 0; i < f->nr_pend; i++)
		free(f->pend[i].data);
	f->nr_pend = 0;
}

static void mfile_load(struct mfile *f, const u8 *data, u64 size)
{
	mfile_clear_pending(f);
	mfile_reserve(f, size);
	memset(f->cur, 0, f->cap);
	memset(f->dur, 0, f->cap);
	memcpy(f->cur, data, size);
	memcpy(f->dur, data, size);
	f->cur_size = size;
	f->dur_size = size;
}

static void mfile_free(struct mfile *f)
{
	mfile_clear_pending(f);
	free(f->pend);
	free(f->cur);
	free(f->dur);
	memset(f, 0, sizeof(*f));
}

/* Record one write: @nr pieces written back to back at @off. */
static void mfile_writev(struct mfile *f, u64 off, const u8 **piece,
			 const u64 *piece_len, int nr)
{
	struct mwrite *w;
	u64 len = 0, at = 0;
	int i;

	for (i = 0; i < nr; i++)
		len += piece_len[i];
	mfile_reserve(f, off + len);
	if (f->nr_pend == f->max_pend) {
		f->max_pend = f->max_pend ? 2 * f->max_pend : 64;
		f->pend = xrealloc(f->pend, f->max_pend * sizeof(*f->pend));
	}
	w = &f->pend[f->nr_pend++];
	w->off = off;
	w->len = len;
	w->data = piece ? xrealloc(NULL, len) : NULL;
	for (i = 0; piece && i < nr; i++) {
		if (piece[i])
			memcpy(w->data + at, piece[i], piece_len[i]);
		else
			memset(w->data + at, 0, piece_len[i]);
		at += piece_len[i];
	}
	if (w->data)
		memcpy(f->cur + off, w->data, len);
	else
		memset(f->cur + off, 0, len);
	if (off + len > f->cur_size)
		f->cur_size = off + len;
	f->writes++;
}

static int mf_pread(void *priv, void *buf, size_t len, u64 off)
{
	struct mfile *f = priv;
	size_t n = 0;

	if (off < f->cur_size)
		n = min_t(u64, len, f->cur_size - off);
	memcpy(buf, f->cur + off, n);
	memset((u8 *)buf + n, 0, len - n);
	return 0;
}

static int mf_pwrite(void *priv, const void *buf, size_t len, u64 off)
{
	struct mfile *f = priv;
	const u8 *p = buf;
	u64 l = len;

	if ((off | len) & (SECTOR - 1))
		return -EINVAL;
	mfile_writev(f, off, &p, &l, 1);
	if (f->hook)
		f->hook(f->hook_arg, false);
	return 0;
}

static int mf_flush(void *priv)
{
	struct mfile *f = priv;

	if (f->hook)
		f->hook(f->hook_arg, true);
	f->flushes++;
	if (f->lie)
		return 0;
	memcpy(f->dur, f->cur, f->cap);
	f->dur_size = f->cur_size;
	mfile_clear_pending(f);
	return 0;
}

static int mf_punch(void *priv, u64 off, u64 len)
{
	struct mfile *f = priv;

	if (off >= f->cur_size)
		return 0;
	len = min_t(u64, len, f->cur_size - off);
	/* KEEP_SIZE: a punch never extends the file. */
	mfile_writev(f, off, NULL, &len, 1);
	return 0;
}

static int mro_pread(void *priv, void *buf, size_t len, u64 off)
{
	const struct mro *m = priv;
	size_t n = 0;

	if (off < m->size)
		n = min_t(u64, len, m->size - off);
	memcpy(buf, m->data + off, n);
	memset((u8 *)buf + n, 0, len - n);
	return 0;
}

/* ---- random numbers (xorshift64*, deterministic per seed) ---------------- */

static u64 rng_state;

static u64 rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static u64 rnd_below(u64 n)
{
	return n ? rnd() % n : 0;
}

static void rng_seed(u64 seed, u64 seq)
{
	rng_state = (seed * 0x9e3779b97f4a7c15ULL) ^ (seq + 1) * 0xbf58476d1ce4e5b9ULL;
	if (!rng_state)
		rng_state = 1;
	rnd();
}

/* ---- image kinds ----------------------------------------------------------- */

struct kind {
	const char *name;
	const char *create_opts;	/* qemu-img create -o */
	u64 vsize;			/* bytes */
	const char *prefill;		/* qemu-io commands, or NULL */
	bool backing;			/* over base.qcow2 */
	u8 *data;			/* the image made by qemu-img */
	u64 size;
	u32 cluster_size;
	bool v2;
};

/*
 * 512-byte clusters rotate through every refcount width; the widest ones
 * start with a refcount table that is almost full, so sequences grow it.
 */
#define KIND(n, o, size, fill, over) \
	{ .name = (n), .create_opts = (o), .vsize = (size), \
	  .prefill = (fill), .backing = (over) }

static struct kind kinds[] = {
	KIND("v3-64k", "cluster_size=65536", 4 << 20, NULL, false),
	KIND("c512-rb1", "cluster_size=512,refcount_bits=1", 1 << 20, NULL,
	     false),
	KIND("c512-rb2", "cluster_size=512,refcount_bits=2", 1 << 20, NULL,
	     false),
	KIND("c512-rb4", "cluster_size=512,refcount_bits=4", 1 << 20, NULL,
	     false),
	KIND("c512-rb8", "cluster_size=512,refcount_bits=8", 1 << 20, NULL,
	     false),
	KIND("c512-rb16", "cluster_size=512,refcount_bits=16", 1 << 20, NULL,
	     false),
	KIND("c512-rb32", "cluster_size=512,refcount_bits=32", 4 << 20,
	     "write -P 0x21 1M 3M", false),
	KIND("c512-rb64", "cluster_size=512,refcount_bits=64", 2 << 20,
	     "write -P 0x22 512k 1400k", false),
	KIND("extl2-16k", "cluster_size=16384,extended_l2=on", 2 << 20, NULL,
	     false),
	KIND("overlay-4k", "cluster_size=4096", 2 << 20, NULL, true),
	KIND("v2-4k", "compat=0.10,cluster_size=4096", 2 << 20,
	     "write -P 0x23 0 256k", false),
	KIND("overlay-v2-64k", "compat=0.10", 2 << 20, NULL, true),
};

static struct mro base;		/* backing file of the overlay kinds */
static char workdir[256];

static int run_cmd(const char *fmt, ...) __printf(1, 2);

static int run_cmd(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static u8 *slurp(const char *path, u64 *size)
{
	FILE *fp = fopen(path, "rb");
	u8 *buf;
	long n;

	if (!fp)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = xrealloc(NULL, n ? n : 1);
	if (fread(buf, 1, n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	*size = n;
	return buf;
}

static int spill(const char *path, const u8 *data, u64 size)
{
	FILE *fp = fopen(path, "wb");
	int ret = 0;

	if (!fp)
		return -errno;
	if (fwrite(data, 1, size, fp) != size)
		ret = -EIO;
	if (fclose(fp))
		ret = -EIO;
	return ret;
}

static int make_kinds(void)
{
	char path[512];
	u32 i;
	u64 sz;

	snprintf(path, sizeof(path), "%s/base.qcow2", workdir);
	if (run_cmd("qemu-img create -q -f qcow2 %s 2M", path) ||
	    run_cmd("qemu-io -c 'write -P 0x42 0 1536k' -c 'write -z 256k 64k' %s >/dev/null",
		    path))
		return -1;
	base.data = slurp(path, &sz);
	base.size = sz;
	if (!base.data)
		return -1;
	for (i = 0; i < ARRAY_SIZE(kinds); i++) {
		struct kind *k = &kinds[i];

		snprintf(path, sizeof(path), "%s/%s.qcow2", workdir, k->name);
		if (run_cmd("qemu-img create -q -f qcow2 -o %s %s %s %llu",
			    k->create_opts,
			    k->backing ? "-b base.qcow2 -F qcow2" : "", path,
			    (unsigned long long)k->vsize))
			return -1;
		if (k->prefill &&
		    run_cmd("qemu-io -c '%s' %s >/dev/null", k->prefill, path))
			return -1;
		k->data = slurp(path, &k->size);
		if (!k->data)
			return -1;
		k->cluster_size = 1U << be32_to_cpu(*(__be32 *)(k->data + 20));
		k->v2 = be32_to_cpu(*(__be32 *)(k->data + 4)) == 2;
	}
	return 0;
}

/* ---- refcount check ------------------------------------------------------ */

struct rc_result {
	u64 leaked;			/* clusters: refcount > references */
	u64 corrupt;			/* clusters: refcount < references ... */
	char why[256];			/* the first corruption */
};

struct rc_walk {
	const u8 *img;
	u64 size;
	struct qcow2_header h;
	u64 nr_clusters;		/* covering the file */
	u32 *refs;
	bool data_file;
	struct rc_result *res;
};

static __printf(2, 3) void rc_corrupt(struct rc_walk *w, const char *fmt,
				      ...)
{
	va_list ap;

	w->res->corrupt++;
	if (w->res->why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(w->res->why, sizeof(w->res->why), fmt, ap);
	va_end(ap);
}

static u64 rd64(const u8 *p)
{
	__be64 b;

	memcpy(&b, p, 8);
	return be64_to_cpu(b);
}

static u32 rd32(const u8 *p)
{
	__be32 b;

	memcpy(&b, p, 4);
	return be32_to_cpu(b);
}

/* Count a reference to the clusters of host bytes [@off, @off + @len). */
static void rc_ref(struct rc_walk *w, u64 off, u64 len, const char *what)
{
	u64 c, first = off >> w->h.cluster_bits;
	u64 last = (off + len - 1) >> w->h.cluster_bits;

	if (!len)
		return;
	for (c = first; c <= last; c++) {
		if (c >= w->nr_clusters) {
			rc_corrupt(w, "%s at %llu: cluster %llu past EOF (%llu bytes)",
				   what, (unsigned long long)off,
				   (unsigned long long)c,
				   (unsigned long long)w->size);
			return;
		}
		w->refs[c]++;
	}
}

static u64 rc_get(struct rc_walk *w, u64 cluster, bool *ok)
{
	u32 bits = 1U << w->h.refcount_order;
	u64 per_block = (u64)w->h.cluster_size * 8 / bits;
	u64 rt_idx = cluster / per_block, idx = cluster % per_block;
	u64 blk, v = 0;
	const u8 *p;
	u32 i;

	*ok = true;
	if (rt_idx >= (u64)w->h.refcount_table_clusters *
		      w->h.cluster_size / 8)
		return 0;
	blk = rd64(w->img + w->h.refcount_table_offset + rt_idx * 8) &
	      QCOW2_L1E_OFFSET_MASK;
	if (!blk)
		return 0;
	if (blk + w->h.cluster_size > w->size) {
		*ok = false;
		return 0;
	}
	p = w->img + blk;
	if (bits < 8)
		return (p[idx * bits / 8] >> (idx * bits % 8)) &
		       ((1U << bits) - 1);
	for (i = 0; i < bits / 8; i++)
		v = (v << 8) | p[idx * (bits / 8) + i];
	return v;
}

/* Walk one L1 table and its L2 tables; @active: also check COPIED. */
static void rc_walk_l1(struct rc_walk *w, u64 l1_off, u32 l1_size,
		       bool active)
{
	u32 esz = w->h.l2_entry_bytes, n = w->h.cluster_size / esz;
	u32 cb = w->h.cluster_bits;
	u64 l1e, l2, e, off, len;
	u32 i, j;
	bool ok;

	if (l1_off + (u64)l1_size * 8 > w->size) {
		rc_corrupt(w, "L1 table at %llu past the end of the file",
			   (unsigned long long)l1_off);
		return;
	}
	rc_ref(w, l1_off, (u64)l1_size * 8, "L1 table");
	for (i = 0; i < l1_size; i++) {
		l1e = rd64(w->img + l1_off + i * 8ULL);
		l2 = l1e & QCOW2_L1E_OFFSET_MASK;
		if (!l2)
			continue;
		if (l2 & (w->h.cluster_size - 1) ||
		    l2 + w->h.cluster_size > w->size) {
			rc_corrupt(w, "L1[%u] = %#llx: bad L2 table offset", i,
				   (unsigned long long)l1e);
			continue;
		}
		rc_ref(w, l2, w->h.cluster_size, "L2 table");
		if (active && ((l1e & QCOW2_OFLAG_COPIED) != 0) !=
		    (rc_get(w, l2 >> w->h.cluster_bits, &ok) == 1))
			rc_corrupt(w, "L1[%u] = %#llx: COPIED flag disagrees with refcount %llu",
				   i, (unsigned long long)l1e,
				   (unsigned long long)rc_get(w, l2 >> w->h.cluster_bits, &ok));
		for (j = 0; j < n; j++) {
			e = rd64(w->img + l2 + (u64)j * esz);
			if (e & QCOW2_OFLAG_COMPRESSED) {
				u32 shift = 62 - (w->h.cluster_bits - 8);

				off = e & ((1ULL << shift) - 1);
				len = ((e >> shift) & ((1ULL << (62 - shift)) - 1)) + 1;
				len = len * 512 - (off & 511);
				rc_ref(w, off, len, "compressed cluster");
				continue;
			}
			off = e & QCOW2_L2E_OFFSET_MASK;
			if (!off)
				continue;
			if (off & (w->h.cluster_size - 1)) {
				rc_corrupt(w, "L2 at %llu [%u] = %#llx: misaligned",
					   (unsigned long long)l2, j,
					   (unsigned long long)e);
				continue;
			}
			if (w->data_file)
				continue;
			rc_ref(w, off, w->h.cluster_size, "data cluster");
			if (active && ((e & QCOW2_OFLAG_COPIED) != 0) !=
			    (rc_get(w, off >> w->h.cluster_bits, &ok) == 1))
				rc_corrupt(w, "L2 at %llu [%u] = %#llx: COPIED but refcount %llu",
					   (unsigned long long)l2, j,
					   (unsigned long long)e,
					   (unsigned long long)rc_get(w, off >> cb, &ok));
		}
	}
}

static void rc_walk_snapshots(struct rc_walk *w)
{
	u64 off = w->h.snapshots_offset, start = off;
	u32 i, extra, id_len, name_len;

	for (i = 0; i < w->h.nb_snapshots; i++) {
		if (off + 40 > w->size) {
			rc_corrupt(w, "snapshot table past the end of the file");
			return;
		}
		rc_walk_l1(w, rd64(w->img + off), rd32(w->img + off + 8),
			   false);
		extra = rd32(w->img + off + 36);
		id_len = (w->img[off + 12] << 8) | w->img[off + 13];
		name_len = (w->img[off + 14] << 8) | w->img[off + 15];
		off += 40 + extra + id_len + name_len;
		off = (off + 7) & ~7ULL;
	}
	if (off > start)
		rc_ref(w, start, off - start, "snapshot table");
}

static void rc_check(const u8 *img, u64 size, struct rc_result *res)
{
	struct rc_walk w = { .img = img, .size = size, .res = res };
	struct qcow2_err err;
	u64 c, rc, rt_entries, blk, i;
	bool ok;

	memset(res, 0, sizeof(*res));
	if (qcow2_header_decode(img, min_t(u64, size, QCOW2_MAX_CLUSTER_SIZE),
				size, &w.h, &err)) {
		rc_corrupt(&w, "header: %s", err.msg);
		return;
	}
	if (w.h.incompatible_features & QCOW2_INCOMPAT_CORRUPT)
		rc_corrupt(&w, "the corrupt bit is set");
	w.data_file = w.h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
	w.nr_clusters = (size + w.h.cluster_size - 1) >> w.h.cluster_bits;
	w.refs = calloc(w.nr_clusters + 1, sizeof(*w.refs));
	if (!w.refs) {
		rc_corrupt(&w, "out of memory");
		return;
	}
	rc_ref(&w, 0, w.h.cluster_size, "header");
	rt_entries = (u64)w.h.refcount_table_clusters * w.h.cluster_size / 8;
	rc_ref(&w, w.h.refcount_table_offset,
	       (u64)w.h.refcount_table_clusters * w.h.cluster_size,
	       "refcount table");
	for (i = 0; i < rt_entries; i++) {
		blk = rd64(img + w.h.refcount_table_offset + i * 8);
		if (!blk)
			continue;
		if (blk & (w.h.cluster_size - 1) || blk & ~QCOW2_L1E_OFFSET_MASK) {
			rc_corrupt(&w, "refcount table[%llu] = %#llx",
				   (unsigned long long)i,
				   (unsigned long long)blk);
			continue;
		}
		rc_ref(&w, blk, w.h.cluster_size, "refcount block");
	}
	rc_walk_l1(&w, w.h.l1_table_offset, w.h.l1_size, true);
	rc_walk_snapshots(&w);
	for (c = 0; c < w.nr_clusters; c++) {
		rc = rc_get(&w, c, &ok);
		if (!ok) {
			rc_corrupt(&w, "refcount block for cluster %llu past the end of the file",
				   (unsigned long long)c);
			continue;
		}
		if (rc < w.refs[c])
			rc_corrupt(&w, "cluster %llu (host %llu): refcount %llu < %u references",
				   (unsigned long long)c,
				   (unsigned long long)c << w.h.cluster_bits,
				   (unsigned long long)rc, w.refs[c]);
		else if (rc > w.refs[c])
			res->leaked++;
	}
	free(w.refs);
}

/* ---- the simulation --------------------------------------------------------- */

struct shadow {
	u64 vsize;
	u64 nr_sectors;
	u8 *dur;			/* guest bytes at the last flush */
	u8 *cur;			/* guest bytes now */
	u8 *nc;				/* per sector: values since the flush */
	u8 *cand;			/* per sector: MAX_CANDS values */
	u8 *any;			/* per sector: too many values, unchecked */
};

/* An in-place write mapped by the engine that has not landed yet. */
struct ifw {
	u64 host;			/* where it lands in the file */
	u64 guest;			/* guest range */
	u64 len;
	u8 fill;			/* its pattern */
	u8 *old;			/* the guest bytes before it */
	bool unmapped;			/* a discard raced with it */
};

struct sim {
	u64 seed;
	u64 seq;
	int step;
	const struct kind *k;
	struct mfile f;
	struct mro base;
	struct qcow2_chain chain;
	struct qcow2_image *img;
	struct qimg_reader rd;
	struct qcow2_io io[2];		/* the image (writable), the base */
	struct shadow sh;
	u8 fill;			/* pattern of the current write */
	u8 *guest;			/* a read of the whole guest */
	u8 *cut;			/* the cut image */
	u64 cut_cap;
	char cutdesc[160];

	bool in_op;			/* an engine call is running */
	struct ifw ifw[MAX_INFLIGHT];	/* in-place writes in flight */
	int nr_ifw;
	bool no_drain;			/* self-test: no drain callback */
	u64 last_off, last_len;		/* the last range written */
	bool race;			/* --race: the scripted race only */
	u64 races;			/* race scripts run */
	u64 max_cuts;			/* stop cutting at this many */

	/* totals */
	u64 cuts, leaky_cuts, qemu_checks, failures, sequences, ops;
	u64 inplace;			/* in-place writes sent in flight */
	u64 raced;			/* of them, met by a discard */
	u64 check_every;
	const char *keep;
	bool verbose;
	bool lie;
};

static __printf(2, 3) void sim_fail(struct sim *s, const char *fmt, ...)
{
	va_list ap;

	s->failures++;
	if (s->failures > MAX_FAIL_REPORTS)
		return;
	printf("FAIL seed=%llu seq=%llu kind=%s step=%d cut=%s: ",
	       (unsigned long long)s->seed, (unsigned long long)s->seq,
	       s->k->name, s->step, s->cutdesc);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n  replay: qcow2-crashsim --seed %llu --seq %llu -v\n",
	       (unsigned long long)s->seed, (unsigned long long)s->seq);
	fflush(stdout);
}

static int src_write(void *arg, u64 host_off, const u8 *head, u32 head_len,
		     u64 guest_off, u64 len, const u8 *tail, u32 tail_len)
{
	struct sim *s = arg;
	const u8 *piece[3] = { head, NULL, tail };
	u64 plen[3] = { head_len, len, tail_len };
	u8 *mid;

	(void)guest_off;
	if ((host_off | head_len | len | tail_len) & (SECTOR - 1))
		return -EINVAL;
	mid = xrealloc(NULL, len ? len : 1);
	memset(mid, s->fill, len);
	piece[1] = mid;
	mfile_writev(&s->f, host_off, piece, plen, 3);
	free(mid);
	return 0;
}

static int src_read(void *arg, u64 guest_off, u32 len, u8 *buf)
{
	struct sim *s = arg;

	return qimg_read(&s->rd, guest_off, len, buf);
}

static void shadow_init(struct shadow *sh, u64 vsize)
{
	sh->vsize = vsize;
	sh->nr_sectors = vsize / SECTOR;
	sh->dur = xrealloc(NULL, vsize);
	sh->cur = xrealloc(NULL, vsize);
	sh->nc = calloc(sh->nr_sectors, 1);
	sh->any = calloc(sh->nr_sectors, 1);
	sh->cand = xrealloc(NULL, sh->nr_sectors * MAX_CANDS);
	if (!sh->nc || !sh->any) {
		fprintf(stderr, "qcow2-crashsim: out of memory\n");
		exit(2);
	}
}

static void shadow_free(struct shadow *sh)
{
	free(sh->dur);
	free(sh->cur);
	free(sh->nc);
	free(sh->any);
	free(sh->cand);
}

static void shadow_set(struct shadow *sh, u64 off, u64 len, u8 v)
{
	u64 s, i;

	memset(sh->cur + off, v, len);
	for (s = off / SECTOR; s < (off + len) / SECTOR; s++) {
		u8 *c = sh->cand + s * MAX_CANDS;

		for (i = 0; i < sh->nc[s]; i++)
			if (c[i] == v)
				break;
		if (i < sh->nc[s])
			continue;
		if (sh->nc[s] == MAX_CANDS)
			sh->any[s] = 1;
		else
			c[sh->nc[s]++] = v;
	}
}

static void shadow_flushed(struct shadow *sh)
{
	memcpy(sh->dur, sh->cur, sh->vsize);
	memset(sh->nc, 0, sh->nr_sectors);
	memset(sh->any, 0, sh->nr_sectors);
}

/* A guest read of the whole disk against @ok(sector); returns bad sector. */
static s64 shadow_check(const struct shadow *sh, const u8 *g, bool live)
{
	u64 s, i, b;

	for (s = 0; s < sh->nr_sectors; s++) {
		const u8 *p = g + s * SECTOR;
		const u8 *c = sh->cand + s * MAX_CANDS;

		if (live) {
			if (memcmp(p, sh->cur + s * SECTOR, SECTOR))
				return s;
			continue;
		}
		if (!memcmp(p, sh->dur + s * SECTOR, SECTOR) || sh->any[s])
			continue;
		for (i = 0; i < sh->nc[s]; i++) {
			for (b = 0; b < SECTOR && p[b] == c[i]; b++)
				;
			if (b == SECTOR)
				break;
		}
		if (i == sh->nc[s])
			return s;
	}
	return -1;
}

static void describe_sector(const struct shadow *sh, u64 s, const u8 *g,
			    char *out, size_t n)
{
	int len, i;

	len = snprintf(out, n,
		       "sector %llu (guest %llu): got %02x..%02x, durable %02x, since flush {",
		       (unsigned long long)s, (unsigned long long)s * SECTOR,
		       g[s * SECTOR], g[s * SECTOR + SECTOR - 1],
		       sh->dur[s * SECTOR]);
	for (i = 0; i < sh->nc[s] && len < (int)n; i++)
		len += snprintf(out + len, n - len, "%s%02x", i ? " " : "",
				sh->cand[s * MAX_CANDS + i]);
	if (len < (int)n)
		snprintf(out + len, n - len, "}");
}

/* Open an image (memory) over the base if @k has one; read-only or not. */
static int sim_open_chain(struct sim *s, struct qcow2_chain *c,
			  struct qcow2_io *io, u64 size, bool writable,
			  struct qcow2_err *err)
{
	struct qcow2_layer_desc d[2];
	struct qcow2_open_opts oo = { 0 };

	memset(d, 0, sizeof(d));
	memset(c, 0, sizeof(*c));
	d[0].format = QCOW2_LAYER_QCOW2;
	d[0].io = io[0];
	d[0].file_size = size;
	d[1].format = QCOW2_LAYER_QCOW2;
	d[1].io = io[1];
	d[1].file_size = s->base.size;
	if (writable) {
		oo.flags = QCOW2_OPEN_WRITABLE;
		/* Small caches: write-back under pressure happens often. */
		oo.l2_cache_bytes = 1 + rnd_below(3) * 8192;
		oo.rc_cache_bytes = 1 + rnd_below(3) * 8192;
	}
	return qcow2_chain_open(c, d, s->k->backing ? 2 : 1, &oo, err);
}

static void sim_keep(struct sim *s, const u8 *img, u64 size, const char *tag)
{
	char path[512];

	if (!s->keep)
		return;
	mkdir(s->keep, 0755);
	snprintf(path, sizeof(path), "%s/base.qcow2", s->keep);
	spill(path, s->base.data, s->base.size);
	snprintf(path, sizeof(path), "%s/cut-%llu-%llu-%d-%s.qcow2", s->keep,
		 (unsigned long long)s->seed, (unsigned long long)s->seq,
		 s->step, tag);
	if (!spill(path, img, size))
		printf("  kept %s\n", path);
}

/* qemu-img check of a cut image: 0 ok (exit 0 or 3), -1 otherwise. */
static int sim_qemu_check(struct sim *s, const u8 *img, u64 size, int *code)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/cut.qcow2", workdir);
	if (spill(path, img, size))
		return -1;
	s->qemu_checks++;
	*code = run_cmd("qemu-img check -q %s >/dev/null 2>&1", path);
	return *code == 0 || *code == 3 ? 0 : -1;
}

/* Check one cut image; @live: it is the current state, all must match. */
static void sim_check_cut(struct sim *s, const u8 *img, u64 size)
{
	struct qcow2_chain c;
	struct qimg_reader rd;
	struct qcow2_io io[2] = { { 0 } };
	struct mro top = { .data = img, .size = size };
	struct rc_result res;
	struct qcow2_err err = { { 0 } };
	char why[512];
	bool failed = false, qcheck;
	int ret, code = 0;
	s64 bad;

	s->cuts++;
	rc_check(img, size, &res);
	if (res.corrupt) {
		sim_fail(s, "refcount check: %llu problems, first: %s",
			 (unsigned long long)res.corrupt, res.why);
		failed = true;
	}
	if (res.leaked)
		s->leaky_cuts++;

	io[0].pread = mro_pread;
	io[0].priv = &top;
	io[1].pread = mro_pread;
	io[1].priv = &s->base;
	ret = sim_open_chain(s, &c, io, size, false, &err);
	if (ret) {
		sim_fail(s, "the engine cannot open the cut image: %s",
			 err.msg[0] ? err.msg : strerror(-ret));
		failed = true;
	} else {
		if (qimg_reader_init(&rd, &c)) {
			fprintf(stderr, "qcow2-crashsim: out of memory\n");
			exit(2);
		}
		rd.data[0] = &io[0];
		rd.data[1] = &io[1];
		ret = qimg_read(&rd, 0, s->sh.vsize, s->guest);
		if (ret) {
			sim_fail(s, "reading the cut image failed: %s",
				 strerror(-ret));
			failed = true;
		} else {
			bad = shadow_check(&s->sh, s->guest, false);
			if (bad >= 0) {
				describe_sector(&s->sh, bad, s->guest, why,
						sizeof(why));
				sim_fail(s, "lost data: %s", why);
				failed = true;
			}
		}
		qimg_reader_destroy(&rd);
		qcow2_chain_close(&c);
	}

	qcheck = failed || (s->check_every && s->cuts % s->check_every == 0);
	if (qcheck && sim_qemu_check(s, img, size, &code)) {
		if (!failed)
			sim_fail(s, "qemu-img check exit %d (2: corruption)",
				 code);
		else if (s->failures <= MAX_FAIL_REPORTS)
			printf("  qemu-img check of that cut: exit %d\n", code);
		failed = true;
	}
	if (failed)
		sim_keep(s, img, size, "fail");
}

/* Build a cut from the durable bytes and some unflushed writes. */
static void sim_cut(struct sim *s)
{
	struct mfile *f = &s->f;
	u32 n = f->nr_pend, i, take, torn_at, sectors, keep_sec;
	bool subset = rnd_below(2), torn = n && rnd_below(3) == 0;
	u64 size = f->dur_size, sec;
	u8 *chosen;

	if (f->cap > s->cut_cap) {
		s->cut = xrealloc(s->cut, f->cap);
		s->cut_cap = f->cap;
	}
	memcpy(s->cut, f->dur, f->cap);
	chosen = calloc(n + 1, 1);
	if (!chosen) {
		fprintf(stderr, "qcow2-crashsim: out of memory\n");
		exit(2);
	}
	take = rnd_below(n + 1);
	for (i = 0; i < n; i++)
		chosen[i] = subset ? rnd_below(2) : i < take;
	/* The torn write: the last one applied in a prefix, any in a subset. */
	torn_at = n;
	if (torn) {
		torn_at = subset ? rnd_below(n) : (take ? take - 1 : n);
		if (torn_at < n)
			chosen[torn_at] = 1;
	}
	keep_sec = 0;
	for (i = 0; i < n; i++) {
		const struct mwrite *w = &f->pend[i];

		if (!chosen[i])
			continue;
		sectors = w->len / SECTOR;
		if (i == torn_at) {
			/* A random subset of its sectors reached the disk. */
			u64 mask_seed = rnd();

			keep_sec = 0;
			for (sec = 0; sec < sectors; sec++) {
				if (sectors > 1 &&
				    !((mask_seed >> (sec % 64)) & 1))
					continue;
				keep_sec++;
				if (w->data)
					memcpy(s->cut + w->off + sec * SECTOR,
					       w->data + sec * SECTOR, SECTOR);
				else
					memset(s->cut + w->off + sec * SECTOR,
					       0, SECTOR);
				size = max_t(u64, size,
					     w->off + (sec + 1) * SECTOR);
			}
			continue;
		}
		if (w->data)
			memcpy(s->cut + w->off, w->data, w->len);
		else
			memset(s->cut + w->off, 0, w->len);
		/* A punch keeps the size. */
		if (w->data)
			size = max_t(u64, size, w->off + w->len);
	}
	snprintf(s->cutdesc, sizeof(s->cutdesc), "%s of %u unflushed%s",
		 subset ? "subset" : "prefix", n,
		 torn_at < n ? " + torn" : "");
	if (!subset)
		snprintf(s->cutdesc, sizeof(s->cutdesc),
			 "prefix %u of %u unflushed%s", take, n,
			 torn_at < n ? ", last torn" : "");
	(void)keep_sec;
	free(chosen);
	if (s->verbose)
		printf("  cut: %s, file %llu bytes\n", s->cutdesc,
		       (unsigned long long)size);
	sim_check_cut(s, s->cut, size);
}

/*
 * Cuts inside an engine call: before a flush (everything since the last
 * one may or may not have landed) and, less often, after a write.
 */
static void sim_hook(void *arg, bool flush)
{
	struct sim *s = arg;

	if (!s->in_op || s->cuts >= s->max_cuts)
		return;
	if (rnd_below(flush ? 2 : 8))
		return;
	sim_cut(s);
	if (s->verbose)
		printf("  (cut inside the call, %s)\n",
		       flush ? "at a flush" : "after a write");
}

/* In-place write @i lands in the file now. */
static void ifw_land(struct sim *s, int i)
{
	struct ifw *w = &s->ifw[i];
	u8 *data = xrealloc(NULL, w->len);
	const u8 *piece = data;

	memset(data, w->fill, w->len);
	mfile_writev(&s->f, w->host, &piece, &w->len, 1);
	free(data);
	free(w->old);
	s->ifw[i] = s->ifw[--s->nr_ifw];
	if (s->f.hook)
		s->f.hook(s->f.hook_arg, false);
}

/* Land every in-place write whose guest range meets [off, off + len). */
static void ifw_land_range(struct sim *s, u64 off, u64 len)
{
	int i = 0;

	while (i < s->nr_ifw) {
		struct ifw *w = &s->ifw[i];

		if (w->guest < off + len && off < w->guest + w->len)
			ifw_land(s, i);
		else
			i++;
	}
}

static void ifw_land_all(struct sim *s)
{
	while (s->nr_ifw)
		ifw_land(s, rnd_below(s->nr_ifw));
}

/* qcow2_io::drain: the kernel waits for its requests in flight. */
static void sim_drain(void *priv)
{
	struct mfile *f = priv;

	ifw_land_all(f->hook_arg);
}

/* A discard of [off, off + len): racing writes there never show again. */
static void ifw_discarded(struct sim *s, u64 off, u64 len)
{
	int i;

	for (i = 0; i < s->nr_ifw; i++) {
		struct ifw *w = &s->ifw[i];

		if (w->guest < off + len && off < w->guest + w->len) {
			if (!w->unmapped)
				s->raced++;
			w->unmapped = true;
		}
	}
}

/*
 * After a flush: writes still in flight when it began need not be durable,
 * so their sectors may also hold what was there before them.
 */
static void ifw_after_flush(struct sim *s, const struct ifw *was, int nr)
{
	struct shadow *sh = &s->sh;
	int i;

	for (i = 0; i < nr; i++) {
		const struct ifw *w = &was[i];

		if (w->unmapped)
			continue;
		memcpy(sh->dur + w->guest, w->old, w->len);
		shadow_set(sh, w->guest, w->len, w->fill);
	}
}

/*
 * Try @off..@len as an in-place write in flight; true if it went so (or
 * failed: *ret), false if it needs qcow2_write().
 */
static bool sim_inplace(struct sim *s, u64 off, u64 len, int *ret)
{
	struct ifw *w;
	bool durable;
	u64 host;

	if (s->nr_ifw == MAX_INFLIGHT || rnd_below(2))
		return false;
	*ret = qcow2_write_map_inplace(s->img, off, len, &host, &durable);
	if (*ret == -EAGAIN)
		return false;
	if (*ret)
		return true;
	/* Overlapping writes in flight land first: one value per sector. */
	ifw_land_range(s, off, len);
	w = &s->ifw[s->nr_ifw++];
	w->host = host;
	w->guest = off;
	w->len = len;
	w->fill = s->fill;
	w->old = xrealloc(NULL, len);
	w->unmapped = false;
	memcpy(w->old, s->sh.cur + off, len);
	shadow_set(&s->sh, off, len, s->fill);
	s->inplace++;
	if (s->verbose)
		printf("  (in place at %llu, in flight)\n",
		       (unsigned long long)host);
	return true;
}

/* The live image must read back exactly as the shadow says. */
static void sim_check_live(struct sim *s)
{
	char why[512];
	s64 bad;
	int ret;

	/* A reader racing with a write may see either: let them land. */
	ifw_land_all(s);
	qimg_reader_forget(&s->rd);
	ret = qimg_read(&s->rd, 0, s->sh.vsize, s->guest);
	snprintf(s->cutdesc, sizeof(s->cutdesc), "none (live image)");
	if (ret) {
		sim_fail(s, "reading the live image failed: %s",
			 strerror(-ret));
		return;
	}
	bad = shadow_check(&s->sh, s->guest, true);
	if (bad >= 0) {
		describe_sector(&s->sh, bad, s->guest, why, sizeof(why));
		sim_fail(s, "live image differs from what was written: %s (now %02x)",
			 why, s->sh.cur[bad * SECTOR]);
	}
}

/* One random operation; returns -1 if the engine failed it. */
static int sim_op(struct sim *s)
{
	const struct kind *k = s->k;
	struct qcow2_wsrc src = { .write = src_write, .read = src_read,
				  .arg = s };
	u64 cs = k->cluster_size, vs = k->vsize, off, len, first, last;
	u32 r = rnd_below(100);
	bool unmap;
	int ret, i;

	/* Half of the ranges are cluster aligned, the rest any sectors. */
	if (rnd_below(2)) {
		off = rnd_below(vs / cs) * cs;
		len = (1 + rnd_below(3)) * cs;
	} else {
		off = rnd_below(vs / SECTOR) * SECTOR;
		len = (1 + rnd_below(min_t(u64, 3 * cs, 64 << 10) / SECTOR)) *
		      SECTOR;
	}
	len = min_t(u64, len, vs - off);
	/*
	 * A quarter of the operations go to the last range written, so
	 * overwrites in place, and discards racing with them, happen often.
	 */
	if (s->last_len && !rnd_below(4)) {
		off = s->last_off;
		len = s->last_len;
	}
	if (r < 45) {
		s->last_off = off;
		s->last_len = len;
	}
	qimg_reader_forget(&s->rd);
	s->ops++;
	/* Writes in flight land at random moments. */
	for (i = 0; i < s->nr_ifw;) {
		if (!rnd_below(3))
			ifw_land(s, i);
		else
			i++;
	}
	if (r < 45) {
		s->fill = 1 + (s->ops * 7 + s->seq) % 250;
		if (s->verbose)
			printf("step %d: write -P %#x %llu %llu\n", s->step,
			       s->fill, (unsigned long long)off,
			       (unsigned long long)len);
		if (sim_inplace(s, off, len, &ret))
			goto done;
		ifw_land_range(s, off, len);
		/* Values may show up while the call runs: set them first. */
		shadow_set(&s->sh, off, len, s->fill);
		s->in_op = true;
		ret = qcow2_write(s->img, off, len, &src);
	} else if (r < 62) {
		unmap = rnd_below(2);
		s->fill = 0;
		if (s->verbose)
			printf("step %d: write -z%s %llu %llu\n", s->step,
			       unmap ? " -u" : "", (unsigned long long)off,
			       (unsigned long long)len);
		ifw_land_range(s, off, len);
		shadow_set(&s->sh, off, len, 0);
		s->in_op = true;
		ret = qcow2_write_zeroes(s->img, off, len,
					 unmap ? QCOW2_ZERO_MAY_UNMAP : 0,
					 &src);
	} else if (r < 80) {
		if (s->verbose)
			printf("step %d: discard %llu %llu\n", s->step,
			       (unsigned long long)off,
			       (unsigned long long)len);
		/* Whole clusters only; v2 over a backing file keeps them. */
		first = (off + cs - 1) / cs;
		last = (off + len) / cs;
		if (!(k->v2 && k->backing) && last > first) {
			shadow_set(&s->sh, first * cs, (last - first) * cs, 0);
			ifw_discarded(s, first * cs, (last - first) * cs);
		}
		s->in_op = true;
		ret = qcow2_discard(s->img, off, len);
	} else {
		struct ifw was[MAX_INFLIGHT];
		int nr = s->nr_ifw;

		if (s->verbose)
			printf("step %d: flush (%d in flight)\n", s->step, nr);
		/* What is in flight now need not survive this flush. */
		memcpy(was, s->ifw, sizeof(was));
		for (i = 0; i < nr; i++) {
			was[i].old = xrealloc(NULL, was[i].len);
			memcpy(was[i].old, s->ifw[i].old, was[i].len);
		}
		s->in_op = true;
		ret = qcow2_flush(s->img);
		s->in_op = false;
		if (!ret) {
			shadow_flushed(&s->sh);
			ifw_after_flush(s, was, nr);
		}
		for (i = 0; i < nr; i++)
			free(was[i].old);
	}
done:
	s->in_op = false;
	if (ret) {
		snprintf(s->cutdesc, sizeof(s->cutdesc), "none (engine call)");
		sim_fail(s, "the engine failed the operation: %s",
			 strerror(-ret));
		return -1;
	}
	return 0;
}

/*
 * --race: one scripted race per kind, the case the drain callback exists
 * for. Cluster A is written and flushed; an in-place write of A is sent in
 * flight; A is discarded and the discard flushed, which frees A's host
 * cluster; cluster B is written (the allocator's lowest free cluster is
 * the one just freed); only then does the in-place write land. With the
 * drain it has landed before the cluster was freed, and B reads back as
 * written; without (--no-drain) it lands on B's data.
 */
static int sim_race(struct sim *s, const struct kind *k)
{
	struct qcow2_wsrc src = { .write = src_write, .read = src_read,
				  .arg = s };
	u64 cs = k->cluster_size, a = 2 * cs, b = 5 * cs;
	int ret, dummy;

	if ((k->v2 && k->backing) || b + cs > k->vsize)
		return 0;
	s->step = 1;
	s->fill = 0x11;
	shadow_set(&s->sh, a, cs, s->fill);
	ret = qcow2_write(s->img, a, cs, &src);
	if (!ret)
		ret = qcow2_flush(s->img);
	if (ret)
		goto engine;
	shadow_flushed(&s->sh);

	s->step = 2;
	s->fill = 0x22;
	/* sim_inplace() skips half the time: ask until it goes in flight. */
	while (!s->nr_ifw) {
		if (sim_inplace(s, a, cs, &dummy) && dummy) {
			ret = dummy;
			goto engine;
		}
	}
	s->step = 3;
	shadow_set(&s->sh, a, cs, 0);
	ifw_discarded(s, a, cs);
	ret = qcow2_discard(s->img, a, cs);
	if (!ret)
		ret = qcow2_flush(s->img);
	if (ret)
		goto engine;
	shadow_flushed(&s->sh);

	s->step = 4;
	s->fill = 0x33;
	shadow_set(&s->sh, b, cs, s->fill);
	ret = qcow2_write(s->img, b, cs, &src);
	if (ret)
		goto engine;
	s->races++;
	/* Lands now, unless the drain already let it land. */
	sim_check_live(s);
	return 0;
engine:
	snprintf(s->cutdesc, sizeof(s->cutdesc), "none (race script)");
	sim_fail(s, "the engine failed the race script: %s", strerror(-ret));
	return -1;
}

static int sim_sequence(struct sim *s, const struct kind *k)
{
	struct qcow2_err err = { { 0 } };
	int ret, cuts_here;

	s->k = k;
	s->step = 0;
	s->sequences++;
	snprintf(s->cutdesc, sizeof(s->cutdesc), "none (setup)");
	mfile_load(&s->f, k->data, k->size);
	s->f.hook = sim_hook;
	s->f.lie = s->lie;
	s->f.hook_arg = s;
	s->io[0] = (struct qcow2_io){ .pread = mf_pread, .pwrite = mf_pwrite,
				      .flush = mf_flush, .punch = mf_punch,
				      .drain = s->no_drain ? NULL : sim_drain,
				      .priv = &s->f };
	s->nr_ifw = 0;
	s->last_len = 0;
	s->io[1] = (struct qcow2_io){ .pread = mro_pread, .priv = &s->base };
	ret = sim_open_chain(s, &s->chain, s->io, k->size, true, &err);
	if (ret) {
		sim_fail(s, "the engine cannot open the image writable: %s",
			 err.msg[0] ? err.msg : strerror(-ret));
		return -1;
	}
	s->img = &s->chain.layers[0].img;
	if (qimg_reader_init(&s->rd, &s->chain)) {
		fprintf(stderr, "qcow2-crashsim: out of memory\n");
		exit(2);
	}
	s->rd.data[0] = &s->io[0];
	s->rd.data[1] = &s->io[1];

	shadow_init(&s->sh, k->vsize);
	s->guest = xrealloc(s->guest, k->vsize);
	ret = qimg_read(&s->rd, 0, k->vsize, s->sh.cur);
	if (ret) {
		sim_fail(s, "reading the fresh image failed: %s",
			 strerror(-ret));
		goto close;
	}
	shadow_flushed(&s->sh);

	if (s->race) {
		sim_race(s, k);
		goto close;
	}
	for (s->step = 1; s->step <= SEQ_OPS && s->cuts < s->max_cuts;
	     s->step++) {
		if (sim_op(s))
			break;
		if (s->step % 4 == 0 || s->verbose)
			sim_check_live(s);
		/* Zero to two cuts between calls, each a different subset. */
		for (cuts_here = rnd_below(3);
		     cuts_here && s->cuts < s->max_cuts; cuts_here--)
			sim_cut(s);
	}
	sim_check_live(s);
close:
	/* A crash: what is still in flight never lands. */
	while (s->nr_ifw)
		free(s->ifw[--s->nr_ifw].old);
	qimg_reader_destroy(&s->rd);
	/* Closing would flush: drop the engine's state as a crash does. */
	qcow2_chain_close(&s->chain);
	shadow_free(&s->sh);
	return 0;
}

static void print_usage(void)
{
	fprintf(stderr,
		"usage: qcow2-crashsim [--iterations CUTS] [--seed S] [--seq N]\n"
		"                      [--check-every N] [--kind NAME] [--keep DIR]\n"
		"                      [--lying-disk] [--no-drain] [--race] [-v]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "iterations", required_argument, NULL, 'i' },
		{ "seed", required_argument, NULL, 's' },
		{ "seq", required_argument, NULL, 'q' },
		{ "check-every", required_argument, NULL, 'c' },
		{ "kind", required_argument, NULL, 'k' },
		{ "keep", required_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "lying-disk", no_argument, NULL, 'L' },
		{ "no-drain", no_argument, NULL, 'D' },
		{ "race", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	u64 iterations = 10000, only_seq = ~0ULL, seq;
	const char *only_kind = NULL;
	struct timespec t0, t1;
	struct sim s;
	double secs;
	int opt;
	u32 i, nk = 0, pick[ARRAY_SIZE(kinds)];

	memset(&s, 0, sizeof(s));
	s.seed = 1;
	s.check_every = 200;
	while ((opt = getopt_long(argc, argv, "i:s:q:c:k:K:vLDRh", opts,
				  NULL)) != -1) {
		switch (opt) {
		case 'i':
			iterations = strtoull(optarg, NULL, 0);
			break;
		case 's':
			s.seed = strtoull(optarg, NULL, 0);
			break;
		case 'q':
			only_seq = strtoull(optarg, NULL, 0);
			break;
		case 'c':
			s.check_every = strtoull(optarg, NULL, 0);
			break;
		case 'k':
			only_kind = optarg;
			break;
		case 'K':
			s.keep = optarg;
			break;
		case 'v':
			s.verbose = true;
			break;
		case 'L':
			s.lie = true;
			break;
		case 'D':
			s.no_drain = true;
			break;
		case 'R':
			s.race = true;
			break;
		default:
			print_usage();
		}
	}
	if (optind != argc)
		print_usage();
	qcow2_log_quiet = 1;

	snprintf(workdir, sizeof(workdir), "%s/qcow2-crashsim.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(workdir)) {
		perror("qcow2-crashsim: mkdtemp");
		return 2;
	}
	if (make_kinds()) {
		fprintf(stderr, "qcow2-crashsim: making the images with qemu-img failed\n");
		run_cmd("rm -rf %s", workdir);
		return 2;
	}
	s.base = base;
	for (i = 0; i < ARRAY_SIZE(kinds); i++)
		if (!only_kind || !strcmp(only_kind, kinds[i].name))
			pick[nk++] = i;
	if (!nk)
		print_usage();

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (s.race) {
		for (i = 0; i < nk; i++) {
			s.seq = i;
			rng_seed(s.seed, i);
			sim_sequence(&s, &kinds[pick[i]]);
		}
		printf("race: %llu kinds raced, %llu failures\n",
		       (unsigned long long)s.races,
		       (unsigned long long)s.failures);
		iterations = 0;
	}
	for (seq = 0; s.cuts < iterations || only_seq != ~0ULL; seq++) {
		if (only_seq != ~0ULL && seq != only_seq) {
			if (seq > only_seq)
				break;
			continue;
		}
		s.seq = seq;
		rng_seed(s.seed, seq);
		if (s.verbose)
			printf("sequence %llu kind %s\n",
			       (unsigned long long)seq,
			       kinds[pick[seq % nk]].name);
		s.max_cuts = only_seq != ~0ULL ? ~0ULL : iterations;
		sim_sequence(&s, &kinds[pick[seq % nk]]);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;

	printf("seed %llu: %llu sequences, %llu operations, %llu cuts (%.0f/s), ",
	       (unsigned long long)s.seed, (unsigned long long)s.sequences,
	       (unsigned long long)s.ops, (unsigned long long)s.cuts,
	       secs > 0 ? s.cuts / secs : 0.0);
	printf("%llu in-place writes in flight (%llu raced by a discard), ",
	       (unsigned long long)s.inplace, (unsigned long long)s.raced);
	printf("%llu cuts with leaked clusters, %llu qemu-img checks, %llu failures\n",
	       (unsigned long long)s.leaky_cuts,
	       (unsigned long long)s.qemu_checks,
	       (unsigned long long)s.failures);
	mfile_free(&s.f);
	free(s.guest);
	free(s.cut);
	for (i = 0; i < ARRAY_SIZE(kinds); i++)
		free(kinds[i].data);
	free((void *)base.data);
	run_cmd("rm -rf %s", workdir);
	return s.failures ? 1 : 0;
}

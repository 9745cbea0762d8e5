// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the input is an image file. Decode its header, then
 * open it through a memory qcow2_io with the smallest L2 cache and map a
 * bounded number of extents, so header checks, entry decoding, coalescing
 * and cache eviction all see hostile bytes. Then walk its snapshot table
 * and open it at its first snapshot, mapping that too.
 */
#include <stdint.h>
#include <stddef.h>

#include "qcow2.h"

/* Bound the work per input: extents mapped, and scattered probes. */
#define FUZZ_MAX_EXTENTS	256
#define FUZZ_PROBES		16

struct mem_file {
	const u8 *data;
	size_t size;
};

static int mem_pread(void *priv, void *buf, size_t len, u64 off)
{
	const struct mem_file *f = priv;
	size_t n = 0;

	if (off < f->size)
		n = f->size - off < len ? f->size - off : len;
	if (n)
		memcpy(buf, f->data + off, n);
	memset((u8 *)buf + n, 0, len - n);
	return 0;
}

static void check_extent(const struct qcow2_image *img, u64 off, u64 len,
			 const struct qcow2_extent *e)
{
	if (!e->len || e->len > len)
		__builtin_trap();
	if (e->type == QCOW2_EXT_COMPRESSED &&
	    (e->cluster_off >= img->h.cluster_size ||
	     e->cluster_off + e->len > img->h.cluster_size))
		__builtin_trap();
	if (off < img->h.size && off + e->len > img->h.size)
		__builtin_trap();
}

static int count_snapshot(void *arg, const struct qcow2_snapshot *s)
{
	if (strnlen(s->id, sizeof(s->id)) == sizeof(s->id) ||
	    strnlen(s->name, sizeof(s->name)) == sizeof(s->name))
		__builtin_trap();
	++*(u32 *)arg;
	return 0;
}

static void map_some(struct qcow2_image *img, u64 seed)
{
	struct qcow2_extent e;
	u64 off = 0;
	int i;

	for (i = 0; i < FUZZ_MAX_EXTENTS && off < img->h.size; i++) {
		if (qcow2_map(img, off, img->h.size - off, &e))
			break;
		check_extent(img, off, img->h.size - off, &e);
		off += e.len;
	}
	for (i = 0; i < FUZZ_PROBES && img->h.size; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (seed >> 7) % img->h.size;
		if (!qcow2_map(img, off, 1 + (seed >> 40), &e))
			check_extent(img, off, 1 + (seed >> 40), &e);
	}
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	struct mem_file f = { .data = data, .size = size };
	struct qcow2_open_opts opts = { .l2_cache_bytes = 1 };
	struct qcow2_io io = { .pread = mem_pread, .priv = &f };
	struct qcow2_image img;
	struct qcow2_header h;
	struct qcow2_err err;
	u32 nr_snapshots = 0;

	qcow2_log_quiet = 1;
	if (qcow2_header_decode(data, size, size, &h, &err) &&
	    strnlen(err.msg, sizeof(err.msg)) == sizeof(err.msg))
		__builtin_trap();

	memset(&img, 0, sizeof(img));
	if (qcow2_image_open(&img, &io, size, &opts, &err))
		return 0;

	map_some(&img, size);
	qcow2_snapshot_walk(&img, count_snapshot, &nr_snapshots, &err);
	qcow2_image_close(&img);

	/* The first snapshot by ID, as QEMU numbers them. */
	if (!nr_snapshots)
		return 0;
	opts.snapshot = "1";
	memset(&img, 0, sizeof(img));
	if (qcow2_image_open(&img, &io, size, &opts, &err))
		return 0;
	map_some(&img, size + 1);
	qcow2_image_close(&img);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: a two-layer backing chain. The input is a 4-byte
 * big-endian length, the top image of that length, then the lower layer
 * (qcow2 or raw, by magic). Opens the chain with the smallest caches and
 * maps a bounded number of extents, so the chain's layer checks, its
 * resolution through zero and unallocated clusters, and its mapping cache
 * all see hostile bytes.
 */
#include <stdint.h>
#include <stddef.h>

#include "qcow2.h"

/* Bound the work per input. */
#define FUZZ_MAX_EXTENTS	256
#define FUZZ_SPLIT_BYTES	4

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

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	struct qcow2_open_opts opts = { .l2_cache_bytes = 1,
					.map_cache_bytes = 1 };
	struct qcow2_layer_desc d[2];
	struct qcow2_chain_extent ce;
	struct mem_file f[2];
	struct qcow2_chain c;
	struct qcow2_err err;
	u64 off = 0;
	u32 split;
	int i;

	qcow2_log_quiet = 1;
	if (size < FUZZ_SPLIT_BYTES)
		return 0;
	split = (u32)data[0] << 24 | (u32)data[1] << 16 |
		(u32)data[2] << 8 | data[3];
	data += FUZZ_SPLIT_BYTES;
	size -= FUZZ_SPLIT_BYTES;
	if (split > size)
		split = size;
	f[0].data = data;
	f[0].size = split;
	f[1].data = data + split;
	f[1].size = size - split;

	memset(d, 0, sizeof(d));
	for (i = 0; i < 2; i++) {
		d[i].format = f[i].size >= 4 && !memcmp(f[i].data, "QFI\xfb", 4) ?
			      QCOW2_LAYER_QCOW2 : QCOW2_LAYER_RAW;
		d[i].io.pread = mem_pread;
		d[i].io.priv = &f[i];
		d[i].file_size = f[i].size;
	}
	memset(&c, 0, sizeof(c));
	if (qcow2_chain_open(&c, d, 2, &opts, &err)) {
		if (strnlen(err.msg, sizeof(err.msg)) == sizeof(err.msg))
			__builtin_trap();
		return 0;
	}
	for (i = 0; i < FUZZ_MAX_EXTENTS && off < c.size; i++) {
		if (qcow2_chain_map(&c, off, c.size - off, &ce))
			break;
		if (!ce.ext.len || ce.ext.len > c.size - off || ce.layer > 1 ||
		    ce.ext.type == QCOW2_EXT_UNALLOC)
			__builtin_trap();
		off += ce.ext.len;
	}
	qcow2_chain_close(&c);
	return 0;
}

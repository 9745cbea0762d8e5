// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2-cat: write the guest-visible bytes of a qcow2 image, as the engine
 * maps them, to stdout or a file. The host-side referee for the engine:
 * its output must equal `qemu-img convert -O raw`.
 *
 *   qcow2-cat [--l2-cache BYTES] [--snapshot ID|NAME] [--map]
 *             [--backing FILE]... IMAGE [OUTPUT]
 *
 * A regular OUTPUT file is written sparse (zero extents become holes).
 * --l2-cache sets the engine's L2 cache size (0: the smallest, so eviction
 * runs all the time; default: the engine's). --snapshot reads an internal
 * snapshot instead of the active layer. --backing adds the next lower
 * layer of a backing chain (qcow2 or raw, told by its magic), top first,
 * served through the engine's chain code. --map prints the extents
 * (guest offset, length, type, host offset, compressed offset and bytes,
 * offset in the cluster) instead of the data. Exit status: 0 on success,
 * 1 if the engine refuses the image or anything fails; the reason goes to
 * stderr as "qcow2-cat: IMAGE: reason".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qimg.h"

/* Bytes moved per read/write. */
#define CAT_BUF_BYTES		(1024U * 1024)
/* Layers of a chain this tool opens: the image and its backing files. */
#define CAT_MAX_LAYERS		16

struct cat {
	const char *image;
	int fd;			/* image file */
	int layer_fd[CAT_MAX_LAYERS];	/* chain: [0] is fd */
	u32 nr_layers;		/* chain: layers given, 1 without --backing */
	struct qcow2_chain chain;
	int out;		/* output */
	bool sparse;		/* out is a regular file: seek over zeroes */
	u64 out_pos;		/* bytes of output written or skipped */
	struct qcow2_image img;
	u8 *buf;		/* CAT_BUF_BYTES */
	u8 *zbuf;		/* zeroes, CAT_BUF_BYTES */
	u8 *cbuf;		/* compressed input, up to 2 cluster sizes */
	u8 *cluster;		/* one decompressed cluster */
	u64 cluster_key;	/* comp_off of the cluster in @cluster, or ~0 */
	ZSTD_DCtx *zstd;
};

static void die(const struct cat *c, const char *fmt, const char *detail)
{
	fprintf(stderr, "qcow2-cat: %s: ", c->image);
	fprintf(stderr, fmt, detail);
	fputc('\n', stderr);
	exit(1);
}

static int cat_pread(void *priv, void *buf, size_t len, u64 off)
{
	const int *fd = priv;

	return qimg_pread_full(*fd, buf, len, off);
}

static void out_write(struct cat *c, const void *buf, size_t len)
{
	const u8 *p = buf;

	while (len) {
		ssize_t n = c->sparse ? pwrite(c->out, p, len, c->out_pos) :
					write(c->out, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die(c, "write failed: %s", strerror(errno));
		p += n;
		len -= n;
		c->out_pos += n;
	}
}

static void out_zeroes(struct cat *c, u64 len)
{
	if (c->sparse) {
		c->out_pos += len;
		return;
	}
	while (len) {
		size_t n = len < CAT_BUF_BYTES ? len : CAT_BUF_BYTES;

		out_write(c, c->zbuf, n);
		len -= n;
	}
}

static void cat_compressed(struct cat *c, const struct qcow2_extent *e,
			   int fd, const struct qcow2_header *h, u64 key)
{
	u32 cs = h->cluster_size;
	int ret;

	if (c->cluster_key != key) {
		if (qimg_pread_full(fd, c->cbuf, e->comp_bytes, e->comp_off))
			die(c, "read failed: %s", strerror(errno));
		if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
			ret = qimg_unzstd(c->zstd, c->cbuf, e->comp_bytes,
					  c->cluster, cs);
		else
			ret = qimg_inflate(c->cbuf, e->comp_bytes,
					   c->cluster, cs);
		if (ret)
			die(c, "%s", "cannot decompress a compressed cluster");
		c->cluster_key = key;
	}
	out_write(c, c->cluster + e->cluster_off, e->len);
}

static void cat_data(struct cat *c, const struct qcow2_extent *e, int fd)
{
	u64 done = 0;

	while (done < e->len) {
		size_t n = e->len - done < CAT_BUF_BYTES ? e->len - done :
							   CAT_BUF_BYTES;

		if (qimg_pread_full(fd, c->buf, n, e->host_off + done))
			die(c, "read failed: %s", strerror(errno));
		out_write(c, c->buf, n);
		done += n;
	}
}

static const char *const ext_names[] = {
	[QCOW2_EXT_DATA] = "data",
	[QCOW2_EXT_ZERO] = "zero",
	[QCOW2_EXT_UNALLOC] = "unalloc",
	[QCOW2_EXT_COMPRESSED] = "compressed",
};

static void cat_run(struct cat *c, bool map_only)
{
	u64 size = c->img.h.size, pos = 0;
	struct qcow2_extent e;
	char msg[96];
	int ret;

	while (pos < size) {
		ret = qcow2_map(&c->img, pos, size - pos, &e);
		if (ret) {
			snprintf(msg, sizeof(msg), "mapping guest offset %llu failed: %s",
				 (unsigned long long)pos, strerror(-ret));
			die(c, "%s", msg);
		}
		if (map_only) {
			printf("%llu %llu %s %llu %llu %u %u\n",
			       (unsigned long long)pos,
			       (unsigned long long)e.len, ext_names[e.type],
			       (unsigned long long)e.host_off,
			       (unsigned long long)e.comp_off, e.comp_bytes,
			       e.cluster_off);
		} else if (e.type == QCOW2_EXT_DATA) {
			cat_data(c, &e, c->fd);
		} else if (e.type == QCOW2_EXT_COMPRESSED) {
			cat_compressed(c, &e, c->fd, &c->img.h, e.comp_off);
		} else {
			out_zeroes(c, e.len);
		}
		pos += e.len;
	}
	if (!map_only && c->sparse && ftruncate(c->out, c->out_pos))
		die(c, "truncating the output failed: %s", strerror(errno));
}

/* The same through a backing chain: extents carry their layer. */
static void cat_run_chain(struct cat *c, bool map_only)
{
	u64 size = c->chain.size, pos = 0;
	struct qcow2_chain_extent ce;
	const struct qcow2_extent *e = &ce.ext;
	char msg[96];
	int ret;

	while (pos < size) {
		ret = qcow2_chain_map(&c->chain, pos, size - pos, &ce);
		if (ret || ce.layer >= c->nr_layers) {
			snprintf(msg, sizeof(msg), "mapping guest offset %llu failed: %s",
				 (unsigned long long)pos, strerror(-ret));
			die(c, "%s", msg);
		}
		if (map_only)
			printf("%llu %llu %s %llu %llu %u %u layer %u\n",
			       (unsigned long long)pos,
			       (unsigned long long)e->len, ext_names[e->type],
			       (unsigned long long)e->host_off,
			       (unsigned long long)e->comp_off, e->comp_bytes,
			       e->cluster_off, ce.layer);
		else if (e->type == QCOW2_EXT_DATA)
			cat_data(c, e, c->layer_fd[ce.layer]);
		else if (e->type == QCOW2_EXT_COMPRESSED)
			cat_compressed(c, e, c->layer_fd[ce.layer],
				       &c->chain.layers[ce.layer].img.h,
				       e->comp_off * CAT_MAX_LAYERS + ce.layer);
		else
			out_zeroes(c, e->len);
		pos += e->len;
	}
	if (!map_only && c->sparse && ftruncate(c->out, c->out_pos))
		die(c, "truncating the output failed: %s", strerror(errno));
}

/* Open the chain: the image, then every --backing file, top down. */
static void cat_open_chain(struct cat *c, char **backing,
			   const struct qcow2_open_opts *oo)
{
	struct qcow2_layer_desc d[CAT_MAX_LAYERS];
	struct qcow2_err err;
	struct stat st;
	u8 magic[4];
	u32 i;
	int ret;

	memset(d, 0, sizeof(d));
	c->layer_fd[0] = c->fd;
	for (i = 0; i < c->nr_layers; i++) {
		if (i) {
			c->layer_fd[i] = open(backing[i - 1], O_RDONLY);
			if (c->layer_fd[i] < 0)
				die(c, "cannot open a backing file: %s",
				    strerror(errno));
		}
		if (fstat(c->layer_fd[i], &st) ||
		    qimg_pread_full(c->layer_fd[i], magic, sizeof(magic), 0))
			die(c, "cannot read a layer: %s", strerror(errno));
		d[i].format = memcmp(magic, "QFI\xfb", 4) ? QCOW2_LAYER_RAW :
							    QCOW2_LAYER_QCOW2;
		d[i].io.pread = cat_pread;
		d[i].io.priv = &c->layer_fd[i];
		d[i].file_size = st.st_size;
	}
	ret = qcow2_chain_open(&c->chain, d, c->nr_layers, oo, &err);
	if (ret)
		die(c, "%s", err.msg[0] ? err.msg : strerror(-ret));
}

static void print_usage(void)
{
	fprintf(stderr,
		"usage: qcow2-cat [--l2-cache BYTES] [--snapshot ID|NAME] [--map]\n"
		"                 [--backing FILE]... IMAGE [OUTPUT]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "l2-cache", required_argument, NULL, 'c' },
		{ "map", no_argument, NULL, 'm' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "backing", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct qcow2_open_opts oo = { 0 };
	char *backing[CAT_MAX_LAYERS];
	struct qcow2_io io;
	struct qcow2_err err;
	struct cat c;
	bool map_only = false;
	struct stat st;
	char *end;
	int opt, ret;

	memset(&c, 0, sizeof(c));
	c.nr_layers = 1;
	while ((opt = getopt_long(argc, argv, "c:ms:b:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			errno = 0;
			oo.l2_cache_bytes = strtoull(optarg, &end, 0);
			if (errno || *end)
				print_usage();
			/* 0 asks for the minimum, not the default. */
			if (!oo.l2_cache_bytes)
				oo.l2_cache_bytes = 1;
			break;
		case 'm':
			map_only = true;
			break;
		case 's':
			oo.snapshot = optarg;
			break;
		case 'b':
			if (c.nr_layers == CAT_MAX_LAYERS)
				print_usage();
			backing[c.nr_layers++ - 1] = optarg;
			break;
		default:
			print_usage();
		}
	}
	if (argc - optind < 1 || argc - optind > 2)
		print_usage();

	c.image = argv[optind];
	c.fd = open(c.image, O_RDONLY);
	if (c.fd < 0 || fstat(c.fd, &st))
		die(&c, "%s", strerror(errno));
	c.out = STDOUT_FILENO;
	if (argc - optind == 2) {
		c.out = open(argv[optind + 1], O_WRONLY | O_CREAT | O_TRUNC,
			     0644);
		if (c.out < 0)
			die(&c, "cannot create output: %s", strerror(errno));
	}

	if (c.nr_layers > 1) {
		cat_open_chain(&c, backing, &oo);
	} else {
		io.pread = cat_pread;
		io.priv = &c.fd;
		ret = qcow2_image_open(&c.img, &io, st.st_size, &oo, &err);
		if (ret)
			die(&c, "%s", err.msg[0] ? err.msg : strerror(-ret));
	}

	if (!map_only && !fstat(c.out, &st) && S_ISREG(st.st_mode) &&
	    lseek(c.out, 0, SEEK_CUR) == 0)
		c.sparse = true;
	c.buf = malloc(CAT_BUF_BYTES);
	c.zbuf = calloc(1, CAT_BUF_BYTES);
	/* Layers may differ in cluster size: room for the largest. */
	c.cbuf = malloc(2 * (size_t)QCOW2_MAX_CLUSTER_SIZE + 4096);
	c.cluster = malloc(QCOW2_MAX_CLUSTER_SIZE);
	c.zstd = ZSTD_createDCtx();
	c.cluster_key = ~0ULL;
	if (!c.buf || !c.zbuf || !c.cbuf || !c.cluster || !c.zstd)
		die(&c, "%s", strerror(ENOMEM));

	if (c.nr_layers > 1) {
		cat_run_chain(&c, map_only);
		qcow2_chain_close(&c.chain);
	} else {
		cat_run(&c, map_only);
		qcow2_image_close(&c.img);
	}
	ZSTD_freeDCtx(c.zstd);
	free(c.buf);
	free(c.zbuf);
	free(c.cbuf);
	free(c.cluster);
	if (c.out != STDOUT_FILENO && close(c.out))
		die(&c, "closing the output failed: %s", strerror(errno));
	close(c.fd);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * Shared helpers of the host test tools (see qimg.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "qimg.h"

/* Raw deflate with a 4 KiB window, as QEMU writes compressed clusters. */
#define QIMG_DEFLATE_WBITS	(-12)

int qimg_pread_full(int fd, void *buf, size_t len, u64 off)
{
	u8 *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

int qimg_pwrite_full(int fd, const void *buf, size_t len, u64 off)
{
	const u8 *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

int qimg_inflate(const u8 *in, size_t in_len, u8 *out, size_t out_len)
{
	z_stream s;
	int ret;

	memset(&s, 0, sizeof(s));
	if (inflateInit2(&s, QIMG_DEFLATE_WBITS) != Z_OK)
		return -1;
	s.next_in = (u8 *)in;
	s.avail_in = in_len;
	s.next_out = out;
	s.avail_out = out_len;
	ret = inflate(&s, Z_FINISH);
	inflateEnd(&s);
	/* The input may run on into the next cluster: a full output is it. */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && s.avail_out == 0)
		return 0;
	return -1;
}

int qimg_unzstd(ZSTD_DCtx *z, const u8 *in, size_t in_len, u8 *out,
		size_t out_len)
{
	ZSTD_inBuffer ib = { .src = in, .size = in_len };
	ZSTD_outBuffer ob = { .dst = out, .size = out_len };

	ZSTD_DCtx_reset(z, ZSTD_reset_session_only);
	while (ob.pos < ob.size) {
		size_t in_pos = ib.pos, out_pos = ob.pos;
		size_t r = ZSTD_decompressStream(z, &ob, &ib);

		if (ZSTD_isError(r) || r == 0)
			break;
		if (ib.pos == in_pos && ob.pos == out_pos)
			break;
	}
	return ob.pos == ob.size ? 0 : -1;
}

int qimg_fd_pread(void *priv, void *buf, size_t len, u64 off)
{
	return qimg_pread_full(*(int *)priv, buf, len, off);
}

int qimg_fd_pwrite(void *priv, const void *buf, size_t len, u64 off)
{
	return qimg_pwrite_full(*(int *)priv, buf, len, off);
}

int qimg_fd_flush(void *priv)
{
	return fdatasync(*(int *)priv) ? -errno : 0;
}

int qimg_fd_punch(void *priv, u64 off, u64 len)
{
	if (fallocate(*(int *)priv, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      off, len))
		return -errno;
	return 0;
}

/* @name (not terminated) relative to the directory of @base, malloc'ed. */
static char *resolve(const char *base, const u8 *name, u32 len)
{
	char *dup, *dir, *out;

	if (len && name[0] == '/')
		return strndup((const char *)name, len);
	dup = strdup(base);
	if (!dup)
		return NULL;
	dir = dirname(dup);
	if (asprintf(&out, "%s/%.*s", dir, (int)len, name) < 0)
		out = NULL;
	free(dup);
	return out;
}

static void files_set_io(struct qcow2_io *io, int *fd, bool writable)
{
	memset(io, 0, sizeof(*io));
	io->pread = qimg_fd_pread;
	io->priv = fd;
	if (writable) {
		io->pwrite = qimg_fd_pwrite;
		io->flush = qimg_fd_flush;
		io->punch = qimg_fd_punch;
	}
}

/* Open layer @i from f->path[i]; sets *next to the backing path or NULL. */
static int files_open_layer(struct qimg_files *f, u32 i, bool writable,
			    bool raw, char **next, bool *next_raw, char *msg,
			    size_t msg_len)
{
	struct qcow2_layer_desc *d = &f->d[i];
	struct qcow2_header h;
	struct qcow2_err err;
	struct stat st;
	size_t hdr_len;
	u8 *buf;
	int ret;

	*next = NULL;
	f->fd[i] = open(f->path[i], writable ? O_RDWR : O_RDONLY);
	f->data_fd[i] = f->fd[i];
	if (f->fd[i] < 0 || fstat(f->fd[i], &st)) {
		snprintf(msg, msg_len, "%s: %s", f->path[i], strerror(errno));
		return -errno;
	}
	d->file_size = st.st_size;
	files_set_io(&d->io, &f->fd[i], writable);
	files_set_io(&f->data_io[i], &f->data_fd[i], writable);
	buf = malloc(QIMG_HEADER_BYTES);
	if (!buf)
		return -ENOMEM;
	ret = qimg_pread_full(f->fd[i], buf, QIMG_HEADER_BYTES, 0);
	if (ret)
		goto out;
	if (raw || (i && memcmp(buf, "QFI\xfb", 4))) {
		d->format = QCOW2_LAYER_RAW;
		goto out;
	}
	d->format = QCOW2_LAYER_QCOW2;
	hdr_len = min_t(u64, st.st_size, QIMG_HEADER_BYTES);
	ret = qcow2_header_decode(buf, hdr_len, st.st_size, &h, &err);
	if (ret) {
		snprintf(msg, msg_len, "%s: %s", f->path[i], err.msg);
		goto out;
	}
	if (h.data_file.off) {
		char *dp = resolve(f->path[i], buf + h.data_file.off,
				   h.data_file.len);

		f->data_fd[i] = dp ? open(dp, writable ? O_RDWR : O_RDONLY) :
				     -1;
		if (f->data_fd[i] < 0) {
			ret = -errno;
			snprintf(msg, msg_len, "data file %s: %s",
				 dp ? dp : "?", strerror(errno));
			free(dp);
			goto out;
		}
		free(dp);
		d->has_data_file = true;
	}
	if (h.backing_file.off) {
		*next = resolve(f->path[i], buf + h.backing_file.off,
				h.backing_file.len);
		*next_raw = h.backing_format.off && h.backing_format.len == 3 &&
			    !memcmp(buf + h.backing_format.off, "raw", 3);
		if (!*next)
			ret = -ENOMEM;
	}
out:
	free(buf);
	if (ret && !msg[0])
		snprintf(msg, msg_len, "%s: %s", f->path[i], strerror(-ret));
	return ret;
}

int qimg_files_open(struct qimg_files *f, const char *path, bool writable,
		    char *msg, size_t msg_len)
{
	bool raw = false;
	char *next;
	int ret;

	memset(f, 0, sizeof(*f));
	msg[0] = '\0';
	next = strdup(path);
	while (next) {
		if (f->nr == QIMG_MAX_LAYERS) {
			snprintf(msg, msg_len, "more than %u layers",
				 QIMG_MAX_LAYERS);
			free(next);
			return -E2BIG;
		}
		f->path[f->nr] = next;
		ret = files_open_layer(f, f->nr, writable && !f->nr, raw,
				       &next, &raw, msg, msg_len);
		f->nr++;
		if (ret) {
			qimg_files_close(f);
			return ret;
		}
	}
	return 0;
}

void qimg_files_close(struct qimg_files *f)
{
	u32 i;

	for (i = 0; i < f->nr; i++) {
		if (f->data_fd[i] >= 0 && f->data_fd[i] != f->fd[i])
			close(f->data_fd[i]);
		if (f->fd[i] >= 0)
			close(f->fd[i]);
		free(f->path[i]);
	}
	memset(f, 0, sizeof(*f));
}

int qimg_reader_init(struct qimg_reader *r, struct qcow2_chain *c)
{
	memset(r, 0, sizeof(*r));
	r->chain = c;
	r->key = ~0ULL;
	/* Compressed data may run on into the next cluster. */
	r->cbuf = malloc(2 * (size_t)QCOW2_MAX_CLUSTER_SIZE + 4096);
	r->cluster = malloc(QCOW2_MAX_CLUSTER_SIZE);
	r->zstd = ZSTD_createDCtx();
	if (!r->cbuf || !r->cluster || !r->zstd) {
		qimg_reader_destroy(r);
		return -ENOMEM;
	}
	return 0;
}

void qimg_reader_destroy(struct qimg_reader *r)
{
	free(r->cbuf);
	free(r->cluster);
	if (r->zstd)
		ZSTD_freeDCtx(r->zstd);
	r->cbuf = NULL;
	r->cluster = NULL;
	r->zstd = NULL;
}

void qimg_reader_forget(struct qimg_reader *r)
{
	r->key = ~0ULL;
}

static int reader_compressed(struct qimg_reader *r,
			     const struct qcow2_chain_extent *ce, u8 *buf)
{
	const struct qcow2_extent *e = &ce->ext;
	const struct qcow2_header *h = &r->chain->layers[ce->layer].img.h;
	const struct qcow2_io *io = r->data[ce->layer];
	u64 key = e->comp_off * QIMG_MAX_LAYERS + ce->layer;
	int ret;

	if (r->key != key) {
		if (e->comp_bytes > 2 * QCOW2_MAX_CLUSTER_SIZE)
			return -EUCLEAN;
		ret = io->pread(io->priv, r->cbuf, e->comp_bytes, e->comp_off);
		if (ret)
			return ret;
		if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
			ret = qimg_unzstd(r->zstd, r->cbuf, e->comp_bytes,
					  r->cluster, h->cluster_size);
		else
			ret = qimg_inflate(r->cbuf, e->comp_bytes, r->cluster,
					   h->cluster_size);
		if (ret)
			return -EUCLEAN;
		r->key = key;
	}
	if (e->cluster_off + e->len > h->cluster_size)
		return -EUCLEAN;
	memcpy(buf, r->cluster + e->cluster_off, e->len);
	return 0;
}

int qimg_read(struct qimg_reader *r, u64 off, u64 len, u8 *buf)
{
	struct qcow2_chain_extent ce;
	const struct qcow2_io *io;
	int ret;

	while (len) {
		ret = qcow2_chain_map(r->chain, off, len, &ce);
		if (ret)
			return ret;
		if (!ce.ext.len || ce.ext.len > len ||
		    ce.layer >= r->chain->nr_layers ||
		    ce.layer >= QIMG_MAX_LAYERS)
			return -EUCLEAN;
		io = r->data[ce.layer];
		switch (ce.ext.type) {
		case QCOW2_EXT_DATA:
			ret = io->pread(io->priv, buf, ce.ext.len,
					ce.ext.host_off);
			break;
		case QCOW2_EXT_COMPRESSED:
			ret = reader_compressed(r, &ce, buf);
			break;
		default:
			memset(buf, 0, ce.ext.len);
			ret = 0;
		}
		if (ret)
			return ret;
		buf += ce.ext.len;
		off += ce.ext.len;
		len -= ce.ext.len;
	}
	return 0;
}

int qimg_parse_size(const char *s, u64 *val)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'b': case 'B':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	case 'p': case 'P':
		shift = 50;
		break;
	case 'e': case 'E':
		shift = 60;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (shift && v > (~0ULL >> shift))
		return -ERANGE;
	*val = v << shift;
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl chain resolver. The kernel never opens a path, so everything an
 * image depends on is found and opened here, following QEMU's rules:
 *
 * - A backing file name is taken as it is when absolute, else it is put
 *   after the directory part of the path of the image naming it (that path
 *   as opened, symlinks not resolved), so relative names compound down the
 *   chain. Names with a protocol prefix (json:, nbd:, file: ...) are
 *   refused: only local files can be handed to the kernel.
 * - The backing format extension decides the format; without it the
 *   first bytes do, and only qcow2 and raw are served: anything that looks
 *   like another image format is refused rather than read as raw.
 * - An external data file name is opened as QEMU opens it: as given, so a
 *   relative name is relative to the current directory, not to the image.
 *
 * Every file must be a regular file or a block device (a FIFO named by a
 * hostile header would block us forever), and one inode may appear only once
 * in a chain.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2blk.h"
#include "chain.h"
#include "lock.h"
#include "precheck.h"
#include "util.h"

/* Bytes read to probe a format: every magic below lies inside. */
#define QCTL_PROBE_BYTES	512

struct qctl_magic {
	const char *format;	/* QEMU's driver name */
	size_t off;		/* bytes from the start of the file */
	const char *magic;
	size_t len;
};

/* Image formats QEMU would probe and qcow2blk cannot serve. */
static const struct qctl_magic qctl_magics[] = {
	{ "qed",	0,  "QED\0",			4 },
	{ "vmdk",	0,  "KDMV",			4 },
	{ "vmdk",	0,  "COWD",			4 },
	{ "vmdk",	0,  "# Disk DescriptorFile",	21 },
	{ "vhdx",	0,  "vhdxfile",			8 },
	{ "vpc",	0,  "conectix",			8 },
	{ "vdi",	64, "\x7f\x10\xda\xbe",		4 },
	{ "luks",	0,  "LUKS\xba\xbe",		6 },
	{ "parallels",	0,  "WithoutFreeSpace",		16 },
	{ "parallels",	0,  "WithouFreSpacExt",		16 },
	{ "bochs",	0,  "Bochs Virtual HD Image",	22 },
};

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(arr)	(sizeof(arr) / sizeof((arr)[0]))
#endif
bool qctl_path_has_protocol(const char *name)
{
	return name[strcspn(name, ":/")] == ':';
}

char *qctl_path_combine(const char *base, const char *name)
{
	const char *slash = strrchr(base, '/');
	size_t dir_len = slash ? (size_t)(slash - base) + 1 : 0;
	size_t name_len = strlen(name);
	char *out;

	if (name[0] == '/')
		return strdup(name);
	out = malloc(dir_len + name_len + 1);
	if (!out)
		return NULL;
	memcpy(out, base, dir_len);
	memcpy(out + dir_len, name, name_len + 1);
	return out;
}

char *qctl_path_absolute(const char *path)
{
	char *cwd, *out;

	if (path[0] == '/')
		return strdup(path);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	/* "/" is the only directory that ends in a slash. */
	if (asprintf(&out, "%s/%s", cwd[1] ? cwd : "", path) < 0) {
		out = NULL;
		errno = ENOMEM;
	}
	free(cwd);
	return out;
}

const char *qctl_format_probe(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	/* qcow version 1 shares the magic; its version field says 1. */
	if (len >= 8 && !memcmp(p, "QFI\xfb", 4))
		return p[4] || p[5] || p[6] || p[7] != 1 ? "qcow2" : "qcow";
	for (i = 0; i < ARRAY_SIZE(qctl_magics); i++) {
		const struct qctl_magic *m = &qctl_magics[i];

		if (m->off + m->len <= len &&
		    !memcmp(p + m->off, m->magic, m->len))
			return m->format;
	}
	return "raw";
}

const char *qctl_chain_name(const struct qctl_chain *c, unsigned int i)
{
	return i ? c->layers[i].path : c->image;
}

/* Open a file of the chain: regular files and block devices only. */
static int qctl_open_file(const char *path, int mode, struct stat *st)
{
	int fd, fl, ret;

	fd = open(path, mode | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, st)) {
		ret = -errno;
		goto out_close;
	}
	if (S_ISDIR(st->st_mode)) {
		ret = -EISDIR;
		goto out_close;
	}
	if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		ret = -EINVAL;
		goto out_close;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		ret = -errno;
		goto out_close;
	}
	return fd;

out_close:
	close(fd);
	return ret;
}

/* Why qctl_open_file() failed, in words. */
static const char *qctl_open_strerror(int ret)
{
	return ret == -EINVAL ? "not a regular file or block device" :
	       strerror(-ret);
}

/*
 * Lock an open file of the chain as QEMU would for @writer or a reader;
 * a file system without locks is noted in @c->unlocked, not refused.
 */
static int qctl_chain_lock(struct qctl_chain *c, int fd, bool writer,
			   const struct qctl_chain_opts *opts,
			   const char *label, char *msg, size_t msg_bytes)
{
	enum qctl_lock_use use;
	int ret;

	use = writer ? QCTL_LOCK_WRITER :
	      opts->force_share ? QCTL_LOCK_SHARED_READER : QCTL_LOCK_READER;
	ret = qctl_lock_file(fd, use, label, msg, msg_bytes);
	if (ret == -EBUSY && !opts->writable && !opts->force_share) {
		size_t n = strnlen(msg, msg_bytes);

		qctl_set_msg(msg + n, msg_bytes - n,
			     " (--force-share attaches it all the same)");
	}
	if (ret != -EOPNOTSUPP && ret != -ENOLCK)
		return ret;
	if (msg_bytes)
		msg[0] = '\0';
	if (!c->unlocked) {
		c->unlocked = strdup(label);
		if (!c->unlocked)
			return -ENOMEM;
	}
	return 0;
}

static int qctl_chain_add(struct qctl_chain *c, char *path)
{
	struct qctl_layer *layers;
	unsigned int cap;

	if (c->nr == c->cap) {
		cap = c->cap ? c->cap * 2 : 4;
		layers = realloc(c->layers, cap * sizeof(*layers));
		if (!layers) {
			free(path);
			return -ENOMEM;
		}
		c->layers = layers;
		c->cap = cap;
	}
	c->layers[c->nr++] = (struct qctl_layer){
		.path = path,
		.fd = -1,
		.data_fd = -1,
	};
	return 0;
}

/*
 * "top.qcow2" for layer 0, "<layer i-1>: backing file <layer i>" below:
 * every message names the file at fault and the image that named it.
 */
static void qctl_label(const struct qctl_chain *c, unsigned int i,
		       char *buf, size_t len)
{
	if (!i)
		snprintf(buf, len, "%s", c->image);
	else
		snprintf(buf, len, "%s: backing file %s",
			 qctl_chain_name(c, i - 1), c->layers[i].path);
}

/* Format of layer @i from its parent's header, else from its magic. */
static int qctl_layer_format(struct qctl_chain *c, unsigned int i,
			     const struct qctl_image_info *parent,
			     char *msg, size_t msg_bytes)
{
	struct qctl_layer *l = &c->layers[i];
	unsigned char buf[QCTL_PROBE_BYTES];
	char label[QCTL_CHAIN_MSG_BYTES];
	const char *fmt;
	int ret;

	qctl_label(c, i, label, sizeof(label));
	if (parent->has_backing_format) {
		fmt = parent->backing_format;
	} else {
		ret = qctl_pread_full(l->fd, buf, sizeof(buf), 0);
		if (ret) {
			qctl_set_msg(msg, msg_bytes, "%s: read failed: %s",
				     label, strerror(-ret));
			return ret;
		}
		fmt = qctl_format_probe(buf, sizeof(buf));
		l->probed = true;
	}
	if (!strcmp(fmt, "qcow2")) {
		l->format = QCOW2BLK_FMT_QCOW2;
		return 0;
	}
	if (!strcmp(fmt, "raw")) {
		l->format = QCOW2BLK_FMT_RAW;
		return 0;
	}
	if (l->probed)
		qctl_set_msg(msg, msg_bytes,
			     "%s: no format named, and it looks like %s, which is not supported",
			     label, fmt);
	else
		qctl_set_msg(msg, msg_bytes,
			     "%s: format '%s' not supported (only qcow2 and raw)",
			     label, fmt);
	return -EOPNOTSUPP;
}

/* Find, open and check the backing file of layer @i as layer @i + 1. */
static int qctl_chain_backing(struct qctl_chain *c, unsigned int i,
			      const struct qctl_image_info *info,
			      const struct qctl_chain_opts *opts,
			      unsigned int max_layers, char *msg,
			      size_t msg_bytes)
{
	char label[QCTL_CHAIN_MSG_BYTES];
	struct qctl_layer *l;
	struct stat st;
	unsigned int j;
	char *path;
	int ret;

	if (qctl_path_has_protocol(info->backing_file)) {
		qctl_set_msg(msg, msg_bytes,
			     "%s: backing file '%s': protocol prefixes are not supported, only local files",
			     qctl_chain_name(c, i), info->backing_file);
		return -EOPNOTSUPP;
	}
	if (c->nr >= max_layers) {
		qctl_set_msg(msg, msg_bytes,
			     "%s: backing chain longer than %u layers",
			     c->image, max_layers);
		return -E2BIG;
	}
	path = qctl_path_combine(c->layers[i].path, info->backing_file);
	if (!path)
		return -ENOMEM;
	ret = qctl_chain_add(c, path);
	if (ret)
		return ret;

	l = &c->layers[i + 1];
	qctl_label(c, i + 1, label, sizeof(label));
	ret = qctl_open_file(l->path, O_RDONLY, &st);
	if (ret < 0) {
		qctl_set_msg(msg, msg_bytes, "%s: %s", label,
			     qctl_open_strerror(ret));
		return ret;
	}
	l->fd = ret;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	for (j = 0; j <= i; j++) {
		if (c->layers[j].dev == l->dev && c->layers[j].ino == l->ino) {
			qctl_set_msg(msg, msg_bytes,
				     "%s: backing chain loop: %s is also layer %u",
				     qctl_chain_name(c, i), l->path, j);
			return -ELOOP;
		}
	}
	ret = qctl_chain_lock(c, l->fd, false, opts, label, msg, msg_bytes);
	if (ret)
		return ret;
	return qctl_layer_format(c, i + 1, info, msg, msg_bytes);
}

/* Open the external data file of layer @i, if its header sets the bit. */
static int qctl_chain_data_file(struct qctl_chain *c, unsigned int i,
				const struct qctl_image_info *info,
				const struct qctl_chain_opts *opts,
				char *msg, size_t msg_bytes)
{
	struct qctl_layer *l = &c->layers[i];
	const char *given = i ? NULL : opts->data_file;
	const char *label = qctl_chain_name(c, i);
	char dlabel[QCTL_CHAIN_MSG_BYTES];
	const char *name;
	struct stat st;
	int ret;

	if (!info->has_data_file) {
		if (!given)
			return 0;
		qctl_set_msg(msg, msg_bytes,
			     "%s: --data-file given, but the image has no external data file",
			     label);
		return -EINVAL;
	}
	if (given) {
		name = given;
	} else if (info->has_data_file_name) {
		name = info->data_file;
		if (qctl_path_has_protocol(name)) {
			qctl_set_msg(msg, msg_bytes,
				     "%s: data file '%s': protocol prefixes are not supported, only local files",
				     label, name);
			return -EOPNOTSUPP;
		}
	} else {
		qctl_set_msg(msg, msg_bytes, i ?
			     "%s: image has an external data file but does not name it" :
			     "%s: image has an external data file but does not name it; name it with --data-file",
			     label);
		return -EINVAL;
	}

	l->data_path = qctl_path_absolute(name);
	if (!l->data_path)
		return errno ? -errno : -ENOMEM;
	ret = qctl_open_file(l->data_path,
			     !i && opts->writable ? O_RDWR : O_RDONLY, &st);
	if (ret < 0) {
		qctl_set_msg(msg, msg_bytes, "%s: data file %s: %s", label,
			     l->data_path, qctl_open_strerror(ret));
		return ret;
	}
	l->data_fd = ret;
	snprintf(dlabel, sizeof(dlabel), "%s: data file %s", label,
		 l->data_path);
	return qctl_chain_lock(c, l->data_fd, !i && opts->writable, opts,
			       dlabel, msg, msg_bytes);
}

/* Open the top image as layer 0. */
static int qctl_chain_top(struct qctl_chain *c,
			  const struct qctl_chain_opts *opts,
			  char *msg, size_t msg_bytes)
{
	struct qctl_layer *l;
	struct stat st;
	char *path;
	int ret;

	path = qctl_path_absolute(c->image);
	if (!path) {
		ret = errno ? -errno : -ENOMEM;
		qctl_set_msg(msg, msg_bytes, "%s: %s", c->image,
			     strerror(-ret));
		return ret;
	}
	ret = qctl_chain_add(c, path);
	if (ret)
		return ret;
	l = &c->layers[0];
	l->format = QCOW2BLK_FMT_QCOW2;
	ret = qctl_open_file(c->image, opts->writable ? O_RDWR : O_RDONLY,
			     &st);
	if (ret < 0) {
		qctl_set_msg(msg, msg_bytes, "%s: open failed: %s", c->image,
			     qctl_open_strerror(ret));
		return ret;
	}
	l->fd = ret;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return qctl_chain_lock(c, l->fd, opts->writable, opts, c->image, msg,
			       msg_bytes);
}

int qctl_chain_open(struct qctl_chain *c, const char *image,
		    const struct qctl_chain_opts *opts, char *msg,
		    size_t msg_bytes)
{
	static const struct qctl_chain_opts ro_opts;
	char label[QCTL_CHAIN_MSG_BYTES];
	char emsg[QCTL_CHAIN_MSG_BYTES];
	struct qctl_image_info *info;
	unsigned int max_layers;
	unsigned int i, pflags;
	const char *snapshot;
	int ret;

	memset(c, 0, sizeof(*c));
	c->image = image;
	if (msg_bytes)
		msg[0] = '\0';
	if (!opts)
		opts = &ro_opts;
	max_layers = opts->max_layers ? opts->max_layers : QCOW2BLK_MAX_LAYERS;

	info = malloc(sizeof(*info));
	if (!info)
		return -ENOMEM;
	ret = qctl_chain_top(c, opts, msg, msg_bytes);

	for (i = 0; !ret && c->layers[i].format == QCOW2BLK_FMT_QCOW2; i++) {
		pflags = opts->no_check ? QCTL_PRE_DECODE_ONLY : 0;
		if (!i && opts->writable)
			pflags |= QCTL_PRE_WRITABLE;
		snapshot = !i && !opts->no_check ? opts->snapshot : NULL;
		ret = qctl_precheck(c->layers[i].fd, pflags, snapshot, info,
				    emsg, sizeof(emsg));
		/* Unchecked: what cannot be decoded is the kernel's to judge. */
		if (ret && opts->no_check) {
			ret = 0;
			break;
		}
		if (ret) {
			qctl_label(c, i, label, sizeof(label));
			if (emsg[0])
				qctl_set_msg(msg, msg_bytes, "%s: %s", label,
					     emsg);
			else
				qctl_set_msg(msg, msg_bytes,
					     "%s: read failed: %s", label,
					     strerror(-ret));
			break;
		}
		ret = qctl_chain_data_file(c, i, info, opts, msg, msg_bytes);
		if (ret || !info->has_backing)
			break;
		ret = qctl_chain_backing(c, i, info, opts, max_layers, msg,
					 msg_bytes);
	}
	free(info);
	if (ret == -ENOMEM && msg_bytes && !msg[0])
		qctl_set_msg(msg, msg_bytes, "%s: %s", image, strerror(ENOMEM));
	return ret;
}

void qctl_chain_close(struct qctl_chain *c)
{
	unsigned int i;

	for (i = 0; i < c->nr; i++) {
		if (c->layers[i].fd >= 0)
			close(c->layers[i].fd);
		if (c->layers[i].data_fd >= 0)
			close(c->layers[i].data_fd);
		free(c->layers[i].path);
		free(c->layers[i].data_path);
	}
	free(c->layers);
	free(c->unlocked);
	c->unlocked = NULL;
	c->layers = NULL;
	c->nr = 0;
	c->cap = 0;
}

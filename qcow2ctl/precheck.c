// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl precheck: the one file that includes the engine, so its types
 * and helpers stay out of the command layer and the chain resolver.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"
#include "precheck.h"
#include "util.h"

/* Everything qcow2_header_decode() may look at. */
#define QCTL_PRECHECK_BYTES	QCOW2_MAX_CLUSTER_SIZE

/* Open options for anything qcow2ctl only reads: the smallest L2 cache. */
#define QCTL_READ_FLAGS		(QCOW2_OPEN_ALLOW_BACKING | \
				 QCOW2_OPEN_ALLOW_DATA_FILE)

static void qctl_msg(char *msg, size_t msg_bytes, const char *text)
{
	if (msg_bytes)
		snprintf(msg, msg_bytes, "%s", text);
}

static int qctl_io_pread(void *priv, void *buf, size_t len, u64 off)
{
	return qctl_pread_full(*(int *)priv, buf, len, off);
}

/*
 * Copy the name at @ref out of the header bytes @buf. Names are counted
 * byte strings on disk; one with a NUL inside would mean two different
 * files to two readers, so it is refused.
 */
static int qctl_copy_name(char *dst, size_t dst_bytes, const u8 *buf,
			  size_t buf_len, const struct qcow2_name_ref *ref,
			  const char *what, char *msg, size_t msg_bytes)
{
	if (ref->off > buf_len || ref->len > buf_len - ref->off ||
	    ref->len >= dst_bytes) {
		if (msg_bytes)
			snprintf(msg, msg_bytes, "%s name outside the header",
				 what);
		return -EUCLEAN;
	}
	if (memchr(buf + ref->off, '\0', ref->len)) {
		if (msg_bytes)
			snprintf(msg, msg_bytes, "%s name contains a NUL byte",
				 what);
		return -EINVAL;
	}
	memcpy(dst, buf + ref->off, ref->len);
	dst[ref->len] = '\0';
	return 0;
}

static int qctl_fill_info(struct qctl_image_info *info, const u8 *buf,
			  size_t len, const struct qcow2_header *h,
			  char *msg, size_t msg_bytes)
{
	int ret = 0;

	/* Every name the engine accepts fits, NUL included. */
	QCOW2_BUILD_BUG_ON(QCOW2_MAX_BACKING_NAME >= QCTL_IMAGE_NAME_BYTES);
	QCOW2_BUILD_BUG_ON(QCOW2_MAX_DATA_FILE_NAME >= QCTL_IMAGE_NAME_BYTES);
	QCOW2_BUILD_BUG_ON(QCOW2_MAX_FORMAT_NAME >= QCTL_FORMAT_NAME_BYTES);
	memset(info, 0, sizeof(*info));
	info->nb_snapshots = h->nb_snapshots;
	info->has_data_file = h->incompatible_features &
			      QCOW2_INCOMPAT_DATA_FILE;
	if (h->backing_file.off) {
		info->has_backing = true;
		ret = qctl_copy_name(info->backing_file,
				     sizeof(info->backing_file), buf, len,
				     &h->backing_file, "backing file", msg,
				     msg_bytes);
	}
	if (!ret && h->backing_format.off) {
		info->has_backing_format = true;
		ret = qctl_copy_name(info->backing_format,
				     sizeof(info->backing_format), buf, len,
				     &h->backing_format, "backing format", msg,
				     msg_bytes);
	}
	if (!ret && h->data_file.off && h->data_file.len) {
		info->has_data_file_name = true;
		ret = qctl_copy_name(info->data_file, sizeof(info->data_file),
				     buf, len, &h->data_file, "data file", msg,
				     msg_bytes);
	}
	return ret;
}

/* Open @fd with the engine, read-only; the caller closes @img. */
static int qctl_image_open(int fd, int *fdp, struct qcow2_image *img,
			   const char *snapshot, char *msg, size_t msg_bytes)
{
	struct qcow2_open_opts opts = {
		.flags = QCTL_READ_FLAGS,
		.l2_cache_bytes = 1,
		.snapshot = snapshot,
	};
	struct qcow2_err err = { .msg = "" };
	struct qcow2_io io = { .pread = qctl_io_pread, .priv = fdp };
	off_t file_size;
	int ret;

	*fdp = fd;
	file_size = lseek(fd, 0, SEEK_END);
	if (file_size < 0)
		return -errno;
	memset(img, 0, sizeof(*img));
	ret = qcow2_image_open(img, &io, file_size, &opts, &err);
	if (ret)
		qctl_msg(msg, msg_bytes, err.msg[0] ? err.msg : strerror(-ret));
	return ret;
}

int qctl_precheck(int fd, unsigned int flags, const char *snapshot,
		  struct qctl_image_info *info, char *msg, size_t msg_bytes)
{
	u64 open_flags = QCTL_READ_FLAGS;
	struct qcow2_err err = { .msg = "" };
	struct qcow2_image img;
	struct qcow2_header h;
	off_t file_size;
	int img_fd;
	size_t len;
	void *buf;
	int ret;

	if (msg_bytes)
		msg[0] = '\0';
	if (flags & QCTL_PRE_WRITABLE)
		open_flags |= QCOW2_OPEN_WRITABLE;
	/* lseek() sizes block devices as well as regular files. */
	file_size = lseek(fd, 0, SEEK_END);
	if (file_size < 0)
		return -errno;
	len = min_t(u64, file_size, QCTL_PRECHECK_BYTES);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	ret = qctl_pread_full(fd, buf, len, 0);
	if (ret)
		goto out_free;

	ret = qcow2_header_decode(buf, len, file_size, &h, &err);
	if (!ret && !(flags & QCTL_PRE_DECODE_ONLY))
		ret = qcow2_header_check_supported(&h, open_flags, &err);
	if (ret) {
		qctl_msg(msg, msg_bytes, err.msg[0] ? err.msg : strerror(-ret));
		goto out_free;
	}
	ret = qctl_fill_info(info, buf, len, &h, msg, msg_bytes);
	if (ret || !snapshot)
		goto out_free;

	/* The snapshot table and the snapshot's L1 table, as the kernel. */
	ret = qctl_image_open(fd, &img_fd, &img, snapshot, msg, msg_bytes);
	if (!ret)
		qcow2_image_close(&img);

out_free:
	free(buf);
	return ret;
}

struct qctl_walk {
	int (*fn)(void *arg, const struct qctl_snapshot *s);
	void *arg;
};

static int qctl_walk_one(void *arg, const struct qcow2_snapshot *s)
{
	struct qctl_walk *w = arg;
	struct qctl_snapshot out;

	QCOW2_BUILD_BUG_ON(QCOW2_SNAPSHOT_STR_BYTES != QCTL_SNAP_STR_BYTES);
	out = (struct qctl_snapshot){
		.vm_state_size = s->vm_state_size,
		.disk_size = s->disk_size,
		.date_sec = s->date_sec,
		.date_nsec = s->date_nsec,
		.vm_clock_nsec = s->vm_clock_nsec,
	};

	memcpy(out.id, s->id, sizeof(out.id));
	memcpy(out.name, s->name, sizeof(out.name));
	return w->fn(w->arg, &out);
}

int qctl_snapshot_walk(int fd,
		       int (*fn)(void *arg, const struct qctl_snapshot *s),
		       void *arg, char *msg, size_t msg_bytes)
{
	struct qctl_walk w = { .fn = fn, .arg = arg };
	struct qcow2_err err = { .msg = "" };
	struct qcow2_image img;
	int img_fd;
	int ret;

	if (msg_bytes)
		msg[0] = '\0';
	ret = qctl_image_open(fd, &img_fd, &img, NULL, msg, msg_bytes);
	if (ret)
		return ret;
	ret = qcow2_snapshot_walk(&img, qctl_walk_one, &w, &err);
	if (ret < 0 && err.msg[0])
		qctl_msg(msg, msg_bytes, err.msg);
	qcow2_image_close(&img);
	return ret;
}

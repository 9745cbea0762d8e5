// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl precheck: the one file that includes the engine, so its types
 * and helpers stay out of the command layer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"
#include "precheck.h"

/* Everything qcow2_header_decode() may look at. */
#define QCTL_PRECHECK_BYTES	QCOW2_MAX_CLUSTER_SIZE

static int qctl_read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done, done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return -EIO;	/* shrank under us */
		done += n;
	}
	return 0;
}

int qctl_precheck(int fd, bool writable, char *msg, size_t msg_bytes)
{
	u64 open_flags = writable ? QCOW2_OPEN_WRITABLE : 0;
	struct qcow2_header h;
	struct qcow2_err err = { .msg = "" };
	off_t file_size;
	size_t len;
	void *buf;
	int ret;

	if (msg_bytes)
		msg[0] = '\0';
	/* lseek() sizes block devices as well as regular files. */
	file_size = lseek(fd, 0, SEEK_END);
	if (file_size < 0)
		return -errno;
	len = min_t(u64, file_size, QCTL_PRECHECK_BYTES);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	ret = qctl_read_full(fd, buf, len);
	if (ret)
		goto out_free;

	ret = qcow2_header_decode(buf, len, file_size, &h, &err);
	if (!ret)
		ret = qcow2_header_check_supported(&h, open_flags, &err);
	if (ret && msg_bytes)
		snprintf(msg, msg_bytes, "%s",
			 err.msg[0] ? err.msg : strerror(-ret));

out_free:
	free(buf);
	return ret;
}

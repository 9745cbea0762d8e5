// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl argument parsing. Strict on purpose: a size or a device name that
 * is not exactly understood is an error rather than a guess.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "qcow2blk.h"
#include "util.h"

/* Leading decimal digits of @s into @v; @end past them. */
static int qctl_parse_digits(const char *s, __u64 *v, const char **end)
{
	__u64 n = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		if (n > (~0ULL - (*s - '0')) / 10)
			return -ERANGE;
		n = n * 10 + (*s - '0');
	}
	*v = n;
	*end = s;
	return 0;
}

int qctl_parse_size(const char *s, __u64 *bytes)
{
	static const char suffixes[] = "KMGT";
	const char *end, *p;
	unsigned int shift;
	__u64 n;
	int ret;

	ret = qctl_parse_digits(s, &n, &end);
	if (ret)
		return ret;
	if (!*end) {
		*bytes = n;
		return 0;
	}
	p = strchr(suffixes, toupper((unsigned char)*end));
	if (!p)
		return -EINVAL;
	if (end[1] && strcasecmp(end + 1, "iB"))
		return -EINVAL;
	shift = 10 * (p - suffixes + 1);
	if (n > (~0ULL >> shift))
		return -ERANGE;
	*bytes = n << shift;
	return 0;
}

int qctl_parse_u32(const char *s, __u32 *v)
{
	const char *end;
	__u64 n;
	int ret;

	ret = qctl_parse_digits(s, &n, &end);
	if (ret)
		return ret;
	if (*end)
		return -EINVAL;
	if (n > UINT_MAX)
		return -ERANGE;
	*v = n;
	return 0;
}

/* "qcowN" or "/dev/qcowN" */
static int qctl_parse_name(const char *s, __u32 *index)
{
	if (!strncmp(s, "/dev/", 5))
		s += 5;
	if (strncmp(s, QCOW2BLK_DISK_PREFIX, strlen(QCOW2BLK_DISK_PREFIX)))
		return -EINVAL;
	return qctl_parse_u32(s + strlen(QCOW2BLK_DISK_PREFIX), index);
}

int qctl_parse_dev(const char *arg, __u32 *index)
{
	char *real;
	int ret;

	if (isdigit((unsigned char)*arg))
		return qctl_parse_u32(arg, index);
	ret = qctl_parse_name(arg, index);
	if (ret != -EINVAL || !strchr(arg, '/'))
		return ret;

	real = realpath(arg, NULL);
	if (!real)
		return -EINVAL;
	ret = strncmp(real, "/dev/", 5) ? -EINVAL :
	      qctl_parse_name(real, index);
	free(real);
	return ret;
}

int qctl_pread_full(int fd, void *buf, size_t len, __u64 off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done, off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			break;
		done += n;
	}
	memset((char *)buf + done, 0, len - done);
	return 0;
}

void qctl_set_msg(char *msg, size_t msg_bytes, const char *fmt, ...)
{
	va_list ap;

	if (!msg_bytes)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msg_bytes, fmt, ap);
	va_end(ap);
}

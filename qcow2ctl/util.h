/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl argument parsing: sizes and device names. Returns -errno, never
 * prints.
 */
#ifndef QCOW2CTL_UTIL_H
#define QCOW2CTL_UTIL_H

#include <linux/types.h>

/*
 * qctl_parse_size() - "4096", "64K", "8MiB", "1g"
 *
 * Binary suffixes K, M, G, T (any case), optionally followed by "iB".
 * Return: 0, -EINVAL (not a size) or -ERANGE (above 2^64 - 1).
 */
int qctl_parse_size(const char *s, __u64 *bytes);

/* qctl_parse_u32() - plain decimal. Return: 0, -EINVAL or -ERANGE. */
int qctl_parse_u32(const char *s, __u32 *v);

/*
 * qctl_parse_dev() - index of "/dev/qcowN", "qcowN", "N", or of a path
 * (a udev symlink) that resolves to /dev/qcowN
 *
 * Return: 0, -EINVAL (names no qcow2blk device) or -ERANGE.
 */
int qctl_parse_dev(const char *arg, __u32 *index);

#endif /* QCOW2CTL_UTIL_H */

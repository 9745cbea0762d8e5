/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl argument parsing: sizes and device names. Returns -errno, never
 * prints.
 */
#ifndef QCOW2CTL_UTIL_H
#define QCOW2CTL_UTIL_H

#include <stddef.h>
#include <linux/types.h>

/**
 * qctl_parse_size() - parse "4096", "64K", "8MiB", "1g"
 * @s: decimal digits, then optionally K, M, G or T (any case, binary),
 *     then optionally "iB"
 * @bytes: the size
 *
 * Return: 0, -EINVAL (not a size) or -ERANGE (above 2^64 - 1).
 */
int qctl_parse_size(const char *s, __u64 *bytes);

/**
 * qctl_parse_u32() - parse plain decimal digits
 * @s: the digits, nothing else
 * @v: the value
 *
 * Return: 0, -EINVAL or -ERANGE.
 */
int qctl_parse_u32(const char *s, __u32 *v);

/**
 * qctl_parse_dev() - device index named by a command line argument
 * @arg: "/dev/qcowN", "qcowN", "N", or a path (a udev symlink) that
 *       resolves to /dev/qcowN
 * @index: N
 *
 * Return: 0, -EINVAL (names no qcow2blk device) or -ERANGE.
 */
int qctl_parse_dev(const char *arg, __u32 *index);

/**
 * qctl_pread_full() - read @len bytes at @off, retrying short reads
 * @fd: open file
 * @buf: destination
 * @len: bytes
 * @off: file offset
 *
 * Bytes past the end of the file read as zero.
 *
 * Return: 0 or -errno.
 */
int qctl_pread_full(int fd, void *buf, size_t len, __u64 off);

/**
 * qctl_set_msg() - format a message into a caller's buffer
 * @msg: the buffer; left alone when @msg_bytes is 0
 * @msg_bytes: its size
 * @fmt: printf format
 */
void qctl_set_msg(char *msg, size_t msg_bytes, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* QCOW2CTL_UTIL_H */

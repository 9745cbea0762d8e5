/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl precheck: the shared qcow2 engine judges an image's header before
 * the kernel is asked to attach it, so refusals name the reason even when
 * the module is missing. Returns -errno, never prints.
 */
#ifndef QCOW2CTL_PRECHECK_H
#define QCOW2CTL_PRECHECK_H

#include <stdbool.h>
#include <stddef.h>

/**
 * qctl_precheck() - decode the header of the image open on @fd
 * @fd: the image, a regular file or a block device
 * @writable: refuse what the engine cannot serve writable
 * @msg: the engine's reason when it refuses the image, else ""
 * @msg_bytes: size of @msg
 *
 * Reads the first min(file size, 2 MiB) bytes with pread().
 *
 * Return: 0; the engine's -EINVAL, -EUCLEAN or -EOPNOTSUPP with @msg set;
 * -EIO, -ENOMEM or another -errno of reading @fd with @msg empty.
 */
int qctl_precheck(int fd, bool writable, char *msg, size_t msg_bytes);

#endif /* QCOW2CTL_PRECHECK_H */

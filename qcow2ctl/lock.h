/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl image locks: the byte-range locks QEMU's file-posix driver takes
 * on image files, taken the same way on the files qcow2ctl hands the
 * kernel, so that QEMU and qcow2blk see each other. Returns -errno and a
 * message, never prints.
 */
#ifndef QCOW2CTL_LOCK_H
#define QCOW2CTL_LOCK_H

#include <stddef.h>

/*
 * QEMU's block permissions, as bits; bit i is locked at byte 100 + i by a
 * user that holds the permission and at byte 200 + i by a user that
 * refuses to share it with others.
 */
#define QCTL_PERM_CONSISTENT_READ	0x1u
#define QCTL_PERM_WRITE			0x2u
#define QCTL_PERM_WRITE_UNCHANGED	0x4u
#define QCTL_PERM_RESIZE		0x8u
#define QCTL_PERM_ALL			0xfu

#define QCTL_LOCK_PERM_BASE		100
#define QCTL_LOCK_SHARED_BASE		200

/*
 * What a qcow2blk layer asks of its file, as QEMU asks it of the same
 * file opened for the same use.
 */
enum qctl_lock_use {
	/*
	 * Top image opened for writing: read, write and grow it; let others
	 * only read it or write what does not change it.
	 */
	QCTL_LOCK_WRITER,
	/*
	 * Top image read-only, backing layers, their data files: read a
	 * consistent image; refuse writers and resizers.
	 */
	QCTL_LOCK_READER,
	/* Read-only with --force-share: read, refuse nobody. */
	QCTL_LOCK_SHARED_READER,
};

/**
 * qctl_lock_file() - take QEMU's image locks on an open file
 * @fd: the open file; the locks are open-file-description (OFD) locks, so
 *      they last as long as the file, in the kernel too, and end with it
 * @use: what the layer does with it
 * @name: the file as messages name it
 * @msg: on conflict, who holds what and what to do
 * @msg_bytes: size of @msg
 *
 * Like QEMU, the shared locks are set first and the conflicting ones
 * tested after, so that of two openers racing at least one sees the
 * other. On a conflict the locks taken here are dropped again.
 *
 * Return: 0; -EBUSY (another process holds a conflicting lock: @msg says
 * which); -ENOLCK or -EOPNOTSUPP (the file system has no OFD locks: the
 * caller decides); another -errno from fcntl().
 */
int qctl_lock_file(int fd, enum qctl_lock_use use, const char *name,
		   char *msg, size_t msg_bytes);

/**
 * qctl_lock_perm_name() - QEMU's name of a permission bit
 * @bit: one QCTL_PERM_* bit
 *
 * Return: "consistent read", "write", "write unchanged" or "resize".
 */
const char *qctl_lock_perm_name(unsigned int bit);

#endif /* QCOW2CTL_LOCK_H */

// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl image locks, as QEMU's file-posix driver takes them (its
 * "locking=auto" with OFD locks): for each permission a user holds, a
 * shared lock on byte 100 + bit; for each permission it refuses to share,
 * a shared lock on byte 200 + bit. A new user first sets its own locks,
 * then tests, with an exclusive F_OFD_GETLK, the bytes that would
 * conflict: 200 + bit for what it wants, 100 + bit for what it refuses.
 * Locks of the same open file description never conflict with each other.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lock.h"
#include "util.h"

#ifndef F_OFD_GETLK
#define F_OFD_GETLK	36
#define F_OFD_SETLK	37
#endif

static const char *const qctl_perm_names[] = {
	"consistent read", "write", "write unchanged", "resize",
};

const char *qctl_lock_perm_name(unsigned int bit)
{
	unsigned int i;

	for (i = 0; i < 4; i++)
		if (bit == 1u << i)
			return qctl_perm_names[i];
	return "unknown";
}

/* The permissions a use holds and the ones it lets others hold. */
static void qctl_lock_perms(enum qctl_lock_use use, unsigned int *perm,
			    unsigned int *shared)
{
	switch (use) {
	case QCTL_LOCK_WRITER:
		*perm = QCTL_PERM_CONSISTENT_READ | QCTL_PERM_WRITE |
			QCTL_PERM_RESIZE;
		*shared = QCTL_PERM_CONSISTENT_READ |
			  QCTL_PERM_WRITE_UNCHANGED;
		break;
	case QCTL_LOCK_READER:
		*perm = QCTL_PERM_CONSISTENT_READ;
		*shared = QCTL_PERM_CONSISTENT_READ |
			  QCTL_PERM_WRITE_UNCHANGED;
		break;
	case QCTL_LOCK_SHARED_READER:
	default:
		*perm = QCTL_PERM_CONSISTENT_READ;
		*shared = QCTL_PERM_ALL;
		break;
	}
}

static int qctl_lock_byte(int fd, short type, off_t off, off_t len)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = off,
		.l_len = len,
	};

	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/* 1: another open file holds a lock on byte @off; 0: none; or -errno. */
static int qctl_lock_test(int fd, off_t off)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = off,
		.l_len = 1,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl))
		return -errno;
	return fl.l_type != F_UNLCK;
}

int qctl_lock_file(int fd, enum qctl_lock_use use, const char *name,
		   char *msg, size_t msg_bytes)
{
	unsigned int perm, shared, bit, i;
	int ret;

	qctl_lock_perms(use, &perm, &shared);
	for (i = 0; i < 4; i++) {
		bit = 1u << i;
		if (perm & bit) {
			ret = qctl_lock_byte(fd, F_RDLCK,
					     QCTL_LOCK_PERM_BASE + i, 1);
			if (ret)
				goto fail_set;
		}
		if (!(shared & bit)) {
			ret = qctl_lock_byte(fd, F_RDLCK,
					     QCTL_LOCK_SHARED_BASE + i, 1);
			if (ret)
				goto fail_set;
		}
	}

	for (i = 0; i < 4; i++) {
		bit = 1u << i;
		if (perm & bit) {
			ret = qctl_lock_test(fd, QCTL_LOCK_SHARED_BASE + i);
			if (ret > 0) {
				qctl_set_msg(msg, msg_bytes,
					     "%s: image is locked by another process, which does not share \"%s\": is a VM or qemu-img using it?",
					     name, qctl_perm_names[i]);
				ret = -EBUSY;
			}
			if (ret)
				goto fail_test;
		}
		if (!(shared & bit)) {
			ret = qctl_lock_test(fd, QCTL_LOCK_PERM_BASE + i);
			if (ret > 0) {
				qctl_set_msg(msg, msg_bytes,
					     "%s: image is locked by another process, which holds it for \"%s\": is a VM or qemu-img using it?",
					     name, qctl_perm_names[i]);
				ret = -EBUSY;
			}
			if (ret)
				goto fail_test;
		}
	}
	return 0;

fail_set:
	qctl_set_msg(msg, msg_bytes, "%s: cannot lock the image: %s", name,
		     strerror(-ret));
	if (ret == -EINVAL)
		ret = -EOPNOTSUPP;
	goto out_unlock;
fail_test:
	if (ret != -EBUSY)
		qctl_set_msg(msg, msg_bytes,
			     "%s: cannot test the image locks: %s", name,
			     strerror(-ret));
out_unlock:
	/* Only this open file's own locks go. */
	qctl_lock_byte(fd, F_UNLCK, QCTL_LOCK_PERM_BASE,
		       QCTL_LOCK_SHARED_BASE + 100 - QCTL_LOCK_PERM_BASE);
	return ret;
}

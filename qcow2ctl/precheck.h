/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl precheck: the shared qcow2 engine judges an image's header before
 * the kernel is asked to attach it, so refusals name the reason even when
 * the module is missing, and reports what the chain resolver needs (backing
 * file, data file) and the snapshot table. Returns -errno, never prints.
 */
#ifndef QCOW2CTL_PRECHECK_H
#define QCOW2CTL_PRECHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

/* Room for the longest backing or data file name the engine accepts. */
#define QCTL_IMAGE_NAME_BYTES	1024
/* Room for the longest backing format name the engine accepts. */
#define QCTL_FORMAT_NAME_BYTES	16
/* Room for a snapshot ID or name as the engine reports it. */
#define QCTL_SNAP_STR_BYTES	128

/* qctl_precheck() flags */
#define QCTL_PRE_WRITABLE	0x1U	/* the image will be written */
#define QCTL_PRE_DECODE_ONLY	0x2U	/* names only, judge nothing */

/* What one qcow2 image names, from its header. */
struct qctl_image_info {
	bool has_backing;			/* names a backing file */
	char backing_file[QCTL_IMAGE_NAME_BYTES];	/* as stored */
	bool has_backing_format;		/* backing format extension */
	char backing_format[QCTL_FORMAT_NAME_BYTES];	/* as stored */
	bool has_data_file;			/* data-file incompatible bit */
	bool has_data_file_name;		/* data file name extension */
	char data_file[QCTL_IMAGE_NAME_BYTES];	/* as stored, "" if none */
	__u32 nb_snapshots;			/* internal snapshots */
};

/**
 * qctl_precheck() - decode and judge the header of the image open on @fd
 * @fd: the image, a regular file or a block device
 * @flags: QCTL_PRE_*
 * @snapshot: ID or name of a snapshot that must exist (the image is then
 *            opened with the engine at that snapshot); NULL for none
 * @info: what the header names, valid when 0 is returned
 * @msg: the engine's reason when it refuses the image, else ""
 * @msg_bytes: size of @msg
 *
 * Reads the first min(file size, 2 MiB) bytes with pread(). Backing files
 * and external data files are accepted; encryption, the corrupt bit,
 * unknown features and (with QCTL_PRE_WRITABLE) the dirty bit are not.
 * With QCTL_PRE_DECODE_ONLY only the decoding itself can fail.
 *
 * Context: process; blocks on reads of @fd.
 * Return: 0; the engine's -EINVAL, -EUCLEAN, -EOPNOTSUPP or -ENOENT (no
 * such snapshot) with @msg set; -EIO, -ENOMEM or another -errno of reading
 * @fd with @msg empty.
 */
int qctl_precheck(int fd, unsigned int flags, const char *snapshot,
		  struct qctl_image_info *info, char *msg, size_t msg_bytes);

/* One internal snapshot, as qctl_snapshot_walk() reports it. */
struct qctl_snapshot {
	char id[QCTL_SNAP_STR_BYTES];	/* printable, truncated */
	char name[QCTL_SNAP_STR_BYTES];	/* printable, truncated */
	__u64 vm_state_size;		/* bytes */
	__u64 disk_size;		/* virtual size at the snapshot, bytes */
	__u32 date_sec;			/* seconds since the epoch */
	__u32 date_nsec;
	__u64 vm_clock_nsec;		/* guest clock, nanoseconds */
};

/**
 * qctl_snapshot_walk() - call @fn for every internal snapshot of an image
 * @fd: the image, opened read-only is enough
 * @fn: called once per snapshot, in table order; non-zero stops the walk
 * @arg: passed to @fn
 * @msg: the engine's reason when it refuses the image or its table
 * @msg_bytes: size of @msg
 *
 * Context: process; blocks on reads of @fd.
 * Return: 0, @fn's non-zero value, or -errno as qctl_precheck().
 */
int qctl_snapshot_walk(int fd,
		       int (*fn)(void *arg, const struct qctl_snapshot *s),
		       void *arg, char *msg, size_t msg_bytes);

#endif /* QCOW2CTL_PRECHECK_H */

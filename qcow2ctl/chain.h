/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl chain resolver: from a top image, find and open every backing
 * file and external data file the way QEMU finds them, so the kernel gets
 * open files and never a path. Returns -errno and a message, never prints.
 */
#ifndef QCOW2CTL_CHAIN_H
#define QCOW2CTL_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <linux/types.h>

#define QCTL_CHAIN_MSG_BYTES	1024

/* One layer of a chain: layer 0 is the top image, the last one the base. */
struct qctl_layer {
	char *path;		/* absolute path as resolved, malloc()ed */
	int fd;			/* open image; top: as asked, else O_RDONLY */
	__u32 format;		/* QCOW2BLK_FMT_* */
	bool probed;		/* no format named: guessed from the magic */
	char *data_path;	/* absolute external data file path, or NULL */
	int data_fd;		/* open data file, -1 when none */
	dev_t dev;		/* st_dev of the image, for loop detection */
	ino_t ino;		/* st_ino of the image */
};

struct qctl_chain {
	const char *image;		/* the top image as the user named it */
	struct qctl_layer *layers;	/* [0] top, malloc()ed */
	unsigned int nr;		/* layers in use */
	unsigned int cap;		/* layers allocated */
	char *unlocked;			/* first file without locks, or NULL */
};

struct qctl_chain_opts {
	bool writable;		/* open the top and its data file read-write */
	const char *data_file;	/* top's data file, overrides its header */
	const char *snapshot;	/* the top's snapshot must exist */
	bool no_check;		/* only decode headers; the kernel judges */
	bool force_share;	/* read-only: refuse no other user (qemu -U) */
	unsigned int max_layers; /* 0: QCOW2BLK_MAX_LAYERS */
};

/**
 * qctl_chain_open() - open an image and every file it depends on
 * @c: the chain; zeroed here, release with qctl_chain_close() even on error
 * @image: path of the top image
 * @opts: how to open it; NULL: read-only
 * @msg: on failure, the file at fault and why, in the form
 *       "top.qcow2: backing file /abs/base.qcow2: No such file or directory"
 * @msg_bytes: size of @msg
 *
 * Backing file names are resolved as QEMU resolves them: absolute names as
 * they are, relative names against the directory of the image that names
 * them; names with a protocol prefix (json:, nbd: ...) are refused. The
 * backing format extension is honoured (qcow2 and raw); without it the
 * format is probed from the first bytes, qcow2 or raw, and the layer is
 * marked probed. External data file names are opened as QEMU opens them,
 * relative to the current directory. Backing layers and their data files
 * are opened read-only.
 *
 * Every file is locked as soon as it is open, as QEMU locks it for the
 * same use (lock.h), so a conflict with a VM or a QEMU tool is found
 * before anything is read or written; the locks stay with the open files
 * and so with the kernel after the attach. A file system without OFD
 * locks is not an error: @c->unlocked names the first such file.
 *
 * Context: process; opens files and reads their headers.
 * Return: 0; -EBUSY (a file is locked by another user); -ENOENT,
 * -EACCES, -EISDIR ... (a file could not be opened),
 * -ELOOP (a layer repeats), -E2BIG (too many layers), -EOPNOTSUPP
 * (protocol, format or feature not supported), -EINVAL, -EUCLEAN (the
 * engine refused a header), -ENOMEM.
 */
int qctl_chain_open(struct qctl_chain *c, const char *image,
		    const struct qctl_chain_opts *opts, char *msg,
		    size_t msg_bytes);

/** qctl_chain_close() - close every file and free @c; safe twice */
void qctl_chain_close(struct qctl_chain *c);

/**
 * qctl_chain_name() - layer @i as messages name it
 * @c: chain
 * @i: layer index
 *
 * Return: the image as the user named it for layer 0, else the path.
 */
const char *qctl_chain_name(const struct qctl_chain *c, unsigned int i);

/**
 * qctl_path_has_protocol() - does @name start with a QEMU protocol prefix?
 * @name: a file name from an image header
 *
 * QEMU reads "proto:rest" as a protocol when the colon comes before any
 * slash: "nbd:host:10809", "json:{...}", but not "./a:b" or "/a:b".
 *
 * Return: true if it does.
 */
bool qctl_path_has_protocol(const char *name);

/**
 * qctl_path_combine() - @name relative to the directory of @base
 * @base: path of the image that names @name
 * @name: the name stored in its header
 *
 * An absolute @name is returned as it is; otherwise everything of @base up
 * to and including its last slash is put in front of @name ("d/top.qcow2"
 * and "base.qcow2" give "d/base.qcow2"; no slash in @base leaves @name as
 * it is). No normalisation, no symlink resolution, like QEMU.
 *
 * Return: a malloc()ed path or NULL (out of memory).
 */
char *qctl_path_combine(const char *base, const char *name);

/**
 * qctl_path_absolute() - @path prefixed with the current directory
 * @path: a path; returned as a copy if already absolute
 *
 * Return: a malloc()ed path or NULL with errno set.
 */
char *qctl_path_absolute(const char *path);

/**
 * qctl_format_probe() - what the first bytes of a file look like
 * @buf: the first bytes of the file
 * @len: bytes in @buf (512 is enough)
 *
 * Return: "qcow2", "raw" (nothing recognised), or the QEMU name of another
 * image format whose magic is there ("vmdk", "qed", ...).
 */
const char *qctl_format_probe(const void *buf, size_t len);

#endif /* QCOW2CTL_CHAIN_H */

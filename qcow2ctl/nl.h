/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qcow2ctl netlink library: the requests of the "qcow2blk" generic netlink
 * family (uapi/qcow2blk.h). Every function returns 0 or -errno and never
 * prints; when the kernel explains a failure in its extended ack, the text
 * is kept until the next request and returned by qctl_nl_errmsg().
 */
#ifndef QCOW2CTL_NL_H
#define QCOW2CTL_NL_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

#define QCTL_DISK_NAME_BYTES	32
#define QCTL_PATH_BYTES		4096
#define QCTL_ERRMSG_BYTES	256
#define QCTL_SNAPSHOT_BYTES	1024

struct qctl_nl;

/* One layer of an attached device's chain, as the kernel reports it. */
struct qctl_dev_layer {
	char *path;			/* image file, malloc()ed */
	bool has_format;		/* format reported */
	__u32 format;			/* QCOW2BLK_FMT_* */
	char *data_path;		/* external data file or NULL */
};

/* One device, as ATTACH, GET and SET report it. */
struct qctl_dev {
	__u64 present;			/* BIT(QCOW2BLK_ATTR_*) received */
	__u32 index;			/* N of /dev/qcowN */
	char disk_name[QCTL_DISK_NAME_BYTES];	/* "qcow0" */
	char image_path[QCTL_PATH_BYTES];	/* as the kernel sees it */
	__u64 virtual_size;		/* bytes */
	__u32 cluster_size;		/* bytes */
	__u32 format_version;		/* 2 or 3 */
	__u64 state;			/* QCOW2BLK_S_* */
	__u64 flags;			/* QCOW2BLK_F_* given at attach */
	__u64 l2_cache_bytes;		/* bytes */
	__u64 rc_cache_bytes;		/* bytes; writable devices only */
	__u32 sector_size;		/* logical block size, bytes */
	char snapshot[QCTL_SNAPSHOT_BYTES];	/* attached snapshot */
	struct qctl_dev_layer *chain;	/* every layer, top first; malloc()ed */
	unsigned int nr_chain;		/* entries in @chain */
};

/* True when the kernel sent attribute @attr (QCOW2BLK_ATTR_*) for @dev. */
static inline bool qctl_dev_has(const struct qctl_dev *dev, int attr)
{
	return dev->present & (1ULL << attr);
}

/* A backing layer to attach: open files, the kernel takes refs. */
struct qctl_attach_layer {
	int fd;				/* image file */
	__u32 format;			/* QCOW2BLK_FMT_* */
	int data_fd;			/* external data file, -1: none */
};

struct qctl_attach_req {
	int fd;				/* open image; the kernel takes a ref */
	int data_fd;			/* its external data file, -1: none */
	__u64 flags;			/* QCOW2BLK_F_* */
	bool has_l2_cache;		/* send l2_cache_bytes */
	__u64 l2_cache_bytes;		/* bytes, 0: minimum */
	bool has_map_cache;		/* send map_cache_bytes */
	__u64 map_cache_bytes;		/* bytes */
	bool has_rc_cache;		/* send rc_cache_bytes (writable) */
	__u64 rc_cache_bytes;		/* bytes */
	__u32 sector_size;		/* logical block size; 0: default */
	bool has_index;			/* ask for /dev/qcow<index> */
	__u32 index;
	const char *snapshot;		/* ID or name, NULL: active layer */
	/* below the top: its backing file first, the base last */
	const struct qctl_attach_layer *backing;
	unsigned int nr_backing;
};

/**
 * qctl_dev_release() - free what qctl_nl_*() allocated inside @dev
 * @dev: a device filled by this library; its chain is emptied
 */
void qctl_dev_release(struct qctl_dev *dev);

/** qctl_devs_free() - release @nr devices and free the array @devs */
void qctl_devs_free(struct qctl_dev *devs, size_t nr);

/**
 * qctl_nl_open() - connect to generic netlink and resolve the family
 * @nlp: the new handle, for qctl_nl_close()
 *
 * Resolving the family loads the module if it is installed but not loaded
 * (MODULE_ALIAS_GENL_FAMILY).
 *
 * Context: process; blocks on the socket.
 * Return: 0, -ENOENT (family not registered: module not loaded), -ENOMEM
 * or another -errno of the socket.
 */
int qctl_nl_open(struct qctl_nl **nlp);

/** qctl_nl_close() - close the socket and free @nl; NULL is a no-op */
void qctl_nl_close(struct qctl_nl *nl);

/**
 * qctl_nl_errmsg() - the kernel's explanation of the last failed request
 * @nl: handle
 *
 * Return: the extended ack text, "" if the kernel sent none. Valid until the
 * next request on @nl.
 */
const char *qctl_nl_errmsg(const struct qctl_nl *nl);

/**
 * qctl_nl_attach() - attach the image open on @req->fd
 * @nl: handle
 * @req: what to attach and how
 * @dev: the new device; @dev->present is 0 if the kernel attached it but
 *       could not describe it. Release it with qctl_dev_release().
 *
 * Context: process; needs CAP_SYS_ADMIN.
 * Return: 0 or the kernel's -errno (see qctl_nl_errmsg() for why).
 */
int qctl_nl_attach(struct qctl_nl *nl, const struct qctl_attach_req *req,
		   struct qctl_dev *dev);

/**
 * qctl_nl_detach() - detach /dev/qcow<@index>
 * @nl: handle
 * @index: device index
 *
 * Context: process; needs CAP_SYS_ADMIN.
 * Return: 0, -ENODEV, -EBUSY (device open) or another -errno.
 */
int qctl_nl_detach(struct qctl_nl *nl, __u32 index);

/**
 * qctl_nl_get() - describe /dev/qcow<@index>
 * @nl: handle
 * @index: device index
 * @dev: the description; release it with qctl_dev_release()
 *
 * Context: process; open to every user.
 * Return: 0, -ENODEV, -EPROTO (acked without a description) or another
 * -errno.
 */
int qctl_nl_get(struct qctl_nl *nl, __u32 index, struct qctl_dev *dev);

/* What SET changes; at least one of them. */
struct qctl_set_req {
	bool has_l2_cache;		/* resize the L2 cache */
	__u64 l2_cache_bytes;		/* bytes; the kernel rounds, clamps */
	bool has_rc_cache;		/* resize the refcount cache */
	__u64 rc_cache_bytes;		/* bytes; writable devices only */
};

/**
 * qctl_nl_set() - resize the caches of an attached device
 * @nl: handle
 * @index: device index
 * @sreq: the new sizes
 * @dev: the device after the change; release it with qctl_dev_release()
 *
 * Context: process; needs CAP_SYS_ADMIN.
 * Return: 0, -EINVAL (nothing to set, or the refcount cache of a
 * read-only device), -ENODEV, -ENOMEM, -EPROTO (acked without a
 * description) or another -errno.
 */
int qctl_nl_set(struct qctl_nl *nl, __u32 index,
		const struct qctl_set_req *sreq, struct qctl_dev *dev);

/**
 * qctl_nl_features() - what the running module accepts
 * @nl: handle
 * @version: its QCOW2BLK_GENL_VERSION
 * @features: the QCOW2BLK_F_* flags it accepts
 *
 * Context: process; open to every user.
 * Return: 0, -EPROTO (reply without both attributes) or another -errno.
 */
int qctl_nl_features(struct qctl_nl *nl, __u32 *version, __u64 *features);

/**
 * qctl_nl_list() - every attached device, in the order the kernel dumps them
 * @nl: handle
 * @devs: array allocated with malloc(), free it with qctl_devs_free();
 *        NULL when @nr is 0
 * @nr: entries in @devs
 *
 * Context: process; open to every user.
 * Return: 0, -ENOMEM or the kernel's -errno; nothing is returned then.
 */
int qctl_nl_list(struct qctl_nl *nl, struct qctl_dev **devs, size_t *nr);

#endif /* QCOW2CTL_NL_H */

/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * qcow2blk userspace API: a generic netlink family "qcow2blk" that attaches,
 * detaches, lists and tunes /dev/qcowN devices, and an ioctl on the block
 * device that reports what it serves.
 *
 * Versioning: QCOW2BLK_GENL_VERSION changes only on incompatible change.
 * New attributes and flags are added at the end; QCOW2BLK_CMD_FEATURES tells
 * which flags a running module accepts. Unknown flag bits are rejected with
 * EINVAL, never ignored.
 */
#ifndef _UAPI_LINUX_QCOW2BLK_H
#define _UAPI_LINUX_QCOW2BLK_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/const.h>

#define QCOW2BLK_GENL_NAME		"qcow2blk"
#define QCOW2BLK_GENL_VERSION		1
#define QCOW2BLK_GENL_MCAST_EVENTS	"events"

/* Device names are QCOW2BLK_DISK_PREFIX followed by the index: qcow0. */
#define QCOW2BLK_DISK_PREFIX		"qcow"
/* Minors per device: the disk and its partitions. */
#define QCOW2BLK_PART_SHIFT		4

/* Attach flags (QCOW2BLK_ATTR_FLAGS). */
/*
 * Without QCOW2BLK_F_READ_ONLY the top image (and its external data file,
 * both passed open for writing) is written; backing layers never are.
 */
#define QCOW2BLK_F_READ_ONLY		_BITULL(0) /* refuse writes */
#define QCOW2BLK_F_BUFFERED_IO		_BITULL(1) /* no direct I/O */
#define QCOW2BLK_F_ALL			(QCOW2BLK_F_READ_ONLY | \
					 QCOW2BLK_F_BUFFERED_IO)

/* State bits reported by GET and the ioctl (QCOW2BLK_ATTR_STATE). */
#define QCOW2BLK_S_DIRECT_IO		_BITULL(0) /* data uses direct I/O */
#define QCOW2BLK_S_READ_ONLY		_BITULL(1) /* device is read-only */
#define QCOW2BLK_S_EXTENDED_L2		_BITULL(2) /* image has subclusters */
#define QCOW2BLK_S_ZSTD			_BITULL(3) /* zstd compression */
/* Writing stopped after an error; READ_ONLY is set too. */
#define QCOW2BLK_S_WRITE_FAILED		_BITULL(4)

enum qcow2blk_nl_cmd {
	QCOW2BLK_CMD_UNSPEC,
	/*
	 * FD, [FLAGS], [L2_CACHE_BYTES], [MAP_CACHE_BYTES], [INDEX],
	 * [DATA_FD], [SNAPSHOT], [BACKING], [RC_CACHE_BYTES],
	 * [SECTOR_SIZE] -> device attributes. RC_CACHE_BYTES needs a
	 * writable attach.
	 */
	QCOW2BLK_CMD_ATTACH,
	/* INDEX */
	QCOW2BLK_CMD_DETACH,
	/* [INDEX] -> device attributes; dump without INDEX lists all */
	QCOW2BLK_CMD_GET,
	/*
	 * INDEX and at least one of L2_CACHE_BYTES, RC_CACHE_BYTES (writable
	 * devices only) -> device attributes
	 */
	QCOW2BLK_CMD_SET,
	/* -> VERSION, FEATURES */
	QCOW2BLK_CMD_FEATURES,
	/* multicast on "events": INDEX, DISK_NAME */
	QCOW2BLK_EVENT_ATTACHED,
	QCOW2BLK_EVENT_DETACHED,

	__QCOW2BLK_CMD_MAX,
};

#define QCOW2BLK_CMD_MAX (__QCOW2BLK_CMD_MAX - 1)

enum qcow2blk_nl_attr {
	QCOW2BLK_ATTR_UNSPEC,
	QCOW2BLK_ATTR_PAD,
	QCOW2BLK_ATTR_INDEX,		/* u32: N of /dev/qcowN */
	QCOW2BLK_ATTR_FD,		/* u32: image file descriptor */
	QCOW2BLK_ATTR_FLAGS,		/* u64: QCOW2BLK_F_* */
	QCOW2BLK_ATTR_L2_CACHE_BYTES,	/* u64 */
	QCOW2BLK_ATTR_DISK_NAME,	/* string: "qcow0" */
	QCOW2BLK_ATTR_IMAGE_PATH,	/* string: path of the open image */
	QCOW2BLK_ATTR_VIRTUAL_SIZE,	/* u64: bytes */
	QCOW2BLK_ATTR_CLUSTER_SIZE,	/* u32: bytes */
	QCOW2BLK_ATTR_FORMAT_VERSION,	/* u32: 2 or 3 */
	QCOW2BLK_ATTR_STATE,		/* u64: QCOW2BLK_S_* */
	QCOW2BLK_ATTR_VERSION,		/* u32: QCOW2BLK_GENL_VERSION */
	QCOW2BLK_ATTR_FEATURES,		/* u64: QCOW2BLK_F_* accepted */
	QCOW2BLK_ATTR_DATA_FD,		/* u32: top image's external data file */
	QCOW2BLK_ATTR_SNAPSHOT,		/* string: internal snapshot ID or name */
	QCOW2BLK_ATTR_MAP_CACHE_BYTES,	/* u64: chain mapping cache */
	/*
	 * Request: the layers below the top image, nested QCOW2BLK_ATTR_LAYER
	 * elements from the top's backing file down to the base, each with
	 * LAYER_ATTR_FD, LAYER_ATTR_FORMAT and optionally LAYER_ATTR_DATA_FD.
	 */
	QCOW2BLK_ATTR_BACKING,
	/*
	 * Reply: every layer, top first, nested QCOW2BLK_ATTR_LAYER elements
	 * with LAYER_ATTR_PATH, LAYER_ATTR_FORMAT, [LAYER_ATTR_DATA_PATH].
	 * A nest holds at most 64 KiB: a long chain comes as several CHAIN
	 * attributes in a row, and the layers are theirs in order.
	 */
	QCOW2BLK_ATTR_CHAIN,
	QCOW2BLK_ATTR_LAYER,		/* nested: one layer, see above */
	/*
	 * u64: refcount block cache of a writable device, bytes; 0 on
	 * ATTACH is the default. Reported by writable devices only.
	 */
	QCOW2BLK_ATTR_RC_CACHE_BYTES,
	/*
	 * u32: the device's logical block size, bytes: 512, 1024, 2048 or
	 * 4096 (at most the page size), dividing the virtual size. ATTACH:
	 * absent or 0 picks 512, or the image file's direct I/O alignment
	 * when that is larger and divides the virtual size. Reported.
	 */
	QCOW2BLK_ATTR_SECTOR_SIZE,

	__QCOW2BLK_ATTR_MAX,
};

#define QCOW2BLK_ATTR_MAX (__QCOW2BLK_ATTR_MAX - 1)

/* Inside a QCOW2BLK_ATTR_LAYER element. */
enum qcow2blk_nl_layer_attr {
	QCOW2BLK_LAYER_ATTR_UNSPEC,
	QCOW2BLK_LAYER_ATTR_FD,		/* u32: the layer's image file */
	QCOW2BLK_LAYER_ATTR_FORMAT,	/* u32: QCOW2BLK_FMT_* */
	QCOW2BLK_LAYER_ATTR_DATA_FD,	/* u32: its external data file */
	QCOW2BLK_LAYER_ATTR_PATH,	/* string, reply: image file path */
	QCOW2BLK_LAYER_ATTR_DATA_PATH,	/* string, reply: data file path */

	__QCOW2BLK_LAYER_ATTR_MAX,
};

#define QCOW2BLK_LAYER_ATTR_MAX (__QCOW2BLK_LAYER_ATTR_MAX - 1)

#define QCOW2BLK_FMT_QCOW2		0
#define QCOW2BLK_FMT_RAW		1

/* Deepest chain accepted, top image included. */
#define QCOW2BLK_MAX_LAYERS		1000
/* Longest snapshot ID or name accepted, bytes without the NUL. */
#define QCOW2BLK_SNAPSHOT_NAME_MAX	1023

/* ioctl on /dev/qcowN */
struct qcow2blk_info {
	__u32 version;		/* in: QCOW2BLK_GENL_VERSION; out: same */
	__u32 index;		/* N of /dev/qcowN */
	__u64 flags;		/* QCOW2BLK_F_* given at attach */
	__u64 state;		/* QCOW2BLK_S_* */
	__u64 virtual_size;	/* bytes */
	__u64 l2_cache_bytes;	/* bytes */
	__u32 cluster_size;	/* bytes */
	__u32 format_version;	/* 2 or 3 */
	__u64 reserved[4];	/* zero */
};

#define QCOW2BLK_IOC_MAGIC		0xc2
#define QCOW2BLK_IOC_GET_INFO	_IOWR(QCOW2BLK_IOC_MAGIC, 1, struct qcow2blk_info)

#endif /* _UAPI_LINUX_QCOW2BLK_H */

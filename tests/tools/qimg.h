/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the host test tools: whole reads and writes on file
 * descriptors, compressed cluster decoding, a chain opened from a path
 * (backing files and data files found as QEMU finds them), and a guest
 * reader that serves any range of an open chain.
 */
#ifndef QIMG_H
#define QIMG_H

#include <zstd.h>

#include "qcow2.h"

#ifndef __printf
#define __printf(a, b)		__attribute__((format(printf, a, b)))
#endif
#ifndef __noreturn
#define __noreturn		__attribute__((noreturn))
#endif

/* Layers a tool opens: the image and its backing files. */
#define QIMG_MAX_LAYERS		16
/* Bytes of a header cluster read to find backing and data file names. */
#define QIMG_HEADER_BYTES	QCOW2_MAX_CLUSTER_SIZE

int qimg_pread_full(int fd, void *buf, size_t len, u64 off);
int qimg_pwrite_full(int fd, const void *buf, size_t len, u64 off);

/* Decode one compressed cluster; 0 or -1. */
int qimg_inflate(const u8 *in, size_t in_len, u8 *out, size_t out_len);
int qimg_unzstd(ZSTD_DCtx *z, const u8 *in, size_t in_len, u8 *out,
		size_t out_len);

/*
 * qcow2_io callbacks on a file descriptor (@priv points to an int):
 * pread (zero past the end), pwrite, flush (fdatasync), punch
 * (PUNCH_HOLE | KEEP_SIZE).
 */
int qimg_fd_pread(void *priv, void *buf, size_t len, u64 off);
int qimg_fd_pwrite(void *priv, const void *buf, size_t len, u64 off);
int qimg_fd_flush(void *priv);
int qimg_fd_punch(void *priv, u64 off, u64 len);

/*
 * A chain opened from the path of its top image: backing file names are
 * resolved relative to the directory of the image naming them (the
 * backing format extension decides raw or qcow2, else the magic), and so
 * is an external data file. With @writable the top image and its data
 * file are opened read-write and given writers.
 */
struct qimg_files {
	u32 nr;				/* layers */
	int fd[QIMG_MAX_LAYERS];	/* image or raw file, [0] top */
	int data_fd[QIMG_MAX_LAYERS];	/* data file, else == fd */
	struct qcow2_io data_io[QIMG_MAX_LAYERS];
	struct qcow2_layer_desc d[QIMG_MAX_LAYERS];
	char *path[QIMG_MAX_LAYERS];	/* image paths, resolved */
};

int qimg_files_open(struct qimg_files *f, const char *path, bool writable,
		    char *msg, size_t msg_len);
void qimg_files_close(struct qimg_files *f);

/*
 * Reads the guest view of an open chain: qcow2_chain_map(), then the
 * bytes from each layer's data reader, decompressing where needed. Keeps
 * the last decompressed cluster; qimg_reader_forget() drops it (after the
 * image changed).
 */
struct qimg_reader {
	struct qcow2_chain *chain;
	const struct qcow2_io *data[QIMG_MAX_LAYERS];	/* per layer */
	u8 *cbuf;			/* compressed input */
	u8 *cluster;			/* one decompressed cluster */
	u64 key;			/* which cluster is in @cluster, or ~0 */
	ZSTD_DCtx *zstd;
};

int qimg_reader_init(struct qimg_reader *r, struct qcow2_chain *c);
void qimg_reader_destroy(struct qimg_reader *r);
void qimg_reader_forget(struct qimg_reader *r);
/* Read guest bytes [@off, @off + @len) into @buf; 0 or -errno. */
int qimg_read(struct qimg_reader *r, u64 off, u64 len, u8 *buf);

/* Parse a size as qemu-io does: decimal or 0x, suffix k K M G T P E. */
int qimg_parse_size(const char *s, u64 *val);

#endif /* QIMG_H */

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Synthetic in-memory qcow2 images for the Check suites: a valid header,
 * refcount table and L1 table, then L2 tables and data clusters placed by
 * the test, served through a qcow2_io that reads the memory buffer.
 *
 * Layout: cluster 0 header, cluster 1 refcount table, clusters 2.. the L1
 * table, then whatever timg_alloc() hands out, in order.
 */
#ifndef TESTIMG_H
#define TESTIMG_H

#include "qcow2.h"

/* Header field offsets (docs/interop/qcow2.rst). */
#define H_MAGIC			0
#define H_VERSION		4
#define H_BACKING_OFF		8
#define H_BACKING_LEN		16
#define H_CLUSTER_BITS		20
#define H_SIZE			24
#define H_CRYPT			32
#define H_L1_SIZE		36
#define H_L1_OFF		40
#define H_REFT_OFF		48
#define H_REFT_CLUSTERS		56
#define H_NB_SNAPSHOTS		60
#define H_SNAPSHOTS_OFF		64
#define H_INCOMPAT		72
#define H_COMPAT		80
#define H_AUTOCLEAR		88
#define H_REFCOUNT_ORDER	96
#define H_HEADER_LEN		100
#define H_COMPRESSION		104

struct timg {
	u8 *data;		/* file contents */
	u64 size;		/* file size, bytes */
	u64 cap;		/* allocated bytes of data */
	int version;
	u32 cluster_bits;
	u32 cs;			/* cluster size */
	bool extl2;
	u64 vsize;		/* virtual size */
	u32 l1_entries;
	u64 l1_off;
	u32 hdr_len;		/* header_length; extensions follow */
	u64 reads;		/* pread calls */
	int fail_at_read;	/* fail the n-th pread with -EIO (1-based) */
};

void put_be32(u8 *p, u32 v);
void put_be64(u8 *p, u64 v);
u64 rd_be64(const u8 *p);

/* A valid empty image: version 2 or 3, extl2 only for v3. */
void timg_init(struct timg *t, int version, u32 cluster_bits, u64 vsize,
	       bool extl2);
void timg_free(struct timg *t);
/* Append @n zeroed clusters to the file, return the host offset. */
u64 timg_alloc(struct timg *t, u32 n);
/* Add a header extension at the current end of the extension area. */
void timg_add_ext(struct timg *t, u32 type, const void *data, u32 len);
/* L2 table for guest cluster @gc, allocated on first use. */
u64 timg_l2(struct timg *t, u64 gc);
/* Set the L2 entry (and bitmap, extended L2) of guest cluster @gc. */
void timg_set_l2(struct timg *t, u64 gc, u64 entry, u64 bitmap);
/* Allocate a data cluster for @gc filled with @fill, map it, return it. */
u64 timg_data(struct timg *t, u64 gc, u8 fill);
/* Decode the header as qcow2_image_open() would. */
int timg_decode(struct timg *t, struct qcow2_header *h, struct qcow2_err *e);
/* Open through qcow2_image_open() with a memory reader. */
int timg_open(struct timg *t, struct qcow2_image *img, u64 flags,
	      u64 cache_bytes, struct qcow2_err *err);

#endif /* TESTIMG_H */

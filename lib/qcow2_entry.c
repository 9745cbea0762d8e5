// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2 L1 and L2 table entry decoding: turns one host-endian entry (and,
 * with extended L2 entries, its subcluster bitmap) into a classified
 * (sub)cluster, refusing reserved bits and impossible combinations.
 */
#include "qcow2.h"

/* Extended L2 bitmap halves (spec: "Subcluster Allocation Bitmap"). */
#define QCOW2_SC_ALLOC_MASK		GENMASK_ULL(31, 0)
#define QCOW2_SC_ZERO_SHIFT		32

/*
 * Compressed descriptor: the host offset takes bits 0..x-1 and the count of
 * additional 512-byte sectors bits x..61, with x = 62 - (cluster_bits - 8).
 */
#define QCOW2_COMPRESSED_X(cluster_bits)	(70U - (cluster_bits))
#define QCOW2_COMPRESSED_SECTOR_SHIFT	9
/* Highest bit a host offset may use (bits 0..55). */
#define QCOW2_HOST_OFFSET_BITS		56

/**
 * qcow2_l1_entry_decode() - check an L1 entry
 * @h: header
 * @entry: host-endian L1 entry
 * @l2_off: host offset of the L2 table, 0 if unallocated
 *
 * Context: any.
 * Return: 0 or -EUCLEAN (reserved bits set, misaligned offset).
 */
int qcow2_l1_entry_decode(const struct qcow2_header *h, u64 entry,
			  u64 *l2_off)
{
	u64 off = entry & QCOW2_L1E_OFFSET_MASK;

	*l2_off = 0;
	if (entry & QCOW2_L1E_RESERVED_MASK)
		return -EUCLEAN;
	if (!IS_ALIGNED(off, (u64)h->cluster_size))
		return -EUCLEAN;
	*l2_off = off;
	return 0;
}

static int l2_decode_compressed(const struct qcow2_header *h, u64 entry,
				u64 bitmap, struct qcow2_l2_desc *d)
{
	u32 x = QCOW2_COMPRESSED_X(h->cluster_bits);
	u64 off = entry & GENMASK_ULL(x - 1, 0);
	u64 nb = (entry >> x) & GENMASK_ULL(h->cluster_bits - 9, 0);

	/* Compressed clusters have no subclusters: the bitmap is reserved. */
	if (bitmap)
		return -EUCLEAN;
	/* External data files cannot hold compressed clusters (spec). */
	if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
		return -EUCLEAN;
	/* With small clusters the offset field reaches past bit 55. */
	if (off >> QCOW2_HOST_OFFSET_BITS)
		return -EUCLEAN;

	d->type = QCOW2_SC_COMPRESSED;
	d->comp_off = off;
	/* nb < 2^13, so this fits in 23 bits. */
	d->comp_bytes = ((u32)nb + 1) << QCOW2_COMPRESSED_SECTOR_SHIFT;
	d->comp_bytes -= off & (QCOW2_COMPRESSED_SECTOR - 1);
	return 0;
}

static int l2_decode_extended(u64 bitmap, unsigned int sc, bool has_host,
			      enum qcow2_sc_type *type)
{
	u64 alloc = bitmap & QCOW2_SC_ALLOC_MASK;
	u64 zero = bitmap >> QCOW2_SC_ZERO_SHIFT;

	if (alloc & zero)
		return -EUCLEAN;
	if (has_host) {
		if (zero & BIT_ULL(sc))
			*type = QCOW2_SC_ZERO_ALLOC;
		else if (alloc & BIT_ULL(sc))
			*type = QCOW2_SC_NORMAL;
		else
			*type = QCOW2_SC_UNALLOC_ALLOC;
		return 0;
	}
	/* An allocated subcluster needs a host cluster. */
	if (alloc)
		return -EUCLEAN;
	*type = (zero & BIT_ULL(sc)) ? QCOW2_SC_ZERO_PLAIN :
				       QCOW2_SC_UNALLOC_PLAIN;
	return 0;
}

/**
 * qcow2_l2_entry_decode() - classify one (sub)cluster
 * @h: header
 * @entry: host-endian first word of the L2 entry
 * @bitmap: host-endian subcluster bitmap (extended L2 only, else 0)
 * @sc: subcluster index 0..31 (extended L2 only, else 0)
 * @d: result
 *
 * As QEMU does, the zero flag (bit 0) is honoured whenever the image does not
 * use extended L2 entries, also in version 2 images, and ignored otherwise.
 *
 * Context: any.
 * Return: 0, -EINVAL (@bitmap or @sc given without extended L2 entries) or
 * -EUCLEAN (reserved bits, misaligned offset, allocation and zero bits both
 * set, bitmap on a compressed cluster ...).
 */
int qcow2_l2_entry_decode(const struct qcow2_header *h, u64 entry, u64 bitmap,
			  unsigned int sc, struct qcow2_l2_desc *d)
{
	u64 off = entry & QCOW2_L2E_OFFSET_MASK;
	enum qcow2_sc_type type;
	bool has_host;
	int ret;

	memset(d, 0, sizeof(*d));
	if (sc >= QCOW2_SUBCLUSTERS || (!h->extended_l2 && (bitmap || sc)))
		return -EINVAL;
	if (entry & QCOW2_OFLAG_COMPRESSED)
		return l2_decode_compressed(h, entry, bitmap, d);
	if (entry & QCOW2_L2E_STD_RESERVED_MASK)
		return -EUCLEAN;

	/* Offset 0 is a real host offset only in an external data file. */
	has_host = off || ((h->incompatible_features &
			    QCOW2_INCOMPAT_DATA_FILE) &&
			   (entry & QCOW2_OFLAG_COPIED));
	if (h->extended_l2) {
		ret = l2_decode_extended(bitmap, sc, has_host, &type);
		if (ret)
			return ret;
	} else if (entry & QCOW2_OFLAG_ZERO) {
		type = off ? QCOW2_SC_ZERO_ALLOC : QCOW2_SC_ZERO_PLAIN;
	} else {
		type = has_host ? QCOW2_SC_NORMAL : QCOW2_SC_UNALLOC_PLAIN;
	}

	if (type == QCOW2_SC_NORMAL || type == QCOW2_SC_ZERO_ALLOC ||
	    type == QCOW2_SC_UNALLOC_ALLOC) {
		if (!IS_ALIGNED(off, (u64)h->cluster_size))
			return -EUCLEAN;
		d->host_off = off;
	}
	d->type = type;
	return 0;
}

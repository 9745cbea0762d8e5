// SPDX-License-Identifier: GPL-2.0
/*
 * Internal snapshots: walking the snapshot table, finding one snapshot by ID
 * or name, and describing its L1 table and virtual size so an image can be
 * opened at that snapshot instead of its active layer.
 *
 * Every entry is read and checked against the header's snapshot count, the
 * spec's field widths and QCOW2_MAX_SNAPSHOT_* limits before use.
 */
#include "qcow2.h"

/* Fixed part of a snapshot table entry; extra data, ID, name follow. */
struct qcow2_disk_snapshot {
	__be64 l1_table_offset;
	__be32 l1_size;
	__be16 id_str_size;
	__be16 name_size;
	__be32 date_sec;
	__be32 date_nsec;
	__be64 vm_clock_nsec;
	__be32 vm_state_size;
	__be32 extra_data_size;
};

/* Extra data fields, by offset within the extra data. */
#define QCOW2_SNAP_EXTRA_VM_STATE_OFF	0
#define QCOW2_SNAP_EXTRA_DISK_SIZE_OFF	8
#define QCOW2_SNAP_ENTRY_ALIGN		8

static void snap_copy_str(char *dst, const u8 *src, u32 len)
{
	u32 n = min_t(u32, len, QCOW2_SNAPSHOT_STR_BYTES - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Variable part of one entry: at most extra + 2 * u16 max bytes. */
#define QCOW2_SNAP_VAR_MAX	(QCOW2_MAX_SNAPSHOT_EXTRA + 2 * 65535U)

/**
 * qcow2_snapshot_walk() - call @fn for every snapshot of an image
 * @img: open image
 * @fn: called with each entry; a non-zero return stops the walk and is
 *      returned
 * @arg: passed to @fn
 * @err: reason on failure, may be NULL
 *
 * Context: may sleep (reads the table through img->io, allocates).
 * Return: 0, @fn's non-zero value, -EUCLEAN (malformed table), -ENOMEM or
 * the -errno of a read.
 */
int qcow2_snapshot_walk(struct qcow2_image *img,
			int (*fn)(void *arg, const struct qcow2_snapshot *s),
			void *arg, struct qcow2_err *err)
{
	const struct qcow2_header *h = &img->h;
	struct qcow2_disk_snapshot *ds;
	struct qcow2_snapshot s;
	u64 pos = h->snapshots_offset;
	u8 *buf;
	u32 i;
	int ret = 0;

	QCOW2_BUILD_BUG_ON(sizeof(struct qcow2_disk_snapshot) != 40);
	if (!h->nb_snapshots)
		return 0;
	buf = qcow2_alloc(sizeof(*ds) + QCOW2_SNAP_VAR_MAX);
	if (!buf) {
		qcow2_err_set(err, "out of memory for the snapshot table");
		return -ENOMEM;
	}
	ds = (struct qcow2_disk_snapshot *)buf;

	for (i = 0; i < h->nb_snapshots; i++) {
		u32 extra, id_len, name_len, var;
		const u8 *p;

		/* pos grows by at most 40 + QCOW2_SNAP_VAR_MAX + 7 per entry. */
		if (pos - h->snapshots_offset + sizeof(*ds) >
		    QCOW2_MAX_SNAPSHOTS_BYTES || pos >= img->file_size) {
			qcow2_err_set(err, "snapshot %u at %#llx lies outside the snapshot table",
				      i, pos);
			ret = -EUCLEAN;
			break;
		}
		ret = img->io.pread(img->io.priv, ds, sizeof(*ds), pos);
		if (ret) {
			qcow2_err_set(err, "cannot read snapshot %u: error %d",
				      i, ret);
			break;
		}
		extra = be32_to_cpu(ds->extra_data_size);
		id_len = be16_to_cpu(ds->id_str_size);
		name_len = be16_to_cpu(ds->name_size);
		if (extra > QCOW2_MAX_SNAPSHOT_EXTRA) {
			qcow2_err_set(err, "snapshot %u: extra data too large (%u bytes)",
				      i, extra);
			ret = -EUCLEAN;
			break;
		}
		var = extra + id_len + name_len;
		ret = img->io.pread(img->io.priv, buf + sizeof(*ds), var,
				    pos + sizeof(*ds));
		if (ret) {
			qcow2_err_set(err, "cannot read snapshot %u: error %d",
				      i, ret);
			break;
		}

		memset(&s, 0, sizeof(s));
		s.index = i;
		s.l1_table_offset = be64_to_cpu(ds->l1_table_offset);
		s.l1_size = be32_to_cpu(ds->l1_size);
		s.date_sec = be32_to_cpu(ds->date_sec);
		s.date_nsec = be32_to_cpu(ds->date_nsec);
		s.vm_clock_nsec = be64_to_cpu(ds->vm_clock_nsec);
		s.vm_state_size = be32_to_cpu(ds->vm_state_size);
		p = buf + sizeof(*ds);
		if (extra >= QCOW2_SNAP_EXTRA_VM_STATE_OFF + 8)
			s.vm_state_size = qcow2_get_be64(p +
					QCOW2_SNAP_EXTRA_VM_STATE_OFF);
		/* Without the field, the snapshot has the image's size. */
		s.disk_size = h->size;
		if (extra >= QCOW2_SNAP_EXTRA_DISK_SIZE_OFF + 8)
			s.disk_size = qcow2_get_be64(p +
					QCOW2_SNAP_EXTRA_DISK_SIZE_OFF);
		s.raw_id = p + extra;
		s.id_len = id_len;
		s.raw_name = p + extra + id_len;
		s.name_len = name_len;
		snap_copy_str(s.id, s.raw_id, id_len);
		snap_copy_str(s.name, s.raw_name, name_len);
		s.entry_end = pos + sizeof(*ds) + var;

		ret = fn(arg, &s);
		if (ret)
			break;
		pos += sizeof(*ds) + var;
		pos = (pos + QCOW2_SNAP_ENTRY_ALIGN - 1) &
		      ~(u64)(QCOW2_SNAP_ENTRY_ALIGN - 1);
	}
	qcow2_free(buf);
	return ret;
}

struct snap_find {
	const char *want;	/* ID or name, NUL-terminated */
	size_t want_len;
	bool by_id;		/* pass 1: IDs; pass 2: names */
	struct qcow2_snapshot *found;
};

static int snap_match(void *arg, const struct qcow2_snapshot *s)
{
	struct snap_find *f = arg;
	const u8 *str = f->by_id ? s->raw_id : s->raw_name;
	u32 len = f->by_id ? s->id_len : s->name_len;

	if (len != f->want_len || memcmp(str, f->want, len))
		return 0;
	*f->found = *s;
	/* The raw strings die with the walk's buffer. */
	f->found->raw_id = NULL;
	f->found->raw_name = NULL;
	return 1;
}

/**
 * qcow2_snapshot_find() - find a snapshot by ID, else by name, as QEMU does
 * @img: open image
 * @want: ID or name, NUL-terminated
 * @s: the snapshot found (raw_id and raw_name are NULL)
 * @err: reason on failure, may be NULL
 *
 * Context: may sleep.
 * Return: 0, -ENOENT (no such snapshot) or the errors of
 * qcow2_snapshot_walk().
 */
int qcow2_snapshot_find(struct qcow2_image *img, const char *want,
			struct qcow2_snapshot *s, struct qcow2_err *err)
{
	struct snap_find f = {
		.want = want,
		.want_len = strnlen(want, 65536),
		.found = s,
	};
	int pass, ret;

	for (pass = 0; pass < 2; pass++) {
		f.by_id = pass == 0;
		ret = qcow2_snapshot_walk(img, snap_match, &f, err);
		if (ret == 1)
			return 0;
		if (ret)
			return ret;
	}
	qcow2_err_set(err, "no snapshot with ID or name '%.64s'", want);
	return -ENOENT;
}

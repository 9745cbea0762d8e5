// SPDX-License-Identifier: GPL-2.0
/*
 * rawcmp: compare a block device or file with a reference raw file, fast on
 * sparse references: reference holes are found with SEEK_DATA/SEEK_HOLE and
 * never read, only checked to be zero on the target. The target is read
 * with O_DIRECT in aligned 1 MiB blocks (buffered if O_DIRECT is refused).
 * When the target is itself a sparse regular file, ranges that are holes in
 * both files are skipped without reading.
 *
 *   rawcmp [-q] TARGET REFERENCE
 *
 * Exit status: 0 identical (same size, same bytes), 1 different (the first
 * differing offset is printed), 2 usage or I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Target read size and alignment. */
#define RAWCMP_BLOCK_BYTES	(1024U * 1024)
#define RAWCMP_ALIGN		4096U

/* A file's data/hole layout, looked up lazily and cached per segment. */
struct seg_map {
	int fd;
	uint64_t size;
	bool sparse;		/* SEEK_DATA works on it */
	uint64_t seg_start;	/* cached segment [seg_start, seg_end) */
	uint64_t seg_end;
	bool seg_data;		/* cached segment is data */
};

static const char *prog = "rawcmp";
static bool quiet;

static void fail(const char *what, const char *name)
{
	fprintf(stderr, "%s: %s: %s: %s\n", prog, name, what, strerror(errno));
	exit(2);
}

static void seg_init(struct seg_map *m, int fd, uint64_t size, bool try)
{
	memset(m, 0, sizeof(*m));
	m->fd = fd;
	m->size = size;
	m->sparse = try && lseek(fd, 0, SEEK_DATA) >= 0;
	if (!m->sparse && try && errno == ENXIO)
		m->sparse = true;	/* all hole */
}

/* Find the segment holding @off: is it data, and where does it end. */
static bool seg_lookup(struct seg_map *m, uint64_t off, uint64_t *end)
{
	off_t d, h;

	if (!m->sparse) {
		*end = m->size;
		return true;
	}
	if (off >= m->seg_start && off < m->seg_end) {
		*end = m->seg_end;
		return m->seg_data;
	}
	d = lseek(m->fd, off, SEEK_DATA);
	if (d < 0 && errno != ENXIO)
		fail("SEEK_DATA failed", "reference");
	if (d < 0 || (uint64_t)d >= m->size)
		d = m->size;
	if ((uint64_t)d > off) {
		m->seg_start = off;
		m->seg_end = d;
		m->seg_data = false;
	} else {
		h = lseek(m->fd, off, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > m->size)
			h = m->size;
		m->seg_start = off;
		m->seg_end = h;
		m->seg_data = true;
	}
	*end = m->seg_end;
	return m->seg_data;
}

/* Next offset >= @off that is data, or the size. */
static uint64_t seg_next_data(struct seg_map *m, uint64_t off)
{
	uint64_t end;

	if (off >= m->size)
		return m->size;
	if (seg_lookup(m, off, &end))
		return off;
	return end;
}

static ssize_t pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

static uint64_t file_size(int fd, const char *name)
{
	struct stat st;
	uint64_t size;

	if (fstat(fd, &st))
		fail("stat failed", name);
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size))
			fail("BLKGETSIZE64 failed", name);
		return size;
	}
	return st.st_size;
}

static int report(uint64_t off, const unsigned char *t, const unsigned char *r,
		  size_t len, const char *tname, const char *rname)
{
	size_t i = 0;

	while (i < len && t[i] == r[i])
		i++;
	if (!quiet)
		printf("%s %s differ: first difference at offset %llu (%#llx): %#04x != %#04x\n",
		       tname, rname, (unsigned long long)(off + i),
		       (unsigned long long)(off + i), t[i], r[i]);
	return 1;
}

int main(int argc, char **argv)
{
	struct seg_map tmap, rmap;
	unsigned char *tbuf, *rbuf;
	const char *tname, *rname;
	uint64_t tsize, rsize, off = 0;
	int tfd, tfd_buffered, rfd, opt;
	struct stat st;

	while ((opt = getopt(argc, argv, "q")) != -1) {
		if (opt != 'q') {
			fprintf(stderr, "usage: %s [-q] TARGET REFERENCE\n",
				prog);
			return 2;
		}
		quiet = true;
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: %s [-q] TARGET REFERENCE\n", prog);
		return 2;
	}
	tname = argv[optind];
	rname = argv[optind + 1];

	tfd_buffered = open(tname, O_RDONLY);
	if (tfd_buffered < 0)
		fail("open failed", tname);
	tfd = open(tname, O_RDONLY | O_DIRECT);
	if (tfd < 0)
		tfd = tfd_buffered;
	rfd = open(rname, O_RDONLY);
	if (rfd < 0)
		fail("open failed", rname);

	tsize = file_size(tfd_buffered, tname);
	rsize = file_size(rfd, rname);
	if (tsize != rsize) {
		if (!quiet)
			printf("%s %s differ: size %llu != %llu\n", tname,
			       rname, (unsigned long long)tsize,
			       (unsigned long long)rsize);
		return 1;
	}
	if (fstat(tfd_buffered, &st))
		fail("stat failed", tname);
	seg_init(&tmap, tfd_buffered, tsize, S_ISREG(st.st_mode));
	seg_init(&rmap, rfd, rsize, true);
	if (!tmap.sparse)
		posix_fadvise(tfd_buffered, 0, 0, POSIX_FADV_SEQUENTIAL);

	if (posix_memalign((void **)&tbuf, RAWCMP_ALIGN, RAWCMP_BLOCK_BYTES) ||
	    posix_memalign((void **)&rbuf, RAWCMP_ALIGN, RAWCMP_BLOCK_BYTES)) {
		errno = ENOMEM;
		fail("allocation failed", tname);
	}

	while (off < tsize) {
		uint64_t next = seg_next_data(&rmap, off);
		uint64_t tnext = seg_next_data(&tmap, off);
		uint64_t bend, pos;
		size_t len;

		/* Skip what is a hole in both (only for sparse targets). */
		if (tnext < next)
			next = tnext;
		if (next >= tsize)
			break;
		off = next & ~(uint64_t)(RAWCMP_BLOCK_BYTES - 1);
		bend = off + RAWCMP_BLOCK_BYTES < tsize ?
		       off + RAWCMP_BLOCK_BYTES : tsize;
		len = bend - off;

		/* O_DIRECT needs aligned lengths; the tail goes buffered. */
		if (tfd != tfd_buffered && len % RAWCMP_ALIGN == 0) {
			if (pread_all(tfd, tbuf, len, off) != (ssize_t)len)
				fail("read failed", tname);
		} else if (pread_all(tfd_buffered, tbuf, len, off) !=
			   (ssize_t)len) {
			fail("read failed", tname);
		}

		/* Reference: read data segments, zero holes. */
		for (pos = off; pos < bend;) {
			uint64_t send;
			bool data = seg_lookup(&rmap, pos, &send);

			if (send > bend)
				send = bend;
			if (data) {
				if (pread_all(rfd, rbuf + (pos - off),
					      send - pos, pos) !=
				    (ssize_t)(send - pos))
					fail("read failed", rname);
			} else {
				memset(rbuf + (pos - off), 0, send - pos);
			}
			pos = send;
		}
		if (memcmp(tbuf, rbuf, len))
			return report(off, tbuf, rbuf, len, tname, rname);
		off = bend;
	}
	if (!quiet)
		printf("%s %s identical (%llu bytes)\n", tname, rname,
		       (unsigned long long)tsize);
	return 0;
}

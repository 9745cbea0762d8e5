// SPDX-License-Identifier: GPL-2.0
/*
 * rawcmp: compare a block device or file with a reference raw file, fast on
 * sparse references: reference holes are found with SEEK_DATA/SEEK_HOLE and
 * never read, only checked to be zero on the target. The target is read
 * with O_DIRECT in aligned 1 MiB blocks (buffered if O_DIRECT is refused).
 * When the target is itself a sparse regular file, ranges that are holes in
 * both files are skipped without reading. THREADS workers (default 4) each
 * check every THREADS-th block, so several reads are in flight.
 *
 * -m MAP takes the reference's data extents from MAP (written by
 * tests/guest/sparsecmp.py --save-map on the host) instead of SEEK_DATA,
 * for file systems such as 9p that cannot tell holes from data; every
 * target byte is still read.
 *
 *   rawcmp [-q] [-j THREADS] [-m MAP] TARGET REFERENCE
 *
 * Exit status: 0 identical (same size, same bytes), 1 different (the first
 * differing offset is printed), 2 usage or I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
/* Parallel readers: keeps several requests in flight on the device. */
#define RAWCMP_MAX_THREADS	64

/* Data extents read from a map file (-m), sorted, not overlapping. */
struct ext_list {
	uint64_t (*ext)[2];	/* [start, end) */
	size_t nr;
};

/* A file's data/hole layout, looked up lazily and cached per segment. */
struct seg_map {
	int fd;
	uint64_t size;
	bool sparse;		/* SEEK_DATA works on it, or a map is given */
	const struct ext_list *map;	/* extents from -m, or NULL */
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

/* Like seg_lookup(), from the extents of a map file: binary search. */
static bool map_lookup(const struct ext_list *l, uint64_t size, uint64_t off,
		       uint64_t *end)
{
	size_t lo = 0, hi = l->nr;

	/* First extent ending after @off. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->ext[mid][1] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->nr && l->ext[lo][0] <= off) {
		*end = l->ext[lo][1];
		return true;
	}
	*end = lo < l->nr ? l->ext[lo][0] : size;
	return false;
}

/*
 * Read a map saved by sparsecmp.py --save-map: "size N", then one
 * "start end" line per data extent, in order.
 */
static void map_load(struct ext_list *l, const char *path, uint64_t size)
{
	unsigned long long a, b, prev = 0, msize;
	size_t cap = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		fail("open failed", path);
	if (fscanf(f, "size %llu", &msize) != 1 || msize != size) {
		fprintf(stderr, "%s: %s: not a map of a %llu-byte file\n", prog,
			path, (unsigned long long)size);
		exit(2);
	}
	while (fscanf(f, "%llu %llu", &a, &b) == 2) {
		if (a < prev || b <= a || b > size) {
			fprintf(stderr, "%s: %s: bad extent %llu %llu\n", prog,
				path, a, b);
			exit(2);
		}
		if (l->nr == cap) {
			cap = cap ? 2 * cap : 64;
			l->ext = realloc(l->ext, cap * sizeof(*l->ext));
			if (!l->ext) {
				errno = ENOMEM;
				fail("allocation failed", path);
			}
		}
		l->ext[l->nr][0] = a;
		l->ext[l->nr][1] = b;
		l->nr++;
		prev = b;
	}
	fclose(f);
}

/* Find the segment holding @off: is it data, and where does it end. */
static bool seg_lookup(struct seg_map *m, uint64_t off, uint64_t *end)
{
	off_t d, h;

	if (m->map)
		return map_lookup(m->map, m->size, off, end);
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

/* What every worker shares; set up before they start. */
struct job {
	const char *tname;
	const char *rname;
	int tfd;		/* target, O_DIRECT if it allowed it */
	int tfd_buffered;	/* target, buffered: tails and hole lookups */
	int rfd;		/* reference */
	uint64_t size;		/* bytes in both */
	bool t_sparse;		/* target is a regular file: skip its holes */
	unsigned int nworkers;
	uint64_t first_diff;	/* lowest differing offset found, atomic */
};

/* One worker checks blocks idx, idx + nworkers, idx + 2 * nworkers ... */
struct worker {
	struct job *job;
	unsigned int idx;
	pthread_t thread;
	struct seg_map tmap;
	struct seg_map rmap;
	unsigned char *tbuf;	/* RAWCMP_BLOCK_BYTES, aligned */
	unsigned char *rbuf;	/* RAWCMP_BLOCK_BYTES */
	uint64_t diff_off;	/* first difference this worker saw */
	unsigned char diff_t;	/* target byte there */
	unsigned char diff_r;	/* reference byte there */
};

static void note_diff(struct job *job, uint64_t off)
{
	uint64_t cur = __atomic_load_n(&job->first_diff, __ATOMIC_RELAXED);

	while (off < cur &&
	       !__atomic_compare_exchange_n(&job->first_diff, &cur, off, false,
					    __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

/* Compare block [off, end): returns true if they differ. */
static bool check_block(struct worker *w, uint64_t off, uint64_t end)
{
	struct job *job = w->job;
	size_t len = end - off, i;
	uint64_t pos;

	/* O_DIRECT needs aligned lengths; a short tail goes buffered. */
	if (job->tfd != job->tfd_buffered && len % RAWCMP_ALIGN == 0) {
		if (pread_all(job->tfd, w->tbuf, len, off) != (ssize_t)len)
			fail("read failed", job->tname);
	} else if (pread_all(job->tfd_buffered, w->tbuf, len, off) !=
		   (ssize_t)len) {
		fail("read failed", job->tname);
	}

	/* Reference: read data segments, zero holes without reading. */
	for (pos = off; pos < end;) {
		uint64_t send;
		bool data = seg_lookup(&w->rmap, pos, &send);

		if (send > end)
			send = end;
		if (data) {
			if (pread_all(job->rfd, w->rbuf + (pos - off),
				      send - pos, pos) != (ssize_t)(send - pos))
				fail("read failed", job->rname);
		} else {
			memset(w->rbuf + (pos - off), 0, send - pos);
		}
		pos = send;
	}
	if (!memcmp(w->tbuf, w->rbuf, len))
		return false;
	for (i = 0; w->tbuf[i] == w->rbuf[i]; i++)
		;
	w->diff_off = off + i;
	w->diff_t = w->tbuf[i];
	w->diff_r = w->rbuf[i];
	note_diff(job, w->diff_off);
	return true;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct job *job = w->job;
	uint64_t stride = (uint64_t)job->nworkers * RAWCMP_BLOCK_BYTES;
	uint64_t off = (uint64_t)w->idx * RAWCMP_BLOCK_BYTES;

	while (off < job->size &&
	       off < __atomic_load_n(&job->first_diff, __ATOMIC_RELAXED)) {
		uint64_t next = seg_next_data(&w->rmap, off);
		uint64_t tnext = seg_next_data(&w->tmap, off);
		uint64_t end;

		/* Skip what is a hole in both (only for sparse targets). */
		if (tnext < next)
			next = tnext;
		if (next >= job->size)
			break;
		if (next >= off + RAWCMP_BLOCK_BYTES) {
			/* Our next block at or after @next. */
			off += (next - off) / stride * stride;
			if (off + RAWCMP_BLOCK_BYTES <= next)
				off += stride;
			continue;
		}
		end = off + RAWCMP_BLOCK_BYTES < job->size ?
		      off + RAWCMP_BLOCK_BYTES : job->size;
		if (check_block(w, off, end))
			break;
		off += stride;
	}
	return NULL;
}

static void print_usage(void)
{
	fprintf(stderr, "usage: %s [-q] [-j THREADS] [-m MAP] TARGET REFERENCE\n",
		prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct worker *workers, *first = NULL;
	struct job job = { .first_diff = UINT64_MAX, .nworkers = 4 };
	struct ext_list rmap_ext = { NULL, 0 };
	const char *map_path = NULL;
	uint64_t rsize;
	struct stat st;
	unsigned int i;
	int opt;

	while ((opt = getopt(argc, argv, "qj:m:")) != -1) {
		if (opt == 'q') {
			quiet = true;
		} else if (opt == 'm') {
			map_path = optarg;
		} else if (opt == 'j') {
			job.nworkers = atoi(optarg);
			if (job.nworkers < 1 || job.nworkers > RAWCMP_MAX_THREADS)
				print_usage();
		} else {
			print_usage();
		}
	}
	if (argc - optind != 2)
		print_usage();
	job.tname = argv[optind];
	job.rname = argv[optind + 1];

	job.tfd_buffered = open(job.tname, O_RDONLY);
	if (job.tfd_buffered < 0)
		fail("open failed", job.tname);
	job.tfd = open(job.tname, O_RDONLY | O_DIRECT);
	if (job.tfd < 0)
		job.tfd = job.tfd_buffered;
	job.rfd = open(job.rname, O_RDONLY);
	if (job.rfd < 0)
		fail("open failed", job.rname);

	job.size = file_size(job.tfd_buffered, job.tname);
	rsize = file_size(job.rfd, job.rname);
	if (job.size != rsize) {
		if (!quiet)
			printf("%s %s differ: size %llu != %llu\n", job.tname,
			       job.rname, (unsigned long long)job.size,
			       (unsigned long long)rsize);
		return 1;
	}
	if (fstat(job.tfd_buffered, &st))
		fail("stat failed", job.tname);
	job.t_sparse = S_ISREG(st.st_mode);
	/* With a map, the reference's holes are never read (9p cannot skip). */
	if (map_path)
		map_load(&rmap_ext, map_path, job.size);

	workers = calloc(job.nworkers, sizeof(*workers));
	if (!workers) {
		errno = ENOMEM;
		fail("allocation failed", job.tname);
	}
	for (i = 0; i < job.nworkers; i++) {
		struct worker *w = &workers[i];

		w->job = &job;
		w->idx = i;
		w->diff_off = UINT64_MAX;
		seg_init(&w->tmap, job.tfd_buffered, job.size, job.t_sparse);
		seg_init(&w->rmap, job.rfd, job.size, true);
		if (map_path) {
			w->rmap.map = &rmap_ext;
			w->rmap.sparse = true;
		}
		if (posix_memalign((void **)&w->tbuf, RAWCMP_ALIGN,
				   RAWCMP_BLOCK_BYTES) ||
		    posix_memalign((void **)&w->rbuf, RAWCMP_ALIGN,
				   RAWCMP_BLOCK_BYTES)) {
			errno = ENOMEM;
			fail("allocation failed", job.tname);
		}
		errno = pthread_create(&w->thread, NULL, worker_run, w);
		if (errno)
			fail("cannot start a thread", job.tname);
	}
	for (i = 0; i < job.nworkers; i++) {
		pthread_join(workers[i].thread, NULL);
		if (workers[i].diff_off != UINT64_MAX &&
		    (!first || workers[i].diff_off < first->diff_off))
			first = &workers[i];
	}

	if (first) {
		if (!quiet)
			printf("%s %s differ at offset %llu (%#llx): 0x%02x != 0x%02x\n",
			       job.tname, job.rname,
			       (unsigned long long)first->diff_off,
			       (unsigned long long)first->diff_off,
			       first->diff_t, first->diff_r);
		return 1;
	}
	if (!quiet)
		printf("%s %s identical (%llu bytes)\n", job.tname, job.rname,
		       (unsigned long long)job.size);
	return 0;
}

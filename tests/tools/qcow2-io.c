// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2-io: apply a qemu-io-like script to an image through the engine's
 * write path, so the result can be compared with the same script run by
 * qemu-io.
 *
 *   qcow2-io [-b] IMAGE -c 'write [-P BYTE] OFF LEN' -c 'write -z [-u] OFF LEN'
 *            -c 'discard OFF LEN' -c 'flush' ...
 *
 * The commands and their meaning are qemu-io's: write -P fills with one
 * byte (default 0xcd), write -z makes the range read as zero (-u: host
 * clusters may be freed), discard gives whole clusters back, flush makes
 * everything durable. OFF and LEN take qemu-io's suffixes (k, M, G, ...)
 * and must be multiples of 512. The backing chain and an external data file
 * are found from the image headers, relative to the image naming them; only
 * the top image (and its data file) is opened for writing. -b shrinks the L2
 * and refcount caches to their minimum, so write-back under cache pressure
 * runs all the time. At the end the image is flushed and closed.
 *
 * Exit status 0, or 1 with "qcow2-io: IMAGE: reason" on stderr as soon as
 * a command or the final flush fails.
 */
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "qimg.h"

/* Bytes of one pattern buffer; longer writes repeat it in the iovec. */
#define QIO_PAT_BYTES		(1024U * 1024)
#define QIO_MAX_CMDS		4096
#define QIO_MAX_WORDS		16
/* qemu-io's default write pattern. */
#define QIO_DEFAULT_PATTERN	0xcd

struct qio {
	const char *image;
	struct qimg_files f;
	struct qcow2_chain chain;
	struct qcow2_image *img;	/* chain.layers[0].img */
	struct qimg_reader rd;
	u8 *pat;			/* QIO_PAT_BYTES of the current byte */
	int pat_byte;			/* what @pat holds, -1 unknown */
};

static __printf(2, 3) __noreturn void die(const struct qio *q,
					  const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "qcow2-io: %s: ", q->image);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void set_pattern(struct qio *q, int byte)
{
	if (q->pat_byte != byte) {
		memset(q->pat, byte, QIO_PAT_BYTES);
		q->pat_byte = byte;
	}
}

/* pwritev until everything is written, advancing over short writes. */
static int writev_full(int fd, struct iovec *iov, int cnt, u64 off)
{
	while (cnt) {
		ssize_t n = pwritev(fd, iov, cnt, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EIO;
		off += n;
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (u8 *)iov->iov_base + n;
			iov->iov_len -= n;
		}
	}
	return 0;
}

/* The engine's data write: head, @len pattern bytes, tail, in order. */
static int qio_src_write(void *arg, u64 host_off, const u8 *head,
			 u32 head_len, u64 guest_off, u64 len, const u8 *tail,
			 u32 tail_len)
{
	struct qio *q = arg;
	struct iovec iov[64];
	int cnt = 0, ret;

	(void)guest_off;
	if (head_len) {
		iov[cnt].iov_base = (void *)head;
		iov[cnt++].iov_len = head_len;
	}
	while (len) {
		size_t n = min_t(u64, len, QIO_PAT_BYTES);

		/* Room for this chunk and the tail, else write what we have. */
		if (cnt + 2 > (int)ARRAY_SIZE(iov)) {
			u64 bytes = 0;
			int i;

			for (i = 0; i < cnt; i++)
				bytes += iov[i].iov_len;
			ret = writev_full(q->f.data_fd[0], iov, cnt, host_off);
			if (ret)
				return ret;
			host_off += bytes;
			cnt = 0;
		}
		iov[cnt].iov_base = q->pat;
		iov[cnt++].iov_len = n;
		len -= n;
	}
	if (tail_len) {
		iov[cnt].iov_base = (void *)tail;
		iov[cnt++].iov_len = tail_len;
	}
	return writev_full(q->f.data_fd[0], iov, cnt, host_off);
}

static int qio_src_read(void *arg, u64 guest_off, u32 len, u8 *buf)
{
	struct qio *q = arg;

	return qimg_read(&q->rd, guest_off, len, buf);
}

static u64 arg_size(struct qio *q, const char *cmd, const char *s)
{
	u64 v;

	if (qimg_parse_size(s, &v))
		die(q, "%s: bad number '%s'", cmd, s);
	return v;
}

static void check_range(struct qio *q, const char *cmd, u64 off, u64 len)
{
	if (!IS_ALIGNED(off, 512) || !IS_ALIGNED(len, 512))
		die(q, "%s: offset %llu and length %llu must be multiples of 512",
		    cmd, (unsigned long long)off, (unsigned long long)len);
	if (off > q->chain.size || len > q->chain.size - off)
		die(q, "%s: %llu+%llu is beyond the virtual size %llu", cmd,
		    (unsigned long long)off, (unsigned long long)len,
		    (unsigned long long)q->chain.size);
}

static void qio_write(struct qio *q, int argc, char **argv)
{
	struct qcow2_wsrc src = {
		.write = qio_src_write,
		.read = qio_src_read,
		.arg = q,
	};
	int pattern = QIO_DEFAULT_PATTERN;
	bool zero = false, unmap = false, have_p = false;
	u64 off, len, v;
	int i, ret;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-z")) {
			zero = true;
		} else if (!strcmp(argv[i], "-u")) {
			unmap = true;
		} else if (!strcmp(argv[i], "-P") && i + 1 < argc) {
			v = arg_size(q, "write -P", argv[++i]);
			if (v > 255)
				die(q, "write: pattern %s is not a byte",
				    argv[i]);
			pattern = v;
			have_p = true;
		} else {
			die(q, "write: unsupported option '%s'", argv[i]);
		}
	}
	if (argc - i != 2)
		die(q, "write: expected OFF LEN");
	if (zero && have_p)
		die(q, "write: -z and -P cannot be combined");
	if (unmap && !zero)
		die(q, "write: -u requires -z");
	off = arg_size(q, "write", argv[i]);
	len = arg_size(q, "write", argv[i + 1]);
	check_range(q, "write", off, len);
	if (!len)
		return;
	qimg_reader_forget(&q->rd);
	set_pattern(q, zero ? 0 : pattern);
	if (zero)
		ret = qcow2_write_zeroes(q->img, off, len,
					 unmap ? QCOW2_ZERO_MAY_UNMAP : 0,
					 &src);
	else
		ret = qcow2_write(q->img, off, len, &src);
	if (ret)
		die(q, "write%s %llu %llu failed: %s", zero ? " -z" : "",
		    (unsigned long long)off, (unsigned long long)len,
		    strerror(-ret));
	printf("wrote %llu/%llu bytes at offset %llu\n",
	       (unsigned long long)len, (unsigned long long)len,
	       (unsigned long long)off);
}

static void qio_discard(struct qio *q, int argc, char **argv)
{
	u64 off, len;
	int i, ret;

	/* qemu-io's -C (statistics) and -q (quiet) change no bytes. */
	for (i = 1; i < argc && (!strcmp(argv[i], "-C") ||
				 !strcmp(argv[i], "-q")); i++)
		;
	if (argc - i != 2)
		die(q, "discard: expected OFF LEN");
	off = arg_size(q, "discard", argv[i]);
	len = arg_size(q, "discard", argv[i + 1]);
	check_range(q, "discard", off, len);
	qimg_reader_forget(&q->rd);
	ret = qcow2_discard(q->img, off, len);
	if (ret)
		die(q, "discard %llu %llu failed: %s",
		    (unsigned long long)off, (unsigned long long)len,
		    strerror(-ret));
	printf("discard %llu/%llu bytes at offset %llu\n",
	       (unsigned long long)len, (unsigned long long)len,
	       (unsigned long long)off);
}

static void qio_command(struct qio *q, const char *cmd)
{
	char *copy = strdup(cmd), *save = NULL, *w;
	char *argv[QIO_MAX_WORDS];
	int argc = 0, ret;

	if (!copy)
		die(q, "%s", strerror(ENOMEM));
	for (w = strtok_r(copy, " \t", &save); w;
	     w = strtok_r(NULL, " \t", &save)) {
		if (argc == QIO_MAX_WORDS)
			die(q, "'%s': too many words", cmd);
		argv[argc++] = w;
	}
	if (!argc) {
		free(copy);
		return;
	}
	if (!strcmp(argv[0], "write")) {
		qio_write(q, argc, argv);
	} else if (!strcmp(argv[0], "discard")) {
		qio_discard(q, argc, argv);
	} else if (!strcmp(argv[0], "flush")) {
		if (argc != 1)
			die(q, "flush takes no arguments");
		ret = qcow2_flush(q->img);
		if (ret)
			die(q, "flush failed: %s", strerror(-ret));
	} else {
		die(q, "unsupported command '%s'", argv[0]);
	}
	free(copy);
}

static void print_usage(void)
{
	fprintf(stderr,
		"usage: qcow2-io [-b] IMAGE -c COMMAND [-c COMMAND]...\n"
		"commands: write [-P BYTE] OFF LEN | write -z [-u] OFF LEN |\n"
		"          discard OFF LEN | flush\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct qcow2_open_opts oo = { .flags = QCOW2_OPEN_WRITABLE };
	const char *cmds[QIO_MAX_CMDS];
	struct qcow2_err err = { { 0 } };
	int nr_cmds = 0, opt, ret, i;
	char msg[256];
	struct qio q;

	memset(&q, 0, sizeof(q));
	q.image = "-";
	q.pat_byte = -1;
	while ((opt = getopt(argc, argv, "+bc:h")) != -1) {
		switch (opt) {
		case 'b':
			/* The engine rounds 1 byte up to its minimum. */
			oo.l2_cache_bytes = 1;
			oo.rc_cache_bytes = 1;
			break;
		case 'c':
			if (nr_cmds == QIO_MAX_CMDS)
				print_usage();
			cmds[nr_cmds++] = optarg;
			break;
		default:
			print_usage();
		}
	}
	if (optind >= argc)
		print_usage();
	q.image = argv[optind++];
	/* Commands may also follow the image, as qemu-io allows. */
	while (optind < argc) {
		if (strcmp(argv[optind], "-c") || optind + 1 >= argc ||
		    nr_cmds == QIO_MAX_CMDS)
			print_usage();
		cmds[nr_cmds++] = argv[optind + 1];
		optind += 2;
	}

	ret = qimg_files_open(&q.f, q.image, true, msg, sizeof(msg));
	if (ret)
		die(&q, "%s", msg);
	if (q.f.d[0].has_data_file)
		oo.data_io = &q.f.data_io[0];
	ret = qcow2_chain_open(&q.chain, q.f.d, q.f.nr, &oo, &err);
	if (ret)
		die(&q, "%s", err.msg[0] ? err.msg : strerror(-ret));
	q.img = &q.chain.layers[0].img;
	if (!q.img->writable)
		die(&q, "the engine did not open the image writable");
	q.pat = malloc(QIO_PAT_BYTES);
	if (!q.pat || qimg_reader_init(&q.rd, &q.chain))
		die(&q, "%s", strerror(ENOMEM));
	for (i = 0; i < (int)q.f.nr; i++)
		q.rd.data[i] = &q.f.data_io[i];

	for (i = 0; i < nr_cmds; i++)
		qio_command(&q, cmds[i]);

	ret = qcow2_flush(q.img);
	if (ret)
		die(&q, "final flush failed: %s", strerror(-ret));
	qimg_reader_destroy(&q.rd);
	qcow2_chain_close(&q.chain);
	qimg_files_close(&q.f);
	free(q.pat);
	return 0;
}

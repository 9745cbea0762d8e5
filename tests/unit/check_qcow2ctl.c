// SPDX-License-Identifier: GPL-2.0
/*
 * Check tests of qcow2ctl's column table (pretty, raw and JSON output), of
 * its argument parsing (sizes, device names) and of the pure parts of the
 * chain resolver (QEMU's path rules, format probing, files that are no
 * images, QEMU's image locks between two open files). Built and run by "make -C qcow2ctl check".
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "lock.h"
#include "table.h"
#include "util.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(arr)	(sizeof(arr) / sizeof((arr)[0]))
#endif

static const struct qctl_column cols[] = {
	{ "NAME", QCTL_CELL_STR },
	{ "SIZE", QCTL_CELL_NUM },
	{ "RO", QCTL_CELL_BOOL },
	{ "IMAGE", QCTL_CELL_STR },
};

/* Print @t in @mode into a string the caller frees. */
static char *render(struct qctl_table *t, enum qctl_table_mode mode,
		    bool headings)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	f = open_memstream(&buf, &len);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(qctl_table_print(t, f, mode, headings), 0);
	fclose(f);
	return buf;
}

static struct qctl_table *two_rows(void)
{
	struct qctl_table *t = qctl_table_new("qcowdevices", cols, 4);

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(qctl_table_add_row(t), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 0, "/dev/qcow0"), 0);
	ck_assert_int_eq(qctl_table_set_num(t, 1, 1073741824ULL), 0);
	ck_assert_int_eq(qctl_table_set_bool(t, 2, true), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 3, "/img/a b\"c\\.qcow2"), 0);
	ck_assert_int_eq(qctl_table_add_row(t), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 0, "/dev/qcow12"), 0);
	ck_assert_int_eq(qctl_table_set_num(t, 1, 512), 0);
	ck_assert_int_eq(qctl_table_set_bool(t, 2, false), 0);
	/* IMAGE of the second row left absent */
	return t;
}

START_TEST(test_table_pretty)
{
	struct qctl_table *t = two_rows();
	char *s = render(t, QCTL_TABLE_PRETTY, true);

	ck_assert_str_eq(s,
		"NAME              SIZE RO IMAGE\n"
		"/dev/qcow0  1073741824  1 /img/a b\"c\\.qcow2\n"
		"/dev/qcow12        512  0\n");
	free(s);
	s = render(t, QCTL_TABLE_PRETTY, false);
	ck_assert_str_eq(s,
		"/dev/qcow0  1073741824  1 /img/a b\"c\\.qcow2\n"
		"/dev/qcow12        512  0\n");
	free(s);
	qctl_table_free(t);
}

START_TEST(test_table_raw)
{
	struct qctl_table *t = two_rows();
	char *s = render(t, QCTL_TABLE_RAW, true);

	ck_assert_str_eq(s,
		"NAME SIZE RO IMAGE\n"
		"/dev/qcow0 1073741824 1 /img/a\\x20b\"c\\x5c.qcow2\n"
		"/dev/qcow12 512 0 \n");
	free(s);
	qctl_table_free(t);
}

START_TEST(test_table_json)
{
	struct qctl_table *t = two_rows();
	char *s = render(t, QCTL_TABLE_JSON, true);

	ck_assert_str_eq(s,
		"{\n"
		"   \"qcowdevices\": [\n"
		"      {\n"
		"         \"name\": \"/dev/qcow0\",\n"
		"         \"size\": 1073741824,\n"
		"         \"ro\": true,\n"
		"         \"image\": \"/img/a b\\\"c\\\\.qcow2\"\n"
		"      },\n"
		"      {\n"
		"         \"name\": \"/dev/qcow12\",\n"
		"         \"size\": 512,\n"
		"         \"ro\": false,\n"
		"         \"image\": null\n"
		"      }\n"
		"   ]\n"
		"}\n");
	free(s);
	qctl_table_free(t);
}

START_TEST(test_table_empty)
{
	struct qctl_table *t = qctl_table_new("qcowdevices", cols, 4);
	char *s;

	s = render(t, QCTL_TABLE_PRETTY, true);
	ck_assert_str_eq(s, "");
	free(s);
	s = render(t, QCTL_TABLE_JSON, true);
	ck_assert_str_eq(s, "{\n   \"qcowdevices\": []\n}\n");
	free(s);
	qctl_table_free(t);
}

START_TEST(test_table_escape_control)
{
	struct qctl_table *t = qctl_table_new("qcowdevices", cols, 1);
	char *s;

	ck_assert_int_eq(qctl_table_add_row(t), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 0, "a\nb\x01"), 0);
	s = render(t, QCTL_TABLE_PRETTY, false);
	ck_assert_str_eq(s, "a\\x0ab\\x01\n");
	free(s);
	s = render(t, QCTL_TABLE_JSON, false);
	ck_assert_ptr_nonnull(strstr(s, "\"name\": \"a\\nb\\u0001\""));
	free(s);
	qctl_table_free(t);
}

START_TEST(test_table_misuse)
{
	struct qctl_table *t = qctl_table_new("x", cols, 4);

	ck_assert_int_eq(qctl_table_set_str(t, 0, "no row"), -EINVAL);
	ck_assert_int_eq(qctl_table_add_row(t), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 4, "bad column"), -EINVAL);
	ck_assert_int_eq(qctl_table_set_num(t, 0, 1), -EINVAL);
	ck_assert_int_eq(qctl_table_set_str(t, 1, "not a number"), -EINVAL);
	qctl_table_free(t);
	ck_assert_ptr_null(qctl_table_new("x", cols, 0));
}

START_TEST(test_table_many_rows)
{
	struct qctl_table *t = qctl_table_new("x", cols, 4);
	int i;

	for (i = 0; i < 100; i++) {
		ck_assert_int_eq(qctl_table_add_row(t), 0);
		ck_assert_int_eq(qctl_table_set_num(t, 1, i), 0);
	}
	free(render(t, QCTL_TABLE_PRETTY, true));
	qctl_table_free(t);
}

START_TEST(test_parse_size)
{
	static const struct {
		const char *s;
		int ret;
		__u64 bytes;
	} cases[] = {
		{ "0", 0, 0 },
		{ "4096", 0, 4096 },
		{ "64K", 0, 64ULL << 10 },
		{ "64k", 0, 64ULL << 10 },
		{ "8M", 0, 8ULL << 20 },
		{ "8MiB", 0, 8ULL << 20 },
		{ "1G", 0, 1ULL << 30 },
		{ "2T", 0, 2ULL << 40 },
		{ "18446744073709551615", 0, ~0ULL },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "16777216T", -ERANGE, 0 },
		{ "16777215T", 0, 16777215ULL << 40 },
		{ "", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1KB", -EINVAL, 0 },
		{ "1Ki", -EINVAL, 0 },
		{ "1P", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		__u64 bytes = 12345;
		int ret = qctl_parse_size(cases[i].s, &bytes);

		ck_assert_msg(ret == cases[i].ret, "'%s': %d", cases[i].s,
			      ret);
		if (!ret)
			ck_assert_msg(bytes == cases[i].bytes, "'%s': %llu",
				      cases[i].s, bytes);
	}
}

START_TEST(test_parse_dev)
{
	__u32 index = 99;

	ck_assert_int_eq(qctl_parse_dev("/dev/qcow0", &index), 0);
	ck_assert_uint_eq(index, 0);
	ck_assert_int_eq(qctl_parse_dev("qcow17", &index), 0);
	ck_assert_uint_eq(index, 17);
	ck_assert_int_eq(qctl_parse_dev("5", &index), 0);
	ck_assert_uint_eq(index, 5);
	ck_assert_int_eq(qctl_parse_dev("4294967295", &index), 0);
	ck_assert_uint_eq(index, 4294967295U);
	ck_assert_int_eq(qctl_parse_dev("4294967296", &index), -ERANGE);
	ck_assert_int_eq(qctl_parse_dev("qcow", &index), -EINVAL);
	ck_assert_int_eq(qctl_parse_dev("qcow0p1", &index), -EINVAL);
	ck_assert_int_eq(qctl_parse_dev("/dev/loop0", &index), -EINVAL);
	ck_assert_int_eq(qctl_parse_dev("/dev/qcow-1", &index), -EINVAL);
	ck_assert_int_eq(qctl_parse_dev("-1", &index), -EINVAL);
	ck_assert_int_eq(qctl_parse_dev("", &index), -EINVAL);
	ck_assert_int_eq(qctl_parse_dev("/nonexistent/x", &index), -EINVAL);
}

START_TEST(test_table_json_cell)
{
	static const struct qctl_column jcols[] = {
		{ "NAME", QCTL_CELL_STR },
		{ "CHAIN", QCTL_CELL_JSON },
	};
	struct qctl_table *t = qctl_table_new("qcowdevices", jcols, 2);
	char *s;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(qctl_table_add_row(t), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 0, "/dev/qcow0"), 0);
	ck_assert_int_eq(qctl_table_set_json(t, 1, "[{\"path\": \"/a\"}]",
					     "/a"), 0);
	ck_assert_int_eq(qctl_table_set_str(t, 1, "x"), -EINVAL);
	s = render(t, QCTL_TABLE_JSON, true);
	ck_assert_str_eq(s,
		"{\n   \"qcowdevices\": [\n      {\n"
		"         \"name\": \"/dev/qcow0\",\n"
		"         \"chain\": [{\"path\": \"/a\"}]\n"
		"      }\n   ]\n}\n");
	free(s);
	s = render(t, QCTL_TABLE_RAW, false);
	ck_assert_str_eq(s, "/dev/qcow0 /a\n");
	free(s);
	qctl_table_free(t);
}

START_TEST(test_path_has_protocol)
{
	ck_assert(qctl_path_has_protocol("nbd:localhost:10809"));
	ck_assert(qctl_path_has_protocol("json:{\"driver\": \"raw\"}"));
	ck_assert(qctl_path_has_protocol("file:/srv/base.qcow2"));
	ck_assert(qctl_path_has_protocol("nbd+unix:///x?socket=/s"));
	ck_assert(!qctl_path_has_protocol("base.qcow2"));
	ck_assert(!qctl_path_has_protocol("/srv/a:b.qcow2"));
	ck_assert(!qctl_path_has_protocol("./a:b.qcow2"));
	ck_assert(!qctl_path_has_protocol("dir/a:b.qcow2"));
	ck_assert(!qctl_path_has_protocol(""));
}

START_TEST(test_path_combine)
{
	static const struct {
		const char *base, *name, *want;
	} cases[] = {
		{ "d/top.qcow2", "base.qcow2", "d/base.qcow2" },
		{ "top.qcow2", "base.qcow2", "base.qcow2" },
		{ "/srv/vm/top.qcow2", "../b/base.raw", "/srv/vm/../b/base.raw" },
		{ "/srv/vm/top.qcow2", "/abs/base.qcow2", "/abs/base.qcow2" },
		{ "/top.qcow2", "base.qcow2", "/base.qcow2" },
		{ "d//top.qcow2", "sub/base", "d//sub/base" },
		{ "a/b/c/mid.qcow2", "x/y.qcow2", "a/b/c/x/y.qcow2" },
	};
	size_t i;
	char *p;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		p = qctl_path_combine(cases[i].base, cases[i].name);
		ck_assert_ptr_nonnull(p);
		ck_assert_str_eq(p, cases[i].want);
		free(p);
	}
}

START_TEST(test_path_absolute)
{
	char *old = getcwd(NULL, 0);
	char *p;

	ck_assert_ptr_nonnull(old);
	ck_assert_int_eq(chdir("/"), 0);
	p = qctl_path_absolute("base.qcow2");
	ck_assert_str_eq(p, "/base.qcow2");
	free(p);
	ck_assert_int_eq(chdir("/tmp"), 0);
	p = qctl_path_absolute("d/base.qcow2");
	ck_assert_str_eq(p, "/tmp/d/base.qcow2");
	free(p);
	p = qctl_path_absolute("/srv/x");
	ck_assert_str_eq(p, "/srv/x");
	free(p);
	ck_assert_int_eq(chdir(old), 0);
	free(old);
}

START_TEST(test_format_probe)
{
	unsigned char buf[512];

	memset(buf, 0, sizeof(buf));
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "raw");
	memcpy(buf, "QFI\xfb\0\0\0\3", 8);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "qcow2");
	memcpy(buf, "QFI\xfb\0\0\0\2", 8);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "qcow2");
	memcpy(buf, "QFI\xfb\0\0\0\1", 8);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "qcow");
	/* Too short to hold a version: not qcow2 */
	ck_assert_str_eq(qctl_format_probe(buf, 4), "raw");
	memcpy(buf, "QED\0", 4);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "qed");
	memcpy(buf, "KDMV", 4);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "vmdk");
	memcpy(buf, "vhdxfile", 8);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "vhdx");
	memset(buf, 0, sizeof(buf));
	memcpy(buf + 64, "\x7f\x10\xda\xbe", 4);
	ck_assert_str_eq(qctl_format_probe(buf, sizeof(buf)), "vdi");
	ck_assert_str_eq(qctl_format_probe(buf, 64), "raw");
}

/* Files that are no image are refused before anything is decoded. */
START_TEST(test_chain_not_a_file)
{
	char dir[] = "/tmp/check_qcow2ctl.XXXXXX";
	char fifo[64], msg[QCTL_CHAIN_MSG_BYTES];
	struct qctl_chain c;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);

	ck_assert_int_eq(qctl_chain_open(&c, fifo, NULL, msg, sizeof(msg)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(msg,
				     "open failed: not a regular file or block device"));
	qctl_chain_close(&c);
	ck_assert_int_eq(qctl_chain_open(&c, dir, NULL, msg, sizeof(msg)),
			 -EISDIR);
	qctl_chain_close(&c);
	ck_assert_int_eq(qctl_chain_open(&c, "/nonexistent/top.qcow2", NULL,
					 msg, sizeof(msg)), -ENOENT);
	ck_assert_str_eq(msg,
		"/nonexistent/top.qcow2: open failed: No such file or directory");
	qctl_chain_close(&c);
	qctl_chain_close(&c);

	unlink(fifo);
	rmdir(dir);
}

/* The access mode @fd was opened with: O_RDONLY or O_RDWR. */
static int fd_accmode(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	ck_assert_int_ge(fl, 0);
	return fl & O_ACCMODE;
}

/*
 * A read-write attach opens the top image read-write and its backing file
 * read-only; a read-only one opens both read-only. Needs qemu-img to make
 * the images; without it there is nothing to check.
 */
START_TEST(test_chain_writable_top_only)
{
	char dir[] = "/tmp/check_qcow2ctl.XXXXXX";
	char cmd[512], base[64], top[64], msg[QCTL_CHAIN_MSG_BYTES];
	struct qctl_chain_opts opts = { .writable = true };
	struct qctl_chain c;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.raw", dir);
	snprintf(top, sizeof(top), "%s/top.qcow2", dir);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f raw %s 1M && qemu-img create -q -f qcow2 -b base.raw -F raw %s >/dev/null 2>&1",
		 base, top);
	if (system(cmd) == 0) {
		ck_assert_int_eq(qctl_chain_open(&c, top, &opts, msg,
						 sizeof(msg)), 0);
		ck_assert_uint_eq(c.nr, 2);
		ck_assert_int_eq(fd_accmode(c.layers[0].fd), O_RDWR);
		ck_assert_int_eq(fd_accmode(c.layers[1].fd), O_RDONLY);
		qctl_chain_close(&c);

		opts.writable = false;
		ck_assert_int_eq(qctl_chain_open(&c, top, &opts, msg,
						 sizeof(msg)), 0);
		ck_assert_int_eq(fd_accmode(c.layers[0].fd), O_RDONLY);
		ck_assert_int_eq(fd_accmode(c.layers[1].fd), O_RDONLY);
		qctl_chain_close(&c);
	}
	unlink(top);
	unlink(base);
	rmdir(dir);
}

/* 1 if an open file other than @fd holds a lock on byte @off. */
static int other_lock_at(int fd, off_t off)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = off,
		.l_len = 1,
	};

	ck_assert_int_eq(fcntl(fd, F_OFD_GETLK, &fl), 0);
	return fl.l_type != F_UNLCK;
}

/*
 * The bytes each use locks are the ones QEMU 7.2's file-posix locks for
 * the same use (read off /proc/locks beside qemu-storage-daemon): a
 * read-write qcow2 100, 101, 103, 201, 203; a read-only one or a backing
 * file 100, 201, 203; force-share 100 alone.
 */
START_TEST(test_lock_bytes)
{
	static const struct {
		enum qctl_lock_use use;
		const char *bytes;
	} t[] = {
		{ QCTL_LOCK_WRITER, "100 101 103 201 203" },
		{ QCTL_LOCK_READER, "100 201 203" },
		{ QCTL_LOCK_SHARED_READER, "100" },
	};
	char path[] = "/tmp/check_qcow2ctl_lock.XXXXXX";
	char msg[256], got[64];
	int fd, probe, off, i;
	size_t n;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	for (i = 0; i < (int)ARRAY_SIZE(t); i++) {
		int f = open(path, O_RDWR);

		ck_assert_int_ge(f, 0);
		probe = open(path, O_RDONLY);
		ck_assert_int_ge(probe, 0);
		ck_assert_int_eq(qctl_lock_file(f, t[i].use, "img", msg,
						sizeof(msg)), 0);
		got[0] = '\0';
		n = 0;
		for (off = 100; off < 300; off++)
			if (other_lock_at(probe, off))
				n += snprintf(got + n, sizeof(got) - n, "%s%d",
					      n ? " " : "", off);
		ck_assert_str_eq(got, t[i].bytes);
		close(f);
		/* Closing the open file drops its locks. */
		ck_assert_int_eq(other_lock_at(probe, 100), 0);
		close(probe);
	}
	close(fd);
	unlink(path);
}
END_TEST

/* Which uses may hold one file at once, as QEMU decides it. */
START_TEST(test_lock_conflicts)
{
	static const struct {
		enum qctl_lock_use first, second;
		int ret;
	} t[] = {
		{ QCTL_LOCK_WRITER, QCTL_LOCK_WRITER, -EBUSY },
		{ QCTL_LOCK_WRITER, QCTL_LOCK_READER, -EBUSY },
		{ QCTL_LOCK_READER, QCTL_LOCK_WRITER, -EBUSY },
		{ QCTL_LOCK_READER, QCTL_LOCK_READER, 0 },
		{ QCTL_LOCK_WRITER, QCTL_LOCK_SHARED_READER, 0 },
		{ QCTL_LOCK_SHARED_READER, QCTL_LOCK_WRITER, 0 },
		{ QCTL_LOCK_SHARED_READER, QCTL_LOCK_READER, 0 },
	};
	char path[] = "/tmp/check_qcow2ctl_lock.XXXXXX";
	char msg[256];
	int fd, a, b, i;

	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	for (i = 0; i < (int)ARRAY_SIZE(t); i++) {
		a = open(path, O_RDWR);
		b = open(path, O_RDWR);
		ck_assert_int_ge(a, 0);
		ck_assert_int_ge(b, 0);
		ck_assert_int_eq(qctl_lock_file(a, t[i].first, "a", msg,
						sizeof(msg)), 0);
		msg[0] = '\0';
		ck_assert_int_eq(qctl_lock_file(b, t[i].second, "b", msg,
						sizeof(msg)), t[i].ret);
		if (t[i].ret) {
			ck_assert_ptr_nonnull(strstr(msg, "b: image is locked by another process"));
			/* The refused file keeps no lock of its own. */
			ck_assert_int_eq(other_lock_at(a, 101) +
					 other_lock_at(a, 201), 0);
		}
		close(a);
		close(b);
	}
	close(fd);
	unlink(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qcow2ctl");
	TCase *tc = tcase_create("table");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_table_pretty);
	tcase_add_test(tc, test_table_raw);
	tcase_add_test(tc, test_table_json);
	tcase_add_test(tc, test_table_empty);
	tcase_add_test(tc, test_table_escape_control);
	tcase_add_test(tc, test_table_misuse);
	tcase_add_test(tc, test_table_many_rows);
	tcase_add_test(tc, test_table_json_cell);
	suite_add_tcase(s, tc);
	tc = tcase_create("args");
	tcase_add_test(tc, test_parse_size);
	tcase_add_test(tc, test_parse_dev);
	suite_add_tcase(s, tc);
	tc = tcase_create("chain");
	tcase_add_test(tc, test_path_has_protocol);
	tcase_add_test(tc, test_path_combine);
	tcase_add_test(tc, test_path_absolute);
	tcase_add_test(tc, test_format_probe);
	tcase_add_test(tc, test_chain_not_a_file);
	tcase_add_test(tc, test_chain_writable_top_only);
	suite_add_tcase(s, tc);
	tc = tcase_create("lock");
	tcase_add_test(tc, test_lock_bytes);
	tcase_add_test(tc, test_lock_conflicts);
	suite_add_tcase(s, tc);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

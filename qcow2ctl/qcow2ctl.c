// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl - attach qcow2 images to /dev/qcowN devices of the qcow2blk
 * module, detach them, list and tune them. The command layer: options,
 * messages and output. Everything that talks to the kernel is in nl.c.
 */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "qcow2blk.h"
#include "chain.h"
#include "nl.h"
#include "precheck.h"
#include "table.h"
#include "util.h"

#ifndef QCOW2CTL_VERSION
#define QCOW2CTL_VERSION "0.1"
#endif

#define QCTL_PROG	"qcow2ctl"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(arr)	(sizeof(arr) / sizeof((arr)[0]))
#endif

/* Long options without a short form. */
enum {
	OPT_L2_CACHE = 256,
	OPT_BUFFERED,
	OPT_INDEX,
	OPT_SHOW,
	OPT_RAW,
	OPT_SNAPSHOT,
	OPT_DATA_FILE,
	OPT_MAP_CACHE,
	OPT_DRY_RUN,
	OPT_RC_CACHE,
	OPT_SECTOR_SIZE,
	OPT_FORCE_SHARE,
};

/* ---- list columns ------------------------------------------------------ */

enum {
	COL_NAME,
	COL_IMAGE,
	COL_SIZE,
	COL_CLUSTER,
	COL_VERSION,
	COL_RO,
	COL_DIO,
	COL_L2CACHE,
	COL_LAYERS,
	COL_BACKING,
	COL_SNAPSHOT,
	COL_RCCACHE,
	COL_SECTOR,
	COL_CHAIN,
};

struct qctl_colinfo {
	struct qctl_column col;
	const char *help;
};

static const struct qctl_colinfo qctl_colinfos[] = {
	[COL_NAME]	= { { "NAME", QCTL_CELL_STR }, "device name" },
	[COL_IMAGE]	= { { "IMAGE", QCTL_CELL_STR }, "image file path" },
	[COL_SIZE]	= { { "SIZE", QCTL_CELL_NUM },
			    "virtual size in bytes" },
	[COL_CLUSTER]	= { { "CLUSTER", QCTL_CELL_NUM },
			    "cluster size in bytes" },
	[COL_VERSION]	= { { "VERSION", QCTL_CELL_NUM },
			    "qcow2 format version" },
	[COL_RO]	= { { "RO", QCTL_CELL_BOOL }, "read-only device" },
	[COL_DIO]	= { { "DIO", QCTL_CELL_BOOL },
			    "direct I/O on the image file" },
	[COL_L2CACHE]	= { { "L2CACHE", QCTL_CELL_NUM },
			    "L2 table cache size in bytes" },
	[COL_LAYERS]	= { { "LAYERS", QCTL_CELL_NUM },
			    "images in the chain, the top included" },
	[COL_BACKING]	= { { "BACKING", QCTL_CELL_STR },
			    "backing file of the top image" },
	[COL_SNAPSHOT]	= { { "SNAPSHOT", QCTL_CELL_STR },
			    "internal snapshot attached" },
	[COL_RCCACHE]	= { { "RCCACHE", QCTL_CELL_NUM },
			    "refcount cache size in bytes (read-write only)" },
	[COL_SECTOR]	= { { "SECTOR", QCTL_CELL_NUM },
			    "logical sector size of the device in bytes" },
	[COL_CHAIN]	= { { "CHAIN", QCTL_CELL_JSON },
			    "every layer, top first (JSON default only)" },
};

#define QCTL_NR_COLINFOS	ARRAY_SIZE(qctl_colinfos)

/* snapshots columns, as qemu-img snapshot -l prints them */
enum {
	SCOL_ID,
	SCOL_NAME,
	SCOL_VMSIZE,
	SCOL_DATE,
	SCOL_VMCLOCK,
	SCOL_DISKSIZE,
};

static const struct qctl_colinfo qctl_snap_colinfos[] = {
	[SCOL_ID]	= { { "ID", QCTL_CELL_STR }, "snapshot ID" },
	[SCOL_NAME]	= { { "NAME", QCTL_CELL_STR }, "snapshot name (tag)" },
	[SCOL_VMSIZE]	= { { "VM-SIZE", QCTL_CELL_NUM },
			    "saved VM state in bytes" },
	[SCOL_DATE]	= { { "DATE", QCTL_CELL_STR },
			    "when it was taken, local time" },
	[SCOL_VMCLOCK]	= { { "VM-CLOCK", QCTL_CELL_STR },
			    "guest clock, HH:MM:SS.mmm" },
	[SCOL_DISKSIZE]	= { { "DISK-SIZE", QCTL_CELL_NUM },
			    "virtual disk size in bytes" },
};

#define QCTL_NR_SNAP_COLINFOS	ARRAY_SIZE(qctl_snap_colinfos)
/* -O may repeat columns; this bounds the list. */
#define QCTL_MAX_COLS		64

/* ---- messages ---------------------------------------------------------- */

static void qctl_usage(FILE *out)
{
	size_t i;

	fputs("Usage:\n"
	      " " QCTL_PROG " attach [options] <image>\n"
	      " " QCTL_PROG " detach <dev>... | -a\n"
	      " " QCTL_PROG " list [options] [<dev>]\n"
	      " " QCTL_PROG " set <dev> [--l2-cache <size>] [--refcount-cache <size>]\n"
	      " " QCTL_PROG " snapshots [options] <image>\n"
	      " " QCTL_PROG " features\n"
	      "\n"
	      "Attach qcow2 images to /dev/qcowN block devices of the qcow2blk\n"
	      "kernel module, detach them, and list or tune attached devices.\n"
	      "A <dev> is /dev/qcowN, qcowN or N.\n"
	      "\n"
	      "Attach options:\n"
	      " -r, --read-only         attach read-only (default: read-write;\n"
	      "                           backing files are never written)\n"
	      " -U, --force-share       read-only: attach even while a VM or a QEMU\n"
	      "                           tool writes the image (reads may then\n"
	      "                           be inconsistent)\n"
	      "     --snapshot <id>     attach an internal snapshot (ID or name;\n"
	      "                           needs --read-only)\n"
	      "     --data-file <path>  external data file of the image\n"
	      "     --l2-cache <size>   L2 table cache size (K, M, G suffixes;\n"
	      "                           0: the minimum)\n"
	      "     --map-cache <size>  backing chain mapping cache size\n"
	      "     --refcount-cache <size>\n"
	      "                         refcount block cache size (read-write\n"
	      "                           only; 0: the minimum)\n"
	      "     --sector-size <n>   logical sector size of the device: 512,\n"
	      "                           1024, 2048 or 4096 (default: 512, or\n"
	      "                           4096 for an image on a 4Kn disk)\n"
	      "     --buffered          buffered instead of direct I/O on the image\n"
	      "     --index <N>         attach as /dev/qcow<N>\n"
	      "     --show              print the device name after attaching\n"
	      "     --dry-run           open the backing chain, print it, attach\n"
	      "                           nothing\n"
	      "\n"
	      "Set options (at least one):\n"
	      "     --l2-cache <size>   resize the L2 table cache\n"
	      "     --refcount-cache <size>\n"
	      "                         resize the refcount cache (read-write)\n"
	      "\n"
	      "Detach options:\n"
	      " -a, --all               detach all devices\n"
	      "\n"
	      "List and snapshots options:\n"
	      " -J, --json              use JSON output format\n"
	      " -n, --noheadings        don't print headings\n"
	      " -O, --output <list>     comma-separated columns to print\n"
	      "     --raw               use raw output format\n"
	      "\n"
	      " -h, --help              display this help\n"
	      " -V, --version           display version\n"
	      "\n"
	      "Available list columns:\n", out);
	for (i = 0; i < QCTL_NR_COLINFOS; i++)
		fprintf(out, " %9s  %s\n", qctl_colinfos[i].col.name,
			qctl_colinfos[i].help);
	fputs("\nAvailable snapshots columns:\n", out);
	for (i = 0; i < QCTL_NR_SNAP_COLINFOS; i++)
		fprintf(out, " %9s  %s\n", qctl_snap_colinfos[i].col.name,
			qctl_snap_colinfos[i].help);
	fputs("\nFor more details see qcow2ctl(8).\n", out);
}

static int qctl_try_help(void)
{
	fprintf(stderr, "Try '%s --help' for more information.\n", QCTL_PROG);
	return EXIT_FAILURE;
}

/* getopt_long() is silenced (opterr = 0) so every message has one form. */
static int qctl_bad_option(char **argv, int c)
{
	const char *arg = argv[optind - 1];
	bool is_short = strncmp(arg, "--", 2) && optopt > 0 &&
			optopt < OPT_L2_CACHE;

	if (c == ':' && is_short)
		warnx("option requires an argument -- '%c'", optopt);
	else if (c == ':')
		warnx("option '%s' requires an argument", arg);
	else if (is_short)
		warnx("invalid option -- '%c'", optopt);
	else
		warnx("unrecognized option '%s'", arg);
	return qctl_try_help();
}

static int qctl_help(void)
{
	qctl_usage(stdout);
	return EXIT_SUCCESS;
}

static int qctl_version(void)
{
	printf("%s from qcow2blk %s\n", QCTL_PROG, QCOW2CTL_VERSION);
	return EXIT_SUCCESS;
}

/* The kernel's own words when it sent any, else the errno text. */
static const char *qctl_reason(const struct qctl_nl *nl, int ret)
{
	const char *msg = nl ? qctl_nl_errmsg(nl) : "";

	return *msg ? msg : strerror(-ret);
}

static int qctl_connect(struct qctl_nl **nl)
{
	int ret;

	ret = qctl_nl_open(nl);
	if (ret == -ENOENT)
		warnx("kernel module qcow2blk is not loaded");
	else if (ret)
		warnx("cannot talk to generic netlink: %s", strerror(-ret));
	return ret;
}

static int qctl_get_size(const char *opt, const char *arg, __u64 *bytes)
{
	int ret = qctl_parse_size(arg, bytes);

	if (ret == -ERANGE)
		warnx("%s: size too large: '%s'", opt, arg);
	else if (ret)
		warnx("%s: invalid size: '%s'", opt, arg);
	return ret;
}

/* Index of a <dev> argument and its canonical name for messages. */
static int qctl_get_dev(const char *arg, __u32 *index, char *name,
			size_t name_bytes)
{
	int ret = qctl_parse_dev(arg, index);

	if (ret) {
		warnx("%s: not a qcow2blk device", arg);
		return ret;
	}
	snprintf(name, name_bytes, "/dev/" QCOW2BLK_DISK_PREFIX "%u", *index);
	return 0;
}

static void qctl_dev_path(const struct qctl_dev *dev, char *buf, size_t len)
{
	if (qctl_dev_has(dev, QCOW2BLK_ATTR_DISK_NAME) && dev->disk_name[0])
		snprintf(buf, len, "/dev/%s", dev->disk_name);
	else
		snprintf(buf, len, "/dev/" QCOW2BLK_DISK_PREFIX "%u",
			 dev->index);
}

/* ---- attach ------------------------------------------------------------ */

static bool qctl_precheck_skipped(void)
{
	const char *e = getenv("QCOW2CTL_NO_PRECHECK");

	return e && !strcmp(e, "1");
}

static const char *qctl_format_name(__u32 format)
{
	switch (format) {
	case QCOW2BLK_FMT_QCOW2:
		return "qcow2";
	case QCOW2BLK_FMT_RAW:
		return "raw";
	default:
		return "unknown";
	}
}

/* QEMU warns when it guesses a format; so do we, once per layer. */
static void qctl_warn_probed(const struct qctl_chain *c)
{
	unsigned int i;

	for (i = 1; i < c->nr; i++)
		if (c->layers[i].probed)
			warnx("warning: %s: backing file %s: no format named, probed %s",
			      qctl_chain_name(c, i - 1), c->layers[i].path,
			      qctl_format_name(c->layers[i].format));
}

/* --dry-run: "N FORMAT PATH [DATA-FILE]", one layer a line, top first. */
static int qctl_print_chain(const struct qctl_chain *c)
{
	const struct qctl_layer *l;
	unsigned int i;

	for (i = 0; i < c->nr; i++) {
		l = &c->layers[i];
		printf("%u %s %s%s%s\n", i, qctl_format_name(l->format),
		       l->path, l->data_path ? " " : "",
		       l->data_path ? l->data_path : "");
	}
	if (fflush(stdout) || ferror(stdout)) {
		warnx("write error");
		return -EIO;
	}
	return 0;
}

/* The layers below the top, as the kernel wants them. */
static struct qctl_attach_layer *qctl_backing_of(const struct qctl_chain *c)
{
	struct qctl_attach_layer *b;
	unsigned int i;

	b = calloc(c->nr, sizeof(*b));
	if (!b)
		return NULL;
	for (i = 1; i < c->nr; i++) {
		b[i - 1].fd = c->layers[i].fd;
		b[i - 1].format = c->layers[i].format;
		b[i - 1].data_fd = c->layers[i].data_fd;
	}
	return b;
}

static int qctl_cmd_attach(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "read-only",	no_argument,		NULL, 'r' },
		{ "force-share", no_argument,		NULL, 'U' },
		{ "snapshot",	required_argument,	NULL, OPT_SNAPSHOT },
		{ "data-file",	required_argument,	NULL, OPT_DATA_FILE },
		{ "l2-cache",	required_argument,	NULL, OPT_L2_CACHE },
		{ "map-cache",	required_argument,	NULL, OPT_MAP_CACHE },
		{ "refcount-cache", required_argument,	NULL, OPT_RC_CACHE },
		{ "sector-size", required_argument,	NULL, OPT_SECTOR_SIZE },
		{ "buffered",	no_argument,		NULL, OPT_BUFFERED },
		{ "index",	required_argument,	NULL, OPT_INDEX },
		{ "show",	no_argument,		NULL, OPT_SHOW },
		{ "dry-run",	no_argument,		NULL, OPT_DRY_RUN },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct qctl_attach_req req = { .fd = -1, .data_fd = -1 };
	struct qctl_chain_opts copts = { 0 };
	struct qctl_attach_layer *backing = NULL;
	struct qctl_nl *nl = NULL;
	struct qctl_chain chain;
	struct qctl_dev dev = { 0 };
	char msg[QCTL_CHAIN_MSG_BYTES];
	char path[QCTL_DISK_NAME_BYTES + 8];
	const char *image;
	bool show = false, dry_run = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":rUh", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			req.flags |= QCOW2BLK_F_READ_ONLY;
			break;
		case 'U':
			copts.force_share = true;
			break;
		case OPT_SNAPSHOT:
			if (!*optarg ||
			    strlen(optarg) > QCOW2BLK_SNAPSHOT_NAME_MAX) {
				warnx("--snapshot: invalid snapshot ID or name: '%s'",
				      optarg);
				return EXIT_FAILURE;
			}
			req.snapshot = optarg;
			break;
		case OPT_DATA_FILE:
			copts.data_file = optarg;
			break;
		case OPT_L2_CACHE:
			if (qctl_get_size("--l2-cache", optarg,
					  &req.l2_cache_bytes))
				return EXIT_FAILURE;
			/*
			 * At attach the module reads 0 as "default"; any
			 * size below one slice is rounded up to the minimum.
			 */
			if (!req.l2_cache_bytes)
				req.l2_cache_bytes = 1;
			req.has_l2_cache = true;
			break;
		case OPT_MAP_CACHE:
			if (qctl_get_size("--map-cache", optarg,
					  &req.map_cache_bytes))
				return EXIT_FAILURE;
			/* As for the L2 cache: 0 would mean "default". */
			if (!req.map_cache_bytes)
				req.map_cache_bytes = 1;
			req.has_map_cache = true;
			break;
		case OPT_RC_CACHE:
			if (qctl_get_size("--refcount-cache", optarg,
					  &req.rc_cache_bytes))
				return EXIT_FAILURE;
			/* As for the L2 cache: 0 would mean "default". */
			if (!req.rc_cache_bytes)
				req.rc_cache_bytes = 1;
			req.has_rc_cache = true;
			break;
		case OPT_SECTOR_SIZE:
			if (qctl_parse_u32(optarg, &req.sector_size) ||
			    req.sector_size < 512 || req.sector_size > 4096 ||
			    (req.sector_size & (req.sector_size - 1))) {
				warnx("--sector-size: must be 512, 1024, 2048 or 4096: '%s'",
				      optarg);
				return EXIT_FAILURE;
			}
			break;
		case OPT_BUFFERED:
			req.flags |= QCOW2BLK_F_BUFFERED_IO;
			break;
		case OPT_INDEX:
			if (qctl_parse_u32(optarg, &req.index)) {
				warnx("--index: invalid index: '%s'", optarg);
				return EXIT_FAILURE;
			}
			req.has_index = true;
			break;
		case OPT_SHOW:
			show = true;
			break;
		case OPT_DRY_RUN:
			dry_run = true;
			break;
		case 'h':
			return qctl_help();
		default:
			return qctl_bad_option(argv, c);
		}
	}
	if (optind != argc - 1) {
		warnx(optind == argc ? "attach: no image specified" :
		      "attach: only one image at a time");
		return qctl_try_help();
	}
	if (req.snapshot && !(req.flags & QCOW2BLK_F_READ_ONLY)) {
		warnx("attach: --snapshot needs --read-only");
		return qctl_try_help();
	}
	if (copts.force_share && !(req.flags & QCOW2BLK_F_READ_ONLY)) {
		warnx("attach: --force-share needs --read-only");
		return qctl_try_help();
	}
	if (req.has_rc_cache && (req.flags & QCOW2BLK_F_READ_ONLY)) {
		warnx("attach: --refcount-cache needs a read-write attach");
		return qctl_try_help();
	}
	image = argv[optind];

	/*
	 * The kernel never opens paths: it serves the files we hand it, the
	 * top image and everything it depends on, found here as QEMU would.
	 */
	copts.writable = !(req.flags & QCOW2BLK_F_READ_ONLY);
	copts.snapshot = req.snapshot;
	copts.no_check = qctl_precheck_skipped();
	ret = qctl_chain_open(&chain, image, &copts, msg, sizeof(msg));
	if (ret) {
		warnx("%s", msg[0] ? msg : strerror(-ret));
		goto out_chain;
	}
	qctl_warn_probed(&chain);
	if (chain.unlocked)
		warnx("%s: the file system has no file locks: nothing stops a VM or a QEMU tool from using the image meanwhile",
		      chain.unlocked);
	if (dry_run) {
		ret = qctl_print_chain(&chain);
		goto out_chain;
	}

	req.fd = chain.layers[0].fd;
	req.data_fd = chain.layers[0].data_fd;
	if (chain.nr > 1) {
		backing = qctl_backing_of(&chain);
		if (!backing) {
			ret = -ENOMEM;
			warnx("%s", strerror(ENOMEM));
			goto out_chain;
		}
		req.backing = backing;
		req.nr_backing = chain.nr - 1;
	}

	ret = qctl_connect(&nl);
	if (ret)
		goto out_backing;
	ret = qctl_nl_attach(nl, &req, &dev);
	if (ret) {
		warnx("%s: attach failed: %s", image, qctl_reason(nl, ret));
		goto out_nl;
	}
	if (show && !qctl_dev_has(&dev, QCOW2BLK_ATTR_INDEX)) {
		warnx("%s: attached, but the kernel did not report the device",
		      image);
		ret = -EPROTO;
	} else if (show) {
		qctl_dev_path(&dev, path, sizeof(path));
		printf("%s\n", path);
	}

out_nl:
	qctl_dev_release(&dev);
	qctl_nl_close(nl);
out_backing:
	free(backing);
out_chain:
	qctl_chain_close(&chain);
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- detach ------------------------------------------------------------ */

static int qctl_detach_one(struct qctl_nl *nl, __u32 index, const char *name)
{
	int ret = qctl_nl_detach(nl, index);

	if (ret)
		warnx("%s: detach failed: %s", name, qctl_reason(nl, ret));
	return ret;
}

static int qctl_detach_all(struct qctl_nl *nl)
{
	char name[QCTL_DISK_NAME_BYTES + 8];
	struct qctl_dev *devs;
	size_t nr, i;
	int ret, failed = 0;

	ret = qctl_nl_list(nl, &devs, &nr);
	if (ret) {
		warnx("cannot list devices: %s", qctl_reason(nl, ret));
		return ret;
	}
	for (i = 0; i < nr; i++) {
		qctl_dev_path(&devs[i], name, sizeof(name));
		if (qctl_detach_one(nl, devs[i].index, name))
			failed = -EIO;
	}
	qctl_devs_free(devs, nr);
	return failed;
}

static int qctl_cmd_detach(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all",	no_argument,	NULL, 'a' },
		{ "help",	no_argument,	NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char name[QCTL_DISK_NAME_BYTES + 8];
	struct qctl_nl *nl;
	bool all = false;
	bool failed = false;
	size_t i, nr;
	__u32 *idx;
	int c;

	while ((c = getopt_long(argc, argv, ":ah", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			all = true;
			break;
		case 'h':
			return qctl_help();
		default:
			return qctl_bad_option(argv, c);
		}
	}
	nr = argc - optind;
	if (all ? nr > 0 : nr == 0) {
		warnx(all ? "detach: --all takes no device" :
		      "detach: no device specified");
		return qctl_try_help();
	}

	/* Judge every name before detaching any. */
	idx = calloc(nr ? nr : 1, sizeof(*idx));
	if (!idx) {
		warnx("%s", strerror(ENOMEM));
		return EXIT_FAILURE;
	}
	for (i = 0; i < nr; i++)
		if (qctl_get_dev(argv[optind + i], &idx[i], name,
				 sizeof(name)))
			failed = true;
	if (failed || qctl_connect(&nl)) {
		free(idx);
		return EXIT_FAILURE;
	}

	if (all && qctl_detach_all(nl))
		failed = true;
	for (i = 0; i < nr; i++) {
		snprintf(name, sizeof(name), "/dev/" QCOW2BLK_DISK_PREFIX "%u",
			 idx[i]);
		if (qctl_detach_one(nl, idx[i], name))
			failed = true;
	}
	qctl_nl_close(nl);
	free(idx);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- list -------------------------------------------------------------- */

/* "NAME,SIZE" into column ids; returns how many, or -1 after a message. */
static int qctl_parse_columns(const char *list, int *ids, int max,
			      const struct qctl_colinfo *infos, size_t nr_infos)
{
	char *copy, *tok, *save;
	int nr = 0;
	size_t i;

	copy = strdup(list);
	if (!copy) {
		warnx("%s", strerror(ENOMEM));
		return -1;
	}
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < nr_infos; i++)
			if (!strcasecmp(tok, infos[i].col.name))
				break;
		if (i == nr_infos) {
			warnx("unknown column: %s", tok);
			goto err;
		}
		if (nr == max) {
			warnx("too many columns");
			goto err;
		}
		ids[nr++] = i;
	}
	free(copy);
	if (!nr)
		warnx("no columns in '%s'", list);
	return nr ? nr : -1;
err:
	free(copy);
	return -1;
}

/*
 * CHAIN: [{"path": ..., "format": ..., "data-file": ...}, ...] for JSON,
 * the layer paths separated by commas for tables.
 */
static int qctl_set_chain(struct qctl_table *t, int col,
			  const struct qctl_dev *dev)
{
	char *json = NULL, *text = NULL;
	size_t json_len = 0, text_len = 0;
	const struct qctl_dev_layer *l;
	FILE *jf, *tf;
	unsigned int i;
	int ret = -ENOMEM;

	jf = open_memstream(&json, &json_len);
	tf = open_memstream(&text, &text_len);
	if (!jf || !tf)
		goto out;
	fputc('[', jf);
	for (i = 0; i < dev->nr_chain; i++) {
		l = &dev->chain[i];
		/* One layer a line, under the key, as the table indents. */
		fputs(i ? ",\n            {\"path\": " :
		      "\n            {\"path\": ", jf);
		qctl_json_put_string(jf, l->path);
		fputs(", \"format\": ", jf);
		if (l->has_format)
			qctl_json_put_string(jf, qctl_format_name(l->format));
		else
			fputs("null", jf);
		fputs(", \"data-file\": ", jf);
		if (l->data_path)
			qctl_json_put_string(jf, l->data_path);
		else
			fputs("null", jf);
		fputc('}', jf);
		fprintf(tf, "%s%s", i ? "," : "", l->path);
	}
	fputs(dev->nr_chain ? "\n         ]" : "]", jf);
	/* Closing flushes the buffers; both must close either way. */
	ret = fclose(jf);
	ret |= fclose(tf);
	if (!ret)
		ret = qctl_table_set_json(t, col, json, text);
	else
		ret = -ENOMEM;
	goto out_free;
out:
	if (jf)
		fclose(jf);
	if (tf)
		fclose(tf);
out_free:
	free(json);
	free(text);
	return ret;
}

static int qctl_fill_row(struct qctl_table *t, const struct qctl_dev *dev,
			 const int *ids, int nr_ids)
{
	bool has_chain = qctl_dev_has(dev, QCOW2BLK_ATTR_CHAIN);
	bool has_state = qctl_dev_has(dev, QCOW2BLK_ATTR_STATE);
	char name[QCTL_DISK_NAME_BYTES + 8];
	int i, ret;

	ret = qctl_table_add_row(t);
	for (i = 0; i < nr_ids && !ret; i++) {
		switch (ids[i]) {
		case COL_NAME:
			qctl_dev_path(dev, name, sizeof(name));
			ret = qctl_table_set_str(t, i, name);
			break;
		case COL_IMAGE:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_IMAGE_PATH))
				ret = qctl_table_set_str(t, i,
							 dev->image_path);
			break;
		case COL_SIZE:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_VIRTUAL_SIZE))
				ret = qctl_table_set_num(t, i,
							 dev->virtual_size);
			break;
		case COL_CLUSTER:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_CLUSTER_SIZE))
				ret = qctl_table_set_num(t, i,
							 dev->cluster_size);
			break;
		case COL_VERSION:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_FORMAT_VERSION))
				ret = qctl_table_set_num(t, i,
							 dev->format_version);
			break;
		case COL_RO:
			if (has_state)
				ret = qctl_table_set_bool(t, i, dev->state &
						QCOW2BLK_S_READ_ONLY);
			break;
		case COL_DIO:
			if (has_state)
				ret = qctl_table_set_bool(t, i, dev->state &
						QCOW2BLK_S_DIRECT_IO);
			break;
		case COL_L2CACHE:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_L2_CACHE_BYTES))
				ret = qctl_table_set_num(t, i,
							 dev->l2_cache_bytes);
			break;
		case COL_LAYERS:
			if (has_chain)
				ret = qctl_table_set_num(t, i, dev->nr_chain);
			break;
		case COL_BACKING:
			if (has_chain && dev->nr_chain > 1)
				ret = qctl_table_set_str(t, i,
							 dev->chain[1].path);
			else if (has_chain)
				ret = qctl_table_set_str(t, i, "");
			break;
		case COL_SNAPSHOT:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_SNAPSHOT))
				ret = qctl_table_set_str(t, i, dev->snapshot);
			break;
		case COL_RCCACHE:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_RC_CACHE_BYTES))
				ret = qctl_table_set_num(t, i,
							 dev->rc_cache_bytes);
			break;
		case COL_SECTOR:
			if (qctl_dev_has(dev, QCOW2BLK_ATTR_SECTOR_SIZE))
				ret = qctl_table_set_num(t, i,
							 dev->sector_size);
			break;
		case COL_CHAIN:
			if (has_chain)
				ret = qctl_set_chain(t, i, dev);
			break;
		}
	}
	return ret;
}

static int qctl_print_devs(const struct qctl_dev *devs, size_t nr,
			   const int *ids, int nr_ids,
			   enum qctl_table_mode mode, bool headings)
{
	struct qctl_column cols[QCTL_MAX_COLS];
	struct qctl_table *t;
	size_t r;
	int i, ret = 0;

	for (i = 0; i < nr_ids; i++)
		cols[i] = qctl_colinfos[ids[i]].col;
	t = qctl_table_new("qcowdevices", cols, nr_ids);
	if (!t)
		ret = -ENOMEM;
	for (r = 0; r < nr && !ret; r++)
		ret = qctl_fill_row(t, &devs[r], ids, nr_ids);
	if (!ret)
		ret = qctl_table_print(t, stdout, mode, headings);
	qctl_table_free(t);
	if (ret)
		warnx("cannot print the list: %s", strerror(-ret));
	return ret;
}

/* Output options shared by list and snapshots: -J, -n, -O, --raw. */
struct qctl_out {
	enum qctl_table_mode mode;
	bool headings;
	int nr_ids;			/* -1: the command's default columns */
	int ids[QCTL_MAX_COLS];
};

/*
 * Parse @argv's options for a command that prints a table of @colinfos.
 * Returns -1 if the command should go on, else its exit status.
 */
static int qctl_parse_out(int argc, char **argv, struct qctl_out *o,
			  const struct qctl_colinfo *colinfos,
			  size_t nr_colinfos)
{
	static const struct option longopts[] = {
		{ "json",	no_argument,		NULL, 'J' },
		{ "noheadings",	no_argument,		NULL, 'n' },
		{ "output",	required_argument,	NULL, 'O' },
		{ "raw",	no_argument,		NULL, OPT_RAW },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, raw = false;
	int c;

	o->headings = true;
	o->nr_ids = -1;
	while ((c = getopt_long(argc, argv, ":JnO:h", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'J':
			json = true;
			break;
		case 'n':
			o->headings = false;
			break;
		case 'O':
			o->nr_ids = qctl_parse_columns(optarg, o->ids,
						       QCTL_MAX_COLS,
						       colinfos, nr_colinfos);
			if (o->nr_ids < 0)
				return EXIT_FAILURE;
			break;
		case OPT_RAW:
			raw = true;
			break;
		case 'h':
			return qctl_help();
		default:
			return qctl_bad_option(argv, c);
		}
	}
	if (json && raw) {
		warnx("--json and --raw are mutually exclusive");
		return qctl_try_help();
	}
	o->mode = json ? QCTL_TABLE_JSON :
		  raw ? QCTL_TABLE_RAW : QCTL_TABLE_PRETTY;
	return -1;
}

static int qctl_cmd_list(int argc, char **argv)
{
	struct qctl_out o;
	char name[QCTL_DISK_NAME_BYTES + 8];
	struct qctl_dev *devs = NULL;
	struct qctl_dev one;
	struct qctl_nl *nl;
	size_t nr = 0;
	__u32 index;
	int i, ret;

	ret = qctl_parse_out(argc, argv, &o, qctl_colinfos, QCTL_NR_COLINFOS);
	if (ret >= 0)
		return ret;
	/* The whole chain is JSON's: in a table it would drown the rest. */
	if (o.nr_ids < 0) {
		o.nr_ids = 0;
		for (i = 0; i < (int)QCTL_NR_COLINFOS; i++)
			if (o.mode == QCTL_TABLE_JSON || i != COL_CHAIN)
				o.ids[o.nr_ids++] = i;
	}
	if (argc - optind > 1) {
		warnx("list: only one device at a time");
		return qctl_try_help();
	}
	if (optind < argc &&
	    qctl_get_dev(argv[optind], &index, name, sizeof(name)))
		return EXIT_FAILURE;

	if (qctl_connect(&nl))
		return EXIT_FAILURE;
	if (optind < argc) {
		ret = qctl_nl_get(nl, index, &one);
		if (ret)
			warnx("%s: list failed: %s", name,
			      qctl_reason(nl, ret));
		else
			ret = qctl_print_devs(&one, 1, o.ids, o.nr_ids, o.mode,
					      o.headings);
		qctl_dev_release(&one);
	} else {
		ret = qctl_nl_list(nl, &devs, &nr);
		if (ret)
			warnx("list failed: %s", qctl_reason(nl, ret));
		else
			ret = qctl_print_devs(devs, nr, o.ids, o.nr_ids, o.mode,
					      o.headings);
		qctl_devs_free(devs, nr);
	}
	qctl_nl_close(nl);
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- set --------------------------------------------------------------- */

static int qctl_cmd_set(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "l2-cache",	required_argument,	NULL, OPT_L2_CACHE },
		{ "refcount-cache", required_argument,	NULL, OPT_RC_CACHE },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char name[QCTL_DISK_NAME_BYTES + 8];
	struct qctl_set_req sreq = { 0 };
	struct qctl_nl *nl;
	struct qctl_dev dev;
	__u32 index;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_L2_CACHE:
			if (qctl_get_size("--l2-cache", optarg,
					  &sreq.l2_cache_bytes))
				return EXIT_FAILURE;
			sreq.has_l2_cache = true;
			break;
		case OPT_RC_CACHE:
			if (qctl_get_size("--refcount-cache", optarg,
					  &sreq.rc_cache_bytes))
				return EXIT_FAILURE;
			sreq.has_rc_cache = true;
			break;
		case 'h':
			return qctl_help();
		default:
			return qctl_bad_option(argv, c);
		}
	}
	if (optind != argc - 1) {
		warnx(optind == argc ? "set: no device specified" :
		      "set: only one device at a time");
		return qctl_try_help();
	}
	if (!sreq.has_l2_cache && !sreq.has_rc_cache) {
		warnx("set: nothing to set (--l2-cache, --refcount-cache)");
		return qctl_try_help();
	}
	if (qctl_get_dev(argv[optind], &index, name, sizeof(name)))
		return EXIT_FAILURE;

	if (qctl_connect(&nl))
		return EXIT_FAILURE;
	ret = qctl_nl_set(nl, index, &sreq, &dev);
	if (ret)
		warnx("%s: set failed: %s", name, qctl_reason(nl, ret));
	qctl_dev_release(&dev);
	qctl_nl_close(nl);
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- snapshots -------------------------------------------------------- */

struct qctl_snap_rows {
	struct qctl_table *t;
	const int *ids;
	int nr_ids;
};

static int qctl_snap_row(void *arg, const struct qctl_snapshot *s)
{
	struct qctl_snap_rows *r = arg;
	__u64 secs = s->vm_clock_nsec / 1000000000ULL;
	time_t date = s->date_sec;
	char buf[64];
	struct tm tm;
	int i, ret;

	ret = qctl_table_add_row(r->t);
	for (i = 0; i < r->nr_ids && !ret; i++) {
		switch (r->ids[i]) {
		case SCOL_ID:
			ret = qctl_table_set_str(r->t, i, s->id);
			break;
		case SCOL_NAME:
			ret = qctl_table_set_str(r->t, i, s->name);
			break;
		case SCOL_VMSIZE:
			ret = qctl_table_set_num(r->t, i, s->vm_state_size);
			break;
		case SCOL_DATE:
			/* Local time, as qemu-img snapshot -l shows it. */
			if (!localtime_r(&date, &tm) ||
			    !strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S",
				      &tm))
				snprintf(buf, sizeof(buf), "%u", s->date_sec);
			ret = qctl_table_set_str(r->t, i, buf);
			break;
		case SCOL_VMCLOCK:
			snprintf(buf, sizeof(buf), "%02llu:%02llu:%02llu.%03llu",
				 secs / 3600, secs / 60 % 60, secs % 60,
				 s->vm_clock_nsec / 1000000 % 1000);
			ret = qctl_table_set_str(r->t, i, buf);
			break;
		case SCOL_DISKSIZE:
			ret = qctl_table_set_num(r->t, i, s->disk_size);
			break;
		}
	}
	return ret;
}

static int qctl_cmd_snapshots(int argc, char **argv)
{
	struct qctl_out o;
	struct qctl_column cols[QCTL_MAX_COLS];
	struct qctl_snap_rows rows = { 0 };
	char msg[QCTL_ERRMSG_BYTES];
	const char *image;
	int i, fd, ret;

	ret = qctl_parse_out(argc, argv, &o, qctl_snap_colinfos,
			     QCTL_NR_SNAP_COLINFOS);
	if (ret >= 0)
		return ret;
	if (optind != argc - 1) {
		warnx(optind == argc ? "snapshots: no image specified" :
		      "snapshots: only one image at a time");
		return qctl_try_help();
	}
	image = argv[optind];
	if (o.nr_ids < 0) {
		o.nr_ids = QCTL_NR_SNAP_COLINFOS;
		for (i = 0; i < o.nr_ids; i++)
			o.ids[i] = i;
	}
	for (i = 0; i < o.nr_ids; i++)
		cols[i] = qctl_snap_colinfos[o.ids[i]].col;

	fd = open(image, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		warn("%s: open failed", image);
		return EXIT_FAILURE;
	}
	rows.t = qctl_table_new("snapshots", cols, o.nr_ids);
	rows.ids = o.ids;
	rows.nr_ids = o.nr_ids;
	if (!rows.t) {
		ret = -ENOMEM;
		warnx("%s", strerror(ENOMEM));
		goto out_close;
	}
	ret = qctl_snapshot_walk(fd, qctl_snap_row, &rows, msg, sizeof(msg));
	if (ret) {
		warnx("%s: %s", image, msg[0] ? msg : strerror(-ret));
		goto out_free;
	}
	ret = qctl_table_print(rows.t, stdout, o.mode, o.headings);
	if (ret)
		warnx("cannot print the list: %s", strerror(-ret));
out_free:
	qctl_table_free(rows.t);
out_close:
	close(fd);
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- features ---------------------------------------------------------- */

static const struct {
	__u64 flag;
	const char *name;	/* as the attach option */
} qctl_flag_names[] = {
	{ QCOW2BLK_F_READ_ONLY,		"read-only" },
	{ QCOW2BLK_F_BUFFERED_IO,	"buffered" },
};

static int qctl_cmd_features(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help",	no_argument,	NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct qctl_nl *nl;
	__u64 features, left;
	__u32 version;
	size_t i;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c == 'h')
			return qctl_help();
		return qctl_bad_option(argv, c);
	}
	if (optind != argc) {
		warnx("features: unexpected argument '%s'", argv[optind]);
		return qctl_try_help();
	}

	if (qctl_connect(&nl))
		return EXIT_FAILURE;
	ret = qctl_nl_features(nl, &version, &features);
	if (ret) {
		warnx("features failed: %s", qctl_reason(nl, ret));
		qctl_nl_close(nl);
		return EXIT_FAILURE;
	}
	qctl_nl_close(nl);

	printf("version: %u\n", version);
	printf("flags: 0x%llx", features);
	left = features;
	for (i = 0; i < ARRAY_SIZE(qctl_flag_names); i++) {
		if (left & qctl_flag_names[i].flag)
			printf(" %s", qctl_flag_names[i].name);
		left &= ~qctl_flag_names[i].flag;
	}
	/* Flags of a newer module that this qcow2ctl cannot name. */
	if (left)
		printf(" 0x%llx", left);
	printf("\n");
	return EXIT_SUCCESS;
}

/* ---- main -------------------------------------------------------------- */

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} qctl_cmds[] = {
	{ "attach",	qctl_cmd_attach },
	{ "detach",	qctl_cmd_detach },
	{ "list",	qctl_cmd_list },
	{ "set",	qctl_cmd_set },
	{ "snapshots",	qctl_cmd_snapshots },
	{ "features",	qctl_cmd_features },
};

int main(int argc, char **argv)
{
	size_t i;

	opterr = 0;
	if (argc < 2) {
		warnx("no command specified");
		return qctl_try_help();
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return qctl_help();
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version"))
		return qctl_version();

	for (i = 0; i < ARRAY_SIZE(qctl_cmds); i++)
		if (!strcmp(argv[1], qctl_cmds[i].name))
			return qctl_cmds[i].fn(argc - 1, argv + 1);

	warnx(argv[1][0] == '-' ? "unrecognized option '%s'" :
	      "unknown command '%s'", argv[1]);
	return qctl_try_help();
}

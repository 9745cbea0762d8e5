// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2ctl netlink library: builds qcow2blk generic netlink requests with
 * libnl-genl-3, waits for the reply and the ack, and turns kernel errors into
 * -errno plus the extended ack text. Never prints.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netlink/netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/genl/ctrl.h>

#include "qcow2blk.h"
#include "nl.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

struct qctl_nl {
	struct nl_sock *sk;
	int family;				/* resolved family id */
	char errmsg[QCTL_ERRMSG_BYTES];		/* extack of last failure */
};

/* State of one request while its replies are received. */
struct qctl_req {
	struct qctl_nl *nl;
	int err;			/* first -errno seen, 0 */
	bool done;			/* ack, error or end of dump seen */
	/* consumes one parsed reply message */
	int (*on_msg)(struct qctl_req *req, struct nlattr **tb);
	struct qctl_dev *dev;		/* single device reply */
	struct qctl_dev *devs;		/* dump: malloc()ed array */
	size_t nr_devs;
	size_t cap_devs;
	__u32 *version;			/* FEATURES reply */
	__u64 *features;
	struct nlattr *attrs;		/* the message being parsed: every */
	int attrlen;			/* attribute, for repeated CHAIN */
};

/*
 * Replies are checked, not trusted: a wrong length leaves the attribute out
 * of the parse and makes the whole message a protocol error.
 */
static struct nla_policy qctl_policy[QCOW2BLK_ATTR_MAX + 1] = {
	[QCOW2BLK_ATTR_INDEX]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_FD]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_FLAGS]		= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_L2_CACHE_BYTES]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_DISK_NAME]	= { .type = NLA_STRING },
	[QCOW2BLK_ATTR_IMAGE_PATH]	= { .type = NLA_STRING },
	[QCOW2BLK_ATTR_VIRTUAL_SIZE]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_CLUSTER_SIZE]	= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_FORMAT_VERSION]	= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_STATE]		= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_VERSION]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_FEATURES]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_DATA_FD]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_SNAPSHOT]	= { .type = NLA_STRING },
	[QCOW2BLK_ATTR_MAP_CACHE_BYTES]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_CHAIN]		= { .type = NLA_NESTED },
	[QCOW2BLK_ATTR_RC_CACHE_BYTES]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_SECTOR_SIZE]	= { .type = NLA_U32 },
};

static struct nla_policy qctl_layer_policy[QCOW2BLK_LAYER_ATTR_MAX + 1] = {
	[QCOW2BLK_LAYER_ATTR_FD]	= { .type = NLA_U32 },
	[QCOW2BLK_LAYER_ATTR_FORMAT]	= { .type = NLA_U32 },
	[QCOW2BLK_LAYER_ATTR_DATA_FD]	= { .type = NLA_U32 },
	[QCOW2BLK_LAYER_ATTR_PATH]	= { .type = NLA_STRING },
	[QCOW2BLK_LAYER_ATTR_DATA_PATH]	= { .type = NLA_STRING },
};

/*
 * Request room: the fixed attributes, the snapshot name, and per backing
 * layer one nest with three u32 attributes, with slack for headers.
 */
#define QCTL_MSG_BASE_BYTES	1024
#define QCTL_MSG_LAYER_BYTES	64
/* Socket receive buffer: 1000 layers of paths up to 4 KiB, and room. */
#define QCTL_RCVBUF_BYTES	(16 << 20)

/* libnl reports its own NLE_* codes; callers of this library want errno. */
static int qctl_nlerr_to_errno(int nlerr)
{
	switch (abs(nlerr)) {
	case 0:
		return 0;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_PERM:
		return -EPERM;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_INTR:
		return -EINTR;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_MSG_TRUNC:
	case NLE_MSGSIZE:
		return -EMSGSIZE;
	case NLE_MSG_OVERFLOW:
	case NLE_NOACCESS:
		return -ENOBUFS;
	case NLE_PROTO_MISMATCH:
		return -EPROTONOSUPPORT;
	default:
		return -EPROTO;
	}
}

/*
 * Keep NLMSGERR_ATTR_MSG of an error or end-of-dump message. @hdr_bytes is
 * the fixed payload before the TLVs.
 */
static void qctl_nl_ext_ack(struct qctl_nl *nl, struct nlmsghdr *nlh,
			    size_t hdr_bytes)
{
	struct nlattr *tb[NLMSGERR_ATTR_MAX + 1];
	size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(hdr_bytes);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) || nlh->nlmsg_len <= off)
		return;
	if (nla_parse(tb, NLMSGERR_ATTR_MAX,
		      (struct nlattr *)((char *)nlh + off),
		      nlh->nlmsg_len - off, NULL) < 0)
		return;
	if (tb[NLMSGERR_ATTR_MSG] && nla_len(tb[NLMSGERR_ATTR_MSG]) > 0)
		nla_strlcpy(nl->errmsg, tb[NLMSGERR_ATTR_MSG],
			    sizeof(nl->errmsg));
}

static void qctl_req_fail(struct qctl_req *req, int err)
{
	if (!req->err)
		req->err = err;
}

static int qctl_on_error(struct sockaddr_nl *nla, struct nlmsgerr *e,
			 void *arg)
{
	struct qctl_req *req = arg;
	/* libnl hands over the payload; the header sits right before it. */
	struct nlmsghdr *nlh = (struct nlmsghdr *)((char *)e - NLMSG_HDRLEN);
	size_t hdr_bytes = sizeof(*e);

	(void)nla;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		hdr_bytes += e->msg.nlmsg_len - NLMSG_HDRLEN;
	qctl_nl_ext_ack(req->nl, nlh, hdr_bytes);
	qctl_req_fail(req, e->error < 0 ? e->error : -EPROTO);
	req->done = true;
	return NL_STOP;
}

static int qctl_on_ack(struct nl_msg *msg, void *arg)
{
	struct qctl_req *req = arg;

	(void)msg;
	req->done = true;
	return NL_STOP;
}

/* End of a dump; its payload is the dump's error, if any. */
static int qctl_on_finish(struct nl_msg *msg, void *arg)
{
	struct qctl_req *req = arg;
	struct nlmsghdr *nlh = nlmsg_hdr(msg);
	int err;

	if (nlh->nlmsg_len >= NLMSG_HDRLEN + sizeof(err)) {
		memcpy(&err, nlmsg_data(nlh), sizeof(err));
		if (err < 0) {
			qctl_nl_ext_ack(req->nl, nlh, sizeof(err));
			qctl_req_fail(req, err);
		}
	}
	req->done = true;
	return NL_STOP;
}

static int qctl_on_valid(struct nl_msg *msg, void *arg)
{
	struct qctl_req *req = arg;
	struct nlattr *tb[QCOW2BLK_ATTR_MAX + 1];
	int ret;

	ret = genlmsg_parse(nlmsg_hdr(msg), 0, tb, QCOW2BLK_ATTR_MAX,
			    qctl_policy);
	if (ret < 0) {
		qctl_req_fail(req, -EPROTO);
		return NL_SKIP;
	}
	req->attrs = genlmsg_attrdata(nlmsg_data(nlmsg_hdr(msg)), 0);
	req->attrlen = genlmsg_attrlen(nlmsg_data(nlmsg_hdr(msg)), 0);
	ret = req->on_msg ? req->on_msg(req, tb) : 0;
	if (ret < 0)
		qctl_req_fail(req, ret);
	return NL_OK;
}

void qctl_dev_release(struct qctl_dev *dev)
{
	unsigned int i;

	for (i = 0; i < dev->nr_chain; i++) {
		free(dev->chain[i].path);
		free(dev->chain[i].data_path);
	}
	free(dev->chain);
	dev->chain = NULL;
	dev->nr_chain = 0;
}

void qctl_devs_free(struct qctl_dev *devs, size_t nr)
{
	size_t i;

	for (i = 0; i < nr; i++)
		qctl_dev_release(&devs[i]);
	free(devs);
}

static char *qctl_nla_strdup(struct nlattr *nla)
{
	char *s = malloc(nla_len(nla) + 1);

	if (s)
		nla_strlcpy(s, nla, nla_len(nla) + 1);
	return s;
}

/*
 * CHAIN: nested LAYER elements, top first; every layer has a path. A
 * nest holds at most 64 KiB, so a long chain comes as several CHAIN
 * attributes, whose layers are taken in order.
 */
static int qctl_chain_parse(struct qctl_dev *dev, struct nlattr *attrs,
			    int attrlen)
{
	struct nlattr *tb[QCOW2BLK_LAYER_ATTR_MAX + 1];
	struct nlattr *chain, *elem;
	struct qctl_dev_layer *l;
	unsigned int nr = 0;
	int rem, crem;

	nla_for_each_attr(chain, attrs, attrlen, crem)
		if (nla_type(chain) == QCOW2BLK_ATTR_CHAIN)
			nla_for_each_nested(elem, chain, rem)
				nr++;
	if (!nr)
		return 0;
	dev->chain = calloc(nr, sizeof(*dev->chain));
	if (!dev->chain)
		return -ENOMEM;
	nla_for_each_attr(chain, attrs, attrlen, crem) {
		if (nla_type(chain) != QCOW2BLK_ATTR_CHAIN)
			continue;
		nla_for_each_nested(elem, chain, rem) {
			if (nla_type(elem) != QCOW2BLK_ATTR_LAYER ||
			    nla_parse_nested(tb, QCOW2BLK_LAYER_ATTR_MAX, elem,
					     qctl_layer_policy) < 0 ||
			    !tb[QCOW2BLK_LAYER_ATTR_PATH])
				return -EPROTO;
			l = &dev->chain[dev->nr_chain++];
			l->path = qctl_nla_strdup(tb[QCOW2BLK_LAYER_ATTR_PATH]);
			if (!l->path)
				return -ENOMEM;
			if (tb[QCOW2BLK_LAYER_ATTR_FORMAT]) {
				l->has_format = true;
				l->format =
				    nla_get_u32(tb[QCOW2BLK_LAYER_ATTR_FORMAT]);
			}
			if (tb[QCOW2BLK_LAYER_ATTR_DATA_PATH]) {
				l->data_path = qctl_nla_strdup(
					tb[QCOW2BLK_LAYER_ATTR_DATA_PATH]);
				if (!l->data_path)
					return -ENOMEM;
			}
		}
	}
	return 0;
}

/* Fill a zeroed @dev; on error the caller releases it. */
static int qctl_dev_parse(struct qctl_dev *dev, struct qctl_req *req,
			  struct nlattr **tb)
{
	int i;

	for (i = 1; i <= QCOW2BLK_ATTR_MAX; i++)
		if (tb[i])
			dev->present |= 1ULL << i;
	if (tb[QCOW2BLK_ATTR_INDEX])
		dev->index = nla_get_u32(tb[QCOW2BLK_ATTR_INDEX]);
	if (tb[QCOW2BLK_ATTR_DISK_NAME])
		nla_strlcpy(dev->disk_name, tb[QCOW2BLK_ATTR_DISK_NAME],
			    sizeof(dev->disk_name));
	if (tb[QCOW2BLK_ATTR_IMAGE_PATH])
		nla_strlcpy(dev->image_path, tb[QCOW2BLK_ATTR_IMAGE_PATH],
			    sizeof(dev->image_path));
	if (tb[QCOW2BLK_ATTR_VIRTUAL_SIZE])
		dev->virtual_size = nla_get_u64(tb[QCOW2BLK_ATTR_VIRTUAL_SIZE]);
	if (tb[QCOW2BLK_ATTR_CLUSTER_SIZE])
		dev->cluster_size = nla_get_u32(tb[QCOW2BLK_ATTR_CLUSTER_SIZE]);
	if (tb[QCOW2BLK_ATTR_FORMAT_VERSION])
		dev->format_version =
			nla_get_u32(tb[QCOW2BLK_ATTR_FORMAT_VERSION]);
	if (tb[QCOW2BLK_ATTR_STATE])
		dev->state = nla_get_u64(tb[QCOW2BLK_ATTR_STATE]);
	if (tb[QCOW2BLK_ATTR_FLAGS])
		dev->flags = nla_get_u64(tb[QCOW2BLK_ATTR_FLAGS]);
	if (tb[QCOW2BLK_ATTR_L2_CACHE_BYTES])
		dev->l2_cache_bytes =
			nla_get_u64(tb[QCOW2BLK_ATTR_L2_CACHE_BYTES]);
	if (tb[QCOW2BLK_ATTR_RC_CACHE_BYTES])
		dev->rc_cache_bytes =
			nla_get_u64(tb[QCOW2BLK_ATTR_RC_CACHE_BYTES]);
	if (tb[QCOW2BLK_ATTR_SECTOR_SIZE])
		dev->sector_size = nla_get_u32(tb[QCOW2BLK_ATTR_SECTOR_SIZE]);
	if (tb[QCOW2BLK_ATTR_SNAPSHOT])
		nla_strlcpy(dev->snapshot, tb[QCOW2BLK_ATTR_SNAPSHOT],
			    sizeof(dev->snapshot));
	if (tb[QCOW2BLK_ATTR_CHAIN])
		return qctl_chain_parse(dev, req->attrs, req->attrlen);
	return 0;
}

/* A device without its index is useless to every caller. */
static int qctl_on_dev(struct qctl_req *req, struct nlattr **tb)
{
	if (!tb[QCOW2BLK_ATTR_INDEX])
		return -EPROTO;
	if (!req->dev)
		return 0;
	/* One reply is expected; a second one replaces the first. */
	qctl_dev_release(req->dev);
	memset(req->dev, 0, sizeof(*req->dev));
	return qctl_dev_parse(req->dev, req, tb);
}

static int qctl_on_dump_dev(struct qctl_req *req, struct nlattr **tb)
{
	struct qctl_dev *devs, *dev;
	size_t cap;

	if (!tb[QCOW2BLK_ATTR_INDEX])
		return -EPROTO;
	if (req->nr_devs == req->cap_devs) {
		cap = req->cap_devs ? req->cap_devs * 2 : 8;
		devs = realloc(req->devs, cap * sizeof(*devs));
		if (!devs)
			return -ENOMEM;
		req->devs = devs;
		req->cap_devs = cap;
	}
	dev = &req->devs[req->nr_devs++];
	memset(dev, 0, sizeof(*dev));
	return qctl_dev_parse(dev, req, tb);
}

static int qctl_on_features(struct qctl_req *req, struct nlattr **tb)
{
	if (!tb[QCOW2BLK_ATTR_VERSION] || !tb[QCOW2BLK_ATTR_FEATURES])
		return -EPROTO;
	*req->version = nla_get_u32(tb[QCOW2BLK_ATTR_VERSION]);
	*req->features = nla_get_u64(tb[QCOW2BLK_ATTR_FEATURES]);
	return 0;
}

static struct nl_msg *qctl_msg_new(struct qctl_nl *nl, __u8 cmd, int flags,
				   size_t bytes)
{
	struct nl_msg *msg;

	msg = nlmsg_alloc_size(bytes);
	if (!msg)
		return NULL;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, nl->family, 0, flags,
			 cmd, QCOW2BLK_GENL_VERSION)) {
		nlmsg_free(msg);
		return NULL;
	}
	return msg;
}

/*
 * Send @msg (consumed) and receive until the kernel acks, fails, or ends
 * the dump. A dump is not acked, so auto-ack is off while it runs: a late
 * ack would otherwise be read as the answer to the next request.
 */
static int qctl_nl_run(struct qctl_nl *nl, struct nl_msg *msg,
		       struct qctl_req *req, bool dump)
{
	struct nl_cb *cb;
	int ret;

	nl->errmsg[0] = '\0';
	req->nl = nl;
	cb = nl_cb_alloc(NL_CB_DEFAULT);
	if (!cb) {
		ret = -ENOMEM;
		goto out_free_msg;
	}
	nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, qctl_on_valid, req);
	nl_cb_set(cb, NL_CB_ACK, NL_CB_CUSTOM, qctl_on_ack, req);
	nl_cb_set(cb, NL_CB_FINISH, NL_CB_CUSTOM, qctl_on_finish, req);
	nl_cb_err(cb, NL_CB_CUSTOM, qctl_on_error, req);

	if (dump)
		nl_socket_disable_auto_ack(nl->sk);
	ret = nl_send_auto(nl->sk, msg);
	if (dump)
		nl_socket_enable_auto_ack(nl->sk);
	if (ret < 0) {
		ret = qctl_nlerr_to_errno(ret);
		goto out_put_cb;
	}

	while (!req->done) {
		ret = nl_recvmsgs(nl->sk, cb);
		if (ret < 0 && !req->done) {
			qctl_req_fail(req, qctl_nlerr_to_errno(ret));
			break;
		}
	}
	ret = req->err;

out_put_cb:
	nl_cb_put(cb);
out_free_msg:
	nlmsg_free(msg);
	return ret;
}

/* A request answered by one device; an ack without it is a protocol error. */
static int qctl_nl_run_dev(struct qctl_nl *nl, struct nl_msg *msg,
			   struct qctl_req *req)
{
	int ret;

	memset(req->dev, 0, sizeof(*req->dev));
	ret = qctl_nl_run(nl, msg, req, false);
	if (!ret && !req->dev->present)
		ret = -EPROTO;
	return ret;
}

int qctl_nl_open(struct qctl_nl **nlp)
{
	int rcvbuf = QCTL_RCVBUF_BYTES;
	struct qctl_nl *nl;
	int one = 1;
	int fd;
	int ret;

	nl = calloc(1, sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	nl->sk = nl_socket_alloc();
	if (!nl->sk) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = genl_connect(nl->sk);
	if (ret < 0) {
		ret = qctl_nlerr_to_errno(ret);
		goto out_free_sock;
	}

	/*
	 * Ask for the kernel's reasons and not for a copy of our request.
	 * Kernels without extended ack still work, with bare errnos.
	 */
	/* A long chain makes a reply larger than libnl's default buffer. */
	nl_socket_enable_msg_peek(nl->sk);
	fd = nl_socket_get_fd(nl->sk);
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	/*
	 * The reply describing a 1000-layer chain (every path) is larger
	 * than the default socket receive buffer, and the kernel drops what
	 * does not fit (ENOBUFS here, a device attached without a reply).
	 * Beyond rmem_max only with CAP_NET_ADMIN; twice it otherwise.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
		       sizeof(rcvbuf)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	ret = genl_ctrl_resolve(nl->sk, QCOW2BLK_GENL_NAME);
	if (ret < 0) {
		ret = qctl_nlerr_to_errno(ret);
		goto out_free_sock;
	}
	nl->family = ret;
	*nlp = nl;
	return 0;

out_free_sock:
	nl_socket_free(nl->sk);
out_free:
	free(nl);
	return ret;
}

void qctl_nl_close(struct qctl_nl *nl)
{
	if (!nl)
		return;
	nl_socket_free(nl->sk);
	free(nl);
}

const char *qctl_nl_errmsg(const struct qctl_nl *nl)
{
	return nl->errmsg;
}

/* BACKING: one LAYER nest per layer below the top. */
static int qctl_put_backing(struct nl_msg *msg,
			    const struct qctl_attach_req *areq)
{
	const struct qctl_attach_layer *l;
	struct nlattr *backing, *layer;
	unsigned int i;

	backing = nla_nest_start(msg, QCOW2BLK_ATTR_BACKING);
	if (!backing)
		return -EMSGSIZE;
	for (i = 0; i < areq->nr_backing; i++) {
		l = &areq->backing[i];
		layer = nla_nest_start(msg, QCOW2BLK_ATTR_LAYER);
		if (!layer ||
		    nla_put_u32(msg, QCOW2BLK_LAYER_ATTR_FD, l->fd) < 0 ||
		    nla_put_u32(msg, QCOW2BLK_LAYER_ATTR_FORMAT,
				l->format) < 0 ||
		    (l->data_fd >= 0 &&
		     nla_put_u32(msg, QCOW2BLK_LAYER_ATTR_DATA_FD,
				 l->data_fd) < 0))
			return -EMSGSIZE;
		nla_nest_end(msg, layer);
	}
	nla_nest_end(msg, backing);
	return 0;
}

static int qctl_put_attach(struct nl_msg *msg,
			   const struct qctl_attach_req *areq)
{
	if (nla_put_u32(msg, QCOW2BLK_ATTR_FD, areq->fd) < 0 ||
	    nla_put_u64(msg, QCOW2BLK_ATTR_FLAGS, areq->flags) < 0 ||
	    (areq->has_l2_cache &&
	     nla_put_u64(msg, QCOW2BLK_ATTR_L2_CACHE_BYTES,
			 areq->l2_cache_bytes) < 0) ||
	    (areq->has_map_cache &&
	     nla_put_u64(msg, QCOW2BLK_ATTR_MAP_CACHE_BYTES,
			 areq->map_cache_bytes) < 0) ||
	    (areq->has_rc_cache &&
	     nla_put_u64(msg, QCOW2BLK_ATTR_RC_CACHE_BYTES,
			 areq->rc_cache_bytes) < 0) ||
	    (areq->sector_size &&
	     nla_put_u32(msg, QCOW2BLK_ATTR_SECTOR_SIZE,
			 areq->sector_size) < 0) ||
	    (areq->has_index &&
	     nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, areq->index) < 0) ||
	    (areq->data_fd >= 0 &&
	     nla_put_u32(msg, QCOW2BLK_ATTR_DATA_FD, areq->data_fd) < 0) ||
	    (areq->snapshot &&
	     nla_put_string(msg, QCOW2BLK_ATTR_SNAPSHOT,
			    areq->snapshot) < 0))
		return -EMSGSIZE;
	return areq->nr_backing ? qctl_put_backing(msg, areq) : 0;
}

int qctl_nl_attach(struct qctl_nl *nl, const struct qctl_attach_req *areq,
		   struct qctl_dev *dev)
{
	struct qctl_req req = { .on_msg = qctl_on_dev, .dev = dev };
	struct nl_msg *msg;
	size_t bytes;
	int ret;

	memset(dev, 0, sizeof(*dev));
	if (areq->fd < 0)
		return -EBADF;
	if (areq->nr_backing >= QCOW2BLK_MAX_LAYERS)
		return -E2BIG;
	bytes = QCTL_MSG_BASE_BYTES +
		(areq->snapshot ? strlen(areq->snapshot) : 0) +
		(size_t)areq->nr_backing * QCTL_MSG_LAYER_BYTES;
	msg = qctl_msg_new(nl, QCOW2BLK_CMD_ATTACH, 0, bytes);
	if (!msg)
		return -ENOMEM;
	ret = qctl_put_attach(msg, areq);
	if (ret) {
		nlmsg_free(msg);
		return ret;
	}
	/* The device exists once acked, even if its reply was lost. */
	return qctl_nl_run(nl, msg, &req, false);
}

int qctl_nl_detach(struct qctl_nl *nl, __u32 index)
{
	struct qctl_req req = { 0 };
	struct nl_msg *msg;

	msg = qctl_msg_new(nl, QCOW2BLK_CMD_DETACH, 0,
			   QCTL_MSG_BASE_BYTES);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, index) < 0) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	return qctl_nl_run(nl, msg, &req, false);
}

int qctl_nl_get(struct qctl_nl *nl, __u32 index, struct qctl_dev *dev)
{
	struct qctl_req req = { .on_msg = qctl_on_dev, .dev = dev };
	struct nl_msg *msg;

	memset(dev, 0, sizeof(*dev));
	msg = qctl_msg_new(nl, QCOW2BLK_CMD_GET, 0, QCTL_MSG_BASE_BYTES);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, index) < 0) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	return qctl_nl_run_dev(nl, msg, &req);
}

int qctl_nl_set(struct qctl_nl *nl, __u32 index,
		const struct qctl_set_req *sreq, struct qctl_dev *dev)
{
	struct qctl_req req = { .on_msg = qctl_on_dev, .dev = dev };
	struct nl_msg *msg;

	memset(dev, 0, sizeof(*dev));
	if (!sreq->has_l2_cache && !sreq->has_rc_cache)
		return -EINVAL;
	msg = qctl_msg_new(nl, QCOW2BLK_CMD_SET, 0, QCTL_MSG_BASE_BYTES);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, index) < 0 ||
	    (sreq->has_l2_cache &&
	     nla_put_u64(msg, QCOW2BLK_ATTR_L2_CACHE_BYTES,
			 sreq->l2_cache_bytes) < 0) ||
	    (sreq->has_rc_cache &&
	     nla_put_u64(msg, QCOW2BLK_ATTR_RC_CACHE_BYTES,
			 sreq->rc_cache_bytes) < 0)) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	return qctl_nl_run_dev(nl, msg, &req);
}

int qctl_nl_features(struct qctl_nl *nl, __u32 *version, __u64 *features)
{
	struct qctl_req req = {
		.on_msg = qctl_on_features,
		.version = version,
		.features = features,
	};
	struct nl_msg *msg;
	int ret;

	msg = qctl_msg_new(nl, QCOW2BLK_CMD_FEATURES, 0,
			   QCTL_MSG_BASE_BYTES);
	if (!msg)
		return -ENOMEM;
	*version = 0;
	ret = qctl_nl_run(nl, msg, &req, false);
	if (!ret && !*version)
		ret = -EPROTO;
	return ret;
}

int qctl_nl_list(struct qctl_nl *nl, struct qctl_dev **devs, size_t *nr)
{
	struct qctl_req req = { .on_msg = qctl_on_dump_dev };
	struct nl_msg *msg;
	int ret;

	*devs = NULL;
	*nr = 0;
	msg = qctl_msg_new(nl, QCOW2BLK_CMD_GET, NLM_F_DUMP,
			   QCTL_MSG_BASE_BYTES);
	if (!msg)
		return -ENOMEM;
	ret = qctl_nl_run(nl, msg, &req, true);
	if (ret) {
		qctl_devs_free(req.devs, req.nr_devs);
		return ret;
	}
	*devs = req.devs;
	*nr = req.nr_devs;
	return 0;
}

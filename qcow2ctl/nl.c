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
};

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
	ret = req->on_msg ? req->on_msg(req, tb) : 0;
	if (ret < 0)
		qctl_req_fail(req, ret);
	return NL_OK;
}

static void qctl_dev_parse(struct qctl_dev *dev, struct nlattr **tb)
{
	int i;

	memset(dev, 0, sizeof(*dev));
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
}

/* A device without its index is useless to every caller. */
static int qctl_on_dev(struct qctl_req *req, struct nlattr **tb)
{
	if (!tb[QCOW2BLK_ATTR_INDEX])
		return -EPROTO;
	if (req->dev)
		qctl_dev_parse(req->dev, tb);
	return 0;
}

static int qctl_on_dump_dev(struct qctl_req *req, struct nlattr **tb)
{
	struct qctl_dev *devs;
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
	qctl_dev_parse(&req->devs[req->nr_devs++], tb);
	return 0;
}

static int qctl_on_features(struct qctl_req *req, struct nlattr **tb)
{
	if (!tb[QCOW2BLK_ATTR_VERSION] || !tb[QCOW2BLK_ATTR_FEATURES])
		return -EPROTO;
	*req->version = nla_get_u32(tb[QCOW2BLK_ATTR_VERSION]);
	*req->features = nla_get_u64(tb[QCOW2BLK_ATTR_FEATURES]);
	return 0;
}

static struct nl_msg *qctl_msg_new(struct qctl_nl *nl, __u8 cmd, int flags)
{
	struct nl_msg *msg;

	msg = nlmsg_alloc();
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

	req->dev->present = 0;
	ret = qctl_nl_run(nl, msg, req, false);
	if (!ret && !req->dev->present)
		ret = -EPROTO;
	return ret;
}

int qctl_nl_open(struct qctl_nl **nlp)
{
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
	fd = nl_socket_get_fd(nl->sk);
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));

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

int qctl_nl_attach(struct qctl_nl *nl, const struct qctl_attach_req *areq,
		   struct qctl_dev *dev)
{
	struct qctl_req req = { .on_msg = qctl_on_dev, .dev = dev };
	struct nl_msg *msg;

	if (areq->fd < 0)
		return -EBADF;
	msg = qctl_msg_new(nl, QCOW2BLK_CMD_ATTACH, 0);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, QCOW2BLK_ATTR_FD, areq->fd) < 0 ||
	    nla_put_u64(msg, QCOW2BLK_ATTR_FLAGS, areq->flags) < 0 ||
	    (areq->has_l2_cache &&
	     nla_put_u64(msg, QCOW2BLK_ATTR_L2_CACHE_BYTES,
			 areq->l2_cache_bytes) < 0) ||
	    (areq->has_index &&
	     nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, areq->index) < 0)) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	/* The device exists once acked, even if its reply was lost. */
	dev->present = 0;
	return qctl_nl_run(nl, msg, &req, false);
}

int qctl_nl_detach(struct qctl_nl *nl, __u32 index)
{
	struct qctl_req req = { 0 };
	struct nl_msg *msg;

	msg = qctl_msg_new(nl, QCOW2BLK_CMD_DETACH, 0);
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

	msg = qctl_msg_new(nl, QCOW2BLK_CMD_GET, 0);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, index) < 0) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	return qctl_nl_run_dev(nl, msg, &req);
}

int qctl_nl_set_l2_cache(struct qctl_nl *nl, __u32 index, __u64 bytes,
			 struct qctl_dev *dev)
{
	struct qctl_req req = { .on_msg = qctl_on_dev, .dev = dev };
	struct nl_msg *msg;

	msg = qctl_msg_new(nl, QCOW2BLK_CMD_SET, 0);
	if (!msg)
		return -ENOMEM;
	if (nla_put_u32(msg, QCOW2BLK_ATTR_INDEX, index) < 0 ||
	    nla_put_u64(msg, QCOW2BLK_ATTR_L2_CACHE_BYTES, bytes) < 0) {
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

	msg = qctl_msg_new(nl, QCOW2BLK_CMD_FEATURES, 0);
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
	msg = qctl_msg_new(nl, QCOW2BLK_CMD_GET, NLM_F_DUMP);
	if (!msg)
		return -ENOMEM;
	ret = qctl_nl_run(nl, msg, &req, true);
	if (ret) {
		free(req.devs);
		return ret;
	}
	*devs = req.devs;
	*nr = req.nr_devs;
	return 0;
}

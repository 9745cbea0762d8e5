// SPDX-License-Identifier: GPL-2.0
/*
 * qcow2blk control: the "qcow2blk" generic netlink family (uapi/qcow2blk.h).
 * Commands that change anything (attach, detach, set) need CAP_SYS_ADMIN,
 * as nbd's do: they hand the kernel files to write and block devices to
 * create. Reading (get, dump, features) is open to every user, as
 * /sys/block is. Attributes are strictly validated against one policy and
 * refusals carry a human-readable reason in the extended ack.
 *
 * The image is passed as a file descriptor of the caller; the kernel never
 * opens a path.
 */
#include <linux/module.h>
#include <linux/file.h>
#include <linux/log2.h>
#include <linux/sched/mm.h>
#include <net/genetlink.h>

#include "qcow2blk_priv.h"

static const struct nla_policy
qcow2blk_nl_layer_policy[QCOW2BLK_LAYER_ATTR_MAX + 1] = {
	[QCOW2BLK_LAYER_ATTR_FD]	= { .type = NLA_U32 },
	[QCOW2BLK_LAYER_ATTR_FORMAT]	= NLA_POLICY_MAX(NLA_U32, QCOW2BLK_FMT_RAW),
	[QCOW2BLK_LAYER_ATTR_DATA_FD]	= { .type = NLA_U32 },
	[QCOW2BLK_LAYER_ATTR_PATH]	= { .type = NLA_REJECT },
	[QCOW2BLK_LAYER_ATTR_DATA_PATH]	= { .type = NLA_REJECT },
};

static const struct nla_policy qcow2blk_nl_policy[QCOW2BLK_ATTR_MAX + 1] = {
	[QCOW2BLK_ATTR_INDEX]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_FD]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_FLAGS]		= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_L2_CACHE_BYTES]	= { .type = NLA_U64 },
	/* Reply-only attributes are refused in requests. */
	[QCOW2BLK_ATTR_DISK_NAME]	= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_IMAGE_PATH]	= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_VIRTUAL_SIZE]	= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_CLUSTER_SIZE]	= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_FORMAT_VERSION]	= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_STATE]		= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_VERSION]		= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_FEATURES]	= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_DATA_FD]		= { .type = NLA_U32 },
	[QCOW2BLK_ATTR_SNAPSHOT]	= { .type = NLA_NUL_STRING,
					    .len = QCOW2BLK_SNAPSHOT_NAME_MAX },
	[QCOW2BLK_ATTR_MAP_CACHE_BYTES]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_BACKING]		=
		NLA_POLICY_NESTED_ARRAY(qcow2blk_nl_layer_policy),
	[QCOW2BLK_ATTR_CHAIN]		= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_LAYER]		= { .type = NLA_REJECT },
	[QCOW2BLK_ATTR_RC_CACHE_BYTES]	= { .type = NLA_U64 },
	[QCOW2BLK_ATTR_SECTOR_SIZE]	= { .type = NLA_U32 },
};

static struct genl_family qcow2blk_genl_family;

enum {
	QCOW2BLK_MCGRP_EVENTS,
};

static int qcow2blk_nl_put_path(struct sk_buff *skb, int attr,
				struct file *file)
{
	char *buf, *path;
	int ret;

	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	path = file_path(file, buf, PATH_MAX);
	ret = nla_put_string(skb, attr, IS_ERR(path) ? "" : path);
	kfree(buf);
	return ret;
}

/*
 * CHAIN: every layer, top first. A nest's length is 16 bits, so once one
 * holds QCOW2BLK_CHAIN_NEST_BYTES the layers go on in another CHAIN
 * (uapi: the layers are those of every CHAIN, in order).
 */
#define QCOW2BLK_CHAIN_NEST_BYTES	(48 << 10)

static int qcow2blk_nl_put_chain(struct sk_buff *skb, struct qcow2blk_dev *dev)
{
	struct nlattr *chain, *layer;
	u32 i;

	chain = nla_nest_start(skb, QCOW2BLK_ATTR_CHAIN);
	if (!chain)
		return -EMSGSIZE;
	for (i = 0; i < dev->nr_layers; i++) {
		struct qcow2blk_layer *l = &dev->layers[i];
		u32 fmt = dev->chain.layers[i].format == QCOW2_LAYER_RAW ?
			  QCOW2BLK_FMT_RAW : QCOW2BLK_FMT_QCOW2;

		/* A layer is two paths at most: 8 KiB and a little. */
		if (skb_tail_pointer(skb) - (unsigned char *)chain >
		    QCOW2BLK_CHAIN_NEST_BYTES) {
			nla_nest_end(skb, chain);
			chain = nla_nest_start(skb, QCOW2BLK_ATTR_CHAIN);
			if (!chain)
				return -EMSGSIZE;
		}

		layer = nla_nest_start(skb, QCOW2BLK_ATTR_LAYER);
		if (!layer ||
		    qcow2blk_nl_put_path(skb, QCOW2BLK_LAYER_ATTR_PATH,
					 l->file) ||
		    nla_put_u32(skb, QCOW2BLK_LAYER_ATTR_FORMAT, fmt) ||
		    (l->data_file &&
		     qcow2blk_nl_put_path(skb, QCOW2BLK_LAYER_ATTR_DATA_PATH,
					  l->data_file)))
			return -EMSGSIZE;
		nla_nest_end(skb, layer);
	}
	nla_nest_end(skb, chain);
	return 0;
}

/* Bytes of a device message: fixed attributes plus every layer's paths. */
static size_t qcow2blk_nl_msg_size(struct qcow2blk_dev *dev)
{
	size_t size = NLMSG_DEFAULT_SIZE;
	char *buf, *path;
	u32 i, j;

	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!buf)
		return size;
	for (i = 0; i < dev->nr_layers; i++) {
		struct file *files[2] = { dev->layers[i].file,
					  dev->layers[i].data_file };

		size += 2 * nla_total_size(0) + nla_total_size(sizeof(u32));
		for (j = 0; j < 2; j++) {
			if (!files[j])
				continue;
			path = file_path(files[j], buf, PATH_MAX);
			size += nla_total_size(IS_ERR(path) ? 1 :
					       strlen(path) + 1);
		}
	}
	kfree(buf);
	return size;
}

static int qcow2blk_nl_fill(struct sk_buff *skb, struct qcow2blk_dev *dev,
			    u32 portid, u32 seq, int flags, u8 cmd,
			    bool with_chain)
{
	void *hdr;

	hdr = genlmsg_put(skb, portid, seq, &qcow2blk_genl_family, flags, cmd);
	if (!hdr)
		return -EMSGSIZE;
	if (nla_put_u32(skb, QCOW2BLK_ATTR_INDEX, dev->index) ||
	    nla_put_string(skb, QCOW2BLK_ATTR_DISK_NAME,
			   dev->disk->disk_name) ||
	    qcow2blk_nl_put_path(skb, QCOW2BLK_ATTR_IMAGE_PATH,
				 dev->layers[0].file) ||
	    nla_put_u64_64bit(skb, QCOW2BLK_ATTR_VIRTUAL_SIZE, dev->chain.size,
			      QCOW2BLK_ATTR_PAD) ||
	    nla_put_u32(skb, QCOW2BLK_ATTR_CLUSTER_SIZE,
			qcow2blk_top(dev)->h.cluster_size) ||
	    nla_put_u32(skb, QCOW2BLK_ATTR_FORMAT_VERSION,
			qcow2blk_top(dev)->h.version) ||
	    (dev->snapshot &&
	     nla_put_string(skb, QCOW2BLK_ATTR_SNAPSHOT, dev->snapshot)) ||
	    (with_chain && qcow2blk_nl_put_chain(skb, dev)) ||
	    nla_put_u64_64bit(skb, QCOW2BLK_ATTR_FLAGS, dev->flags,
			      QCOW2BLK_ATTR_PAD) ||
	    nla_put_u64_64bit(skb, QCOW2BLK_ATTR_STATE,
			      qcow2blk_dev_state(dev), QCOW2BLK_ATTR_PAD) ||
	    nla_put_u64_64bit(skb, QCOW2BLK_ATTR_L2_CACHE_BYTES,
			      qcow2_l2c_bytes(qcow2blk_top(dev)),
			      QCOW2BLK_ATTR_PAD) ||
	    nla_put_u32(skb, QCOW2BLK_ATTR_SECTOR_SIZE, dev->sector_size) ||
	    (dev->writable &&
	     nla_put_u64_64bit(skb, QCOW2BLK_ATTR_RC_CACHE_BYTES,
			       qcow2_rc_bytes(qcow2blk_top(dev)),
			       QCOW2BLK_ATTR_PAD))) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

/* Reply to the sender with one device's attributes. */
static int qcow2blk_nl_reply(struct genl_info *info, struct qcow2blk_dev *dev,
			     u8 cmd)
{
	struct sk_buff *skb;
	int ret;

	skb = genlmsg_new(qcow2blk_nl_msg_size(dev), GFP_KERNEL);
	if (!skb)
		return -ENOMEM;
	ret = qcow2blk_nl_fill(skb, dev, info->snd_portid, info->snd_seq, 0,
			       cmd, true);
	if (ret) {
		nlmsg_free(skb);
		return ret;
	}
	return genlmsg_reply(skb, info);
}

/**
 * qcow2blk_nl_event() - tell listeners of the events group about a device
 * @cmd: QCOW2BLK_EVENT_ATTACHED or QCOW2BLK_EVENT_DETACHED
 * @dev: the device
 *
 * Context: process context.
 */
void qcow2blk_nl_event(u8 cmd, struct qcow2blk_dev *dev)
{
	struct sk_buff *skb;
	void *hdr;

	skb = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!skb)
		return;
	hdr = genlmsg_put(skb, 0, 0, &qcow2blk_genl_family, 0, cmd);
	if (!hdr ||
	    nla_put_u32(skb, QCOW2BLK_ATTR_INDEX, dev->index) ||
	    nla_put_string(skb, QCOW2BLK_ATTR_DISK_NAME,
			   dev->disk->disk_name)) {
		nlmsg_free(skb);
		return;
	}
	genlmsg_end(skb, hdr);
	genlmsg_multicast(&qcow2blk_genl_family, skb, 0,
			  QCOW2BLK_MCGRP_EVENTS, GFP_KERNEL);
}

static int qcow2blk_nl_get_index(struct genl_info *info, int *index)
{
	if (!info->attrs[QCOW2BLK_ATTR_INDEX]) {
		NL_SET_ERR_MSG(info->extack, "device index missing");
		return -EINVAL;
	}
	*index = nla_get_u32(info->attrs[QCOW2BLK_ATTR_INDEX]);
	if (*index < 0 || *index >= (int)QCOW2BLK_MAX_DEVICES) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    info->attrs[QCOW2BLK_ATTR_INDEX],
				    "device index out of range");
		return -EINVAL;
	}
	return 0;
}

static void qcow2blk_nl_put_files(struct qcow2blk_attach *a)
{
	u32 i;

	for (i = 0; i < a->nr_layers; i++) {
		if (a->layers[i].file)
			fput(a->layers[i].file);
		if (a->layers[i].data_file)
			fput(a->layers[i].data_file);
	}
	kfree(a->layers);
}

/* Take the caller's file descriptor, or explain why not. */
static struct file *qcow2blk_nl_fget(struct genl_info *info,
				     const struct nlattr *attr)
{
	struct file *file = fget(nla_get_u32(attr));

	if (!file)
		NL_SET_ERR_MSG_ATTR(info->extack, attr,
				    "bad file descriptor");
	return file;
}

/* Fill a->layers[1..] from the BACKING array (validated by the policy). */
static int qcow2blk_nl_get_backing(struct genl_info *info,
				   struct qcow2blk_attach *a)
{
	struct nlattr *tb[QCOW2BLK_LAYER_ATTR_MAX + 1];
	struct nlattr *backing = info->attrs[QCOW2BLK_ATTR_BACKING];
	struct nlattr *elem;
	u32 i = 1;
	int rem, ret;

	nla_for_each_nested(elem, backing, rem) {
		struct qcow2blk_attach_layer *l = &a->layers[i];
		struct nlattr *data_fd;

		ret = nla_parse_nested(tb, QCOW2BLK_LAYER_ATTR_MAX, elem,
				       qcow2blk_nl_layer_policy, info->extack);
		if (ret)
			return ret;
		if (!tb[QCOW2BLK_LAYER_ATTR_FD]) {
			NL_SET_ERR_MSG_ATTR(info->extack, elem,
					    "backing layer without a file descriptor");
			return -EINVAL;
		}
		l->file = qcow2blk_nl_fget(info, tb[QCOW2BLK_LAYER_ATTR_FD]);
		if (!l->file)
			return -EBADF;
		a->nr_layers = ++i;
		if (tb[QCOW2BLK_LAYER_ATTR_FORMAT])
			l->format = nla_get_u32(tb[QCOW2BLK_LAYER_ATTR_FORMAT]);
		data_fd = tb[QCOW2BLK_LAYER_ATTR_DATA_FD];
		if (data_fd) {
			l->data_file = qcow2blk_nl_fget(info, data_fd);
			if (!l->data_file)
				return -EBADF;
		}
	}
	return 0;
}

static int qcow2blk_nl_parse_attach(struct genl_info *info,
				    struct qcow2blk_attach *a)
{
	struct nlattr **attrs = info->attrs;
	struct nlattr *elem;
	u32 nr = 1;
	int rem, ret;

	if (!attrs[QCOW2BLK_ATTR_FD]) {
		NL_SET_ERR_MSG(info->extack, "image file descriptor missing");
		return -EINVAL;
	}
	if (attrs[QCOW2BLK_ATTR_FLAGS])
		a->flags = nla_get_u64(attrs[QCOW2BLK_ATTR_FLAGS]);
	if (a->flags & ~QCOW2BLK_F_ALL) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[QCOW2BLK_ATTR_FLAGS],
				    "unknown attach flags");
		return -EINVAL;
	}
	if (attrs[QCOW2BLK_ATTR_L2_CACHE_BYTES])
		a->l2_cache_bytes =
			nla_get_u64(attrs[QCOW2BLK_ATTR_L2_CACHE_BYTES]);
	if (attrs[QCOW2BLK_ATTR_MAP_CACHE_BYTES])
		a->map_cache_bytes =
			nla_get_u64(attrs[QCOW2BLK_ATTR_MAP_CACHE_BYTES]);
	if (attrs[QCOW2BLK_ATTR_RC_CACHE_BYTES]) {
		a->rc_cache_bytes =
			nla_get_u64(attrs[QCOW2BLK_ATTR_RC_CACHE_BYTES]);
		if (a->flags & QCOW2BLK_F_READ_ONLY) {
			NL_SET_ERR_MSG_ATTR(info->extack,
					    attrs[QCOW2BLK_ATTR_RC_CACHE_BYTES],
					    "a refcount cache size needs a writable attach");
			return -EINVAL;
		}
	}
	if (attrs[QCOW2BLK_ATTR_SECTOR_SIZE]) {
		u32 ss = nla_get_u32(attrs[QCOW2BLK_ATTR_SECTOR_SIZE]);

		if (ss && (ss < SECTOR_SIZE || ss > PAGE_SIZE ||
			   !is_power_of_2(ss))) {
			NL_SET_ERR_MSG_ATTR(info->extack,
					    attrs[QCOW2BLK_ATTR_SECTOR_SIZE],
					    "sector size must be 512, 1024, 2048 or 4096");
			return -EINVAL;
		}
		a->sector_size = ss;
	}
	if (attrs[QCOW2BLK_ATTR_SNAPSHOT])
		a->snapshot = nla_data(attrs[QCOW2BLK_ATTR_SNAPSHOT]);
	if (attrs[QCOW2BLK_ATTR_INDEX]) {
		ret = qcow2blk_nl_get_index(info, &a->index);
		if (ret)
			return ret;
	}
	if (attrs[QCOW2BLK_ATTR_BACKING]) {
		nla_for_each_nested(elem, attrs[QCOW2BLK_ATTR_BACKING], rem)
			nr++;
	}
	if (nr > QCOW2BLK_MAX_LAYERS) {
		NL_SET_ERR_MSG_ATTR(info->extack, attrs[QCOW2BLK_ATTR_BACKING],
				    "backing chain too long");
		return -EINVAL;
	}

	a->layers = kcalloc(nr, sizeof(*a->layers), GFP_KERNEL);
	if (!a->layers)
		return -ENOMEM;
	a->layers[0].file = qcow2blk_nl_fget(info, attrs[QCOW2BLK_ATTR_FD]);
	if (!a->layers[0].file)
		return -EBADF;
	a->nr_layers = 1;
	if (attrs[QCOW2BLK_ATTR_DATA_FD]) {
		a->layers[0].data_file =
			qcow2blk_nl_fget(info, attrs[QCOW2BLK_ATTR_DATA_FD]);
		if (!a->layers[0].data_file)
			return -EBADF;
	}
	if (attrs[QCOW2BLK_ATTR_BACKING])
		return qcow2blk_nl_get_backing(info, a);
	return 0;
}

/* Changing anything needs CAP_SYS_ADMIN, of the socket's opener too. */
static int qcow2blk_nl_admin(struct sk_buff *skb, struct genl_info *info)
{
	if (netlink_capable(skb, CAP_SYS_ADMIN))
		return 0;
	NL_SET_ERR_MSG(info->extack, "needs CAP_SYS_ADMIN");
	return -EPERM;
}

static int qcow2blk_nl_attach(struct sk_buff *skb, struct genl_info *info)
{
	struct qcow2blk_attach a = { .index = -1 };
	struct qcow2_err err = { .msg = "" };
	struct qcow2blk_dev *dev;
	int ret;

	ret = qcow2blk_nl_admin(skb, info);
	if (ret)
		return ret;
	ret = qcow2blk_nl_parse_attach(info, &a);
	if (ret)
		goto out_put;

	dev = qcow2blk_dev_attach(&a, &err);
	if (IS_ERR(dev)) {
		ret = PTR_ERR(dev);
		if (!err.msg[0])
			snprintf(err.msg, sizeof(err.msg),
				 "attach failed (error %d)", ret);
		pr_warn_ratelimited("qcow2blk: attach of %pD refused: %s\n",
				    a.layers[0].file, err.msg);
		QCOW2BLK_SET_ERR_MSG(info->extack,
				     "image refused; the kernel log has the reason",
				     err.msg);
		goto out_put;
	}
	/* A detach may already have begun: it waits for ctl_lock. */
	mutex_lock(&dev->ctl_lock);
	if (dev->ctl_state == QCOW2BLK_CTL_READY) {
		ret = qcow2blk_nl_reply(info, dev, QCOW2BLK_CMD_ATTACH);
		if (ret)
			pr_warn("qcow2blk: %s: attached, but the reply was lost (%d): is the receive buffer too small?\n",
				dev->disk->disk_name, ret);
		qcow2blk_nl_event(QCOW2BLK_EVENT_ATTACHED, dev);
	}
	mutex_unlock(&dev->ctl_lock);
	qcow2blk_dev_put(dev);
	/* The device exists; a lost reply does not undo it. */
	ret = 0;
out_put:
	qcow2blk_nl_put_files(&a);
	return ret;
}

static int qcow2blk_nl_detach(struct sk_buff *skb, struct genl_info *info)
{
	int index, ret;

	ret = qcow2blk_nl_admin(skb, info);
	if (ret)
		return ret;
	ret = qcow2blk_nl_get_index(info, &index);
	if (ret)
		return ret;
	ret = qcow2blk_dev_detach(index);
	if (ret == -ENODEV)
		NL_SET_ERR_MSG(info->extack, "no such device");
	else if (ret == -EBUSY)
		NL_SET_ERR_MSG(info->extack, "device is open");
	return ret;
}

static int qcow2blk_nl_get(struct sk_buff *skb, struct genl_info *info)
{
	struct qcow2blk_dev *dev;
	int index, ret;

	ret = qcow2blk_nl_get_index(info, &index);
	if (ret)
		return ret;
	mutex_lock(&qcow2blk_ctl_mutex);
	dev = qcow2blk_dev_find(index);
	if (dev) {
		ret = qcow2blk_nl_reply(info, dev, QCOW2BLK_CMD_GET);
	} else {
		NL_SET_ERR_MSG(info->extack, "no such device");
		ret = -ENODEV;
	}
	mutex_unlock(&qcow2blk_ctl_mutex);
	return ret;
}

/*
 * cb->args[0]: next index to report. A device whose chain does not fit
 * even in an empty message is reported without CHAIN (GET has it), so the
 * dump always moves on.
 */
static int qcow2blk_nl_dump(struct sk_buff *skb, struct netlink_callback *cb)
{
	unsigned long index = cb->args[0];
	struct qcow2blk_dev *dev;
	int ret;

	mutex_lock(&qcow2blk_ctl_mutex);
	while ((dev = qcow2blk_dev_next(&index))) {
		ret = qcow2blk_nl_fill(skb, dev, NETLINK_CB(cb->skb).portid,
				       cb->nlh->nlmsg_seq, NLM_F_MULTI,
				       QCOW2BLK_CMD_GET, true);
		if (ret && !skb->len)
			ret = qcow2blk_nl_fill(skb, dev,
					       NETLINK_CB(cb->skb).portid,
					       cb->nlh->nlmsg_seq, NLM_F_MULTI,
					       QCOW2BLK_CMD_GET, false);
		if (ret)
			break;
		index++;
	}
	mutex_unlock(&qcow2blk_ctl_mutex);
	cb->args[0] = index;
	return skb->len;
}

/*
 * Resize the refcount cache: the engine writes its dirty blocks back first,
 * which needs the same care as the request path (no reclaim into the fs).
 */
static int qcow2blk_nl_set_rc(struct genl_info *info, struct qcow2blk_dev *dev,
			      const struct nlattr *attr)
{
	unsigned int state;
	int ret;

	state = qcow2blk_writer_enter();
	ret = qcow2_rc_resize(qcow2blk_top(dev), nla_get_u64(attr));
	qcow2blk_writer_exit(state);
	qcow2blk_check_wfail(dev);
	if (ret)
		NL_SET_ERR_MSG_ATTR(info->extack, attr,
				    "cannot resize the refcount cache");
	return ret;
}

/* Bytes a SET of the L2 and refcount cache sizes would add, at most. */
static u64 qcow2blk_nl_set_growth(struct qcow2blk_dev *dev,
				  const struct nlattr *l2,
				  const struct nlattr *rc)
{
	struct qcow2_image *top = qcow2blk_top(dev);
	u64 more = 0, want, have;

	if (l2) {
		want = (u64)qcow2_l2c_slices_for(top, nla_get_u64(l2)) *
		       top->l2c.slot_bytes;
		have = qcow2_l2c_bytes(top);
		more += want > have ? want - have : 0;
	}
	if (rc && dev->writable) {
		want = min_t(u64, nla_get_u64(rc), QCOW2_RC_MAX_BYTES);
		have = qcow2_rc_bytes(top);
		more += want > have ? want - have : 0;
	}
	return more;
}

static int qcow2blk_nl_set(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *l2 = info->attrs[QCOW2BLK_ATTR_L2_CACHE_BYTES];
	struct nlattr *rc = info->attrs[QCOW2BLK_ATTR_RC_CACHE_BYTES];
	struct qcow2blk_dev *dev;
	int index, ret;

	ret = qcow2blk_nl_admin(skb, info);
	if (ret)
		return ret;
	ret = qcow2blk_nl_get_index(info, &index);
	if (ret)
		return ret;
	if (!l2 && !rc) {
		NL_SET_ERR_MSG(info->extack, "nothing to change");
		return -EINVAL;
	}

	dev = qcow2blk_dev_get(index);
	if (!dev) {
		NL_SET_ERR_MSG(info->extack, "no such device");
		return -ENODEV;
	}
	/* The resize writes back: no global lock, the device's own. */
	mutex_lock(&dev->ctl_lock);
	if (dev->ctl_state != QCOW2BLK_CTL_READY) {
		NL_SET_ERR_MSG(info->extack, "no such device");
		ret = -ENODEV;
		goto out_unlock;
	}
	if (rc && !dev->writable) {
		NL_SET_ERR_MSG_ATTR(info->extack, rc,
				    "read-only device: it has no refcount cache");
		ret = -EINVAL;
		goto out_unlock;
	}
	mutex_lock(&qcow2blk_ctl_mutex);
	ret = qcow2blk_budget_reserve(dev, qcow2blk_nl_set_growth(dev, l2, rc));
	mutex_unlock(&qcow2blk_ctl_mutex);
	if (ret) {
		NL_SET_ERR_MSG(info->extack,
			       "the caches would exceed the module's cache memory budget (cache_budget_mb)");
		goto out_unlock;
	}
	if (l2) {
		unsigned int state = qcow2blk_writer_enter();

		/* A writable image writes its dirty slices back first. */
		ret = qcow2_l2c_resize(qcow2blk_top(dev), nla_get_u64(l2));
		qcow2blk_writer_exit(state);
		if (ret)
			NL_SET_ERR_MSG_ATTR(info->extack, l2,
					    "cannot resize the L2 cache");
	}
	if (!ret && rc)
		ret = qcow2blk_nl_set_rc(info, dev, rc);
	/* The charge follows the caches as they are now. */
	mutex_lock(&qcow2blk_ctl_mutex);
	qcow2blk_budget_recharge(dev);
	mutex_unlock(&qcow2blk_ctl_mutex);
	if (!ret)
		ret = qcow2blk_nl_reply(info, dev, QCOW2BLK_CMD_SET);
out_unlock:
	mutex_unlock(&dev->ctl_lock);
	qcow2blk_dev_put(dev);
	return ret;
}

static int qcow2blk_nl_features(struct sk_buff *skb, struct genl_info *info)
{
	struct sk_buff *msg;
	void *hdr;

	msg = genlmsg_new(NLMSG_DEFAULT_SIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	hdr = genlmsg_put_reply(msg, info, &qcow2blk_genl_family, 0,
				QCOW2BLK_CMD_FEATURES);
	if (!hdr ||
	    nla_put_u32(msg, QCOW2BLK_ATTR_VERSION, QCOW2BLK_GENL_VERSION) ||
	    nla_put_u64_64bit(msg, QCOW2BLK_ATTR_FEATURES, QCOW2BLK_F_ALL,
			      QCOW2BLK_ATTR_PAD)) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
}

static const struct genl_ops qcow2blk_nl_ops[] = {
	{
		.cmd	= QCOW2BLK_CMD_ATTACH,
		.doit	= qcow2blk_nl_attach,
	},
	{
		.cmd	= QCOW2BLK_CMD_DETACH,
		.doit	= qcow2blk_nl_detach,
	},
	{
		.cmd	= QCOW2BLK_CMD_GET,
		.doit	= qcow2blk_nl_get,
		.dumpit	= qcow2blk_nl_dump,
	},
	{
		.cmd	= QCOW2BLK_CMD_SET,
		.doit	= qcow2blk_nl_set,
	},
	{
		.cmd	= QCOW2BLK_CMD_FEATURES,
		.doit	= qcow2blk_nl_features,
	},
};

static const struct genl_multicast_group qcow2blk_nl_mcgrps[] = {
	[QCOW2BLK_MCGRP_EVENTS] = { .name = QCOW2BLK_GENL_MCAST_EVENTS },
};

static struct genl_family qcow2blk_genl_family __ro_after_init = {
	.name		= QCOW2BLK_GENL_NAME,
	.version	= QCOW2BLK_GENL_VERSION,
	.maxattr	= QCOW2BLK_ATTR_MAX,
	.policy		= qcow2blk_nl_policy,
	.module		= THIS_MODULE,
	.ops		= qcow2blk_nl_ops,
	.n_ops		= ARRAY_SIZE(qcow2blk_nl_ops),
	.mcgrps		= qcow2blk_nl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(qcow2blk_nl_mcgrps),
	/* Handlers lock what they need; attach and SET do image I/O. */
	.parallel_ops	= true,
};

/**
 * qcow2blk_nl_init() - register the generic netlink family
 *
 * Context: module init.
 * Return: 0 or -errno.
 */
int qcow2blk_nl_init(void)
{
	return genl_register_family(&qcow2blk_genl_family);
}

/**
 * qcow2blk_nl_exit() - unregister the generic netlink family
 *
 * Context: module exit.
 */
void qcow2blk_nl_exit(void)
{
	genl_unregister_family(&qcow2blk_genl_family);
}

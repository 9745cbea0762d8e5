/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one seam between the qcow2 engine and its host: the Linux kernel or a
 * userspace program (unit tests, fuzzers, tools). Everything the engine needs
 * from its environment is named here: fixed-width types, byte order, errno
 * values, memory, a mutex and rate-limited logging. The engine includes no
 * other system header.
 */
#ifndef QCOW2_PLAT_H
#define QCOW2_PLAT_H

#ifdef __KERNEL__

#include <linux/types.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/string.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/lockdep.h>
#include <linux/printk.h>
#include <linux/build_bug.h>
#include <linux/log2.h>
#include <linux/math64.h>
#include <linux/wait.h>
#include <linux/sort.h>
#include <linux/atomic.h>
#include <asm/byteorder.h>

/* Engine allocations happen on the I/O path: never recurse into the fs. */
static inline void *qcow2_alloc(size_t size)
{
	return kvmalloc(size, GFP_NOIO);
}

static inline void *qcow2_zalloc(size_t size)
{
	return kvzalloc(size, GFP_NOIO);
}

static inline void qcow2_free(void *p)
{
	kvfree(p);
}

/*
 * Buffers that may be the target of direct I/O: naturally aligned to their
 * (power of two, at most PAGE_SIZE) size, and never vmalloc memory.
 */
static inline void *qcow2_alloc_io(size_t size)
{
	return kmalloc(size, GFP_NOIO);
}

static inline void qcow2_free_io(void *p)
{
	kfree(p);
}

/*
 * Cache slot buffers: charged to the memory cgroup of whoever sets the
 * cache up; _try is for the I/O path under memory pressure, where failing
 * is fine (an older slot is reused instead).
 */
static inline void *qcow2_alloc_cache(size_t size)
{
	return kmalloc(size, GFP_NOIO | __GFP_ACCOUNT);
}

static inline void *qcow2_alloc_cache_try(size_t size)
{
	return kmalloc(size, GFP_NOIO | __GFP_ACCOUNT | __GFP_NOWARN |
		       __GFP_NORETRY);
}

struct qcow2_mutex {
	struct mutex m;		/* the lock; users document what it guards */
};

#define qcow2_mutex_init(l)	mutex_init(&(l)->m)
#define qcow2_mutex_destroy(l)	mutex_destroy(&(l)->m)
#define qcow2_mutex_lock(l)	mutex_lock(&(l)->m)
#define qcow2_mutex_unlock(l)	mutex_unlock(&(l)->m)
#define qcow2_mutex_trylock(l)	mutex_trylock(&(l)->m)
#define qcow2_mutex_assert_held(l) lockdep_assert_held(&(l)->m)

/*
 * A wait queue for waiting, with a qcow2_mutex dropped, until a counter
 * that is only changed under that mutex differs from a value seen under it.
 */
struct qcow2_waitq {
	wait_queue_head_t wq;
};

#define qcow2_waitq_init(w)	init_waitqueue_head(&(w)->wq)
#define qcow2_waitq_destroy(w)	do { } while (0)

/* Called with @l held; returns with @l held, after *@seq != @old. */
static inline void qcow2_wait_change(struct qcow2_waitq *w,
				     struct qcow2_mutex *l, const u32 *seq,
				     u32 old)
{
	mutex_unlock(&l->m);
	wait_event(w->wq, READ_ONCE(*seq) != old);
	mutex_lock(&l->m);
}

/* Wake every waiter: call after changing the counter under the mutex. */
#define qcow2_wake_all(w)	wake_up_all(&(w)->wq)

#define qcow2_sort(base, num, size, cmp) sort(base, num, size, cmp, NULL)

/*
 * A 64-bit word that several contexts set bits in at once, with no lock
 * (persistent bitmaps: every write marks its range).
 */
struct qcow2_atomic64 {
	atomic64_t a;
};

static inline u64 qcow2_atomic64_read(struct qcow2_atomic64 *a)
{
	return atomic64_read(&a->a);
}

static inline void qcow2_atomic64_set(struct qcow2_atomic64 *a, u64 v)
{
	atomic64_set(&a->a, v);
}

/* Sets the bits of @m; returns the word as it was before. */
static inline u64 qcow2_atomic64_fetch_or(struct qcow2_atomic64 *a, u64 m)
{
	return atomic64_fetch_or(m, &a->a);
}

#define qcow2_log_ratelimited(fmt, ...) \
	pr_warn_ratelimited("qcow2blk: " fmt "\n", ##__VA_ARGS__)

#define QCOW2_BUILD_BUG_ON(cond) BUILD_BUG_ON(cond)

#else /* !__KERNEL__ */

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <endian.h>
#include <pthread.h>
#include <assert.h>
#include <linux/types.h>

/* Same widths and spellings as the kernel's, so %llu fits u64 in both. */
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
/* __be16/32/64 come from the uapi header; pthread.h may include it too. */

#ifndef EUCLEAN
#define EUCLEAN 117
#endif

#define be16_to_cpu(x)	be16toh(x)
#define be32_to_cpu(x)	be32toh(x)
#define be64_to_cpu(x)	be64toh(x)
#define cpu_to_be16(x)	htobe16(x)
#define cpu_to_be32(x)	htobe32(x)
#define cpu_to_be64(x)	htobe64(x)
#define le64_to_cpu(x)	le64toh(x)
#define cpu_to_le64(x)	htole64(x)

#ifndef min_t
#define min_t(t, a, b)	({ t __a = (a), __b = (b); __a < __b ? __a : __b; })
#define max_t(t, a, b)	({ t __a = (a), __b = (b); __a > __b ? __a : __b; })
#endif
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif
#ifndef BIT
#define BIT(n)		(1UL << (n))
#endif
#ifndef BIT_ULL
#define BIT_ULL(n)	(1ULL << (n))
#endif
#ifndef GENMASK_ULL
#define GENMASK_ULL(h, l) \
	((~0ULL << (l)) & (~0ULL >> (63 - (h))))
#endif
#ifndef IS_ALIGNED
#define IS_ALIGNED(x, a)	(((x) & ((__typeof__(x))(a) - 1)) == 0)
#endif
#ifndef ALIGN_DOWN
#define ALIGN_DOWN(x, a)	((x) & ~((__typeof__(x))(a) - 1))
#endif
#ifndef DIV_ROUND_UP_ULL
#define DIV_ROUND_UP_ULL(n, d)	({ u64 __d = (d); ((n) + __d - 1) / __d; })
#endif
#ifndef likely
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#endif
#define fallthrough	__attribute__((__fallthrough__))

static inline void *qcow2_alloc(size_t size)
{
	return malloc(size);
}

static inline void *qcow2_zalloc(size_t size)
{
	return calloc(1, size);
}

static inline void qcow2_free(void *p)
{
	free(p);
}

static inline void *qcow2_alloc_io(size_t size)
{
	void *p;

	if (posix_memalign(&p, size < 512 ? 512 : size, size))
		return NULL;
	return p;
}

static inline void qcow2_free_io(void *p)
{
	free(p);
}

#define qcow2_alloc_cache(size)		qcow2_alloc_io(size)
#define qcow2_alloc_cache_try(size)	qcow2_alloc_io(size)

struct qcow2_mutex {
	pthread_mutex_t m;
};

#define qcow2_mutex_init(l)	pthread_mutex_init(&(l)->m, NULL)
#define qcow2_mutex_destroy(l)	pthread_mutex_destroy(&(l)->m)
#define qcow2_mutex_lock(l)	pthread_mutex_lock(&(l)->m)
#define qcow2_mutex_unlock(l)	pthread_mutex_unlock(&(l)->m)
#define qcow2_mutex_trylock(l)	(pthread_mutex_trylock(&(l)->m) == 0)
#define qcow2_mutex_assert_held(l) do { } while (0)

struct qcow2_waitq {
	pthread_cond_t c;
};

#define qcow2_waitq_init(w)	pthread_cond_init(&(w)->c, NULL)
#define qcow2_waitq_destroy(w)	pthread_cond_destroy(&(w)->c)

static inline void qcow2_wait_change(struct qcow2_waitq *w,
				     struct qcow2_mutex *l, const u32 *seq,
				     u32 old)
{
	while (__atomic_load_n(seq, __ATOMIC_RELAXED) == old)
		pthread_cond_wait(&w->c, &l->m);
}

#define qcow2_wake_all(w)	pthread_cond_broadcast(&(w)->c)

#define qcow2_sort(base, num, size, cmp) qsort(base, num, size, cmp)

struct qcow2_atomic64 {
	u64 v;
};

static inline u64 qcow2_atomic64_read(struct qcow2_atomic64 *a)
{
	return __atomic_load_n(&a->v, __ATOMIC_RELAXED);
}

static inline void qcow2_atomic64_set(struct qcow2_atomic64 *a, u64 v)
{
	__atomic_store_n(&a->v, v, __ATOMIC_RELAXED);
}

static inline u64 qcow2_atomic64_fetch_or(struct qcow2_atomic64 *a, u64 m)
{
	return __atomic_fetch_or(&a->v, m, __ATOMIC_RELAXED);
}

#ifndef READ_ONCE
#define READ_ONCE(x)		__atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v)	__atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#endif

/* Tests set this to silence expected corruption reports. */
extern int qcow2_log_quiet;

#define qcow2_log_ratelimited(fmt, ...) do {				\
	if (!qcow2_log_quiet)						\
		fprintf(stderr, "qcow2: " fmt "\n", ##__VA_ARGS__);	\
} while (0)

#define QCOW2_BUILD_BUG_ON(cond) static_assert(!(cond), "build bug: " #cond)

#endif /* __KERNEL__ */

#endif /* QCOW2_PLAT_H */

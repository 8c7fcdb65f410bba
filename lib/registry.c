/* SPDX-License-Identifier: MIT */
/*
 * Registry: which pools exist, and each thread's directory of its caches.
 *
 * Every pool gets a slot (a small index, reused after destroy) and a uid
 * (never reused). A thread's directory is an array indexed by slot whose
 * entries remember the uid of the pool they were made for; the fast path
 * accepts an entry only if its uid matches the pool's, so a thread whose pool
 * was destroyed, and whose slot now serves another pool, never touches the
 * old cache (destroy freed it). The directory pointer is the library's only
 * thread-local variable on the fast path.
 *
 * Thread exit: a pthread key destructor gives the thread's magazines back to
 * each pool that still exists. Existence is decided under the registry lock,
 * which destroy takes to retire the slot, so exit and destroy cannot cross.
 *
 * fork(): one prepare handler takes every lock the library has, in the one
 * order written in docs/design.md ("Locks and grace periods"), stops every
 * other thread's cache operations, and the child handler reclaims the caches
 * of the threads that did not survive the fork.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct tdir magpool_no_tdir = { .cap = 0 };
__thread struct tdir *magpool_tls_dir __attribute__((tls_model("initial-exec"))) = &magpool_no_tdir;

struct slot {
    uint64_t uid; /* 0 = free */
    magpool_t *pool;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;      /* under registry_lock */
static uint32_t nslots;
static uint64_t next_uid = 1;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool exit_key_ok;
bool magpool_test_skip_exit_flush; /* test hook: as if the key had failed */

static void thread_exit(void *arg)
{
    struct tdir *d = arg;
    mutex_lock(&registry_lock);
    for (uint32_t i = 0; i < d->cap && i < nslots; i++) {
        if (d->e[i].uid != 0 && slots[i].uid == d->e[i].uid)
            cache_detach(slots[i].pool, d->e[i].tc);
    }
    pthread_mutex_unlock(&registry_lock);
    magpool_tls_dir = &magpool_no_tdir;
    free(d);
}

/*
 * fork(). The prepare handler takes the locks in this order (the table in
 * docs/design.md is the reference; TSan's deadlock detector checks it):
 *
 *   buffer managers' locks -> trimmer_lock -> registry_lock -> diag locks
 *   -> every pool's growth lock (all at once, see take_all_grow)
 *   (mutex backend: its lock) -> every lock-free pool's registration lock,
 *   then its owners are stopped -> every allocation lock -> every slab rwlock
 *   -> the publisher's lock (a leaf: publish.c)
 *
 * All growth locks before any allocation lock: a growth-lock holder may be
 * waiting for a grace period, and a grace period for a reader (who never
 * blocks on a lock: see tcache.c's cache_get_empty).
 */
typedef void (*pool_fn)(magpool_t *p);

static void each_pool(pool_fn fn, bool reverse)
{
    for (uint32_t k = 0; k < nslots; k++) {
        uint32_t i = reverse ? nslots - 1 - k : k;
        if (slots[i].uid)
            fn(slots[i].pool);
    }
}

static bool lockfree(const magpool_t *p) { return p->mode != MODE_MUTEX; }

static pthread_mutex_t *grow_lock_of(magpool_t *p)
{
    return lockfree(p) ? &p->grow_lock : &p->mp.lock;
}

/*
 * Every pool's growth lock, with no order among pools: a layered pool's
 * hooks (an ObjectPool's init / fini) run under its growth lock and may use
 * another pool, which takes that pool's growth lock — in either slot order.
 * So: try them all; if one is held, let go of all, wait for that one to be
 * free, and start over. fork never holds one growth lock while it waits for
 * another, so it cannot close a cycle with a hook.
 */
static void take_all_grow(void)
{
    for (;;) {
        uint32_t i;
        magpool_t *held = NULL;
        for (i = 0; i < nslots && held == NULL; i++)
            if (slots[i].uid && pthread_mutex_trylock(grow_lock_of(slots[i].pool)) != 0)
                held = slots[i].pool;
        if (held == NULL)
            return;
        for (uint32_t k = i - 1; k-- > 0;)
            if (slots[k].uid)
                pthread_mutex_unlock(grow_lock_of(slots[k].pool));
        mutex_lock(grow_lock_of(held));
        pthread_mutex_unlock(grow_lock_of(held));
    }
}

static void take_reg_and_stop(magpool_t *p)
{
    if (!lockfree(p))
        return;
    mutex_lock(&p->reg_lock);
    /* Stop every other thread's cache operations on p, so the child inherits
     * consistent caches it can reclaim whole. Owners inside an operation may
     * need the allocation lock: it is taken after. */
    p->fork_quiesced = stop_owners_locked(p, tcache_lookup(p), NULL, NULL);
}

static void take_alloc(magpool_t *p)
{
    if (lockfree(p))
        mutex_lock(&p->depot.alloc_lock);
}

static void take_rw(magpool_t *p) { pthread_rwlock_wrlock(&p->slabs.rw); }

static void drop_rw_parent(magpool_t *p) { pthread_rwlock_unlock(&p->slabs.rw); }

static void drop_rw_child(magpool_t *p)
{
    /* glibc records the write-lock owner's tid, which differs in the child:
     * unlocking would be taken for a reader's unlock. */
    pthread_rwlock_destroy(&p->slabs.rw);
    pthread_rwlock_init(&p->slabs.rw, NULL);
}

static void drop_alloc(magpool_t *p)
{
    if (lockfree(p))
        pthread_mutex_unlock(&p->depot.alloc_lock);
}

static void drop_reg_parent(magpool_t *p)
{
    if (!lockfree(p))
        return;
    release_owners_locked(p);
    pthread_mutex_unlock(&p->reg_lock);
}

static void drop_reg_child(magpool_t *p)
{
    if (lockfree(p)) /* the stopped owners do not exist here */
        pthread_mutex_unlock(&p->reg_lock);
}

static void drop_grow(magpool_t *p) { pthread_mutex_unlock(grow_lock_of(p)); }

static void reclaim_orphans(magpool_t *p)
{
    if (lockfree(p))
        cache_fork_child(p, tcache_lookup(p), p->fork_quiesced);
}

static void fork_prepare(void)
{
    bufmgr_fork_prepare();
    trimmer_fork_prepare();
    mutex_lock(&registry_lock);
    diag_fork_prepare();
    take_all_grow();
    each_pool(take_reg_and_stop, false);
    each_pool(take_alloc, false);
    each_pool(take_rw, false);
    publish_fork_prepare();
}

static void fork_parent(void)
{
    publish_fork_parent();
    each_pool(drop_rw_parent, true);
    each_pool(drop_alloc, true);
    each_pool(drop_reg_parent, true);
    each_pool(drop_grow, true);
    diag_fork_release();
    pthread_mutex_unlock(&registry_lock);
    trimmer_fork_parent();
    bufmgr_fork_release();
}

static void fork_child(void)
{
    fence_setup(); /* membarrier registration belongs to the parent's mm */
    each_pool(drop_rw_child, true);
    each_pool(drop_alloc, true);
    each_pool(drop_reg_child, true);
    each_pool(drop_grow, true);
    diag_fork_release();
    each_pool(reclaim_orphans, false);
    pthread_mutex_unlock(&registry_lock);
    trimmer_fork_child(); /* restarts the background trimmer if it ran */
    bufmgr_fork_release();
    publish_fork_child(); /* last: its restart's thread finds the rest unlocked */
}

static void registry_init(void)
{
    fence_setup();
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void registry_init_once(void)
{
    pthread_once(&init_once, registry_init);
}

int registry_add(magpool_t *p)
{
    registry_init_once();
    mutex_lock(&registry_lock);
    uint32_t i = 0;
    while (i < nslots && slots[i].uid != 0)
        i++;
    if (i == nslots) {
        struct slot *ns = realloc(slots, (size_t)(nslots + 1) * sizeof *ns);
        if (ns == NULL) {
            pthread_mutex_unlock(&registry_lock);
            errno = ENOMEM;
            return -1;
        }
        slots = ns;
        nslots++;
    }
    p->slot = i;
    p->uid = next_uid++;
    slots[i].uid = p->uid;
    slots[i].pool = p;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

void registry_remove(magpool_t *p)
{
    mutex_lock(&registry_lock);
    slots[p->slot].uid = 0;
    slots[p->slot].pool = NULL;
    pthread_mutex_unlock(&registry_lock);
}

struct tcache *registry_tcache_slow(magpool_t *p)
{
    struct tdir *d = magpool_tls_dir;
    if (p->slot >= d->cap) {
        bool fresh = d == &magpool_no_tdir;
        uint32_t old = d->cap;
        uint32_t cap = old ? old : 8;
        while (cap <= p->slot)
            cap *= 2;
        struct tdir *nd = realloc(fresh ? NULL : d, sizeof *nd + (size_t)cap * sizeof nd->e[0]);
        if (nd == NULL)
            return NULL;
        memset(&nd->e[old], 0, (size_t)(cap - old) * sizeof nd->e[0]);
        nd->cap = cap;
        magpool_tls_dir = d = nd;
        /* The key's value is what the exit destructor receives. If this
         * fails (or the destructor never runs: too many destructor rounds),
         * the thread's caches stay attached with their inactive epoch
         * readers: a steal or clear takes the blocks back, grace periods
         * skip the readers, and nothing refers to the dead thread's TLS. */
        if (exit_key_ok && !magpool_test_skip_exit_flush)
            pthread_setspecific(exit_key, nd);
    }
    struct tcache *tc = cache_attach(p);
    if (tc == NULL)
        return NULL;
    d->e[p->slot].uid = p->uid;
    d->e[p->slot].tc = tc;
    return tc;
}

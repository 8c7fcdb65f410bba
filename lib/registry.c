/*
 * Registry: which pools exist, and each thread's directory of its caches.
 *
 * Every pool gets a slot (a small index, reused after destroy) and a uid
 * (never reused). A thread's directory is an array indexed by slot whose
 * entries remember the uid of the pool they were made for; the fast path
 * accepts an entry only if its uid matches the pool's, so a thread whose pool
 * was destroyed, and whose slot now serves another pool, never touches the
 * old cache (destroy freed it). The directory pointer is the library's only
 * thread-local variable.
 *
 * Thread exit: a pthread key destructor gives the thread's magazines back to
 * each pool that still exists. Existence is decided under the registry lock,
 * which destroy takes to retire the slot, so exit and destroy cannot cross.
 *
 * fork(): the prepare handler takes every lock the library has (registry
 * lock first, then each pool's, in the documented order), so the child finds
 * them consistent; the child handler then reclaims the caches of the threads
 * that did not survive the fork.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

enum fence_kind { FENCE_NONE, FENCE_PRIVATE_EXPEDITED, FENCE_GLOBAL };
static enum fence_kind fence_kind; /* written once in registry_init */

static long sys_membarrier(int cmd)
{
    return syscall(__NR_membarrier, cmd, 0, 0);
}

static void fence_setup(void)
{
    long q = sys_membarrier(MEMBARRIER_CMD_QUERY);
    fence_kind = FENCE_NONE;
    if (q < 0)
        return;
    if ((q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
        fence_kind = FENCE_PRIVATE_EXPEDITED;
    else if (q & MEMBARRIER_CMD_GLOBAL)
        fence_kind = FENCE_GLOBAL;
}

bool heavy_fence_available(void)
{
    return fence_kind != FENCE_NONE;
}

void heavy_fence(void)
{
    sys_membarrier(fence_kind == FENCE_PRIVATE_EXPEDITED
                   ? MEMBARRIER_CMD_PRIVATE_EXPEDITED : MEMBARRIER_CMD_GLOBAL);
}

static void thread_exit(void *arg)
{
    struct tdir *d = arg;
    pthread_mutex_lock(&registry_lock);
    for (uint32_t i = 0; i < d->cap && i < nslots; i++) {
        if (d->e[i].uid != 0 && slots[i].uid == d->e[i].uid)
            cache_detach(slots[i].pool, d->e[i].tc);
    }
    pthread_mutex_unlock(&registry_lock);
    epoch_thread_offline();
    magpool_tls_dir = &magpool_no_tdir;
    free(d);
}

static void lock_pool(magpool_t *p)
{
    if (p->mode == MODE_MUTEX) {
        pthread_mutex_lock(&p->mp.lock);
    } else {
        pthread_mutex_lock(&p->grow_lock);
        pthread_mutex_lock(&p->reg_lock);
        /* Stop every other thread's cache operation on p, so the child
         * inherits consistent caches it can reclaim whole. Before the
         * allocation lock: a thread inside an operation may need it. */
        cache_quiesce_locked(p, tcache_lookup(p));
        pthread_mutex_lock(&p->depot.alloc_lock);
    }
    pthread_rwlock_wrlock(&p->slabs.rw);
}

static void unlock_pool(magpool_t *p, bool child)
{
    if (child) {
        /* glibc records the write-lock owner's tid, which differs in the
         * child: unlocking would be taken for a reader's unlock. */
        pthread_rwlock_destroy(&p->slabs.rw);
        pthread_rwlock_init(&p->slabs.rw, NULL);
    } else {
        pthread_rwlock_unlock(&p->slabs.rw);
    }
    if (p->mode == MODE_MUTEX) {
        pthread_mutex_unlock(&p->mp.lock);
    } else {
        pthread_mutex_unlock(&p->depot.alloc_lock);
        if (!child) /* in the child the stopped threads do not exist */
            cache_unquiesce_locked(p);
        pthread_mutex_unlock(&p->reg_lock);
        pthread_mutex_unlock(&p->grow_lock);
    }
}

static void fork_prepare(void)
{
    trimmer_fork_prepare();
    pthread_mutex_lock(&registry_lock);
    for (uint32_t i = 0; i < nslots; i++)
        if (slots[i].uid)
            lock_pool(slots[i].pool);
}

static void fork_parent(void)
{
    for (uint32_t i = nslots; i-- > 0;)
        if (slots[i].uid)
            unlock_pool(slots[i].pool, false);
    pthread_mutex_unlock(&registry_lock);
    trimmer_fork_parent();
}

static void fork_child(void)
{
    /* membarrier registration belongs to the parent's mm. */
    fence_setup();
    epoch_fork_child();
    for (uint32_t i = nslots; i-- > 0;)
        if (slots[i].uid)
            unlock_pool(slots[i].pool, true);
    for (uint32_t i = 0; i < nslots; i++) {
        magpool_t *p = slots[i].pool;
        if (slots[i].uid == 0 || p->mode == MODE_MUTEX)
            continue;
        cache_fork_child(p, tcache_lookup(p));
    }
    pthread_mutex_unlock(&registry_lock);
    trimmer_fork_child();
}

static void registry_init(void)
{
    fence_setup();
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int registry_add(magpool_t *p)
{
    pthread_once(&init_once, registry_init);
    pthread_mutex_lock(&registry_lock);
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
    pthread_mutex_lock(&registry_lock);
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
        if (fresh)
            epoch_thread_online(); /* a directory exists iff registered */
        magpool_tls_dir = d = nd;
        /* The key's value is what the exit destructor receives. If this
         * fails, the thread's magazines stay parked until a steal or clear
         * takes them back; nothing is lost. */
        if (exit_key_ok)
            pthread_setspecific(exit_key, nd);
    }
    struct tcache *tc = cache_attach(p);
    if (tc == NULL)
        return NULL;
    d->e[p->slot].uid = p->uid;
    d->e[p->slot].tc = tc;
    return tc;
}

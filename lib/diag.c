/* SPDX-License-Identifier: MIT */
/*
 * Diagnostics: MAGPOOL_CHECKED, sanitizer / valgrind awareness, passthrough,
 * error reports, acquire sites and leak reports; and the list of every live
 * pool, with its walk (magpool_walk).
 *
 * Nothing here is on the fast path. A pool with any diagnostic on has
 * diag_flags != 0 (lock-free pools also get mode MODE_LOCKFREE_DIAG), and the
 * public dispatch (cache.c, bottom) sends its acquires and releases here;
 * the lock-free fast path tests mode == MODE_LOCKFREE and nothing else.
 *
 * Block layout with DIAG_REDZONE (CHECKED on a pool whose contents the
 * library owns, i.e. not an object pool / buffer manager pool):
 *
 *   |<------------------------ stride ------------------------->|
 *   | user bytes [0, block_size) | canary ... 0xFD | site (u64) |
 *
 * The stride grows by MAGPOOL_REDZONE (slab_set_init). While a block is
 * acquired the canary bytes are 0xFD; release checks them (overflow). An
 * idle block is 0xDD from byte 0 to the site word; acquire checks that
 * (use after release). The first word of an idle block may instead hold a
 * free-list link (mutex backend always, lock-free only on its out-of-memory
 * spill list): there it must be NULL or the start of a block of the pool.
 * The site word is the id of the last acquiring call site (site table
 * below), 0 when unknown; it survives release, so reports about an idle
 * block name who had it last.
 *
 * Under AddressSanitizer an idle block is poisoned from byte 8 to its end
 * (the site word excepted), an acquired block's redzone too; byte 0-7 stay
 * addressable because the library itself may write a link there. Under
 * memcheck, acquire / release are VALGRIND_MEMPOOL_ALLOC / _FREE and the link
 * word is made addressable again after the free. Slabs are filled / poisoned
 * when carved (a carve hook) and unpoisoned before they are unmapped.
 */
#include <errno.h>
#include <execinfo.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define DIAG_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DIAG_HAVE_ASAN 1
#endif
#endif
#ifdef DIAG_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#define asan_poison(a, n)   ASAN_POISON_MEMORY_REGION((a), (n))
#define asan_unpoison(a, n) ASAN_UNPOISON_MEMORY_REGION((a), (n))
#else
#define asan_poison(a, n)   ((void)(a), (void)(n))
#define asan_unpoison(a, n) ((void)(a), (void)(n))
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define DIAG_HAVE_VALGRIND 1
#endif
#endif
#ifndef DIAG_HAVE_VALGRIND
#define RUNNING_ON_VALGRIND 0
#define VALGRIND_CREATE_MEMPOOL(p, r, z) ((void)0)
#define VALGRIND_DESTROY_MEMPOOL(p)      ((void)0)
#define VALGRIND_MEMPOOL_ALLOC(p, a, n)  ((void)0)
#define VALGRIND_MEMPOOL_FREE(p, a)      ((void)0)
#define VALGRIND_MAKE_MEM_DEFINED(a, n)  ((void)0)
#define VALGRIND_MAKE_MEM_NOACCESS(a, n) ((void)0)
#endif

#define FREE_BYTE   0xDD
#define CANARY_BYTE 0xFD
#define LINK_BYTES  sizeof(void *)

struct walk_pin;

struct pool_diag {
    magpool_t *pool;
    struct pool_diag *next, *prev;  /* all pools (pools_lock)             */
    struct walk_pin *pins;          /* magpool_walk holds it (pools_lock)  */
    pthread_mutex_t lock;           /* name, passthrough set              */
    char name[MAGPOOL_NAME_MAX];
    _Atomic uint64_t errors;
    void *pt_root;                  /* tsearch tree of struct pt_block     */
    size_t pt_live;
    _Atomic uint64_t pt_acquires, pt_releases; /* written under lock      */
    bool layered;                   /* object pool / buffer manager pool  */
    /* "objpool" / "bufmgr", else NULL. Atomic: the layer sets it after
     * the pool is registered, where a walk can already see the pool. */
    _Atomic(const char *) layer;
};

/* A block in the tree: passthrough (the node owns the malloc'd block), or
 * an outstanding block of a CHECKED layered pool (the node only names its
 * acquire site: those pools have no redzone to keep it in). */
struct pt_block {
    void *block;
    uint32_t site;
};

/* -------------------------------------------------------------- settings */

bool diag_env_on(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static bool under_memcheck(void)
{
    if (!RUNNING_ON_VALGRIND)
        return false;
    const char *v = getenv("MAGPOOL_VALGRIND");
    if (v != NULL && v[0] != '\0')
        return strcmp(v, "0") != 0;
    /* Only memcheck reads the mempool requests usefully; under callgrind
     * or cachegrind the pool must run its real (fast) code. */
    const char *pre = getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload_memcheck") != NULL;
}

unsigned diag_select(const magpool_config_t *cfg, const struct pool_hooks *hooks)
{
    unsigned f = 0;
    bool checked = (cfg->flags & MAGPOOL_CHECKED) || diag_env_on("MAGPOOL_CHECKED");
    if (checked)
        f |= DIAG_CHECKED;
    if (hooks == NULL) { /* layered pools keep contents: only release checks */
        if (checked)
            f |= DIAG_REDZONE;
#ifdef DIAG_HAVE_ASAN
        f |= DIAG_ASAN;
#endif
        if (under_memcheck())
            f |= DIAG_VALGRIND;
        if (diag_env_on("MAGPOOL_PASSTHROUGH"))
            f |= DIAG_PASSTHROUGH;
    }
    return f;
}

/* --------------------------------------------------------- error handler */

static void default_handler(const magpool_error_t *err, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "%s\n", err->message);
}

/* Replaced as a pair under handler_lock; read under it too (reports are rare). */
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static magpool_error_fn handler_fn = default_handler;
static void *handler_ctx;

MAGPOOL_API void magpool_set_error_handler(magpool_error_fn fn, void *ctx)
{
    mutex_lock(&handler_lock);
    handler_fn = fn ? fn : default_handler;
    handler_ctx = fn ? ctx : NULL;
    pthread_mutex_unlock(&handler_lock);
}

/* ------------------------------------------------------- acquire sites */

/*
 * Call sites are interned in one global table: a block stores a 32-bit id.
 * Insertion is lock-free (CAS on the key), so a fork can never leave it
 * locked; a full table yields id 0 ("unknown"), nothing worse.
 */
#define SITE_DEPTH 8
#define SITE_CAP   4096u

struct site {
    _Atomic uint64_t key;     /* hash of the frames; 0 = free           */
    _Atomic uint32_t ready;   /* frames written (release / acquire)     */
    uint32_t depth;
    void *pc[SITE_DEPTH];
};
static struct site sites[SITE_CAP];
/* MAGPOOL_BACKTRACE: frames kept (0 = call site only); -1 = not read yet. */
static _Atomic int site_frames = -1;

static int backtrace_depth(void)
{
    /* relaxed: a cache of a pure function of the environment; threads that
     * race here compute and store the same value. */
    int d = atomic_load_relaxed(&site_frames);
    if (d < 0) {
        const char *v = getenv("MAGPOOL_BACKTRACE");
        d = v ? atoi(v) : SITE_DEPTH;
        if (d < 0)
            d = 0;
        if (d > SITE_DEPTH)
            d = SITE_DEPTH;
        atomic_store_relaxed(&site_frames, d);
    }
    return d;
}

static uint32_t site_intern(void *const *pc, unsigned depth)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ depth;
    for (unsigned i = 0; i < depth; i++) {
        h ^= (uint64_t)(uintptr_t)pc[i];
        h *= 0xff51afd7ed558ccdu;
        h ^= h >> 33;
    }
    if (h == 0)
        h = 1;
    for (uint32_t n = 0, i = (uint32_t)h & (SITE_CAP - 1); n < SITE_CAP;
         n++, i = (i + 1) & (SITE_CAP - 1)) {
        struct site *s = &sites[i];
        /* relaxed: the key only claims the slot; the frames are published
         * by `ready` (release, paired with the acquire in site_get). */
        uint64_t k = atomic_load_relaxed(&s->key);
        if (k == h)
            return i + 1;
        if (k == 0) {
            uint64_t zero = 0;
            if (atomic_compare_exchange_strong_explicit(&s->key, &zero, h,
                    memory_order_relaxed, memory_order_relaxed)) {
                s->depth = depth;
                memcpy(s->pc, pc, depth * sizeof *pc);
                atomic_store_release(&s->ready, 1);
                return i + 1;
            }
            if (zero == h)
                return i + 1;
        }
    }
    return 0;
}

/* The frames of site `id`, or NULL. */
static struct site *site_get(uint32_t id)
{
    if (id == 0 || id > SITE_CAP)
        return NULL;
    struct site *s = &sites[id - 1];
    return atomic_load_acquire(&s->ready) ? s : NULL;
}

/* The current call stack from `caller` (the acquiring call's return
 * address) outwards. */
static noinline uint32_t site_capture(void *caller)
{
    int want = backtrace_depth();
    void *bt[SITE_DEPTH + 16];
    void *pc[SITE_DEPTH] = { caller };
    unsigned depth = 1;
    if (want > 1) {
        int n = backtrace(bt, (int)(sizeof bt / sizeof bt[0]));
        for (int i = 0; i < n; i++) {
            if (bt[i] != caller)
                continue;
            for (depth = 0; i < n && depth < (unsigned)want; i++)
                pc[depth++] = bt[i];
            break;
        }
    }
    return site_intern(pc, depth);
}

/* The layers' own sites (bufmgr.c: large buffers keep theirs in a header). */
uint32_t diag_site_capture(void *caller)
{
    return site_capture(caller);
}

/* " acquired at a <- b <- c" into buf (empty when unknown). */
static void site_format(const struct site *s, char *buf, size_t cap, const char *lead)
{
    buf[0] = '\0';
    if (s == NULL)
        return;
    char **sym = backtrace_symbols(s->pc, (int)s->depth);
    size_t len = (size_t)snprintf(buf, cap, "%s", lead);
    for (unsigned i = 0; i < s->depth && len < cap; i++) {
        char one[32];
        const char *txt = sym ? sym[i] : NULL;
        if (txt == NULL) {
            snprintf(one, sizeof one, "%p", s->pc[i]);
            txt = one;
        }
        /* "./prog(fn+0x1a) [0x5581...]": drop the bracketed address */
        const char *br = strstr(txt, " [");
        int tl = br && strchr(txt, '(') ? (int)(br - txt) : (int)strlen(txt);
        len += (size_t)snprintf(buf + len, cap - len, "%s%.*s", i ? " <- " : "", tl, txt);
    }
    free(sym);
}

/* --------------------------------------------------------------- pools */

static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool_diag *pools;     /* every live pool, under pools_lock   */
/* fork(): called by registry.c's prepare handler, after the registry lock
 * and before any pool's locks (docs/design.md, "Locks and grace periods"). */
void diag_fork_prepare(void)
{
    mutex_lock(&handler_lock);
    mutex_lock(&pools_lock);
    for (struct pool_diag *d = pools; d; d = d->next)
        mutex_lock(&d->lock);
}

void diag_fork_release(void)
{
    for (struct pool_diag *d = pools; d; d = d->next)
        pthread_mutex_unlock(&d->lock);
    pthread_mutex_unlock(&pools_lock);
    pthread_mutex_unlock(&handler_lock);
}

static int diag_carve(void *ctx, char *first, size_t n, size_t stride)
{
    magpool_t *p = ctx;
    unsigned f = p->diag_flags;
    for (size_t i = 0; i < n; i++) {
        char *b = first + i * stride;
        if (f & DIAG_REDZONE) {
            memset(b, FREE_BYTE, stride - sizeof(uint64_t));
            memset(b + stride - sizeof(uint64_t), 0, sizeof(uint64_t));
            asan_poison(b + LINK_BYTES, stride - LINK_BYTES - sizeof(uint64_t));
        } else {
            asan_poison(b + LINK_BYTES, stride - LINK_BYTES);
        }
    }
    return 0;
}

static void diag_unmap(void *ctx, char *first, size_t n, size_t stride)
{
    (void)ctx;
    /* The range may be mapped again by anyone: leave no stale shadow. */
    asan_unpoison(first, n * stride);
#ifdef DIAG_HAVE_ASAN
    /* Unpoisoning zeroes the shadow but keeps its pages resident; give the
     * pages wholly inside this range's shadow back (they read as zero, i.e.
     * addressable), as ASan itself does for large regions. */
    size_t scale, offset, ps = (size_t)sysconf(_SC_PAGESIZE);
    __asan_get_shadow_mapping(&scale, &offset);
    uintptr_t lo = ((uintptr_t)first >> scale) + offset;
    uintptr_t hi = (((uintptr_t)first + n * stride) >> scale) + offset;
    lo = (lo + ps - 1) & ~(uintptr_t)(ps - 1);
    hi &= ~(uintptr_t)(ps - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
#endif
    (void)first, (void)n, (void)stride;
}

int diag_pool_init(magpool_t *p, const struct pool_hooks *given)
{
    struct pool_diag *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -1;
    d->pool = p;
    d->layered = given != NULL;
    pthread_mutex_init(&d->lock, NULL);
    p->diag = d;
    if (given) {
        p->slabs.hooks = *given;
    } else if (p->diag_flags & (DIAG_REDZONE | DIAG_ASAN)) {
        p->slabs.hooks.carve = diag_carve;
        p->slabs.hooks.unmap = diag_unmap;
        p->slabs.hooks.ctx = p;
    }
    if (p->diag_flags & DIAG_VALGRIND)
        VALGRIND_CREATE_MEMPOOL(p, 0, 0);
    return 0;
}

void diag_pool_register(magpool_t *p)
{
    struct pool_diag *d = p->diag;
    mutex_lock(&pools_lock);
    d->next = pools;
    if (pools)
        pools->prev = d;
    pools = d;
    pthread_mutex_unlock(&pools_lock);
    print_pool_created(); /* MAGPOOL_SHOW_STATS: the at-exit report */
    publish_pool_created(); /* MAGPOOL_PUBLISH: the live view */
}

static void pt_free_node(void *node)
{
    struct pt_block *n = node;
    free(n->block);
    free(n);
}

static void wait_for_walkers(struct pool_diag *d);

void diag_pool_free(magpool_t *p)
{
    struct pool_diag *d = p->diag;
    if (d == NULL)
        return;
    mutex_lock(&pools_lock);
    wait_for_walkers(d); /* a magpool_walk callback may still use p */
    if (d->prev || d->next || pools == d) {
        if (d->prev)
            d->prev->next = d->next;
        else
            pools = d->next;
        if (d->next)
            d->next->prev = d->prev;
    }
    pthread_mutex_unlock(&pools_lock);
    if (p->diag_flags & DIAG_VALGRIND)
        VALGRIND_DESTROY_MEMPOOL(p);
    tdestroy(d->pt_root, (p->diag_flags & DIAG_PASSTHROUGH) ? pt_free_node : free);
    pthread_mutex_destroy(&d->lock);
    free(d);
    p->diag = NULL;
}

MAGPOOL_API int magpool_set_name(magpool_t *p, const char *name)
{
    if (p == NULL) {
        errno = EINVAL;
        return -1;
    }
    mutex_lock(&p->diag->lock);
    snprintf(p->diag->name, sizeof p->diag->name, "%s", name ? name : "");
    pthread_mutex_unlock(&p->diag->lock);
    return 0;
}

MAGPOOL_API const char *magpool_get_name(const magpool_t *p)
{
    RETURN_IF_NULL(p, "");
    return p->diag->name;
}

/* A copy of p's name, taken under its lock (magpool_set_name may run). */
void diag_pool_name(const magpool_t *p, char *buf, size_t cap)
{
    mutex_lock(&p->diag->lock);
    snprintf(buf, cap, "%s", p->diag->name);
    pthread_mutex_unlock(&p->diag->lock);
}

/* relaxed: a pointer to a string literal; no other data is published */
void diag_set_layer(magpool_t *p, const char *layer)
{
    atomic_store_relaxed(&p->diag->layer, layer);
}

const char *diag_layer(const magpool_t *p)
{
    return atomic_load_relaxed(&p->diag->layer);
}

MAGPOOL_API unsigned magpool_diagnostics(const magpool_t *p)
{
    RETURN_IF_NULL(p, 0);
    return p->diag_flags;
}

/* The live pool other than p whose slabs hold ptr, with its name copied. */
static magpool_t *find_owner(magpool_t *p, const void *ptr, char *name, size_t cap)
{
    magpool_t *owner = NULL;
    mutex_lock(&pools_lock);
    for (struct pool_diag *d = pools; d && !owner; d = d->next) {
        if (d->pool == p)
            continue;
        void *blk;
        size_t off;
        int live;
        if (slab_lookup(&d->pool->slabs, ptr, &blk, &off, &live) >= 0) {
            owner = d->pool;
            diag_pool_name(owner, name, cap);
        }
    }
    pthread_mutex_unlock(&pools_lock);
    return owner;
}

/* ------------------------------------------------------------------ walk */

/*
 * magpool_walk calls its callback without holding pools_lock (or any other
 * lock), so the callback may call whatever takes the registry's or a pool's
 * locks: magpool_get_stats, a leak report, the printers, magpool_walk
 * itself. What keeps a visited pool alive instead is a pin: one record per
 * pool of the walk's snapshot, linked to the pool under pools_lock and
 * dropped once its callback returns. diag_pool_free, the first step of
 * freeing a pool (nothing of it is freed yet), waits until no other thread
 * of this process pins the pool. Two kinds of pins are not waited for, and
 * are marked gone instead, so that their walker skips the pool: the
 * destroying thread's own (a callback destroying a pool of its own walk,
 * which would otherwise wait for itself) and those of threads that did not
 * survive a fork (made under another pid; the forking thread's own pins in
 * the child are its, by pthread_self, and behave as in the parent).
 */
struct walk_pin {
    struct walk_pin *next;      /* the pool's pins (pools_lock)               */
    struct pool_diag *d;
    pthread_t thread;
    pid_t pid;
    bool visiting;              /* its callback runs now (pools_lock)         */
    bool gone;                  /* the pool was destroyed (pools_lock)        */
};

static bool pinned_by_others(const struct pool_diag *d, pid_t pid)
{
    /* Only a pin whose callback runs now is waited for: a walker that has
     * not reached the pool yet just skips it (gone). Waiting for those too
     * would deadlock two walks whose callbacks destroy each other's pools. */
    for (const struct walk_pin *w = d->pins; w; w = w->next)
        if (w->visiting && w->pid == pid && !pthread_equal(w->thread, pthread_self()))
            return true;
    return false;
}

/* pools_lock held (dropped while waiting); returns with d pinned by nobody. */
static void wait_for_walkers(struct pool_diag *d)
{
    if (d->pins == NULL)
        return;
    pid_t pid = getpid();
    while (pinned_by_others(d, pid)) {
        pthread_mutex_unlock(&pools_lock);
        /* Polled, not a condition variable: a fork child must never meet
         * a condition variable with waiters that do not exist there. */
        struct timespec pause = { 0, 200000 };
        nanosleep(&pause, NULL);
        mutex_lock(&pools_lock);
    }
    for (struct walk_pin *w = d->pins; w; w = w->next)
        w->gone = true;
    d->pins = NULL;
}

static void unpin_locked(struct walk_pin *w)
{
    if (w->gone)
        return;
    struct walk_pin **pp = &w->d->pins;
    while (*pp != w)
        pp = &(*pp)->next;
    *pp = w->next;
}

MAGPOOL_API int magpool_walk(void (*fn)(magpool_t *pool, void *ctx), void *ctx)
{
    if (fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    pid_t pid = getpid();
    mutex_lock(&pools_lock);
    size_t n = 0;
    for (struct pool_diag *d = pools; d; d = d->next)
        n++;
    struct walk_pin *pin = n ? calloc(n, sizeof *pin) : NULL;
    if (n && pin == NULL) {
        pthread_mutex_unlock(&pools_lock);
        errno = ENOMEM;
        return -1;
    }
    /* The list is newest first: fill from the back, visit oldest first. */
    size_t i = n;
    for (struct pool_diag *d = pools; d; d = d->next) {
        struct walk_pin *w = &pin[--i];
        *w = (struct walk_pin){ .next = d->pins, .d = d, .thread = pthread_self(), .pid = pid };
        d->pins = w;
    }
    for (i = 0; i < n; i++) {
        magpool_t *p = pin[i].gone ? NULL : pin[i].d->pool;
        pin[i].visiting = p != NULL;
        pthread_mutex_unlock(&pools_lock);
        if (p)
            fn(p, ctx);
        mutex_lock(&pools_lock);
        pin[i].visiting = false;
        unpin_locked(&pin[i]);
    }
    pthread_mutex_unlock(&pools_lock);
    free(pin);
    return 0;
}

/* ------------------------------------------------------------- reports */

static const char *kind_text(magpool_error_kind_t k)
{
    switch (k) {
    case MAGPOOL_ERR_DOUBLE_RELEASE:     return "double release";
    case MAGPOOL_ERR_FOREIGN_POINTER:    return "release of a pointer that is not a block of this pool";
    case MAGPOOL_ERR_MISALIGNED_POINTER: return "release of a pointer into the middle of a block";
    case MAGPOOL_ERR_WRONG_POOL:         return "release to the wrong pool";
    case MAGPOOL_ERR_OVERFLOW:           return "write past the end of a block";
    case MAGPOOL_ERR_USE_AFTER_RELEASE:  return "write to a block after its release";
    case MAGPOOL_ERR_LEAK:               return "blocks still outstanding at destroy";
    case MAGPOOL_ERR_STATE:              return "block handed out while marked acquired (memory corruption?)";
    case MAGPOOL_ERR_REENTRY:            return "call made while the same thread was inside magpool "
                                                "(from a signal handler?); refused";
    case MAGPOOL_ERR_WRONG_THREAD:       return "per-thread handle (magpool_cache_t) used on a thread "
                                                "that did not get it; refused";
    }
    return "error";
}

static bool abort_on_error(void)
{
    static int v = -1; /* benign race: same value in every thread */
    if (v < 0)
        v = diag_env_on("MAGPOOL_ABORT_ON_ERROR");
    return v;
}

/* A re-entrant report (a signal handler interrupted this thread inside
 * magpool) must not wait for a lock the interrupted code may hold: it takes
 * them only if free, else goes without (name "?", the default handler). */
static bool report_lock(pthread_mutex_t *m, bool reentrant)
{
    if (reentrant)
        return pthread_mutex_trylock(m) == 0;
    mutex_lock(m);
    return true;
}

/* e->site from site id `site`, and the " acquired at ..." text into where. */
static void set_site(magpool_error_t *e, uint32_t site, char *where, size_t cap)
{
    struct site *s = site_get(site);
    e->site = s ? s->pc : NULL;
    e->site_depth = s ? s->depth : 0;
    site_format(s, where, cap,
                e->kind == MAGPOOL_ERR_LEAK ? ", e.g. acquired at " : ", acquired at ");
}

/* Count the report against p (if any), call the handler with the finished
 * *e, abort if asked to; errno = EINVAL for the faulty call. */
static void deliver(magpool_t *p, const magpool_error_t *e, bool reentrant)
{
    if (p)
        atomic_fetch_add_relaxed(&p->diag->errors, 1);
    magpool_error_fn fn = default_handler;
    void *ctx = NULL;
    if (report_lock(&handler_lock, reentrant)) {
        fn = handler_fn;
        ctx = handler_ctx;
        pthread_mutex_unlock(&handler_lock);
    }
    fn(e, ctx);
    if (abort_on_error())
        abort();
    errno = EINVAL;
}

/* Fill in the common fields of *e, format its message, call the handler. */
static noinline void report(magpool_t *p, magpool_error_t *e, uint32_t site)
{
    char name[MAGPOOL_NAME_MAX], msg[1536], where[1024], extra[256];
    bool reentrant = e->kind == MAGPOOL_ERR_REENTRY;
    if (report_lock(&p->diag->lock, reentrant)) {
        snprintf(name, sizeof name, "%s", p->diag->name);
        pthread_mutex_unlock(&p->diag->lock);
    } else {
        snprintf(name, sizeof name, "?");
    }
    e->pool = p;
    e->pool_name = name;
    set_site(e, site, where, sizeof where);
    extra[0] = '\0';
    switch (e->kind) {
    case MAGPOOL_ERR_MISALIGNED_POINTER:
        snprintf(extra, sizeof extra, " (offset %zu into a block)", e->offset);
        break;
    case MAGPOOL_ERR_WRONG_POOL:
        snprintf(extra, sizeof extra, " (it belongs to pool \"%s\" (%p))",
                 e->owner_name ? e->owner_name : "", (const void *)e->owner);
        break;
    case MAGPOOL_ERR_OVERFLOW:
    case MAGPOOL_ERR_USE_AFTER_RELEASE:
        snprintf(extra, sizeof extra, " (byte %zu changed)", e->offset);
        break;
    case MAGPOOL_ERR_LEAK:
        snprintf(extra, sizeof extra, " (%zu block(s))", e->count);
        break;
    default:
        break;
    }
    snprintf(msg, sizeof msg, "magpool: %s: pool \"%s\" (%p), block %p (block size %zu)%s%s",
             kind_text(e->kind), name, (void *)p, e->block, p->block_size, extra, where);
    e->message = msg;
    deliver(p, e, reentrant);
}

static void report_simple(magpool_t *p, magpool_error_kind_t kind, const void *block,
                          size_t offset, uint32_t site)
{
    magpool_error_t e = { .kind = kind, .block = block, .offset = offset };
    report(p, &e, site);
}

/* ------------------------------------------------------ block contents */

/* handle.c: a magpool_cache_t used on a thread that did not get it. */
void diag_report_wrong_thread(magpool_t *p, const void *block)
{
    report_simple(p, MAGPOOL_ERR_WRONG_THREAD, block, 0, 0);
}

static inline uint64_t *site_word(magpool_t *p, void *b)
{
    return (uint64_t *)((char *)b + p->slabs.stride - sizeof(uint64_t));
}

/* First byte in [from, to) of b that is not `val`, or `to`. */
static size_t first_not(const char *b, size_t from, size_t to, unsigned char val)
{
    for (size_t i = from; i < to; i++)
        if ((unsigned char)b[i] != val)
            return i;
    return to;
}

/* Idle block's first word: poison, or a free-list link to a block. */
static bool link_word_ok(magpool_t *p, void *b)
{
    void *w;
    memcpy(&w, b, sizeof w);
    uintptr_t pat;
    memset(&pat, FREE_BYTE, sizeof pat);
    if (w == NULL || (uintptr_t)w == pat)
        return true;
    void *blk;
    size_t off;
    int live;
    return slab_lookup(&p->slabs, w, &blk, &off, &live) == 1;
}

bool diag_link_ok(magpool_t *p, void *next)
{
    void *blk;
    size_t off;
    int live;
    return slab_lookup(&p->slabs, next, &blk, &off, &live) == 1 && live == 0;
}

/* ---------------------------------------------------------- passthrough */

static int pt_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct pt_block *)a)->block;
    uintptr_t y = (uintptr_t)((const struct pt_block *)b)->block;
    return (x > y) - (x < y);
}

static void *pt_acquire(magpool_t *p, void *caller)
{
    struct pool_diag *d = p->diag;
    uint32_t site = site_capture(caller);
    struct pt_block *n = malloc(sizeof *n);
    void *b = NULL;
    if (n == NULL || posix_memalign(&b, p->slabs.align, p->block_size) != 0) {
        free(n);
        mutex_lock(&d->lock);
        counter_inc(&p->failed); /* passthrough: only writer, under d->lock */
        pthread_mutex_unlock(&d->lock);
        errno = ENOMEM;
        return NULL;
    }
    n->block = b;
    n->site = site;
    mutex_lock(&d->lock);
    bool full = p->max_blocks && d->pt_live >= p->max_blocks;
    if (full || tsearch(n, &d->pt_root, pt_cmp) == NULL) {
        counter_inc(&p->failed);
        pthread_mutex_unlock(&d->lock);
        free(b);
        free(n);
        errno = ENOMEM;
        return NULL;
    }
    d->pt_live++;
    counter_inc(&d->pt_acquires);
    pthread_mutex_unlock(&d->lock);
    return b;
}

/* Take block's node out of the tree (d->lock held); NULL if not there. */
static struct pt_block *tree_take_locked(struct pool_diag *d, void *block)
{
    struct pt_block key = { .block = block };
    void **hit = tfind(&key, &d->pt_root, pt_cmp);
    struct pt_block *n = hit ? *hit : NULL;
    if (n)
        tdelete(&key, &d->pt_root, pt_cmp);
    return n;
}

static void pt_release(magpool_t *p, void *block)
{
    struct pool_diag *d = p->diag;
    mutex_lock(&d->lock);
    struct pt_block *n = tree_take_locked(d, block);
    if (n) {
        d->pt_live--;
        counter_inc(&d->pt_releases);
    }
    pthread_mutex_unlock(&d->lock);
    if (n) {
        free(n->block);
        free(n);
        return;
    }
    char oname[MAGPOOL_NAME_MAX];
    magpool_t *owner = find_owner(p, block, oname, sizeof oname);
    magpool_error_t e = { .kind = owner ? MAGPOOL_ERR_WRONG_POOL : MAGPOOL_ERR_FOREIGN_POINTER,
                          .block = block, .owner = owner, .owner_name = owner ? oname : NULL };
    report(p, &e, 0);
}

/*
 * Acquire sites of a layered pool's outstanding blocks (object pool, buffer
 * manager class pool; CHECKED only). Their blocks are the layer's (a
 * constructed object, a buffer header), so there is no redzone to keep the
 * site in: it goes into the pool's tree, beside the block, for as long as
 * the block is out. A node that cannot be allocated leaves that block's
 * site unknown, nothing worse. Both calls run while the caller owns the
 * block (after the acquire, before the release), so no two threads ever
 * note the same block at once.
 */
static bool sites_in_tree(const magpool_t *p)
{
    return (p->diag_flags & DIAG_PASSTHROUGH) ||
           (p->diag->layered && (p->diag_flags & DIAG_CHECKED));
}

static void layered_note_acquire(magpool_t *p, void *block, void *caller)
{
    struct pool_diag *d = p->diag;
    struct pt_block *n = malloc(sizeof *n);
    if (n == NULL)
        return;
    n->block = block;
    n->site = site_capture(caller);
    mutex_lock(&d->lock);
    void **hit = tsearch(n, &d->pt_root, pt_cmp);
    bool kept = hit != NULL && *hit == n;
    if (hit != NULL && !kept) /* a stale node (pool state damaged): renew it */
        ((struct pt_block *)*hit)->site = n->site;
    pthread_mutex_unlock(&d->lock);
    if (!kept)
        free(n);
}

static void layered_note_release(magpool_t *p, void *block)
{
    struct pool_diag *d = p->diag;
    mutex_lock(&d->lock);
    struct pt_block *n = tree_take_locked(d, block);
    pthread_mutex_unlock(&d->lock);
    free(n);
}

/* ------------------------------------------------------ acquire/release */

/*
 * Re-entry (a signal handler calling into magpool while its thread was
 * inside magpool: the functions are not async-signal-safe, like malloc).
 * The fast path cannot afford to notice; diagnostic pools count the calls
 * in progress on this thread and refuse a nested one: acquire returns NULL
 * with errno EDEADLK, release leaves the block outstanding (reported as a
 * leak later, never handed out twice). Calls of every diagnostic pool
 * count, so a handler using a CHECKED pool B while its thread was inside a
 * CHECKED pool A is refused too (A may hold locks B needs); a plain pool's
 * fast path counts nothing. A layered pool's hooks (init / fini) may use
 * other pools: they run with the count suspended. A second
 * thread-local variable, touched only on diagnostic paths.
 */
static __thread unsigned diag_depth __attribute__((tls_model("initial-exec")));
void (*magpool_test_diag_inside_hook)(void); /* runs inside a call (tests) */

static bool enter_call(magpool_t *p, const void *block)
{
    if (diag_depth != 0) {
        magpool_error_t e = { .kind = MAGPOOL_ERR_REENTRY, .block = block };
        report(p, &e, 0);
        errno = EDEADLK;
        return false;
    }
    diag_depth++;
    compiler_barrier(); /* a signal handler on this thread sees it at once */
    if (unlikely(magpool_test_diag_inside_hook != NULL))
        magpool_test_diag_inside_hook();
    return true;
}

static void leave_call(void)
{
    compiler_barrier();
    diag_depth--;
}

/* A layered pool's hooks (an ObjectPool's init / fini) run inside a call of
 * the pool and may use other pools: that is nesting by the library's own
 * design, not re-entry from a signal handler. slab.c brackets every hook
 * call with these. */
unsigned diag_hooks_enter(void)
{
    unsigned d = diag_depth;
    diag_depth = 0;
    compiler_barrier();
    return d;
}

void diag_hooks_leave(unsigned depth)
{
    compiler_barrier();
    diag_depth = depth;
}

static void *diag_acquire_in(magpool_t *p, void *caller);
static void diag_release_in(magpool_t *p, void *block, void *caller);

void *diag_acquire(magpool_t *p, void *caller)
{
    if (!enter_call(p, NULL))
        return NULL;
    void *b = diag_acquire_in(p, caller);
    leave_call(); /* keeps errno */
    return b;
}

void diag_release(magpool_t *p, void *block, void *caller)
{
    if (!enter_call(p, block))
        return;
    diag_release_in(p, block, caller);
    leave_call();
}

static void *diag_acquire_in(magpool_t *p, void *caller)
{
    unsigned f = p->diag_flags;
    if (f & DIAG_PASSTHROUGH)
        return pt_acquire(p, caller);
    void *bad = NULL;
    void *b = p->mode == MODE_MUTEX
              ? mutex_pool_take(p, (f & DIAG_CHECKED) ? &bad : NULL)
              : cache_acquire_lockfree(p);
    if (b == NULL)
        return NULL;
    int saved = errno;
    size_t stride = p->slabs.stride, bs = p->block_size;
    size_t site_off = stride - sizeof(uint64_t);
    if (f & DIAG_REDZONE) {
        asan_unpoison(b, stride);
        VALGRIND_MAKE_MEM_DEFINED(b, stride);
    }
    if ((f & DIAG_CHECKED) && slab_mark_acquired(&p->slabs, b) != 0)
        report_simple(p, MAGPOOL_ERR_STATE, b, 0, 0);
    if (p->diag->layered && (f & DIAG_CHECKED))
        layered_note_acquire(p, b, caller);
    if (f & DIAG_REDZONE) {
        uint32_t last = (uint32_t)*site_word(p, b);
        size_t at = first_not(b, LINK_BYTES, site_off, FREE_BYTE);
        if (bad == b)
            at = 0; /* the mutex free list found its link damaged */
        else if (at == site_off && !link_word_ok(p, b))
            at = 0;
        if (at != site_off)
            report_simple(p, MAGPOOL_ERR_USE_AFTER_RELEASE, b, at, last);
        *site_word(p, b) = site_capture(caller);
        memset((char *)b + bs, CANARY_BYTE, site_off - bs);
        asan_poison((char *)b + bs, site_off - bs);
    } else if (f & DIAG_ASAN) {
        asan_unpoison(b, bs);
    }
    if (f & DIAG_VALGRIND)
        VALGRIND_MEMPOOL_ALLOC(p, b, bs);
    errno = saved;
    return b;
}

static void diag_release_in(magpool_t *p, void *block, void *caller)
{
    (void)caller;
    unsigned f = p->diag_flags;
    if (f & DIAG_PASSTHROUGH) {
        pt_release(p, block);
        return;
    }
    size_t stride = p->slabs.stride, bs = p->block_size;
    size_t site_off = stride - sizeof(uint64_t);
    if (f & DIAG_CHECKED) {
        void *blk;
        size_t off;
        int live;
        int k = slab_lookup(&p->slabs, block, &blk, &off, &live);
        if (k < 0) {
            char oname[MAGPOOL_NAME_MAX];
            magpool_t *owner = find_owner(p, block, oname, sizeof oname);
            magpool_error_t e = { .kind = owner ? MAGPOOL_ERR_WRONG_POOL
                                                : MAGPOOL_ERR_FOREIGN_POINTER,
                                  .block = block, .owner = owner,
                                  .owner_name = owner ? oname : NULL };
            report(p, &e, 0);
            return;
        }
        uint32_t site = 0;
        if (f & DIAG_REDZONE) /* the site word is never poisoned */
            site = (uint32_t)*site_word(p, blk);
        if (k == 0) {
            report_simple(p, MAGPOOL_ERR_MISALIGNED_POINTER, block, off, site);
            return;
        }
        if (slab_mark_released(&p->slabs, block) != 0) {
            report_simple(p, MAGPOOL_ERR_DOUBLE_RELEASE, block, 0, site);
            return;
        }
        if (p->diag->layered)
            layered_note_release(p, block);
        if (f & DIAG_REDZONE) {
            asan_unpoison((char *)block + bs, site_off - bs);
            size_t at = first_not(block, bs, site_off, CANARY_BYTE);
            if (at != site_off) /* reported; the release itself goes ahead */
                report_simple(p, MAGPOOL_ERR_OVERFLOW, block, at, site);
            memset(block, FREE_BYTE, site_off);
        }
    }
    if (f & DIAG_VALGRIND) {
        VALGRIND_MEMPOOL_FREE(p, block);
        VALGRIND_MAKE_MEM_DEFINED(block, LINK_BYTES); /* the pool's link word */
    }
    if (f & DIAG_ASAN)
        asan_poison((char *)block + LINK_BYTES,
                    ((f & DIAG_REDZONE) ? site_off : stride) - LINK_BYTES);
    if (p->mode == MODE_MUTEX)
        mutex_pool_release(p, block);
    else
        cache_release_lockfree(p, block);
}

/* -------------------------------------------------------- stats, leaks */

void diag_stats(magpool_t *p, magpool_stats_t *out)
{
    struct pool_diag *d = p->diag;
    out->errors = atomic_load_relaxed(&d->errors);
    if (p->diag_flags & DIAG_PASSTHROUGH) {
        mutex_lock(&d->lock);
        out->acquires += atomic_load_relaxed(&d->pt_acquires);
        out->releases += atomic_load_relaxed(&d->pt_releases);
        pthread_mutex_unlock(&d->lock);
    }
}

struct site_count {
    uint32_t site;
    size_t n;
    const void *block;  /* one of them */
};

struct site_tally {
    struct site_count *v;
    size_t n, cap;
    bool oom;
};

static void tally_add(struct site_tally *t, uint32_t site, const void *block)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].site == site) {
            t->v[i].n++;
            return;
        }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? 2 * t->cap : 16;
        struct site_count *nv = realloc(t->v, ncap * sizeof *nv);
        if (nv == NULL) {
            t->oom = true;
            return;
        }
        t->v = nv;
        t->cap = ncap;
    }
    t->v[t->n++] = (struct site_count){ site, 1, block };
}

static void pt_walk(const void *node, VISIT which, void *closure)
{
    if (which == postorder || which == leaf) {
        const struct pt_block *n = *(const struct pt_block *const *)node;
        tally_add(closure, n->site, n->block);
    }
}

static int cmp_count(const void *a, const void *b)
{
    size_t x = ((const struct site_count *)a)->n, y = ((const struct site_count *)b)->n;
    return (x < y) - (x > y);
}

/* Outstanding blocks grouped by acquire site, most first (empty without
 * sites). Returns false when sites are not tracked. */
static bool tally_sites(magpool_t *p, struct site_tally *t)
{
    unsigned f = p->diag_flags;
    if (sites_in_tree(p)) {
        mutex_lock(&p->diag->lock);
        twalk_r(p->diag->pt_root, pt_walk, t);
        pthread_mutex_unlock(&p->diag->lock);
    } else if (f & DIAG_REDZONE) {
        struct slab_set *s = &p->slabs;
        pthread_rwlock_rdlock(&s->rw);
        for (size_t k = 0; k < s->n; k++) {
            struct slab *sl = &s->v[k];
            for (size_t i = 0; i < sl->nblocks; i++) {
                /* acquire: pairs with slab_mark()'s acq_rel RMW */
                if (!((atomic_load_acquire(&sl->live[i / 64]) >> (i % 64)) & 1))
                    continue;
                char *b = sl->first + i * s->stride;
                tally_add(t, (uint32_t)*site_word(p, b), b);
            }
        }
        pthread_rwlock_unlock(&s->rw);
    } else {
        return false;
    }
    if (t->n > 1)
        qsort(t->v, t->n, sizeof *t->v, cmp_count);
    return true;
}

/* One line per group of t (sorted), "magpool: <indent>N <unit>(s) acquired
 * at <stack>"; what `outstanding` counts beyond the groups (a node that
 * could not be allocated, a block acquired meanwhile) as one more line. */
static void tally_print(const struct site_tally *t, size_t outstanding, FILE *out,
                        const char *indent, const char *unit)
{
    size_t shown = 0;
    for (size_t i = 0; i < t->n; i++) {
        char where[1024];
        site_format(site_get(t->v[i].site), where, sizeof where, "");
        fprintf(out, "magpool: %s%zu %s(s) acquired at %s\n", indent, t->v[i].n, unit,
                where[0] ? where : "(unknown site)");
        shown += t->v[i].n;
    }
    if (shown < outstanding)
        fprintf(out, "magpool: %s%zu %s(s) acquired at (unknown site)\n", indent,
                outstanding - shown, unit);
}

void diag_print_sites(magpool_t *p, size_t outstanding, FILE *out, const char *indent,
                      const char *unit)
{
    struct site_tally t = { 0 };
    if (outstanding && tally_sites(p, &t))
        tally_print(&t, outstanding, out, indent, unit);
    free(t.v);
}

void diag_print_site_ids(const uint32_t *ids, size_t n, FILE *out, const char *indent,
                         const char *unit)
{
    struct site_tally t = { 0 };
    for (size_t i = 0; i < n; i++)
        tally_add(&t, ids[i], NULL);
    if (t.n > 1)
        qsort(t.v, t.n, sizeof *t.v, cmp_count);
    tally_print(&t, n, out, indent, unit);
    free(t.v);
}

size_t diag_report_leaks(magpool_t *p, FILE *out)
{
    magpool_stats_t s;
    if (magpool_get_stats(p, &s) != 0)
        return 0;
    if (out == NULL)
        out = stderr;
    char name[MAGPOOL_NAME_MAX];
    diag_pool_name(p, name, sizeof name);
    fprintf(out, "magpool: pool \"%s\" (%p): %zu block(s) of %zu bytes outstanding "
            "(%llu acquired, %llu released)\n",
            name, (void *)p, s.blocks_outstanding, p->block_size,
            (unsigned long long)s.acquires, (unsigned long long)s.releases);
    diag_print_sites(p, s.blocks_outstanding, out, "  ", "block");
    return s.blocks_outstanding;
}

uint32_t diag_top_site(magpool_t *p, const void **block)
{
    struct site_tally t = { 0 };
    tally_sites(p, &t);
    *block = t.n ? t.v[0].block : NULL;
    uint32_t site = t.n ? t.v[0].site : 0;
    free(t.v);
    return site;
}

void diag_destroy_report(magpool_t *p)
{
    if (p->diag->layered)
        return; /* object pool / buffer manager: the layer reports (below) */
    magpool_stats_t s;
    if (magpool_get_stats(p, &s) != 0 || s.blocks_outstanding == 0)
        return;
    magpool_error_t e = { .kind = MAGPOOL_ERR_LEAK, .count = s.blocks_outstanding };
    uint32_t site = diag_top_site(p, &e.block);
    int saved = errno;
    report(p, &e, site);
    errno = saved;
}

void diag_leak_report(magpool_t *p, size_t count, const void *block, uint32_t site,
                      const char *head)
{
    char name[MAGPOOL_NAME_MAX] = "", where[1024], msg[1536];
    if (p)
        diag_pool_name(p, name, sizeof name);
    magpool_error_t e = { .kind = MAGPOOL_ERR_LEAK, .pool = p, .pool_name = name,
                          .block = block, .count = count };
    set_site(&e, site, where, sizeof where);
    snprintf(msg, sizeof msg, "%s%s", head, where);
    e.message = msg;
    int saved = errno;
    deliver(p, &e, false);
    errno = saved;
}

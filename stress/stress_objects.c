/* SPDX-License-Identifier: MIT */
/*
 * stress_objects: many threads exchange ObjectPool objects and BufferManager
 * buffers across threads while one thread clears/trims concurrently.
 * Plain C (runs under TSan, where Criterion cannot), own tiny checks.
 *
 *   stress_objects [--threads N] [--ops N] [--cap N] [--seed N]
 *
 * Checks: a handed-out object is constructed (init ran) and clean (reset ran),
 * never held by two threads (ownership stamp), init and fini balance after
 * destroy; a buffer is 64-byte aligned, keeps its contents while held (pattern
 * over its whole size), deliberate foreign/misaligned releases are refused,
 * the manager's counters add up at quiescence and the idle count respects the
 * cap. Exit status 0 = every check held.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magpool.h>

static atomic_ulong failures;
#define CHECK(c, ...)                                                          \
    do {                                                                       \
        if (!(c)) {                                                            \
            if (atomic_fetch_add(&failures, 1) < 20) {                         \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c); \
                fprintf(stderr, __VA_ARGS__);                                  \
                fputc('\n', stderr);                                           \
            }                                                                  \
        }                                                                      \
    } while (0)

#define OBJ_MAGIC 0x0b1ec7ed
struct obj {
    uint32_t magic;          /* set by init, cleared by fini             */
    uint32_t clean;          /* 1 after init/reset, 0 while used         */
    _Atomic uint64_t owner;  /* stamp of the holder, 0 when idle         */
    uint64_t data[12];
};

static atomic_long n_init, n_fini, n_reset;

static int o_init(void *p, void *ctx)
{
    (void)ctx;
    struct obj *o = p;
    o->magic = OBJ_MAGIC;
    o->clean = 1;
    atomic_init(&o->owner, 0);
    atomic_fetch_add_explicit(&n_init, 1, memory_order_relaxed);
    return 0;
}
static void o_reset(void *p, void *ctx)
{
    (void)ctx;
    struct obj *o = p;
    memset(o->data, 0, sizeof o->data);
    o->clean = 1;
    atomic_fetch_add_explicit(&n_reset, 1, memory_order_relaxed);
}
static void o_fini(void *p, void *ctx)
{
    (void)ctx;
    struct obj *o = p;
    CHECK(o->magic == OBJ_MAGIC, "fini on an unconstructed object %p", p);
    o->magic = 0;
    atomic_fetch_add_explicit(&n_fini, 1, memory_order_relaxed);
}

/* A mailbox ring per thread: others post items, the owner consumes them. */
struct item { void *p; size_t bytes; uint64_t stamp; int is_buf; };
#define RING 64
struct mbox {
    pthread_mutex_t lock;
    struct item v[RING];
    unsigned head, n;
};

static int nthreads = 8;
static long nops = 200000;
static size_t cap = 32;
static magpool_objpool_t *op;
static magpool_bufmgr_t *bm;
static struct mbox *boxes;
static atomic_int running;
static atomic_ulong bad_expected;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

/* Head and tail stamps and the bytes between them; above 4 MiB (the
 * buffers beyond the largest class) only the middle byte of those, which is
 * all verify_and_release reads: writing them whole would cost seconds. */
static void fill(unsigned char *p, size_t bytes, uint64_t stamp)
{
    memcpy(p, &stamp, 8 < bytes ? 8 : bytes);
    if (bytes > 16) {
        if (bytes <= ((size_t)4 << 20))
            memset(p + 8, (int)(stamp & 0xff), bytes - 16);
        else
            p[bytes / 2] = (unsigned char)(stamp & 0xff);
        memcpy(p + bytes - 8, &stamp, 8);
    }
}

static void verify_and_release(const struct item *it)
{
    if (it->is_buf) {
        unsigned char *p = it->p;
        uint64_t a;
        memcpy(&a, p, 8 < it->bytes ? 8 : it->bytes);
        if (it->bytes >= 8)
            CHECK(a == it->stamp, "buffer %p head %" PRIx64 " != %" PRIx64, (void *)p, a, it->stamp);
        if (it->bytes > 16) {
            uint64_t b;
            memcpy(&b, p + it->bytes - 8, 8);
            CHECK(b == it->stamp, "buffer %p tail damaged", (void *)p);
            CHECK(p[it->bytes / 2] == (unsigned char)(it->stamp & 0xff), "buffer %p middle damaged", (void *)p);
        }
        CHECK(magpool_bufmgr_release_checked(bm, p) == 0, "own buffer %p refused", (void *)p);
    } else {
        struct obj *o = it->p;
        uint64_t s = it->stamp;
        CHECK(atomic_compare_exchange_strong(&o->owner, &s, 0), "object %p held by two", (void *)o);
        CHECK(o->data[5] == it->stamp, "object %p data changed", (void *)o);
        magpool_objpool_release(op, o);
    }
}

static void post_or_release(int self, uint64_t *seed, struct item it)
{
    int to = (int)(rnd(seed) % (uint64_t)nthreads);
    struct mbox *b = &boxes[to];
    pthread_mutex_lock(&b->lock);
    if (to != self && b->n < RING) {
        b->v[(b->head + b->n++) % RING] = it;
        pthread_mutex_unlock(&b->lock);
        return;
    }
    pthread_mutex_unlock(&b->lock);
    verify_and_release(&it);
}

static void drain(int self)
{
    struct mbox *b = &boxes[self];
    for (;;) {
        pthread_mutex_lock(&b->lock);
        if (b->n == 0) {
            pthread_mutex_unlock(&b->lock);
            return;
        }
        struct item it = b->v[b->head];
        b->head = (b->head + 1) % RING;
        b->n--;
        pthread_mutex_unlock(&b->lock);
        verify_and_release(&it);
    }
}

static const size_t esz[] = {1, 1, 2, 4, 8, 4, 8};

static void *worker(void *arg)
{
    int self = (int)(intptr_t)arg;
    uint64_t seed = 0x9E3779B97F4A7C15ull * (uint64_t)(self + 1);
    for (long i = 0; i < nops; i++) {
        uint64_t stamp = ((uint64_t)(self + 1) << 48) | (uint64_t)i | 1;
        if (rnd(&seed) & 1) {
            struct obj *o = magpool_objpool_acquire(op);
            CHECK(o != NULL, "objpool acquire: errno %d", errno);
            if (!o)
                continue;
            CHECK(o->magic == OBJ_MAGIC && o->clean == 1, "object %p not constructed/clean", (void *)o);
            uint64_t zero = 0;
            CHECK(atomic_compare_exchange_strong(&o->owner, &zero, stamp), "object %p handed out twice", (void *)o);
            o->clean = 0;
            o->data[5] = stamp;
            post_or_release(self, &seed, (struct item){ o, 0, stamp, 0 });
        } else {
            uint64_t r = rnd(&seed);
            magpool_dtype_t dt = (magpool_dtype_t)(r % 7);
            /* log-uniform sizes 1 B .. 2 MiB, a few above the largest class
             * (mapped directly) */
            size_t bytes = (size_t)1 << ((r >> 8) % 22);
            bytes += (r >> 16) % bytes;
            size_t count = (bytes + esz[dt] - 1) / esz[dt];
            if ((r >> 40) % 64 != 0 && bytes > 65536)
                count = 65536 / esz[dt]; /* keep large ones rare */
            if ((r >> 46) % 512 == 0) /* and a few above the largest class */
                count = (MAGPOOL_BUFMGR_MAX_CLASS + 1 + (r >> 55)) / esz[dt] + 1;
            bytes = count * esz[dt];
            unsigned char *p = magpool_bufmgr_get(bm, count, dt);
            CHECK(p != NULL, "bufmgr get %zu: errno %d", bytes, errno);
            if (!p)
                continue;
            CHECK(((uintptr_t)p & 63) == 0, "buffer %p misaligned", (void *)p);
            fill(p, bytes, stamp);
            post_or_release(self, &seed, (struct item){ p, bytes, stamp, 1 });
        }
        if ((i & 15) == 0)
            drain(self);
        if (self == 0 && (i % 20000) == 0) {
            /* concurrent maintenance and deliberate misuse */
            magpool_objpool_trim(op, 0.0);
            magpool_bufmgr_clear_unused(bm, 0.0);
            char *heap = malloc(256);
            CHECK(magpool_bufmgr_release_checked(bm, heap) == -1 && errno == EINVAL, "foreign accepted");
            CHECK(magpool_bufmgr_release_checked(bm, heap + 1) == -1, "misaligned accepted");
            atomic_fetch_add(&bad_expected, 2);
            free(heap);
        }
    }
    atomic_fetch_sub(&running, 1);
    while (atomic_load(&running) > 0) /* keep serving posts until all stop */
        drain(self);
    drain(self);
    return NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            nthreads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ops"))
            nops = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--cap"))
            cap = (size_t)atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--ops N] [--cap N]\n", argv[0]);
            return 2;
        }
    }
    if (nthreads < 1)
        nthreads = 1;
    magpool_objpool_config_t cfg = {
        .obj_size = sizeof(struct obj), .initial_objects = 64, .max_objects = 0,
        .init = o_init, .reset = o_reset, .fini = o_fini,
    };
    op = magpool_objpool_create(&cfg);
    bm = magpool_bufmgr_create(cap);
    if (!op || !bm) {
        perror("create");
        return 2;
    }
    boxes = calloc((size_t)nthreads, sizeof *boxes);
    for (int i = 0; i < nthreads; i++)
        pthread_mutex_init(&boxes[i].lock, NULL);
    atomic_store(&running, nthreads);
    pthread_t *t = calloc((size_t)nthreads, sizeof *t);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);

    magpool_objpool_stats_t os;
    magpool_objpool_get_stats(op, &os);
    CHECK(os.blocks_outstanding == 0, "objects outstanding at quiescence: %zu", os.blocks_outstanding);
    CHECK(os.acquires == os.releases, "object acquires %" PRIu64 " != releases %" PRIu64,
          os.acquires, os.releases);
    CHECK((long)os.releases == atomic_load(&n_reset), "reset once per release");
    magpool_bufmgr_stats_t bs;
    magpool_bufmgr_get_stats(bm, &bs);
    CHECK(bs.outstanding == 0, "buffers outstanding: %zu", bs.outstanding);
    CHECK(bs.gets == bs.releases, "gets %" PRIu64 " != releases %" PRIu64, bs.gets, bs.releases);
    CHECK(bs.bad_releases == atomic_load(&bad_expected), "bad releases %" PRIu64 " != %lu",
          bs.bad_releases, atomic_load(&bad_expected));
    CHECK(cap == 0 || bs.idle_buffers <= cap, "idle %zu above cap %zu", bs.idle_buffers, cap);
    CHECK(bs.failed == 0, "failed gets: %" PRIu64, bs.failed);
    magpool_objpool_destroy(op);
    magpool_bufmgr_destroy(bm);
    CHECK(atomic_load(&n_init) == atomic_load(&n_fini), "init %ld != fini %ld",
          atomic_load(&n_init), atomic_load(&n_fini));
    printf("stress_objects: %d threads x %ld ops: %" PRIu64 " objects, %" PRIu64
           " buffers (%" PRIu64 " large), %lu failures\n", nthreads, nops, os.acquires, bs.gets,
           bs.large_gets, atomic_load(&failures));
    free(t);
    free(boxes);
    return atomic_load(&failures) ? 1 : 0;
}

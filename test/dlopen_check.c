/* SPDX-License-Identifier: MIT */
/*
 * dlopen_check: load the shared library at run time (argv[1], or $MAGPOOL_SO),
 * resolve the API with dlsym, run 4 threads on one pool, check the stats,
 * destroy, dlclose. Also exercises a thread that used a pool and exits only
 * after the pool is destroyed and the library dlclose()d (the TLS destructor
 * must not run unmapped code or touch freed memory).
 * Plain C (no Criterion), so it also runs under ThreadSanitizer.
 * Exit 0 on success, 1 on failure with a message on stderr.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <magpool.h>

typedef magpool_config_t (*cfg_default_fn)(size_t);
typedef magpool_t *(*create_fn)(const magpool_config_t *);
typedef void *(*acquire_fn)(magpool_t *);
typedef void (*release_fn)(magpool_t *, void *);
typedef void (*destroy_fn)(magpool_t *);
typedef int (*stats_fn)(magpool_t *, magpool_stats_t *);
typedef const char *(*version_fn)(void);

static struct {
    cfg_default_fn config_default;
    create_fn create;
    acquire_fn acquire;
    release_fn release;
    destroy_fn destroy;
    stats_fn get_stats;
    version_fn version;
} api;

static int failures;
#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "dlopen_check: FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

enum { THREADS = 4, ITERS = 50000, BATCH = 16 };

struct worker {
    magpool_t *pool;
    unsigned id;
    unsigned long acq, rel, bad;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    void *b[BATCH];
    for (int i = 0; i < ITERS / BATCH; i++) {
        for (int k = 0; k < BATCH; k++) {
            unsigned *x = api.acquire(w->pool);
            b[k] = x;
            if (!x) {
                w->bad++;
                continue;
            }
            w->acq++;
            x[0] = w->id;
            x[1] = (unsigned)k;
        }
        for (int k = 0; k < BATCH; k++) {
            unsigned *x = b[k];
            if (!x)
                continue;
            if (x[0] != w->id || x[1] != (unsigned)k)
                w->bad++;
            api.release(w->pool, x);
            w->rel++;
        }
    }
    return NULL;
}

/* A thread that uses a pool, then waits until the library is dlclose()d. */
static pthread_mutex_t late_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t late_cv = PTHREAD_COND_INITIALIZER;
static int late_stage;

static void *late_main(void *arg)
{
    magpool_t *p = arg;
    void *b[40];
    for (int i = 0; i < 40; i++)
        b[i] = api.acquire(p);
    for (int i = 0; i < 40; i++)
        if (b[i])
            api.release(p, b[i]);
    pthread_mutex_lock(&late_mu);
    late_stage = 1;
    pthread_cond_broadcast(&late_cv);
    while (late_stage < 2)
        pthread_cond_wait(&late_cv, &late_mu);
    pthread_mutex_unlock(&late_mu);
    return NULL; /* thread exit after dlclose: TLS destructors run now */
}

#define LOAD(field, name)                                                      \
    do {                                                                       \
        *(void **)&api.field = dlsym(h, name);                                 \
        if (!api.field) {                                                      \
            fprintf(stderr, "dlopen_check: dlsym(%s): %s\n", name, dlerror()); \
            return 1;                                                          \
        }                                                                      \
    } while (0)

static int run_backend(magpool_backend_t backend, const char *bname)
{
    magpool_config_t c = api.config_default(64);
    c.backend = backend;
    c.magazine_size = 8;
    magpool_t *p = api.create(&c);
    CHECK(p != NULL, "[%s] create failed: %s", bname, strerror(errno));
    if (!p)
        return 1;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.pool = p, .id = (unsigned)i + 1};
        if (pthread_create(&t[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    unsigned long acq = 0, rel = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].bad == 0, "[%s] thread %d: %lu bad blocks/failed acquires", bname, i,
              w[i].bad);
        acq += w[i].acq;
        rel += w[i].rel;
    }
    magpool_stats_t s;
    CHECK(api.get_stats(p, &s) == 0, "[%s] get_stats", bname);
    CHECK(s.acquires == acq, "[%s] acquires %llu, want %lu", bname,
          (unsigned long long)s.acquires, acq);
    CHECK(s.releases == rel, "[%s] releases %llu, want %lu", bname,
          (unsigned long long)s.releases, rel);
    CHECK(s.blocks_outstanding == 0, "[%s] outstanding %zu", bname, s.blocks_outstanding);
    CHECK(s.misses <= s.grows, "[%s] misses > grows", bname);
    CHECK(s.acquires - s.releases == s.blocks_outstanding, "[%s] stats do not add up", bname);
    CHECK(s.threads == 0, "[%s] threads %llu after all workers exited", bname,
          (unsigned long long)s.threads);
    api.destroy(p);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("MAGPOOL_SO");
    if (!path) {
        fprintf(stderr, "usage: dlopen_check /path/to/libmagpool.so\n");
        return 2;
    }
    for (int round = 0; round < 2; round++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen_check: dlopen(%s): %s\n", path, dlerror());
            return 1;
        }
        LOAD(config_default, "magpool_config_default");
        LOAD(create, "magpool_create");
        LOAD(acquire, "magpool_acquire");
        LOAD(release, "magpool_release");
        LOAD(destroy, "magpool_destroy");
        LOAD(get_stats, "magpool_get_stats");
        LOAD(version, "magpool_version");
        CHECK(strcmp(api.version(), MAGPOOL_VERSION_STRING) == 0, "version %s", api.version());

        if (run_backend(MAGPOOL_LOCKFREE, "LOCKFREE") || run_backend(MAGPOOL_MUTEX, "MUTEX"))
            return 1;

        /* a live thread that used a pool survives destroy + dlclose, then exits */
        magpool_config_t c = api.config_default(32);
        magpool_t *p = api.create(&c);
        CHECK(p != NULL, "create for late thread");
        if (!p)
            return 1;
        pthread_t lt;
        late_stage = 0;
        pthread_create(&lt, NULL, late_main, p);
        pthread_mutex_lock(&late_mu);
        while (late_stage < 1)
            pthread_cond_wait(&late_cv, &late_mu);
        pthread_mutex_unlock(&late_mu);
        api.destroy(p);

        CHECK(dlclose(h) == 0, "dlclose: %s", dlerror());
        memset(&api, 0, sizeof api);

        pthread_mutex_lock(&late_mu);
        late_stage = 2;
        pthread_cond_broadcast(&late_cv);
        pthread_mutex_unlock(&late_mu);
        pthread_join(lt, NULL);
    }
    if (failures) {
        fprintf(stderr, "dlopen_check: %d failure(s)\n", failures);
        return 1;
    }
    printf("dlopen_check: OK\n");
    return 0;
}

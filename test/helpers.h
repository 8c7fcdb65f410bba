/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the magpool Criterion unit tests.
 *
 * BACKEND_TEST(suite, name) declares a Criterion parameterized test that runs
 * once per backend (MAGPOOL_LOCKFREE, MAGPOOL_MUTEX). Inside the body the
 * variable `backend` holds the backend under test and BN is its printable
 * name; every assertion message should include BN so a failure names the
 * backend.
 */
#ifndef MAGPOOL_TEST_HELPERS_H
#define MAGPOOL_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <magpool.h>

static magpool_backend_t mp_backends_[] __attribute__((unused)) = {MAGPOOL_LOCKFREE, MAGPOOL_MUTEX};

static inline const char *mp_backend_name(magpool_backend_t b)
{
    switch (b) {
    case MAGPOOL_LOCKFREE: return "LOCKFREE";
    case MAGPOOL_MUTEX: return "MUTEX";
    }
    return "?";
}

#define BN mp_backend_name(backend)

#define BACKEND_TEST(Suite, Name, ...)                                         \
    static void Suite##_##Name##_body(magpool_backend_t backend);              \
    ParameterizedTestParameters(Suite, Name)                                   \
    {                                                                          \
        return cr_make_param_array(magpool_backend_t, mp_backends_,            \
                                   sizeof mp_backends_ / sizeof mp_backends_[0]); \
    }                                                                          \
    ParameterizedTest(magpool_backend_t *mp_param_, Suite, Name, ##__VA_ARGS__) \
    {                                                                          \
        Suite##_##Name##_body(*mp_param_);                                     \
    }                                                                          \
    static void Suite##_##Name##_body(magpool_backend_t backend)

/* A default configuration on the given backend. */
static inline magpool_config_t mp_cfg(magpool_backend_t backend, size_t block_size)
{
    magpool_config_t c = magpool_config_default(block_size);
    c.backend = backend;
    return c;
}

/* Create or fail the test, naming the backend. */
static inline magpool_t *mp_create_ok(const magpool_config_t *c)
{
    errno = 0;
    magpool_t *p = magpool_create(c);
    cr_assert_not_null(p, "[%s] magpool_create(block_size=%zu, align=%zu, initial=%zu, "
                          "max=%zu, grow=%g, mag=%u, flags=%#x) failed: errno %d (%s)",
                       mp_backend_name(c->backend), c->block_size, c->align,
                       c->initial_blocks, c->max_blocks, c->grow_factor,
                       c->magazine_size, c->flags, errno, strerror(errno));
    return p;
}

static inline magpool_stats_t mp_stats(magpool_t *p, magpool_backend_t backend)
{
    magpool_stats_t s;
    memset(&s, 0xa5, sizeof s); /* garbage, so a field left unset shows */
    int rc = magpool_get_stats(p, &s);
    cr_assert_eq(rc, 0, "[%s] magpool_get_stats returned %d (errno %d)", BN, rc, errno);
    return s;
}

/* The invariants every quiescent snapshot must satisfy. */
static inline void mp_assert_quiescent_invariants(const magpool_stats_t *s,
                                                  size_t block_size,
                                                  magpool_backend_t backend)
{
    cr_assert_eq(s->acquires - s->releases, (uint64_t)s->blocks_outstanding,
                 "[%s] acquires %llu - releases %llu != blocks_outstanding %zu", BN,
                 (unsigned long long)s->acquires, (unsigned long long)s->releases,
                 s->blocks_outstanding);
    /* A miss is an acquire that had to grow the pool: never more misses
     * than growth events (hits is derived, hits + misses == acquires holds
     * by construction and is not worth a check). */
    cr_assert_leq(s->misses, s->grows, "[%s] misses %llu > grows %llu", BN,
                  (unsigned long long)s->misses, (unsigned long long)s->grows);
    cr_assert(s->hit_rate >= 0.0 && s->hit_rate <= 1.0, "[%s] hit_rate %g outside [0,1]",
              BN, s->hit_rate);
    if (s->acquires == 0)
        cr_assert(s->hit_rate == 0.0, "[%s] hit_rate %g with no acquires", BN, s->hit_rate);
    else {
        double want = (double)s->hits / (double)s->acquires;
        cr_assert(s->hit_rate > want - 1e-9 && s->hit_rate < want + 1e-9,
                  "[%s] hit_rate %g != hits/acquires %g", BN, s->hit_rate, want);
    }
    cr_assert_geq(s->blocks_total, s->blocks_outstanding,
                  "[%s] blocks_total %zu < blocks_outstanding %zu", BN, s->blocks_total,
                  s->blocks_outstanding);
    cr_assert_geq(s->bytes_reserved, s->blocks_total * block_size,
                  "[%s] bytes_reserved %zu < blocks_total %zu * block_size %zu", BN,
                  s->bytes_reserved, s->blocks_total, block_size);
}

/* Fill / check a block with a pattern derived from a tag. */
static inline void mp_fill(void *blk, size_t n, uint32_t tag)
{
    unsigned char *b = blk;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(tag * 31u + (uint32_t)i * 7u + (tag >> 8));
}

static inline int mp_check(const void *blk, size_t n, uint32_t tag)
{
    const unsigned char *b = blk;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(tag * 31u + (uint32_t)i * 7u + (tag >> 8)))
            return 0;
    return 1;
}

static int mp_cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

/* Pointers distinct and non-overlapping over block_size bytes. Sorts a copy. */
static inline void mp_assert_disjoint(void **ptrs, size_t n, size_t block_size,
                                      magpool_backend_t backend)
{
    void **c = malloc(n * sizeof *c);
    cr_assert_not_null(c);
    memcpy(c, ptrs, n * sizeof *c);
    qsort(c, n, sizeof *c, mp_cmp_ptr);
    for (size_t i = 1; i < n; i++)
        cr_assert_geq((uintptr_t)c[i] - (uintptr_t)c[i - 1], block_size,
                      "[%s] blocks %p and %p overlap (block_size %zu)", BN, c[i - 1], c[i],
                      block_size);
    free(c);
}

/*
 * Capture what a call writes to file descriptor 2 into buf (NUL-terminated).
 * Usage: int fd = mp_stderr_begin(); ...; mp_stderr_end(fd, buf, sizeof buf);
 */
typedef struct {
    int saved;
    FILE *tmp;
} mp_capture_t;

static inline mp_capture_t mp_stderr_begin(void)
{
    mp_capture_t c;
    fflush(stderr);
    c.tmp = tmpfile();
    cr_assert_not_null(c.tmp, "tmpfile");
    c.saved = dup(2);
    cr_assert_geq(c.saved, 0);
    cr_assert_geq(dup2(fileno(c.tmp), 2), 0);
    return c;
}

static inline size_t mp_stderr_end(mp_capture_t c, char *buf, size_t cap)
{
    fflush(stderr);
    dup2(c.saved, 2);
    close(c.saved);
    rewind(c.tmp);
    size_t n = fread(buf, 1, cap - 1, c.tmp);
    buf[n] = '\0';
    fclose(c.tmp);
    return n;
}

static inline size_t mp_count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

/* A one-shot gate: threads wait until the main thread opens it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} mp_gate_t;

static inline void mp_gate_init(mp_gate_t *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
}
static inline void mp_gate_wait(mp_gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}
static inline void mp_gate_open(mp_gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}
static inline void mp_gate_destroy(mp_gate_t *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The contract table of magpool.h ("One set of rules"), walked row by row:
 * every public function, fed each kind of bad input the table names, must
 * give the table's answer — the result and errno (or errno untouched).
 * A function added to the header without rows here is a review finding.
 */
#include <math.h>
#include <stdint.h>

#include "helpers.h"

#define KEEP (-1)          /* errno must be left as it was */
#define SENTINEL 4242      /* what errno holds before each call */

enum want { W_ZERO, W_NONZERO, W_MINUS1 };

static magpool_t *P;
static magpool_objpool_t *OP;
static magpool_bufmgr_t *BM;
static magpool_stats_t S;
static magpool_bufmgr_stats_t BS;
static char foreign[64]; /* a pointer that is no handle's block */
static void *V[4];        /* a bulk array */

static void bm_quiet(void *ctx, const char *what, void *buf) { (void)ctx, (void)what, (void)buf; }

static void setup(void)
{
    P = magpool_create(&(magpool_config_t){ .block_size = 64 });
    OP = magpool_objpool_create(&(magpool_objpool_config_t){ .obj_size = 32 });
    BM = magpool_bufmgr_create(0);
    cr_assert(P && OP && BM);
}

static void teardown(void)
{
    magpool_bufmgr_destroy(BM);
    magpool_objpool_destroy(OP);
    magpool_destroy(P);
}

/* Rows that need more than one expression. */
static intptr_t create_with(size_t bs, double grow, unsigned backend, unsigned flags)
{
    magpool_config_t c = magpool_config_default(bs);
    c.grow_factor = grow;
    c.backend = (magpool_backend_t)backend;
    c.flags = flags;
    magpool_t *p = magpool_create(&c);
    magpool_destroy(p); /* errno is kept by destroy(NULL) and by a real destroy */
    return (intptr_t)p;
}

static intptr_t objpool_with(size_t size)
{
    magpool_objpool_t *op = magpool_objpool_create(&(magpool_objpool_config_t){ .obj_size = size });
    magpool_objpool_destroy(op);
    return (intptr_t)op;
}

/* Acquire until the cap: the failing call's result (errno is its errno). */
static intptr_t exhaust(magpool_backend_t backend)
{
    magpool_config_t c = magpool_config_default(64);
    c.backend = backend;
    c.initial_blocks = 64;
    c.max_blocks = 64;
    magpool_t *p = magpool_create(&c);
    void *v[65];
    int n = 0;
    while (n < 65 && (v[n] = magpool_acquire(p)) != NULL)
        n++;
    int e = errno;
    for (int i = 0; i < n; i++)
        magpool_release(p, v[i]);
    magpool_destroy(p);
    errno = e;
    return n == 64 ? 0 : 1; /* W_ZERO: exactly 64 served, then NULL */
}

static intptr_t interval_then_stop(double interval, double age)
{
    int rc = magpool_set_trim_interval(P, interval, age);
    int e = errno;
    magpool_set_trim_interval(P, 0, 0);
    errno = e;
    return rc;
}

/*       id        function                           input                     call                                                   want       errno */
#define CONTRACT(X) \
    X(c01, "magpool_create",                  "NULL config",            (intptr_t)magpool_create(NULL),                           W_ZERO,    EINVAL) \
    X(c02, "magpool_create_sized",            "NULL config",            (intptr_t)magpool_create_sized(NULL, sizeof(magpool_config_t)), W_ZERO, EINVAL) \
    X(c03, "magpool_config_init",             "NULL config",            magpool_config_init(NULL, sizeof(magpool_config_t), 64),  W_MINUS1,  EINVAL) \
    X(c04, "magpool_acquire",                 "NULL pool",              (intptr_t)magpool_acquire(NULL),                          W_ZERO,    EINVAL) \
    X(c05, "magpool_release",                 "NULL pool",              (magpool_release(NULL, foreign), 0),                            W_ZERO,    EINVAL) \
    X(c06, "magpool_clear",                   "NULL pool",              (intptr_t)magpool_clear(NULL),                            W_ZERO,    EINVAL) \
    X(c07, "magpool_trim",                    "NULL pool",              (intptr_t)magpool_trim(NULL, 1.0),                        W_ZERO,    EINVAL) \
    X(c08, "magpool_set_trim_interval",       "NULL pool",              magpool_set_trim_interval(NULL, 1, 1),                    W_MINUS1,  EINVAL) \
    X(c09, "magpool_get_stats",               "NULL pool",              magpool_get_stats(NULL, &S),                              W_MINUS1,  EINVAL) \
    X(c10, "magpool_block_size",              "NULL pool",              (intptr_t)magpool_block_size(NULL),                       W_ZERO,    EINVAL) \
    X(c11, "magpool_report_leaks",            "NULL pool",              (intptr_t)magpool_report_leaks(NULL, NULL),               W_ZERO,    EINVAL) \
    X(c12, "magpool_thread_flush",            "NULL pool",              (magpool_thread_flush(NULL), 0),                          W_ZERO,    EINVAL) \
    X(c13, "magpool_destroy",                 "NULL pool",              (magpool_destroy(NULL), 0),                               W_ZERO,    KEEP)   \
    X(c14, "magpool_set_name",                "NULL pool",              magpool_set_name(NULL, "x"),                              W_MINUS1,  EINVAL) \
    X(c15, "magpool_get_name",                "NULL pool",              (intptr_t)magpool_get_name(NULL)[0],                      W_ZERO,    EINVAL) \
    X(c16, "magpool_diagnostics",             "NULL pool",              (intptr_t)magpool_diagnostics(NULL),                      W_ZERO,    EINVAL) \
    X(c17, "magpool_objpool_create",          "NULL config",            (intptr_t)magpool_objpool_create(NULL),                   W_ZERO,    EINVAL) \
    X(c18, "magpool_objpool_acquire",         "NULL pool",              (intptr_t)magpool_objpool_acquire(NULL),                  W_ZERO,    EINVAL) \
    X(c19, "magpool_objpool_release",         "NULL pool",              (magpool_objpool_release(NULL, foreign), 0),                    W_ZERO,    EINVAL) \
    X(c20, "magpool_objpool_size",            "NULL pool",              (intptr_t)magpool_objpool_size(NULL),                     W_ZERO,    EINVAL) \
    X(c21, "magpool_objpool_clear",           "NULL pool",              (intptr_t)magpool_objpool_clear(NULL),                    W_ZERO,    EINVAL) \
    X(c22, "magpool_objpool_trim",            "NULL pool",              (intptr_t)magpool_objpool_trim(NULL, 1.0),                W_ZERO,    EINVAL) \
    X(c23, "magpool_objpool_get_stats",       "NULL pool",              magpool_objpool_get_stats(NULL, &S),                      W_MINUS1,  EINVAL) \
    X(c24, "magpool_objpool_destroy",         "NULL pool",              (magpool_objpool_destroy(NULL), 0),                       W_ZERO,    KEEP)   \
    X(c25, "magpool_bufmgr_get",              "NULL manager",           (intptr_t)magpool_bufmgr_get(NULL, 1, MAGPOOL_F64),       W_ZERO,    EINVAL) \
    X(c26, "magpool_bufmgr_release",          "NULL manager",           (magpool_bufmgr_release(NULL, foreign), 0),                     W_ZERO,    EINVAL) \
    X(c27, "magpool_bufmgr_release_checked",  "NULL manager",           magpool_bufmgr_release_checked(NULL, foreign),                  W_MINUS1,  EINVAL) \
    X(c28, "magpool_bufmgr_set_error_handler","NULL manager",           (magpool_bufmgr_set_error_handler(NULL, bm_quiet, NULL), 0), W_ZERO, EINVAL) \
    X(c29, "magpool_bufmgr_clear_unused",     "NULL manager",           (intptr_t)magpool_bufmgr_clear_unused(NULL, 0),           W_ZERO,    EINVAL) \
    X(c30, "magpool_bufmgr_get_stats",        "NULL manager",           magpool_bufmgr_get_stats(NULL, &BS),                      W_MINUS1,  EINVAL) \
    X(c31, "magpool_bufmgr_destroy",          "NULL manager",           (magpool_bufmgr_destroy(NULL), 0),                        W_ZERO,    KEEP)   \
    X(c32, "magpool_acquire_bulk",            "NULL pool",              magpool_acquire_bulk(NULL, V, 1),                         W_MINUS1,  EINVAL) \
    X(c33, "magpool_release_bulk",            "NULL pool",              (magpool_release_bulk(NULL, V, 1), 0),                    W_ZERO,    EINVAL) \
    X(c34, "magpool_acquire_zeroed",          "NULL pool",              (intptr_t)magpool_acquire_zeroed(NULL),                   W_ZERO,    EINVAL) \
    X(c35, "magpool_bufmgr_capacity",         "NULL manager",           (intptr_t)magpool_bufmgr_capacity(NULL, foreign),         W_ZERO,    EINVAL) \
    X(c36, "magpool_cache_get",               "NULL pool",              (intptr_t)magpool_cache_get(NULL),                        W_ZERO,    EINVAL) \
    X(c37, "magpool_cache_acquire",           "NULL handle",            (intptr_t)magpool_cache_acquire(NULL),                    W_ZERO,    EINVAL) \
    X(c38, "magpool_cache_release",           "NULL handle",            (magpool_cache_release(NULL, foreign), 0),                W_ZERO,    EINVAL) \
    X(n05, "magpool_acquire_bulk",            "NULL array, n 1",        magpool_acquire_bulk(P, NULL, 1),                         W_MINUS1,  EINVAL) \
    X(n06, "magpool_release_bulk",            "NULL array, n 1",        (magpool_release_bulk(P, NULL, 1), 0),                    W_ZERO,    EINVAL) \
    X(n07, "magpool_bufmgr_capacity",         "NULL buffer",            (intptr_t)magpool_bufmgr_capacity(BM, NULL),              W_ZERO,    EINVAL) \
    X(n08, "magpool_bufmgr_capacity",         "foreign buffer",         (intptr_t)magpool_bufmgr_capacity(BM, foreign),           W_ZERO,    EINVAL) \
    X(z04, "magpool_acquire_bulk",            "n 0",                    magpool_acquire_bulk(P, V, 0),                            W_ZERO,    KEEP)   \
    X(z05, "magpool_release_bulk",            "n 0",                    (magpool_release_bulk(P, V, 0), 0),                       W_ZERO,    KEEP)   \
    X(n01, "magpool_release",                 "NULL block",             (magpool_release(P, NULL), 0),                            W_ZERO,    KEEP)   \
    X(n02, "magpool_objpool_release",         "NULL object",            (magpool_objpool_release(OP, NULL), 0),                   W_ZERO,    KEEP)   \
    X(n03, "magpool_bufmgr_release",          "NULL buffer",            (magpool_bufmgr_release(BM, NULL), 0),                    W_ZERO,    KEEP)   \
    X(n04, "magpool_bufmgr_release_checked",  "NULL buffer",            magpool_bufmgr_release_checked(BM, NULL),                 W_ZERO,    KEEP)   \
    X(n09, "magpool_cache_release",           "NULL block",             (magpool_cache_release(magpool_cache_get(P), NULL), 0),   W_ZERO,    KEEP)   \
    X(o01, "magpool_get_stats",               "NULL out",               magpool_get_stats(P, NULL),                               W_MINUS1,  EINVAL) \
    X(o02, "magpool_objpool_get_stats",       "NULL out",               magpool_objpool_get_stats(OP, NULL),                      W_MINUS1,  EINVAL) \
    X(o03, "magpool_bufmgr_get_stats",        "NULL out",               magpool_bufmgr_get_stats(BM, NULL),                       W_MINUS1,  EINVAL) \
    X(o04, "magpool_get_stats_sized",         "size below 0.1's",       magpool_get_stats_sized(P, &S, 8),                        W_MINUS1,  EINVAL) \
    X(z01, "magpool_create",                  "block_size 0",           create_with(0, 2.0, MAGPOOL_LOCKFREE, 0),                 W_ZERO,    EINVAL) \
    X(z02, "magpool_objpool_create",          "obj_size 0",             objpool_with(0),                                          W_ZERO,    EINVAL) \
    X(z03, "magpool_bufmgr_get",              "count 0",                (intptr_t)magpool_bufmgr_get(BM, 0, MAGPOOL_F64),         W_ZERO,    EINVAL) \
    X(v01, "magpool_create",                  "block_size SIZE_MAX",    create_with(SIZE_MAX, 2.0, MAGPOOL_LOCKFREE, 0),          W_ZERO,    EINVAL) \
    X(v02, "magpool_objpool_create",          "obj_size SIZE_MAX",      objpool_with(SIZE_MAX),                                   W_ZERO,    EINVAL) \
    X(v03, "magpool_bufmgr_get",              "count SIZE_MAX",         (intptr_t)magpool_bufmgr_get(BM, SIZE_MAX, MAGPOOL_F64),  W_ZERO,    EINVAL) \
    X(e01, "magpool_acquire",                 "lock-free at max_blocks",exhaust(MAGPOOL_LOCKFREE),                                W_ZERO,    ENOMEM) \
    X(e02, "magpool_acquire",                 "mutex at max_blocks",    exhaust(MAGPOOL_MUTEX),                                   W_ZERO,    ENOMEM) \
    X(a01, "magpool_trim",                    "age -1",                 (magpool_trim(P, -1.0), 0),                               W_ZERO,    KEEP)   \
    X(a02, "magpool_trim",                    "age NaN",                (magpool_trim(P, NAN), 0),                                W_ZERO,    KEEP)   \
    X(a03, "magpool_trim",                    "age +inf",               (intptr_t)magpool_trim(P, INFINITY),                      W_ZERO,    KEEP)   \
    X(a04, "magpool_objpool_trim",            "age NaN",                (magpool_objpool_trim(OP, NAN), 0),                       W_ZERO,    KEEP)   \
    X(a05, "magpool_bufmgr_clear_unused",     "age -1",                 (intptr_t)magpool_bufmgr_clear_unused(BM, -1.0),          W_ZERO,    KEEP)   \
    X(a06, "magpool_bufmgr_clear_unused",     "age NaN",                (intptr_t)magpool_bufmgr_clear_unused(BM, NAN),           W_ZERO,    KEEP)   \
    X(a07, "magpool_set_trim_interval",       "age NaN",                interval_then_stop(1.0, NAN),                             W_ZERO,    KEEP)   \
    X(a08, "magpool_set_trim_interval",       "age 1e12",               interval_then_stop(1.0, 1e12),                            W_ZERO,    KEEP)   \
    X(i01, "magpool_set_trim_interval",       "interval NaN",           interval_then_stop(NAN, 1.0),                             W_MINUS1,  EINVAL) \
    X(i02, "magpool_set_trim_interval",       "interval 1e10",          interval_then_stop(1e10, 1.0),                            W_MINUS1,  EINVAL) \
    X(i03, "magpool_set_trim_interval",       "interval 0 (stop)",      interval_then_stop(0, 1.0),                               W_ZERO,    KEEP)   \
    X(g01, "magpool_create",                  "grow_factor 0",          create_with(64, 0.0, MAGPOOL_LOCKFREE, 0),                W_NONZERO, KEEP)   \
    X(g02, "magpool_create",                  "grow_factor 1e12",       create_with(64, 1e12, MAGPOOL_LOCKFREE, 0),               W_NONZERO, KEEP)   \
    X(g05, "magpool_create",                  "grow_factor +inf",       create_with(64, INFINITY, MAGPOOL_LOCKFREE, 0),           W_ZERO,    EINVAL) \
    X(g03, "magpool_create",                  "grow_factor NaN",        create_with(64, NAN, MAGPOOL_LOCKFREE, 0),                W_ZERO,    EINVAL) \
    X(g04, "magpool_create",                  "grow_factor 1",          create_with(64, 1.0, MAGPOOL_LOCKFREE, 0),                W_ZERO,    EINVAL) \
    X(u01, "magpool_create",                  "backend 7",              create_with(64, 2.0, 7, 0),                               W_ZERO,    EINVAL) \
    X(u02, "magpool_create",                  "flag bit 20",            create_with(64, 2.0, MAGPOOL_LOCKFREE, 1u << 20),         W_ZERO,    EINVAL) \
    X(u03, "magpool_dtype_size",              "dtype 99",               (intptr_t)magpool_dtype_size((magpool_dtype_t)99),        W_ZERO,    EINVAL) \
    X(u04, "magpool_bufmgr_get",              "dtype 99",               (intptr_t)magpool_bufmgr_get(BM, 1, (magpool_dtype_t)99), W_ZERO,    EINVAL) \
    X(p01, "magpool_publish_start",           "interval 0",             magpool_publish_start(0),                                 W_MINUS1,  EINVAL) \
    X(p02, "magpool_publish_start",           "interval 1e9 ms",        magpool_publish_start(1000000000u),                       W_MINUS1,  EINVAL) \
    X(p03, "magpool_publish_stop",            "not publishing",         (magpool_publish_stop(), 0),                              W_ZERO,    KEEP)   \
    X(p04, "magpool_publish_name",            "NULL buffer",            magpool_publish_name(NULL, 64),                           W_MINUS1,  EINVAL) \
    X(p05, "magpool_publish_name",            "not publishing",         magpool_publish_name((char[64]){ 0 }, 64),                W_MINUS1,  ENOENT)

#define THUNK(id, fn, input, call, want, err) \
    static intptr_t id(void) { return (intptr_t)(call); }
CONTRACT(THUNK)

struct row {
    const char *fn, *input;
    intptr_t (*call)(void);
    enum want want;
    int err;
};
#define ROW(id, fn, input, call, want, err) { fn, input, id, want, err },
static const struct row rows[] = { CONTRACT(ROW) };

Test(contract, every_row_of_the_table, .init = setup, .fini = teardown)
{
    magpool_bufmgr_set_error_handler(BM, bm_quiet, NULL);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *r = &rows[i];
        errno = SENTINEL;
        intptr_t got = r->call();
        int e = errno;
        bool ok = r->want == W_ZERO ? got == 0 : r->want == W_MINUS1 ? got == -1 : got != 0;
        cr_expect(ok, "%s(%s): returned %jd", r->fn, r->input, (intmax_t)got);
        if (r->err == KEEP)
            cr_expect_eq(e, SENTINEL, "%s(%s): errno changed to %d", r->fn, r->input, e);
        else
            cr_expect_eq(e, r->err, "%s(%s): errno %d, the table says %d", r->fn, r->input, e,
                         r->err);
    }
    /* Nothing was lost or damaged on the way: the handles still work. */
    void *b = magpool_acquire(P), *o = magpool_objpool_acquire(OP);
    void *f = magpool_bufmgr_get(BM, 10, MAGPOOL_F64);
    cr_assert(b && o && f);
    magpool_release(P, b);
    magpool_objpool_release(OP, o);
    magpool_bufmgr_release(BM, f);
    cr_assert_eq(magpool_get_stats(P, &S), 0);
    cr_assert_eq(S.blocks_outstanding, 0);
}

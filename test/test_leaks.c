/* SPDX-License-Identifier: MIT */
/*
 * Leak reports of the layers: magpool_objpool_report_leaks and
 * magpool_bufmgr_report_leaks count exactly what is out (per size class and
 * large buffers for a manager), name the acquiring functions in CHECKED mode
 * (MAGPOOL_CHECKED=1 in the environment at create), and both destroys report
 * what is still out through the core's error handler (MAGPOOL_ERR_LEAK),
 * which can silence them as it silences the core's.
 *
 * Linked with -rdynamic (export_dynamic), so backtrace_symbols can name the
 * non-static acquiring functions below: the sites are matched by name.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable" /* helpers' backend table */
#include "helpers.h"
#pragma GCC diagnostic pop

/* ------------------------------------------------------------ fixtures */

typedef struct {
    int n;
    magpool_error_kind_t kind;
    const magpool_t *pool;
    char name[64], msg[2048];
    const void *block;
    size_t count;
    void *site0;
} seen_t;

static seen_t seen;

static void grab(const magpool_error_t *e, void *ctx)
{
    seen_t *s = ctx;
    s->n++;
    s->kind = e->kind;
    s->pool = e->pool;
    snprintf(s->name, sizeof s->name, "%s", e->pool_name);
    snprintf(s->msg, sizeof s->msg, "%s", e->message);
    s->block = e->block;
    s->count = e->count;
    s->site0 = e->site ? e->site[0] : NULL;
}

static void setup(void)
{
    memset(&seen, 0, sizeof seen);
    magpool_set_error_handler(grab, &seen);
}

static void teardown(void)
{
    magpool_set_error_handler(NULL, NULL);
}

/* Criterion runs every test in a process of its own: the environment set
 * here does not leak into other tests. */
static void checked_env(void)
{
    cr_assert_eq(setenv("MAGPOOL_CHECKED", "1", 1), 0);
}

static void checked_setup(void)
{
    checked_env();
    setup();
}

/* What a report wrote, NUL-terminated (free it). */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} mem_out_t;

static FILE *mem_open(mem_out_t *m)
{
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    cr_assert_not_null(m->f);
    return m->f;
}

static char *mem_close(mem_out_t *m)
{
    fclose(m->f);
    return m->buf;
}

/* The acquiring sites: distinct, exported (named by backtrace_symbols),
 * never inlined nor cloned (a constant-propagated clone is a local symbol
 * without a name), with a barrier after the call so it is not a tail call. */
#define SITE_BARRIER() __asm__ volatile("" ::: "memory")
#if defined(__clang__)
#define SITE_FN __attribute__((noinline))
#else
#define SITE_FN __attribute__((noipa))
#endif

SITE_FN void *leaks_objpool_site_a(magpool_objpool_t *op)
{
    void *o = magpool_objpool_acquire(op);
    SITE_BARRIER();
    return o;
}

SITE_FN void *leaks_objpool_site_b(magpool_objpool_t *op)
{
    void *o = magpool_objpool_acquire(op);
    SITE_BARRIER();
    return o;
}

SITE_FN void *leaks_bufmgr_site_a(magpool_bufmgr_t *bm, size_t n)
{
    void *b = magpool_bufmgr_get(bm, n, MAGPOOL_F32);
    SITE_BARRIER();
    return b;
}

SITE_FN void *leaks_bufmgr_site_b(magpool_bufmgr_t *bm, size_t n)
{
    void *b = magpool_bufmgr_get(bm, n, MAGPOOL_U8);
    SITE_BARRIER();
    return b;
}

/* The innermost recorded frame lies inside fn (a call fn made). */
static void assert_pc_in(void *pc, void *fn, const char *what)
{
    uintptr_t lo = (uintptr_t)fn;
    cr_assert_not_null(pc, "%s: no acquire site", what);
    cr_assert((uintptr_t)pc > lo && (uintptr_t)pc < lo + 256,
              "%s: site %p not in the acquiring function (%p)", what, pc, fn);
}

static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ObjectPool counters: fini must still run on every object at destroy. */
struct counts {
    long inits, finis;
};

static int count_init(void *obj, void *ctx)
{
    (void)obj;
    __atomic_fetch_add(&((struct counts *)ctx)->inits, 1, __ATOMIC_RELAXED);
    return 0;
}

static void count_fini(void *obj, void *ctx)
{
    (void)obj;
    __atomic_fetch_add(&((struct counts *)ctx)->finis, 1, __ATOMIC_RELAXED);
}

static magpool_objpool_t *objpool_ok(struct counts *c)
{
    magpool_objpool_config_t cfg = { .obj_size = 48, .initial_objects = 8,
                                     .init = count_init, .fini = count_fini, .ctx = c };
    magpool_objpool_t *op = magpool_objpool_create(&cfg);
    cr_assert_not_null(op, "objpool_create: errno %d", errno);
    return op;
}

static magpool_bufmgr_t *bufmgr_ok(void)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    return bm;
}

/* ---------------------------------------------------------- ObjectPool */

Test(leaks, objpool_report_counts_exactly_without_sites_in_fast_mode)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    void *o[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(o[i] = magpool_objpool_acquire(op));
    magpool_objpool_release(op, o[1]);
    magpool_objpool_release(op, o[3]);
    mem_out_t m;
    cr_assert_eq(magpool_objpool_report_leaks(op, mem_open(&m)), 3);
    char *txt = mem_close(&m);
    cr_assert(strstr(txt, "3 object(s) of 48 bytes outstanding (5 acquired, 2 released)"),
              "%s", txt);
    cr_assert_eq(mp_count_lines(txt), 1, "fast mode keeps no sites:\n%s", txt);
    free(txt);
    magpool_objpool_release(op, o[0]);
    magpool_objpool_release(op, o[2]);
    magpool_objpool_release(op, o[4]);
    cr_assert_eq(magpool_objpool_report_leaks(op, mem_open(&m)), 0);
    free(mem_close(&m));
    magpool_objpool_destroy(op);
}

Test(leaks, objpool_report_null_is_einval_and_null_out_is_stderr)
{
    errno = 0;
    cr_assert_eq(magpool_objpool_report_leaks(NULL, stdout), 0);
    cr_assert_eq(errno, EINVAL);
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    void *o = magpool_objpool_acquire(op);
    char out[4096];
    mp_capture_t cap = mp_stderr_begin();
    size_t n = magpool_objpool_report_leaks(op, NULL);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(n, 1);
    cr_assert(strstr(out, "magpool: object pool ") == out && strstr(out, "1 object(s)"),
              "%s", out);
    magpool_objpool_release(op, o);
    magpool_objpool_destroy(op);
}

Test(leaks, objpool_checked_report_groups_objects_by_acquiring_function, .init = checked_env)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    void *a[3], *b;
    for (volatile int i = 0; i < 3; i++)
        cr_assert_not_null(a[i] = leaks_objpool_site_a(op));
    cr_assert_not_null(b = leaks_objpool_site_b(op));
    mem_out_t m;
    cr_assert_eq(magpool_objpool_report_leaks(op, mem_open(&m)), 4);
    char *txt = mem_close(&m);
    const char *la = strstr(txt, "magpool:   3 object(s) acquired at ");
    const char *lb = strstr(txt, "magpool:   1 object(s) acquired at ");
    cr_assert(la && lb && la < lb, "groups missing or not most first:\n%s", txt);
    cr_assert(strstr(la, "(leaks_objpool_site_a+0x") != NULL, "%s", txt);
    cr_assert(strstr(lb, "(leaks_objpool_site_b+0x") != NULL, "%s", txt);
    cr_assert_eq(count_of(txt, "(leaks_objpool_site_a+0x"), 1, "%s", txt);
    free(txt);
    /* A released object leaves its group; an empty group disappears. */
    magpool_objpool_release(op, a[0]);
    magpool_objpool_release(op, b);
    cr_assert_eq(magpool_objpool_report_leaks(op, mem_open(&m)), 2);
    txt = mem_close(&m);
    cr_assert(strstr(txt, "magpool:   2 object(s) acquired at ") != NULL, "%s", txt);
    cr_assert(strstr(txt, "leaks_objpool_site_b") == NULL, "%s", txt);
    free(txt);
    /* Reused objects are attributed to their new acquirer. */
    void *r = leaks_objpool_site_b(op);
    cr_assert_not_null(r);
    cr_assert_eq(magpool_objpool_report_leaks(op, mem_open(&m)), 3);
    txt = mem_close(&m);
    cr_assert(strstr(txt, "1 object(s) acquired at") && strstr(txt, "leaks_objpool_site_b+0x"),
              "%s", txt);
    free(txt);
    magpool_objpool_release(op, r);
    magpool_objpool_release(op, a[1]);
    magpool_objpool_release(op, a[2]);
    magpool_objpool_destroy(op);
}

struct churn_arg {
    magpool_objpool_t *op;
    magpool_bufmgr_t *bm;
    void *keep[64];
    int failed;             /* acquires that returned NULL (checked by main) */
};

/* Each thread takes 100, gives back every other one: 50 stay out. */
static void *churn(void *arg)
{
    struct churn_arg *a = arg;
    void *v[100];
    for (int i = 0; i < 100; i++) {
        v[i] = a->op ? magpool_objpool_acquire(a->op)
                     : magpool_bufmgr_get(a->bm, (size_t)(1 + i * 37), MAGPOOL_U8);
        if (v[i] == NULL)
            a->failed++;
    }
    for (int i = 0; i < 100; i++) {
        if (i % 2 == 0) {
            if (a->op)
                magpool_objpool_release(a->op, v[i]);
            else
                magpool_bufmgr_release(a->bm, v[i]);
        } else {
            a->keep[i / 2] = v[i];
        }
    }
    return NULL;
}

/* Counts are exact with several threads (their caches hold released
 * objects; none of that is "outstanding"), and every kept object is
 * released from a thread other than its acquirer. */
static void exact_across_threads(magpool_objpool_t *op, magpool_bufmgr_t *bm)
{
    struct churn_arg a[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct churn_arg){ .op = op, .bm = bm };
        cr_assert_eq(pthread_create(&t[i], NULL, churn, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(a[i].failed, 0, "thread %d: %d acquires failed", i, a[i].failed);
    }
    mem_out_t m;
    size_t n = op ? magpool_objpool_report_leaks(op, mem_open(&m))
                  : magpool_bufmgr_report_leaks(bm, mem_open(&m));
    free(mem_close(&m));
    cr_assert_eq(n, 200, "%zu outstanding, want 200", n);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 50; k++) {
            if (op)
                magpool_objpool_release(op, a[i].keep[k]);
            else
                magpool_bufmgr_release(bm, a[i].keep[k]);
        }
    n = op ? magpool_objpool_report_leaks(op, mem_open(&m))
           : magpool_bufmgr_report_leaks(bm, mem_open(&m));
    free(mem_close(&m));
    cr_assert_eq(n, 0);
}

Test(leaks, objpool_counts_are_exact_across_threads)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    exact_across_threads(op, NULL);
    magpool_objpool_destroy(op);
}

Test(leaks, objpool_checked_counts_are_exact_across_threads, .init = checked_env)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    exact_across_threads(op, NULL);
    magpool_objpool_destroy(op);
}

Test(leaks, objpool_destroy_reports_leak_with_site_then_finis_all, .init = checked_setup,
     .fini = teardown)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    void *a[2];
    a[0] = leaks_objpool_site_a(op);
    a[1] = leaks_objpool_site_a(op);
    void *b = leaks_objpool_site_b(op);
    void *d = magpool_objpool_acquire(op);
    magpool_objpool_release(op, d);
    cr_assert_eq(seen.n, 0, "%s", seen.msg);
    magpool_objpool_destroy(op);
    cr_assert_eq(seen.n, 1, "destroy with leaks: %d reports", seen.n);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_LEAK);
    cr_assert_eq(seen.count, 3, "count %zu", seen.count);
    cr_assert_not_null(seen.pool, "the object pool's own pool");
    cr_assert(seen.block == a[0] || seen.block == a[1],
              "block %p is not one of the biggest group's (%p, %p; not %p)", seen.block, a[0],
              a[1], b);
    assert_pc_in(seen.site0, (void *)leaks_objpool_site_a, "objpool destroy");
    cr_assert(strncmp(seen.msg, "magpool: objects still outstanding at destroy: object pool ",
                      strlen("magpool: objects still outstanding at destroy: object pool ")) == 0,
              "%s", seen.msg);
    cr_assert(strstr(seen.msg, "(3 object(s))") && strstr(seen.msg, "(leaks_objpool_site_a+0x"),
              "%s", seen.msg);
    cr_assert(strchr(seen.msg, '\n') == NULL, "not one line: %s", seen.msg);
    cr_assert_eq(c.finis, c.inits, "fini ran on %ld of %ld objects", c.finis, c.inits);
}

Test(leaks, objpool_destroy_reports_count_in_fast_mode, .init = setup, .fini = teardown)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    cr_assert_not_null(magpool_objpool_acquire(op));
    cr_assert_not_null(magpool_objpool_acquire(op));
    magpool_objpool_destroy(op);
    cr_assert_eq(seen.n, 1);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_LEAK);
    cr_assert_eq(seen.count, 2);
    cr_assert_null(seen.site0, "no sites in fast mode");
    cr_assert(strstr(seen.msg, "(2 object(s))") != NULL, "%s", seen.msg);
}

Test(leaks, objpool_clean_destroy_reports_nothing, .init = checked_setup, .fini = teardown)
{
    struct counts c = { 0 };
    magpool_objpool_t *op = objpool_ok(&c);
    void *o = leaks_objpool_site_a(op);
    magpool_objpool_release(op, o);
    magpool_objpool_destroy(op);
    cr_assert_eq(seen.n, 0, "%s", seen.msg);
}

/* The default handler prints the one line; any handler silences it. */
Test(leaks, destroy_reports_go_to_stderr_unless_a_handler_takes_them)
{
    struct counts c = { 0 };
    char out[4096];
    magpool_objpool_t *op = objpool_ok(&c);
    magpool_bufmgr_t *bm = bufmgr_ok();
    cr_assert_not_null(magpool_objpool_acquire(op));
    cr_assert_not_null(magpool_bufmgr_get(bm, 10, MAGPOOL_I32));
    mp_capture_t cap = mp_stderr_begin();
    magpool_objpool_destroy(op);
    magpool_bufmgr_destroy(bm);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(mp_count_lines(out), 2, "%s", out);
    cr_assert(strstr(out, "magpool: objects still outstanding at destroy") &&
              strstr(out, "magpool: buffers still outstanding at destroy"), "%s", out);

    setup();
    op = objpool_ok(&c);
    bm = bufmgr_ok();
    cr_assert_not_null(magpool_objpool_acquire(op));
    cr_assert_not_null(magpool_bufmgr_get(bm, 10, MAGPOOL_I32));
    cap = mp_stderr_begin();
    magpool_objpool_destroy(op);
    magpool_bufmgr_destroy(bm);
    mp_stderr_end(cap, out, sizeof out);
    teardown();
    cr_assert_eq(out[0], '\0', "a handler was set, yet stderr got: %s", out);
    cr_assert_eq(seen.n, 2);
}

/* ------------------------------------------------------- BufferManager */

/* Bytes of a large buffer: above the largest class, mapped directly (only
 * its header is written). */
#define LARGE_BYTES (MAGPOOL_BUFMGR_MAX_CLASS + 4096)

/* 50 F32 = 200 B: class 256; 1000 F32 = 4000 B: class 4096; LARGE_BYTES / 4
 * F32: large. */
Test(leaks, bufmgr_report_counts_per_size_class_and_large_buffers)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    void *s1 = magpool_bufmgr_get(bm, 50, MAGPOOL_F32);
    void *s2 = magpool_bufmgr_get(bm, 50, MAGPOOL_F32);
    void *s3 = magpool_bufmgr_get(bm, 60, MAGPOOL_F32);
    void *m1 = magpool_bufmgr_get(bm, 1000, MAGPOOL_F32);
    void *l1 = magpool_bufmgr_get(bm, LARGE_BYTES / 4, MAGPOOL_F32);
    void *l2 = magpool_bufmgr_get(bm, LARGE_BYTES / 4, MAGPOOL_F32);
    cr_assert(s1 && s2 && s3 && m1 && l1 && l2);
    magpool_bufmgr_release(bm, s2);
    magpool_bufmgr_release(bm, l2);
    mem_out_t m;
    cr_assert_eq(magpool_bufmgr_report_leaks(bm, mem_open(&m)), 4);
    char *txt = mem_close(&m);
    cr_assert(strstr(txt, "magpool: buffer manager ") == txt &&
              strstr(txt, ": 4 buffer(s) outstanding (6 got, 2 released)"), "%s", txt);
    cr_assert(strstr(txt, "magpool:   class 256 B: 2 buffer(s)\n"), "%s", txt);
    cr_assert(strstr(txt, "magpool:   class 4096 B: 1 buffer(s)\n"), "%s", txt);
    cr_assert(strstr(txt, "magpool:   large: 1 buffer(s), "), "%s", txt);
    cr_assert_eq(mp_count_lines(txt), 4, "fast mode keeps no sites:\n%s", txt);
    free(txt);
    magpool_bufmgr_stats_t st;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &st), 0);
    cr_assert_eq(st.outstanding, 4, "the report and the stats agree");
    magpool_bufmgr_release(bm, s1);
    magpool_bufmgr_release(bm, s3);
    magpool_bufmgr_release(bm, m1);
    magpool_bufmgr_release(bm, l1);
    cr_assert_eq(magpool_bufmgr_report_leaks(bm, mem_open(&m)), 0);
    txt = mem_close(&m);
    cr_assert_eq(mp_count_lines(txt), 1, "%s", txt);
    free(txt);
    magpool_bufmgr_destroy(bm);
}

Test(leaks, bufmgr_report_null_is_einval_and_null_out_is_stderr)
{
    errno = 0;
    cr_assert_eq(magpool_bufmgr_report_leaks(NULL, stdout), 0);
    cr_assert_eq(errno, EINVAL);
    magpool_bufmgr_t *bm = bufmgr_ok();
    void *b = magpool_bufmgr_get(bm, 3, MAGPOOL_I64);
    char out[4096];
    mp_capture_t cap = mp_stderr_begin();
    size_t n = magpool_bufmgr_report_leaks(bm, NULL);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(n, 1);
    cr_assert(strstr(out, "magpool: buffer manager ") == out, "%s", out);
    magpool_bufmgr_release(bm, b);
    magpool_bufmgr_destroy(bm);
}

Test(leaks, bufmgr_checked_report_names_acquiring_functions, .init = checked_env)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    void *a[2];
    for (volatile int i = 0; i < 2; i++) /* one call site */
        a[i] = leaks_bufmgr_site_a(bm, 50);
    void *a1 = a[0], *a2 = a[1];
    void *b1 = leaks_bufmgr_site_b(bm, 200);       /* U8: also class 256 */
    void *big = leaks_bufmgr_site_b(bm, LARGE_BYTES);
    cr_assert(a1 && a2 && b1 && big);
    mem_out_t m;
    cr_assert_eq(magpool_bufmgr_report_leaks(bm, mem_open(&m)), 4);
    char *txt = mem_close(&m);
    const char *cls = strstr(txt, "magpool:   class 256 B: 3 buffer(s)\n");
    const char *ga = strstr(txt, "magpool:     2 buffer(s) acquired at ");
    const char *gb = strstr(txt, "magpool:     1 buffer(s) acquired at ");
    const char *lg = strstr(txt, "magpool:   large: 1 buffer(s), ");
    cr_assert(cls && ga && gb && lg && cls < ga && ga < gb && gb < lg, "layout:\n%s", txt);
    cr_assert(strstr(ga, "(leaks_bufmgr_site_a+0x") != NULL, "%s", txt);
    cr_assert(strstr(gb, "(leaks_bufmgr_site_b+0x") != NULL, "%s", txt);
    cr_assert(strstr(lg, "magpool:     1 buffer(s) acquired at ") &&
              strstr(strstr(lg, "acquired at"), "(leaks_bufmgr_site_b+0x"),
              "large buffer's site:\n%s", txt);
    free(txt);
    magpool_bufmgr_release(bm, a1);
    magpool_bufmgr_release(bm, a2);
    magpool_bufmgr_release(bm, b1);
    magpool_bufmgr_release(bm, big);
    magpool_bufmgr_destroy(bm);
}

Test(leaks, bufmgr_counts_are_exact_across_threads)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    exact_across_threads(NULL, bm);
    magpool_bufmgr_destroy(bm);
}

Test(leaks, bufmgr_checked_counts_are_exact_across_threads, .init = checked_env)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    exact_across_threads(NULL, bm);
    magpool_bufmgr_destroy(bm);
}

Test(leaks, bufmgr_destroy_reports_pooled_leak_with_site, .init = checked_setup,
     .fini = teardown)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    void *a[2];
    for (volatile int i = 0; i < 2; i++) /* one call site */
        a[i] = leaks_bufmgr_site_a(bm, 50);
    void *a1 = a[0], *a2 = a[1];
    void *big = leaks_bufmgr_site_b(bm, LARGE_BYTES);
    cr_assert(a1 && a2 && big);
    magpool_bufmgr_destroy(bm);
    cr_assert_eq(seen.n, 1, "%d reports", seen.n);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_LEAK);
    cr_assert_eq(seen.count, 3);
    cr_assert(seen.block == a1 || seen.block == a2, "block %p", seen.block);
    cr_assert_not_null(seen.pool, "a pooled buffer names its class pool");
    cr_assert(strstr(seen.name, "bufmgr ") == seen.name && strstr(seen.name, "/256"),
              "class pool name \"%s\"", seen.name);
    assert_pc_in(seen.site0, (void *)leaks_bufmgr_site_a, "bufmgr destroy");
    cr_assert(strstr(seen.msg, "magpool: buffers still outstanding at destroy: buffer manager ") ==
              seen.msg, "%s", seen.msg);
    cr_assert(strstr(seen.msg, "(3 buffer(s): 2 in 1 size class(es), 1 large)") &&
              strstr(seen.msg, "(leaks_bufmgr_site_a+0x"), "%s", seen.msg);
}

Test(leaks, bufmgr_destroy_reports_large_leak_with_site, .init = checked_setup,
     .fini = teardown)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    void *small = magpool_bufmgr_get(bm, 5, MAGPOOL_U8);
    magpool_bufmgr_release(bm, small);
    void *big = leaks_bufmgr_site_b(bm, LARGE_BYTES);
    cr_assert_not_null(big);
    magpool_bufmgr_destroy(bm);
    cr_assert_eq(seen.n, 1);
    cr_assert_eq(seen.count, 1);
    cr_assert_eq(seen.block, big);
    cr_assert_null(seen.pool, "a large buffer belongs to no pool");
    assert_pc_in(seen.site0, (void *)leaks_bufmgr_site_b, "large buffer");
    cr_assert(strstr(seen.msg, "(1 buffer(s): 0 in 0 size class(es), 1 large)"), "%s",
              seen.msg);
}

Test(leaks, bufmgr_destroy_reports_count_in_fast_mode, .init = setup, .fini = teardown)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    cr_assert_not_null(magpool_bufmgr_get(bm, 50, MAGPOOL_F32));
    cr_assert_not_null(magpool_bufmgr_get(bm, 5000, MAGPOOL_F32));
    magpool_bufmgr_destroy(bm);
    cr_assert_eq(seen.n, 1);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_LEAK);
    cr_assert_eq(seen.count, 2);
    cr_assert_null(seen.site0);
    cr_assert(strstr(seen.msg, "(2 buffer(s): 2 in 2 size class(es), 0 large)"), "%s", seen.msg);
}

Test(leaks, bufmgr_clean_destroy_reports_nothing, .init = checked_setup, .fini = teardown)
{
    magpool_bufmgr_t *bm = bufmgr_ok();
    void *a = leaks_bufmgr_site_a(bm, 50), *big = leaks_bufmgr_site_b(bm, LARGE_BYTES);
    magpool_bufmgr_release(bm, a);
    magpool_bufmgr_release(bm, big);
    magpool_bufmgr_destroy(bm);
    cr_assert_eq(seen.n, 0, "%s", seen.msg);
}

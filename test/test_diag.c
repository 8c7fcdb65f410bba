/* SPDX-License-Identifier: MIT */
/* Diagnostics: every misuse CHECKED detects reaches the error handler with
 * the right kind, pool, pool name, block and acquire site; the pool is
 * unchanged afterwards. Both backends. Leak reports, destroy-time reports. */
#include "helpers.h"

#include <signal.h>

typedef struct {
    int n;
    magpool_error_kind_t kind;
    const magpool_t *pool, *owner;
    char name[64], owner_name[64], msg[2048];
    const void *block;
    size_t offset, count;
    void *site0;
    unsigned depth;
} seen_t;

static seen_t seen;

/* A deliberate bad write. In the ASan build idle blocks and redzones are
 * poisoned, so ASan itself would stop the test at the write (that is
 * covered by the asan-* tests); here we want CHECKED's own detection. */
#if defined(__SANITIZE_ADDRESS__)
#define NO_ASAN __attribute__((no_sanitize_address, noinline))
#else
#define NO_ASAN __attribute__((noinline))
#endif
static NO_ASAN void poke(char *p, char v)
{
    *(volatile char *)p = v;
}

static void grab(const magpool_error_t *e, void *ctx)
{
    seen_t *s = ctx;
    s->n++;
    s->kind = e->kind;
    s->pool = e->pool;
    s->owner = e->owner;
    snprintf(s->name, sizeof s->name, "%s", e->pool_name);
    snprintf(s->owner_name, sizeof s->owner_name, "%s", e->owner_name ? e->owner_name : "");
    snprintf(s->msg, sizeof s->msg, "%s", e->message);
    s->block = e->block;
    s->offset = e->offset;
    s->count = e->count;
    s->site0 = e->site ? e->site[0] : NULL;
    s->depth = e->site_depth;
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

static magpool_t *named_pool(magpool_backend_t backend, size_t bs, const char *name)
{
    magpool_config_t c = mp_cfg(backend, bs);
    c.flags = MAGPOOL_CHECKED;
    c.initial_blocks = 16;
    magpool_t *p = mp_create_ok(&c);
    cr_assert_eq(magpool_set_name(p, name), 0);
    cr_assert_str_eq(magpool_get_name(p), name);
    cr_assert(magpool_diagnostics(p) & MAGPOOL_DIAG_CHECKED, "[%s]", BN);
    cr_assert(magpool_diagnostics(p) & MAGPOOL_DIAG_REDZONE, "[%s]", BN);
    return p;
}

/* A distinct, non-inlined acquiring site whose return address we know. */
static void *volatile site_ret;
static __attribute__((noinline)) void *acquire_here(magpool_t *p)
{
    void *b = magpool_acquire(p);
    site_ret = __builtin_return_address(0); /* not the site: just a barrier */
    __asm__ volatile("" ::: "memory");
    return b;
}

/* The recorded site must lie inside acquire_here (a call it made). */
static void assert_site_in_acquire_here(magpool_backend_t backend, void *pc, const char *what)
{
    uintptr_t lo = (uintptr_t)&acquire_here;
    cr_assert(pc != NULL, "[%s] %s: no acquire site", BN, what);
    cr_assert((uintptr_t)pc > lo && (uintptr_t)pc < lo + 256,
              "[%s] %s: site %p not in acquire_here (%p)", BN, what, pc, (void *)lo);
}

static void expect(magpool_backend_t backend, magpool_t *p, magpool_error_kind_t kind,
                   const void *block, const char *name, const char *what)
{
    cr_assert_eq(seen.n, 1, "[%s] %s: %d reports", BN, what, seen.n);
    cr_assert_eq(seen.kind, kind, "[%s] %s: kind %d, want %d (%s)", BN, what, seen.kind, kind,
                 seen.msg);
    cr_assert_eq(seen.pool, p, "[%s] %s: wrong pool in report", BN, what);
    cr_assert_str_eq(seen.name, name, "[%s] %s", BN, what);
    cr_assert_eq(seen.block, block, "[%s] %s: block %p, want %p", BN, what, seen.block, block);
    cr_assert(strstr(seen.msg, name) != NULL, "[%s] %s: name missing in \"%s\"", BN, what,
              seen.msg);
    cr_assert(strchr(seen.msg, '\n') == NULL, "[%s] %s: message is not one line", BN, what);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_geq(s.errors, 1, "[%s] %s: stats.errors not counted", BN, what);
}

/* The pool still hands out distinct, clean blocks and stays consistent. */
static void assert_pool_sane(magpool_t *p, size_t bs, magpool_backend_t backend)
{
    int before = seen.n;
    void *b[64];
    for (int i = 0; i < 64; i++) {
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s]", BN);
        mp_fill(b[i], bs, (uint32_t)i);
    }
    for (int i = 0; i < 64; i++)
        cr_assert(mp_check(b[i], bs, (uint32_t)i), "[%s] block %d handed out twice", BN, i);
    mp_assert_disjoint(b, 64, bs, backend);
    for (int i = 0; i < 64; i++)
        magpool_release(p, b[i]);
    cr_assert_eq(seen.n, before, "[%s] clean use reported: %s", BN, seen.msg);
    magpool_stats_t s = mp_stats(p, backend);
    mp_assert_quiescent_invariants(&s, bs, backend);
}

BACKEND_TEST(diag, double_release_reports_kind_name_block_site, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 48, "sessions");
    void *a = acquire_here(p);
    cr_assert_not_null(a);
    magpool_release(p, a);
    cr_assert_eq(seen.n, 0, "[%s] valid release reported: %s", BN, seen.msg);
    errno = 0;
    magpool_release(p, a);
    cr_assert_eq(errno, EINVAL, "[%s]", BN);
    expect(backend, p, MAGPOOL_ERR_DOUBLE_RELEASE, a, "sessions", "double release");
    assert_site_in_acquire_here(backend, seen.site0, "double release");
    cr_assert(strstr(seen.msg, "double release") && strstr(seen.msg, "acquired at"),
              "[%s] %s", BN, seen.msg);
    assert_pool_sane(p, 48, backend);
    magpool_destroy(p);
}

BACKEND_TEST(diag, foreign_pointer_is_reported, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 64, "foreign");
    void *m = malloc(64);
    errno = 0;
    magpool_release(p, m);
    cr_assert_eq(errno, EINVAL);
    expect(backend, p, MAGPOOL_ERR_FOREIGN_POINTER, m, "foreign", "malloc'd pointer");
    free(m);
    assert_pool_sane(p, 64, backend);
    magpool_destroy(p);
}

BACKEND_TEST(diag, misaligned_pointer_reports_offset_and_site, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 64, "mis");
    char *a = acquire_here(p);
    cr_assert_not_null(a);
    magpool_release(p, a + 24);
    expect(backend, p, MAGPOOL_ERR_MISALIGNED_POINTER, a + 24, "mis", "block+24");
    cr_assert_eq(seen.offset, 24, "[%s] offset %zu", BN, seen.offset);
    assert_site_in_acquire_here(backend, seen.site0, "misaligned");
    seen.n = 0;
    magpool_release(p, a); /* the real block is still out and releases fine */
    cr_assert_eq(seen.n, 0, "[%s] %s", BN, seen.msg);
    cr_assert_eq(mp_stats(p, backend).blocks_outstanding, 0);
    assert_pool_sane(p, 64, backend);
    magpool_destroy(p);
}

BACKEND_TEST(diag, release_to_wrong_pool_names_the_owner, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 64, "left");
    magpool_config_t c = mp_cfg(backend, 64); /* the owner need not be checked */
    magpool_t *q = mp_create_ok(&c);
    magpool_set_name(q, "right");
    void *x = magpool_acquire(q);
    cr_assert_not_null(x);
    magpool_release(p, x);
    expect(backend, p, MAGPOOL_ERR_WRONG_POOL, x, "left", "block of another pool");
    cr_assert_eq(seen.owner, q, "[%s] owner %p, want %p", BN, (void *)seen.owner, (void *)q);
    cr_assert_str_eq(seen.owner_name, "right");
    cr_assert(strstr(seen.msg, "\"right\"") != NULL, "[%s] %s", BN, seen.msg);
    cr_assert_eq(mp_stats(q, backend).blocks_outstanding, 1);
    magpool_release(q, x);
    assert_pool_sane(p, 64, backend);
    magpool_destroy(p);
    magpool_destroy(q);
}

BACKEND_TEST(diag, write_past_end_is_reported_at_release, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 40, "overflow");
    char *a = acquire_here(p);
    cr_assert_not_null(a);
    memset(a, 0x11, 40);      /* all of it: fine */
    cr_assert_eq(seen.n, 0);
    poke(a + 40, 'x');        /* one past the end */
    magpool_release(p, a);
    expect(backend, p, MAGPOOL_ERR_OVERFLOW, a, "overflow", "write of a[block_size]");
    cr_assert_eq(seen.offset, 40, "[%s] offset %zu", BN, seen.offset);
    assert_site_in_acquire_here(backend, seen.site0, "overflow");
    /* the release went through: nothing outstanding, pool fine */
    cr_assert_eq(mp_stats(p, backend).blocks_outstanding, 0, "[%s]", BN);
    assert_pool_sane(p, 40, backend);
    magpool_destroy(p);
}

BACKEND_TEST(diag, write_after_release_is_reported_at_next_acquire, .init = setup, .fini = teardown)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.flags = MAGPOOL_CHECKED;
    c.initial_blocks = 1;
    c.max_blocks = 1; /* the next acquire must return the same block */
    magpool_t *p = mp_create_ok(&c);
    magpool_set_name(p, "uar");
    char *a = acquire_here(p);
    cr_assert_not_null(a);
    magpool_release(p, a);
    poke(a + 20, 42);         /* use after release */
    cr_assert_eq(seen.n, 0);
    char *b = magpool_acquire(p);
    cr_assert_eq(b, a, "[%s] cap 1 must give the same block", BN);
    expect(backend, p, MAGPOOL_ERR_USE_AFTER_RELEASE, a, "uar", "a[20] after release");
    cr_assert_eq(seen.offset, 20, "[%s] offset %zu", BN, seen.offset);
    assert_site_in_acquire_here(backend, seen.site0, "use after release (last acquirer)");
    magpool_release(p, b);
    magpool_destroy(p);
}

BACKEND_TEST(diag, damaged_link_word_is_reported_not_followed, .init = setup, .fini = teardown)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.flags = MAGPOOL_CHECKED;
    c.initial_blocks = 1;
    c.max_blocks = 2;
    magpool_t *p = mp_create_ok(&c);
    void *a = magpool_acquire(p), *b = magpool_acquire(p);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    magpool_release(p, b);
    magpool_release(p, a);
    static char target[64];
    *(void **)a = target;     /* a wild pointer where the pool may keep a link */
    void *x = magpool_acquire(p);
    cr_assert_eq(x, a, "[%s]", BN);
    cr_assert_eq(seen.n, 1, "[%s] %d reports", BN, seen.n);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_USE_AFTER_RELEASE, "[%s] %s", BN, seen.msg);
    cr_assert_eq(seen.offset, 0);
    /* never hands out the wild pointer */
    void *y = magpool_acquire(p);
    cr_assert_neq(y, (void *)target, "[%s] followed a damaged link", BN);
    magpool_release(p, x);
    if (y)
        magpool_release(p, y);
    magpool_destroy(p);
}

BACKEND_TEST(diag, leak_report_groups_sites_and_destroy_reports, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 32, "leaky");
    void *a[3], *b;
    for (volatile int i = 0; i < 3; i++) /* volatile: one call site, not unrolled */
        a[i] = acquire_here(p);
    b = magpool_acquire(p);
    cr_assert_not_null(b);
    magpool_release(p, a[1]);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(magpool_report_leaks(p, f), 3, "[%s]", BN);
    fclose(f);
    cr_assert(strstr(buf, "\"leaky\"") && strstr(buf, "3 block(s) of 32 bytes outstanding"),
              "[%s] %s", BN, buf);
    cr_assert(strstr(buf, "2 block(s) acquired at") && strstr(buf, "1 block(s) acquired at"),
              "[%s] sites not grouped:\n%s", BN, buf);
    cr_assert(strstr(buf, "(unknown site)") == NULL && strstr(buf, "(+0x") != NULL,
              "[%s] no symbolised site:\n%s", BN, buf);
    free(buf);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_eq(s.blocks_outstanding, 3);
    magpool_destroy(p);
    cr_assert_eq(seen.n, 1, "[%s] destroy with leaks: %d reports", BN, seen.n);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_LEAK);
    cr_assert_eq(seen.count, 3, "[%s] count %zu", BN, seen.count);
    assert_site_in_acquire_here(backend, seen.site0, "leak (biggest group)");
    cr_assert_str_eq(seen.name, "leaky");
}

BACKEND_TEST(diag, fast_mode_destroy_reports_leak_count, .init = setup, .fini = teardown)
{
    magpool_config_t c = mp_cfg(backend, 32);
    magpool_t *p = mp_create_ok(&c);
    magpool_set_name(p, "fast");
    void *a = magpool_acquire(p), *b = magpool_acquire(p);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    magpool_release(p, b);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(magpool_report_leaks(p, f), 1);
    fclose(f);
    cr_assert(strstr(buf, "1 block(s) of 32 bytes outstanding") != NULL, "%s", buf);
    free(buf);
    magpool_destroy(p);
    cr_assert_eq(seen.n, 1, "[%s]", BN);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_LEAK);
    cr_assert_eq(seen.count, 1);
    cr_assert_str_eq(seen.name, "fast");
}

BACKEND_TEST(diag, clean_destroy_reports_nothing, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 32, "clean");
    void *a = magpool_acquire(p);
    magpool_release(p, a);
    magpool_destroy(p);
    cr_assert_eq(seen.n, 0, "[%s] %s", BN, seen.msg);
}

BACKEND_TEST(diag, checked_survives_trim_and_threads, .init = setup, .fini = teardown)
{
    magpool_t *p = named_pool(backend, 64, "trim");
    void *b[200];
    for (int i = 0; i < 200; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    for (int i = 0; i < 200; i += 2)
        magpool_release(p, b[i]);
    magpool_clear(p);
    for (int i = 1; i < 200; i += 2)
        magpool_release(p, b[i]);
    magpool_trim(p, 0);
    assert_pool_sane(p, 64, backend);
    cr_assert_eq(seen.n, 0, "[%s] %s", BN, seen.msg);
    magpool_destroy(p);
}

Test(diag, default_handler_prints_one_line)
{
    magpool_config_t c = magpool_config_default(64);
    c.flags = MAGPOOL_CHECKED;
    magpool_t *p = mp_create_ok(&c);
    magpool_set_name(p, "stderr");
    void *a = magpool_acquire(p);
    magpool_release(p, a);
    char out[4096];
    mp_capture_t cap = mp_stderr_begin();
    magpool_release(p, a);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(mp_count_lines(out), 1, "%s", out);
    const char *want = "magpool: double release: pool \"stderr\" (";
    cr_assert(strncmp(out, want, strlen(want)) == 0, "%s", out);
    magpool_destroy(p);
}

Test(diag, abort_on_error_aborts_after_report, .signal = SIGABRT)
{
    setenv("MAGPOOL_ABORT_ON_ERROR", "1", 1);
    magpool_config_t c = magpool_config_default(64);
    c.flags = MAGPOOL_CHECKED;
    magpool_t *p = mp_create_ok(&c);
    void *a = magpool_acquire(p);
    magpool_release(p, a);
    magpool_release(p, a); /* reported, then abort() */
}

Test(diag, passthrough_tracks_blocks_and_rejects_bad_releases, .init = setup, .fini = teardown)
{
    setenv("MAGPOOL_PASSTHROUGH", "1", 1);
    magpool_config_t c = magpool_config_default(100);
    c.max_blocks = 3;
    magpool_t *p = mp_create_ok(&c);
    unsetenv("MAGPOOL_PASSTHROUGH");
    magpool_set_name(p, "pt");
    cr_assert(magpool_diagnostics(p) & MAGPOOL_DIAG_PASSTHROUGH);
    void *a = acquire_here(p), *b = magpool_acquire(p), *d = magpool_acquire(p);
    cr_assert_not_null(a);
    cr_assert_not_null(d);
    cr_assert_eq((uintptr_t)a % 16, 0);
    errno = 0;
    cr_assert_null(magpool_acquire(p), "max_blocks honoured");
    cr_assert_eq(errno, ENOMEM);
    magpool_release(p, b);
    magpool_release(p, b);
    cr_assert_eq(seen.n, 1);
    cr_assert_eq(seen.kind, MAGPOOL_ERR_FOREIGN_POINTER);
    magpool_stats_t s;
    magpool_get_stats(p, &s);
    cr_assert_eq(s.blocks_outstanding, 2);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(magpool_report_leaks(p, f), 2);
    fclose(f);
    cr_assert(strstr(buf, "1 block(s) acquired at") != NULL, "%s", buf);
    free(buf);
    magpool_release(p, a);
    magpool_release(p, d);
    magpool_destroy(p);
    cr_assert_eq(seen.n, 1);
}

Test(diag, layered_pools_keep_contents_under_checked)
{
    setenv("MAGPOOL_CHECKED", "1", 1);
    magpool_objpool_config_t oc = { .obj_size = 32, .initial_objects = 4 };
    magpool_objpool_t *op = magpool_objpool_create(&oc);
    unsetenv("MAGPOOL_CHECKED");
    cr_assert_not_null(op);
    char *o = magpool_objpool_acquire(op);
    memset(o, 7, 32);
    magpool_objpool_release(op, o);
    char *o2 = magpool_objpool_acquire(op);
    cr_assert_eq(o2, o);
    cr_assert_eq(o2[5], 7, "object pool contents clobbered by poison");
    magpool_objpool_release(op, o2);
    magpool_objpool_destroy(op);
}

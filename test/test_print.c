/* SPDX-License-Identifier: MIT */
/*
 * The statistics printer and the pool walk: every field in the text output,
 * errno for bad input and failed writes, the walk's order and snapshot,
 * callbacks that re-enter the library, destroy during a walk (waits, or is
 * done by the callback itself), and fork during a walk (the child never
 * waits for the parent's walkers). JSON validity is checked by a real
 * parser: test/check_stats_json.py.
 */
#include "helpers.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static const char *const stat_keys[] = {
    "acquires", "releases", "hits", "misses", "hit_rate", "grows", "trims", "failed",
    "blocks_total", "blocks_outstanding", "bytes_reserved", "depot_gets", "depot_puts",
    "steals", "threads", "bytes_returned", "magazines", "errors", "reclaims", "spilled",
};

static magpool_t *named(magpool_backend_t backend, const char *name)
{
    magpool_config_t c = mp_cfg(backend, 64);
    magpool_t *p = mp_create_ok(&c);
    cr_assert_eq(magpool_set_name(p, name), 0);
    return p;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Everything print wrote (free it). */
static char *printed(magpool_t *p, unsigned flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    int rc = p ? magpool_stats_print(p, f, flags) : magpool_stats_print_all(f, flags);
    fclose(f);
    cr_assert_eq(rc, 0, "print returned %d, errno %d", rc, errno);
    return buf;
}

/* The value on the text line of `key`, or NULL. */
static const char *text_value(const char *txt, const char *key, char *val, size_t cap)
{
    char lead[64];
    snprintf(lead, sizeof lead, "\nmagpool:   %s ", key);
    const char *at = strstr(txt, lead);
    if (at == NULL)
        return NULL;
    at += strlen(lead);
    while (*at == ' ')
        at++;
    size_t n = strcspn(at, "\n");
    snprintf(val, cap, "%.*s", (int)(n < cap ? n : cap - 1), at);
    return val;
}

/* ---------------------------------------------------------------- print */

BACKEND_TEST(print, text_has_name_config_and_every_stats_field)
{
    magpool_t *p = named(backend, "printed");
    void *b[3];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p));
    magpool_release(p, b[0]);
    char *txt = printed(p, MAGPOOL_PRINT_TEXT);
    char head[128], val[64];
    snprintf(head, sizeof head, "magpool: pool \"printed\" (%p)\n", (void *)p);
    cr_assert(strncmp(txt, head, strlen(head)) == 0, "[%s] head:\n%s", BN, txt);
    cr_assert_str_eq(text_value(txt, "block_size", val, sizeof val), "64", "[%s]", BN);
    cr_assert_str_eq(text_value(txt, "backend", val, sizeof val),
                     backend == MAGPOOL_MUTEX ? "mutex" : "lockfree");
    cr_assert_str_eq(text_value(txt, "max_blocks", val, sizeof val), "0 (unlimited)");
    cr_assert_str_eq(text_value(txt, "layer", val, sizeof val), "-");
    cr_assert_str_eq(text_value(txt, "diagnostics", val, sizeof val),
                     magpool_diagnostics(p) & MAGPOOL_DIAG_ASAN ? "asan" : "none");
    cr_assert_not_null(text_value(txt, "magazine_size", val, sizeof val));
    for (size_t i = 0; i < sizeof stat_keys / sizeof stat_keys[0]; i++)
        cr_assert_not_null(text_value(txt, stat_keys[i], val, sizeof val),
                           "[%s] no line for %s:\n%s", BN, stat_keys[i], txt);
    cr_assert_str_eq(text_value(txt, "acquires", val, sizeof val), "3");
    cr_assert_str_eq(text_value(txt, "releases", val, sizeof val), "1");
    cr_assert_str_eq(text_value(txt, "blocks_outstanding", val, sizeof val), "2");
    cr_assert_str_eq(text_value(txt, "hit_rate", val, sizeof val), "1.000000");
    cr_assert_eq(mp_count_lines(txt), 7 + sizeof stat_keys / sizeof stat_keys[0],
                 "[%s] one line per item:\n%s", BN, txt);
    free(txt);
    magpool_release(p, b[1]);
    magpool_release(p, b[2]);
    magpool_destroy(p);
}

Test(print, text_names_layers_and_diagnostics)
{
    magpool_config_t c = magpool_config_default(32);
    c.flags = MAGPOOL_CHECKED;
    c.max_blocks = 100;
    magpool_t *p = mp_create_ok(&c);
    char val[64], *txt = printed(p, 0);
    cr_assert(strncmp(text_value(txt, "diagnostics", val, sizeof val), "checked,redzone", 15) == 0,
              "%s", txt);
    cr_assert_str_eq(text_value(txt, "max_blocks", val, sizeof val), "100");
    free(txt);
    magpool_destroy(p);

    magpool_objpool_config_t oc = { .obj_size = 24 };
    magpool_objpool_t *op = magpool_objpool_create(&oc);
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    void *buf = magpool_bufmgr_get(bm, 100, MAGPOOL_U8);
    txt = printed(NULL, MAGPOOL_PRINT_TEXT);
    cr_assert(strstr(txt, "\nmagpool:   layer                objpool\n"), "%s", txt);
    cr_assert(strstr(txt, "\nmagpool:   layer                bufmgr\n"), "%s", txt);
    char cls[64];
    snprintf(cls, sizeof cls, "magpool: pool \"bufmgr %p/128\"", (void *)bm);
    cr_assert(strstr(txt, cls), "no %s in\n%s", cls, txt);
    free(txt);
    magpool_bufmgr_release(bm, buf);
    magpool_bufmgr_destroy(bm);
    magpool_objpool_destroy(op);
}

Test(print, bad_input_is_einval)
{
    magpool_t *p = named(MAGPOOL_LOCKFREE, "x");
    errno = 0;
    cr_assert_eq(magpool_stats_print(NULL, stdout, 0), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_stats_print(p, stdout, 2), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_stats_print_all(stdout, MAGPOOL_PRINT_JSON | 4), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_walk(NULL, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    magpool_destroy(p);
}

Test(print, failed_write_is_eio)
{
    FILE *full = fopen("/dev/full", "w");
    cr_assert_not_null(full);
    setvbuf(full, NULL, _IONBF, 0);
    magpool_t *p = named(MAGPOOL_LOCKFREE, "x");
    errno = 0;
    cr_assert_eq(magpool_stats_print(p, full, MAGPOOL_PRINT_JSON), -1);
    cr_assert_eq(errno, EIO);
    errno = 0;
    cr_assert_eq(magpool_stats_print_all(full, MAGPOOL_PRINT_TEXT), -1);
    cr_assert_eq(errno, EIO);
    fclose(full);
    magpool_destroy(p);
}

Test(print, null_out_is_stderr)
{
    magpool_t *p = named(MAGPOOL_LOCKFREE, "to-stderr");
    char out[8192];
    mp_capture_t cap = mp_stderr_begin();
    int rc = magpool_stats_print(p, NULL, MAGPOOL_PRINT_JSON);
    mp_stderr_end(cap, out, sizeof out);
    cr_assert_eq(rc, 0);
    cr_assert(strncmp(out, "{\"name\": \"to-stderr\"", 20) == 0, "%s", out);
    cr_assert_eq(mp_count_lines(out), 1, "%s", out);
    magpool_destroy(p);
}

Test(print, all_lists_live_pools_only)
{
    char *txt = printed(NULL, MAGPOOL_PRINT_TEXT);
    cr_assert_str_eq(txt, "magpool: no live pools\n");
    free(txt);
    txt = printed(NULL, MAGPOOL_PRINT_JSON);
    cr_assert_str_eq(txt, "[]\n");
    free(txt);
    magpool_t *a = named(MAGPOOL_LOCKFREE, "pool-a");
    magpool_t *b = named(MAGPOOL_MUTEX, "pool-b");
    magpool_t *c = named(MAGPOOL_LOCKFREE, "pool-c");
    magpool_destroy(b);
    txt = printed(NULL, MAGPOOL_PRINT_TEXT);
    const char *pa = strstr(txt, "magpool: pool \"pool-a\""), *pc = strstr(txt, "magpool: pool \"pool-c\"");
    cr_assert(pa && pc && pa < pc, "oldest first:\n%s", txt);
    cr_assert_null(strstr(txt, "pool-b"), "a destroyed pool listed:\n%s", txt);
    free(txt);
    magpool_destroy(a);
    magpool_destroy(c);
}

/* ----------------------------------------------------------------- walk */

struct visits {
    int n;
    char names[16][MAGPOOL_NAME_MAX];
    magpool_t *destroy_on[2];     /* when visiting [0], destroy [0] and [1] */
};

static void record(magpool_t *p, void *ctx)
{
    struct visits *v = ctx;
    if (v->n < 16)
        snprintf(v->names[v->n], sizeof v->names[0], "%s", magpool_get_name(p));
    v->n++;
    if (p == v->destroy_on[0]) {
        magpool_destroy(v->destroy_on[1]); /* later in the walk */
        magpool_destroy(p);                /* the one being visited */
    }
}

Test(walk, visits_live_pools_oldest_first)
{
    struct visits v = { 0 };
    cr_assert_eq(magpool_walk(record, &v), 0);
    cr_assert_eq(v.n, 0);
    magpool_t *a = named(MAGPOOL_LOCKFREE, "a"), *b = named(MAGPOOL_MUTEX, "b");
    magpool_t *c = named(MAGPOOL_LOCKFREE, "c");
    magpool_destroy(b);
    magpool_t *d = named(MAGPOOL_MUTEX, "d");
    cr_assert_eq(magpool_walk(record, &v), 0);
    cr_assert_eq(v.n, 3);
    cr_assert_str_eq(v.names[0], "a");
    cr_assert_str_eq(v.names[1], "c");
    cr_assert_str_eq(v.names[2], "d");
    magpool_destroy(a);
    magpool_destroy(c);
    magpool_destroy(d);
}

Test(walk, callback_may_destroy_pools_it_owns)
{
    magpool_t *a = named(MAGPOOL_LOCKFREE, "a"), *b = named(MAGPOOL_LOCKFREE, "b");
    magpool_t *c = named(MAGPOOL_MUTEX, "c"), *d = named(MAGPOOL_LOCKFREE, "d");
    struct visits v = { .destroy_on = { b, d } };
    cr_assert_eq(magpool_walk(record, &v), 0);
    cr_assert_eq(v.n, 3, "d was destroyed before its turn: %d visits", v.n);
    cr_assert_str_eq(v.names[0], "a");
    cr_assert_str_eq(v.names[1], "b");
    cr_assert_str_eq(v.names[2], "c");
    struct visits w = { 0 };
    cr_assert_eq(magpool_walk(record, &w), 0);
    cr_assert_eq(w.n, 2);
    cr_assert_str_eq(w.names[0], "a");
    cr_assert_str_eq(w.names[1], "c");
    magpool_destroy(a);
    magpool_destroy(c);
}

static void count(magpool_t *p, void *ctx)
{
    (void)p;
    (*(int *)ctx)++;
}

/* Everything a monitoring callback would call: no lock is held. */
static void reenter(magpool_t *p, void *ctx)
{
    int *nested = ctx;
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(magpool_stats_print(p, f, MAGPOOL_PRINT_JSON), 0);
    magpool_report_leaks(p, f);
    cr_assert_eq(magpool_stats_print_all(f, MAGPOOL_PRINT_TEXT), 0);
    fclose(f);
    free(buf);
    cr_assert_eq(magpool_walk(count, nested), 0);
    magpool_trim(p, 0);
    void *blk = magpool_acquire(p);
    cr_assert_not_null(blk);
    magpool_release(p, blk);
}

BACKEND_TEST(walk, callback_may_reenter_the_library)
{
    magpool_t *a = named(backend, "a"), *b = named(backend, "b");
    int nested = 0;
    cr_assert_eq(magpool_walk(reenter, &nested), 0);
    cr_assert_eq(nested, 4, "[%s] two nested walks of two pools: %d", BN, nested);
    magpool_destroy(a);
    magpool_destroy(b);
}

struct racer {
    magpool_t *target;
    atomic_int in_callback, destroyed, destroyed_during_callback;
};

static void slow_visit(magpool_t *p, void *ctx)
{
    struct racer *r = ctx;
    if (p != r->target)
        return;
    atomic_store(&r->in_callback, 1);
    sleep_ms(150);
    atomic_store(&r->destroyed_during_callback, atomic_load(&r->destroyed));
    magpool_stats_t s; /* the pool is intact: ASan would see a use after free */
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    cr_assert_eq(s.blocks_outstanding, 1);
}

static void *destroyer(void *arg)
{
    struct racer *r = arg;
    while (!atomic_load(&r->in_callback))
        sleep_ms(1);
    magpool_destroy(r->target);
    atomic_store(&r->destroyed, 1);
    return NULL;
}

static void silent(const magpool_error_t *e, void *ctx)
{
    (void)e;
    (void)ctx;
}

Test(walk, destroy_in_another_thread_waits_for_the_callback)
{
    magpool_set_error_handler(silent, NULL); /* the target leaks one block */
    struct racer r = { .target = named(MAGPOOL_LOCKFREE, "target") };
    cr_assert_not_null(magpool_acquire(r.target));
    magpool_t *other = named(MAGPOOL_MUTEX, "other");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, destroyer, &r), 0);
    cr_assert_eq(magpool_walk(slow_visit, &r), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&r.in_callback), 1);
    cr_assert_eq(atomic_load(&r.destroyed_during_callback), 0,
                 "destroy finished while the callback still used the pool");
    cr_assert_eq(atomic_load(&r.destroyed), 1);
    struct visits v = { 0 };
    magpool_walk(record, &v);
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.names[0], "other");
    magpool_destroy(other);
    magpool_set_error_handler(NULL, NULL);
}

/* A walker blocked in its callback while the process forks: the child
 * destroys every pool without waiting for a walker that does not exist
 * there (it would hang: the watchdog turns that into a failure). */
struct stuck {
    mp_gate_t go;
    atomic_int inside;
};

static void stuck_visit(magpool_t *p, void *ctx)
{
    (void)p;
    struct stuck *s = ctx;
    atomic_store(&s->inside, 1);
    mp_gate_wait(&s->go);
}

static void *stuck_walker(void *arg)
{
    magpool_walk(stuck_visit, arg);
    return NULL;
}

static void expect_child_ok(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child: %s %d (a hang is killed by its watchdog alarm)",
              WIFSIGNALED(st) ? "signal" : "exit",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

Test(walk, fork_child_does_not_wait_for_the_parents_walkers)
{
    magpool_t *a = named(MAGPOOL_LOCKFREE, "a"), *b = named(MAGPOOL_MUTEX, "b");
    struct stuck s = { .inside = 0 };
    mp_gate_init(&s.go);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stuck_walker, &s), 0);
    while (!atomic_load(&s.inside))
        sleep_ms(1);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(10);
        magpool_destroy(a); /* pinned by the parent's walker, which is not here */
        magpool_destroy(b);
        struct visits v = { 0 };
        magpool_walk(record, &v);
        _exit(v.n == 0 ? 0 : 3);
    }
    expect_child_ok(pid);
    mp_gate_open(&s.go);
    pthread_join(t, NULL);
    mp_gate_destroy(&s.go);
    magpool_destroy(a);
    magpool_destroy(b);
}

/* fork() from inside a callback: the child's walk goes on with the
 * forking thread's pins, and may destroy what it has yet to visit. */
static pid_t forked_child;

static void fork_visit(magpool_t *p, void *ctx)
{
    struct visits *v = ctx;
    record(p, v);
    if (strcmp(magpool_get_name(p), "a") == 0) {
        forked_child = fork();
        cr_assert_geq(forked_child, 0);
        if (forked_child == 0) {
            alarm(10);
            magpool_destroy(v->destroy_on[1]); /* "c": yet to be visited */
        }
    }
}

Test(walk, fork_inside_callback_child_walk_goes_on)
{
    magpool_t *a = named(MAGPOOL_LOCKFREE, "a"), *b = named(MAGPOOL_LOCKFREE, "b");
    magpool_t *c = named(MAGPOOL_MUTEX, "c");
    struct visits v = { .destroy_on = { NULL, c } };
    cr_assert_eq(magpool_walk(fork_visit, &v), 0);
    if (forked_child == 0) { /* the child: a, b visited, c destroyed unvisited */
        bool ok = v.n == 2 && strcmp(v.names[1], "b") == 0;
        magpool_destroy(a);
        magpool_destroy(b);
        _exit(ok ? 0 : 4);
    }
    expect_child_ok(forked_child);
    cr_assert_eq(v.n, 3);
    cr_assert_str_eq(v.names[2], "c");
    magpool_destroy(a);
    magpool_destroy(b);
    magpool_destroy(c);
}

/* Two walks whose callbacks each destroy a pool the other has not visited
 * yet (found by review: each destroy waited for the other walk's pin). */
static magpool_t *w_first;
static pthread_barrier_t w_both_inside;

struct w_victim {
    magpool_t *victim;
    int done;
};

static void destroy_other(magpool_t *p, void *ctx)
{
    struct w_victim *v = ctx;
    if (p != w_first || v->done)
        return;
    v->done = 1;
    pthread_barrier_wait(&w_both_inside); /* both walks are inside fn(first) */
    magpool_destroy(v->victim);
}

static void *walk_destroying(void *ctx)
{
    magpool_walk(destroy_other, ctx);
    return NULL;
}

Test(walk, two_walks_destroying_each_others_pools_do_not_deadlock, .timeout = 30)
{
    magpool_config_t c = magpool_config_default(64);
    w_first = magpool_create(&c);
    struct w_victim v1 = { .victim = magpool_create(&c) }, v2 = { .victim = magpool_create(&c) };
    cr_assert(w_first && v1.victim && v2.victim);
    pthread_barrier_init(&w_both_inside, NULL, 2);
    pthread_t a, b;
    pthread_create(&a, NULL, walk_destroying, &v1);
    pthread_create(&b, NULL, walk_destroying, &v2);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert(v1.done && v2.done);
    pthread_barrier_destroy(&w_both_inside);
    magpool_destroy(w_first);
}

/* SPDX-License-Identifier: MIT */
/*
 * Statistics printers (after jemalloc's malloc_stats_print and mimalloc's
 * mi_stats_print_out): text for people, JSON for tools, one pool or every
 * live pool (magpool_walk, diag.c), and the at-exit report that the
 * environment variable MAGPOOL_SHOW_STATS asks for.
 *
 * Nothing here is on a fast path. A pool is printed from a snapshot (one
 * magpool_get_stats call, the name copied under its lock) taken before any
 * output, so no library lock is held while writing; each pool's lines are
 * written under the FILE's own lock, so concurrent printers do not
 * interleave inside a pool. Numbers are formatted without the C locale's
 * help (a program may have set LC_NUMERIC to one with a decimal comma,
 * which would break the JSON).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"

/* ---------------------------------------------------------------- fields */

/* Every field of magpool_stats_t, in the order printed. */
enum field_type { F_U64, F_SIZE, F_RATIO };

struct stat_field {
    const char *key;
    size_t off;
    enum field_type type;
};

#define STAT_FIELD(k, t) { #k, offsetof(magpool_stats_t, k), t }
static const struct stat_field stat_fields[] = {
    STAT_FIELD(acquires, F_U64),          STAT_FIELD(releases, F_U64),
    STAT_FIELD(hits, F_U64),              STAT_FIELD(misses, F_U64),
    STAT_FIELD(hit_rate, F_RATIO),        STAT_FIELD(grows, F_U64),
    STAT_FIELD(trims, F_U64),             STAT_FIELD(failed, F_U64),
    STAT_FIELD(blocks_total, F_SIZE),     STAT_FIELD(blocks_outstanding, F_SIZE),
    STAT_FIELD(bytes_reserved, F_SIZE),   STAT_FIELD(depot_gets, F_U64),
    STAT_FIELD(depot_puts, F_U64),        STAT_FIELD(steals, F_U64),
    STAT_FIELD(threads, F_U64),           STAT_FIELD(bytes_returned, F_U64),
    STAT_FIELD(magazines, F_SIZE),        STAT_FIELD(errors, F_U64),
    STAT_FIELD(reclaims, F_U64),          STAT_FIELD(spilled, F_SIZE),
};

/* A tripwire, not a limit: when magpool_stats_t gains a field, this fails
 * to compile until the field is added to stat_fields above (20 fields of 8
 * bytes on LP64). */
#if SIZE_MAX == UINT64_MAX
_Static_assert(sizeof(magpool_stats_t) == 20 * 8,
               "magpool_stats_t changed: update stat_fields in lib/print.c");
#endif

static const struct {
    unsigned bit;
    const char *name;
} diag_names[] = {
    { MAGPOOL_DIAG_CHECKED, "checked" },   { MAGPOOL_DIAG_REDZONE, "redzone" },
    { MAGPOOL_DIAG_ASAN, "asan" },         { MAGPOOL_DIAG_VALGRIND, "valgrind" },
    { MAGPOOL_DIAG_PASSTHROUGH, "passthrough" },
};

/* ---------------------------------------------------------------- output */

/* Where the text goes, and whether any write failed. */
struct sink {
    FILE *f;
    bool failed;
};

static __attribute__((format(printf, 2, 3))) void emit(struct sink *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(s->f, fmt, ap) < 0)
        s->failed = true;
    va_end(ap);
}

/* A ratio in [0, 1] (hit_rate) as "0.123456", whatever LC_NUMERIC says;
 * "null" when it is not a finite number >= 0 (never, for hit_rate). */
static void ratio_text(double v, char *buf, size_t cap)
{
    if (!isfinite(v) || v < 0.0 || v > 1e12) {
        snprintf(buf, cap, "null");
        return;
    }
    unsigned long long m = (unsigned long long)(v * 1e6 + 0.5); /* no libm */
    snprintf(buf, cap, "%llu.%06llu", m / 1000000u, m % 1000000u);
}

static void field_text(const magpool_stats_t *st, const struct stat_field *f, char *buf,
                       size_t cap)
{
    const char *at = (const char *)st + f->off;
    switch (f->type) {
    case F_U64:
        snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)(const void *)at);
        break;
    case F_SIZE:
        snprintf(buf, cap, "%zu", *(const size_t *)(const void *)at);
        break;
    case F_RATIO:
        ratio_text(*(const double *)(const void *)at, buf, cap);
        break;
    }
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* s as a JSON string literal: quotes, backslashes and control characters
 * escaped, bytes that are not well-formed UTF-8 replaced by U+FFFD (a name
 * cut at MAGPOOL_NAME_MAX - 1 bytes may end inside a character). */
static void json_string(struct sink *o, const char *s)
{
    char buf[MAGPOOL_NAME_MAX * 6 + 3];
    size_t n = 0;
    buf[n++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c && n < sizeof buf - 8;) {
        size_t len;
        if (*c == '"' || *c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)*c++;
        } else if (*c < 0x20) {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "\\u%04x", *c++);
        } else if (*c < 0x80) {
            buf[n++] = (char)*c++;
        } else if ((len = utf8_len(c)) != 0) {
            memcpy(buf + n, c, len);
            n += len;
            c += len;
        } else {
            n += (size_t)snprintf(buf + n, sizeof buf - n, "\\ufffd");
            c++;
        }
    }
    buf[n++] = '"';
    buf[n] = '\0';
    emit(o, "%s", buf);
}

/* ------------------------------------------------------------------ pools */

/* What one pool prints (struct pool_view, internal.h), taken before any
 * output. Also the publisher's snapshot of a pool (publish.c). */
int view_take(magpool_t *p, struct pool_view *v)
{
    if (magpool_get_stats(p, &v->st) != 0)
        return -1;
    v->pool = p;
    diag_pool_name(p, v->name, sizeof v->name);
    v->backend = p->mode == MODE_MUTEX ? "mutex" : "lockfree";
    v->layer = diag_layer(p);
    v->block_size = p->block_size;
    v->max_blocks = p->max_blocks;
    v->magazine_size = p->mode == MODE_MUTEX ? 0 : p->depot.rounds;
    v->diag = magpool_diagnostics(p);
    return 0;
}

static void diag_list_text(unsigned bits, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof diag_names / sizeof diag_names[0]; i++)
        if ((bits & diag_names[i].bit) && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? "," : "", diag_names[i].name);
    if (n == 0)
        snprintf(buf, cap, "none");
}

static void print_text(struct sink *o, const struct pool_view *v)
{
    char diags[64], val[32];
    diag_list_text(v->diag, diags, sizeof diags);
    emit(o, "magpool: pool \"%s\" (%p)\n", v->name, (const void *)v->pool);
    emit(o, "magpool:   %-20s %zu\n", "block_size", v->block_size);
    emit(o, "magpool:   %-20s %s\n", "backend", v->backend);
    emit(o, "magpool:   %-20s %zu%s\n", "max_blocks", v->max_blocks,
         v->max_blocks ? "" : " (unlimited)");
    emit(o, "magpool:   %-20s %u\n", "magazine_size", v->magazine_size);
    emit(o, "magpool:   %-20s %s\n", "layer", v->layer ? v->layer : "-");
    emit(o, "magpool:   %-20s %s\n", "diagnostics", diags);
    for (size_t i = 0; i < sizeof stat_fields / sizeof stat_fields[0]; i++) {
        field_text(&v->st, &stat_fields[i], val, sizeof val);
        emit(o, "magpool:   %-20s %s\n", stat_fields[i].key, val);
    }
}

/* One object on one line. */
static void print_json(struct sink *o, const struct pool_view *v)
{
    char val[32];
    emit(o, "{\"name\": ");
    json_string(o, v->name);
    emit(o, ", \"address\": \"%p\", \"block_size\": %zu, \"backend\": \"%s\", "
         "\"max_blocks\": %zu, \"magazine_size\": %u, \"layer\": ",
         (const void *)v->pool, v->block_size, v->backend, v->max_blocks, v->magazine_size);
    if (v->layer)
        json_string(o, v->layer);
    else
        emit(o, "null");
    emit(o, ", \"diagnostics\": [");
    for (size_t i = 0, k = 0; i < sizeof diag_names / sizeof diag_names[0]; i++)
        if (v->diag & diag_names[i].bit)
            emit(o, "%s\"%s\"", k++ ? ", " : "", diag_names[i].name);
    emit(o, "], \"stats\": {");
    for (size_t i = 0; i < sizeof stat_fields / sizeof stat_fields[0]; i++) {
        field_text(&v->st, &stat_fields[i], val, sizeof val);
        emit(o, "%s\"%s\": %s", i ? ", " : "", stat_fields[i].key, val);
    }
    emit(o, "}}");
}

/* Print p in the format flags say; `lead` goes before a JSON object. */
static int print_pool(struct sink *o, magpool_t *p, unsigned flags, const char *lead)
{
    struct pool_view v;
    if (view_take(p, &v) != 0)
        return -1;
    flockfile(o->f);
    if (flags & MAGPOOL_PRINT_JSON) {
        emit(o, "%s", lead);
        print_json(o, &v);
    } else {
        print_text(o, &v);
    }
    funlockfile(o->f);
    return 0;
}

static int finish(const struct sink *o)
{
    if (fflush(o->f) != 0 || o->failed) {
        errno = EIO;
        return -1;
    }
    return 0;
}

MAGPOOL_API int magpool_stats_print(magpool_t *p, FILE *out, unsigned flags)
{
    if (p == NULL || (flags & ~(unsigned)MAGPOOL_PRINT_JSON)) {
        errno = EINVAL;
        return -1;
    }
    struct sink o = { out ? out : stderr, false };
    if (print_pool(&o, p, flags, "") != 0)
        return -1;
    if (flags & MAGPOOL_PRINT_JSON)
        emit(&o, "\n");
    return finish(&o);
}

struct print_all {
    struct sink o;
    unsigned flags;
    size_t n;
};

static void print_one(magpool_t *p, void *arg)
{
    struct print_all *a = arg;
    if (print_pool(&a->o, p, a->flags, a->n ? ",\n  " : "\n  ") == 0)
        a->n++;
}

MAGPOOL_API int magpool_stats_print_all(FILE *out, unsigned flags)
{
    if (flags & ~(unsigned)MAGPOOL_PRINT_JSON) {
        errno = EINVAL;
        return -1;
    }
    struct print_all a = { { out ? out : stderr, false }, flags, 0 };
    bool json = flags & MAGPOOL_PRINT_JSON;
    if (json)
        emit(&a.o, "[");
    if (magpool_walk(print_one, &a) != 0)
        return -1; /* ENOMEM: nothing printed beyond the "[" */
    if (json)
        emit(&a.o, a.n ? "\n]\n" : "]\n");
    else if (a.n == 0)
        emit(&a.o, "magpool: no live pools\n");
    return finish(&a.o);
}

/* ------------------------------------------------------ MAGPOOL_SHOW_STATS */

/*
 * MAGPOOL_SHOW_STATS=1 (or "text") / =json: every live pool's statistics on
 * stderr at exit (atexit, like mimalloc's MIMALLOC_SHOW_STATS). Read when
 * the first pool is created. The handler prints only in the process whose
 * pid it holds: the one that registered it, or a forked child that created
 * a pool of its own (it then prints every pool it has, inherited ones too).
 * A child that only uses inherited pools prints nothing, so a fork does not
 * print the parent's pools twice.
 */
static pthread_once_t show_once = PTHREAD_ONCE_INIT;
static unsigned show_flags;
static _Atomic pid_t show_pid; /* 0: off */

static void show_stats_at_exit(void)
{
    /* relaxed: written by this process's own pool creations, or inherited */
    if (atomic_load_relaxed(&show_pid) != getpid())
        return;
    magpool_stats_print_all(stderr, show_flags);
}

static void show_stats_init(void)
{
    const char *v = getenv("MAGPOOL_SHOW_STATS");
    if (!diag_env_on("MAGPOOL_SHOW_STATS"))
        return;
    show_flags = strcasecmp(v, "json") == 0 ? MAGPOOL_PRINT_JSON : MAGPOOL_PRINT_TEXT;
    if (atexit(show_stats_at_exit) == 0)
        atomic_store_relaxed(&show_pid, getpid());
}

void print_pool_created(void)
{
    pthread_once(&show_once, show_stats_init);
    /* relaxed: a flag for this process's exit, no data behind it */
    pid_t shown = atomic_load_relaxed(&show_pid);
    if (shown != 0 && shown != getpid())
        atomic_store_relaxed(&show_pid, getpid()); /* a child's own pool */
}

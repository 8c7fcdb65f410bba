/* SPDX-License-Identifier: MIT */
/*
 * BufferManager (magpool_bufmgr_*): typed, 64-byte aligned buffers reused by
 * size class. Pins down alignment and size for every dtype, reuse without
 * ever handing out a too-small buffer, the large (mmap) path, the cap on idle
 * buffers, detection of foreign / interior / double releases, bad input.
 * (Age-based clear_unused with an injected clock: test_bufmgr_age.c.)
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <magpool.h>

static const magpool_dtype_t all_dtypes[] = {
    MAGPOOL_U8, MAGPOOL_I8, MAGPOOL_I16, MAGPOOL_I32, MAGPOOL_I64, MAGPOOL_F32, MAGPOOL_F64,
};
static const size_t dtype_bytes[] = {1, 1, 2, 4, 8, 4, 8};

static magpool_bufmgr_stats_t stats(magpool_bufmgr_t *bm)
{
    magpool_bufmgr_stats_t s;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &s), 0);
    return s;
}

Test(bufmgr, dtype_sizes)
{
    for (size_t i = 0; i < 7; i++)
        cr_assert_eq(magpool_dtype_size(all_dtypes[i]), dtype_bytes[i]);
    cr_assert_eq(magpool_dtype_size((magpool_dtype_t)7), 0);
    cr_assert_eq(magpool_dtype_size((magpool_dtype_t)-1), 0);
}

Test(bufmgr, every_dtype_is_64_byte_aligned_and_holds_count_elements)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    const size_t counts[] = {1, 2, 3, 7, 63, 64, 65, 100, 1000, 4095, 4097, 65536,
                             100000, 262144, 300000, 1048576, 1048577, 3000000};
    for (size_t d = 0; d < 7; d++) {
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
            size_t bytes = counts[i] * dtype_bytes[d];
            unsigned char *p = magpool_bufmgr_get(bm, counts[i], all_dtypes[d]);
            cr_assert_not_null(p, "dtype %zu count %zu", d, counts[i]);
            cr_assert_eq((uintptr_t)p % 64, 0, "dtype %zu count %zu: %p", d, counts[i], (void *)p);
            memset(p, 0x5A, bytes);
            cr_assert_eq(p[bytes - 1], 0x5A);
            cr_assert_eq(magpool_bufmgr_release_checked(bm, p), 0, "dtype %zu count %zu", d, counts[i]);
        }
    }
    /* and one above the largest class (mapped directly): its two ends */
    unsigned char *p = magpool_bufmgr_get(bm, MAGPOOL_BUFMGR_MAX_CLASS + 1, MAGPOOL_U8);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    p[0] = p[MAGPOOL_BUFMGR_MAX_CLASS] = 0x5A;
    cr_assert_eq(magpool_bufmgr_release_checked(bm, p), 0);
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.outstanding, 0);
    cr_assert_eq(s.bad_releases, 0);
    cr_assert_eq(s.gets, s.releases);
    cr_assert_eq(s.large_gets, 1, "only the buffer above MAGPOOL_BUFMGR_MAX_CLASS");
    magpool_bufmgr_destroy(bm);
}

/* Three buffers of one size held at once, each filled to its requested size:
 * if a class were too small, a fill would run over a neighbour's header and
 * that neighbour's release would be refused (or its pattern broken). Above
 * 4 MiB only the first and last 64 KiB are written: a buffer that large has
 * a mapping of its own, so what could be overrun lies right after its
 * end, and filling the classes up to 256 MiB would write gigabytes. */
static void check_no_overlap(magpool_bufmgr_t *bm, size_t bytes)
{
    unsigned char *v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = magpool_bufmgr_get(bm, bytes, MAGPOOL_U8);
        cr_assert_not_null(v[i]);
    }
    const size_t edge = (size_t)64 << 10;
    for (int i = 0; i < 3; i++) {
        if (bytes <= ((size_t)4 << 20)) {
            memset(v[i], 0x10 + i, bytes);
        } else {
            memset(v[i], 0x10 + i, edge);
            memset(v[i] + bytes - edge, 0x10 + i, edge);
        }
    }
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(v[i][0], 0x10 + i, "%zu bytes: buffer %d overwritten", bytes, i);
        cr_assert_eq(v[i][bytes - 1], 0x10 + i, "%zu bytes: buffer %d overwritten", bytes, i);
    }
    for (int i = 0; i < 3; i++)
        cr_assert_eq(magpool_bufmgr_release_checked(bm, v[i]), 0,
                     "%zu bytes: header of buffer %d damaged by a neighbour", bytes, i);
}

Test(bufmgr, no_class_is_too_small_at_any_boundary)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    for (size_t b = 1; b <= 2048; b++)
        check_no_overlap(bm, b);
    for (size_t pow = 2048; pow <= MAGPOOL_BUFMGR_MAX_CLASS; pow *= 2)
        for (size_t q = 0; q <= 4; q++) {
            size_t edge = pow + pow / 4 * q;
            if (edge > MAGPOOL_BUFMGR_MAX_CLASS + 1)
                continue;
            check_no_overlap(bm, edge - 1);
            check_no_overlap(bm, edge);
            check_no_overlap(bm, edge + 1);
        }
    cr_assert_eq(stats(bm).bad_releases, 0);
    magpool_bufmgr_destroy(bm);
}

Test(bufmgr, released_buffer_is_reused_by_the_same_class)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    float *p = magpool_bufmgr_get(bm, 250, MAGPOOL_F32); /* 1000 B: class 1024 */
    cr_assert_not_null(p);
    magpool_bufmgr_release(bm, p);
    void *q = magpool_bufmgr_get(bm, 1024, MAGPOOL_U8);
    cr_assert_eq(q, p, "same class, same thread: reused");
    magpool_bufmgr_release(bm, q);
    void *r = magpool_bufmgr_get(bm, 1025, MAGPOOL_U8);
    cr_assert_neq(r, p, "a larger request never gets the smaller buffer");
    magpool_bufmgr_release(bm, r);
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.gets, 3);
    cr_assert_eq(s.releases, 3);
    cr_assert_eq(s.classes_in_use, 2);
    magpool_bufmgr_destroy(bm);
}

static void *get_one(void *bm)
{
    return magpool_bufmgr_get(bm, 4096, MAGPOOL_F64);
}

Test(bufmgr, release_from_another_thread)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    pthread_t t;
    void *p;
    pthread_create(&t, NULL, get_one, bm);
    pthread_join(t, &p);
    cr_assert_not_null(p);
    cr_assert_eq(magpool_bufmgr_release_checked(bm, p), 0);
    cr_assert_eq(stats(bm).outstanding, 0);
    magpool_bufmgr_destroy(bm);
}

Test(bufmgr, large_buffers_are_mapped_and_unmapped)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    size_t n = MAGPOOL_BUFMGR_MAX_CLASS + 4096; /* only its last page is touched */
    double *p = magpool_bufmgr_get(bm, n / 8, MAGPOOL_F64);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    p[n / 8 - 1] = 1.0;
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.large_gets, 1);
    cr_assert_geq(s.bytes_reserved, n);
    cr_assert_eq(s.outstanding, 1);
    magpool_bufmgr_release(bm, p);
    s = stats(bm);
    cr_assert_eq(s.large_releases, 1);
    cr_assert_eq(s.bytes_reserved, 0, "the mapping went back to the OS");
    cr_assert_eq(s.outstanding, 0);
    errno = 0;
    cr_assert_eq(magpool_bufmgr_release_checked(bm, p), -1, "second release of a large buffer");
    cr_assert_eq(errno, EINVAL);
    magpool_bufmgr_destroy(bm);
}

Test(bufmgr, double_release_is_detected_and_harmless)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    void *p = magpool_bufmgr_get(bm, 100, MAGPOOL_I32);
    cr_assert_eq(magpool_bufmgr_release_checked(bm, p), 0);
    errno = 0;
    cr_assert_eq(magpool_bufmgr_release_checked(bm, p), -1);
    cr_assert_eq(errno, EINVAL);
    void *a = magpool_bufmgr_get(bm, 100, MAGPOOL_I32);
    void *b = magpool_bufmgr_get(bm, 100, MAGPOOL_I32);
    cr_assert_neq(a, b, "the buffer was not cached twice");
    magpool_bufmgr_release(bm, a);
    magpool_bufmgr_release(bm, b);
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.bad_releases, 1);
    cr_assert_eq(s.outstanding, 0);
    magpool_bufmgr_destroy(bm);
}

struct seen {
    int calls;
    void *buf;
    const char *what;
};

static void on_error(void *ctx, const char *what, void *buf)
{
    struct seen *s = ctx;
    s->calls++;
    s->buf = buf;
    s->what = what;
}

Test(bufmgr, foreign_and_interior_pointers_are_detected)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    magpool_bufmgr_t *other = magpool_bufmgr_create(0);
    struct seen seen = {0};
    magpool_bufmgr_set_error_handler(bm, on_error, &seen);

    void *heap = aligned_alloc(64, 4096);
    _Alignas(64) char stack[256];
    char *mine = magpool_bufmgr_get(bm, 4096, MAGPOOL_U8);
    char *big = magpool_bufmgr_get(bm, (size_t)2 << 20, MAGPOOL_U8);
    void *theirs = magpool_bufmgr_get(other, 4096, MAGPOOL_U8);
    void *unmapped = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(unmapped, 8192);
    void *bad[] = {
        heap, stack + 64, mine + 1, mine + 64, mine + 4096, big + 64, big + 4096,
        theirs, (char *)unmapped + 64, (void *)(uintptr_t)64, (void *)(UINTPTR_MAX & ~(uintptr_t)63),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_assert_eq(magpool_bufmgr_release_checked(bm, bad[i]), -1, "bad pointer %zu accepted", i);
        cr_assert_eq(errno, EINVAL);
        errno = 0;
        magpool_bufmgr_release(bm, bad[i]);
        cr_assert_eq(errno, EINVAL);
        cr_assert_eq(seen.calls, (int)i + 1);
        cr_assert_eq(seen.buf, bad[i]);
        cr_assert_not_null(seen.what);
    }
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.bad_releases, 2 * (sizeof bad / sizeof bad[0]));
    cr_assert_eq(s.outstanding, 2, "the manager's own buffers are untouched");
    cr_assert_eq(magpool_bufmgr_release_checked(bm, mine), 0);
    cr_assert_eq(magpool_bufmgr_release_checked(bm, big), 0);
    cr_assert_eq(magpool_bufmgr_release_checked(other, theirs), 0);
    cr_assert_eq(stats(bm).outstanding, 0);
    free(heap);
    magpool_bufmgr_destroy(other);
    magpool_bufmgr_destroy(bm);
}

static size_t resident_pages(void *p, size_t len)
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)(ps - 1);
    size_t n = (hi - lo) / ps, r = 0;
    unsigned char *vec = malloc(n ? n : 1);
    cr_assert_eq(mincore((void *)lo, hi - lo, vec), 0);
    for (size_t i = 0; i < n; i++)
        r += vec[i] & 1;
    free(vec);
    return r;
}

Test(bufmgr, idle_buffers_are_capped_at_max_buffers)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(4);
    size_t len = (size_t)256 << 10;
    char *v[10];
    for (int i = 0; i < 10; i++) {
        v[i] = magpool_bufmgr_get(bm, len, MAGPOOL_U8);
        cr_assert_not_null(v[i]);
        memset(v[i], 1, len);
    }
    for (int i = 0; i < 10; i++) {
        magpool_bufmgr_release(bm, v[i]);
        magpool_bufmgr_stats_t s = stats(bm);
        cr_assert_eq(s.idle_buffers, (size_t)(i < 4 ? i + 1 : 4), "after %d releases", i + 1);
    }
    for (int i = 0; i < 4; i++)
        cr_assert_gt(resident_pages(v[i], len), 0, "kept buffer %d stays resident", i);
    for (int i = 4; i < 10; i++)
        cr_assert_eq(resident_pages(v[i], len), 0, "over-cap buffer %d returned to the OS", i);
    /* Everything still works, and reuse drains the idle count. */
    for (int i = 0; i < 10; i++)
        cr_assert_not_null(v[i] = magpool_bufmgr_get(bm, len, MAGPOOL_U8));
    cr_assert_eq(stats(bm).idle_buffers, 0);
    for (int i = 0; i < 10; i++)
        magpool_bufmgr_release(bm, v[i]);
    cr_assert_eq(stats(bm).idle_buffers, 4);
    magpool_bufmgr_destroy(bm);
}

/* Buffers above 1 MiB come from size classes too (up to
 * MAGPOOL_BUFMGR_MAX_CLASS): a second get of the same size reuses the
 * released buffer, its pages still resident, without mapping anything. */
Test(bufmgr, buffers_above_1_mib_are_pooled_and_reused)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    const size_t n = 1000000, len = n * 8; /* 1e6 float64 */
    double *a = magpool_bufmgr_get(bm, n, MAGPOOL_F64);
    cr_assert_not_null(a);
    cr_assert_eq((uintptr_t)a % 64, 0);
    for (size_t i = 0; i < n; i++)
        a[i] = (double)i;
    cr_assert_geq(magpool_bufmgr_capacity(bm, a), n);
    magpool_bufmgr_release(bm, a);
    double *b = magpool_bufmgr_get(bm, n, MAGPOOL_F64);
    cr_assert_eq(b, a, "the released buffer is reused");
    cr_assert_geq(resident_pages(b, len), len / (size_t)sysconf(_SC_PAGESIZE) - 1,
                  "its pages are still resident: no fresh mapping to fault in");
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.large_gets, 0, "not mapped directly");
    cr_assert_eq(s.misses, 1, "one slab mapped, once");
    cr_assert_eq(s.hits, 1);
    cr_assert_eq(s.classes_in_use, 1);
    cr_assert_geq(s.bytes_reserved, len);
    /* every dtype, at and around the top class, untouched beyond a line */
    for (size_t d = 0; d < 7; d++) {
        size_t top = MAGPOOL_BUFMGR_MAX_CLASS / dtype_bytes[d];
        unsigned char *t = magpool_bufmgr_get(bm, top, all_dtypes[d]);
        cr_assert_not_null(t, "dtype %zu: the largest class", d);
        cr_assert_eq((uintptr_t)t % 64, 0);
        t[MAGPOOL_BUFMGR_MAX_CLASS - 1] = 1;
        cr_assert_eq(magpool_bufmgr_capacity(bm, t), top);
        cr_assert_eq(magpool_bufmgr_release_checked(bm, t), 0);
    }
    cr_assert_eq(stats(bm).large_gets, 0);
    magpool_bufmgr_release(bm, b);
    magpool_bufmgr_destroy(bm);
}

/* A large pooled buffer over the cap gives its pages back at release, and
 * clear_unused unmaps the idle ones: memory goes back to the OS (mincore). */
Test(bufmgr, large_pooled_buffers_return_memory_to_the_os)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(1);
    cr_assert_not_null(bm);
    const size_t n = 1000000, len = n * 8;
    const size_t pages = len / (size_t)sysconf(_SC_PAGESIZE);
    double *v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = magpool_bufmgr_get(bm, n, MAGPOOL_F64);
        cr_assert_not_null(v[i]);
        for (size_t k = 0; k < n; k++)
            v[i][k] = 1.0;
    }
    for (int i = 0; i < 3; i++)
        magpool_bufmgr_release(bm, v[i]);
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.idle_buffers, 1);
    cr_assert_eq(s.large_gets, 0);
    cr_assert_geq(resident_pages(v[0], len), pages - 1, "the one kept under the cap");
    for (int i = 1; i < 3; i++)
        cr_assert_leq(resident_pages(v[i], len), 1, "over-cap buffer %d purged", i);
    size_t reserved = s.bytes_reserved;
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 0.0), 1, "the counted idle buffer");
    s = stats(bm);
    cr_assert_eq(s.bytes_reserved, 0, "every slab unmapped (was %zu bytes)", reserved);
    cr_assert_eq(s.idle_buffers, 0);
    unsigned char vec[1];
    for (int i = 0; i < 3; i++) {
        errno = 0;
        cr_assert_eq(mincore((void *)((uintptr_t)v[i] & ~(uintptr_t)4095), 4096, vec), -1);
        cr_assert_eq(errno, ENOMEM, "buffer %d's mapping is gone", i);
    }
    magpool_bufmgr_destroy(bm);
}

/* Without a cap, idle buffers above 1 MiB are bounded in bytes: up to 0.2
 * they were unmapped on release, so a program that never calls clear_unused
 * must not find them all kept resident now. */
Test(bufmgr, an_uncapped_manager_keeps_at_most_idle_large_bytes_of_big_buffers)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    const size_t len = (size_t)8 << 20, pages = len / (size_t)sysconf(_SC_PAGESIZE);
    const int n = 12;
    const size_t kept = MAGPOOL_BUFMGR_IDLE_LARGE / (len + MAGPOOL_BUFMGR_ALIGN); /* 7 */
    char *v[12];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            v[i] = magpool_bufmgr_get(bm, len, MAGPOOL_U8);
            cr_assert_not_null(v[i]);
            memset(v[i], 1, len);
        }
        for (int i = 0; i < n; i++)
            magpool_bufmgr_release(bm, v[i]);
        size_t resident = 0;
        for (int i = 0; i < n; i++) {
            size_t r = resident_pages(v[i], len);
            if ((size_t)i < kept)
                cr_assert_geq(r, pages - 1, "round %d: buffer %d is kept", round, i);
            else
                cr_assert_leq(r, 1, "round %d: buffer %d beyond the bound purged", round, i);
            resident += r;
        }
        cr_assert_leq(resident * (size_t)sysconf(_SC_PAGESIZE), MAGPOOL_BUFMGR_IDLE_LARGE);
    }
    /* Many classes released one at a time (2..128 MiB): the bound holds
     * across classes, and reuse keeps working. */
    size_t resident = 0;
    char *w[7];
    for (int c = 0; c < 7; c++) {
        size_t l = (size_t)2 << (20 + c);
        cr_assert_not_null(w[c] = magpool_bufmgr_get(bm, l, MAGPOOL_U8));
        memset(w[c], 2, l);
        magpool_bufmgr_release(bm, w[c]);
    }
    for (int c = 0; c < 7; c++)
        resident += resident_pages(w[c], (size_t)2 << (20 + c));
    for (int i = 0; i < n; i++)
        resident += resident_pages(v[i], len);
    cr_assert_leq(resident * (size_t)sysconf(_SC_PAGESIZE),
                  MAGPOOL_BUFMGR_IDLE_LARGE + 32 * (size_t)sysconf(_SC_PAGESIZE),
                  "%zu pages resident", resident);
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.outstanding, 0);
    cr_assert_eq(s.large_gets, 0, "all of them from size classes");
    magpool_bufmgr_destroy(bm);
}

Test(bufmgr, clear_unused_zero_frees_every_idle_buffer_and_counts_them)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(100);
    size_t len = (size_t)512 << 10; /* one buffer per slab from 64 KiB up */
    void *v[3];
    for (int i = 0; i < 3; i++)
        v[i] = magpool_bufmgr_get(bm, len, MAGPOOL_U8);
    void *held = magpool_bufmgr_get(bm, len, MAGPOOL_U8);
    for (int i = 0; i < 3; i++)
        magpool_bufmgr_release(bm, v[i]);
    size_t reserved = stats(bm).bytes_reserved;
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 0.0), 3);
    magpool_bufmgr_stats_t s = stats(bm);
    cr_assert_eq(s.idle_buffers, 0);
    cr_assert_lt(s.bytes_reserved, reserved);
    cr_assert_eq(s.outstanding, 1);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 0.0), 0, "nothing idle any more");
    magpool_bufmgr_release(bm, held);
    /* after its slab is gone, a stale pointer is refused, not read */
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, 0.0), 1);
    errno = 0;
    cr_assert_eq(magpool_bufmgr_release_checked(bm, v[0]), -1);
    cr_assert_eq(errno, EINVAL);
    magpool_bufmgr_destroy(bm);
}

Test(bufmgr, bad_input_on_every_entry_point)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    struct { magpool_bufmgr_t *bm; size_t count; magpool_dtype_t dt; } cases[] = {
        {NULL, 10, MAGPOOL_U8},
        {bm, 0, MAGPOOL_F32},
        {bm, 10, (magpool_dtype_t)7},
        {bm, 10, (magpool_dtype_t)-1},
        {bm, SIZE_MAX, MAGPOOL_U8},
        {bm, SIZE_MAX / 4, MAGPOOL_F64},   /* count x 8 overflows */
        {bm, SIZE_MAX / 8 + 1, MAGPOOL_I64},
        {bm, (size_t)PTRDIFF_MAX, MAGPOOL_U8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        cr_assert_null(magpool_bufmgr_get(cases[i].bm, cases[i].count, cases[i].dt), "case %zu", i);
        cr_assert_eq(errno, EINVAL, "case %zu", i);
    }
    int x;
    errno = 0;
    magpool_bufmgr_release(NULL, &x);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_bufmgr_release_checked(NULL, &x), -1);
    cr_assert_eq(errno, EINVAL);
    magpool_bufmgr_release(bm, NULL);
    cr_assert_eq(magpool_bufmgr_release_checked(bm, NULL), 0);
    errno = 0;
    cr_assert_eq(magpool_bufmgr_clear_unused(NULL, 0.0), 0);
    cr_assert_eq(errno, EINVAL);
    /* An age: negative or NaN means everything idle now, never an error
     * (magpool.h, "One set of rules"); nothing is idle here. */
    errno = 0;
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, -1.0), 0);
    cr_assert_eq(magpool_bufmgr_clear_unused(bm, NAN), 0);
    cr_assert_eq(errno, 0);
    magpool_bufmgr_stats_t s;
    errno = 0;
    cr_assert_eq(magpool_bufmgr_get_stats(NULL, &s), -1);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, NULL), -1);
    cr_assert_eq(errno, EINVAL);
    magpool_bufmgr_set_error_handler(NULL, NULL, NULL);
    magpool_bufmgr_destroy(NULL);
    s = stats(bm);
    cr_assert_eq(s.gets + s.failed + s.bad_releases, 0, "bad input is not counted as use");
    magpool_bufmgr_destroy(bm);
}

Test(bufmgr, destroy_frees_outstanding_buffers)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(magpool_bufmgr_get(bm, (size_t)(i + 1) * 1000, MAGPOOL_I16));
    cr_assert_not_null(magpool_bufmgr_get(bm, (size_t)5 << 20, MAGPOOL_U8));
    cr_assert_eq(stats(bm).outstanding, 101);
    magpool_bufmgr_destroy(bm); /* ASan's leak check: nothing left behind */
}

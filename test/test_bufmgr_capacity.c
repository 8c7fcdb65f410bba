/* SPDX-License-Identifier: MIT */
/*
 * magpool_bufmgr_capacity: the size class of a live buffer in elements of
 * its dtype (the whole page-rounded mapping for a large buffer), and 0 +
 * EINVAL for anything that is not a live buffer of the manager.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <magpool.h>

static const magpool_dtype_t all_dtypes[] = {
    MAGPOOL_U8, MAGPOOL_I8, MAGPOOL_I16, MAGPOOL_I32, MAGPOOL_I64, MAGPOOL_F32, MAGPOOL_F64,
};

/* The documented classes, written out independently of lib/bufmgr.c: 64,
 * 128, 192, 256 bytes, then four per power of two up to
 * MAGPOOL_BUFMGR_MAX_CLASS (256 MiB). */
static size_t class_bytes(size_t bytes)
{
    if (bytes <= 256)
        return (bytes + 63) / 64 * 64;
    size_t pow = 256;
    while (pow * 2 < bytes)
        pow *= 2;
    size_t step = pow / 4;
    return (bytes + step - 1) / step * step;
}

/* Above the largest class: header (64 bytes) + data, rounded to pages. */
static size_t large_bytes(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (64 + bytes + page - 1) / page * page - 64;
}

static size_t expected(size_t count, magpool_dtype_t d)
{
    size_t esz = magpool_dtype_size(d), bytes = count * esz;
    return (bytes <= MAGPOOL_BUFMGR_MAX_CLASS ? class_bytes(bytes) : large_bytes(bytes)) / esz;
}

Test(capacity, examples)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    static const struct { size_t count; magpool_dtype_t d; size_t cap; } ex[] = {
        { 1, MAGPOOL_U8, 64 },          /* smallest class                  */
        { 64, MAGPOOL_U8, 64 },
        { 65, MAGPOOL_I8, 128 },
        { 100, MAGPOOL_F64, 112 },      /* 800 B -> the 896-byte class     */
        { 257, MAGPOOL_U8, 320 },
        { 1000, MAGPOOL_I32, 1024 },    /* 4000 B -> 4096                  */
        { 1025, MAGPOOL_I16, 1280 },    /* 2050 B -> 2560                  */
        { 131072, MAGPOOL_F64, 131072 },/* exactly 1 MiB (0.1's last class) */
        { 131073, MAGPOOL_F64, 163840 },/* just above: the 1.25 MiB class  */
        { 1000000, MAGPOOL_F64, 1048576 }, /* 8 MB -> the 8 MiB class       */
        { 33554432, MAGPOOL_F64, 33554432 }, /* exactly the largest class   */
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        void *b = magpool_bufmgr_get(bm, ex[i].count, ex[i].d);
        cr_assert_not_null(b);
        errno = 0;
        size_t cap = magpool_bufmgr_capacity(bm, b);
        cr_assert_eq(cap, ex[i].cap, "count %zu dtype %d: capacity %zu, want %zu (errno %d)",
                     ex[i].count, (int)ex[i].d, cap, ex[i].cap, errno);
        magpool_bufmgr_release(bm, b);
    }
    magpool_bufmgr_destroy(bm);
}

/* Every dtype, counts around class edges and on both sides of the large
 * threshold: the capacity is the class, never less than asked. */
Test(capacity, every_dtype_and_size_is_its_class)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    static const size_t counts[] = { 1, 2, 3, 31, 32, 33, 63, 64, 65, 100, 255, 256, 257,
                                     1000, 4095, 4096, 4097, 65535, 65536, 100000, 131072,
                                     131073, 262144, 1048576, 1048577, 3000000,
                                     33554431, 33554432, 33554433 };
    for (size_t d = 0; d < sizeof all_dtypes / sizeof all_dtypes[0]; d++)
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
            size_t n = counts[i];
            void *b = magpool_bufmgr_get(bm, n, all_dtypes[d]);
            cr_assert_not_null(b, "dtype %zu count %zu", d, n);
            size_t cap = magpool_bufmgr_capacity(bm, b);
            cr_assert_geq(cap, n, "dtype %zu count %zu: capacity %zu < count", d, n, cap);
            cr_assert_eq(cap, expected(n, all_dtypes[d]), "dtype %zu count %zu: capacity %zu, "
                         "want %zu", d, n, cap, expected(n, all_dtypes[d]));
            cr_assert_eq(magpool_bufmgr_release_checked(bm, b), 0);
        }
    magpool_bufmgr_destroy(bm);
}

/* The whole capacity is usable: filling it does not touch a neighbour. */
Test(capacity, whole_capacity_is_usable)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    static const size_t counts[] = { 1, 70, 700, 5000, 300000 };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        enum { K = 4 };
        unsigned char *b[K];
        size_t cap[K];
        for (int j = 0; j < K; j++) {
            b[j] = magpool_bufmgr_get(bm, counts[i], MAGPOOL_F32);
            cr_assert_not_null(b[j]);
            cap[j] = magpool_bufmgr_capacity(bm, b[j]) * 4;
            memset(b[j], 0x10 + j, cap[j]);
        }
        for (int j = 0; j < K; j++)
            for (size_t x = 0; x < cap[j]; x++)
                cr_assert_eq(b[j][x], 0x10 + j, "count %zu buffer %d byte %zu overwritten",
                             counts[i], j, x);
        for (int j = 0; j < K; j++)
            cr_assert_eq(magpool_bufmgr_release_checked(bm, b[j]), 0);
    }
    magpool_bufmgr_stats_t s;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &s), 0);
    cr_assert_eq(s.bad_releases, 0);
    magpool_bufmgr_destroy(bm);
}

/* A reused block reports the dtype of its current get. */
Test(capacity, reused_buffer_reports_its_new_dtype)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    cr_assert_not_null(bm);
    void *a = magpool_bufmgr_get(bm, 100, MAGPOOL_F64); /* 896-byte class */
    cr_assert_eq(magpool_bufmgr_capacity(bm, a), 112);
    magpool_bufmgr_release(bm, a);
    void *b = magpool_bufmgr_get(bm, 800, MAGPOOL_U8);   /* same class */
    cr_assert_eq(b, a, "the released buffer was not reused (test premise)");
    cr_assert_eq(magpool_bufmgr_capacity(bm, b), 896);
    magpool_bufmgr_release(bm, b);
    magpool_bufmgr_destroy(bm);
}

static void expect_einval(magpool_bufmgr_t *bm, const void *buf, const char *what)
{
    errno = 0;
    size_t cap = magpool_bufmgr_capacity(bm, buf);
    cr_assert_eq(cap, 0, "%s: capacity %zu, want 0", what, cap);
    cr_assert_eq(errno, EINVAL, "%s: errno %d, want EINVAL", what, errno);
}

Test(capacity, not_a_live_buffer_is_einval)
{
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0), *other = magpool_bufmgr_create(0);
    cr_assert(bm && other);
    unsigned char *small = magpool_bufmgr_get(bm, 100, MAGPOOL_F32);
    unsigned char *large = magpool_bufmgr_get(bm, 1 << 20, MAGPOOL_F32); /* 4 MiB */
    unsigned char *theirs = magpool_bufmgr_get(other, 100, MAGPOOL_F32);
    cr_assert(small && large && theirs);
    _Alignas(64) static unsigned char foreign[256];

    expect_einval(NULL, small, "NULL manager");
    expect_einval(bm, NULL, "NULL buffer");
    expect_einval(bm, foreign + 64, "foreign static memory");
    expect_einval(bm, small + 1, "misaligned pointer");
    expect_einval(bm, small + 64, "interior pointer (pooled)");
    expect_einval(bm, large + 4096, "interior pointer (large)");
    expect_einval(bm, theirs, "another manager's buffer");
    cr_assert_eq(magpool_bufmgr_capacity(other, theirs), 112, "its own manager knows it");

    cr_assert_gt(magpool_bufmgr_capacity(bm, small), 0);
    cr_assert_gt(magpool_bufmgr_capacity(bm, large), 0);
    magpool_bufmgr_release(bm, small);
    magpool_bufmgr_release(bm, large); /* unmapped: must not be read */
    expect_einval(bm, small, "released pooled buffer");
    expect_einval(bm, large, "released large buffer");

    magpool_bufmgr_stats_t s;
    cr_assert_eq(magpool_bufmgr_get_stats(bm, &s), 0);
    cr_assert_eq(s.bad_releases, 0, "capacity queries counted as bad releases");
    cr_assert_eq(s.outstanding, 0);
    magpool_bufmgr_release(other, theirs);
    magpool_bufmgr_destroy(bm);
    magpool_bufmgr_destroy(other);
}

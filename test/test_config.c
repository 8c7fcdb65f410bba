/* SPDX-License-Identifier: MIT */
/* Configuration defaults and magpool_create() validation. */
#include <math.h>

#include "helpers.h"

Test(config, default_has_documented_values)
{
    size_t sizes[] = {1, 48, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        magpool_config_t c = magpool_config_default(sizes[i]);
        cr_assert_eq(c.block_size, sizes[i]);
        cr_assert_eq(c.align, 16, "align %zu", c.align);
        cr_assert_eq(c.initial_blocks, 10, "initial_blocks %zu", c.initial_blocks);
        cr_assert_eq(c.max_blocks, 0, "max_blocks %zu", c.max_blocks);
        cr_assert(c.grow_factor == 2.0, "grow_factor %g", c.grow_factor);
        cr_assert_eq(c.magazine_size, 0, "magazine_size %u", c.magazine_size);
        cr_assert_eq(c.flags, 0, "flags %#x", c.flags);
        cr_assert_eq(c.backend, MAGPOOL_LOCKFREE, "backend %d", (int)c.backend);
    }
}

Test(config, default_for_zero_block_size_does_not_fail)
{
    /* Pure function: validation is create's job. */
    magpool_config_t c = magpool_config_default(0);
    cr_assert_eq(c.block_size, 0);
    cr_assert(c.grow_factor == 2.0);
    errno = 0;
    cr_assert_null(magpool_create(&c));
    cr_assert_eq(errno, EINVAL, "errno %d", errno);
}

Test(config, version_is_the_headers)
{
    const char *v = magpool_version();
    cr_assert_not_null(v);
    cr_assert_str_eq(v, MAGPOOL_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MAGPOOL_VERSION_MAJOR, MAGPOOL_VERSION_MINOR,
             MAGPOOL_VERSION_PATCH);
    cr_assert_str_eq(v, want, "library %s vs header %s", v, want);
}

Test(config, create_null_config_is_einval)
{
    errno = 0;
    cr_assert_null(magpool_create(NULL));
    cr_assert_eq(errno, EINVAL, "errno %d", errno);
}

static void expect_einval(magpool_config_t c, const char *what, magpool_backend_t backend)
{
    errno = 0;
    magpool_t *p = magpool_create(&c);
    int e = errno;
    if (p)
        magpool_destroy(p);
    cr_assert_null(p, "[%s] create accepted %s", BN, what);
    cr_assert_eq(e, EINVAL, "[%s] %s: errno %d (%s), want EINVAL", BN, what, e, strerror(e));
}

BACKEND_TEST(config, create_zero_block_size_is_einval)
{
    expect_einval(mp_cfg(backend, 0), "block_size 0", backend);
}

BACKEND_TEST(config, create_align_not_power_of_two_is_einval)
{
    size_t bad[] = {3, 6, 12, 24, 48, 100, 4097, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        magpool_config_t c = mp_cfg(backend, 64);
        c.align = bad[i];
        char what[64];
        snprintf(what, sizeof what, "align %zu", bad[i]);
        expect_einval(c, what, backend);
    }
}

BACKEND_TEST(config, create_align_above_1mib_is_einval)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.align = (size_t)2 << 20;
    expect_einval(c, "align 2 MiB", backend);
    c.align = (size_t)1 << 40;
    expect_einval(c, "align 2^40", backend);
}

BACKEND_TEST(config, create_grow_factor_zero_is_the_default)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.grow_factor = 0.0;
    magpool_t *p = mp_create_ok(&c);
    magpool_destroy(p);
}

BACKEND_TEST(config, create_grow_factor_not_a_finite_factor_above_one_is_einval)
{
    double bad[] = {1.0, 0.999, 0.5, -2.0, -INFINITY, NAN, -NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        magpool_config_t c = mp_cfg(backend, 64);
        c.grow_factor = bad[i];
        char what[64];
        snprintf(what, sizeof what, "grow_factor %g", bad[i]);
        expect_einval(c, what, backend);
    }
}

Test(config, create_unknown_backend_is_einval)
{
    int bad[] = {2, 3, -1, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        magpool_config_t c = magpool_config_default(64);
        magpool_backend_t backend = (magpool_backend_t)bad[i];
        c.backend = backend;
        char what[64];
        snprintf(what, sizeof what, "backend %d", bad[i]);
        expect_einval(c, what, backend);
    }
}

BACKEND_TEST(config, create_unknown_flags_is_einval)
{
    unsigned bad[] = {1u << 2, 1u << 3, 1u << 31, ~0u,
                      MAGPOOL_CHECKED | (1u << 5)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        magpool_config_t c = mp_cfg(backend, 64);
        c.flags = bad[i];
        char what[64];
        snprintf(what, sizeof what, "flags %#x", bad[i]);
        expect_einval(c, what, backend);
    }
}

BACKEND_TEST(config, create_size_times_initial_overflow_is_einval)
{
    magpool_config_t c = mp_cfg(backend, SIZE_MAX / 4);
    c.initial_blocks = 8; /* SIZE_MAX/4 * 8 wraps around */
    expect_einval(c, "block_size SIZE_MAX/4 x 8 initial blocks", backend);

    c = mp_cfg(backend, (SIZE_MAX / 1000) + 1);
    c.initial_blocks = 1000;
    expect_einval(c, "block_size (SIZE_MAX/1000+1) x 1000 initial blocks", backend);
}

BACKEND_TEST(config, create_huge_block_size_is_einval)
{
    size_t huge[] = {SIZE_MAX, SIZE_MAX / 2, SIZE_MAX - 15};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        magpool_config_t c = mp_cfg(backend, huge[i]); /* default initial_blocks 10 */
        char what[64];
        snprintf(what, sizeof what, "block_size %zu with 10 initial blocks", huge[i]);
        expect_einval(c, what, backend);
    }
}

BACKEND_TEST(config, create_huge_single_block_is_einval)
{
    /* One block of 2^63 bytes overflows any 64-bit address space. */
    magpool_config_t c = mp_cfg(backend, SIZE_MAX / 2);
    c.initial_blocks = 1;
    expect_einval(c, "block_size SIZE_MAX/2 x 1 initial block", backend);
}

BACKEND_TEST(config, create_accepts_every_valid_power_of_two_align)
{
    size_t ok[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 4096, (size_t)1 << 20};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        magpool_config_t c = mp_cfg(backend, 24);
        c.align = ok[i];
        c.initial_blocks = 2;
        magpool_t *p = mp_create_ok(&c);
        void *b = magpool_acquire(p);
        cr_assert_not_null(b, "[%s] acquire with align %zu", BN, ok[i]);
        size_t want = ok[i] ? ok[i] : 16;
        cr_assert_eq((uintptr_t)b % want, 0, "[%s] %p not aligned to %zu", BN, b, want);
        magpool_release(p, b);
        magpool_destroy(p);
    }
}

BACKEND_TEST(config, create_accepts_both_valid_flags)
{
    unsigned ok[] = {0, MAGPOOL_PREFAULT, MAGPOOL_CHECKED, MAGPOOL_PREFAULT | MAGPOOL_CHECKED};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        magpool_config_t c = mp_cfg(backend, 64);
        c.flags = ok[i];
        magpool_t *p = mp_create_ok(&c);
        void *b = magpool_acquire(p);
        cr_assert_not_null(b, "[%s] flags %#x", BN, ok[i]);
        memset(b, 0x5a, 64);
        magpool_release(p, b);
        magpool_destroy(p);
    }
}

BACKEND_TEST(config, create_initial_above_max_is_capped_not_an_error)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 50;
    c.max_blocks = 5;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s = mp_stats(p, backend);
    cr_assert_leq(s.blocks_total, 5, "[%s] blocks_total %zu above max_blocks 5", BN,
                  s.blocks_total);
    void *b[6];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s] acquire %d of 5", BN, i);
    errno = 0;
    b[5] = magpool_acquire(p);
    cr_assert_null(b[5], "[%s] 6th acquire succeeded with max_blocks 5", BN);
    cr_assert_eq(errno, ENOMEM, "[%s] errno %d", BN, errno);
    for (int i = 0; i < 5; i++)
        magpool_release(p, b[i]);
    magpool_destroy(p);
}

BACKEND_TEST(config, create_initial_zero_is_valid)
{
    magpool_config_t c = mp_cfg(backend, 64);
    c.initial_blocks = 0;
    magpool_t *p = mp_create_ok(&c);
    magpool_stats_t s0 = mp_stats(p, backend);
    void *b = magpool_acquire(p);
    cr_assert_not_null(b, "[%s]", BN);
    magpool_stats_t s1 = mp_stats(p, backend);
    cr_assert_eq(s1.acquires, 1, "[%s]", BN);
    cr_assert_geq(s1.blocks_total, 1, "[%s] blocks_total %zu", BN, s1.blocks_total);
    if (s0.blocks_total == 0) {
        /* nothing was idle: the first acquire had to grow */
        cr_assert_eq(s1.misses, 1, "[%s] misses %llu", BN, (unsigned long long)s1.misses);
        cr_assert_gt(s1.grows, s0.grows, "[%s] grows %llu -> %llu", BN,
                     (unsigned long long)s0.grows, (unsigned long long)s1.grows);
    }
    magpool_release(p, b);
    magpool_destroy(p);
}

BACKEND_TEST(config, block_size_reports_configured_size)
{
    size_t sizes[] = {1, 7, 24, 100, 4096, 10000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        magpool_config_t c = mp_cfg(backend, sizes[i]);
        magpool_t *p = mp_create_ok(&c);
        cr_assert_eq(magpool_block_size(p), sizes[i], "[%s] block_size %zu, configured %zu",
                     BN, magpool_block_size(p), sizes[i]);
        magpool_destroy(p);
    }
}

BACKEND_TEST(config, create_does_not_keep_pointer_to_config)
{
    magpool_config_t *c = malloc(sizeof *c);
    cr_assert_not_null(c);
    *c = mp_cfg(backend, 40);
    c->max_blocks = 3;
    c->initial_blocks = 1;
    magpool_t *p = mp_create_ok(c);
    memset(c, 0xff, sizeof *c);
    free(c);
    cr_assert_eq(magpool_block_size(p), 40, "[%s]", BN);
    void *b[3];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(b[i] = magpool_acquire(p), "[%s]", BN);
    cr_assert_null(magpool_acquire(p), "[%s] cap lost after config freed", BN);
    for (int i = 0; i < 3; i++)
        magpool_release(p, b[i]);
    magpool_destroy(p);
}

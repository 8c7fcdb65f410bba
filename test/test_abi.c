/* SPDX-License-Identifier: MIT */
/* The growable ABI (lib/abi.c): programs compiled against older and newer
 * headers pass their own struct sizes. (test/abi/abi_0_1.c is the 0.1
 * program itself, compiled against the 0.1 header.) */
#include <stddef.h>

#include "helpers.h"

/* What a future header might look like: our struct plus a new field. */
struct future_config {
    magpool_config_t now;
    uint64_t new_field;
};

Test(abi, the_macros_take_compound_literals_with_commas)
{
    /* Worked when magpool_create was a function; must keep compiling. */
    magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 64, .initial_blocks = 3,
                                                       .max_blocks = 100 });
    cr_assert_not_null(p);
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &(magpool_stats_t){ .acquires = 1, .releases = 2 }), 0);
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    cr_assert_leq(s.blocks_total, 100);
    magpool_destroy(p);
}

Test(abi, version_of_header_and_library_agree)
{
    cr_assert_str_eq(magpool_version(), MAGPOOL_VERSION_STRING);
    cr_assert_eq(magpool_version_number(), MAGPOOL_VERSION_NUMBER);
    cr_assert_geq(MAGPOOL_VERSION_NUMBER, 200);
}

Test(abi, a_newer_programs_config_works_when_its_new_fields_are_zero)
{
    struct future_config f;
    memset(&f, 0xff, sizeof f);
    cr_assert_eq(magpool_config_init(&f.now, sizeof f, 64), 0);
    cr_assert_eq(f.new_field, 0, "fields unknown to the library are zeroed");
    cr_assert_eq(f.now.grow_factor, 2.0);
    magpool_t *p = magpool_create_sized(&f.now, sizeof f);
    cr_assert_not_null(p);
    magpool_destroy(p);
    f.new_field = 1; /* asks for something this library cannot do */
    errno = 0;
    cr_assert_null(magpool_create_sized(&f.now, sizeof f));
    cr_assert_eq(errno, EINVAL);
}

Test(abi, an_older_programs_stats_get_no_byte_more_than_it_has)
{
    magpool_t *p = magpool_create(&(magpool_config_t){ .block_size = 64 });
    cr_assert_not_null(p, "a zeroed config with a block size is valid");
    void *b = magpool_acquire(p);
    size_t old = offsetof(magpool_stats_t, reclaims); /* the 0.1 size */
    magpool_stats_t s;
    memset(&s, 0xab, sizeof s);
    cr_assert_eq(magpool_get_stats_sized(p, &s, old), 0);
    cr_assert_eq(s.acquires, 1);
    unsigned char *tail = (unsigned char *)&s + old;
    for (size_t i = 0; i < sizeof s - old; i++)
        cr_assert_eq(tail[i], 0xab, "byte %zu beyond the 0.1 struct written", old + i);
    errno = 0;
    cr_assert_eq(magpool_get_stats_sized(p, &s, old - 1), -1, "smaller than 0.1: refused");
    cr_assert_eq(errno, EINVAL);
    /* A newer program's bigger struct: what we do not know is zeroed. */
    struct { magpool_stats_t s; uint64_t more[4]; } big;
    memset(&big, 0xab, sizeof big);
    cr_assert_eq(magpool_get_stats_sized(p, &big.s, sizeof big), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(big.more[i], 0);
    magpool_release(p, b);
    magpool_destroy(p);
}

Test(abi, zero_means_default_and_absurd_growth_is_clamped)
{
    magpool_config_t c = { .block_size = 64, .initial_blocks = 64 };
    magpool_t *p = magpool_create(&c);
    cr_assert_not_null(p);
    magpool_destroy(p);
    /* 0.1 accepted 1e12 and then could not grow at all; it is taken as 64
     * now (refusing it would break 0.1 programs): the pool still grows. */
    c.grow_factor = 1e12;
    cr_assert_not_null(p = magpool_create(&c));
    void *v[200];
    for (int i = 0; i < 200; i++)
        cr_assert_not_null(v[i] = magpool_acquire(p), "acquire %d: the pool did not grow", i);
    magpool_stats_t s;
    cr_assert_eq(magpool_get_stats(p, &s), 0);
    cr_assert_leq(s.blocks_total, 64u * 65 + 64, "one step of at most x64: %zu", s.blocks_total);
    for (int i = 0; i < 200; i++)
        magpool_release(p, v[i]);
    magpool_destroy(p);
}

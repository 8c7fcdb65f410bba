/* SPDX-License-Identifier: MIT */
/*
 * abi_0_1 — a program written and compiled against the released 0.1 header
 * (test/abi/magpool.h, a verbatim copy of include/magpool.h at 0.1), linked
 * against the current library: it must keep working unchanged. Its structs
 * are the 0.1 layouts; a canary after each shows the library writes no byte
 * beyond what a 0.1 program has.
 */
#include <magpool.h> /* the 0.1 header: -I test/abi only */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CANARY 0x5a5a5a5a5a5a5a5aull

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; fprintf(stderr, "abi_0_1: " __VA_ARGS__); fputc('\n', stderr); } } while (0)

int main(void)
{
    struct { magpool_config_t c; uint64_t canary; } cfg = { .canary = CANARY };
    cfg.c = magpool_config_default(64);
    CHECK(cfg.c.block_size == 64 && cfg.c.grow_factor == 2.0 && cfg.c.initial_blocks == 10,
          "config_default");
    cfg.c.max_blocks = 1000;
    cfg.c.grow_factor = 100.0; /* valid in 0.1 (any finite factor > 1) */
    magpool_t *p = magpool_create(&cfg.c);
    CHECK(p != NULL, "magpool_create: %s", strerror(errno));
    if (p == NULL)
        return 1;
    void *b[100];
    for (int i = 0; i < 100; i++)
        CHECK((b[i] = magpool_acquire(p)) != NULL, "acquire %d", i);
    for (int i = 0; i < 60; i++)
        magpool_release(p, b[i]);
    struct { magpool_stats_t s; uint64_t canary; } st;
    memset(&st, 0, sizeof st);
    st.canary = CANARY;
    CHECK(magpool_get_stats(p, &st.s) == 0, "get_stats");
    CHECK(st.canary == CANARY, "get_stats wrote past the 0.1 struct");
    CHECK(st.s.acquires == 100 && st.s.releases == 60 && st.s.blocks_outstanding == 40,
          "stats %llu %llu %zu", (unsigned long long)st.s.acquires,
          (unsigned long long)st.s.releases, st.s.blocks_outstanding);
    for (int i = 60; i < 100; i++)
        magpool_release(p, b[i]);

    struct { magpool_objpool_stats_t s; uint64_t canary; } os = { .canary = CANARY };
    magpool_objpool_config_t oc = { .obj_size = 32 };
    magpool_objpool_t *op = magpool_objpool_create(&oc);
    CHECK(op != NULL, "objpool_create");
    void *o = magpool_objpool_acquire(op);
    CHECK(magpool_objpool_get_stats(op, &os.s) == 0 && os.canary == CANARY &&
          os.s.acquires == 1, "objpool stats");
    magpool_objpool_release(op, o);
    magpool_objpool_destroy(op);

    struct { magpool_bufmgr_stats_t s; uint64_t canary; } bs = { .canary = CANARY };
    magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
    void *x = magpool_bufmgr_get(bm, 10, MAGPOOL_F64);
    CHECK(magpool_bufmgr_get_stats(bm, &bs.s) == 0 && bs.canary == CANARY && bs.s.gets == 1,
          "bufmgr stats");
    magpool_bufmgr_release(bm, x);
    magpool_bufmgr_destroy(bm);

    printf("abi_0_1: built against %d.%d.%d, running on %s: %s\n", MAGPOOL_VERSION_MAJOR,
           MAGPOOL_VERSION_MINOR, MAGPOOL_VERSION_PATCH, magpool_version(),
           failures ? "FAILED" : "ok");
    magpool_destroy(p);
    return failures != 0;
}

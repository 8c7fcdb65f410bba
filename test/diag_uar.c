/* SPDX-License-Identifier: MIT */
/*
 * Plain program for the sanitizer / valgrind tests: acquire, release, then
 * (with argument "uar") write to the released block, which stays in the pool.
 * Under ASan (poisoned idle blocks) and valgrind memcheck (mempool client
 * requests) that write must be reported: those runs are registered as
 * should_fail. Without "uar" the same program is clean and must pass.
 * "leak" leaves a block outstanding with no pointer to it (memcheck: lost).
 */
#include <magpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "clean";
    magpool_config_t c = magpool_config_default(64);
    if (argc > 2 && strcmp(argv[2], "mutex") == 0)
        c.backend = MAGPOOL_MUTEX;
    magpool_t *p = magpool_create(&c);
    if (p == NULL)
        return 2;
    fprintf(stderr, "diag_uar: %s, diagnostics %#x\n", what, magpool_diagnostics(p));
    char *volatile b = magpool_acquire(p);
    memset(b, 1, 64);
    magpool_release(p, b);
    if (strcmp(what, "uar") == 0)
        b[20] = 42;                     /* use after release */
    char *d = magpool_acquire(p);       /* reuse is fine */
    memset(d, 2, 64);
    magpool_release(p, d);
    if (strcmp(what, "leak") == 0) {
        void *volatile l = magpool_acquire(p);
        l = NULL;
        (void)l;
        magpool_set_error_handler(NULL, NULL);
        return 0;                       /* pool kept: memcheck sees the block lost */
    }
    magpool_destroy(p);
    return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Helper of check_stats_json.py: prints pools' statistics as JSON (modes
 * "one" and "all", on stdout), or leaves pools alive at exit for
 * MAGPOOL_SHOW_STATS (mode "exit", the report goes to stderr), with two
 * fork children: one that only inherits pools (must print nothing) and one
 * that creates a pool of its own (prints its pools).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <magpool.h>

/* Quote, backslash, control characters, well-formed UTF-8 of 2, 3 and 4
 * bytes, an encoded surrogate and a sequence cut short. */
static const char odd_name[] = "q\"b\\\n\t\x01" "\xc3\xa9" "\xe2\x82\xac"
                               "\xf0\x9f\x98\x80" "\xed\xa0\x80" "z" "\xc3";

static magpool_t *pool(const char *name, magpool_backend_t backend, unsigned flags,
                       int acquire, int release)
{
    magpool_config_t c = magpool_config_default(64);
    c.backend = backend;
    c.flags = flags;
    magpool_t *p = magpool_create(&c);
    if (p == NULL) {
        perror("magpool_create");
        exit(2);
    }
    magpool_set_name(p, name);
    void *b[64];
    for (int i = 0; i < acquire; i++)
        b[i] = magpool_acquire(p);
    for (int i = 0; i < release; i++)
        magpool_release(p, b[i]);
    return p;
}

static int wait_child(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stdout, "child %d failed\n", (int)pid);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "one") == 0) {
        magpool_t *a = pool(odd_name, MAGPOOL_LOCKFREE, 0, 5, 2);
        magpool_t *b = pool("checked-mutex", MAGPOOL_MUTEX, MAGPOOL_CHECKED, 3, 3);
        int rc = magpool_stats_print(a, stdout, MAGPOOL_PRINT_JSON) |
                 magpool_stats_print(b, stdout, MAGPOOL_PRINT_JSON);
        return rc ? 1 : 0; /* the pools are left for the process's end */
    }
    if (strcmp(mode, "all") == 0) {
        pool("plain", MAGPOOL_LOCKFREE, 0, 10, 4);
        pool("mutex", MAGPOOL_MUTEX, 0, 2, 0);
        magpool_destroy(pool("gone", MAGPOOL_LOCKFREE, 0, 0, 0));
        pool("checked", MAGPOOL_LOCKFREE, MAGPOOL_CHECKED, 1, 1);
        pool(odd_name, MAGPOOL_LOCKFREE, 0, 0, 0);
        magpool_objpool_config_t oc = { .obj_size = 40, .initial_objects = 2 };
        magpool_objpool_t *op = magpool_objpool_create(&oc);
        void *o = magpool_objpool_acquire(op);
        magpool_bufmgr_t *bm = magpool_bufmgr_create(0);
        void *buf = magpool_bufmgr_get(bm, 100, MAGPOOL_F64);
        if (op == NULL || o == NULL || bm == NULL || buf == NULL)
            return 2;
        return magpool_stats_print_all(stdout, MAGPOOL_PRINT_JSON) ? 1 : 0;
    }
    if (strcmp(mode, "exit") == 0) {
        pool("exit-a", MAGPOOL_LOCKFREE, 0, 3, 1);
        pool("exit-b", MAGPOOL_MUTEX, 0, 1, 1);
        magpool_destroy(pool("exit-gone", MAGPOOL_LOCKFREE, 0, 0, 0));
        fflush(NULL);
        pid_t inherits = fork();
        if (inherits == 0)
            exit(0); /* atexit handlers run: must print nothing */
        int bad = wait_child(inherits);
        pid_t creates = fork();
        if (creates == 0) {
            pool("child-own", MAGPOOL_LOCKFREE, 0, 1, 0);
            exit(0); /* prints its pools: exit-a, exit-b, child-own */
        }
        bad |= wait_child(creates);
        return bad; /* the parent prints exit-a, exit-b */
    }
    fprintf(stderr, "usage: %s one|all|exit\n", argv[0]);
    return 2;
}

/* SPDX-License-Identifier: MIT */
/*
 * Example: market-data blocks handed from a feed-handler process to a
 * strategy process through a shared pool, without copying.
 *
 *   shm_handoff                  the feed handler: creates the pool
 *                                "/magpool-example-<pid>", starts the
 *                                strategy as a separate program (exec),
 *                                publishes 10000 ticks, checks the totals
 *   shm_handoff strategy NAME N  the strategy: attaches by name, takes N
 *                                ticks from the ring, sums them, releases
 *                                each block (into its own process's cache)
 *
 * A tick lives in a pool block from the feed handler's acquire to the
 * strategy's release; only its 32-bit index crosses between the processes
 * (the ring), and each process sees the block at its own address.
 * Self-checking: exit status 0 when the strategy saw every tick, the sums
 * agree, and the pool's stamps show every block back.
 */
#include <magpool_shm.h>

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct tick {
    uint64_t seq;
    int64_t price_ticks;
    int32_t qty;
    char symbol[12];
};

static int strategy(const char *name, long n)
{
    magpool_shm_t *pool = magpool_shm_attach(name, sizeof(struct tick));
    if (!pool) {
        fprintf(stderr, "strategy: attach %s: %s\n", name, strerror(errno));
        return 1;
    }
    int64_t notional = 0;
    for (long got = 0; got < n;) {
        struct tick *t = magpool_shm_ring_dequeue(pool, 0);
        if (!t) {
            sched_yield(); /* EAGAIN: nothing published yet */
            continue;
        }
        if (t->seq != (uint64_t)got || strcmp(t->symbol, "RB2501") != 0) {
            fprintf(stderr, "strategy: tick %ld out of order or damaged\n", got);
            return 1;
        }
        notional += t->price_ticks * t->qty;
        magpool_shm_release(pool, t);
        got++;
    }
    printf("strategy: %ld ticks, notional %" PRId64 "\n", n, notional);
    magpool_shm_detach(pool);
    /* The exit status carries a checksum the feed handler verifies. */
    return (int)(notional % 200) + 2;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "strategy") == 0)
        return strategy(argv[2], atol(argv[3]));
    const long n = 10000;
    char name[64];
    snprintf(name, sizeof name, "/magpool-example-%d", (int)getpid());
    magpool_shm_config_t cfg;
    magpool_shm_config_init(&cfg, sizeof cfg, sizeof(struct tick));
    cfg.max_blocks = 4096;
    magpool_shm_t *pool = magpool_shm_create(name, &cfg, sizeof cfg);
    if (!pool) {
        fprintf(stderr, "feed: create %s: %s\n", name, strerror(errno));
        return 1;
    }
    char count[32];
    snprintf(count, sizeof count, "%ld", n);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "strategy", name, count, (char *)NULL);
        _exit(127);
    }
    int64_t notional = 0;
    for (long i = 0; i < n; i++) {
        struct tick *t;
        while (!(t = magpool_shm_acquire(pool)))
            sched_yield(); /* ENOMEM: every block is in flight; wait for the strategy */
        *t = (struct tick){.seq = (uint64_t)i, .price_ticks = 3500 + i % 7, .qty = 1 + (int)(i % 5)};
        strcpy(t->symbol, "RB2501");
        notional += t->price_ticks * t->qty;
        while (magpool_shm_ring_enqueue(pool, 0, t) != 0)
            sched_yield(); /* EAGAIN: the ring is full */
    }
    int status;
    waitpid(pid, &status, 0);
    magpool_shm_stats_t st;
    magpool_shm_stats(pool, &st, sizeof st);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == (int)(notional % 200) + 2 &&
             st.held == 0 && st.orphans == 0 && st.in_rings == 0;
    printf("feed: %ld ticks, notional %" PRId64 ", strategy %s; blocks committed %" PRIu64
           ", held %" PRIu64 ", orphans %" PRIu64 "\n",
           n, notional, ok ? "agrees" : "DISAGREES", st.committed, st.held, st.orphans);
    magpool_shm_detach(pool);
    magpool_shm_unlink(name);
    return ok ? 0 : 1;
}

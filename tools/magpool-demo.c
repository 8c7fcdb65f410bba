/* SPDX-License-Identifier: MIT */
/*
 * magpool-demo: a process to watch with magpool-top / magpool-record. It
 * runs the trading-engine mix (tools/mixload.h) on two threads for
 * --seconds, with its load going up and down (quiet, surge, quiet again)
 * so that pools grow and the background trimmer gives memory back, and
 * publishes its pools (magpool_publish_start, --publish-ms; 0 leaves it
 * to MAGPOOL_PUBLISH). Prints its pid and the segment's path first.
 * SIGINT, SIGTERM and SIGHUP end it early, cleanly (the segment goes).
 *
 *   magpool-demo [--seconds S] [--publish-ms MS] [--threads N] [--idle-pools N]
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "magpool.h"
#include "mixload.h"

static magpool_t *orders, *fills;
static _Atomic uint32_t load_now = 1; /* 1 quiet, 8 surge: order rate and cap */
static _Atomic int stop;
static volatile sig_atomic_t interrupted;

/* Ctrl-C / kill: end like --seconds does, so exit() removes the segment. */
static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void *worker(void *arg)
{
    struct mixload *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->orders = orders;
    m->fills = fills;
    m->rng = 0x9E3779B97F4A7C15ull * (uintptr_t)arg + 1;
    struct timespec pause = { 0, 20000 }; /* ~ a market's ticks, not a benchmark */
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint32_t load = atomic_load_explicit(&load_now, memory_order_relaxed);
        m->burst_mul = load;
        m->max_live = 2000 * load;
        if (mixload_tick(m) != 0) {
            fprintf(stderr, "magpool-demo: a pool is exhausted: %s\n", strerror(errno));
            break;
        }
        nanosleep(&pause, NULL);
    }
    mixload_drain(m);
    free(m);
    return NULL;
}

static long arg_of(int argc, char **argv, const char *name, long dflt, long lo, long hi)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || end == argv[i + 1] || v < lo || v > hi) {
                fprintf(stderr, "magpool-demo: %s wants a number in %ld .. %ld\n", name, lo, hi);
                exit(2);
            }
            return v;
        }
    return dflt;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2)
        if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "usage: magpool-demo [--seconds S] [--publish-ms MS] "
                            "[--threads N] [--idle-pools N]\n");
            return 2;
        }
    long seconds = arg_of(argc, argv, "--seconds", 30, 1, 86400);
    long pub_ms = arg_of(argc, argv, "--publish-ms", 200, 0, 3600000);
    long nthreads = arg_of(argc, argv, "--threads", 2, 1, 64);
    long nidle = arg_of(argc, argv, "--idle-pools", 2, 0, 10000);

    /* 256 B: an order book entry with its instrument, account and timestamps */
    magpool_config_t c = magpool_config_default(256);
    c.initial_blocks = 1024;
    orders = magpool_create(&c);
    fills = magpool_create(&c);
    magpool_t **idle = calloc((size_t)nidle + 1, sizeof *idle);
    if (!orders || !fills || !idle) {
        perror("magpool-demo: magpool_create");
        return 1;
    }
    magpool_set_name(orders, "orders");
    magpool_set_name(fills, "fills");
    for (long i = 0; i < nidle; i++) {
        idle[i] = magpool_create(&(magpool_config_t){ .block_size = 256 });
        char name[32];
        snprintf(name, sizeof name, "idle-%ld", i);
        magpool_set_name(idle[i], name);
    }
    /* Idle memory goes back within a second of the load falling. */
    magpool_set_trim_interval(orders, 0.5, 0.5);
    magpool_set_trim_interval(fills, 0.5, 0.5);
    if (pub_ms && magpool_publish_start((unsigned)pub_ms) != 0) {
        perror("magpool-demo: magpool_publish_start");
        return 1;
    }
    char path[64] = "(not publishing)";
    magpool_publish_name(path, sizeof path);
    printf("magpool-demo: pid %d, publishing to %s\n", (int)getpid(), path);
    fflush(stdout);

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    pthread_t t[64];
    for (long i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    /* Load: quiet, surge (x8), quiet, each a third of the run. */
    for (long s = 0; s < seconds * 10 && !interrupted; s++) {
        long third = s * 3 / (seconds * 10);
        atomic_store_explicit(&load_now, third == 1 ? 8 : 1, memory_order_relaxed);
        nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
    }
    atomic_store_explicit(&stop, 1, memory_order_relaxed);
    for (long i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    for (long i = 0; i < nidle; i++)
        magpool_destroy(idle[i]);
    free(idle);
    magpool_destroy(orders);
    magpool_destroy(fills);
    return 0;
}

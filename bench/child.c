/* SPDX-License-Identifier: MIT */
/*
 * One measurement in a fresh process: the driver forks and execs itself with
 * "--child", LD_PRELOAD naming the variant's allocator; the child runs
 * bench_run() and writes the raw bench_result_t into a pipe. A fresh process
 * per run means no heap state, thread cache or page-fault history carries
 * over from one variant or run to the next, and getrusage's peak RSS belongs
 * to this run alone.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* A run that hangs (a deadlock in the code under test) must not hang the
 * suite: the child dies by SIGALRM and the driver records the failure. */
#define CHILD_TIMEOUT_S 300

static void params_to_argv(const bench_params_t *p, char buf[][48], char **argv)
{
    int i = 0;
    snprintf(buf[i++], 48, "%d", (int)p->workload);
    snprintf(buf[i++], 48, "%d", p->variant);
    snprintf(buf[i++], 48, "%zu", p->block_size);
    snprintf(buf[i++], 48, "%d", p->threads);
    snprintf(buf[i++], 48, "%.17g", p->duration_s);
    snprintf(buf[i++], 48, "%zu", p->growth_blocks);
    snprintf(buf[i++], 48, "%zu", p->initial_blocks);
    snprintf(buf[i++], 48, "%u", p->magazine_size);
    snprintf(buf[i++], 48, "%d", p->pin);
    snprintf(buf[i++], 48, "%.17g", p->tsc_per_ns);
    snprintf(buf[i++], 48, "%.17g", p->timer_overhead_cyc);
    snprintf(buf[i++], 48, "%llu", (unsigned long long)p->instr_pairs);
    for (int k = 0; k < i; k++)
        argv[k] = buf[k];
    argv[i] = NULL;
}

#define NPARAMS 12

static int argv_to_params(char **a, bench_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->workload = (bench_workload_t)atoi(a[0]);
    p->variant = atoi(a[1]);
    p->block_size = strtoull(a[2], NULL, 10);
    p->threads = atoi(a[3]);
    p->duration_s = strtod(a[4], NULL);
    p->growth_blocks = strtoull(a[5], NULL, 10);
    p->initial_blocks = strtoull(a[6], NULL, 10);
    p->magazine_size = (unsigned)strtoul(a[7], NULL, 10);
    p->pin = atoi(a[8]);
    p->tsc_per_ns = strtod(a[9], NULL);
    p->timer_overhead_cyc = strtod(a[10], NULL);
    p->instr_pairs = strtoull(a[11], NULL, 10);
    if (p->workload >= WL_COUNT || p->variant < 0 || p->variant >= bench_nvariants ||
        p->threads < 1 || p->block_size == 0)
        return -1;
    return 0;
}

/* argv after "--child": <fd|-> <NPARAMS params> */
int bench_child_main(int argc, char **argv)
{
    if (argc < 1 + NPARAMS)
        return 2;
    bench_params_t p;
    if (argv_to_params(argv + 1, &p) != 0)
        return 2;
    alarm(CHILD_TIMEOUT_S);
    bench_result_t r;
    int rc = bench_run(&p, &r);
    if (strcmp(argv[0], "-") == 0) {
        /* Standalone (callgrind): say what happened on stderr. */
        if (rc != 0)
            fprintf(stderr, "magpool-bench child: %s\n", r.error);
        return rc == 0 ? 0 : 1;
    }
    int fd = atoi(argv[0]);
    const char *b = (const char *)&r;
    size_t left = sizeof r;
    while (left) {
        ssize_t w = write(fd, b, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 2;
        b += w;
        left -= (size_t)w;
    }
    close(fd);
    return rc == 0 ? 0 : 1;
}

/* Build the argv (and environment change) of a child; shared with instr.c
 * through bench_child_argv(). */
int bench_child_argv(const char *self, const bench_params_t *p, const char *fdarg,
                     char buf[][48], char **argv)
{
    int i = 0;
    argv[i++] = (char *)self;
    argv[i++] = "--child";
    argv[i++] = (char *)fdarg;
    params_to_argv(p, buf, argv + i);
    return i + NPARAMS;
}

/* LD_PRELOAD for the variant's allocator, and nothing else: an inherited
 * preload (a sanitizer, a profiler) would change what we measure. */
void bench_child_env(const bench_params_t *p)
{
    const bench_variant_t *v = &bench_variants[p->variant];
    if (v->preload)
        setenv("LD_PRELOAD", v->preload, 1);
    else
        unsetenv("LD_PRELOAD");
}

int bench_spawn(const char *self, const bench_params_t *p, bench_result_t *r)
{
    memset(r, 0, sizeof *r);
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(r->error, sizeof r->error, "pipe: %s", strerror(errno));
        return -1;
    }
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
    char buf[NPARAMS][48];
    char *argv[4 + NPARAMS];
    bench_child_argv(self, p, fdarg, buf, argv);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->error, sizeof r->error, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        bench_child_env(p);
        execv(self, argv);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    char *b = (char *)r;
    while (got < sizeof *r) {
        ssize_t n = read(fds[0], b + got, sizeof *r - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != sizeof *r) {
        memset(r, 0, sizeof *r);
        if (WIFSIGNALED(status))
            snprintf(r->error, sizeof r->error, "child killed by signal %d (%s)",
                     WTERMSIG(status), strsignal(WTERMSIG(status)));
        else
            snprintf(r->error, sizeof r->error, "child exited %d without a result",
                     WEXITSTATUS(status));
        return -1;
    }
    return r->ok ? 0 : -1;
}

/* SPDX-License-Identifier: MIT */
/*
 * Instructions per acquire+release pair, counted by callgrind (hardware
 * counters are not available in this VM, and callgrind counts are exact and
 * noise-free where timings are not). The child runs its warm-up, then
 * exactly N pairs inside bench_instr_region_*(); --toggle-collect makes
 * callgrind count only inside that function (callees included), so
 * setup, warm-up and process start-up are excluded and the quotient is the
 * cost of one pair plus a few instructions of loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

int bench_have_valgrind(void)
{
    return system("valgrind --version >/dev/null 2>&1") == 0;
}

static int run_quiet(char **argv, const bench_params_t *p)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        bench_child_env(p);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

double bench_instructions(const char *self, const bench_params_t *p, char *why, size_t whylen)
{
    char out[64];
    snprintf(out, sizeof out, "/tmp/magpool-bench-cg.%d.out", (int)getpid());
    char outarg[96];
    snprintf(outarg, sizeof outarg, "--callgrind-out-file=%s", out);
    char buf[16][48];
    char *argv[32];
    int i = 0;
    argv[i++] = "valgrind";
    argv[i++] = "--tool=callgrind";
    argv[i++] = "--toggle-collect=bench_instr_region_*";
    argv[i++] = outarg;
    bench_child_argv(self, p, "-", buf, argv + i);
    int rc = run_quiet(argv, p);
    if (rc != 0) {
        snprintf(why, whylen, "valgrind exited %d", rc);
        unlink(out);
        return -1;
    }
    FILE *f = fopen(out, "r");
    if (!f) {
        snprintf(why, whylen, "no callgrind output");
        return -1;
    }
    char line[512];
    double total = -1;
    while (fgets(line, sizeof line, f)) {
        /* "totals:" is what was collected (toggle on); "summary:" is older
         * callgrind's name for the same line. */
        if (strncmp(line, "totals:", 7) == 0 || (total < 0 && strncmp(line, "summary:", 8) == 0))
            total = strtod(strchr(line, ':') + 1, NULL);
    }
    fclose(f);
    unlink(out);
    if (total <= 0) {
        snprintf(why, whylen, "no totals in callgrind output");
        return -1;
    }
    return total / (double)p->instr_pairs;
}

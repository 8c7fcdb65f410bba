/* SPDX-License-Identifier: MIT */
/* Order statistics; see stats.h. Sizes are small (runs) or sorted once per
 * run (latency samples), so qsort is good enough. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

double stats_median(const double *v, size_t n)
{
    if (n == 0)
        return NAN;
    double *c = malloc(n * sizeof *c);
    if (!c)
        return NAN;
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

double stats_min(const double *v, size_t n)
{
    double m = n ? v[0] : NAN;
    for (size_t i = 1; i < n; i++)
        if (v[i] < m)
            m = v[i];
    return m;
}

double stats_max(const double *v, size_t n)
{
    double m = n ? v[0] : NAN;
    for (size_t i = 1; i < n; i++)
        if (v[i] > m)
            m = v[i];
    return m;
}

void stats_quantiles_u32(uint32_t *v, size_t n, const double *q, size_t nq,
                         double *out)
{
    if (n == 0) {
        for (size_t i = 0; i < nq; i++)
            out[i] = NAN;
        return;
    }
    qsort(v, n, sizeof *v, cmp_u32);
    for (size_t i = 0; i < nq; i++) {
        /* Nearest rank: the smallest sample with at least q*n samples <= it. */
        double r = ceil(q[i] * (double)n);
        size_t k = r < 1 ? 0 : (size_t)r - 1;
        if (k >= n)
            k = n - 1;
        out[i] = v[k];
    }
}

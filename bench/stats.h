/* SPDX-License-Identifier: MIT */
/* Order statistics over small arrays of run results and latency samples. */
#ifndef MAGPOOL_BENCH_STATS_H
#define MAGPOOL_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Median of n values (sorts a copy; mean of the middle two when n is even). */
double stats_median(const double *v, size_t n);
double stats_min(const double *v, size_t n);
double stats_max(const double *v, size_t n);
/* Sort @p v in place and write the value at each of the nq quantiles
 * (nearest rank: q = 1.0 is the maximum, q = 0 the minimum). */
void stats_quantiles_u32(uint32_t *v, size_t n, const double *q, size_t nq,
                         double *out);

#endif

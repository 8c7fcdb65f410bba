/* SPDX-License-Identifier: MIT */
/* Unit test of the order statistics the reports are built on. */
#include <math.h>
#include <stdio.h>

#include "stats.h"

static int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                        \
        }                                                                      \
    } while (0)

int main(void)
{
    double odd[] = {5, 1, 3}, even[] = {4, 1, 3, 2};
    CHECK(stats_median(odd, 3) == 3);
    CHECK(stats_median(even, 4) == 2.5);
    CHECK(odd[0] == 5); /* the median sorts a copy */
    CHECK(stats_min(odd, 3) == 1 && stats_max(odd, 3) == 5);
    CHECK(isnan(stats_median(odd, 0)));

    uint32_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = (uint32_t)(100 - i); /* 100..1, unsorted */
    double q[] = {0.0, 0.5, 0.99, 1.0}, out[4];
    stats_quantiles_u32(v, 100, q, 4, out);
    CHECK(out[0] == 1);   /* minimum */
    CHECK(out[1] == 50);  /* nearest rank: 50 of 100 samples <= 50 */
    CHECK(out[2] == 99);
    CHECK(out[3] == 100); /* maximum */

    uint32_t one[] = {7};
    stats_quantiles_u32(one, 1, q, 4, out);
    CHECK(out[0] == 7 && out[3] == 7);
    if (failures)
        return 1;
    printf("bench stats: ok\n");
    return 0;
}

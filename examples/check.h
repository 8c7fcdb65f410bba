/* SPDX-License-Identifier: MIT */
/*
 * The examples' one helper: CHECK(cond) prints a failed condition with its
 * file and line and counts it; main returns check_exit_status().
 */
#ifndef MAGPOOL_EXAMPLE_CHECK_H
#define MAGPOOL_EXAMPLE_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

static inline int check_exit_status(void) { return check_failures ? 1 : 0; }

#endif

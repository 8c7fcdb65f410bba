/* SPDX-License-Identifier: MIT */
/*
 * A minimal streaming JSON writer: enough for the results file, with commas
 * and indentation handled here so callers only say what to write.
 */
#ifndef MAGPOOL_BENCH_JSON_H
#define MAGPOOL_BENCH_JSON_H

#include <stdio.h>

typedef struct json {
    FILE *f;
    int depth;
    int first[32]; /* nothing written yet at this depth */
} json_t;

void json_init(json_t *j, FILE *f);
/* key may be NULL inside arrays. */
void json_obj_begin(json_t *j, const char *key);
void json_obj_end(json_t *j);
void json_arr_begin(json_t *j, const char *key);
void json_arr_end(json_t *j);
void json_str(json_t *j, const char *key, const char *v);
/* NaN and infinities are written as null (JSON has no spelling for them). */
void json_num(json_t *j, const char *key, double v);
void json_int(json_t *j, const char *key, long long v);
void json_bool(json_t *j, const char *key, int v);

#endif

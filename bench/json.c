/* SPDX-License-Identifier: MIT */
/* See json.h. */
#include "json.h"

#include <math.h>

void json_init(json_t *j, FILE *f)
{
    j->f = f;
    j->depth = 0;
    j->first[0] = 1;
}

static void sep(json_t *j, const char *key)
{
    if (j->depth > 0 && !j->first[j->depth])
        fputc(',', j->f);
    if (j->depth > 0) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    j->first[j->depth] = 0;
    if (key) {
        fputc('"', j->f);
        for (const char *c = key; *c; c++)
            fputc(*c, j->f);
        fputs("\": ", j->f);
    }
}

static void open_(json_t *j, const char *key, char c)
{
    sep(j, key);
    fputc(c, j->f);
    if (j->depth < 31)
        j->depth++;
    j->first[j->depth] = 1;
}

static void close_(json_t *j, char c)
{
    int empty = j->first[j->depth];
    j->depth--;
    if (!empty) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    fputc(c, j->f);
    if (j->depth == 0)
        fputc('\n', j->f);
}

void json_obj_begin(json_t *j, const char *key) { open_(j, key, '{'); }
void json_obj_end(json_t *j) { close_(j, '}'); }
void json_arr_begin(json_t *j, const char *key) { open_(j, key, '['); }
void json_arr_end(json_t *j) { close_(j, ']'); }

void json_str(json_t *j, const char *key, const char *v)
{
    sep(j, key);
    if (!v) {
        fputs("null", j->f);
        return;
    }
    fputc('"', j->f);
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(j->f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(j->f, "\\u%04x", *c);
        else
            fputc(*c, j->f);
    }
    fputc('"', j->f);
}

void json_num(json_t *j, const char *key, double v)
{
    sep(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.6g", v);
    else
        fputs("null", j->f);
}

void json_int(json_t *j, const char *key, long long v)
{
    sep(j, key);
    fprintf(j->f, "%lld", v);
}

void json_bool(json_t *j, const char *key, int v)
{
    sep(j, key);
    fputs(v ? "true" : "false", j->f);
}

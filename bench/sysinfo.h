/* SPDX-License-Identifier: MIT */
/* What machine and software a result file was measured on. */
#ifndef MAGPOOL_BENCH_SYSINFO_H
#define MAGPOOL_BENCH_SYSINFO_H

#include <stddef.h>

/* First line of a command's output, trailing newline removed; "" when the
 * command fails or prints nothing. */
void sysinfo_cmd(const char *cmd, char *out, size_t len);
void sysinfo_cpu_model(char *out, size_t len);
void sysinfo_kernel(char *out, size_t len);
/* Debian package version, "" when not installed. */
void sysinfo_pkg_version(const char *pkg, char *out, size_t len);

#endif

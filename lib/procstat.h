/* SPDX-License-Identifier: MIT */
/*
 * Who is process <pid>? Its start time (field 22 of /proc/<pid>/stat, in
 * clock ticks since boot) tells a live process from a later one that reuses
 * its pid; the live view's segments (publish.c) and the shared pool's
 * process slots (shm_procs.c) both record it.
 */
#ifndef MAGPOOL_PROCSTAT_H
#define MAGPOOL_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

/* The start time of pid, 0 if /proc/<pid>/stat is unreadable (no such
 * process). If state != NULL, *state is field 3 ('Z' for a zombie), left
 * alone when 0 is returned. */
uint64_t proc_start_time(pid_t pid, char *state) __attribute__((visibility("hidden")));

#endif

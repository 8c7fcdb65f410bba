/* SPDX-License-Identifier: MIT */
/* /proc/<pid>/stat, fields 3 and 22 (procstat.h). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procstat.h"

uint64_t proc_start_time(pid_t pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *s = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
    if (!s || s[1] != ' ')
        return 0;
    s += 2;
    char st = *s;
    for (int field = 3; field < 22; field++) {
        s = strchr(s, ' ');
        if (!s)
            return 0;
        s++;
    }
    if (state)
        *state = st;
    return strtoull(s, NULL, 10);
}

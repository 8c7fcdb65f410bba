/* SPDX-License-Identifier: MIT */
/* See sysinfo.h. Everything degrades to "" so a missing git or dpkg never
 * stops a benchmark run. */
#include "sysinfo.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

void sysinfo_cmd(const char *cmd, char *out, size_t len)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    if (fgets(out, (int)len, p))
        out[strcspn(out, "\n")] = '\0';
    else
        out[0] = '\0';
    if (pclose(p) != 0)
        out[0] = '\0';
}

void sysinfo_cpu_model(char *out, size_t len)
{
    sysinfo_cmd("sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1",
                out, len);
}

void sysinfo_kernel(char *out, size_t len)
{
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(out, len, "%s %s %s", u.sysname, u.release, u.machine);
    else
        out[0] = '\0';
}

void sysinfo_pkg_version(const char *pkg, char *out, size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "dpkg-query -W -f='${Version}' %s 2>/dev/null", pkg);
    sysinfo_cmd(cmd, out, len);
}

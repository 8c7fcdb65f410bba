/* SPDX-License-Identifier: MIT */
/*
 * The ABI that can grow: structs exchanged with the program carry the size
 * the program was compiled with (the *_sized entry points; the header's
 * macros pass sizeof), the 0.1 symbols stay for 0.1 binaries, and structs
 * grow only at the end. The same rule as the Linux kernel's extensible
 * structs (copy_struct_from_user) and zstd's / libcurl's versioned ones:
 *   out: write min(program's size, ours) bytes, zero what the program has
 *        beyond ours;
 *   in:  read min(program's size, ours) bytes, zero (= default) what the
 *        program does not have; bytes beyond ours must be zero, else the
 *        program asks for something this library cannot do: EINVAL.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

int abi_copy_out(void *dst, size_t dst_size, const void *src, size_t src_size, size_t min_size)
{
    if (dst == NULL || dst_size < min_size) {
        errno = EINVAL;
        return -1;
    }
    size_t n = dst_size < src_size ? dst_size : src_size;
    memcpy(dst, src, n);
    memset((char *)dst + n, 0, dst_size - n);
    return 0;
}

int abi_copy_in(void *dst, size_t dst_size, const void *src, size_t src_size, size_t min_size)
{
    if (src == NULL || src_size < min_size) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = dst_size; i < src_size; i++) {
        if (((const unsigned char *)src)[i] != 0) {
            errno = EINVAL;
            return -1;
        }
    }
    size_t n = dst_size < src_size ? dst_size : src_size;
    memset(dst, 0, dst_size);
    memcpy(dst, src, n);
    return 0;
}

MAGPOOL_API const char *magpool_version(void)
{
    return MAGPOOL_VERSION_STRING;
}

MAGPOOL_API unsigned magpool_version_number(void)
{
    return MAGPOOL_VERSION_NUMBER;
}

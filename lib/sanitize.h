/* SPDX-License-Identifier: MIT */
/*
 * What the sanitizers must be told, in one place.
 *
 * ThreadSanitizer sees C11 atomics and pthread calls, but not inline-asm
 * atomics (Concurrency Kit's ck_pr, which ck_epoch is built on). Where the
 * library relies on an ordering that such code provides, it states the edge
 * to TSan with tsan_release(obj) / tsan_acquire(obj) on the object the edge
 * is about — never on one global object, which would order everything every
 * thread did before and hide real races (stress_tsan_edges proves that an
 * unrelated race is still reported).
 *
 * MAGPOOL_LOCK_ASSERTS (set by meson in sanitizer builds): checks of the
 * lock/grace-period rules (docs/design.md, "Locks and grace periods") that
 * print a message and abort; release builds compile them out.
 */
#ifndef MAGPOOL_SANITIZE_H
#define MAGPOOL_SANITIZE_H

#if defined(__SANITIZE_THREAD__)
#define MAGPOOL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MAGPOOL_TSAN 1
#endif
#endif

#ifdef MAGPOOL_TSAN
#include <sanitizer/tsan_interface.h>
#define tsan_release(obj) __tsan_release((void *)(obj))
#define tsan_acquire(obj) __tsan_acquire((void *)(obj))
/* Exported by libtsan (dynamic annotations), not declared in its headers:
 * between Begin and End the thread's lock annotations feed the deadlock
 * detector but create no happens-before edge. */
void AnnotateIgnoreSyncBegin(const char *file, int line);
void AnnotateIgnoreSyncEnd(const char *file, int line);
#else
#define tsan_release(obj) ((void)(obj))
#define tsan_acquire(obj) ((void)(obj))
#endif

#endif

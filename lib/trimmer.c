/* SPDX-License-Identifier: MIT */
/*
 * The background trimmer: one lazily started thread serving every pool that
 * asked for periodic trimming (magpool_set_trim_interval). It sleeps on a
 * condition variable until the next pool is due, never touches the fast
 * path, and holds trimmer_lock while it trims so that magpool_destroy (which
 * unlists the pool under the same lock) cannot free a pool under it.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <time.h>

#include "internal.h"

static pthread_mutex_t trimmer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t trimmer_cond;
static bool trimmer_running;        /* under trimmer_lock */
static bool cond_ready;
static magpool_t *trim_list;        /* under trimmer_lock */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *trimmer_main(void *arg)
{
    (void)arg;
    mutex_lock(&trimmer_lock);
    for (;;) {
        uint64_t now = now_ns(), next = UINT64_MAX;
        for (magpool_t *p = trim_list; p; p = p->trim_next) {
            if (p->trim_due <= now) {
                pool_trim_ns(p, p->trim_age_ns);
                now = now_ns();
                p->trim_due = now + p->trim_interval_ns;
            }
            if (p->trim_due < next)
                next = p->trim_due;
        }
        if (next == UINT64_MAX) {
            pthread_cond_wait(&trimmer_cond, &trimmer_lock);
        } else {
            struct timespec ts = { .tv_sec = (time_t)(next / 1000000000u),
                                   .tv_nsec = (long)(next % 1000000000u) };
            pthread_cond_timedwait(&trimmer_cond, &trimmer_lock, &ts);
        }
    }
    return NULL;
}

/* The library's background threads (the trimmer, publish.c's publisher)
 * sleep on CLOCK_MONOTONIC deadlines ... */
void bg_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

/* ... are detached, and must not take the application's signals. */
int bg_thread_start(void *(*fn)(void *), void *arg)
{
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &at, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

static void cond_make(void)
{
    bg_cond_init(&trimmer_cond);
    cond_ready = true;
}

static int trimmer_start_locked(void)
{
    if (trimmer_running)
        return 0;
    if (!cond_ready)
        cond_make();
    if (bg_thread_start(trimmer_main, NULL) != 0)
        return -1;
    trimmer_running = true;
    return 0;
}

static void unlist_locked(magpool_t *p)
{
    for (magpool_t **pp = &trim_list; *pp; pp = &(*pp)->trim_next) {
        if (*pp == p) {
            *pp = p->trim_next;
            break;
        }
    }
    p->trim_next = NULL;
    p->trim_listed = false;
}

MAGPOOL_API int magpool_set_trim_interval(magpool_t *p, double interval_s, double max_idle_s)
{
    RETURN_IF_NULL(p, -1);
    if (isnan(interval_s) || interval_s > 1e9) {
        errno = EINVAL;
        return -1;
    }
    mutex_lock(&trimmer_lock);
    int rc = 0;
    if (interval_s <= 0) {
        unlist_locked(p);
    } else {
        if (trimmer_start_locked() != 0) {
            rc = -1;
        } else {
            p->trim_interval_ns = (uint64_t)(interval_s * 1e9);
            if (p->trim_interval_ns == 0)
                p->trim_interval_ns = 1;
            p->trim_age_ns = pool_age_ns(max_idle_s);
            p->trim_due = now_ns() + p->trim_interval_ns;
            if (!p->trim_listed) {
                p->trim_next = trim_list;
                trim_list = p;
                p->trim_listed = true;
            }
            pthread_cond_signal(&trimmer_cond);
        }
    }
    pthread_mutex_unlock(&trimmer_lock);
    return rc;
}

void trimmer_forget(magpool_t *p)
{
    mutex_lock(&trimmer_lock); /* waits out a trim of p in progress */
    if (p->trim_listed)
        unlist_locked(p);
    pthread_mutex_unlock(&trimmer_lock);
}

void trimmer_fork_prepare(void) { mutex_lock(&trimmer_lock); }
void trimmer_fork_parent(void) { pthread_mutex_unlock(&trimmer_lock); }

void trimmer_fork_child(void)
{
    /* The trimmer thread did not survive the fork; the pools keep their
     * settings and the child gets a trimmer of its own. Its condition
     * variable may have been waited on by the vanished thread: make it anew.
     * Should the thread not start, the pools stay listed and the next
     * magpool_set_trim_interval call starts it (documented). */
    trimmer_running = false;
    if (cond_ready)
        cond_make();
    if (trim_list != NULL)
        trimmer_start_locked();
    pthread_mutex_unlock(&trimmer_lock);
}

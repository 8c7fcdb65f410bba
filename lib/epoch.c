/*
 * Epoch-based reclamation for depot magazines, over liburcu's membarrier
 * flavour (urcu-memb).
 *
 * Why urcu-memb: its read side is a thread-local nesting counter and a
 * compiler barrier, no fence (the writer's membarrier(2) supplies the
 * ordering), and it needs no quiescent-state reports from idle threads —
 * unlike QSBR, where a thread that stops calling into the pool would stall
 * every grace period. ck_epoch's begin/end issue a full fence each time. Our
 * read sections sit on the depot path (once per M operations), never on the
 * magazine fast path, so any of them would do; memb is the cheapest and the
 * only one whose idle threads cost nothing. See docs/design.md.
 *
 * ThreadSanitizer. liburcu 0.13 is not instrumented and its atomics are
 * inline asm, so TSan cannot see that synchronize_rcu() waits for readers.
 * We tell it: each reader releases `tsan_grace` just before leaving its read
 * section, and the writer acquires it right after the grace period, which is
 * exactly the happens-before edge RCU guarantees (every read section that
 * existed when synchronize began has ended before it returns). If the grace
 * period is skipped (magpool_test_skip_grace_period, a test switch), a
 * reader stalled inside its section reads freed memory, which TSan and ASan
 * report: stress/stress_grace --skip-grace-period 1 forces that
 * interleaving with a test hook and is registered as must-fail in the TSan
 * and ASan builds, while the same program with the grace period is clean.
 */
#include <urcu/urcu-memb.h>

#include "internal.h"

#if defined(__SANITIZE_THREAD__)
#define MAGPOOL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MAGPOOL_TSAN 1
#endif
#endif

#ifdef MAGPOOL_TSAN
#include <sanitizer/tsan_interface.h>
static char tsan_grace; /* a synchronisation object for TSan only */
#define tsan_release_grace() __tsan_release(&tsan_grace)
#define tsan_acquire_grace() __tsan_acquire(&tsan_grace)
#else
#define tsan_release_grace() ((void)0)
#define tsan_acquire_grace() ((void)0)
#endif

bool magpool_test_skip_grace_period;
static bool forked; /* set in the fork child, single-threaded there */

bool epoch_usable(void)
{
    return !forked;
}

void epoch_fork_child(void)
{
    forked = true;
}

/* Whether this thread is registered with liburcu. A plain TLS bool would be
 * a second thread-local variable; the thread directory (registry.c) already
 * exists exactly for registered threads, so registration is tied to it:
 * online when a thread creates its directory, offline when the directory is
 * torn down at thread exit. */
void epoch_thread_online(void)
{
    urcu_memb_register_thread();
}

void epoch_thread_offline(void)
{
    urcu_memb_unregister_thread();
}

void epoch_read_lock(void)
{
    urcu_memb_read_lock();
}

void epoch_read_unlock(void)
{
    tsan_release_grace();
    urcu_memb_read_unlock();
}

void epoch_synchronize(void)
{
    if (!magpool_test_skip_grace_period)
        urcu_memb_synchronize_rcu();
    tsan_acquire_grace();
}

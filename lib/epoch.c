/* SPDX-License-Identifier: MIT */
/*
 * Epoch-based reclamation of depot magazines, over Concurrency Kit's
 * ck_epoch, one private domain per pool.
 *
 * Why ck_epoch, and why private domains (docs/design.md, "Which epochs"):
 *   - A host program that uses liburcu or ck_epoch for its own structures
 *     must be able to use magpool from the same threads. liburcu's flavours
 *     keep one process-wide registration per thread (registering twice
 *     asserts), and a host's read section or grace period would be entangled
 *     with ours. A ck_epoch domain is a plain object: ours cannot meet the
 *     host's, whatever the host does.
 *   - Records are memory we own (a pointer in the thread's cache), not TLS
 *     inside another library: a thread that exits without unregistering
 *     leaves an inactive record behind, never a dangling pointer that a
 *     later grace period would walk.
 *   - Registration is a lock-free push, done under the pool's registration
 *     lock, which fork()'s prepare handler holds: a child never inherits a
 *     half-registered reader or a runtime lock held by a vanished thread.
 *   - Per pool: a trim of one pool waits only for readers of that pool.
 * The price: ck_epoch_begin executes a full fence where urcu-memb's read
 * lock has none. Read sections sit on the depot path (at most once per M
 * cache operations), never on the magazine fast path.
 *
 * Rules (docs/design.md, "Locks and grace periods"): a read section takes no
 * lock and waits for nothing; epoch_synchronize() is called with the pool's
 * growth lock held and never inside a read section.
 *
 * ThreadSanitizer. ck_pr's atomics are inline asm, invisible to TSan, so two
 * things are stated explicitly, per object:
 *   - the reclamation edge: a reader releases each magazine it read inside
 *     its section (epoch_note_read) just before leaving it; the reclaimer
 *     acquires each magazine it frees right after the grace period
 *     (epoch_before_free). stress_grace shows TSan and ASan still report the
 *     use after free when the grace period is skipped, and stress_tsan_edges
 *     that a race on unrelated data is still reported across a read section.
 *   - the lock graph: a read section is a hold and a grace-period wait a
 *     momentary lock + unlock of one virtual lock per domain, fed to TSan's
 *     deadlock detector with the sync effects switched off, so a lock taken
 *     inside a read section while someone waits for a grace period holding
 *     that lock is reported as a lock-order inversion (stress_lockgraph),
 *     deterministically, even when the two never overlap. Both sides are
 *     annotated in shared (read) mode: the detector's graph ignores the mode,
 *     and an exclusive annotation would be reported as "read lock of a write
 *     locked mutex" whenever a reader entered during the momentary hold.
 */
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>
#include <ck_stack.h>

#include "internal.h"
#include "sanitize.h"

bool magpool_test_skip_grace_period;

/* ---------------------------------------------- sanitizer bookkeeping */

#if defined(MAGPOOL_TSAN) || defined(MAGPOOL_LOCK_ASSERTS)
/* Sanitizer builds only: per-thread state of the checks below. */
static __thread unsigned read_depth;
#endif

#ifdef MAGPOOL_TSAN
#define NOTE_MAX 32
static __thread const void *noted[NOTE_MAX];
static __thread unsigned nnoted;
static __thread bool noted_overflow;

/* The grace period as a virtual rwlock (see the top of this file). */
static void gp_model(struct epoch_domain *d, unsigned flags)
{
    AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
    __tsan_mutex_pre_lock(&d->gp_model, flags);
    __tsan_mutex_post_lock(&d->gp_model, flags, 0);
    AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
}

static void gp_model_end(struct epoch_domain *d, unsigned flags)
{
    AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
    __tsan_mutex_pre_unlock(&d->gp_model, flags);
    __tsan_mutex_post_unlock(&d->gp_model, flags);
    AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
}
#endif

bool magpool_test_lock_asserts_off;

void epoch_check_no_read_section(const char *lock)
{
#ifdef MAGPOOL_LOCK_ASSERTS
    if (read_depth != 0 && !magpool_test_lock_asserts_off) {
        fprintf(stderr, "magpool: lock %s taken inside an epoch read section "
                        "(docs/design.md, \"Locks and grace periods\")\n", lock);
        abort(); /* sanitizer builds only: a broken rule of the library */
    }
#else
    (void)lock;
#endif
}

void epoch_note_read(const void *obj)
{
#ifdef MAGPOOL_TSAN
    if (read_depth == 0)
        return; /* growth lock held: no reclaimer can run beside us */
    for (unsigned i = 0; i < nnoted; i++)
        if (noted[i] == obj)
            return; /* a popper retrying on the same magazine */
    if (nnoted < NOTE_MAX)
        noted[nnoted++] = obj;
    else
        noted_overflow = true; /* released per domain at unlock, below */
#else
    (void)obj;
#endif
}

void epoch_before_free(const void *obj)
{
    tsan_acquire(obj); /* pairs with the reader's release in epoch_read_unlock */
}

/* ---------------------------------------------------------- domains */

int epoch_domain_init(struct epoch_domain *d)
{
    memset(d, 0, sizeof *d);
    ck_epoch_init(&d->ck);
    return 0;
}

static ck_epoch_record_t *record_of(ck_stack_entry_t *e)
{
    return (ck_epoch_record_t *)((char *)e - offsetof(ck_epoch_record_t, record_next));
}

void epoch_domain_destroy(struct epoch_domain *d)
{
    /* No thread uses the pool any more (destroy's contract). */
    ck_stack_entry_t *e = CK_STACK_FIRST(&d->ck.records);
    while (e) {
        ck_stack_entry_t *next = CK_STACK_NEXT(e);
        free(record_of(e));
        e = next;
    }
#ifdef MAGPOOL_TSAN
    __tsan_mutex_destroy(&d->gp_model, 0);
#endif
}

/* Caller holds the pool's registration lock. */
ck_epoch_record_t *epoch_reader_get(struct epoch_domain *d)
{
    ck_epoch_record_t *r = ck_epoch_recycle(&d->ck, NULL);
    if (r != NULL)
        return r;
    size_t sz = (sizeof *r + MAGPOOL_DESTRUCTIVE - 1) & ~(size_t)(MAGPOOL_DESTRUCTIVE - 1);
    r = aligned_alloc(MAGPOOL_DESTRUCTIVE, sz);
    if (r == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    ck_epoch_register(&d->ck, r, NULL);
    return r;
}

/* Caller holds the pool's registration lock; r is in no read section. */
void epoch_reader_put(ck_epoch_record_t *r)
{
    ck_epoch_unregister(r);
}

/* ---------------------------------------------------- read sections */

void epoch_read_lock(struct epoch_domain *d, ck_epoch_record_t *r)
{
#ifdef MAGPOOL_TSAN
    gp_model(d, __tsan_mutex_read_lock);
#else
    (void)d;
#endif
#if defined(MAGPOOL_TSAN) || defined(MAGPOOL_LOCK_ASSERTS)
    read_depth++;
#endif
    ck_epoch_begin(r, NULL);
}

void epoch_read_unlock(struct epoch_domain *d, ck_epoch_record_t *r)
{
#ifdef MAGPOOL_TSAN
    /* Done with every magazine read in this section: the reclaimer's
     * acquire after the grace period pairs with these. */
    for (unsigned i = 0; i < nnoted; i++)
        tsan_release(noted[i]);
    nnoted = 0;
    /* More magazines than the list holds (a popper that kept losing its
     * CAS): the rest are released through one object of the domain, which
     * the reclaimer acquires after every grace period. Coarser, still only
     * this section's edge — and never released before the reads it covers
     * (releasing a magazine when it is noted, before its `next` is read,
     * was reported by TSan as a race with the free). */
    if (noted_overflow) {
        tsan_release(&d->overflow_sync);
        noted_overflow = false;
    }
#endif
    ck_epoch_end(r, NULL);
#if defined(MAGPOOL_TSAN) || defined(MAGPOOL_LOCK_ASSERTS)
    read_depth--;
#endif
#ifdef MAGPOOL_TSAN
    gp_model_end(d, __tsan_mutex_read_lock);
#else
    (void)d;
#endif
}

/* ck_epoch spins on a reader that has not left its section; on a machine
 * with fewer cores than threads that reader may be waiting for our core. */
static void wait_yield(ck_epoch_t *e, ck_epoch_record_t *r, void *ctx)
{
    (void)e, (void)r, (void)ctx;
    sched_yield();
}

void epoch_synchronize(struct epoch_domain *d)
{
    epoch_check_no_read_section("(grace-period wait)");
#ifdef MAGPOOL_TSAN
    gp_model(d, __tsan_mutex_read_lock);
    gp_model_end(d, __tsan_mutex_read_lock);
#endif
    if (!magpool_test_skip_grace_period)
        ck_epoch_synchronize_wait(&d->ck, wait_yield, NULL);
    tsan_acquire(&d->overflow_sync); /* pairs with epoch_read_unlock's */
}

/* In the child of fork(): only the calling thread exists. Orphaned caches'
 * readers were unregistered by their reclamation (cache_fork_child); a
 * reader that was registered but not yet attached to a cache when the fork
 * happened may have been caught inside a section: mark every record but
 * `keep` inactive, so grace periods in the child end. (Written with ck_pr
 * stores: the owners are gone, and no one else reads these records now.) */
void epoch_fork_child(struct epoch_domain *d, ck_epoch_record_t *keep)
{
    ck_stack_entry_t *e;
    CK_STACK_FOREACH(&d->ck.records, e) {
        ck_epoch_record_t *r = record_of(e);
        if (r != keep)
            ck_pr_store_uint(&r->active, 0);
    }
}

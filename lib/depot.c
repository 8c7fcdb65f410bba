/* SPDX-License-Identifier: MIT */
/*
 * The depot: two lock-free stacks (Treiber 1986) of magazines, one of full
 * (non-empty) and one of empty magazines, shared by every thread of a pool.
 * A thread comes here once per M acquires or releases at most.
 *
 * ABA. A popper reads head = A and A->next = B, and is preempted; others pop
 * A and B and push A back; a plain CAS(head, A, B) would then succeed and put
 * B, which someone now owns, back on the stack. The head therefore carries a
 * 40-bit tag that every successful CAS increments, packed with a 24-bit
 * magazine index into one 64-bit word, so a single-width CAS suffices (no
 * cmpxchg16b, which GCC routes through libatomic and TSan models poorly).
 *
 * Use after free. A stale popper may still read `next` of a magazine that
 * was popped meanwhile, and trim may free magazines. Magazines are therefore
 * reached through an index table, and trim (a) clears the table slot, (b)
 * waits for an epoch grace period, (c) frees the memory. A popper outside the
 * growth lock runs inside an epoch read section, so (c) cannot overtake its
 * read; if it finds the slot cleared, the head has moved on, and it reloads.
 * The index itself goes back on the free list at (a), before the grace
 * period: a new magazine may take it while a stale popper still holds the
 * old pointer. That is safe only because the popper's CAS compares the head
 * with its tag, which has moved on (verify/depot.m reaches this case).
 *
 * Progress: push and pop are lock-free. Allocation and retirement of
 * magazines take a mutex; they happen only while the number of magazines
 * changes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void (*magpool_test_depot_pop_hook)(void);
void (*magpool_test_depot_read_hook)(void);
bool magpool_test_depot_no_tags;
bool magpool_test_mag_alloc_fails;

static inline uint64_t head_pack(uint32_t idx1, uint64_t tag)
{
    return (tag << MAG_INDEX_BITS) | idx1;
}

static inline uint32_t head_index(uint64_t head)
{
    return (uint32_t)(head & ((UINT64_C(1) << MAG_INDEX_BITS) - 1));
}

/* The tag takes the bits the index does not need: 40 of them, so a stalled
 * popper is fooled only if exactly a multiple of 2^40 operations on one
 * stack passed while it slept (the shift drops the carry out of the top). */
static inline uint64_t head_tag_next(uint64_t head)
{
    /* The no-tag switch exists only so the ABA regression tests can show
     * that they fail without tags (test/test_depot_aba.c, stress_depot). */
    if (unlikely(magpool_test_depot_no_tags))
        return 0;
    return (head >> MAG_INDEX_BITS) + 1;
}

/* The magazine at index idx1 (1-based), or NULL if it was retired. */
static inline struct mag *mag_at(struct depot *d, uint32_t idx1)
{
    uint32_t i = idx1 - 1;
    /* acquire (both): pair with the release stores in depot_mag_alloc() that
     * published the leaf and the initialised magazine. */
    mag_slot_t *leaf = atomic_load_acquire(&d->leaves[i >> MAG_LEAF_BITS]);
    return atomic_load_acquire(&leaf[i & (MAG_LEAF_SIZE - 1)]);
}

int depot_init(struct depot *d, unsigned rounds)
{
    memset(d, 0, sizeof *d);
    d->rounds = rounds;
    size_t bytes = sizeof(struct mag) + (size_t)rounds * sizeof(void *);
    /* A magazine is written by one thread at a time but several may sit side
     * by side in the heap; round to the destructive interference size so two
     * threads' loaded magazines never share a line. */
    d->mag_stride = (bytes + MAGPOOL_DESTRUCTIVE - 1) & ~(size_t)(MAGPOOL_DESTRUCTIVE - 1);
    atomic_init(&d->full.head, 0);
    atomic_init(&d->empty.head, 0);
    atomic_init(&d->live, 0);
    d->leaves = calloc(MAG_LEAVES, sizeof *d->leaves);
    if (d->leaves == NULL)
        return -1;
    return pthread_mutex_init(&d->alloc_lock, NULL) == 0 ? 0 : -1;
}

void depot_destroy(struct depot *d)
{
    /* Single-threaded now: relaxed loads. */
    for (uint32_t l = 0; d->leaves && l < MAG_LEAVES; l++) {
        mag_slot_t *leaf = atomic_load_relaxed(&d->leaves[l]);
        if (leaf == NULL)
            continue;
        for (uint32_t j = 0; j < MAG_LEAF_SIZE; j++)
            free(atomic_load_relaxed(&leaf[j]));
        free(leaf);
    }
    free(d->leaves);
    free(d->free_idx);
    pthread_mutex_destroy(&d->alloc_lock);
}

struct mag *depot_mag_alloc(struct depot *d)
{
    struct mag *m = unlikely(magpool_test_mag_alloc_fails)
                    ? NULL : aligned_alloc(MAGPOOL_DESTRUCTIVE, d->mag_stride);
    if (m == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    mutex_lock(&d->alloc_lock);
    uint32_t i;
    if (d->nfree_idx) {
        i = d->free_idx[--d->nfree_idx];
    } else if (d->nidx < MAG_INDEX_MAX) {
        i = d->nidx++;
    } else {
        pthread_mutex_unlock(&d->alloc_lock);
        free(m);
        errno = ENOMEM;
        return NULL;
    }
    mag_slot_t *leaf = atomic_load_relaxed(&d->leaves[i >> MAG_LEAF_BITS]); /* alloc_lock */
    if (leaf == NULL) {
        leaf = calloc(MAG_LEAF_SIZE, sizeof *leaf);
        if (leaf == NULL) {
            if (i + 1 == d->nidx)
                d->nidx--;
            else
                d->free_idx[d->nfree_idx++] = i;
            pthread_mutex_unlock(&d->alloc_lock);
            free(m);
            errno = ENOMEM;
            return NULL;
        }
        /* release: pairs with the acquire in mag_at(). */
        atomic_store_release(&d->leaves[i >> MAG_LEAF_BITS], leaf);
    }
    m->self = i + 1;
    m->count = 0;
    m->stamp = 0;
    atomic_init(&m->next, 0);
    /* release: pairs with the acquire in mag_at(); m is initialised. */
    atomic_store_release(&leaf[i & (MAG_LEAF_SIZE - 1)], m);
    atomic_fetch_add_relaxed(&d->live, 1); /* statistics only */
    pthread_mutex_unlock(&d->alloc_lock);
    return m;
}

void depot_retire(struct depot *d, struct mag *m)
{
    uint32_t i = m->self - 1;
    mutex_lock(&d->alloc_lock);
    if (d->nfree_idx == d->cap_free_idx) {
        uint32_t ncap = d->cap_free_idx ? 2 * d->cap_free_idx : 64;
        uint32_t *nf = realloc(d->free_idx, ncap * sizeof *nf);
        if (nf == NULL) {
            /* Keep the index out of use; its slot is cleared all the same. */
            goto clear;
        }
        d->free_idx = nf;
        d->cap_free_idx = ncap;
    }
    d->free_idx[d->nfree_idx++] = i;
clear:;
    mag_slot_t *leaf = atomic_load_relaxed(&d->leaves[i >> MAG_LEAF_BITS]);
    /* relaxed: a popper that still sees m is inside an epoch read section,
     * and m is freed only after the grace period that follows. */
    atomic_store_relaxed(&leaf[i & (MAG_LEAF_SIZE - 1)], NULL);
    atomic_fetch_sub_relaxed(&d->live, 1);
    pthread_mutex_unlock(&d->alloc_lock);
}

void depot_mag_free(struct depot *d, struct mag *m)
{
    (void)d;
    free(m);
}

void depot_push(struct depot *d, struct mag_stack *s, struct mag *m)
{
    depot_push_stamped(d, s, m, pool_clock_ns());
}

void depot_push_stamped(struct depot *d, struct mag_stack *s, struct mag *m, uint64_t stamp)
{
    (void)d;
    m->stamp = stamp;
    uint64_t old = atomic_load_relaxed(&s->head); /* CAS below validates it */
    uint64_t new;
    do {
        /* relaxed: m is private until the CAS publishes it; the CAS's release
         * orders this store (and m->count, m->rounds) before the publication. */
        atomic_store_relaxed(&m->next, head_index(old));
        new = head_pack(m->self, head_tag_next(old));
        /* release: pairs with the acquire load / acquire CAS in depot_pop(). */
    } while (!atomic_cas_weak_release(&s->head, &old, new));
}

struct mag *depot_pop(struct depot *d, struct mag_stack *s)
{
    /* acquire: pairs with the release CAS of the push that published the top
     * magazine (every later CAS on head is an RMW, so it continues that
     * push's release sequence), making m->next readable below. */
    uint64_t old = atomic_load_acquire(&s->head);
    for (;;) {
        uint32_t idx1 = head_index(old);
        if (idx1 == 0)
            return NULL;
        struct mag *m = mag_at(d, idx1);
        if (unlikely(m == NULL)) {
            /* Retired: it was popped since we read the head, so the head has
             * moved. acquire: as above. */
            old = atomic_load_acquire(&s->head);
            continue;
        }
        if (unlikely(magpool_test_depot_read_hook != NULL))
            magpool_test_depot_read_hook(); /* stalls here in stress_grace */
        epoch_note_read(m); /* TSan: the reclamation edge (epoch.c) */
        /* relaxed: if m was popped and re-pushed since `old` was read, this
         * may be a newer link, but then the tag has moved and the CAS fails. */
        uint32_t next = atomic_load_relaxed(&m->next);
        if (unlikely(magpool_test_depot_pop_hook != NULL))
            magpool_test_depot_pop_hook();
        uint64_t new = head_pack(next, head_tag_next(old));
        /* acquire on success: m->rounds / m->count written before the
         * publishing push are visible to the new owner. */
        if (atomic_cas_weak_acquire(&s->head, &old, new))
            return m;
    }
}

struct mag *depot_get_empty(struct depot *d)
{
    struct mag *m = depot_pop(d, &d->empty);
    return m ? m : depot_mag_alloc(d);
}

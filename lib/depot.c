/*
 * The depot: two lock-free stacks (Treiber 1986) of magazines, one of full
 * (non-empty) and one of empty magazines, shared by every thread of a pool.
 * A thread comes here once per M acquires or releases at most.
 *
 * ABA. A popper reads head = A and A->next = B, and is preempted; others pop
 * A and B and push A back; a plain CAS(head, A, B) would then succeed and put
 * B, which someone now owns, back on the stack. The head therefore carries a
 * 32-bit tag that every successful CAS increments, packed with a 32-bit
 * magazine index into one 64-bit word, so a single-width CAS suffices (no
 * cmpxchg16b, which GCC routes through libatomic and TSan models poorly).
 * Indices are possible because magazines live in per-pool chunks that are
 * never unmapped while the pool lives: a stale popper may read `next` of a
 * magazine that was popped meanwhile, and that read must hit valid memory.
 * (Reclaiming magazines safely is what epoch-based reclamation is for.)
 *
 * Progress: push and pop are lock-free. Allocation of new magazines takes a
 * mutex; it happens only while the number of magazines is still growing.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

void (*magpool_test_depot_pop_hook)(void);
bool magpool_test_depot_no_tags;

static inline uint64_t head_pack(uint32_t idx1, uint32_t tag)
{
    return ((uint64_t)tag << 32) | idx1;
}

static inline uint32_t head_tag_next(uint64_t head)
{
    /* The no-tag switch exists only so the ABA regression test can show that
     * it fails without tags (test/test_depot_aba.c). */
    if (unlikely(magpool_test_depot_no_tags))
        return 0;
    return (uint32_t)(head >> 32) + 1;
}

/* Chunk k holds MAG_BASE << k magazines and starts at index MAG_BASE*(2^k-1). */
static inline struct mag *mag_at(struct depot *d, uint32_t idx1)
{
    uint64_t v = (uint64_t)(idx1 - 1) + MAG_BASE;
    unsigned k = 63u - (unsigned)__builtin_clzll(v) - 3u; /* log2(MAG_BASE)=3 */
    uint64_t off = v - ((uint64_t)MAG_BASE << k);
    /* acquire: pairs with the release store that published the chunk in
     * depot_mag_alloc(); an index is only seen after its chunk exists. */
    char *base = atomic_load_acquire(&d->chunk[k]);
    return (struct mag *)(base + off * d->mag_stride);
}

int depot_init(struct depot *d, unsigned rounds)
{
    memset(d, 0, sizeof *d);
    d->rounds = rounds;
    size_t bytes = sizeof(struct mag) + (size_t)rounds * sizeof(void *);
    /* A magazine is written by one thread at a time but several sit side by
     * side; round to the destructive interference size so two threads'
     * loaded magazines never share a line. */
    d->mag_stride = (bytes + MAGPOOL_DESTRUCTIVE - 1) & ~(size_t)(MAGPOOL_DESTRUCTIVE - 1);
    atomic_init(&d->full.head, 0);
    atomic_init(&d->empty.head, 0);
    for (unsigned k = 0; k < MAG_CHUNKS; k++)
        atomic_init(&d->chunk[k], NULL);
    return pthread_mutex_init(&d->alloc_lock, NULL) == 0 ? 0 : -1;
}

void depot_destroy(struct depot *d)
{
    for (unsigned k = 0; k < MAG_CHUNKS; k++) {
        char *c = atomic_load_relaxed(&d->chunk[k]); /* single-threaded now */
        if (c)
            munmap(c, ((size_t)MAG_BASE << k) * d->mag_stride);
    }
    pthread_mutex_destroy(&d->alloc_lock);
}

struct mag *depot_mag_alloc(struct depot *d)
{
    struct mag *m = NULL;
    pthread_mutex_lock(&d->alloc_lock);
    uint32_t idx = d->nmags;
    uint64_t v = (uint64_t)idx + MAG_BASE;
    unsigned k = 63u - (unsigned)__builtin_clzll(v) - 3u;
    if (k >= MAG_CHUNKS) {
        errno = ENOMEM;
        goto out;
    }
    char *c = atomic_load_relaxed(&d->chunk[k]); /* alloc_lock orders writers */
    if (c == NULL) {
        size_t len = ((size_t)MAG_BASE << k) * d->mag_stride;
        c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (c == MAP_FAILED) {
            errno = ENOMEM;
            goto out;
        }
        /* release: pairs with the acquire in mag_at(). */
        atomic_store_release(&d->chunk[k], c);
    }
    d->nmags = idx + 1;
    m = (struct mag *)(c + (v - ((uint64_t)MAG_BASE << k)) * d->mag_stride);
    m->self = idx + 1;
    m->count = 0;
    atomic_store_relaxed(&m->next, 0); /* private until pushed */
out:
    pthread_mutex_unlock(&d->alloc_lock);
    return m;
}

void depot_push(struct depot *d, struct mag_stack *s, struct mag *m)
{
    (void)d;
    uint64_t old = atomic_load_relaxed(&s->head); /* CAS below validates it */
    uint64_t new;
    do {
        /* relaxed: m is private until the CAS publishes it; the CAS's release
         * orders this store (and m->count, m->rounds) before the publication. */
        atomic_store_relaxed(&m->next, (uint32_t)old);
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
        uint32_t idx1 = (uint32_t)old;
        if (idx1 == 0)
            return NULL;
        struct mag *m = mag_at(d, idx1);
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

/* SPDX-License-Identifier: MIT */
/*
 * The shared segment: create, attach, detach, unlink, and the robust mutex.
 *
 * Why POSIX shm_open and not memfd_create: peers are unrelated processes
 * (a feed handler, a strategy, a gateway started by different scripts) that
 * find the pool by name; a memfd would have to be passed over a Unix socket
 * by a broker. The price is a name in /dev/shm that outlives a crash: create
 * refuses an existing name (EEXIST) rather than reuse a segment of unknown
 * state, and magpool_shm_unlink removes it.
 *
 * Trust: attach reads the geometry once, checks magic, layout version and
 * checksum, recomputes every offset from the parameters and compares, and
 * checks the file is as large as the geometry says. From then on only the
 * private copy (p->geo) is used for bounds; the shared copy is never read
 * again.
 *
 * The robust mutex: a holder killed anywhere inside a critical section
 * leaves the free stack possibly inconsistent with the stamps. The next
 * locker gets EOWNERDEAD and rebuilds the free stack from the stamps (the
 * ground truth, see shm_store.c), then marks the mutex consistent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm_internal.h"

static pthread_once_t shm_once = PTHREAD_ONCE_INIT;
static pid_t shm_self_pid;
static _Atomic uint64_t shm_next_id = 1;

/* This process's open handles, for fork's handlers: docs/design.md lock
 * table, rows 10 (this lock) -> 11 (every handle's tc_lock). */
static pthread_mutex_t shm_handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct magpool_shm *shm_handles;

/* fork() while another thread holds a handle's tc_lock would leave it
 * locked in the child by a thread that does not exist there; the child's
 * forking thread, if it has a thread cache, takes it in its exit destructor
 * (tcache_exit) and would hang. So the prepare handler takes them all. */
static void shm_atfork_prepare(void)
{
    pthread_mutex_lock(&shm_handles_lock);
    for (struct magpool_shm *p = shm_handles; p; p = p->next_open)
        pthread_mutex_lock(&p->tc_lock);
}

static void shm_atfork_release(void)
{
    for (struct magpool_shm *p = shm_handles; p; p = p->next_open)
        pthread_mutex_unlock(&p->tc_lock);
    pthread_mutex_unlock(&shm_handles_lock);
}

/* The child of a fork has the parent's handles and thread caches but is
 * another process: it gets its own pid here, and handles opened by the
 * parent answer ECHILD from then on (shm_handle_ok). */
static void shm_atfork_child(void)
{
    shm_self_pid = getpid();
    shm_tcache_forget_tls();
    shm_atfork_release(); /* default mutexes: the child's thread may unlock */
}

static void shm_init_once(void)
{
    shm_self_pid = getpid();
    pthread_atfork(shm_atfork_prepare, shm_atfork_release, shm_atfork_child);
}

bool shm_handle_ok(const struct magpool_shm *p)
{
    if (!p) {
        errno = EINVAL;
        return false;
    }
    if (p->pid != shm_self_pid) {
        errno = ECHILD;
        return false;
    }
    return true;
}

static uint64_t fnv1a(const void *data, size_t n)
{
    const unsigned char *b = data;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    return h;
}

static uint64_t round_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* The geometry of a configuration; -1/EINVAL if out of range. */
static int geo_compute(struct shm_geometry *g, const magpool_shm_config_t *c)
{
    if (c->block_size == 0 || c->block_size > (1u << 20) || c->max_blocks == 0 ||
        c->max_blocks > MAGPOOL_SHM_MAX_BLOCKS || c->initial_blocks > c->max_blocks ||
        c->grow_blocks == 0 || c->cache_size < 2 || c->cache_size > 4096 ||
        c->rings > MAGPOOL_SHM_MAX_RINGS ||
        (c->rings && (c->ring_size < 2 || c->ring_size > MAGPOOL_SHM_MAX_RING_SIZE ||
                      (c->ring_size & (c->ring_size - 1)))) ||
        (c->mode & ~(mode_t)0777)) {
        errno = EINVAL;
        return -1;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    memset(g, 0, sizeof *g);
    g->magic = SHM_MAGIC;
    g->layout = MAGPOOL_SHM_LAYOUT;
    g->header_size = sizeof(struct shm_header);
    g->block_size = c->block_size;
    g->stride = round_up(c->block_size, SHM_LINE);
    g->max_blocks = c->max_blocks;
    g->initial_blocks = c->initial_blocks;
    g->grow_blocks = c->grow_blocks;
    g->cache_size = c->cache_size;
    g->rings = c->rings;
    g->ring_size = c->rings ? c->ring_size : 0;
    g->max_procs = MAGPOOL_SHM_MAX_PROCS;
    g->off_procs = round_up(sizeof(struct shm_header), SHM_LINE);
    g->off_stamps = g->off_procs + round_up(g->max_procs * sizeof(struct shm_proc), SHM_LINE);
    g->off_store = g->off_stamps + round_up(g->max_blocks * 4, SHM_LINE);
    g->off_rings = g->off_store + round_up(g->max_blocks * 4, SHM_LINE);
    g->ring_bytes = round_up(sizeof(struct shm_ring) + (uint64_t)g->ring_size * 8, SHM_LINE);
    g->off_blocks = round_up(g->off_rings + g->rings * g->ring_bytes, page);
    g->seg_size = g->off_blocks + g->max_blocks * g->stride;
    g->checksum = fnv1a(g, offsetof(struct shm_geometry, checksum));
    return 0;
}

/* Is @p g (read from a segment of @p file_size bytes) a geometry this
 * version wrote? Sets errno to the documented code when not. */
static int geo_validate(const struct shm_geometry *g, uint64_t file_size)
{
    if (g->magic != SHM_MAGIC) {
        errno = EBADMSG;
        return -1;
    }
    if (g->layout != MAGPOOL_SHM_LAYOUT) {
        errno = EPROTO;
        return -1;
    }
    if (g->checksum != fnv1a(g, offsetof(struct shm_geometry, checksum))) {
        errno = EBADMSG;
        return -1;
    }
    magpool_shm_config_t c = {
        .block_size = g->block_size, .max_blocks = g->max_blocks,
        .initial_blocks = g->initial_blocks, .grow_blocks = g->grow_blocks,
        .cache_size = g->cache_size, .rings = g->rings, .ring_size = g->ring_size,
    };
    struct shm_geometry want;
    if (geo_compute(&want, &c) != 0 || memcmp(&want, g, sizeof want) != 0 ||
        file_size < g->seg_size) {
        errno = EBADMSG;
        return -1;
    }
    return 0;
}

/* "/magpool.<pid>" is the live view's segment (lib/pubseg.c), which its
 * tools list and clean up by that prefix: a pool must not be mistaken for
 * one, so the prefix is refused. */
static bool name_ok(const char *name)
{
    if (!name || name[0] != '/' || name[1] == '\0' || strchr(name + 1, '/') ||
        strlen(name) > 250 || strncmp(name, "/magpool.", 9) == 0) {
        errno = EINVAL;
        return false;
    }
    return true;
}

int magpool_shm_config_init(magpool_shm_config_t *cfg, size_t cfg_size, size_t block_size)
{
    if (!cfg || cfg_size < sizeof(magpool_shm_config_t)) {
        errno = EINVAL;
        return -1;
    }
    memset(cfg, 0, cfg_size);
    cfg->block_size = block_size;
    cfg->max_blocks = 65536;
    cfg->initial_blocks = 1024;
    cfg->grow_blocks = 1024;
    cfg->cache_size = 64;
    cfg->rings = 1;
    cfg->ring_size = 1024;
    cfg->mode = 0600;
    return 0;
}

int shm_lock(struct magpool_shm *p)
{
    int rc = pthread_mutex_lock(&p->hdr->lock);
    if (rc == EOWNERDEAD) {
        /* The holder died inside a critical section: the free stack may
         * disagree with the stamps; the stamps are right (shm_store.c). */
        shm_store_rebuild(p);
        atomic_fetch_add_relaxed(&p->hdr->repairs, 1);
        pthread_mutex_consistent(&p->hdr->lock);
        rc = 0;
    }
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void shm_unlock(struct magpool_shm *p)
{
    pthread_mutex_unlock(&p->hdr->lock);
}

uint64_t shm_committed(const struct magpool_shm *p)
{
    /* relaxed: a bound only; written under the lock, and a block index is
     * never trusted on this value alone (its stamp is checked too). */
    uint64_t c = atomic_load_relaxed(&p->hdr->committed);
    return c > p->geo.max_blocks ? p->geo.max_blocks : c;
}

/* A handle over a mapped, validated segment. */
static struct magpool_shm *handle_new(const struct shm_geometry *g, unsigned char *base, int fd)
{
    struct magpool_shm *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->geo = *g;
    p->base = base;
    p->hdr = (struct shm_header *)base;
    p->procs = (struct shm_proc *)(base + g->off_procs);
    p->stamps = (_Atomic uint32_t *)(base + g->off_stamps);
    p->store = (uint32_t *)(base + g->off_store);
    p->blocks = base + g->off_blocks;
    p->blocks_bytes = g->max_blocks * g->stride;
    if ((g->stride & (g->stride - 1)) == 0) /* stride >= 64: the shift is never 0 */
        p->stride_shift = (unsigned)__builtin_ctzll(g->stride);
    p->fd = fd;
    p->pid = shm_self_pid;
    p->id = atomic_fetch_add_relaxed(&shm_next_id, 1);
    pthread_mutex_init(&p->tc_lock, NULL);
    pthread_mutex_init(&p->intent_lock, NULL);
    if (shm_tcache_key_init(p) != 0) {
        pthread_mutex_destroy(&p->intent_lock);
        pthread_mutex_destroy(&p->tc_lock);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&shm_handles_lock);
    p->next_open = shm_handles;
    shm_handles = p;
    pthread_mutex_unlock(&shm_handles_lock);
    return p;
}

static void handle_free(struct magpool_shm *p, bool unmap)
{
    pthread_mutex_lock(&shm_handles_lock);
    for (struct magpool_shm **pp = &shm_handles; *pp; pp = &(*pp)->next_open)
        if (*pp == p) {
            *pp = p->next_open;
            break;
        }
    pthread_mutex_unlock(&shm_handles_lock);
    shm_tcache_destroy_key(p);
    pthread_mutex_destroy(&p->intent_lock);
    pthread_mutex_destroy(&p->tc_lock);
    if (unmap) {
        munmap(p->base, p->geo.seg_size);
        close(p->fd);
    }
    free(p);
}

static int init_header(struct shm_header *h, const struct shm_geometry *g)
{
    /* The magic last: an attach racing this sees 0 (EAGAIN, "not ready"),
     * not a half-written geometry (EBADMSG). */
    struct shm_geometry unmarked = *g;
    unmarked.magic = 0;
    h->geo = unmarked;
    __atomic_store_n(&h->geo.magic, g->magic, __ATOMIC_RELEASE);
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (!rc)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(&h->lock, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

magpool_shm_t *magpool_shm_create(const char *name, const magpool_shm_config_t *cfg,
                                  size_t cfg_size)
{
    pthread_once(&shm_once, shm_init_once);
    struct shm_geometry g;
    if (!name_ok(name))
        return NULL;
    if (!cfg || cfg_size < offsetof(magpool_shm_config_t, mode) + sizeof(mode_t)) {
        errno = EINVAL;
        return NULL;
    }
    magpool_shm_config_t c = *cfg;
    if (c.mode == 0)
        c.mode = 0600;
    if (geo_compute(&g, &c) != 0)
        return NULL;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, c.mode);
    if (fd < 0)
        return NULL;
    int err;
    unsigned char *base = MAP_FAILED;
    struct magpool_shm *p = NULL;
    /* shm_open's mode is filtered by the umask; the caller asked for this. */
    if (fchmod(fd, c.mode) != 0 || ftruncate(fd, (off_t)g.seg_size) != 0) {
        err = errno;
        goto fail;
    }
    /* Commit the metadata and the initial blocks now: touching an
     * uncommitted page of a full tmpfs is SIGBUS, fallocate is ENOSPC. */
    err = posix_fallocate(fd, 0, (off_t)(g.off_blocks + g.initial_blocks * g.stride));
    if (err)
        goto fail;
    base = mmap(NULL, g.seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    struct shm_header *h = (struct shm_header *)base;
    err = init_header(h, &g);
    if (err)
        goto fail;
    p = handle_new(&g, base, fd);
    if (!p) {
        err = ENOMEM;
        goto fail;
    }
    for (unsigned r = 0; r < g.rings; r++)
        shm_ring_init(shm_ring_at(p, r), g.ring_size);
    if (shm_proc_register(p) != 0) {
        err = errno;
        goto fail;
    }
    if (g.initial_blocks) {
        if (shm_lock(p) != 0) {
            err = errno;
            goto fail;
        }
        int rc = shm_store_grow(p);
        err = errno;
        shm_unlock(p);
        if (rc != 0)
            goto fail;
    }
    /* release: pairs with the acquire in magpool_shm_attach; a peer that
     * sees ready sees the initialised header, mutex, rings and stack. */
    atomic_store_release(&h->ready, 1);
    return p;
fail:
    if (p)
        handle_free(p, false);
    if (base != MAP_FAILED)
        munmap(base, g.seg_size);
    close(fd);
    shm_unlink(name);
    errno = err;
    return NULL;
}

magpool_shm_t *magpool_shm_attach(const char *name, size_t block_size)
{
    pthread_once(&shm_once, shm_init_once);
    if (!name_ok(name))
        return NULL;
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int err;
    struct stat st;
    struct shm_geometry g;
    unsigned char *base = MAP_FAILED;
    if (fstat(fd, &st) != 0) {
        err = errno;
        goto fail;
    }
    /* The geometry is read with pread into private memory, never used in
     * place, so a peer rewriting it later changes nothing here. */
    if ((uint64_t)st.st_size < sizeof(struct shm_header) ||
        pread(fd, &g, sizeof g, 0) != (ssize_t)sizeof g) {
        err = EBADMSG;
        goto fail;
    }
    if (g.magic == 0) { /* ftruncated, the creator has not written yet */
        err = EAGAIN;
        goto fail;
    }
    if (geo_validate(&g, (uint64_t)st.st_size) != 0) {
        err = errno;
        goto fail;
    }
    if (block_size && block_size != g.block_size) {
        err = ERANGE;
        goto fail;
    }
    base = mmap(NULL, g.seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    /* acquire: pairs with the release store at the end of create. */
    if (atomic_load_acquire(&((struct shm_header *)base)->ready) != 1) {
        err = EAGAIN;
        goto fail;
    }
    struct magpool_shm *p = handle_new(&g, base, fd);
    if (!p) {
        err = ENOMEM;
        goto fail;
    }
    if (shm_proc_register(p) != 0) {
        err = errno;
        handle_free(p, false);
        goto fail;
    }
    return p;
fail:
    if (base != MAP_FAILED)
        munmap(base, g.seg_size);
    close(fd);
    errno = err;
    return NULL;
}

int magpool_shm_detach(magpool_shm_t *p)
{
    if (!p)
        return 0;
    if (!shm_handle_ok(p)) {
        /* Inherited through fork: the slot and the caches are the parent's. */
        handle_free(p, true);
        errno = ECHILD;
        return -1;
    }
    shm_tcache_flush_all(p);
    shm_proc_unregister(p);
    handle_free(p, true);
    return 0;
}

int magpool_shm_unlink(const char *name)
{
    if (!name_ok(name))
        return -1;
    return shm_unlink(name);
}

size_t magpool_shm_block_size(const magpool_shm_t *p)
{
    if (!p) {
        errno = EINVAL;
        return 0;
    }
    return p->geo.block_size;
}

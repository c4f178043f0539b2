/* The gradient engine's buffers, kept from one call to the next (see
 * train.h). A training step asks for the same buffer sizes in the same
 * order every time; handing back last step's blocks saves the page faults
 * and the kernel's page clearing of fresh allocations (about an eighth of
 * a demo-shape step). A block is matched by its exact size. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "train/train.h"
#include "util/util.h"

typedef struct {
    void *p;
    size_t bytes;
    int busy; /* handed out and not yet put back */
    int used; /* handed out during the current call */
} pool_block;

struct rg_buffer_pool {
    pthread_mutex_t owner; /* held by the call that uses the pool */
    pool_block *blocks;
    int n, cap;
};

rg_buffer_pool *rg_pool_new(void) {
    rg_buffer_pool *pool = rg_xcalloc(1, sizeof *pool);
    pthread_mutex_init(&pool->owner, NULL);
    return pool;
}

void rg_pool_free(rg_buffer_pool *pool) {
    if (!pool) return;
    for (int i = 0; i < pool->n; i++) free(pool->blocks[i].p);
    free(pool->blocks);
    pthread_mutex_destroy(&pool->owner);
    free(pool);
}

int rg_pool_acquire(rg_buffer_pool *pool) { return pool && pthread_mutex_trylock(&pool->owner) == 0; }

void *rg_pool_get(rg_buffer_pool *pool, size_t bytes, int zero) {
    if (!bytes) bytes = 1;
    pool_block *b = NULL;
    for (int i = 0; i < pool->n && !b; i++)
        if (!pool->blocks[i].busy && pool->blocks[i].bytes == bytes) b = &pool->blocks[i];
    if (b) {
        if (zero) memset(b->p, 0, bytes);
    } else {
        if (pool->n == pool->cap) {
            pool->cap = pool->cap ? 2 * pool->cap : 64;
            pool->blocks = rg_xrealloc(pool->blocks, sizeof *pool->blocks * (size_t)pool->cap);
        }
        b = &pool->blocks[pool->n++];
        *b = (pool_block){rg_xcalloc(bytes, 1), bytes, 0, 0};
    }
    b->busy = b->used = 1;
    return b->p;
}

void rg_pool_put(rg_buffer_pool *pool, void *p) {
    for (int i = 0; i < pool->n; i++)
        if (pool->blocks[i].p == p) {
            pool->blocks[i].busy = 0;
            return;
        }
}

/* Blocks this call did not use are freed: a change of sequence length
 * must not leave the last length's buffers behind. */
void rg_pool_release(rg_buffer_pool *pool) {
    int kept = 0;
    for (int i = 0; i < pool->n; i++) {
        pool_block b = pool->blocks[i];
        if (!b.used) {
            free(b.p);
            continue;
        }
        b.busy = b.used = 0;
        pool->blocks[kept++] = b;
    }
    pool->n = kept;
    pthread_mutex_unlock(&pool->owner);
}

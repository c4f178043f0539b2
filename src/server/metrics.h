/* Counters and gauges of `rgemma serve`, written out as Prometheus text at
 * GET /metrics. Counters are atomics so any thread may bump them. */
#ifndef RG_SERVER_METRICS_H
#define RG_SERVER_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "server/store.h"

typedef enum {
    RG_EP_CHAT,
    RG_EP_COMPLETIONS,
    RG_EP_MODELS,
    RG_EP_HEALTH,
    RG_EP_TOKENIZE,
    RG_EP_DETOKENIZE,
    RG_EP_METRICS,
    RG_EP_READY,
    RG_EP_OTHER,
    RG_EP_COUNT
} rg_endpoint;

#define RG_RATE_WINDOW 10 /* seconds the tokens/s gauge averages over */
#define RG_BATCH_BUCKETS 9 /* batch size buckets: <= 1, 2, 4, ..., 256 */
#define RG_STEP_BUCKETS 10 /* step time buckets (see metrics.c) */

typedef struct {
    atomic_ullong requests[RG_EP_COUNT];
    atomic_ullong responses[600];      /* by HTTP status */
    atomic_ullong rejected;            /* 503: queue full */
    atomic_ullong timeouts;            /* requests stopped by the request timeout */
    atomic_ullong disconnects;         /* clients gone before their answer was complete */
    atomic_ullong prompt_tokens;       /* prompt tokens processed (cache hits excluded) */
    atomic_ullong cached_tokens;       /* prompt tokens taken from the state cache */
    atomic_ullong generated_tokens;
    atomic_ullong prompt_us, generate_us;
    /* batched steps: histograms of the sequences per step and of the step time */
    atomic_ullong batch_le[RG_BATCH_BUCKETS], batch_sum, steps;
    atomic_ullong step_le[RG_STEP_BUCKETS], step_us;
    pthread_mutex_t mu;                /* guards the per-second token buckets */
    int64_t bucket_sec[RG_RATE_WINDOW];
    uint64_t bucket_tokens[RG_RATE_WINDOW];
} rg_metrics;

/* Gauges sampled when /metrics is read. */
typedef struct {
    int slots, slots_busy, queue_depth, queue_capacity;
    int cache_entries, cache_capacity;
    uint64_t cache_bytes, cache_hits, cache_misses;
    uint64_t state_bytes;
    int store_on;          /* --state-store given: the store's figures follow */
    rg_store_stats store;
} rg_metrics_gauges;

void rg_metrics_init(rg_metrics *m);
void rg_metrics_destroy(rg_metrics *m);
void rg_metrics_response(rg_metrics *m, int status);
/* n tokens generated now (counter and the tokens/s window) */
void rg_metrics_generated(rg_metrics *m, int n);
/* One batched step over `seqs` sequences took `seconds`. */
void rg_metrics_step(rg_metrics *m, int seqs, double seconds);
/* Generated tokens per second over the last RG_RATE_WINDOW seconds. */
double rg_metrics_rate(rg_metrics *m);
/* Prometheus text exposition (malloc'd). */
char *rg_metrics_text(rg_metrics *m, const rg_metrics_gauges *g);

#endif

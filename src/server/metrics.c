/* Prometheus text for `rgemma serve` (see metrics.h). */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

void rg_metrics_init(rg_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void rg_metrics_destroy(rg_metrics *m) { pthread_mutex_destroy(&m->mu); }

void rg_metrics_response(rg_metrics *m, int status) {
    if (status >= 100 && status < 600) atomic_fetch_add(&m->responses[status], 1);
}

static int64_t now_sec(void) { return (int64_t)rg_time_s(); }

void rg_metrics_generated(rg_metrics *m, int n) {
    atomic_fetch_add(&m->generated_tokens, (unsigned long long)n);
    int64_t s = now_sec();
    int b = (int)(s % RG_RATE_WINDOW);
    pthread_mutex_lock(&m->mu);
    if (m->bucket_sec[b] != s) {
        m->bucket_sec[b] = s;
        m->bucket_tokens[b] = 0;
    }
    m->bucket_tokens[b] += (uint64_t)n;
    pthread_mutex_unlock(&m->mu);
}

double rg_metrics_rate(rg_metrics *m) {
    int64_t s = now_sec();
    uint64_t sum = 0;
    pthread_mutex_lock(&m->mu);
    for (int b = 0; b < RG_RATE_WINDOW; b++)
        if (m->bucket_sec[b] > s - RG_RATE_WINDOW) sum += m->bucket_tokens[b];
    pthread_mutex_unlock(&m->mu);
    return (double)sum / RG_RATE_WINDOW;
}

static const double step_bounds[RG_STEP_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

void rg_metrics_step(rg_metrics *m, int seqs, double seconds) {
    for (int b = 0; b < RG_BATCH_BUCKETS; b++)
        if (seqs <= 1 << b) atomic_fetch_add(&m->batch_le[b], 1);
    for (int b = 0; b < RG_STEP_BUCKETS; b++)
        if (seconds <= step_bounds[b]) atomic_fetch_add(&m->step_le[b], 1);
    atomic_fetch_add(&m->batch_sum, (unsigned long long)seqs);
    atomic_fetch_add(&m->step_us, (unsigned long long)(seconds * 1e6));
    atomic_fetch_add(&m->steps, 1);
}

typedef struct {
    char *s;
    size_t len, cap;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0);
        b->s = rg_xrealloc(b->s, b->cap);
    }
}

static void metric(buf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const endpoint_names[RG_EP_COUNT] = {
    "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/tokenize", "/detokenize", "/metrics",
    "/ready", "other"};

/* the shared state store (--state-store) */
static void store_text(buf *b, const rg_store_stats *st) {
    metric(b, "rgemma_state_store_up", "gauge", "1 while the last state store command succeeded.");
    put(b, "rgemma_state_store_up %d\n", st->up);
    struct {
        const char *name, *help;
        uint64_t v;
    } counters[] = {
        {"rgemma_state_store_hits_total", "Requests that continued from a state of the shared store.", st->hits},
        {"rgemma_state_store_misses_total", "Store lookups that gave no usable state.", st->misses},
        {"rgemma_state_store_hit_tokens_total", "Prompt tokens whose state came from the shared store.",
         st->hit_tokens},
        {"rgemma_state_store_errors_total", "Failed store connects and commands, bad replies, refused states.",
         st->errors},
        {"rgemma_state_store_skipped_total", "Store operations not tried while Redis was held down after a failure.",
         st->skipped},
        {"rgemma_state_store_writes_total", "States written to the store.", st->writes},
        {"rgemma_state_store_dropped_total", "States not written (write queue full, or stopping).", st->dropped},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        metric(b, counters[i].name, "counter", counters[i].help);
        put(b, "%s %llu\n", counters[i].name, (unsigned long long)counters[i].v);
    }
    metric(b, "rgemma_state_store_bytes_total", "counter", "State bytes read from and written to the store.");
    put(b, "rgemma_state_store_bytes_total{op=\"read\"} %llu\n", (unsigned long long)st->read_bytes);
    put(b, "rgemma_state_store_bytes_total{op=\"write\"} %llu\n", (unsigned long long)st->write_bytes);
    metric(b, "rgemma_state_store_seconds", "summary", "Store round trips: lookups (EXISTS and GET) and writes (SET).");
    put(b, "rgemma_state_store_seconds_sum{op=\"lookup\"} %.6f\n", st->lookup_s);
    put(b, "rgemma_state_store_seconds_count{op=\"lookup\"} %llu\n", (unsigned long long)st->lookups);
    put(b, "rgemma_state_store_seconds_sum{op=\"write\"} %.6f\n", st->write_s);
    put(b, "rgemma_state_store_seconds_count{op=\"write\"} %llu\n", (unsigned long long)st->writes);
}

char *rg_metrics_text(rg_metrics *m, const rg_metrics_gauges *g) {
    buf b = {rg_xmalloc(4096), 0, 4096};
    b.s[0] = 0;
    metric(&b, "rgemma_requests_total", "counter", "HTTP requests received, by endpoint.");
    for (int i = 0; i < RG_EP_COUNT; i++)
        put(&b, "rgemma_requests_total{endpoint=\"%s\"} %llu\n", endpoint_names[i],
            (unsigned long long)atomic_load(&m->requests[i]));
    metric(&b, "rgemma_responses_total", "counter", "HTTP responses sent, by status code.");
    for (int i = 100; i < 600; i++) {
        unsigned long long n = atomic_load(&m->responses[i]);
        if (n) put(&b, "rgemma_responses_total{code=\"%d\"} %llu\n", i, n);
    }
    struct {
        const char *name, *help;
        atomic_ullong *v;
    } counters[] = {
        {"rgemma_requests_rejected_total", "Requests refused with 503 because all slots and the queue were full.",
         &m->rejected},
        {"rgemma_request_timeouts_total", "Requests stopped by the request timeout.", &m->timeouts},
        {"rgemma_client_disconnects_total", "Clients that went away before their answer was complete.",
         &m->disconnects},
        {"rgemma_prompt_tokens_total", "Prompt tokens processed (state-cache hits excluded).", &m->prompt_tokens},
        {"rgemma_prompt_tokens_cached_total", "Prompt tokens taken from the conversation state cache.",
         &m->cached_tokens},
        {"rgemma_generated_tokens_total", "Tokens generated.", &m->generated_tokens},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        metric(&b, counters[i].name, "counter", counters[i].help);
        put(&b, "%s %llu\n", counters[i].name, (unsigned long long)atomic_load(counters[i].v));
    }
    metric(&b, "rgemma_prompt_seconds_total", "counter", "Time spent processing prompts.");
    put(&b, "rgemma_prompt_seconds_total %.6f\n", atomic_load(&m->prompt_us) / 1e6);
    metric(&b, "rgemma_generate_seconds_total", "counter", "Time spent generating tokens.");
    put(&b, "rgemma_generate_seconds_total %.6f\n", atomic_load(&m->generate_us) / 1e6);
    unsigned long long steps = atomic_load(&m->steps);
    metric(&b, "rgemma_batch_size", "histogram", "Sequences advanced together in one batched step.");
    for (int i = 0; i < RG_BATCH_BUCKETS; i++)
        put(&b, "rgemma_batch_size_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)atomic_load(&m->batch_le[i]));
    put(&b, "rgemma_batch_size_bucket{le=\"+Inf\"} %llu\n", steps);
    put(&b, "rgemma_batch_size_sum %llu\nrgemma_batch_size_count %llu\n", (unsigned long long)atomic_load(&m->batch_sum),
        steps);
    metric(&b, "rgemma_step_seconds", "histogram", "Time of one batched step (all busy slots advance one token).");
    for (int i = 0; i < RG_STEP_BUCKETS; i++)
        put(&b, "rgemma_step_seconds_bucket{le=\"%g\"} %llu\n", step_bounds[i],
            (unsigned long long)atomic_load(&m->step_le[i]));
    put(&b, "rgemma_step_seconds_bucket{le=\"+Inf\"} %llu\n", steps);
    put(&b, "rgemma_step_seconds_sum %.6f\nrgemma_step_seconds_count %llu\n", atomic_load(&m->step_us) / 1e6, steps);
    metric(&b, "rgemma_tokens_per_second", "gauge", "Generated tokens per second over the last 10 seconds.");
    put(&b, "rgemma_tokens_per_second %.3f\n", rg_metrics_rate(m));
    struct {
        const char *name, *help;
        double v;
    } gauges[] = {
        {"rgemma_slots", "Slots (requests processed at once).", g->slots},
        {"rgemma_slots_busy", "Slots processing a request now.", g->slots_busy},
        {"rgemma_queue_depth", "Requests waiting for a slot.", g->queue_depth},
        {"rgemma_queue_capacity", "Requests that may wait before new ones get 503.", g->queue_capacity},
        {"rgemma_state_bytes", "Bytes of one sequence state.", (double)g->state_bytes},
        {"rgemma_state_cache_entries", "Conversation states saved in the cache.", g->cache_entries},
        {"rgemma_state_cache_capacity", "Conversation states the cache may hold.", g->cache_capacity},
        {"rgemma_state_cache_bytes", "Memory held by the state cache.", (double)g->cache_bytes},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        metric(&b, gauges[i].name, "gauge", gauges[i].help);
        put(&b, "%s %.0f\n", gauges[i].name, gauges[i].v);
    }
    metric(&b, "rgemma_state_cache_hits_total", "counter", "Requests that continued from a saved state.");
    put(&b, "rgemma_state_cache_hits_total %llu\n", (unsigned long long)g->cache_hits);
    metric(&b, "rgemma_state_cache_misses_total", "counter", "Requests that started from an empty state.");
    put(&b, "rgemma_state_cache_misses_total %llu\n", (unsigned long long)g->cache_misses);
    if (g->store_on) store_text(&b, &g->store);
    return b.s;
}

/* Slots and the request queue of `rgemma serve`. N slots each own an
 * rg_state and hold one job at a time; one engine thread advances all busy
 * slots together, one batched step at a time (continuous batching: jobs join
 * and leave at step boundaries). Jobs wait in a bounded FIFO; submit refuses
 * one when the queue is full. A job is shared by the HTTP thread that answers
 * the client and the engine (reference counted); the engine appends generated
 * text to it and the HTTP thread streams or collects that text. */
#ifndef RG_SERVER_SCHED_H
#define RG_SERVER_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include "rgemma.h"
#include "server/api.h"
#include "server/cache.h"
#include "server/metrics.h"
#include "server/store.h"

typedef enum { RG_JOB_QUEUED, RG_JOB_RUNNING, RG_JOB_DONE } rg_job_phase;

typedef struct rg_job {
    /* input: set before submit, read-only after */
    int32_t *tokens;              /* the whole prompt (BOS included) */
    int n_tokens;
    int cache_prefix;             /* >= 0: save the state of the finished turn in the cache, under
                                     tokens[0..cache_prefix) followed by the closed model turn */
    rg_generate_params gen;       /* gen.stop points into stop[] */
    char *stop[RG_API_MAX_STOP];
    double deadline;              /* rg_time_s() after which the job is stopped */
    uint8_t *store_blob;          /* NULL, or the shared store's state of tokens[0..store_prefix), */
    size_t store_blob_len;        /* looked up before submit (the engine never waits for Redis) */
    int store_prefix;

    /* output, under mu; cv is signalled on every change */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rg_job_phase phase;
    char *text;                   /* generated text so far */
    size_t len, cap;
    int completion_tokens;
    int cached_tokens;            /* prompt tokens whose state came from the cache or the store */
    uint64_t store_ticket;        /* the store's write of the finished turn (0: none), for rg_store_wait */
    double prompt_s, generate_s;  /* time to the first token, then to the end */
    const char *finish;           /* "stop" or "length" once done */
    int error_status;             /* done with an error: its HTTP status (else 0) */
    const char *error_code;
    char error[256];

    atomic_int cancel;            /* client gone or timed out: stop at once */
    atomic_int refs;
    struct rg_job *next;          /* queue link */
} rg_job;

/* A job owning a copy of the prompt and of r's generation settings, with one
 * reference. */
rg_job *rg_job_new(const int32_t *tokens, int n_tokens, int cache_prefix, const rg_api_request *r, double deadline);
void rg_job_ref(rg_job *j);
void rg_job_unref(rg_job *j);

typedef struct rg_sched rg_sched;

/* threads: kernel threads of the engine's steps. prefill_chunk: prompt
 * tokens per step (0: adaptive, see sched.c). cache and store may be NULL. */
rg_sched *rg_sched_new(const rg_model *m, const rg_tokenizer *t, int n_slots, int threads, int queue_max,
                       int prefill_chunk, rg_state_cache *cache, rg_store *store, rg_metrics *met);
/* Queue a job (taking a reference). -1 when every slot is busy and the queue
 * holds queue_max jobs already. */
int rg_sched_submit(rg_sched *s, rg_job *j);
/* The client no longer wants the job: take it off the queue, or make its slot
 * stop at the next step. The job ends DONE either way. */
void rg_sched_cancel(rg_sched *s, rg_job *j);
void rg_sched_load(rg_sched *s, int *busy, int *queued);
/* Stop: queued jobs end with a 503, running ones are cancelled, the slots
 * are joined and freed. */
void rg_sched_free(rg_sched *s);

#endif

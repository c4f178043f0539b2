/* Slots, queue and the run of one job (see sched.h).
 *
 * A slot runs a job in three steps:
 *   1. the state cache gives the state of the longest saved prefix of the
 *      prompt (at most all tokens but the last: the last one must run to
 *      give logits), else the state starts empty;
 *   2. the rest of the prompt but its last token is prefilled in chunks,
 *      checking between chunks whether the client is still there;
 *   3. rg_generate runs the last prompt token and samples.
 * For chat, the state is then brought to the end of the closed model turn and
 * saved under the ids the client's next request will start with: the
 * conversation so far and the model turn holding the reply as the client
 * sees it. (The state itself saw the generated ids; the key has the ids of
 * their text. The two differ only where the text would tokenize otherwise.) */
#include "server/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

#define PREFILL_CHUNK 128 /* prompt tokens per forward call between cancellation checks */

rg_job *rg_job_new(const int32_t *tokens, int n_tokens, int cache_prefix, const rg_api_request *r, double deadline) {
    rg_job *j = rg_xcalloc(1, sizeof *j);
    j->tokens = rg_xmalloc(sizeof *tokens * (size_t)n_tokens);
    memcpy(j->tokens, tokens, sizeof *tokens * (size_t)n_tokens);
    j->n_tokens = n_tokens;
    j->cache_prefix = cache_prefix;
    rg_generate_params_default(&j->gen);
    j->gen.max_tokens = r->max_tokens;
    j->gen.sampling = r->sampling;
    j->gen.ignore_eos = r->ignore_eos;
    for (int i = 0; i < r->n_stop; i++) j->stop[i] = strdup(r->stop[i]);
    j->gen.stop = (const char *const *)j->stop;
    j->gen.n_stop = r->n_stop;
    j->deadline = deadline;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->phase = RG_JOB_QUEUED;
    j->cap = 256;
    j->text = rg_xmalloc(j->cap);
    atomic_init(&j->refs, 1);
    return j;
}

void rg_job_ref(rg_job *j) { atomic_fetch_add(&j->refs, 1); }

void rg_job_unref(rg_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    free(j->tokens);
    for (int i = 0; i < j->gen.n_stop; i++) free(j->stop[i]);
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* End a job (under no lock). status 0 = success. */
static void job_done(rg_job *j, int status, const char *code, const char *msg) {
    pthread_mutex_lock(&j->mu);
    if (j->phase != RG_JOB_DONE) {
        j->phase = RG_JOB_DONE;
        j->error_status = status;
        j->error_code = code;
        if (msg) snprintf(j->error, sizeof j->error, "%s", msg);
        if (!j->finish) j->finish = "stop";
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

typedef struct slot {
    struct rg_sched *sched;
    pthread_t thread;
    rg_state *state;
    int n_ids;    /* ids generated for the current job */
    double t0, t_first;
    int timed_out;
    rg_job *job;
} slot;

struct rg_sched {
    const rg_model *model;
    const rg_tokenizer *tok;
    rg_state_cache *cache;
    rg_metrics *met;
    int threads, queue_max, n_slots;
    int32_t stop_ids[1];
    int n_stop_ids;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rg_job *head, *tail;
    int queued, idle, busy;
    atomic_int stopping;
    slot *slots;
};

static int should_stop(slot *sl) {
    rg_job *j = sl->job;
    if (atomic_load(&j->cancel) || atomic_load(&sl->sched->stopping)) return 1;
    if (rg_time_s() > j->deadline) {
        sl->timed_out = 1;
        return 1;
    }
    return 0;
}

/* id -1: the end, with the text still held back */
static int on_token(void *ctx, int32_t id, const char *text, size_t len) {
    slot *sl = ctx;
    rg_job *j = sl->job;
    if (!text) len = 0;
    if (id >= 0) {
        sl->n_ids++;
        rg_metrics_generated(sl->sched->met, 1);
    }
    if (sl->t_first == 0) sl->t_first = rg_time_s();
    pthread_mutex_lock(&j->mu);
    if (j->len + len + 1 > j->cap) {
        while (j->len + len + 1 > j->cap) j->cap *= 2;
        j->text = realloc(j->text, j->cap);
    }
    memcpy(j->text + j->len, text, len);
    j->len += len;
    j->text[j->len] = 0;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return should_stop(sl);
}

/* After a chat turn: bring the state to the end of the closed model turn and
 * save it. The state holds everything but the last sampled id (next); that
 * id still belongs to the reply unless it is the EOS / <end_of_turn> that
 * ended it. */
static void save_turn(slot *sl, int32_t next, int ended_by_id) {
    rg_sched *s = sl->sched;
    rg_job *j = sl->job;
    int32_t *feed = NULL, *key = NULL;
    int n_feed = 0, n_key = 0;
    if (next >= 0 && !ended_by_id) {
        feed = rg_xmalloc(sizeof *feed);
        feed[n_feed++] = next;
    }
    if (rg_chat_append_turn_end(s->tok, &feed, &n_feed) || rg_forward(s->model, sl->state, feed, n_feed, NULL, 0))
        goto out;
    key = rg_xmalloc(sizeof *key * (size_t)(j->cache_prefix + 1));
    memcpy(key, j->tokens, sizeof *key * (size_t)j->cache_prefix);
    n_key = j->cache_prefix;
    pthread_mutex_lock(&j->mu); /* the text is final, but it is guarded by mu */
    int rc = rg_chat_append_turn(s->tok, 1, j->text, j->len, &key, &n_key);
    pthread_mutex_unlock(&j->mu);
    if (rc == 0) rg_state_cache_store(s->cache, key, n_key, sl->state);
out:
    free(feed);
    free(key);
}

static void run_job(slot *sl) {
    rg_sched *s = sl->sched;
    rg_job *j = sl->job;
    sl->n_ids = 0;
    sl->t_first = 0;
    sl->timed_out = 0;
    sl->t0 = rg_time_s();
    if (should_stop(sl)) {
        if (!sl->timed_out) {
            job_done(j, 499, "cancelled", "the request was cancelled");
            return;
        }
        atomic_fetch_add(&s->met->timeouts, 1);
        job_done(j, 503, "timeout", "the request timed out while waiting for a free slot");
        return;
    }
    int n = j->n_tokens;
    int cached = s->cache ? rg_state_cache_lookup(s->cache, j->tokens, n - 1, sl->state) : 0;
    if (cached == 0) rg_state_reset(sl->state);
    j->cached_tokens = cached;
    for (int i = cached; i < n - 1; i += PREFILL_CHUNK) {
        if (should_stop(sl)) break;
        int len = n - 1 - i < PREFILL_CHUNK ? n - 1 - i : PREFILL_CHUNK;
        if (rg_forward(s->model, sl->state, j->tokens + i, len, NULL, 0)) {
            job_done(j, 500, "internal_error", rg_last_error());
            return;
        }
    }
    rg_generate_result res;
    memset(&res, 0, sizeof res);
    int rc = 0;
    if (!should_stop(sl)) {
        rg_generate_params gp = j->gen;
        gp.stop_ids = s->stop_ids;
        gp.n_stop_ids = gp.ignore_eos ? 0 : s->n_stop_ids; /* ignore_eos: no end-of-turn either */
        rc = rg_generate(s->model, s->tok, sl->state, j->tokens + n - 1, 1, &gp, on_token, sl, &res);
    } else {
        res.stop_reason = RG_STOP_CALLBACK;
    }
    double t_end = rg_time_s();
    if (sl->t_first == 0) sl->t_first = t_end;
    int processed = n - cached;
    atomic_fetch_add(&s->met->prompt_tokens, (unsigned long long)processed);
    atomic_fetch_add(&s->met->cached_tokens, (unsigned long long)cached);
    atomic_fetch_add(&s->met->prompt_us, (unsigned long long)((sl->t_first - sl->t0) * 1e6));
    atomic_fetch_add(&s->met->generate_us, (unsigned long long)((t_end - sl->t_first) * 1e6));
    if (rc || res.stop_reason == RG_STOP_ERROR) {
        job_done(j, 500, "internal_error", rg_last_error());
        return;
    }
    if (sl->timed_out) atomic_fetch_add(&s->met->timeouts, 1);
    const char *finish = res.stop_reason == RG_STOP_EOS || res.stop_reason == RG_STOP_STRING ? "stop" : "length";
    /* after a stop string the state holds text the reply does not: not saved */
    int clean = res.stop_reason == RG_STOP_EOS || res.stop_reason == RG_STOP_LENGTH;
    if (j->cache_prefix >= 0 && s->cache && clean && !atomic_load(&j->cancel) && !atomic_load(&s->stopping))
        save_turn(sl, res.next_token, res.stop_reason == RG_STOP_EOS);
    pthread_mutex_lock(&j->mu);
    j->completion_tokens = sl->n_ids;
    j->prompt_s = sl->t_first - sl->t0;
    j->generate_s = t_end - sl->t_first;
    j->finish = finish;
    pthread_mutex_unlock(&j->mu);
    job_done(j, 0, NULL, NULL);
}

static void *slot_main(void *arg) {
    slot *sl = arg;
    rg_sched *s = sl->sched;
    rg_set_threads(s->threads); /* a per-thread setting under OpenMP */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !atomic_load(&s->stopping)) {
            s->idle++;
            pthread_cond_wait(&s->cv, &s->mu);
            s->idle--;
        }
        if (atomic_load(&s->stopping)) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        rg_job *j = s->head;
        s->head = j->next;
        if (!s->head) s->tail = NULL;
        j->next = NULL;
        s->queued--;
        s->busy++;
        pthread_mutex_lock(&j->mu);
        j->phase = RG_JOB_RUNNING;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_mutex_unlock(&s->mu);
        sl->job = j;
        run_job(sl);
        sl->job = NULL;
        rg_job_unref(j);
        pthread_mutex_lock(&s->mu);
        s->busy--;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

rg_sched *rg_sched_new(const rg_model *m, const rg_tokenizer *t, int n_slots, int threads, int queue_max,
                       rg_state_cache *cache, rg_metrics *met) {
    rg_sched *s = rg_xcalloc(1, sizeof *s);
    s->model = m;
    s->tok = t;
    s->cache = cache;
    s->met = met;
    s->threads = threads;
    s->queue_max = queue_max;
    int32_t eot = rg_tokenizer_piece_id(t, "<end_of_turn>");
    if (eot >= 0) s->stop_ids[s->n_stop_ids++] = eot;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->slots = rg_xcalloc((size_t)n_slots, sizeof *s->slots);
    for (int i = 0; i < n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->sched = s;
        sl->state = rg_state_new(m);
        if (!sl->state || pthread_create(&sl->thread, NULL, slot_main, sl)) {
            rg_state_free(sl->state);
            sl->state = NULL;
            rg_error("serve: cannot start slot %d", i);
            rg_sched_free(s);
            return NULL;
        }
        s->n_slots++;
    }
    return s;
}

int rg_sched_submit(rg_sched *s, rg_job *j) {
    pthread_mutex_lock(&s->mu);
    /* idle slots take queued jobs at once, so they do not count as waiting */
    if (atomic_load(&s->stopping) || s->queued >= s->idle + s->queue_max) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    rg_job_ref(j);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Unlink a queued job; returns 1 if it was in the queue (its reference is
 * then the caller's to drop). Under s->mu. */
static int unqueue(rg_sched *s, rg_job *j) {
    rg_job **pp = &s->head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return 0;
    *pp = j->next;
    if (s->tail == j) s->tail = prev;
    j->next = NULL;
    s->queued--;
    return 1;
}

void rg_sched_cancel(rg_sched *s, rg_job *j) {
    atomic_store(&j->cancel, 1);
    pthread_mutex_lock(&s->mu);
    int was_queued = unqueue(s, j);
    pthread_mutex_unlock(&s->mu);
    if (was_queued) {
        job_done(j, 499, "cancelled", "the request was cancelled");
        rg_job_unref(j);
    }
}

void rg_sched_load(rg_sched *s, int *busy, int *queued) {
    pthread_mutex_lock(&s->mu);
    *busy = s->busy;
    *queued = s->queued;
    pthread_mutex_unlock(&s->mu);
}

void rg_sched_free(rg_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, 1);
    rg_job *q = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    while (q) {
        rg_job *next = q->next;
        job_done(q, 503, "shutting_down", "the server is shutting down");
        rg_job_unref(q);
        q = next;
    }
    for (int i = 0; i < s->n_slots; i++) {
        pthread_join(s->slots[i].thread, NULL);
        rg_state_free(s->slots[i].state);
    }
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

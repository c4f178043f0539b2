/* Scoring task items on a model.
 *
 * Every prompt is [prefix][context][continuation], where the prefix is BOS,
 * the item's description and its few-shot examples (the same for every item
 * of a group, so it is processed once and kept as a state), and the context
 * is shared by all choices of a multiple-choice item: it is processed once,
 * the state is snapshotted, and each choice is scored from a copy of the
 * snapshot. With reuse off, every choice is processed from an empty state,
 * which gives the same numbers and serves as the baseline of the speed-up. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "eval/eval.h"
#include "util/util.h"

struct rg_evaluator {
    rg_eval_opts o;
    int V;
    rg_state *pre, *ctx, *work;
    float *pre_logits, *ctx_logits;
    int32_t *key; /* the prefix the pre state holds (valid when cached) */
    int n_key, cached;
};

rg_evaluator *rg_evaluator_new(const rg_eval_opts *opts) {
    rg_evaluator *ev = rg_xcalloc(1, sizeof *ev);
    ev->o = *opts;
    if (!ev->o.shot_sep) ev->o.shot_sep = "\n\n";
    if (ev->o.samples < 1) ev->o.samples = 1;
    ev->V = rg_model_config(opts->model)->vocab_size;
    ev->pre = rg_state_new(opts->model);
    ev->ctx = rg_state_new(opts->model);
    ev->work = rg_state_new(opts->model);
    ev->pre_logits = rg_xmalloc(sizeof(float) * (size_t)ev->V);
    ev->ctx_logits = rg_xmalloc(sizeof(float) * (size_t)ev->V);
    if (!ev->pre || !ev->ctx || !ev->work) {
        rg_evaluator_free(ev);
        return NULL;
    }
    return ev;
}

void rg_evaluator_free(rg_evaluator *ev) {
    if (!ev) return;
    rg_state_free(ev->pre);
    rg_state_free(ev->ctx);
    rg_state_free(ev->work);
    free(ev->pre_logits);
    free(ev->ctx_logits);
    free(ev->key);
    free(ev);
}

void rg_item_result_free(rg_item_result *r) {
    free(r->ll);
    free(r->n_tokens);
    free(r->greedy);
    for (int i = 0; i < r->n_outputs; i++) {
        free(r->outputs[i]);
        free(r->extracted[i]);
    }
    free(r->outputs);
    free(r->extracted);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ token buffers */

typedef struct {
    int32_t *v;
    int n, cap;
} ids_buf;

static void ids_add(ids_buf *b, const int32_t *ids, int n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 16;
        b->v = realloc(b->v, sizeof(int32_t) * (size_t)b->cap);
    }
    if (n) memcpy(b->v + b->n, ids, sizeof(int32_t) * (size_t)n);
    b->n += n;
}

typedef struct {
    char *s;
    size_t n, cap;
} str_buf;

static void str_add(str_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* The tokens of a piece appended to out: ids as given, text through the
 * tokenizer (BOS first when add_bos). */
static int piece_ids(const rg_evaluator *ev, const rg_piece *p, int add_bos, ids_buf *out) {
    if (!p->text) {
        ids_add(out, p->ids, p->n_ids);
        return 0;
    }
    if (!ev->o.tok) return rg_error("text items need a tokenizer (--tokenizer, or a model folder that has one)");
    int32_t *ids;
    size_t n;
    if (rg_tokenize(ev->o.tok, p->text, p->len, add_bos, 0, &ids, &n) < 0) return -1;
    ids_add(out, ids, (int)n);
    free(ids);
    return 0;
}

/* ---------------------------------------------------------------- prefixes */

/* The text or ids a shot contributes: its correct answer appended to its prompt. */
static int render_shot(const rg_item *shot, int is_ids, str_buf *text, ids_buf *ids) {
    if (shot->is_ids != is_ids)
        return rg_error("shot on line %d is %s but the item is %s", shot->line, shot->is_ids ? "token ids" : "text",
                        is_ids ? "token ids" : "text");
    const rg_piece *a, *b;
    const char *target = NULL;
    if (shot->kind == RG_ITEM_MC) {
        a = &shot->ctx[shot->label];
        b = &shot->cont[shot->label];
    } else {
        a = &shot->prompt;
        b = &shot->answers[0];
        target = shot->target;
    }
    if (is_ids) {
        ids_add(ids, a->ids, a->n_ids);
        ids_add(ids, b->ids, b->n_ids);
        return 0;
    }
    str_add(text, a->text, a->len);
    if (target) {
        str_add(text, target, strlen(target));
    } else {
        if (shot->kind == RG_ITEM_GEN) str_add(text, " ", 1); /* choices carry their own leading space */
        str_add(text, b->text, b->len);
    }
    return 0;
}

/* BOS + description + shots (text), or the shots' ids (an ids item gets
 * nothing it did not write itself). */
static int build_prefix(const rg_evaluator *ev, const rg_item *item, ids_buf *out) {
    const rg_eval_opts *o = &ev->o;
    int k = o->shots ? o->k_shots : 0, rc = 0;
    int *idx = rg_xmalloc(sizeof(int) * (size_t)(k > 0 ? k : 1));
    str_buf text = {0};
    str_add(&text, "", 0);
    if (item->description) str_add(&text, item->description, strlen(item->description));
    if (k > 0 && rg_choose_shots(o->shots, item, k, o->seed, idx) < 0) rc = -1;
    for (int i = 0; i < k && rc == 0; i++) {
        rc = render_shot(&o->shots->items[idx[i]], item->is_ids, &text, out);
        if (rc == 0 && !item->is_ids) str_add(&text, o->shot_sep, strlen(o->shot_sep));
    }
    if (rc == 0 && !item->is_ids) {
        rg_piece p = {.text = text.s, .len = text.n};
        rc = piece_ids(ev, &p, 1, out);
    }
    free(text.s);
    free(idx);
    return rc;
}

/* Make the pre state hold the prefix (from the cache when it already does). */
static int run_prefix(rg_evaluator *ev, const ids_buf *p, rg_item_result *res) {
    if (ev->o.reuse && ev->cached && ev->n_key == p->n &&
        (p->n == 0 || !memcmp(ev->key, p->v, sizeof(int32_t) * (size_t)p->n)))
        return 0;
    ev->cached = 0;
    rg_state_reset(ev->pre);
    if (p->n && rg_forward(ev->o.model, ev->pre, p->v, p->n, ev->pre_logits, 0) < 0) return -1;
    res->tokens += p->n;
    free(ev->key);
    ev->key = rg_xmalloc(sizeof(int32_t) * (size_t)(p->n + 1));
    if (p->n) memcpy(ev->key, p->v, sizeof(int32_t) * (size_t)p->n);
    ev->n_key = p->n;
    ev->cached = 1;
    return 0;
}

/* dst := prefix followed by ctx[0..n). With reuse the prefix comes from the
 * pre state; without, it is processed again from an empty state. *last gets
 * the logits of the last token (NULL when there were no tokens). */
static int prepare(rg_evaluator *ev, const ids_buf *prefix, const int32_t *ctx, int n, rg_state *dst,
                   const float **last, rg_item_result *res) {
    *last = NULL;
    if (ev->o.reuse) {
        if (rg_state_copy(dst, ev->pre) < 0) return -1;
        if (prefix->n) *last = ev->pre_logits;
    } else {
        rg_state_reset(dst);
        if (prefix->n) {
            if (rg_forward(ev->o.model, dst, prefix->v, prefix->n, ev->ctx_logits, 0) < 0) return -1;
            *last = ev->ctx_logits;
            res->tokens += prefix->n;
        }
    }
    if (n) {
        if (rg_forward(ev->o.model, dst, ctx, n, ev->ctx_logits, 0) < 0) return -1;
        *last = ev->ctx_logits;
        res->tokens += n;
    }
    return 0;
}

/* ------------------------------------------------------------ multiple choice */

static int eval_mc(rg_evaluator *ev, const rg_item *it, const ids_buf *prefix, rg_item_result *r) {
    int nc = it->n_choices, rc = 0;
    r->ll = rg_xcalloc((size_t)nc, sizeof *r->ll);
    r->n_tokens = rg_xcalloc((size_t)nc, sizeof *r->n_tokens);
    r->greedy = rg_xcalloc((size_t)nc, sizeof *r->greedy);
    ids_buf ctx = {0}, cont = {0};
    const float *last = NULL;
    int snapshot = ev->o.reuse && it->shared_ctx;
    if (snapshot) { /* the context once, for every choice */
        rc = piece_ids(ev, &it->ctx[0], 0, &ctx);
        if (rc == 0) rc = prepare(ev, prefix, ctx.v, ctx.n, ev->ctx, &last, r);
    }
    for (int i = 0; i < nc && rc == 0; i++) {
        if (snapshot) {
            rc = rg_state_copy(ev->work, ev->ctx);
        } else {
            ctx.n = 0;
            rc = piece_ids(ev, &it->ctx[i], 0, &ctx);
            if (rc == 0) rc = prepare(ev, prefix, ctx.v, ctx.n, ev->work, &last, r);
        }
        if (rc == 0 && !last) rc = rg_error("the context is empty (an item with token ids needs context ids)");
        cont.n = 0;
        if (rc == 0) rc = piece_ids(ev, &it->cont[i], 0, &cont);
        if (rc == 0 && cont.n == 0) rc = rg_error("choice %d has no tokens", i);
        if (rc == 0)
            rc = rg_score_continuation(ev->o.model, ev->work, last, cont.v, cont.n, &r->ll[i], &r->greedy[i], NULL);
        r->n_tokens[i] = cont.n;
        if (rc == 0) r->tokens += cont.n - 1;
    }
    free(ctx.v);
    free(cont.v);
    if (rc < 0) return -1;
    /* acc: the highest log-likelihood; acc_norm: the highest per character of
     * the choice's text (per token for ids), the first on ties */
    double best = -INFINITY, best_norm = -INFINITY;
    for (int i = 0; i < nc; i++) {
        const rg_piece *c = &it->cont[i];
        double len = c->text ? (double)rg_utf8_chars(c->text, c->len) : (double)r->n_tokens[i];
        double norm = r->ll[i] / (len > 0 ? len : 1);
        if (r->ll[i] > best) best = r->ll[i], r->pred = i;
        if (norm > best_norm) best_norm = norm, r->pred_norm = i;
    }
    r->acc = r->pred == it->label;
    r->acc_norm = r->pred_norm == it->label;
    return 0;
}

/* -------------------------------------------------------------- generation */

typedef struct {
    str_buf text;
    int is_ids;
} gen_out;

static int on_token(void *ctx, int32_t token, const char *text, size_t len) {
    gen_out *g = ctx;
    if (token < 0 && g->is_ids) return 0; /* the end-of-generation call carries only held text */
    if (g->is_ids) {
        char num[16];
        int n = snprintf(num, sizeof num, g->text.n ? " %d" : "%d", token);
        str_add(&g->text, num, (size_t)n);
    } else {
        str_add(&g->text, text ? text : "", text ? len : 0);
    }
    return 0;
}

/* An answer as the string generated text is compared with. */
static char *answer_string(const rg_piece *a) {
    if (a->text) return strdup(a->text);
    str_buf b = {0};
    str_add(&b, "", 0);
    for (int i = 0; i < a->n_ids; i++) {
        char num[16];
        int n = snprintf(num, sizeof num, i ? " %d" : "%d", a->ids[i]);
        str_add(&b, num, (size_t)n);
    }
    return b.s;
}

/* Is s (normalised with norm, or trimmed) equal to one of the answers? */
static int matches(const rg_item *it, const char *s, int norm) {
    int hit = 0;
    char *x = norm ? rg_normalize_answer(s, strlen(s)) : rg_extract_answer("text", s);
    for (int j = 0; j < it->n_answers && !hit; j++) {
        char *a = answer_string(&it->answers[j]);
        char *y = norm ? rg_normalize_answer(a, strlen(a)) : rg_extract_answer("text", a);
        hit = !strcmp(x, y);
        free(a);
        free(y);
    }
    free(x);
    return hit;
}

static uint64_t mix_seed(uint64_t seed, int index, int sample) {
    return rg_mix64(seed ^ ((uint64_t)index * RG_GOLDEN64) ^ ((uint64_t)sample << 40));
}

static int eval_gen(rg_evaluator *ev, const rg_item *it, int index, const ids_buf *prefix, rg_item_result *r) {
    const rg_eval_opts *o = &ev->o;
    int k = o->samples, rc = 0;
    ids_buf p = {0};
    if (piece_ids(ev, &it->prompt, 0, &p) < 0) return -1;
    if (p.n == 0) {
        free(p.v);
        return rg_error("the prompt has no tokens");
    }
    rg_generate_params gp;
    rg_generate_params_default(&gp);
    gp.max_tokens = it->max_tokens > 0 ? it->max_tokens : o->max_tokens;
    if (!it->is_ids) {
        gp.stop = it->stop ? (const char *const *)it->stop : o->stop;
        gp.n_stop = it->stop ? it->n_stop : o->n_stop;
    }
    r->outputs = rg_xcalloc((size_t)k, sizeof *r->outputs);
    r->extracted = rg_xcalloc((size_t)k, sizeof *r->extracted);
    char **norm = rg_xcalloc((size_t)k, sizeof *norm);
    const float *last;
    /* the prompt but its last token once; each sample starts from a copy */
    if (o->reuse) rc = prepare(ev, prefix, p.v, p.n - 1, ev->ctx, &last, r);
    for (int s = 0; s < k && rc == 0; s++) {
        rc = o->reuse ? rg_state_copy(ev->work, ev->ctx) : prepare(ev, prefix, p.v, p.n - 1, ev->work, &last, r);
        if (rc < 0) break;
        gp.sampling = o->sampling;
        gp.sampling.seed = mix_seed(o->seed, index, s);
        gen_out g = {.is_ids = it->is_ids};
        str_add(&g.text, "", 0);
        rg_generate_result gr;
        rc = rg_generate(o->model, it->is_ids ? NULL : o->tok, ev->work, p.v + p.n - 1, 1, &gp, on_token, &g, &gr);
        r->tokens += 1 + gr.generated_tokens;
        r->outputs[s] = g.text.s;
        r->n_outputs = s + 1;
        if (rc < 0) break;
        r->extracted[s] = rg_extract_answer(it->is_ids ? "text" : o->extract, g.text.s);
        if (!r->extracted[s]) {
            rc = -1;
            break;
        }
        norm[s] = rg_normalize_answer(r->extracted[s], strlen(r->extracted[s]));
    }
    if (rc == 0) {
        r->em = matches(it, r->extracted[0], 0);
        r->nm = matches(it, r->extracted[0], 1);
        r->vote = rg_majority(norm, k);
        r->maj = matches(it, r->extracted[r->vote], 1);
    }
    for (int s = 0; s < k; s++) free(norm[s]);
    free(norm);
    free(p.v);
    return rc;
}

int rg_eval_item(rg_evaluator *ev, const rg_item *item, int index, rg_item_result *res) {
    memset(res, 0, sizeof *res);
    ids_buf prefix = {0};
    int rc = build_prefix(ev, item, &prefix);
    if (rc == 0 && ev->o.reuse) rc = run_prefix(ev, &prefix, res);
    if (rc == 0) rc = item->kind == RG_ITEM_MC ? eval_mc(ev, item, &prefix, res) : eval_gen(ev, item, index, &prefix, res);
    free(prefix.v);
    if (rc < 0) {
        ev->cached = 0; /* a failed forward may have left the states half-advanced */
        return rg_error_prefix("line %d", item->line);
    }
    return 0;
}

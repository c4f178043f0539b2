/* rg_train: the training loop over rg_grad_compute. One optimiser step sums
 * the gradients of `batch` sequences (grad_scale = 1 / the batch's targets,
 * so it is the gradient of the mean loss), clips the global norm and
 * applies AdamW to float32 master weights. Every reduction here runs in a
 * fixed order, so, as rg_grad_compute, the weights do not depend on the
 * thread count, and a resumed run continues bit for bit.
 * With LoRA the optimiser updates low-rank adapters instead: each linear
 * layer's matrix W [out, in] acts as W + s B A (A [r, in], B [out, r], s =
 * alpha / r); the gradient engine runs them beside the frozen W (no merged
 * copy, no gradient of W; W kept in bf16 where the checkpoint stores it so)
 * and gives dA and dB only. The output folder gets
 * the adapters (adapter_model.safetensors, adapter_config.json) and, with
 * lora_merge, the merged checkpoint too. */
#define _GNU_SOURCE /* renameat2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "formats/st_write.h"
#include "model/model.h"
#include "model/synth.h"
#include "train/train.h"
#include "util/util.h"

#define OPTIM_FILE "optimizer.bin"
#define ADAPTER_FILE "adapter_model.safetensors"
#define ADAPTER_CONFIG "adapter_config.json"
#define OPTIM_MAGIC "RGOPTIM1"
#define NORM_CHUNK ((size_t)1 << 16)

void rg_train_params_default(rg_train_params *p) {
    memset(p, 0, sizeof *p);
    p->ctx = 256;
    p->batch = 8;
    p->steps = 100;
    p->lr = 3e-4;
    p->min_lr = 3e-5;
    p->warmup = 10;
    p->weight_decay = 0.1;
    p->clip = 1.0;
    p->beta1 = 0.9;
    p->beta2 = 0.95;
    p->adam_eps = 1e-8;
    p->eval_frac = 0.05;
    p->eval_every = 50;
    p->seed = 1;
    p->save_dtype = "f32";
}

/* What optimizer.bin holds besides the arrays (native byte order: a resume
 * file is for the machine type that wrote it). */
typedef struct {
    char magic[8];
    uint32_t version, has_values; /* has_values: the trained values follow m and v (LoRA's adapters, or
                                     the f32 weights when the safetensors are bf16) */
    uint64_t config_fp, n_params, n_trained, run_hash;
    uint64_t step, epoch, cursor, tokens;
    double seconds;
} optim_header;

/* A tensor the optimiser updates: n values at `offset` of the trained buffer. */
typedef struct {
    size_t offset, count;
    int decay; /* weight decay applies (matrices only) */
} trained_tensor;

typedef struct {
    const rg_train_params *p;
    rg_config cfg;
    rg_grad *g;
    rg_tokenizer *tok;
    rg_train_stream data;
    size_t n_params;
    float *params, *grad; /* grad: NULL with LoRA (the base is frozen) */
    /* what the optimiser updates: params and grad themselves, or LoRA's adapters and their gradient */
    trained_tensor *trained;
    int n_trained_tensors;
    size_t n_trained;
    float *values, *value_grad, *m, *v;
    rg_lora_f32 *lora, *lora_frozen; /* the adapters in values (and value_grad); the same without gradients */
    uint16_t *base16;                /* the adapted matrices stored in bf16 (see init_lora_base) */
    uint16_t *embed16;               /* LoRA: the embedding stored in bf16, or NULL: in params */
    int embed;                       /* the embedding's tensor index */
    int n_lora;
    rg_grad_opts_f32 opts, eval_opts;
    int *train_seq, *eval_seq, *order; /* sequence indices; order: this epoch's permutation of train_seq */
    int n_train, n_eval;
    int64_t train_targets;
    uint64_t run_hash;
    /* the position, saved in optimizer.bin */
    int step;
    int64_t epoch, cursor, tokens;
    double seconds_before; /* training time of the earlier calls */
    double t0;             /* this call's start */
    FILE *csv;
} trainer;

static void emit(const trainer *T, rg_train_event *e) {
    if (T->p->progress) T->p->progress(T->p->progress_ctx, e);
}

static void info(const trainer *T, const char *fmt, ...) RG_PRINTF(2, 3);
static void info(const trainer *T, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rg_train_event e = {.kind = RG_TRAIN_INFO, .message = msg, .step = T->step, .steps = T->p->steps};
    emit(T, &e);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static double elapsed(const trainer *T) { return T->seconds_before + (rg_time_s() - T->t0); }

/* ---- parameters --------------------------------------------------------- */

static int check_params(const rg_train_params *p) {
    if (!!p->model_path == !!p->config) return rg_error("train: give either a model to fine-tune or a config");
    if (!p->out_dir || !*p->out_dir) return rg_error("train: no output folder");
    if (p->n_data_files < 1) return rg_error("train: no data files");
    if (p->ctx < 2) return rg_error("train: ctx must be at least 2 (got %d)", p->ctx);
    if (p->batch < 1) return rg_error("train: batch must be at least 1 (got %d)", p->batch);
    if (p->steps < 1) return rg_error("train: steps must be at least 1 (got %d)", p->steps);
    if (!(p->lr > 0) || !(p->min_lr >= 0) || p->min_lr > p->lr)
        return rg_error("train: need 0 < lr and 0 <= min_lr <= lr (got %g, %g)", p->lr, p->min_lr);
    if (p->warmup < 0 || p->warmup > p->steps)
        return rg_error("train: warmup must be 0..steps (got %d of %d)", p->warmup, p->steps);
    if (!(p->weight_decay >= 0) || !(p->clip >= 0)) return rg_error("train: weight decay and clip must be >= 0");
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->adam_eps > 0))
        return rg_error("train: AdamW needs 0 <= beta < 1 and eps > 0");
    if (!(p->eval_frac >= 0 && p->eval_frac < 1))
        return rg_error("train: eval_frac must be in [0, 1) (got %g)", p->eval_frac);
    if (p->eval_every < 0 || p->save_every < 0 || p->stop_after < 0)
        return rg_error("train: eval_every, save_every and stop_after must be >= 0");
    if (p->lora_rank < 0 || p->lora_rank > 4096 || !(p->lora_alpha >= 0))
        return rg_error("train: LoRA needs a rank of 0..4096 and alpha >= 0 (got %d, %g)", p->lora_rank, p->lora_alpha);
    if (p->lora_rank && !p->model_path) return rg_error("train: LoRA adapts a checkpoint: give the model to fine-tune");
    if (p->lora_merge && !p->lora_rank) return rg_error("train: lora_merge needs LoRA (a rank)");
    const char *dt = p->save_dtype ? p->save_dtype : "f32";
    if (strcmp(dt, "f32") && strcmp(dt, "bf16")) return rg_error("train: save dtype must be f32 or bf16 (got \"%s\")", dt);
    return 0;
}

static int save_bf16(const rg_train_params *p) { return p->save_dtype && !strcmp(p->save_dtype, "bf16"); }
static double lora_alpha(const rg_train_params *p) { return p->lora_alpha > 0 ? p->lora_alpha : p->lora_rank; }

/* Warm-up from 0 to lr over `warmup` steps, then cosine decay to min_lr at
 * the last step. step counts from 1. */
static double lr_at(const rg_train_params *p, int step) {
    if (step <= p->warmup) return p->lr * step / p->warmup;
    double progress = p->steps > p->warmup ? (double)(step - p->warmup) / (p->steps - p->warmup) : 1.0;
    return p->min_lr + 0.5 * (p->lr - p->min_lr) * (1.0 + cos(M_PI * progress));
}

/* ---- data: sequences, split, order -------------------------------------- */

static void shuffle(int *a, int n, uint64_t key) {
    uint64_t s = key;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rg_splitmix64(&s) % (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* Epoch e's order is a function of (seed, e): the position (epoch, cursor)
 * is all the random state a resumed run needs. */
static void order_epoch(trainer *T) {
    memcpy(T->order, T->train_seq, sizeof *T->order * (size_t)T->n_train);
    shuffle(T->order, T->n_train, rg_mix64(T->p->seed ^ ((uint64_t)(T->epoch + 1) * RG_GOLDEN64)));
}

static int64_t seq_targets(const trainer *T, int seq) {
    const uint8_t *c = T->data.counts + (size_t)seq * (size_t)T->p->ctx;
    int64_t n = 0;
    for (int i = 1; i < T->p->ctx; i++) n += c[i];
    return n;
}

static int load_data(trainer *T) {
    const rg_train_params *p = T->p;
    for (int i = 0; i < p->n_data_files; i++)
        if (rg_train_stream_add_file(&T->data, T->tok, p->data_files[i])) return -1;
    size_t n_seq = T->data.n / (size_t)p->ctx;
    if (n_seq < 1)
        return rg_error("train: the data has %zu tokens, fewer than one sequence of ctx %d (lower the ctx or add data)",
                        T->data.n, p->ctx);
    if (n_seq > INT32_MAX) return rg_error("train: the data makes too many sequences (%zu)", n_seq);
    int n = (int)n_seq;
    T->n_eval = p->eval_frac > 0 ? (int)ceil(p->eval_frac * n) : 0;
    T->n_train = n - T->n_eval;
    if (T->n_train < 1)
        return rg_error("train: the data makes %d sequence%s of ctx %d: none left for training after the held-out "
                        "share %g (lower the eval fraction or the ctx, or add data)",
                        n, n == 1 ? "" : "s", p->ctx, p->eval_frac);
    int *all = rg_xmalloc(sizeof *all * (size_t)n);
    for (int i = 0; i < n; i++) all[i] = i;
    shuffle(all, n, rg_mix64(p->seed ^ 0x5eed5b1175ull));
    T->eval_seq = rg_xmalloc(sizeof *T->eval_seq * (size_t)(T->n_eval ? T->n_eval : 1));
    T->train_seq = rg_xmalloc(sizeof *T->train_seq * (size_t)T->n_train);
    T->order = rg_xmalloc(sizeof *T->order * (size_t)T->n_train);
    memcpy(T->eval_seq, all, sizeof *all * (size_t)T->n_eval);
    memcpy(T->train_seq, all + T->n_eval, sizeof *all * (size_t)T->n_train);
    free(all);
    qsort(T->eval_seq, (size_t)T->n_eval, sizeof *T->eval_seq, cmp_int);
    qsort(T->train_seq, (size_t)T->n_train, sizeof *T->train_seq, cmp_int);
    int64_t targets = 0;
    for (int i = 0; i < T->n_train; i++) targets += seq_targets(T, T->train_seq[i]);
    if (targets == 0)
        return rg_error("train: the training sequences have no targets (chats without a model turn?)");
    /* the run's identity: what decides the data order and the weights' shape */
    uint64_t h = rg_fnv1a(T->data.ids, T->data.n * sizeof *T->data.ids, 0);
    h = rg_fnv1a(T->data.counts, T->data.n, h);
    double alpha = p->lora_rank ? lora_alpha(p) : 0;
    uint64_t alpha_bits;
    memcpy(&alpha_bits, &alpha, sizeof alpha_bits);
    uint64_t knobs[7] = {(uint64_t)p->ctx, (uint64_t)p->batch, p->seed, (uint64_t)T->n_eval, T->n_params,
                         (uint64_t)p->lora_rank, alpha_bits};
    T->run_hash = rg_fnv1a(knobs, sizeof knobs, h);
    T->train_targets = targets;
    return 0;
}

/* ---- optimiser ---------------------------------------------------------- */

/* sqrt(sum g^2) in fixed chunks summed in order: the same bits on any
 * number of threads. */
static double global_norm(const float *g, size_t n) {
    size_t n_chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = rg_xmalloc(sizeof *part * n_chunks);
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        double s = 0;
        for (size_t i = c * NORM_CHUNK; i < end; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double s = 0;
    for (size_t c = 0; c < n_chunks; c++) s += part[c];
    free(part);
    return sqrt(s);
}

static void adamw(trainer *T, double lr, double grad_mul) {
    const rg_train_params *p = T->p;
    double bc1 = 1 - pow(p->beta1, T->step), bc2 = 1 - pow(p->beta2, T->step);
    for (int k = 0; k < T->n_trained_tensors; k++) {
        const trained_tensor *t = &T->trained[k];
        double decay = t->decay ? lr * p->weight_decay : 0;
        float *w = T->values + t->offset, *m = T->m + t->offset, *v = T->v + t->offset;
        const float *g = T->value_grad + t->offset;
        #pragma omp parallel for schedule(static) if (t->count > 4096)
        for (size_t i = 0; i < t->count; i++) {
            double gi = g[i] * grad_mul;
            double mi = p->beta1 * m[i] + (1 - p->beta1) * gi, vi = p->beta2 * v[i] + (1 - p->beta2) * gi * gi;
            m[i] = (float)mi;
            v[i] = (float)vi;
            double wi = w[i] - decay * w[i];
            w[i] = (float)(wi - lr * (mi / bc1) / (sqrt(vi / bc2) + p->adam_eps));
        }
    }
}

/* ---- LoRA --------------------------------------------------------------- */

static double lora_scale(const rg_train_params *p) { return lora_alpha(p) / p->lora_rank; }

/* A weight matrix, not a vector: the RG-LRU gate biases [H, bw] are 2-D
 * but biases. */
static int is_matrix(const rg_grad_tensor *t) { return t->ndim >= 2 && !ends_with(t->name, "bias"); }

static void normal_fill(float *out, size_t n, double std, uint64_t key) {
    uint64_t s = key;
    for (size_t i = 0; i < n; i++) {
        double u = ((double)(rg_splitmix64(&s) >> 11) + 0.5) * 0x1p-53, v = (double)(rg_splitmix64(&s) >> 11) * 0x1p-53;
        out[i] = (float)(std * sqrt(-2 * log(u)) * cos(2 * M_PI * v));
    }
}

/* What the optimiser trains: every tensor (decay on matrices only: not on
 * norms, biases, recurrent_param), or with LoRA an A and a B for each
 * linear layer's matrix (the projections and the MLP; not the embedding,
 * the conv taps or the RG-LRU gates). A starts N(0, 1/in), B at 0: the
 * model starts as the base. */
static void choose_trained(trainer *T) {
    int n = rg_grad_n_tensors(T->g), r = T->p->lora_rank;
    T->trained = rg_xcalloc((size_t)n * 2, sizeof *T->trained);
    if (!r) {
        for (int k = 0; k < n; k++) {
            const rg_grad_tensor *t = rg_grad_tensor_at(T->g, k);
            T->trained[T->n_trained_tensors++] = (trained_tensor){t->offset, t->count, is_matrix(t)};
        }
        T->n_trained = T->n_params;
        T->values = T->params;
        T->value_grad = T->grad;
        return;
    }
    T->lora = rg_xcalloc((size_t)n, sizeof *T->lora);
    T->lora_frozen = rg_xcalloc((size_t)n, sizeof *T->lora_frozen);
    for (int k = 0; k < n; k++) { /* A and B one after another in values */
        const rg_grad_tensor *t = rg_grad_tensor_at(T->g, k);
        if (!rg_lora_target(t->name)) continue;
        size_t na = (size_t)r * (size_t)t->shape[1], nb = (size_t)t->shape[0] * (size_t)r;
        T->trained[T->n_trained_tensors++] = (trained_tensor){T->n_trained, na, 1};
        T->trained[T->n_trained_tensors++] = (trained_tensor){T->n_trained + na, nb, 1};
        T->lora[T->n_lora++] = (rg_lora_f32){.tensor = k, .rank = r, .scale = (float)lora_scale(T->p)};
        T->n_trained += na + nb;
    }
    T->values = rg_xcalloc(T->n_trained, sizeof *T->values);
    T->value_grad = rg_xcalloc(T->n_trained, sizeof *T->value_grad);
    for (int j = 0; j < T->n_lora; j++) {
        rg_lora_f32 *L = &T->lora[j];
        size_t a = T->trained[2 * j].offset, b = T->trained[2 * j + 1].offset;
        L->A = T->values + a, L->B = T->values + b, L->dA = T->value_grad + a, L->dB = T->value_grad + b;
        T->lora_frozen[j] = *L;
        T->lora_frozen[j].dA = T->lora_frozen[j].dB = NULL;
        int in = (int)rg_grad_tensor_at(T->g, L->tensor)->shape[1];
        normal_fill(T->values + a, T->trained[2 * j].count, 1 / sqrt((double)in),
                    rg_mix64(T->p->seed ^ ((uint64_t)(j + 1) * RG_GOLDEN64)));
    }
}

static double evaluate(const trainer *T) {
    double nll = 0;
    int64_t targets = 0;
    for (int i = 0; i < T->n_eval; i++) {
        size_t at = (size_t)T->eval_seq[i] * (size_t)T->p->ctx;
        double s;
        int64_t k;
        if (rg_train_grad_f32(T->g, T->params, &T->eval_opts, T->data.ids + at, T->p->ctx, T->data.counts + at, 1.0,
                              NULL, &s, &k))
            return NAN;
        nll += s;
        targets += k;
    }
    return targets ? nll / (double)targets : NAN;
}

/* One optimiser step over the next `batch` sequences; *loss = their mean. */
static int train_step(trainer *T, double *loss, double *lr, double *norm) {
    const rg_train_params *p = T->p;
    int *seqs = rg_xmalloc(sizeof *seqs * (size_t)p->batch);
    int64_t targets = 0;
    for (int b = 0; b < p->batch; b++) {
        if (T->cursor == T->n_train) {
            T->epoch++;
            T->cursor = 0;
            order_epoch(T);
        }
        seqs[b] = T->order[T->cursor++];
        targets += seq_targets(T, seqs[b]);
    }
    memset(T->value_grad, 0, sizeof *T->value_grad * T->n_trained);
    double nll = 0, scale = 1.0 / (double)(targets ? targets : 1);
    int rc = 0;
    for (int b = 0; b < p->batch && !rc; b++) {
        size_t at = (size_t)seqs[b] * (size_t)p->ctx;
        double s;
        rc = rg_train_grad_f32(T->g, T->params, &T->opts, T->data.ids + at, p->ctx, T->data.counts + at, scale, T->grad,
                               &s, NULL);
        nll += s;
    }
    free(seqs);
    if (rc) return -1;
    T->step++;
    T->tokens += (int64_t)p->batch * p->ctx;
    *loss = targets ? nll / (double)targets : 0;
    *norm = global_norm(T->value_grad, T->n_trained);
    *lr = lr_at(p, T->step);
    if (!isfinite(*norm)) return rg_error("train: step %d: the gradient is not finite (loss %g): lower the lr", T->step, *loss);
    adamw(T, *lr, p->clip > 0 && *norm > p->clip ? p->clip / *norm : 1.0);
    return 0;
}

/* ---- checkpoints -------------------------------------------------------- */

static int remove_folder(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : rg_error("%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && unlinkat(dirfd(d), e->d_name, 0) && !rc)
            rc = rg_error("%s/%s: cannot remove: %s", dir, e->d_name, strerror(errno));
    closedir(d);
    if (!rc && rmdir(dir)) rc = rg_error("%s: cannot remove: %s", dir, strerror(errno));
    return rc;
}

static int copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    if (rg_read_file(from, (size_t)1 << 30, &data, &len)) return -1;
    FILE *f = fopen(to, "wb");
    int rc = !f || fwrite(data, 1, len, f) != len;
    if (f && fclose(f)) rc = 1;
    free(data);
    return rc ? rg_error("%s: cannot write: %s", to, strerror(errno)) : 0;
}

/* The tokenizer files of the source (a tokenizer file, or the folder of the
 * tokenizer or model), else the loaded tokenizer as tokenizer.model (e.g.
 * one that came from inside a .gguf). */
static int write_tokenizer(const trainer *T, const char *dir) {
    static const char *const names[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    const char *src = T->p->tokenizer_path, *model = T->p->model_path;
    if (src && rg_file_exists(src) && !ends_with(src, ".gguf")) {
        char *to = rg_path_join(dir, ends_with(src, ".json") ? "tokenizer.json" : "tokenizer.model");
        int rc = copy_file(src, to);
        free(to);
        return rc;
    }
    /* a .gguf model carries its tokenizer inside: written from the loaded one below */
    char *from_dir = src ? (rg_is_dir(src) ? strdup(src) : NULL)
                         : model && !ends_with(model, ".gguf") ? rg_model_dir(model) : NULL;
    int copied = 0, rc = 0;
    for (size_t i = 0; from_dir && i < sizeof names / sizeof names[0] && !rc; i++) {
        char *from = rg_path_join(from_dir, names[i]), *to = rg_path_join(dir, names[i]);
        if (rg_file_exists(from)) rc = copy_file(from, to), copied++;
        free(from);
        free(to);
    }
    free(from_dir);
    if (rc || copied) return rc;
    char *to = rg_path_join(dir, "tokenizer.model");
    rc = rg_tokenizer_save_model(T->tok, to);
    free(to);
    return rc;
}

typedef struct {
    const trainer *T;
    size_t *offset;           /* of each spec's tensor in params */
    const rg_lora_f32 **lora; /* each spec's adapter (merged into it), or NULL */
    const uint16_t *embed16;  /* the trainer's bf16 embedding, or NULL */
    int embed_spec;           /* the embedding's spec */
} fill_ctx;

static void fill_from_params(void *ctx, int index, int64_t first, int64_t count, float *out) {
    const fill_ctx *f = ctx;
    const float *base = f->T->params + f->offset[index] + first;
    const rg_lora_f32 *a = f->lora[index];
    if (f->embed16 && index == f->embed_spec) { /* the bf16 embedding, widened */
        for (int64_t j = 0; j < count; j++) out[j] = rg_bf16_to_f32(f->embed16[first + j]);
        return;
    }
    if (a && a->W16) { /* merged in place over the widened bf16 */
        for (int64_t j = 0; j < count; j++) out[j] = rg_bf16_to_f32(a->W16[first + j]);
        base = out;
    }
    if (a)
        rg_lora_merge_range(a->A, a->B, rg_grad_tensor_at(f->T->g, a->tensor)->shape[1], a->rank, a->scale, first,
                            count, base, out);
    else memcpy(out, base, sizeof *out * (size_t)count);
}

/* model.safetensors: the weights, with LoRA the merged W + s B A */
static int write_weights(const trainer *T, const char *dir) {
    rg_st_spec *specs;
    int n = rg_synth_specs(&T->cfg, save_bf16(T->p) ? RG_DT_BF16 : RG_DT_F32, &specs);
    fill_ctx f = {T, rg_xmalloc(sizeof(size_t) * (size_t)n), rg_xcalloc((size_t)n, sizeof(rg_lora_f32 *)), T->embed16,
                  -1};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int k = rg_grad_find(T->g, specs[i].name);
        if (k < 0) rc = rg_error("train: no parameter for tensor \"%s\"", specs[i].name);
        else f.offset[i] = rg_grad_tensor_at(T->g, k)->offset;
        if (k == T->embed) f.embed_spec = i;
        for (int j = 0; j < T->n_lora; j++)
            if (T->lora[j].tensor == k) f.lora[i] = &T->lora[j];
    }
    char note[64];
    snprintf(note, sizeof note, "rgemma train, step %d", T->step);
    rg_st_source src = {fill_from_params, &f, NULL, NULL, note};
    if (!rc) rc = rg_st_write_checkpoint(dir, specs, n, 2ull << 30, &src, NULL);
    free(f.offset);
    free(f.lora);
    free(specs);
    return rc;
}

static void fill_from_values(void *ctx, int index, int64_t first, int64_t count, float *out) {
    const trainer *T = ctx;
    memcpy(out, T->values + T->trained[index].offset + first, sizeof *out * (size_t)count);
}

/* The adapters alone, as PEFT names and keeps them: adapter_model.safetensors
 * with "<W's name less .weight>.lora_A.weight" [r, in] and ".lora_B.weight"
 * [out, r] in float32, and adapter_config.json (r, lora_alpha, the target
 * modules). */
static int write_adapters(const trainer *T, const char *dir) {
    int n = 2 * T->n_lora;
    rg_st_spec *specs = rg_xcalloc((size_t)n, sizeof *specs);
    cJSON *root = cJSON_CreateObject(), *targets = cJSON_CreateArray();
    for (int j = 0; j < T->n_lora; j++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(T->g, T->lora[j].tensor);
        int stem = (int)(strlen(t->name) - strlen(".weight"));
        for (int ab = 0; ab < 2; ab++) {
            rg_st_spec *sp = &specs[2 * j + ab];
            snprintf(sp->name, sizeof sp->name, "%.*s.lora_%c.weight", stem, t->name, ab ? 'B' : 'A');
            sp->dtype = RG_DT_F32;
            sp->ndim = 2;
            sp->shape[0] = ab ? t->shape[0] : T->p->lora_rank;
            sp->shape[1] = ab ? T->p->lora_rank : t->shape[1];
        }
        const char *module = strrchr(t->name, '.'); /* the module: "q_proj" of "...q_proj.weight" */
        int len = 0;
        while (module > t->name && module[-1] != '.') module--, len++;
        char name[64];
        snprintf(name, sizeof name, "%.*s", len, module);
        int seen = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, targets) seen |= !strcmp(e->valuestring, name);
        if (!seen) cJSON_AddItemToArray(targets, cJSON_CreateString(name));
    }
    char note[64];
    snprintf(note, sizeof note, "rgemma train, step %d", T->step);
    rg_st_source src = {fill_from_values, (void *)T, NULL, NULL, note};
    char *path = rg_path_join(dir, ADAPTER_FILE);
    int rc = rg_st_write_file(path, specs, n, &src);
    free(path);
    free(specs);
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(root, "base_model_name_or_path", T->p->model_path);
    cJSON_AddNumberToObject(root, "r", T->p->lora_rank);
    cJSON_AddNumberToObject(root, "lora_alpha", lora_alpha(T->p));
    cJSON_AddNumberToObject(root, "lora_dropout", 0);
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddItemToObject(root, "target_modules", targets);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    path = rg_path_join(dir, ADAPTER_CONFIG);
    FILE *f = rc ? NULL : fopen(path, "w");
    if (!rc && (!f || fputs(json, f) < 0 || fputc('\n', f) < 0)) rc = rg_error("%s: cannot write: %s", path, strerror(errno));
    if (f && fclose(f) && !rc) rc = rg_error("%s: cannot write: %s", path, strerror(errno));
    free(json);
    free(path);
    return rc;
}

/* optimizer.bin's checksum: FNV-1a over 64-bit words of the arrays (a 2B
 * model's moments are 21 GB: bytewise would take most of a save). */
static uint64_t hash_floats(const float *a, size_t n, uint64_t h) {
    size_t pairs = n / 2;
    for (size_t i = 0; i < pairs; i++) {
        uint64_t w;
        memcpy(&w, a + 2 * i, sizeof w);
        h = (h ^ w) * 1099511628211ULL;
    }
    return n % 2 ? rg_fnv1a(a + n - 1, sizeof *a, h) : h;
}

static int write_array(FILE *f, const float *a, size_t n, uint64_t *h) {
    *h = hash_floats(a, n, *h);
    return fwrite(a, sizeof *a, n, f) != n;
}

static int write_optimizer(const trainer *T, const char *dir) {
    optim_header hd = {.version = 1, .has_values = (uint32_t)(T->n_lora || save_bf16(T->p)),
                       .config_fp = rg_config_fingerprint(&T->cfg), .n_params = T->n_params,
                       .n_trained = T->n_trained, .run_hash = T->run_hash, .step = (uint64_t)T->step,
                       .epoch = (uint64_t)T->epoch, .cursor = (uint64_t)T->cursor, .tokens = (uint64_t)T->tokens,
                       .seconds = elapsed(T)};
    memcpy(hd.magic, OPTIM_MAGIC, 8);
    char *path = rg_path_join(dir, OPTIM_FILE);
    FILE *f = fopen(path, "wb");
    int bad = !f;
    uint64_t h = rg_fnv1a(&hd, sizeof hd, 0);
    if (f) {
        bad |= fwrite(&hd, sizeof hd, 1, f) != 1;
        bad |= write_array(f, T->m, T->n_trained, &h) || write_array(f, T->v, T->n_trained, &h);
        if (hd.has_values) bad |= write_array(f, T->values, T->n_trained, &h);
        bad |= fwrite(&h, sizeof h, 1, f) != 1 || fflush(f) || fsync(fileno(f));
        bad |= fclose(f) != 0;
    }
    int rc = bad ? rg_error("%s: cannot write: %s", path, strerror(errno)) : 0;
    free(path);
    return rc;
}

/* Writes out_dir.tmp, then swaps it with out_dir (renameat2 EXCHANGE, or two
 * renames where the file system cannot swap) and removes the old one: a
 * crash leaves the last whole checkpoint in out_dir (or in out_dir.old). */
static int save_checkpoint(const trainer *T) {
    const char *out = T->p->out_dir;
    size_t ol = strlen(out);
    char *tmp = rg_xmalloc(ol + 8), *old = rg_xmalloc(ol + 8);
    snprintf(tmp, ol + 8, "%s.tmp", out);
    snprintf(old, ol + 8, "%s.old", out);
    char *cfg_path = rg_path_join(tmp, "config.json");
    int checkpoint = !T->n_lora || T->p->lora_merge; /* a model folder; LoRA alone: the adapters */
    int rc = remove_folder(tmp) || rg_make_dirs(tmp) ||
             (checkpoint && (rg_config_write_json(&T->cfg, save_bf16(T->p) ? "bfloat16" : "float32", cfg_path) ||
                             write_weights(T, tmp) || write_tokenizer(T, tmp))) ||
             (T->n_lora && write_adapters(T, tmp)) || write_optimizer(T, tmp);
    free(cfg_path);
    if (!rc && !rg_is_dir(out)) {
        if (rename(tmp, out)) rc = rg_error("%s: cannot rename %s into place: %s", out, tmp, strerror(errno));
    } else if (!rc) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
            rc = remove_folder(tmp);
        } else if (remove_folder(old) || rename(out, old) || rename(tmp, out)) {
            rc = rg_error("%s: cannot move the new checkpoint into place: %s", out, strerror(errno));
        } else {
            rc = remove_folder(old);
        }
    }
    free(tmp);
    free(old);
    if (rc) return rg_error_prefix("train: saving the checkpoint of step %d", T->step);
    rg_train_event e = {.kind = RG_TRAIN_SAVED, .path = out, .step = T->step, .steps = T->p->steps,
                        .tokens = T->tokens, .seconds = elapsed(T)};
    emit(T, &e);
    return 0;
}

static int read_array(FILE *f, float *a, size_t n, uint64_t *h) {
    if (fread(a, sizeof *a, n, f) != n) return -1;
    *h = hash_floats(a, n, *h);
    return 0;
}

/* optimizer.bin of out_dir into T (the trained values too when it has
 * them: *have_values). Refuses a file of another run. */
static int load_optimizer(trainer *T, int *have_values) {
    char *path = rg_path_join(T->p->out_dir, OPTIM_FILE);
    FILE *f = fopen(path, "rb");
    optim_header hd;
    int rc = 0;
    if (!f) {
        rc = rg_error("%s: cannot open: %s (nothing to resume)", path, strerror(errno));
    } else if (fread(&hd, sizeof hd, 1, f) != 1 || memcmp(hd.magic, OPTIM_MAGIC, 8) || hd.version != 1) {
        rc = rg_error("%s: not an rgemma optimizer file (or another version)", path);
    } else if (hd.config_fp != rg_config_fingerprint(&T->cfg) || hd.n_params != T->n_params ||
               hd.n_trained != T->n_trained) {
        rc = rg_error("%s: written for another model configuration (%llu parameters): cannot resume this one",
                      path, (unsigned long long)hd.n_params);
    } else if (hd.run_hash != T->run_hash) {
        rc = rg_error("%s: written for another run (other data, ctx, batch, seed or held-out share): cannot resume",
                      path);
    } else {
        uint64_t h = rg_fnv1a(&hd, sizeof hd, 0), stored;
        int bad = read_array(f, T->m, T->n_trained, &h) || read_array(f, T->v, T->n_trained, &h) ||
                  (hd.has_values && read_array(f, T->values, T->n_trained, &h)) ||
                  fread(&stored, sizeof stored, 1, f) != 1 || fgetc(f) != EOF;
        if (bad || stored != h) rc = rg_error("%s: truncated or corrupt", path);
        else if (hd.step > (uint64_t)T->p->steps || hd.cursor > (uint64_t)T->n_train)
            rc = rg_error("%s: at step %llu, past the run's %d steps", path, (unsigned long long)hd.step, T->p->steps);
    }
    if (f) fclose(f);
    free(path);
    if (rc) return -1;
    T->step = (int)hd.step;
    T->epoch = (int64_t)hd.epoch;
    T->cursor = (int64_t)hd.cursor;
    T->tokens = (int64_t)hd.tokens;
    T->seconds_before = hd.seconds;
    *have_values = (int)hd.has_values;
    return 0;
}

/* ---- set-up ------------------------------------------------------------- */

/* out_dir must be new, empty or an earlier checkpoint of rgemma train:
 * never a folder of other files that a checkpoint would replace. */
static int check_out_dir(const rg_train_params *p) {
    if (!rg_is_dir(p->out_dir)) {
        if (rg_file_exists(p->out_dir)) return rg_error("train: %s exists and is not a folder", p->out_dir);
        return p->resume ? rg_error("train: %s: no checkpoint to resume", p->out_dir) : 0;
    }
    char *optim = rg_path_join(p->out_dir, OPTIM_FILE);
    int has = rg_file_exists(optim);
    free(optim);
    if (has) return 0;
    if (p->resume) return rg_error("train: %s has no %s: nothing to resume", p->out_dir, OPTIM_FILE);
    DIR *d = opendir(p->out_dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    return n ? rg_error("train: %s holds other files (not a checkpoint of rgemma train): choose another output folder",
                        p->out_dir)
             : 0;
}

/* LoRA's frozen matrices that the checkpoint stores in bf16 stay bf16
 * (T->base16: exactly their values, half the memory of float32), and so
 * does the embedding (T->embed16; 1.3 GB saved at 2B); their place in
 * params is never written, so its pages never become resident. */
static int init_lora_base(trainer *T, const rg_model *m) {
    uint8_t *skip = rg_xcalloc((size_t)rg_grad_n_tensors(T->g), 1);
    size_t n16 = 0;
    for (int j = 0; j < T->n_lora; j++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(T->g, T->lora[j].tensor);
        const rg_tensor *w = rg_model_tensor(m, t->name);
        if (w && w->dtype == RG_DT_BF16) skip[T->lora[j].tensor] = 1, n16 += t->count;
    }
    const rg_grad_tensor *et = rg_grad_tensor_at(T->g, T->embed);
    const rg_tensor *ew = rg_model_tensor(m, et->name);
    if (ew && ew->dtype == RG_DT_BF16 && ew->nbytes == sizeof *T->embed16 * et->count) {
        skip[T->embed] = 1;
        T->embed16 = rg_xmalloc(ew->nbytes);
        memcpy(T->embed16, ew->data, ew->nbytes);
        rg_drop_file_pages(ew->data, ew->nbytes);
        T->opts.embed16 = T->eval_opts.embed16 = T->embed16;
    }
    int rc = rg_train_params_from_model(T->g, m, T->params, skip); /* checks every tensor's size */
    T->base16 = rg_xmalloc(sizeof *T->base16 * (n16 ? n16 : 1));
    size_t at = 0;
    for (int j = 0; j < T->n_lora && !rc; j++) {
        if (!skip[T->lora[j].tensor]) continue;
        const rg_grad_tensor *t = rg_grad_tensor_at(T->g, T->lora[j].tensor);
        const rg_tensor *w = rg_model_tensor(m, t->name);
        memcpy(T->base16 + at, w->data, sizeof *T->base16 * t->count);
        rg_drop_file_pages(w->data, w->nbytes);
        T->lora[j].W16 = T->lora_frozen[j].W16 = T->base16 + at;
        at += t->count;
    }
    free(skip);
    return rc;
}

/* The initial weights: the checkpoint to fine-tune, or the training initialisation. */
static int init_weights(trainer *T, const rg_model *m) {
    if (m && T->n_lora) return init_lora_base(T, m);
    if (m) return rg_grad_params_from_model(T->g, m, T->params);
    for (int k = 0; k < rg_grad_n_tensors(T->g); k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(T->g, k);
        if (rg_synth_training_values(&T->cfg, T->p->seed, t->name, T->params + t->offset, (int64_t)t->count)) return -1;
    }
    return 0;
}

/* On resume, the rows of the steps after the checkpoint are dropped (a run
 * that went on past its last save); then rows are appended. */
static int open_csv(trainer *T) {
    const char *path = T->p->csv_path;
    char *old = NULL;
    size_t len = 0;
    if (T->p->resume && rg_file_exists(path) && rg_read_file(path, (size_t)1 << 30, &old, &len)) return -1;
    T->csv = fopen(path, "w");
    if (!T->csv) {
        free(old);
        return rg_error("%s: cannot write: %s", path, strerror(errno));
    }
    fprintf(T->csv, "step,train_loss,eval_loss,lr,tokens,seconds\n");
    for (char *line = old ? strchr(old, '\n') : NULL; line && *++line;) {
        char *nl = strchr(line, '\n');
        long step = strtol(line, NULL, 10);
        if (step <= T->step) fprintf(T->csv, "%.*s\n", (int)(nl ? nl - line : (long)strlen(line)), line);
        line = nl;
    }
    free(old);
    return fflush(T->csv) ? rg_error("%s: cannot write: %s", path, strerror(errno)) : 0;
}

static void csv_row(trainer *T, double train_loss, double eval_loss, double lr) {
    if (!T->csv) return;
    fprintf(T->csv, "%d,", T->step);
    if (!isnan(train_loss)) fprintf(T->csv, "%.6f", train_loss);
    fputc(',', T->csv);
    if (!isnan(eval_loss)) fprintf(T->csv, "%.6f", eval_loss);
    fprintf(T->csv, ",%.6g,%lld,%.3f\n", lr, (long long)T->tokens, elapsed(T));
    fflush(T->csv);
}

static double run_eval(trainer *T) {
    double loss = evaluate(T);
    rg_train_event e = {.kind = RG_TRAIN_EVAL, .step = T->step, .steps = T->p->steps, .loss = loss,
                        .tokens = T->tokens, .seconds = elapsed(T)};
    emit(T, &e);
    return loss;
}

static int setup(trainer *T, rg_model **model) {
    const rg_train_params *p = T->p;
    if (check_params(p) || check_out_dir(p)) return -1;
    if (p->model_path) {
        if (rg_model_load(p->model_path, model)) return -1;
        T->cfg = *rg_model_config(*model);
    } else {
        T->cfg = *p->config;
    }
    if (!p->tokenizer_path && !p->model_path)
        return rg_error("train: a model from scratch needs a tokenizer (tokenizer.model or tokenizer.json)");
    if (p->tokenizer_path ? rg_tokenizer_load(p->tokenizer_path, &T->tok) : rg_tokenizer_find(p->model_path, &T->tok))
        return rg_error_prefix("train: tokenizer");
    if (rg_tokenizer_vocab_size(T->tok) > T->cfg.vocab_size)
        return rg_error("train: the tokenizer has %d pieces but the config's vocab_size is %d: ids past %d would "
                        "have no embedding row",
                        rg_tokenizer_vocab_size(T->tok), T->cfg.vocab_size, T->cfg.vocab_size - 1);
    if (!(T->g = rg_grad_new(&T->cfg))) return -1;
    T->n_params = rg_grad_size(T->g);
    return load_data(T);
}

static void trainer_free(trainer *T) {
    if (T->csv) fclose(T->csv);
    rg_tokenizer_free(T->tok);
    rg_grad_free(T->g);
    rg_train_stream_free(&T->data);
    if (T->values != T->params) free(T->values);
    if (T->value_grad != T->grad) free(T->value_grad);
    free(T->params);
    free(T->grad);
    free(T->m);
    free(T->v);
    free(T->trained);
    free(T->lora);
    free(T->lora_frozen);
    free(T->base16);
    free(T->embed16);
    free(T->train_seq);
    free(T->eval_seq);
    free(T->order);
}

int rg_train(const rg_train_params *p, rg_train_result *res) {
    trainer T = {.p = p, .t0 = rg_time_s()};
    rg_model *model = NULL;
    rg_train_result unused;
    if (!res) res = &unused;
    memset(res, 0, sizeof *res);
    int rc = setup(&T, &model);
    if (!rc) {
        T.params = rg_xcalloc(T.n_params, sizeof *T.params);
        T.grad = p->lora_rank ? NULL : rg_xcalloc(T.n_params, sizeof *T.grad);
        choose_trained(&T);
        T.embed = rg_grad_find(T.g, "model.embed_tokens.weight");
        T.opts = (rg_grad_opts_f32){T.lora, T.n_lora, p->checkpoint_activations, NULL};
        T.eval_opts = (rg_grad_opts_f32){T.lora_frozen, T.n_lora, 0, NULL};
        T.m = rg_xcalloc(T.n_trained, sizeof *T.m);
        T.v = rg_xcalloc(T.n_trained, sizeof *T.v);
        int have_values = 0;
        rc = init_weights(&T, model);
        if (!rc && p->resume) rc = load_optimizer(&T, &have_values);
        if (!rc && p->resume && !have_values) { /* the f32 weights are the checkpoint's safetensors */
            rg_model_free(model);
            model = NULL;
            rc = rg_model_load(p->out_dir, &model) || rg_grad_params_from_model(T.g, model, T.params);
        }
    }
    rg_model_free(model);
    if (!rc && p->csv_path) rc = open_csv(&T);
    if (rc) {
        trainer_free(&T);
        return -1;
    }
    order_epoch(&T);
    /* reported once every input checked out, so that a refused run prints its error only */
    info(&T, "data: %d document%s, %zu tokens -> %d sequences of %d (train %d, held out %d), %lld training targets",
         T.data.n_docs, T.data.n_docs == 1 ? "" : "s", T.data.n, T.n_train + T.n_eval, p->ctx, T.n_train, T.n_eval,
         (long long)T.train_targets);
    if (p->resume) info(&T, "resumed at step %d of %d (%lld tokens trained)", T.step, p->steps, (long long)T.tokens);
    if (T.n_lora)
        info(&T, "LoRA rank %d, alpha %g on %d matrices: %zu trained values", p->lora_rank, lora_alpha(p), T.n_lora,
             T.n_trained);
    info(&T, "%zu parameters; AdamW beta1 %g beta2 %g, lr %g -> %g (warm-up %d steps), weight decay %g, clip %g",
         T.n_params, p->beta1, p->beta2, p->lr, p->min_lr, p->warmup, p->weight_decay, p->clip);

    double train_loss = NAN, eval_loss = NAN;
    if (T.n_eval && !p->resume) {
        eval_loss = run_eval(&T);
        csv_row(&T, NAN, eval_loss, 0);
    }
    int steps_this_call = 0, saved_at = p->resume ? T.step : -1;
    int64_t tokens_at_start = T.tokens;
    double loop_start = rg_time_s(); /* the pace excludes loading the data */
    while (T.step < p->steps) {
        if ((p->cancel && *p->cancel) || (p->stop_after && steps_this_call >= p->stop_after)) {
            res->stopped = 1;
            break;
        }
        double lr, norm;
        if (train_step(&T, &train_loss, &lr, &norm)) {
            rc = -1;
            break;
        }
        steps_this_call++;
        double spent = rg_time_s() - loop_start;
        rg_train_event e = {.kind = RG_TRAIN_STEP, .step = T.step, .steps = p->steps, .loss = train_loss, .lr = lr,
                            .grad_norm = norm, .tokens = T.tokens, .seconds = elapsed(&T),
                            .tokens_per_s = spent > 0 ? (double)(T.tokens - tokens_at_start) / spent : 0,
                            .eta_s = spent / steps_this_call * (p->steps - T.step)};
        emit(&T, &e);
        int eval_now = T.n_eval && ((p->eval_every && T.step % p->eval_every == 0) || T.step == p->steps);
        double step_eval = eval_now ? run_eval(&T) : NAN;
        if (eval_now) eval_loss = step_eval;
        csv_row(&T, train_loss, step_eval, lr);
        if (p->save_every && T.step % p->save_every == 0 && T.step < p->steps) {
            if ((rc = save_checkpoint(&T))) break;
            saved_at = T.step;
        }
    }
    /* lora_merge on a finished run (resumed at its last step) merges it */
    if (!rc && (saved_at != T.step || p->lora_merge)) rc = save_checkpoint(&T);
    res->steps_done = T.step;
    res->train_loss = train_loss;
    res->eval_loss = eval_loss;
    res->tokens = T.tokens;
    res->seconds = elapsed(&T);
    trainer_free(&T);
    return rc;
}

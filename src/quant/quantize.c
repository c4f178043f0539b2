/* rg_quantize: Hugging Face checkpoint -> GGUF file. The source is loaded
 * as a model first (so a checkpoint the engine would refuse is never
 * written), then each tensor is read from the mapping, converted row by row
 * and streamed out; the source pages already converted are dropped, so the
 * process holds a few MB of the source at a time, whatever the model size. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "formats/gguf.h"
#include "model/model.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

#define CHUNK (4u << 20) /* output bytes per write */

void rg_quantize_params_default(rg_quantize_params *p) {
    memset(p, 0, sizeof *p);
    p->type = "q8_0";
}

/* Default type of the tied embedding/logit matrix (README "Quantized
 * models"): its error goes straight into the logits, so with q4_0 it is kept
 * in q8_0 (31-62% less KL measured, for +21% bytes on 2B), with q4_k in q6_k;
 * with q8_0 it stays q8_0 (bf16 would remove a third to a half of an already
 * small KL, for +21% bytes and decode time). */
static rg_dtype default_embed(rg_dtype want) {
    return want == RG_DT_Q4_0 ? RG_DT_Q8_0 : want == RG_DT_Q4_K ? RG_DT_Q6_K : want;
}

/* Mixes: a type for the projections plus per-kind types (tensor_types
 * syntax), and llama.cpp's general.file_type for such a file. q4_k_m keeps
 * in q6_k (besides the embedding) the recurrent blocks' linear_x, linear_y
 * and linear_out: alone in q4_k they cost the most KL per weight (1.6-2.1x
 * the MLP's, 2-10x attention's; scripts/kquant-sensitivity.sh, README
 * "Quantized models"), and they removed more KL for fewer bytes than
 * down_proj, llama.cpp's choice for its q4_k_m. */
#define Q4_K_M_KINDS "linear_x=q6_k,linear_y=q6_k,linear_out=q6_k"
typedef struct {
    const char *name, *type, *tensor_types;
    int file_type;
} quant_mix;
static const quant_mix mixes[] = {
    {"q4_k_m", "q4_k", Q4_K_M_KINDS, 15}, /* LLAMA_FTYPE_MOSTLY_Q4_K_M */
};

/* One KIND=TYPE of a tensor_types list (s up to its end or a comma): 0 with
 * *match when name contains ".KIND.", -1 with a message when malformed. */
static int tensor_type_entry(const char *s, size_t len, const char *name, rg_dtype *dt, int *match) {
    const char *eq = memchr(s, '=', len);
    if (!eq || eq == s || eq == s + len - 1)
        return rg_error("tensor type \"%.*s\": expected KIND=TYPE (e.g. down_proj=q6_k)", (int)len, s);
    char kind[128], type[16];
    if ((size_t)(eq - s) + 2 > sizeof kind || (size_t)(s + len - eq - 1) >= sizeof type)
        return rg_error("tensor type \"%.*s\": too long", (int)len, s);
    kind[0] = '.';
    memcpy(kind + 1, s, (size_t)(eq - s));
    memcpy(kind + 1 + (eq - s), ".", 2);
    memcpy(type, eq + 1, (size_t)(s + len - eq - 1));
    type[s + len - eq - 1] = 0;
    if (rg_dtype_parse(type, dt)) return rg_error_prefix("tensor type \"%.*s\"", (int)len, s);
    char dotted[300];
    snprintf(dotted, sizeof dotted, ".%s", name); /* so that a kind matches at the start too */
    *match = strstr(dotted, kind) != NULL;
    return 0;
}

/* The type list's choice for name (the last match), in *dt; 1 if one
 * matched, 0 if none, -1 on a malformed list. */
static int tensor_type_for(const char *list, const char *name, rg_dtype *dt) {
    int found = 0;
    for (const char *s = list; list && *s;) {
        size_t len = strcspn(s, ",");
        rg_dtype t;
        int match;
        if (tensor_type_entry(s, len, name, &t, &match)) return -1;
        if (match) {
            *dt = t;
            found = 1;
        }
        s += len + (s[len] == ',');
    }
    return found;
}

/* The stored type of tensor name: the type lists' (the user's over the
 * mix's), else the policy's for want and embed (quant/quant.c); *why says
 * why it is not want. */
static rg_dtype choose_type(const char *name, const rg_tensor *mat, rg_dtype want, rg_dtype embed,
                            const quant_mix *mix, const char *user_types, const char **why) {
    rg_dtype own;
    int by_user = tensor_type_for(user_types, name, &own) == 1;
    int by_mix = !by_user && mix && tensor_type_for(mix->tensor_types, name, &own) == 1;
    if (!by_user && !by_mix) return rg_quant_choose(name, mat, want, embed, why);
    rg_dtype dt = rg_quant_choose(name, mat, own, own, why);
    if (!*why && dt != want) *why = by_user ? "--tensor-type" : "kept in higher precision by the mix";
    return dt;
}

/* Order: embedding, then layer by layer (numerically), then the rest, so a
 * decode step reads the file front to back. */
static long rank(const char *name) {
    if (!strcmp(name, "model.embed_tokens.weight")) return -1;
    const char *p = "model.layers.";
    if (!strncmp(name, p, strlen(p))) return strtol(name + strlen(p), NULL, 10);
    return LONG_MAX;
}

static int cmp_entry(const void *a, const void *b) {
    const rg_st_entry *x = *(rg_st_entry *const *)a, *y = *(rg_st_entry *const *)b;
    long rx = rank(x->name), ry = rank(y->name);
    return rx != ry ? (rx > ry) - (rx < ry) : strcmp(x->name, y->name);
}

/* The tensor as a matrix [rows, cols] (cols = its last dimension; a
 * 0-dimensional tensor is [1, 1]). */
static rg_tensor as_matrix(const rg_tensor *t) {
    rg_tensor m = *t;
    m.ndim = 2;
    m.shape[0] = 1;
    m.shape[1] = t->ndim ? t->shape[t->ndim - 1] : 1;
    for (int i = 0; i < t->ndim - 1; i++) m.shape[0] *= t->shape[i];
    return m;
}

static uint64_t stored_bytes(const rg_tensor *t, rg_dtype dt) {
    rg_tensor m = as_matrix(t);
    return rg_dtype_row_bytes(dt, m.shape[1]) * (uint64_t)m.shape[0];
}

/* Convert one tensor a chunk of rows at a time (the rows of a chunk in
 * parallel) and append it to the file; after each chunk, drop the source
 * rows read so far (they are file-backed: reading them again would just
 * fault them back in), so the process holds about one chunk of the source,
 * however large the tensor. */
static int stream_tensor(rg_gguf_writer *w, const rg_st_entry *e, rg_dtype dt, uint8_t *chunk) {
    rg_tensor flat = as_matrix(&e->t);
    int64_t rows = flat.shape[0], cols = flat.shape[1];
    size_t rb = rg_dtype_row_bytes(dt, cols), src_rb = rg_tensor_row_bytes(&flat);
    int64_t per = (int64_t)(CHUNK / rb);
    for (int64_t r0 = 0; r0 < rows; r0 += per) {
        int64_t nr = rows - r0 < per ? rows - r0 : per, bad = rows;
#pragma omp parallel
        {
            float *row = rg_xmalloc(sizeof(float) * (size_t)cols);
#pragma omp for schedule(static) reduction(min : bad)
            for (int64_t i = 0; i < nr; i++) {
                rg_dequant_row(&flat, r0 + i, row);
                if (rg_quantize_row(dt, row, cols, chunk + (size_t)i * rb) && r0 + i < bad) bad = r0 + i;
            }
            free(row);
        }
        if (bad < rows) { /* redo the first bad row here: the message is per thread */
            float *row = rg_xmalloc(sizeof(float) * (size_t)cols);
            rg_dequant_row(&flat, bad, row);
            rg_quantize_row(dt, row, cols, chunk);
            free(row);
            return rg_error_prefix("tensor \"%s\" row %lld", e->name, (long long)bad);
        }
        if (rg_gguf_w_data(w, chunk, (size_t)nr * rb)) return -1;
        rg_drop_file_pages((const uint8_t *)e->t.data + (size_t)r0 * src_rb, (size_t)nr * src_rb);
    }
    return 0;
}

/* The checkpoint's tokenizer (rg_tokenizer_find), if there is one: *t stays
 * NULL when there is none. */
static int find_tokenizer(const char *in_path, const rg_config *cfg, rg_tokenizer **t) {
    int rc = rg_tokenizer_find(in_path, t);
    if (rc == -2) return 0;
    if (!rc && rg_tokenizer_check_vocab(*t, cfg->vocab_size)) {
        rg_tokenizer_free(*t);
        *t = NULL;
        return rg_error_prefix("%s", in_path);
    }
    return rc;
}

static const char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/') s--;
    return s;
}

/* 1 when a and b name the same file (device and inode: a hard link, a
 * symbolic link or another spelling of the path count). */
static int same_inode(const struct stat *a, const char *path) {
    struct stat b;
    return !stat(path, &b) && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* The output (or its temporary) must not be one of the files the conversion
 * reads: the shards, and the config, index and tokenizer beside them. */
static int check_output(const rg_model *m, const char *in_path, const char *out_path) {
    struct stat o;
    if (!stat(out_path, &o) && S_ISDIR(o.st_mode))
        return rg_error("%s: the output is a directory: give a file name, e.g. %s/model.gguf", out_path, out_path);
    size_t ol = strlen(out_path);
    char *tmp = rg_xmalloc(ol + 5);
    memcpy(tmp, out_path, ol);
    memcpy(tmp + ol, ".tmp", 5);
    const char *outs[2] = {out_path, tmp};
    char *dir = rg_model_dir(in_path);
    static const char *const beside[] = {"config.json", "model.safetensors.index.json", "tokenizer.model",
                                         "tokenizer.json"};
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        if (stat(outs[k], &o)) continue; /* not there yet: cannot be an input */
        for (int i = 0; i < m->st.n_files && !rc; i++)
            if (same_inode(&o, m->st.files[i].path))
                rc = rg_error("%s: the output is the input file %s: quantize would destroy it (choose another "
                              "output)", outs[k], m->st.files[i].path);
        for (size_t i = 0; i < sizeof beside / sizeof *beside && !rc; i++) {
            char *b = rg_path_join(dir, beside[i]);
            if (same_inode(&o, b))
                rc = rg_error("%s: the output is the input file %s: quantize would destroy it (choose another "
                              "output)", outs[k], b);
            free(b);
        }
    }
    free(dir);
    free(tmp);
    return rc;
}

int rg_quantize(const char *in_path, const char *out_path, const rg_quantize_params *p) {
    rg_quantize_params defaults;
    if (!p) {
        rg_quantize_params_default(&defaults);
        p = &defaults;
    }
    const quant_mix *mix = NULL;
    for (size_t i = 0; i < sizeof mixes / sizeof *mixes; i++)
        if (p->type && !strcasecmp(p->type, mixes[i].name)) mix = &mixes[i];
    rg_dtype want, embed;
    if (rg_dtype_parse(mix ? mix->type : p->type ? p->type : "q8_0", &want)) return -1;
    embed = default_embed(want);
    if (p->embed_type && rg_dtype_parse(p->embed_type, &embed)) return -1;
    rg_dtype unused;
    if (tensor_type_for(p->tensor_types, "", &unused) < 0) return -1; /* malformed: said before any work */
    rg_model *m;
    if (rg_model_load(in_path, &m)) return -1;
    if (!m->st.n_entries) {
        rg_model_free(m);
        return rg_error("%s: quantize reads Hugging Face checkpoints (a folder or a .safetensors file)", in_path);
    }
    if (check_output(m, in_path, out_path)) {
        rg_model_free(m);
        return -1;
    }
    int n = 0;
    const rg_st_entry **order = rg_xmalloc(sizeof *order * (size_t)m->st.n_entries);
    for (int i = 0; i < m->st.n_entries; i++)
        if (strcmp(m->st.entries[i].name, "lm_head.weight")) order[n++] = &m->st.entries[i]; /* tied: the logits use the embedding */
    qsort(order, (size_t)n, sizeof *order, cmp_entry);

    rg_tokenizer *tok = NULL;
    rg_gguf_writer *w = rg_gguf_writer_new();
    rg_dtype *types = rg_xmalloc(sizeof *types * (size_t)n);
    const char **why = rg_xmalloc(sizeof *why * (size_t)n);
    uint8_t *chunk = NULL;
    int rc = -1;
    rg_gguf_w_str(w, "general.architecture", RG_GGUF_ARCH);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(base_name(in_path), "/"), base_name(in_path));
    rg_gguf_w_str(w, "general.name", name);
    rg_gguf_w_u32(w, "general.file_type", (uint32_t)(mix ? mix->file_type : rg_dtype_info(want)->file_type));
    if (rg_dtype_is_quantised(want)) rg_gguf_w_u32(w, "general.quantization_version", 2);
    rg_gguf_w_config(w, &m->cfg);
    if (find_tokenizer(in_path, &m->cfg, &tok)) goto done;
    if (tok) rg_gguf_w_tokenizer(w, tok);
    uint64_t total = 0, done = 0;
    int64_t max_cols = 1;
    for (int i = 0; i < n; i++) {
        const rg_tensor *t = &order[i]->t;
        rg_tensor mat = as_matrix(t);
        types[i] = choose_type(order[i]->name, &mat, want, embed, mix, p->tensor_types, &why[i]);
        if (rg_gguf_w_tensor(w, order[i]->name, types[i], t->ndim ? t->ndim : 1, t->ndim ? t->shape : mat.shape)) {
            rg_error_prefix("%s", out_path);
            goto done;
        }
        total += stored_bytes(t, types[i]);
        if (mat.shape[1] > max_cols) max_cols = mat.shape[1];
    }
    if ((uint64_t)rg_dtype_row_bytes(RG_DT_F32, max_cols) > CHUNK) {
        rg_error("%s: rows of %lld elements are too long", in_path, (long long)max_cols);
        goto done;
    }
    if (rg_gguf_w_begin(w, out_path)) goto done;
    chunk = rg_xmalloc(CHUNK);
    for (int i = 0; i < n; i++) {
        if (p->progress) p->progress(p->progress_ctx, order[i]->name, rg_dtype_name(types[i]), why[i], done, total);
        if (stream_tensor(w, order[i], types[i], chunk)) {
            rg_error_prefix("%s", in_path);
            goto done;
        }
        done += stored_bytes(&order[i]->t, types[i]);
    }
    if (rg_gguf_w_finish(w)) goto done;
    if (p->progress) p->progress(p->progress_ctx, NULL, NULL, NULL, done, total);
    rc = 0;
done:
    rg_tokenizer_free(tok);
    rg_gguf_writer_free(w);
    free(chunk);
    free(types);
    free(why);
    free(order);
    rg_model_free(m);
    return rc;
}

/* GGUF v3 writer: metadata and tensor infos are collected in memory (small),
 * then the tensor data is streamed to the file in order, each tensor padded
 * to the 32-byte alignment. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "formats/gguf.h"

typedef struct {
    char *name;
    rg_dtype dtype;
    int ndim;
    int64_t shape[4];
    size_t nbytes;
    uint64_t offset;
} wtensor;

struct rg_gguf_writer {
    uint8_t *kv; /* encoded key/value pairs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    int n_t;
    uint64_t data_size; /* data section size so far (aligned) */
    FILE *f;
    char *path, *tmp;
    int cur;         /* tensor whose bytes are being written */
    size_t cur_done; /* bytes of it written */
};

#define ALIGN RG_GGUF_DEFAULT_ALIGNMENT

static uint64_t align_up(uint64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

static void put(rg_gguf_writer *w, const void *p, size_t n) {
    w->kv = rg_grow(w->kv, &w->kv_cap, w->kv_len + n, 1);
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_le(rg_gguf_writer *w, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, (size_t)n);
}

static void put_strn(rg_gguf_writer *w, const char *s, uint64_t n) {
    put_le(w, n, 8);
    put(w, s, (size_t)n);
}

static void put_str(rg_gguf_writer *w, const char *s) { put_strn(w, s, strlen(s)); }

static void put_f32(rg_gguf_writer *w, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_le(w, u, 4);
}

static void key(rg_gguf_writer *w, const char *k, rg_gguf_type t) {
    put_str(w, k);
    put_le(w, t, 4);
    w->n_kv++;
}

static void arr(rg_gguf_writer *w, const char *k, rg_gguf_type elem, uint64_t n) {
    key(w, k, RG_GGUF_ARRAY);
    put_le(w, elem, 4);
    put_le(w, n, 8);
}

rg_gguf_writer *rg_gguf_writer_new(void) { return rg_xcalloc(1, sizeof(rg_gguf_writer)); }

void rg_gguf_w_u32(rg_gguf_writer *w, const char *k, uint32_t v) {
    key(w, k, RG_GGUF_UINT32);
    put_le(w, v, 4);
}

void rg_gguf_w_i32(rg_gguf_writer *w, const char *k, int32_t v) {
    key(w, k, RG_GGUF_INT32);
    put_le(w, (uint32_t)v, 4);
}

void rg_gguf_w_f32(rg_gguf_writer *w, const char *k, float v) {
    key(w, k, RG_GGUF_FLOAT32);
    put_f32(w, v);
}

void rg_gguf_w_bool(rg_gguf_writer *w, const char *k, int v) {
    key(w, k, RG_GGUF_BOOL);
    put_le(w, v != 0, 1);
}

void rg_gguf_w_str(rg_gguf_writer *w, const char *k, const char *v) {
    key(w, k, RG_GGUF_STRING);
    put_str(w, v);
}

void rg_gguf_w_arr_strn(rg_gguf_writer *w, const char *k, const char *const *v, const uint64_t *lens, uint64_t n) {
    arr(w, k, RG_GGUF_STRING, n);
    for (uint64_t i = 0; i < n; i++) put_strn(w, v[i], lens ? lens[i] : strlen(v[i]));
}

void rg_gguf_w_arr_str(rg_gguf_writer *w, const char *k, const char *const *v, uint64_t n) {
    rg_gguf_w_arr_strn(w, k, v, NULL, n);
}

void rg_gguf_w_arr_f32(rg_gguf_writer *w, const char *k, const float *v, uint64_t n) {
    arr(w, k, RG_GGUF_FLOAT32, n);
    for (uint64_t i = 0; i < n; i++) put_f32(w, v[i]);
}

void rg_gguf_w_arr_i32(rg_gguf_writer *w, const char *k, const int32_t *v, uint64_t n) {
    arr(w, k, RG_GGUF_INT32, n);
    for (uint64_t i = 0; i < n; i++) put_le(w, (uint32_t)v[i], 4);
}

int rg_gguf_w_tensor(rg_gguf_writer *w, const char *name, rg_dtype dtype, int ndim, const int64_t *shape) {
    if (strlen(name) > RG_GGUF_MAX_NAME)
        return rg_error("tensor \"%s\": name longer than %d bytes", name, RG_GGUF_MAX_NAME);
    if (ndim < 1 || ndim > 4 || !rg_dtype_info(dtype))
        return rg_error("tensor \"%s\": cannot be stored (%d dims, type %s)", name, ndim, rg_dtype_name(dtype));
    int64_t cols = shape[ndim - 1], rows = 1;
    for (int i = 0; i < ndim - 1; i++) rows *= shape[i];
    if (cols % rg_dtype_block(dtype))
        return rg_error("tensor \"%s\": rows of %lld are not a multiple of %d", name, (long long)cols,
                        rg_dtype_block(dtype));
    w->t = rg_xrealloc(w->t, sizeof *w->t * (size_t)(w->n_t + 1));
    wtensor *t = &w->t[w->n_t++];
    *t = (wtensor){strdup(name), dtype, ndim, {0}, rg_dtype_row_bytes(dtype, cols) * (size_t)rows, w->data_size};
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    w->data_size = align_up(w->data_size + t->nbytes);
    return 0;
}

static int write_bytes(rg_gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) return rg_error("%s: write failed: %s", w->tmp, strerror(errno));
    return 0;
}

static int pad(rg_gguf_writer *w, uint64_t pos) {
    static const uint8_t zeros[ALIGN];
    return write_bytes(w, zeros, (size_t)(align_up(pos) - pos));
}

int rg_gguf_w_begin(rg_gguf_writer *w, const char *path) {
    rg_gguf_w_u32(w, "general.alignment", ALIGN);
    w->path = strdup(path);
    w->tmp = rg_xmalloc(strlen(path) + 5);
    sprintf(w->tmp, "%s.tmp", path);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return rg_error("%s: cannot create: %s", w->tmp, strerror(errno));
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    /* header and tensor infos go after the metadata in the same buffer */
    size_t meta_len = w->kv_len;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(w, t->name);
        put_le(w, (uint64_t)t->ndim, 4);
        for (int d = t->ndim - 1; d >= 0; d--) put_le(w, (uint64_t)t->shape[d], 8); /* ne[0] = last dim */
        put_le(w, (uint64_t)rg_dtype_info(t->dtype)->ggml_type, 4);
        put_le(w, t->offset, 8);
    }
    uint8_t head[24];
    memcpy(head, "GGUF", 4);
    for (int i = 0; i < 4; i++) head[4 + i] = (uint8_t)(RG_GGUF_VERSION >> (8 * i));
    for (int i = 0; i < 8; i++) head[8 + i] = (uint8_t)((uint64_t)w->n_t >> (8 * i));
    for (int i = 0; i < 8; i++) head[16 + i] = (uint8_t)(w->n_kv >> (8 * i));
    if (write_bytes(w, head, sizeof head) || write_bytes(w, w->kv, w->kv_len) ||
        pad(w, sizeof head + w->kv_len))
        return -1;
    w->kv_len = meta_len;
    w->cur = 0;
    w->cur_done = 0;
    return 0;
}

int rg_gguf_w_data(rg_gguf_writer *w, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        if (!w->f || w->cur >= w->n_t) return rg_error("%s: more tensor data than the tensors declared", w->path);
        const wtensor *t = &w->t[w->cur];
        size_t take = t->nbytes - w->cur_done < n ? t->nbytes - w->cur_done : n;
        if (write_bytes(w, p, take)) return -1;
        p += take;
        n -= take;
        w->cur_done += take;
        if (w->cur_done == t->nbytes) {
            if (pad(w, t->offset + t->nbytes)) return -1;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return 0;
}

int rg_gguf_w_finish(rg_gguf_writer *w) {
    if (!w->f) return rg_error("%s: not started", w->path ? w->path : "gguf");
    if (w->cur != w->n_t)
        return rg_error("%s: tensor \"%s\" is incomplete", w->path, w->t[w->cur].name);
    int bad = fflush(w->f) != 0 || fsync(fileno(w->f)) != 0;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    if (bad) {
        rg_error("%s: write failed: %s", w->tmp, strerror(errno));
        unlink(w->tmp);
        return -1;
    }
    if (rename(w->tmp, w->path)) {
        rg_error("%s: cannot rename %s into place: %s", w->path, w->tmp, strerror(errno));
        unlink(w->tmp);
        return -1;
    }
    return 0;
}

void rg_gguf_writer_free(rg_gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp);
    }
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->kv);
    free(w->path);
    free(w->tmp);
    free(w);
}

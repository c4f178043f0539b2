/* GGUF v3 reader (format in formats/gguf.h).
 * The whole file is untrusted: every count, length, dimension and offset is
 * checked against the bytes that remain before it is used, so a truncated
 * or inconsistent file is refused with a message naming the field and its
 * file offset, never read out of bounds. */
#include <stdio.h>
#include <stdlib.h>
#include "formats/gguf.h"

#define MAX_DIMS 4

static const char *const type_names[RG_GGUF_NTYPES] = {"UINT8", "INT8",   "UINT16", "INT16", "UINT32",
                                                       "INT32", "FLOAT32", "BOOL",  "STRING", "ARRAY",
                                                       "UINT64", "INT64", "FLOAT64"};
static const uint8_t type_size[RG_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *rg_gguf_type_name(rg_gguf_type t) { return (unsigned)t < RG_GGUF_NTYPES ? type_names[t] : "?"; }

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- bounds-checked cursor over the mapped file --------------------------- */

typedef struct {
    const rg_gguf *g;
    uint64_t pos;
} cursor;

static uint64_t left(const cursor *c) { return c->g->f.size - c->pos; }

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > left(c))
        return rg_error("%s: truncated: %s at offset %llu needs %llu bytes, only %llu left", c->g->path, what,
                        (unsigned long long)c->pos, (unsigned long long)n, (unsigned long long)left(c));
    return 0;
}

static int rd(cursor *c, int n, const char *what, uint64_t *v) {
    if (need(c, (uint64_t)n, what)) return -1;
    *v = le(c->g->f.data + c->pos, n);
    c->pos += (uint64_t)n;
    return 0;
}

static int rd_str(cursor *c, const char *what, rg_gguf_str *s) {
    uint64_t len;
    if (rd(c, 8, what, &len) || need(c, len, what)) return -1;
    s->s = (const char *)c->g->f.data + c->pos;
    s->len = len;
    c->pos += len;
    return 0;
}

/* Skip over the kv's value (a scalar or an array), checking it. */
static int skip_value(cursor *c, rg_gguf_kv *kv, const char *what) {
    kv->value = c->g->f.data + c->pos;
    kv->offset = c->pos;
    kv->count = 1;
    kv->elem_type = kv->type;
    if (kv->type == RG_GGUF_ARRAY) {
        uint64_t et, n;
        if (rd(c, 4, what, &et) || rd(c, 8, what, &n)) return -1;
        if (et >= RG_GGUF_NTYPES || et == RG_GGUF_ARRAY)
            return rg_error("%s: %s at offset %llu: array element type %llu is not supported", c->g->path, what,
                            (unsigned long long)kv->offset, (unsigned long long)et);
        kv->elem_type = (rg_gguf_type)et;
        kv->count = n;
        kv->value = c->g->f.data + c->pos;
    }
    if (kv->elem_type == RG_GGUF_STRING) {
        rg_gguf_str s;
        for (uint64_t i = 0; i < kv->count; i++) /* each string takes >= 8 bytes, so this ends */
            if (rd_str(c, what, &s)) return -1;
        return 0;
    }
    uint64_t es = type_size[kv->elem_type];
    if (kv->count > left(c) / es)
        return rg_error("%s: truncated: %s at offset %llu: %llu values of %s need more than the %llu bytes left",
                        c->g->path, what, (unsigned long long)kv->offset, (unsigned long long)kv->count,
                        rg_gguf_type_name(kv->elem_type), (unsigned long long)left(c));
    if (kv->elem_type == RG_GGUF_BOOL)
        for (uint64_t i = 0; i < kv->count; i++)
            if (c->g->f.data[c->pos + i] > 1)
                return rg_error("%s: %s at offset %llu: BOOL value %u is not 0 or 1", c->g->path, what,
                                (unsigned long long)(c->pos + i), c->g->f.data[c->pos + i]);
    c->pos += kv->count * es;
    return 0;
}

static int str_cmp(rg_gguf_str a, rg_gguf_str b) {
    int r = memcmp(a.s, b.s, a.len < b.len ? a.len : b.len);
    return r ? r : (a.len > b.len) - (a.len < b.len);
}

static int cmp_kv(const void *a, const void *b) {
    return str_cmp(((const rg_gguf_kv *)a)->key, ((const rg_gguf_kv *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const rg_gguf_tensor *)a)->name, ((const rg_gguf_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const rg_gguf_tensor *x = *(rg_gguf_tensor *const *)a, *y = *(rg_gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Printable prefix of a key for messages. */
#define KEYFMT "\"%.*s\""
#define KEYARG(k) (int)((k).len < 64 ? (k).len : 64), (k).s

static int read_header(rg_gguf *g) {
    cursor c = {g, 0};
    uint64_t magic, version, n_tensors, n_kv;
    if (rd(&c, 4, "magic", &magic)) return -1;
    if (memcmp(g->f.data, "GGUF", 4))
        return rg_error("%s: bad magic (not a GGUF file: the first 4 bytes are not \"GGUF\")", g->path);
    if (rd(&c, 4, "version", &version)) return -1;
    if (version != RG_GGUF_VERSION) {
        if (version == 0x03000000u) return rg_error("%s: big-endian GGUF files are not supported", g->path);
        return rg_error("%s: GGUF version %llu is not supported (only version 3)", g->path,
                        (unsigned long long)version);
    }
    g->version = (uint32_t)version;
    if (rd(&c, 8, "tensor_count", &n_tensors) || rd(&c, 8, "metadata_kv_count", &n_kv)) return -1;
    /* every kv takes >= 13 bytes and every tensor info >= 28: bounds the allocations */
    if (n_kv > left(&c) / 13)
        return rg_error("%s: metadata_kv_count %llu cannot fit in the file (%zu bytes)", g->path,
                        (unsigned long long)n_kv, g->f.size);
    if (n_tensors > left(&c) / 28)
        return rg_error("%s: tensor_count %llu cannot fit in the file (%zu bytes)", g->path,
                        (unsigned long long)n_tensors, g->f.size);

    g->kv = rg_xcalloc(n_kv ? n_kv : 1, sizeof *g->kv);
    char what[64];
    for (uint64_t i = 0; i < n_kv; i++) {
        rg_gguf_kv *kv = &g->kv[i];
        uint64_t t;
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        if (rd_str(&c, what, &kv->key)) return -1;
        if (kv->key.len == 0) return rg_error("%s: metadata key %llu is empty", g->path, (unsigned long long)i);
        g->n_kv = i + 1;
        snprintf(what, sizeof what, "metadata value %llu", (unsigned long long)i);
        if (rd(&c, 4, what, &t)) return -1;
        if (t >= RG_GGUF_NTYPES)
            return rg_error("%s: %s at offset %llu has unknown value type %llu", g->path, what,
                            (unsigned long long)(c.pos - 4), (unsigned long long)t);
        kv->type = (rg_gguf_type)t;
        if (skip_value(&c, kv, what)) return -1;
    }
    qsort(g->kv, g->n_kv, sizeof *g->kv, cmp_kv);
    for (uint64_t i = 1; i < g->n_kv; i++)
        if (!str_cmp(g->kv[i - 1].key, g->kv[i].key))
            return rg_error("%s: metadata key " KEYFMT " appears more than once", g->path, KEYARG(g->kv[i].key));

    int64_t align = RG_GGUF_DEFAULT_ALIGNMENT;
    const rg_gguf_kv *akv = rg_gguf_find(g, "general.alignment");
    if (akv && akv->type != RG_GGUF_UINT32)
        return rg_error("%s: metadata key \"general.alignment\" at offset %llu is %s, expected UINT32", g->path,
                        (unsigned long long)akv->offset, rg_gguf_type_name(akv->type));
    if (akv) align = (int64_t)le(akv->value, 4);
    if (align < 1 || align > (1 << 24) || (align & (align - 1)))
        return rg_error("%s: general.alignment = %lld must be a power of two", g->path, (long long)align);
    g->alignment = (uint32_t)align;

    g->tensors = rg_xcalloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        rg_gguf_tensor *ti = &g->tensors[i];
        rg_gguf_str name;
        uint64_t nd, type, off, ne[MAX_DIMS];
        snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
        uint64_t at = c.pos;
        if (rd_str(&c, what, &name)) return -1;
        if (name.len == 0 || name.len > 64 || memchr(name.s, 0, name.len))
            return rg_error("%s: tensor info %llu at offset %llu: name must be 1..64 bytes without NUL", g->path,
                            (unsigned long long)i, (unsigned long long)at);
        ti->name = strndup(name.s, name.len);
        g->n_tensors = i + 1;
        if (rd(&c, 4, what, &nd)) return -1;
        if (nd < 1 || nd > MAX_DIMS)
            return rg_error("%s: tensor \"%s\": n_dims = %llu (must be 1..%d)", g->path, ti->name,
                            (unsigned long long)nd, MAX_DIMS);
        uint64_t count = 1;
        for (uint64_t d = 0; d < nd; d++) {
            if (rd(&c, 8, what, &ne[d])) return -1;
            if (ne[d] < 1 || ne[d] > ((uint64_t)1 << 40) || count > ((uint64_t)1 << 50) / ne[d])
                return rg_error("%s: tensor \"%s\": dimension %llu = %llu is out of range", g->path, ti->name,
                                (unsigned long long)d, (unsigned long long)ne[d]);
            count *= ne[d];
        }
        if (rd(&c, 4, what, &type) || rd(&c, 8, what, &off)) return -1;
        rg_dtype dt;
        if (rg_dtype_from_ggml((uint32_t)type, &dt))
            return rg_error("%s: tensor \"%s\": ggml type %llu is not supported (supported: F32=0, F16=1, "
                            "Q4_0=2, Q8_0=8, Q4_K=12, Q6_K=14, BF16=30)",
                            g->path, ti->name, (unsigned long long)type);
        if (ne[0] % (uint64_t)rg_dtype_block(dt))
            return rg_error("%s: tensor \"%s\": %s rows of %llu elements are not a multiple of %d", g->path,
                            ti->name, rg_dtype_name(dt), (unsigned long long)ne[0], rg_dtype_block(dt));
        if (off % g->alignment)
            return rg_error("%s: tensor \"%s\": data offset %llu is not a multiple of the alignment %u", g->path,
                            ti->name, (unsigned long long)off, g->alignment);
        ti->ggml_type = (int)type;
        ti->offset = off;
        ti->t.dtype = dt;
        ti->t.ndim = (int)nd;
        for (uint64_t d = 0; d < nd; d++) ti->t.shape[d] = (int64_t)ne[nd - 1 - d];
        ti->t.nbytes = rg_dtype_row_bytes(dt, (int64_t)ne[0]) * (size_t)(count / ne[0]);
    }
    uint64_t data = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data > g->f.size)
        return rg_error("%s: truncated: the data section would start at offset %llu, past the end (%zu bytes)",
                        g->path, (unsigned long long)data, g->f.size);
    g->data_offset = data;
    uint64_t data_size = g->f.size - data;
    rg_gguf_tensor **order = rg_xmalloc(sizeof *order * (g->n_tensors ? g->n_tensors : 1));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        rg_gguf_tensor *ti = &g->tensors[i];
        order[i] = ti;
        if (ti->offset > data_size || ti->t.nbytes > data_size - ti->offset) {
            free(order);
            return rg_error("%s: tensor \"%s\": data [%llu, %llu) runs past the end of the data section "
                            "(%llu bytes; file truncated?)",
                            g->path, ti->name, (unsigned long long)ti->offset,
                            (unsigned long long)(ti->offset + ti->t.nbytes), (unsigned long long)data_size);
        }
        ti->t.data = g->f.data + data + ti->offset;
    }
    qsort(order, g->n_tensors, sizeof *order, cmp_tensor_offset);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (order[i]->offset < order[i - 1]->offset + order[i - 1]->t.nbytes) {
            rg_error("%s: tensors \"%s\" and \"%s\" overlap", g->path, order[i - 1]->name, order[i]->name);
            free(order);
            return -1;
        }
    free(order);
    qsort(g->tensors, g->n_tensors, sizeof *g->tensors, cmp_tensor_name);
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i - 1].name, g->tensors[i].name))
            return rg_error("%s: tensor \"%s\" appears more than once", g->path, g->tensors[i].name);
    return 0;
}

int rg_gguf_open(rg_gguf **out, const char *path) {
    *out = NULL;
    rg_gguf *g = rg_xcalloc(1, sizeof *g);
    if (rg_map_file(path, &g->f)) {
        free(g);
        return -1;
    }
    g->path = g->f.path;
    if (read_header(g)) {
        rg_gguf_close(g);
        return -1;
    }
    *out = g;
    return 0;
}

void rg_gguf_close(rg_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->kv);
    rg_unmap_file(&g->f);
    free(g);
}

const rg_gguf_kv *rg_gguf_find(const rg_gguf *g, const char *key) {
    rg_gguf_kv k = {.key = {key, strlen(key)}};
    return bsearch(&k, g->kv, g->n_kv, sizeof *g->kv, cmp_kv);
}

const rg_gguf_tensor *rg_gguf_find_tensor(const rg_gguf *g, const char *name) {
    rg_gguf_tensor k = {.name = (char *)name};
    return bsearch(&k, g->tensors, g->n_tensors, sizeof *g->tensors, cmp_tensor_name);
}

/* ---- typed metadata reads ------------------------------------------------- */

static int is_int_type(rg_gguf_type t) {
    return t <= RG_GGUF_INT32 || t == RG_GGUF_UINT64 || t == RG_GGUF_INT64;
}

static int is_signed(rg_gguf_type t) {
    return t == RG_GGUF_INT8 || t == RG_GGUF_INT16 || t == RG_GGUF_INT32 || t == RG_GGUF_INT64;
}

/* Integer of type t at p; *big is set when a UINT64 does not fit int64. */
static int64_t int_at(rg_gguf_type t, const uint8_t *p, int *big) {
    int n = type_size[t];
    uint64_t u = le(p, n);
    *big = 0;
    if (!is_signed(t)) {
        if (u > INT64_MAX) *big = 1;
        return (int64_t)u;
    }
    if (n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    return (int64_t)u;
}

static double float_at(rg_gguf_type t, const uint8_t *p) {
    if (t == RG_GGUF_FLOAT32) {
        uint32_t u = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    uint64_t u = le(p, 8);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static int wrong_type(const rg_gguf *g, const char *key, const rg_gguf_kv *kv, const char *expected) {
    return rg_error("%s: metadata key \"%s\" at offset %llu is %s, expected %s", g->path, key,
                    (unsigned long long)kv->offset, rg_gguf_type_name(kv->type), expected);
}

static int missing(const rg_gguf *g, const char *key) {
    return rg_error("%s: missing metadata key \"%s\"", g->path, key);
}

int rg_gguf_get_int(const rg_gguf *g, const char *key, int64_t lo, int64_t hi, const int64_t *dflt, int64_t *out) {
    const rg_gguf_kv *kv = rg_gguf_find(g, key);
    if (!kv) {
        if (!dflt) return missing(g, key);
        *out = *dflt;
        return 0;
    }
    if (!is_int_type(kv->type)) return wrong_type(g, key, kv, "an integer");
    int big;
    int64_t v = int_at(kv->type, kv->value, &big);
    if (big || v < lo || v > hi)
        return rg_error("%s: metadata key \"%s\" = %s%lld is out of range [%lld, %lld]", g->path, key,
                        big ? ">" : "", (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

int rg_gguf_get_float(const rg_gguf *g, const char *key, double lo, double hi, const double *dflt, double *out) {
    const rg_gguf_kv *kv = rg_gguf_find(g, key);
    if (!kv) {
        if (!dflt) return missing(g, key);
        *out = *dflt;
        return 0;
    }
    if (kv->type != RG_GGUF_FLOAT32 && kv->type != RG_GGUF_FLOAT64) return wrong_type(g, key, kv, "FLOAT32");
    double v = float_at(kv->type, kv->value);
    if (!(v >= lo && v <= hi))
        return rg_error("%s: metadata key \"%s\" = %g is out of range [%g, %g]", g->path, key, v, lo, hi);
    *out = v;
    return 0;
}

int rg_gguf_get_bool(const rg_gguf *g, const char *key, const int *dflt, int *out) {
    const rg_gguf_kv *kv = rg_gguf_find(g, key);
    if (!kv) {
        if (!dflt) return missing(g, key);
        *out = *dflt;
        return 0;
    }
    if (kv->type != RG_GGUF_BOOL) return wrong_type(g, key, kv, "BOOL");
    *out = kv->value[0];
    return 0;
}

int rg_gguf_get_str(const rg_gguf *g, const char *key, rg_gguf_str *out) {
    const rg_gguf_kv *kv = rg_gguf_find(g, key);
    if (!kv) return missing(g, key);
    if (kv->type != RG_GGUF_STRING) return wrong_type(g, key, kv, "STRING");
    out->len = le(kv->value, 8);
    out->s = (const char *)kv->value + 8;
    return 0;
}

int rg_gguf_get_array(const rg_gguf *g, const char *key, rg_gguf_type elem, const rg_gguf_kv **out) {
    const rg_gguf_kv *kv = rg_gguf_find(g, key);
    if (!kv) return missing(g, key);
    int ok = kv->type == RG_GGUF_ARRAY;
    if (ok && elem == RG_GGUF_INT32) ok = is_int_type(kv->elem_type);
    else if (ok && elem == RG_GGUF_FLOAT32) ok = kv->elem_type == RG_GGUF_FLOAT32 || kv->elem_type == RG_GGUF_FLOAT64;
    else if (ok) ok = kv->elem_type == elem;
    if (!ok)
        return rg_error("%s: metadata key \"%s\" at offset %llu is %s%s%s, expected an ARRAY of %s", g->path, key,
                        (unsigned long long)kv->offset, rg_gguf_type_name(kv->type),
                        kv->type == RG_GGUF_ARRAY ? " of " : "",
                        kv->type == RG_GGUF_ARRAY ? rg_gguf_type_name(kv->elem_type) : "",
                        elem == RG_GGUF_INT32 ? "integers" : rg_gguf_type_name(elem));
    *out = kv;
    return 0;
}

int64_t rg_gguf_arr_int(const rg_gguf_kv *kv, uint64_t i) {
    int big;
    return int_at(kv->elem_type, kv->value + i * type_size[kv->elem_type], &big);
}

double rg_gguf_arr_float(const rg_gguf_kv *kv, uint64_t i) {
    return float_at(kv->elem_type, kv->value + i * type_size[kv->elem_type]);
}

rg_gguf_str *rg_gguf_arr_strs(const rg_gguf_kv *kv) {
    rg_gguf_str *v = rg_xmalloc(sizeof *v * (kv->count ? kv->count : 1));
    const uint8_t *p = kv->value; /* validated by rg_gguf_open */
    for (uint64_t i = 0; i < kv->count; i++) {
        v[i].len = le(p, 8);
        v[i].s = (const char *)p + 8;
        p += 8 + v[i].len;
    }
    return v;
}

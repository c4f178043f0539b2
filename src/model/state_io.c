/* State files: one sequence's whole memory on disk, to continue later.
 *
 * Layout (little-endian, fixed size for a given config and window type):
 *   0   char[8]  magic "RGSTATE\0"
 *   8   u32      version (1; 3 when the windows are float16, 5 Q8_0)
 *   12  u32      header bytes (HEADER_BYTES)
 *   16  u64      config fingerprint (rg_config_fingerprint)
 *   24  i32[4]   vocab, hidden, layers, window (for the error message)
 *   40  i64      position (tokens processed)
 *   48  u64      number of 4-byte words that follow
 *   56  u32      pending ids (tokens of the sequence not processed yet)
 *   60  i32[16]  pending ids
 *   124 u32      the attention windows' element type, as a ggml type id:
 *                0 float32, 1 float16, 8 Q8_0 (version 1 wrote 0 here: reserved)
 *   128 u64      checksum: FNV-1a of bytes 0..127 and of the data
 *   136          the state (model/state.h): float32 words, the windows'
 *                rows float32, float16 or Q8_0 blocks
 * A different config, version, window type, size or checksum is refused.
 * Float32 windows keep version 1 (the files older builds read); float16
 * ones are version 3 and Q8_0 ones 5, which older builds refuse by number.
 *
 * State blobs (rg_state_blob_*: the server's shared state store) are the
 * same header with version 2 (4 with float16 windows, 6 with Q8_0), and data holding only
 * what is in use: every recurrent layer whole, each attention layer's first
 * min(pos, W) key rows then as many value rows (the ring's slots in use). A
 * short conversation's blob is thus much smaller than the state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "model/state.h"
#include "util/util.h"

#define MAGIC "RGSTATE"
/* The versions of a file and of a blob for each window type */
static const struct {
    rg_dtype type;
    uint32_t ggml_type, file_version, blob_version;
} kv_formats[] = {{RG_DT_F32, RG_GGML_F32, 1, 2}, {RG_DT_F16, RG_GGML_F16, 3, 4}, {RG_DT_Q8_0, RG_GGML_Q8_0, 5, 6}};
enum { N_KV_FORMATS = sizeof kv_formats / sizeof kv_formats[0] };
#define KV_TYPE_AT 124
#define SUM_AT 128
#define HEADER_BYTES 136

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t checksum(const uint8_t *header, const float *data, size_t floats) {
    return rg_fnv1a(data, floats * sizeof(float), rg_fnv1a(header, SUM_AT, 0xcbf29ce484222325ull));
}

/* The header's bytes 0..55 and the window type (the rest zero): the same
 * for files and blobs but for the version (kv_formats) and the count of
 * words that follow. */
static void put_header(uint8_t *h, const rg_state *s, int blob, uint64_t floats) {
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, 8);
    int f = 0;
    while (f + 1 < N_KV_FORMATS && kv_formats[f].type != s->kv_type) f++;
    put32(h + 8, blob ? kv_formats[f].blob_version : kv_formats[f].file_version);
    put32(h + KV_TYPE_AT, kv_formats[f].ggml_type);
    put32(h + 12, HEADER_BYTES);
    put64(h + 16, rg_config_fingerprint(&s->cfg));
    put32(h + 24, (uint32_t)s->cfg.vocab_size);
    put32(h + 28, (uint32_t)s->cfg.hidden_size);
    put32(h + 32, (uint32_t)s->cfg.num_layers);
    put32(h + 36, (uint32_t)s->cfg.window);
    put64(h + 40, (uint64_t)s->pos);
    put64(h + 48, floats);
}

/* The window type a header declares, checked against its version (of a
 * file, or with blob of a blob): 0, or -1 with *bad_version set when the
 * version is none of kv_formats', else with the message about a corrupt
 * header. */
static int header_kv_type(const uint8_t *h, int blob, rg_dtype *type, int *bad_version) {
    uint32_t version = get32(h + 8), id = get32(h + KV_TYPE_AT);
    int f = 0;
    while (f < N_KV_FORMATS && version != (blob ? kv_formats[f].blob_version : kv_formats[f].file_version)) f++;
    *bad_version = f == N_KV_FORMATS || get32(h + 12) != HEADER_BYTES;
    if (*bad_version || id != kv_formats[f].ggml_type) return -1;
    *type = kv_formats[f].type;
    return 0;
}

/* "versions 1, 3 and 5": the versions this build reads (of blobs with blob) */
static const char *known_versions(int blob, char *buf, size_t size) {
    int at = snprintf(buf, size, "versions");
    for (int f = 0; f < N_KV_FORMATS && at > 0 && (size_t)at < size; f++)
        at += snprintf(buf + at, size - (size_t)at, "%s %u", f == 0 ? "" : f + 1 < N_KV_FORMATS ? "," : " and",
                       blob ? kv_formats[f].blob_version : kv_formats[f].file_version);
    return buf;
}

/* The message of a state whose window type is not the receiving state's. */
static int kv_type_mismatch(const char *what, rg_dtype saved, rg_dtype want) {
    return rg_error("%s: the state's attention window is %s, this model's states are %s (read it into a state made "
                    "with --kv-type %s, rg_model_set_kv_type)",
                    what, rg_kv_type_name(saved), rg_kv_type_name(want), rg_kv_type_name(saved));
}

int rg_state_save_pending(const rg_state *s, const int32_t *pending, int n_pending, const char *path) {
    if (n_pending < 0 || n_pending > RG_STATE_MAX_PENDING)
        return rg_error("%s: %d pending tokens (at most %d)", path, n_pending, RG_STATE_MAX_PENDING);
    uint8_t h[HEADER_BYTES];
    put_header(h, s, 0, s->floats);
    put32(h + 56, (uint32_t)n_pending);
    for (int i = 0; i < n_pending; i++) put32(h + 60 + 4 * i, (uint32_t)pending[i]);
    put64(h + SUM_AT, checksum(h, s->data, s->floats));
    /* write beside the target, then rename: a crash never leaves half a file */
    size_t pl = strlen(path);
    char *tmp = rg_xmalloc(pl + 8);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rg_error("%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int ok = fwrite(h, 1, sizeof h, f) == sizeof h && fwrite(s->data, sizeof(float), s->floats, f) == s->floats;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        rg_error("%s: write failed: %s", path, strerror(errno ? errno : EIO));
        remove(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int rg_state_save(const rg_state *s, const char *path) { return rg_state_save_pending(s, NULL, 0, path); }

int rg_state_load_pending(rg_state *s, const char *path, int32_t *pending, int *n_pending) {
    FILE *f = fopen(path, "rb");
    if (!f) return rg_error("%s: cannot open: %s", path, strerror(errno));
    uint8_t h[HEADER_BYTES];
    struct stat st;
    int rc = -1;
    float *data = NULL;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        rg_error("%s: not a regular file", path);
        goto done;
    }
    if (fread(h, 1, sizeof h, f) != sizeof h || memcmp(h, MAGIC, 8)) {
        rg_error("%s: not an rgemma state file", path);
        goto done;
    }
    rg_dtype kv_type;
    int bad_version;
    char known[64];
    if (header_kv_type(h, 0, &kv_type, &bad_version)) {
        if (bad_version)
            rg_error("%s: state file version %u is not supported (this build reads %s)", path, get32(h + 8),
                     known_versions(0, known, sizeof known));
        else
            rg_error("%s: corrupt state file (window type %u does not match version %u)", path, get32(h + KV_TYPE_AT),
                     get32(h + 8));
        goto done;
    }
    if (get64(h + 16) != rg_config_fingerprint(&s->cfg)) {
        /* another model's state, or this one's with a damaged header: only a
         * file whose own checksum holds was written for another model */
        uint64_t declared = get64(h + 48);
        int intact = 0;
        if (st.st_size > HEADER_BYTES && declared == (uint64_t)(st.st_size - HEADER_BYTES) / sizeof(float) &&
            (uint64_t)st.st_size == HEADER_BYTES + declared * sizeof(float) && declared <= (1ull << 34)) {
            data = malloc((size_t)declared * sizeof(float));
            intact = data && fread(data, sizeof(float), (size_t)declared, f) == declared &&
                     checksum(h, data, (size_t)declared) == get64(h + SUM_AT);
        }
        if (!intact) {
            rg_error("%s: corrupt state file (the header's checksum does not match: damaged or truncated)", path);
            goto done;
        }
        rg_error("%s: the state was saved with another model configuration (vocab %u, hidden %u, %u layers, window "
                 "%u; this model: vocab %d, hidden %d, %d layers, window %d)",
                 path, get32(h + 24), get32(h + 28), get32(h + 32), get32(h + 36), s->cfg.vocab_size,
                 s->cfg.hidden_size, s->cfg.num_layers, s->cfg.window);
        goto done;
    }
    if (kv_type != s->kv_type) {
        kv_type_mismatch(path, kv_type, s->kv_type);
        goto done;
    }
    uint64_t floats = get64(h + 48);
    if (floats != s->floats || (uint64_t)st.st_size != HEADER_BYTES + floats * sizeof(float)) {
        rg_error("%s: truncated or corrupt state file (%lld bytes, expected %llu)", path, (long long)st.st_size,
                 (unsigned long long)(HEADER_BYTES + s->floats * sizeof(float)));
        goto done;
    }
    int64_t pos = (int64_t)get64(h + 40);
    uint32_t np = get32(h + 56);
    /* 2^53 positions: far beyond any real sequence, and pos + n cannot overflow */
    if (pos < 0 || pos > (1ll << 53) || np > RG_STATE_MAX_PENDING) {
        rg_error("%s: corrupt state file (bad position %lld or pending count %u)", path, (long long)pos, np);
        goto done;
    }
    for (uint32_t i = 0; i < np; i++) { /* named here, not later as a "prompt token" */
        uint32_t id = get32(h + 60 + 4 * i);
        if (id >= (uint32_t)s->cfg.vocab_size) {
            rg_error("%s: corrupt state file (pending token id %u outside the vocabulary [0, %d))", path, id,
                     s->cfg.vocab_size);
            goto done;
        }
    }
    data = rg_aligned_alloc(s->floats * sizeof(float));
    if (fread(data, sizeof(float), s->floats, f) != s->floats) {
        rg_error("%s: read error", path);
        goto done;
    }
    if (checksum(h, data, s->floats) != get64(h + SUM_AT)) {
        rg_error("%s: corrupt state file (checksum mismatch)", path);
        goto done;
    }
    /* only now, with everything checked, does the state change */
    memcpy(s->data, data, s->floats * sizeof(float));
    s->pos = pos;
    if (pending)
        for (uint32_t i = 0; i < np; i++) pending[i] = (int32_t)get32(h + 60 + 4 * i);
    if (n_pending) *n_pending = (int)np;
    rc = 0;
done:
    free(data);
    fclose(f);
    return rc;
}

int rg_state_load(rg_state *s, const char *path) { return rg_state_load_pending(s, path, NULL, NULL); }

size_t rg_state_file_bytes(const rg_config *cfg) { return HEADER_BYTES + rg_state_bytes(cfg); }

size_t rg_model_state_file_bytes(const rg_model *m) { return HEADER_BYTES + rg_model_state_bytes(m); }

/* 4-byte words of the blob of a state at position pos (see the top); a
 * window's 2 x used rows (float16: hd x 4 bytes, Q8_0: hd / 32 x 68) are a whole number of words. */
static size_t blob_floats(const rg_config *c, rg_dtype kv_type, int64_t pos) {
    size_t used = pos < c->window ? (size_t)pos : (size_t)c->window, n = 0;
    for (int i = 0; i < c->num_layers; i++)
        n += rg_config_layer_type(c, i) == RG_LAYER_RECURRENT
                 ? (size_t)c->conv_width * c->lru_width
                 : 2 * used * rg_kv_row_bytes(kv_type, c->head_dim) / sizeof(float);
    return n;
}

size_t rg_state_blob_bytes(const rg_state *s) {
    return HEADER_BYTES + blob_floats(&s->cfg, s->kv_type, s->pos) * sizeof(float);
}

/* Copy the parts in use between a state and blob data (to_blob: state ->
 * blob). The blob is bytes: it need not be aligned for floats. */
static void blob_copy(rg_state *s, uint8_t *blob, int64_t pos, int to_blob) {
    size_t used = pos < s->cfg.window ? (size_t)pos : (size_t)s->cfg.window;
    for (int i = 0; i < s->cfg.num_layers; i++) {
        if (rg_config_layer_type(&s->cfg, i) == RG_LAYER_RECURRENT) {
            float *at = s->data + s->offset[i];
            size_t n = (size_t)s->cfg.conv_width * s->cfg.lru_width * sizeof(float);
            if (to_blob) memcpy(blob, at, n);
            else memcpy(at, blob, n);
            blob += n;
        } else {
            rg_kv_window w = rg_state_window(s, i);
            size_t n = used * rg_kv_row_bytes(s->kv_type, s->cfg.head_dim);
            if (to_blob) {
                memcpy(blob, w.k, n);
                memcpy(blob + n, w.v, n);
            } else {
                memcpy(w.k, blob, n);
                memcpy(w.v, blob + n, n);
            }
            blob += 2 * n;
        }
    }
}

void rg_state_blob_write(const rg_state *s, uint8_t *out) {
    put_header(out, s, 1, blob_floats(&s->cfg, s->kv_type, s->pos));
    blob_copy((rg_state *)s, out + HEADER_BYTES, s->pos, 1);
}

static uint64_t blob_sum(const uint8_t *p, size_t n) {
    return rg_fnv1a(p + HEADER_BYTES, n - HEADER_BYTES, rg_fnv1a(p, SUM_AT, 0xcbf29ce484222325ull));
}

void rg_state_blob_seal(uint8_t *blob, size_t n) { put64(blob + SUM_AT, blob_sum(blob, n)); }

/* The header against config c, window type kv_type and the size n (and
 * with sum, the checksum, first: a damaged header is not "another model");
 * *pos: the position. */
static int blob_check(const rg_config *c, rg_dtype kv_type, const uint8_t *p, size_t n, const char *what, int sum,
                      int64_t *pos) {
    if (n < HEADER_BYTES || memcmp(p, MAGIC, 8)) return rg_error("%s: not an rgemma state (%zu bytes)", what, n);
    rg_dtype saved;
    int bad_version;
    char known[64];
    if (header_kv_type(p, 1, &saved, &bad_version)) {
        if (bad_version)
            return rg_error("%s: state blob version %u is not supported (this build reads %s)", what, get32(p + 8),
                            known_versions(1, known, sizeof known));
        return rg_error("%s: corrupt state (window type %u does not match version %u)", what,
                        get32(p + KV_TYPE_AT), get32(p + 8));
    }
    uint64_t floats = get64(p + 48);
    if (floats > (n - HEADER_BYTES) / sizeof(float) || n != HEADER_BYTES + floats * sizeof(float) ||
        (sum && blob_sum(p, n) != get64(p + SUM_AT)))
        return rg_error("%s: corrupt state (size or checksum mismatch)", what);
    if (get64(p + 16) != rg_config_fingerprint(c))
        return rg_error("%s: the state was saved with another model configuration (vocab %u, hidden %u, %u layers, "
                        "window %u; this model: vocab %d, hidden %d, %d layers, window %d)",
                        what, get32(p + 24), get32(p + 28), get32(p + 32), get32(p + 36), c->vocab_size,
                        c->hidden_size, c->num_layers, c->window);
    if (saved != kv_type) return kv_type_mismatch(what, saved, kv_type);
    *pos = (int64_t)get64(p + 40);
    if (*pos < 0 || *pos > (1ll << 53) || floats != blob_floats(c, kv_type, *pos) || get32(p + 56) != 0)
        return rg_error("%s: corrupt state (position %lld does not match %llu floats)", what, (long long)*pos,
                        (unsigned long long)floats);
    return 0;
}

int rg_state_blob_check(const rg_config *c, rg_dtype kv_type, const uint8_t *p, size_t n, const char *what) {
    int64_t pos;
    return blob_check(c, kv_type, p, n, what, 1, &pos);
}

int rg_state_blob_read(rg_state *s, const uint8_t *p, size_t n, const char *what) {
    int64_t pos;
    if (blob_check(&s->cfg, s->kv_type, p, n, what, 0, &pos)) return -1;
    blob_copy(s, (uint8_t *)p + HEADER_BYTES, pos, 0); /* only read from: to_blob is 0 */
    s->pos = pos;
    return 0;
}

/* SentencePiece tokenizer.model (a protobuf ModelProto): a small,
 * bounds-checked wire-format reader, and the writer behind
 * `rgemma tokenize --convert`.
 *
 * Wire format: each field is a varint key (field_number << 3 | wire_type)
 * followed by a varint (type 0), 8 bytes (1), a varint length and that many
 * bytes (2), or 4 bytes (5). Fields this reader does not use are skipped. */
#include <stdio.h>
#include <stdlib.h>
#include "tokenizer/tokenizer.h"
#include "util/util.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };
enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };

typedef struct {
    const uint8_t *base, *p, *end;
    const char *name; /* file name, for messages */
} pb_reader;

static size_t pb_off(const pb_reader *r) { return (size_t)(r->p - r->base); }

static int pb_varint(pb_reader *r, uint64_t *v, const char *what) {
    uint64_t x = 0;
    size_t at = pb_off(r);
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) return rg_error("%s: truncated varint in %s at byte %zu", r->name, what, at);
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return rg_error("%s: varint longer than 10 bytes in %s at byte %zu", r->name, what, at);
}

/* Next field key of the message in r; *field = 0 at the end of the message. */
static int pb_key(pb_reader *r, uint32_t *field, int *wire, const char *what) {
    *field = 0;
    if (r->p >= r->end) return 0;
    size_t at = pb_off(r);
    uint64_t key;
    if (pb_varint(r, &key, what)) return -1;
    *wire = (int)(key & 7);
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return rg_error("%s: bad field number %llu in %s at byte %zu", r->name, (unsigned long long)(key >> 3),
                        what, at);
    if (*wire != WT_VARINT && *wire != WT_I64 && *wire != WT_LEN && *wire != WT_I32)
        return rg_error("%s: unsupported wire type %d in %s at byte %zu", r->name, *wire, what, at);
    *field = (uint32_t)(key >> 3);
    return 0;
}

static int pb_bytes(pb_reader *r, pb_reader *sub, const char *what) {
    uint64_t len;
    size_t at = pb_off(r);
    if (pb_varint(r, &len, what)) return -1;
    if (len > (uint64_t)(r->end - r->p))
        return rg_error("%s: %s at byte %zu is %llu bytes long but only %zu remain (truncated file?)", r->name,
                        what, at, (unsigned long long)len, (size_t)(r->end - r->p));
    *sub = (pb_reader){r->base, r->p, r->p + len, r->name};
    r->p += len;
    return 0;
}

static int pb_fixed(pb_reader *r, size_t n, uint64_t *v, const char *what) {
    if ((size_t)(r->end - r->p) < n)
        return rg_error("%s: truncated %s at byte %zu", r->name, what, pb_off(r));
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) x |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    *v = x;
    return 0;
}

static int pb_skip(pb_reader *r, int wire, const char *what) {
    uint64_t v;
    pb_reader sub;
    switch (wire) {
    case WT_VARINT: return pb_varint(r, &v, what);
    case WT_I64: return pb_fixed(r, 8, &v, what);
    case WT_LEN: return pb_bytes(r, &sub, what);
    default: return pb_fixed(r, 4, &v, what);
    }
}

static int pb_expect(const pb_reader *r, uint32_t field, int wire, int want, const char *what) {
    if (wire == want) return 0;
    return rg_error("%s: %s field %u has wire type %d, expected %d (byte %zu)", r->name, what, field, wire, want,
                    pb_off(r));
}

static char *pb_strdup(const pb_reader *s) {
    size_t n = (size_t)(s->end - s->p);
    char *c = rg_xmalloc(n + 1);
    memcpy(c, s->p, n);
    c[n] = 0;
    return c;
}

static int read_piece(rg_tokenizer *t, pb_reader *r) {
    const char *what = "a piece"; /* messages give the byte offset */
    const uint8_t *text = NULL;
    size_t len = 0;
    float score = 0;
    uint64_t type = RG_PIECE_NORMAL;
    uint32_t field;
    int wire;
    for (;;) {
        if (pb_key(r, &field, &wire, what)) return -1;
        if (!field) break;
        pb_reader s;
        uint64_t v = 0;
        switch (field) {
        case 1:
            if (pb_expect(r, field, wire, WT_LEN, what) || pb_bytes(r, &s, what)) return -1;
            text = s.p;
            len = (size_t)(s.end - s.p);
            break;
        case 2: {
            if (pb_expect(r, field, wire, WT_I32, what) || pb_fixed(r, 4, &v, what)) return -1;
            uint32_t u = (uint32_t)v;
            memcpy(&score, &u, 4);
            break;
        }
        case 3:
            if (pb_expect(r, field, wire, WT_VARINT, what) || pb_varint(r, &type, what)) return -1;
            if (type < RG_PIECE_NORMAL || type > RG_PIECE_BYTE)
                return rg_error("%s: piece %d has unknown type %llu", r->name, t->n, (unsigned long long)type);
            break;
        default:
            if (pb_skip(r, wire, what)) return -1;
        }
    }
    if (!text || !len) return rg_error("%s: piece %d has no text", r->name, t->n);
    if (t->n == INT32_MAX - 1) return rg_error("%s: too many pieces", r->name);
    rg_tok_add_piece(t, (const char *)text, len, score, (int)type);
    return 0;
}

typedef struct {
    uint64_t model_type;
    int64_t ids[4]; /* unk, bos, eos, pad: only range-checked */
    char *charsmap_name;
    size_t charsmap_len, denorm_charsmap_len;
} spec_info;

static int read_trainer_spec(rg_tokenizer *t, pb_reader *r, spec_info *info) {
    uint32_t field;
    int wire;
    for (;;) {
        if (pb_key(r, &field, &wire, "trainer_spec")) return -1;
        if (!field) return 0;
        pb_reader s;
        uint64_t v;
        if (field == 3 || field == 24 || field == 25 || field == 35 || (field >= 40 && field <= 43)) {
            if (pb_expect(r, field, wire, WT_VARINT, "trainer_spec") || pb_varint(r, &v, "trainer_spec")) return -1;
            if (field == 3) info->model_type = v;
            else if (field == 24) t->treat_whitespace_as_suffix = v != 0;
            else if (field == 25) t->split_digits = v != 0;
            else if (field == 35) t->byte_fallback = v != 0;
            else info->ids[field - 40] = (int32_t)(uint32_t)v; /* int32 on the wire: 10-byte two's complement */
        } else if (field >= 44 && field <= 48) {
            if (pb_expect(r, field, wire, WT_LEN, "trainer_spec") || pb_bytes(r, &s, "trainer_spec")) return -1;
            char **dst = field == 44 ? &t->unk_surface : &t->special_piece[field - 45];
            free(*dst);
            *dst = pb_strdup(&s);
        } else if (pb_skip(r, wire, "trainer_spec")) {
            return -1;
        }
    }
}

static int read_normalizer_spec(rg_tokenizer *t, pb_reader *r, spec_info *info, int denormalizer) {
    const char *what = denormalizer ? "denormalizer_spec" : "normalizer_spec";
    uint32_t field;
    int wire;
    for (;;) {
        if (pb_key(r, &field, &wire, what)) return -1;
        if (!field) return 0;
        pb_reader s;
        uint64_t v;
        if (field == 1 || field == 2) {
            if (pb_expect(r, field, wire, WT_LEN, what) || pb_bytes(r, &s, what)) return -1;
            if (denormalizer) {
                if (field == 2) info->denorm_charsmap_len = (size_t)(s.end - s.p);
            } else if (field == 1) {
                free(info->charsmap_name);
                info->charsmap_name = pb_strdup(&s);
            } else {
                info->charsmap_len = (size_t)(s.end - s.p);
            }
        } else if (field >= 3 && field <= 5 && !denormalizer) {
            if (pb_expect(r, field, wire, WT_VARINT, what) || pb_varint(r, &v, what)) return -1;
            if (field == 3) t->add_dummy_prefix = v != 0;
            else if (field == 4) t->remove_extra_whitespaces = v != 0;
            else t->escape_whitespaces = v != 0;
        } else if (pb_skip(r, wire, what)) {
            return -1;
        }
    }
}

int rg_tok_read_model_proto(rg_tokenizer *t, const uint8_t *data, size_t size, const char *name) {
    static const char *defaults[4] = {"<unk>", "<s>", "</s>", "<pad>"};
    for (int i = 0; i < 4; i++) t->special_piece[i] = strdup(defaults[i]);
    spec_info info = {.model_type = MODEL_UNIGRAM, .ids = {0, 1, 2, -1}};
    pb_reader r = {data, data, data + size, name};
    uint32_t field;
    int wire, rc = 0;
    for (;;) {
        if ((rc = pb_key(&r, &field, &wire, "ModelProto")) || !field) break;
        pb_reader s;
        if ((field >= 1 && field <= 3) || field == 5) {
            static const char *names[] = {"", "pieces", "trainer_spec", "normalizer_spec", "", "denormalizer_spec"};
            rc = pb_expect(&r, field, wire, WT_LEN, "ModelProto") || pb_bytes(&r, &s, names[field]) ? -1 : 0;
            if (rc) break;
            if (field == 1) rc = read_piece(t, &s);
            else if (field == 2) rc = read_trainer_spec(t, &s, &info);
            else rc = read_normalizer_spec(t, &s, &info, field == 5);
        } else {
            rc = pb_skip(&r, wire, "ModelProto");
        }
        if (rc) break;
    }
    if (!rc) {
        static const char *models[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        static const char *id_names[] = {"unk_id", "bos_id", "eos_id", "pad_id"};
        if (t->n == 0)
            rc = rg_error("%s: no pieces (not a SentencePiece model?)", name);
        else if (info.model_type != MODEL_BPE)
            rc = rg_error("%s: model type %s is not supported (only BPE; trainer_spec.model_type)", name,
                          info.model_type <= MODEL_CHAR ? models[info.model_type] : "unknown");
        else if (info.charsmap_len)
            rc = rg_error("%s: normalizer '%s' is not supported (only identity: no precompiled_charsmap)", name,
                          info.charsmap_name ? info.charsmap_name : "");
        else if (info.denorm_charsmap_len)
            rc = rg_error("%s: a denormalizer (denormalizer_spec.precompiled_charsmap) is not supported", name);
        for (int i = 0; i < 4 && !rc; i++)
            if (info.ids[i] < -1 || info.ids[i] >= t->n)
                rc = rg_error("%s: trainer_spec.%s = %lld is out of range (%d pieces)", name, id_names[i],
                              (long long)info.ids[i], t->n);
    }
    free(info.charsmap_name);
    return rc ? rc : rg_tok_finish(t, name);
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} pb_buf;

static void put_raw(pb_buf *b, const void *d, size_t n) {
    b->p = rg_grow(b->p, &b->cap, b->len + n, 1);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_varint(pb_buf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put_raw(b, tmp, n);
}

static void put_uint(pb_buf *b, uint32_t field, uint64_t v) {
    put_varint(b, (uint64_t)field << 3 | WT_VARINT);
    put_varint(b, v);
}

static void put_int32(pb_buf *b, uint32_t field, int32_t v) { put_uint(b, field, (uint64_t)(int64_t)v); }

static void put_bytes(pb_buf *b, uint32_t field, const void *d, size_t n) {
    put_varint(b, (uint64_t)field << 3 | WT_LEN);
    put_varint(b, n);
    put_raw(b, d, n);
}

static void put_float(pb_buf *b, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    put_varint(b, (uint64_t)field << 3 | WT_I32);
    put_raw(b, le, 4);
}

static void put_string(pb_buf *b, uint32_t field, const char *s) { put_bytes(b, field, s, strlen(s)); }

int rg_tok_write_model_proto(const rg_tokenizer *t, uint8_t **out, size_t *len) {
    pb_buf b = {0}, sub = {0};
    for (int32_t id = 0; id < t->n; id++) {
        sub.len = 0;
        put_bytes(&sub, 1, rg_tok_text(t, id), rg_tok_len(t, id));
        put_float(&sub, 2, t->score[id]);
        put_uint(&sub, 3, t->type[id]);
        put_bytes(&b, 1, sub.p, sub.len);
    }
    /* trainer_spec: the fields SentencePiece reads when it encodes and decodes */
    sub.len = 0;
    put_uint(&sub, 3, MODEL_BPE);
    put_int32(&sub, 4, t->n);
    put_uint(&sub, 24, (uint64_t)t->treat_whitespace_as_suffix);
    put_uint(&sub, 25, (uint64_t)t->split_digits);
    put_uint(&sub, 35, (uint64_t)t->byte_fallback);
    int32_t ids[4] = {t->unk_id, t->bos_id, t->eos_id, t->pad_id};
    for (int i = 0; i < 4; i++) put_int32(&sub, 40 + (uint32_t)i, ids[i]);
    put_string(&sub, 44, t->unk_surface);
    for (int i = 0; i < 4; i++)
        if (t->special_piece[i]) put_string(&sub, 45 + (uint32_t)i, t->special_piece[i]);
    put_bytes(&b, 2, sub.p, sub.len);
    sub.len = 0;
    put_string(&sub, 1, "identity");
    put_uint(&sub, 3, (uint64_t)t->add_dummy_prefix);
    put_uint(&sub, 4, (uint64_t)t->remove_extra_whitespaces);
    put_uint(&sub, 5, (uint64_t)t->escape_whitespaces);
    put_bytes(&b, 3, sub.p, sub.len);
    free(sub.p);
    *out = b.p;
    *len = b.len;
    return 0;
}

/* The in-memory tokenizer model: building and checking it, its indexes, and
 * loading it from a file or folder. */
#include <stdio.h>
#include <stdlib.h>
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

#define SPACE_SYMBOL "\xe2\x96\x81" /* U+2581, SentencePiece's escaped space */
#define MAX_TOKENIZER_FILE ((size_t)1 << 30)

int rg_utf8_char(const uint8_t *p, size_t n) {
    if (n == 0) return -1;
    uint8_t b = p[0];
    if (b < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b >= 0xc2 && b <= 0xdf) {
        need = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        need = 3;
        if (b == 0xe0) lo = 0xa0;       /* overlong */
        else if (b == 0xed) hi = 0x9f;  /* surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 4;
        if (b == 0xf0) lo = 0x90;       /* overlong */
        else if (b == 0xf4) hi = 0x8f;  /* above U+10FFFF */
    } else {
        return 0;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return -1;
        uint8_t c = p[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) return 0;
    }
    return need;
}

void rg_tok_init(rg_tokenizer *t) {
    memset(t, 0, sizeof *t);
    t->escape_whitespaces = 1;
    t->add_dummy_prefix = 1;
    t->remove_extra_whitespaces = 1;
    t->unk_id = t->bos_id = t->eos_id = t->pad_id = -1;
}

void rg_tok_add_piece(rg_tokenizer *t, const char *text, size_t len, float score, int type) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->off = rg_xrealloc(t->off, (size_t)(t->cap + 1) * sizeof *t->off);
        t->score = rg_xrealloc(t->score, (size_t)t->cap * sizeof *t->score);
        t->type = rg_xrealloc(t->type, (size_t)t->cap);
    }
    t->pool = rg_grow(t->pool, &t->pool_cap, t->pool_len + len + 1, 1);
    if (t->n == 0) t->off[0] = 0;
    memcpy(t->pool + t->pool_len, text, len);
    t->pool[t->pool_len + len] = 0;
    t->pool_len += len + 1;
    t->off[t->n + 1] = (uint32_t)t->pool_len;
    t->score[t->n] = score;
    t->type[t->n] = (uint8_t)type;
    t->n++;
}

void rg_tok_release(rg_tokenizer *t) {
    free(t->pool);
    free(t->off);
    free(t->score);
    free(t->type);
    free(t->unk_surface);
    for (int i = 0; i < 4; i++) free(t->special_piece[i]);
    free(t->byte_value);
    free(t->table);
    free(t->ascii_pair);
    free(t->trie);
    memset(t, 0, sizeof *t);
}

static int mergeable(int type) { return type == RG_PIECE_NORMAL || type == RG_PIECE_USER_DEFINED; }

static int trie_insert(rg_tokenizer *t, int32_t id, int32_t *cap) {
    const uint8_t *s = (const uint8_t *)rg_tok_text(t, id);
    size_t len = rg_tok_len(t, id);
    int32_t parent = -1; /* -1: the first-byte index */
    for (size_t i = 0; i < len; i++) {
        /* find s[i] among the children of parent */
        int32_t c = parent < 0 ? t->trie_root[s[0]] : t->trie[parent].child;
        while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].sibling;
        if (c < 0) {
            if (t->trie_n == *cap) {
                *cap = *cap ? 2 * *cap : 256;
                t->trie = rg_xrealloc(t->trie, (size_t)*cap * sizeof *t->trie);
            }
            c = t->trie_n++;
            int32_t *link = parent < 0 ? &t->trie_root[s[0]] : &t->trie[parent].child;
            t->trie[c] = (rg_tok_trie_node){.child = -1, .sibling = *link, .id = -1, .byte = s[i]};
            *link = c;
        }
        parent = c;
    }
    t->trie[parent].id = id;
    return 0;
}

/* Whether a mergeable piece holds a character other than U+2581 followed by U+2581. */
static int has_inner_space(const uint8_t *s, size_t len) {
    size_t i = 0;
    int prev_other = 0;
    while (i < len) {
        int l = rg_utf8_char(s + i, len - i);
        if (l <= 0) return 1; /* not reached: pieces are checked to be UTF-8 */
        int space = l == 3 && !memcmp(s + i, SPACE_SYMBOL, 3);
        if (space && prev_other) return 1;
        prev_other = !space;
        i += (size_t)l;
    }
    return 0;
}

static int32_t control_id(const rg_tokenizer *t, const char *piece) {
    if (!piece) return -1;
    int32_t id = rg_tok_lookup(t, piece, strlen(piece));
    return id >= 0 && t->type[id] == RG_PIECE_CONTROL ? id : -1;
}

/* value of an upper-case hex digit, or -1 */
static int hex_upper(uint8_t c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

int rg_tok_finish(rg_tokenizer *t, const char *name) {
    if (t->n == 0) return rg_error("%s: the model has no pieces", name);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)t->n) cap *= 2;
    t->table = malloc(cap * sizeof *t->table);
    t->byte_value = malloc((size_t)t->n * sizeof *t->byte_value);
    t->ascii_pair = malloc(128 * 128 * sizeof *t->ascii_pair);
    if (!t->table || !t->byte_value || !t->ascii_pair) return rg_error("%s: out of memory", name);
    for (uint32_t i = 0; i < cap; i++) t->table[i].id = -1;
    t->table_mask = cap - 1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1, t->trie_root[b] = -1;
    t->unk_id = -1;
    t->split_before_space = t->escape_whitespaces;
    t->max_merge_len = 0;
    int n_bytes = 0;
    int32_t trie_cap = 0;

    for (int32_t id = 0; id < t->n; id++) {
        const uint8_t *s = (const uint8_t *)rg_tok_text(t, id);
        size_t len = rg_tok_len(t, id);
        int type = t->type[id];
        t->byte_value[id] = -1;
        if (len == 0) return rg_error("%s: piece %d is empty", name, id);
        for (size_t i = 0; i < len;) {
            int l = rg_utf8_char(s + i, len - i);
            if (l <= 0) return rg_error("%s: piece %d is not valid UTF-8", name, id);
            i += (size_t)l;
        }
        if (type < RG_PIECE_NORMAL || type > RG_PIECE_BYTE)
            return rg_error("%s: piece %d '%s' has an unknown type %d", name, id, (const char *)s, type);
        if (type == RG_PIECE_UNUSED)
            return rg_error("%s: piece %d '%s' has type UNUSED, which rgemma does not support", name, id,
                            (const char *)s);

        uint64_t h = rg_tok_hash(s, len);
        uint32_t i = (uint32_t)h & t->table_mask;
        for (; t->table[i].id >= 0; i = (i + 1) & t->table_mask) {
            int32_t o = t->table[i].id;
            if (rg_tok_len(t, o) == len && !memcmp(rg_tok_text(t, o), s, len))
                return rg_error("%s: piece '%s' appears twice (ids %d and %d)", name, (const char *)s, o, id);
        }
        t->table[i] = (rg_tok_slot){.tag = (uint32_t)(h >> 32), .id = id};

        if (type == RG_PIECE_UNKNOWN) {
            if (t->unk_id >= 0)
                return rg_error("%s: two pieces of type UNKNOWN (ids %d and %d)", name, t->unk_id, id);
            t->unk_id = id;
        } else if (type == RG_PIECE_BYTE) {
            /* exactly <0xNN>, N an upper-case hex digit (sscanf's %X would also
             * take a sign or a space: "<0x-C>" gave a byte value of 2^32 - 12) */
            int hi = len == 6 ? hex_upper(s[3]) : -1, lo = len == 6 ? hex_upper(s[4]) : -1;
            if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>' || hi < 0 || lo < 0)
                return rg_error("%s: BYTE piece %d is '%s', not <0xNN>", name, id, (const char *)s);
            unsigned v = (unsigned)(hi * 16 + lo);
            t->byte_value[id] = (int16_t)v;
            t->byte_id[v] = id;
            n_bytes++;
        } else if (mergeable(type)) {
            if (len > t->max_merge_len) t->max_merge_len = len;
            if (t->split_before_space && has_inner_space(s, len)) t->split_before_space = 0;
            if (type == RG_PIECE_USER_DEFINED && trie_insert(t, id, &trie_cap)) return rg_error_prefix("%s", name);
        }
    }
    if (t->unk_id < 0) return rg_error("%s: the model has no piece of type UNKNOWN", name);
    if (n_bytes && !t->byte_fallback)
        return rg_error("%s: the model has BYTE pieces but byte_fallback is off", name);
    if (t->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return rg_error("%s: byte_fallback is on but the byte piece <0x%02X> is missing", name, b);

    for (int a = 0; a < 128; a++) {
        uint8_t pair[4] = {0xe2, 0x96, 0x81, (uint8_t)a};
        int32_t id = rg_tok_lookup(t, pair, 4);
        t->space_ascii[a] = id >= 0 && mergeable(t->type[id]) ? id : -1;
        pair[0] = (uint8_t)a;
        id = rg_tok_lookup(t, pair, 1);
        t->ascii_id[a] = id;
        for (int b = 0; b < 128; b++) {
            pair[1] = (uint8_t)b;
            id = rg_tok_lookup(t, pair, 2);
            t->ascii_pair[a * 128 + b] = id >= 0 && mergeable(t->type[id]) ? id : -1;
        }
    }
    /* control-like USER_DEFINED pieces (see rg_tok_is_special) */
    t->special_last = -1;
    t->special_after = t->n - 1;
    static const char *const turn[2] = {"<start_of_turn>", "<end_of_turn>"};
    for (int k = 0; k < 2; k++) {
        int32_t id = rg_tok_lookup(t, turn[k], strlen(turn[k]));
        if (id > t->special_last) t->special_last = id;
    }
    for (int32_t id = t->n - 1; id >= 0; id--)
        if (t->type[id] == RG_PIECE_NORMAL) {
            t->special_after = id;
            break;
        }
    /* SentencePiece finds BOS/EOS/PAD by piece name, and only CONTROL pieces count. */
    t->bos_id = control_id(t, t->special_piece[1]);
    t->eos_id = control_id(t, t->special_piece[2]);
    t->pad_id = control_id(t, t->special_piece[3]);
    if (!t->unk_surface) t->unk_surface = strdup(" \xe2\x81\x87 ");
    return 0;
}

/* ------------------------------------------------------------ public API */

static int load_json(rg_tokenizer *t, const char *path, const char *data, size_t len) {
    /* tokenizer_config.json beside tokenizer.json names the special tokens */
    char *dir = strdup(path), *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    char *cfg_path = rg_path_join(slash ? dir : ".", "tokenizer_config.json");
    char *cfg = NULL;
    size_t cfg_len = 0;
    int rc = 0;
    if (rg_file_exists(cfg_path) && rg_read_file(cfg_path, MAX_TOKENIZER_FILE, &cfg, &cfg_len)) rc = -1;
    if (!rc) rc = rg_tok_read_hf_json(t, data, len, path, cfg, cfg_len);
    free(cfg);
    free(cfg_path);
    free(dir);
    return rc;
}

int rg_tokenizer_load(const char *path, rg_tokenizer **out) {
    *out = NULL;
    char *file = NULL;
    if (rg_is_dir(path)) {
        file = rg_path_join(path, "tokenizer.model");
        if (!rg_file_exists(file)) {
            free(file);
            file = rg_path_join(path, "tokenizer.json");
            if (!rg_file_exists(file)) {
                free(file);
                return rg_error("%s: folder has neither tokenizer.model nor tokenizer.json", path);
            }
        }
    } else {
        file = strdup(path);
    }
    rg_mapped_file mf;
    if (rg_map_file(file, &mf)) {
        free(file);
        return -1;
    }
    if (mf.size >= 4 && !memcmp(mf.data, "GGUF", 4)) { /* the tokenizer inside a GGUF model file */
        rg_unmap_file(&mf);
        int rc = rg_tokenizer_load_gguf(file, out);
        free(file);
        return rc;
    }
    rg_tokenizer *t = rg_xmalloc(sizeof *t);
    rg_tok_init(t);
    /* A ModelProto starts with field 1 (pieces) as bytes: 0x0a. JSON starts with '{'. */
    size_t i = 0;
    while (i < mf.size && (mf.data[i] == ' ' || mf.data[i] == '\n' || mf.data[i] == '\r' || mf.data[i] == '\t')) i++;
    int rc;
    if (i < mf.size && mf.data[i] == '{')
        rc = load_json(t, file, (const char *)mf.data, mf.size);
    else
        rc = rg_tok_read_model_proto(t, mf.data, mf.size, file);
    rg_unmap_file(&mf);
    free(file);
    if (rc) {
        rg_tok_release(t);
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void rg_tokenizer_free(rg_tokenizer *t) {
    if (!t) return;
    rg_tok_release(t);
    free(t);
}

int rg_tokenizer_vocab_size(const rg_tokenizer *t) { return t->n; }

int rg_tokenizer_check_vocab(const rg_tokenizer *t, int vocab_size) {
    if (t->n == vocab_size) return 0;
    /* rows past the tokenizer's, up to the next multiple of 128: padding some
     * exporters add to the embedding (never produced from text, never sampled
     * in practice) */
    if (vocab_size > t->n && vocab_size == (t->n + 127) / 128 * 128) return 0;
    if (t->n > vocab_size)
        return rg_error("the tokenizer has %d pieces but the model's vocab_size is %d: ids past %d have no "
                        "embedding (wrong tokenizer?)", t->n, vocab_size, vocab_size - 1);
    return rg_error("the tokenizer has %d pieces but the model's vocab_size is %d: the model could generate ids "
                    "%d..%d that have no text (wrong tokenizer?)", t->n, vocab_size, t->n, vocab_size - 1);
}
int rg_tokenizer_bos(const rg_tokenizer *t) { return t->bos_id; }
int rg_tokenizer_eos(const rg_tokenizer *t) { return t->eos_id; }

int32_t rg_tokenizer_piece_id(const rg_tokenizer *t, const char *piece) {
    return rg_tok_lookup(t, piece, strlen(piece));
}

const char *rg_tokenizer_piece(const rg_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n ? rg_tok_text(t, id) : NULL;
}

int rg_tokenizer_save_model(const rg_tokenizer *t, const char *path) {
    uint8_t *buf;
    size_t len;
    if (rg_tok_write_model_proto(t, &buf, &len)) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return rg_error("%s: cannot create", path);
    }
    int ok = fwrite(buf, 1, len, f) == len;
    ok &= fclose(f) == 0;
    free(buf);
    return ok ? 0 : rg_error("%s: write error", path);
}

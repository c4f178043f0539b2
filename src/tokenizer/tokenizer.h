/* Internal view of the tokenizer: the in-memory SentencePiece BPE model that
 * the tokenizer.model reader and the tokenizer.json loader both build, and the
 * indexes the encoder and decoder use. */
#ifndef RG_TOKENIZER_H
#define RG_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "formats/gguf.h"
#include "rgemma.h"

/* SentencePiece's ModelProto.SentencePiece.Type values. */
enum {
    RG_PIECE_NORMAL = 1,
    RG_PIECE_UNKNOWN = 2,
    RG_PIECE_CONTROL = 3,
    RG_PIECE_USER_DEFINED = 4,
    RG_PIECE_UNUSED = 5,
    RG_PIECE_BYTE = 6
};

/* One entry of the piece hash table (open addressing, linear probing). */
typedef struct {
    uint32_t tag; /* high 32 bits of the hash */
    int32_t id;   /* -1 = empty slot */
} rg_tok_slot;

/* Trie over the bytes of the USER_DEFINED pieces, for longest-prefix match. */
typedef struct {
    int32_t child;   /* first child node, -1 if none */
    int32_t sibling; /* next sibling node, -1 if none */
    int32_t id;      /* piece id ending here, -1 if none */
    uint8_t byte;
} rg_tok_trie_node;

struct rg_tokenizer {
    /* pieces: text i is pool[off[i]] .. pool[off[i+1]-2], NUL-terminated */
    int32_t n;
    char *pool;
    size_t pool_len, pool_cap;
    uint32_t *off;
    float *score;
    uint8_t *type;
    int32_t cap; /* allocated entries of off (cap + 1), score, type */

    /* settings (SentencePiece TrainerSpec / NormalizerSpec) */
    int byte_fallback;
    int split_digits;              /* training-only: BPE encoding does not use it */
    int add_dummy_prefix;
    int remove_extra_whitespaces;
    int escape_whitespaces;
    int treat_whitespace_as_suffix; /* the dummy U+2581 goes at the end (decoding is unchanged) */
    char *unk_surface;             /* decoding of the UNKNOWN piece, default " \u2047 " */
    char *special_piece[4];        /* unk, bos, eos, pad piece names (may be NULL) */

    /* derived by rg_tok_finish() */
    int32_t unk_id, bos_id, eos_id, pad_id;
    int32_t byte_id[256];   /* id of <0xNN> */
    int16_t *byte_value;    /* per id: the byte of a BYTE piece, else -1 */
    rg_tok_slot *table;
    uint32_t table_mask;
    int32_t ascii_id[128];  /* id of each one-byte character piece, -1 if none */
    int32_t *ascii_pair;    /* [128*128]: mergeable piece of two ASCII bytes, -1 if none */
    int32_t space_ascii[128]; /* mergeable piece U+2581 + one ASCII byte, -1 if none */
    rg_tok_trie_node *trie;
    int32_t trie_n;
    int32_t trie_root[256]; /* first-byte index of the trie, -1 if none */
    size_t max_merge_len;   /* longest NORMAL / USER_DEFINED piece in bytes */
    /* No mergeable piece contains a non-U+2581 character followed by U+2581, so
     * no merge crosses such a boundary and BPE can run on each part alone. */
    int split_before_space;
    /* Control-like USER_DEFINED pieces (rg_tok_is_special): those up to the
     * last chat turn marker (<start_of_turn>, <end_of_turn>), and the <...>
     * ones after every NORMAL piece. Gemma: ids 4-107 (<mask>, <2mass>,
     * [@BOS@], <unused0..98>, the turn markers) and 255999 (<start_of_image>);
     * its whitespace runs and HTML tags (108-216) and tab runs (255968-255998)
     * are text. */
    int32_t special_last, special_after;
};

/* A piece that text from a user must not produce when special pieces are
 * not parsed (rg_tokenize_ex with parse_special = 0). CONTROL pieces are never
 * produced from text at all. */
static inline int rg_tok_is_special(const struct rg_tokenizer *t, int32_t id) {
    if (t->type[id] != RG_PIECE_USER_DEFINED) return 0;
    if (id <= t->special_last) return 1;
    if (id <= t->special_after) return 0;
    const char *s = t->pool + t->off[id];
    size_t n = t->off[id + 1] - t->off[id] - 1;
    return n > 2 && s[0] == '<' && s[n - 1] == '>';
}

/* Builder, used by the loaders: add pieces in id order, then finish. */
void rg_tok_init(rg_tokenizer *t);
void rg_tok_add_piece(rg_tokenizer *t, const char *text, size_t len, float score, int type);
/* Validate the model (name is used in messages) and build the indexes. */
int rg_tok_finish(rg_tokenizer *t, const char *name);
void rg_tok_release(rg_tokenizer *t); /* free what rg_tok_init/add/finish allocated */

static inline const char *rg_tok_text(const rg_tokenizer *t, int32_t id) { return t->pool + t->off[id]; }
static inline size_t rg_tok_len(const rg_tokenizer *t, int32_t id) { return t->off[id + 1] - t->off[id] - 1; }

/* Hash of a byte string (a few multiply-xor rounds, 8 bytes at a time). */
static inline uint64_t rg_tok_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 31;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    return h ^ (h >> 29);
}

/* Id of the piece with exactly these bytes, or -1. */
static inline int32_t rg_tok_lookup(const rg_tokenizer *t, const void *s, size_t len) {
    uint64_t h = rg_tok_hash(s, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & t->table_mask;; i = (i + 1) & t->table_mask) {
        const rg_tok_slot *e = &t->table[i];
        if (e->id < 0) return -1;
        if (e->tag == tag && rg_tok_len(t, e->id) == len && !memcmp(rg_tok_text(t, e->id), s, len))
            return e->id;
    }
}

/* Loaders: fill an rg_tok_init'ed model and finish it. */
int rg_tok_read_model_proto(rg_tokenizer *t, const uint8_t *data, size_t size, const char *name);
int rg_tok_read_hf_json(rg_tokenizer *t, const char *json, size_t len, const char *name,
                        const char *config_json, size_t config_len);
/* Serialise the model as a SentencePiece ModelProto into a malloc'd buffer. */
int rg_tok_write_model_proto(const rg_tokenizer *t, uint8_t **out, size_t *len);
/* The model as tokenizer.ggml.* keys of a GGUF file (tokenizer/gguf_tokenizer.c),
 * and back: rg_tokenizer_load() calls rg_tokenizer_load_gguf() for a GGUF file. */
void rg_gguf_w_tokenizer(rg_gguf_writer *w, const rg_tokenizer *t);
int rg_tokenizer_load_gguf(const char *path, rg_tokenizer **out);

/* Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF), as
 * SentencePiece checks it: length of the character at p (1..4), 0 if the
 * bytes are not a valid character, or -1 if they are a valid but incomplete
 * start of one (only when n is too short). */
int rg_utf8_char(const uint8_t *p, size_t n);

#endif

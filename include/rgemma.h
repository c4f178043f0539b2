/*
 * rgemma — RecurrentGemma (Griffin) inference in C.
 *
 * The one public header of librgemma. Conventions:
 *   - Functions returning int return 0 on success and -1 on failure; the
 *     failure's message (naming the file, field or offset) is then available
 *     from rg_last_error() in the same thread.
 *   - Objects are created by *_new / *_load and released by *_free (NULL-safe).
 *   - Token ids are int32_t.
 */
#ifndef RGEMMA_H
#define RGEMMA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header. rg_version() gives the loaded library's: a
 * program linked against librgemma.so can compare the two. The Makefile reads
 * these three numbers for the shared library's file name and soname. */
#define RG_VERSION_MAJOR 0
#define RG_VERSION_MINOR 1
#define RG_VERSION_PATCH 0
#define RG_VERSION_STR_(x) #x
#define RG_VERSION_STR(x) RG_VERSION_STR_(x)
#define RG_VERSION                                                                                                     \
    RG_VERSION_STR(RG_VERSION_MAJOR) "." RG_VERSION_STR(RG_VERSION_MINOR) "." RG_VERSION_STR(RG_VERSION_PATCH)

/* Marks the functions of this header: the only symbols librgemma.so exports
 * (the library is compiled with -fvisibility=hidden). */
#if defined(__GNUC__) || defined(__clang__)
#define RG_API __attribute__((visibility("default")))
#else
#define RG_API
#endif

/* The library's version, RG_VERSION as it was when the library was built. */
RG_API const char *rg_version(void);

/* ------------------------------------------------------------------ errors */

/* Message of the last failure in this thread ("" if none). */
RG_API const char *rg_last_error(void);

/* ------------------------------------------------------------------ config */

typedef enum { RG_LAYER_RECURRENT = 0, RG_LAYER_ATTENTION = 1 } rg_layer_type;

#define RG_MAX_PATTERN 16

typedef struct {
    int vocab_size;        /* V */
    int hidden_size;       /* D */
    int lru_width;         /* R (config null -> D) */
    int num_heads;         /* H: attention heads and RG-LRU gate blocks */
    int head_dim;          /* hd */
    int num_kv_heads;      /* always 1 (multi-query attention) */
    int mlp_width;         /* F = intermediate_size / 2 (one MLP branch) */
    int num_layers;        /* Nl */
    int window;            /* W: token t attends to t-W..t */
    int conv_width;        /* K */
    float logits_soft_cap; /* 0 = no cap */
    float rms_norm_eps;
    float rope_theta;
    float partial_rotary_factor; /* fraction of head dims that rotate (0.5) */
    float embed_scale;     /* bf16(sqrt(D)), or 1 when embeddings are not scaled */
    int bos_id, eos_id, pad_id;
    int pattern_len;
    rg_layer_type pattern[RG_MAX_PATTERN]; /* layer i has type pattern[i % pattern_len] */
} rg_config;

/* Parse a Hugging Face config.json (text of length len; name is used in
 * error messages). Validates every architectural key. */
RG_API int rg_config_parse(const char *json, size_t len, const char *name, rg_config *cfg);
RG_API int rg_config_load(const char *path, rg_config *cfg);
RG_API rg_layer_type rg_config_layer_type(const rg_config *cfg, int layer);
/* A 64-bit fingerprint of the architectural fields (for state files). */
RG_API uint64_t rg_config_fingerprint(const rg_config *cfg);

/* ------------------------------------------------------------------- model */

typedef struct rg_model rg_model;

/* Load a model from a Hugging Face folder (config.json + model.safetensors
 * or sharded model-*-of-*.safetensors + model.safetensors.index.json), or a
 * single safetensors file with config.json beside it, or a .gguf file.
 * Weights are memory-mapped. */
RG_API int rg_model_load(const char *path, rg_model **out);
RG_API void rg_model_free(rg_model *m);
RG_API const rg_config *rg_model_config(const rg_model *m);
/* Bytes of weights read per decoded token (for roofline reports). */
RG_API size_t rg_model_weight_bytes(const rg_model *m);
/* Apply LoRA adapters (what `rgemma train --lora` writes: a folder with
 * adapter_model.safetensors and adapter_config.json, or that .safetensors
 * file with the config beside it): each adapted matrix becomes
 * W + (lora_alpha / r) B A (lora_alpha / sqrt(r) where the config has
 * PEFT's "use_rslora": true), merged in memory and stored in W's own type
 * (F32, BF16 or F16; quantised weights are refused: merge into a float
 * checkpoint with `rgemma train --lora-merge`, then quantise). Tensors are
 * named "<matrix name without .weight>.lora_A.weight" [r, in] and
 * ".lora_B.weight" [out, r] (a "base_model.model." prefix, as PEFT
 * writes, is accepted). Everything is checked before any weight changes:
 * an adapter of another shape or model is refused, naming the file and
 * tensor. */
RG_API int rg_model_apply_lora(rg_model *m, const char *path);

/* ---------------------------------------------------------------- quantize */

typedef struct {
    /* "f32", "bf16", "q8_0", "q4_0", "q4_k", "q6_k": type of the projection
     * matrices; or "q4_k_m", a mix: q4_k with the embedding and the kinds of
     * matrix that measured most sensitive in q6_k (README "Quantized models") */
    const char *type;
    const char *embed_type; /* the tied embedding/logit matrix; NULL = the default for type */
    /* NULL, or "KIND=TYPE[,KIND=TYPE...]": the tensors whose name contains
     * ".KIND." ("down_proj", "embed_tokens", "layers.3.mlp_block") get TYPE,
     * over type, embed_type and the mix (the last match wins) */
    const char *tensor_types;
    /* Called when each tensor starts (done = bytes of tensor data written so
     * far, of total) and once at the end with tensor NULL. why is NULL when the
     * tensor gets the requested type, else the reason it is kept in another. */
    void (*progress)(void *ctx, const char *tensor, const char *type, const char *why, uint64_t done,
                     uint64_t total);
    void *progress_ctx;
} rg_quantize_params;

RG_API void rg_quantize_params_default(rg_quantize_params *p);
/* Write the checkpoint at in_path (a Hugging Face folder or safetensors file)
 * as a GGUF v3 file: the config as metadata, the folder's tokenizer (if any),
 * the tensors converted one at a time. */
RG_API int rg_quantize(const char *in_path, const char *out_path, const rg_quantize_params *p);

/* How far model m's next-token distributions are from ref's over the same
 * tokens: the tokens are cut into sequences of seq_len, each run from
 * position 0. KL(p_ref || p_m) in nats. */
typedef struct {
    int64_t positions;
    double mean_kl, max_kl;
    double top1_agreement; /* fraction of positions with the same argmax */
    double max_abs_logit_diff;
} rg_divergence;
RG_API int rg_model_divergence(const rg_model *ref, const rg_model *m, const int32_t *tokens, int n_tokens, int seq_len,
                               rg_divergence *out);

/* ------------------------------------------------------------------- state */

/* One sequence's whole memory: conv state, RG-LRU state (float32) and the
 * KV ring buffer of W slots per attention layer, plus the position. Its size
 * depends on the config and the window's element type only. */
typedef struct rg_state rg_state;

/* The element type of the attention windows ("KV cache") of the states
 * rg_state_new(m) makes from now on: "f32" (the default: the reference's
 * numbers exactly), "f16" (IEEE half, keys and values rounded to nearest
 * even: half the window's memory, and half the bytes each decode step reads
 * at depth, for a relative rounding of 2^-11 on keys and values) or "q8_0"
 * (ggml's Q8_0 blocks of 32: 8.5 bits an element, 27% of f32's bytes, keys
 * and values within 1/254 of their block's largest magnitude; the scores
 * are then int8 dot products where the kernels have them, the queries
 * rounded to Q8_0 as activations are for Q8_0 weights; only for a head
 * dimension that is a multiple of 32). A setting of the model, not an
 * argument of rg_state_new, so that every place that makes states from a
 * model (server slots and caches, eval, perplexity) follows it unchanged;
 * states already made keep their type. Any other name is refused (-1).
 * rg_model_kv_type gives the name in use ("f32", "f16", "q8_0"). */
RG_API int rg_model_set_kv_type(rg_model *m, const char *type);
RG_API const char *rg_model_kv_type(const rg_model *m);
RG_API rg_state *rg_state_new(const rg_model *m);
RG_API void rg_state_free(rg_state *s);
RG_API void rg_state_reset(rg_state *s);
/* dst and src must belong to models with the same config. */
RG_API int rg_state_copy(rg_state *dst, const rg_state *src);
/* Bytes of a state with float32 windows (the default); rg_model_state_bytes:
 * of what rg_state_new(m) makes now (the model's window type). */
RG_API size_t rg_state_bytes(const rg_config *cfg);
RG_API size_t rg_model_state_bytes(const rg_model *m);
RG_API int64_t rg_state_pos(const rg_state *s);
/* State files: versioned header, config fingerprint, window type, position,
 * checksum. Loading refuses a file of another config, version or window
 * type (f16 into an f32 state or back), or a corrupt one. */
RG_API int rg_state_save(const rg_state *s, const char *path);
RG_API int rg_state_load(rg_state *s, const char *path);
/* The same, also carrying up to RG_STATE_MAX_PENDING ids that belong to the
 * sequence but are not processed yet (rg_generate's next_token). pending
 * (load): room for RG_STATE_MAX_PENDING ids, or NULL. The state is changed
 * only when the whole file checks out. */
#define RG_STATE_MAX_PENDING 16
RG_API int rg_state_save_pending(const rg_state *s, const int32_t *pending, int n_pending, const char *path);
RG_API int rg_state_load_pending(rg_state *s, const char *path, int32_t *pending, int *n_pending);
/* Size of a state file: constant for a config, with float32 windows (the
 * largest); rg_model_state_file_bytes: with the model's window type. */
RG_API size_t rg_state_file_bytes(const rg_config *cfg);
RG_API size_t rg_model_state_file_bytes(const rg_model *m);

/* --------------------------------------------------------------- forward */

/* Process n >= 1 tokens at positions pos..pos+n-1 of the state's sequence
 * (a batched prefill when n > 1), advancing the state.
 * logits: NULL, or room for n*V floats when all_logits != 0, or for V floats
 * (the last token's logits) when all_logits == 0. */
RG_API int rg_forward(const rg_model *m, rg_state *s, const int32_t *tokens, int n, float *logits, int all_logits);

/* One sequence's part of a batched step (rg_forward_batch). */
typedef struct {
    rg_state *state;       /* a state appears at most once in one call */
    const int32_t *tokens; /* n_tokens >= 1 new tokens, at positions pos..pos+n_tokens-1 of the state */
    int n_tokens;
    float *logits;         /* NULL, or room for n_tokens*V floats when all_logits != 0, or for V floats
                              (the last token's logits) when all_logits == 0 */
    int all_logits;
} rg_batch_seq;

/* Advance several independent sequences at once: the same results as
 * rg_forward on each (up to float rounding of the matrix kernels), but the
 * rows of all sequences go through every weight matrix together, so each
 * weight is read once per step of up to 256 rows instead of once per
 * sequence. Decode rows (n_tokens = 1) and prompt chunks mix freely; the
 * conv, RG-LRU and attention window stay per state. Nothing is changed when
 * the call is refused (a state passed twice, an id out of range, ...). */
RG_API int rg_forward_batch(const rg_model *m, const rg_batch_seq *seqs, int n_seqs);

/* Number of worker threads used by the kernels (default: all cores). */
RG_API void rg_set_threads(int n);
RG_API int rg_get_threads(void);

/* Kernel path: "auto", "scalar", and "avx2", "avx512", "amx" (avx512 with
 * AMX tile multiplies for Q8_0/Q4_0 steps of 16 tokens or more) on x86-64
 * or "neon", "neon-dotprod" on arm64. Also settable with the environment variable
 * RGEMMA_KERNEL. Returns -1 if the CPU lacks it or the build has no such
 * path. */
RG_API int rg_set_kernel_path(const char *name);
RG_API const char *rg_kernel_path(void);

/* --------------------------------------------------------------- tokenizer */

typedef struct rg_tokenizer rg_tokenizer;

/* path: a tokenizer.model (SentencePiece protobuf), a tokenizer.json (HF), a
 * folder holding one of them (tokenizer.model preferred), or a .gguf model file
 * with the tokenizer inside (written by rg_quantize). Returns -2 (not -1) when
 * a .gguf file is sound but holds no tokenizer. */
RG_API int rg_tokenizer_load(const char *path, rg_tokenizer **out);
/* The tokenizer of a model, given the path rg_model_load takes: the one
 * inside a .gguf file (written by rg_quantize), else the tokenizer.model or
 * tokenizer.json (tokenizer.model preferred) in the model's folder, or in the
 * folder of a model file. Returns 0 (*out set), -2 when there is none (*out
 * NULL; rg_last_error says where it looked), or -1 when there is one and it
 * cannot be loaded. */
RG_API int rg_tokenizer_find(const char *model_path, rg_tokenizer **out);
/* 0 when the tokenizer fits a model of vocab_size rows: the same size, or the
 * model's rows padded to the next multiple of 128; else -1 and an error naming
 * both sizes. */
RG_API int rg_tokenizer_check_vocab(const rg_tokenizer *t, int vocab_size);
RG_API void rg_tokenizer_free(rg_tokenizer *t);
RG_API int rg_tokenizer_vocab_size(const rg_tokenizer *t);
RG_API int rg_tokenizer_bos(const rg_tokenizer *t);
RG_API int rg_tokenizer_eos(const rg_tokenizer *t);
/* Id of a piece given as text (e.g. "<end_of_turn>"), or -1. */
RG_API int32_t rg_tokenizer_piece_id(const rg_tokenizer *t, const char *piece);
/* The piece text of an id (as stored, with U+2581 for spaces), or NULL. */
RG_API const char *rg_tokenizer_piece(const rg_tokenizer *t, int32_t id);

/* Encode len bytes of text (may contain NUL). *ids is malloc'd; free() it. */
RG_API int rg_tokenize(const rg_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos, int32_t **ids,
                       size_t *n_ids);
/* rg_tokenize with a choice for the control-like pieces (Gemma's <start_of_turn>,
 * <end_of_turn>, <unusedN>, <mask>, ...): parse_special != 0 matches them when
 * the text spells them (as rg_tokenize does: for prompts whose author writes
 * the template), 0 encodes their spelling as plain text (for text that comes
 * from a user, so that it cannot forge a turn). */
RG_API int rg_tokenize_ex(const rg_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                          int parse_special, int32_t **ids, size_t *n_ids);
/* Decode ids to text. *text is malloc'd and NUL-terminated; *len excludes the NUL. */
RG_API int rg_detokenize(const rg_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len);

/* Streaming decoder: feed ids as they are generated; each call returns the
 * text that became complete (never half of a UTF-8 character). */
typedef struct rg_detok_stream rg_detok_stream;
RG_API rg_detok_stream *rg_detok_stream_new(const rg_tokenizer *t);
RG_API void rg_detok_stream_free(rg_detok_stream *s);
/* Returns a pointer to *len bytes owned by the stream, valid until the next
 * call, or NULL if id is out of range. */
RG_API const char *rg_detok_stream_push(rg_detok_stream *s, int32_t id, size_t *len);
/* Flush what is pending at the end (incomplete bytes become U+FFFD). */
RG_API const char *rg_detok_stream_flush(rg_detok_stream *s, size_t *len);

/* Write the tokenizer as a SentencePiece tokenizer.model (ModelProto), e.g.
 * to turn a tokenizer.json into the tokenizer.model it stands for. */
RG_API int rg_tokenizer_save_model(const rg_tokenizer *t, const char *path);

/* JSON Lines for `rgemma tokenize --jsonl` and the tokenizer's golden files:
 * strings may hold U+0000 (lengths are kept). The value of a top-level key of
 * the object in line[0..len): 1 = found (*out is malloc'd; a string is also
 * NUL-terminated and *n is its length in bytes), 0 = key absent, -1 =
 * malformed line or wrong value type (rg_last_error). */
RG_API int rg_jsonl_string(const char *line, size_t len, const char *key, char **out, size_t *n);
RG_API int rg_jsonl_ints(const char *line, size_t len, const char *key, int32_t **out, size_t *n);
/* Write s[0..n) to f as a JSON string (quotes included), escaped like the
 * golden files: Python's json.dumps(ensure_ascii=False), plus U+0085, U+2028,
 * U+2029 and U+FEFF as \u escapes. */
RG_API void rg_json_write_string(FILE *f, const char *s, size_t n);

/* ---------------------------------------------------------------- sampling */

typedef struct {
    float temperature;       /* 0 = greedy (default 0.8) */
    int top_k;               /* 0 = off (default 40) */
    float top_p;             /* 1 = off (default 0.95) */
    float min_p;             /* 0 = off (default 0.05) */
    float repeat_penalty;    /* 1 = off (default 1.0) */
    int repeat_last_n;       /* tokens the penalties look back over (default 64; -1 = all) */
    float presence_penalty;  /* 0 = off */
    float frequency_penalty; /* 0 = off */
    uint64_t seed;           /* default: 0xFFFFFFFF = random */
} rg_sampling_params;

#define RG_SEED_RANDOM 0xFFFFFFFFu

/* llama.cpp's defaults (listed above). Semantics: see src/sampling/sampler.c;
 * the chain is penalties -> top-k -> top-p -> min-p -> temperature -> draw,
 * and temperature <= 0 means greedy (argmax after the penalties). */
RG_API void rg_sampling_params_default(rg_sampling_params *p);

typedef struct rg_sampler rg_sampler;
/* NULL (with rg_last_error) on invalid parameters. */
RG_API rg_sampler *rg_sampler_new(const rg_sampling_params *p, int vocab_size);
/* The seed in use (drawn from /dev/urandom when the params said RG_SEED_RANDOM). */
RG_API uint64_t rg_sampler_seed(const rg_sampler *s);
RG_API void rg_sampler_free(rg_sampler *s);
/* Pick the next token from logits (length vocab_size; modified in place). */
RG_API int32_t rg_sampler_sample(rg_sampler *s, float *logits);
/* Record a token as part of the history the penalties look at. */
RG_API void rg_sampler_accept(rg_sampler *s, int32_t token);
/* Forget the history and restart the random stream from the seed. */
RG_API void rg_sampler_reset(rg_sampler *s);

/* -------------------------------------------------------------- generation */

typedef enum {
    RG_STOP_NONE = 0,
    RG_STOP_EOS,        /* EOS or another end-of-turn id in stop_ids */
    RG_STOP_STRING,     /* a stop string appeared (it is not emitted) */
    RG_STOP_LENGTH,     /* max_tokens reached */
    RG_STOP_CALLBACK,   /* the callback asked to stop (e.g. Ctrl-C, client gone) */
    RG_STOP_ERROR
} rg_stop_reason;

typedef struct {
    int max_tokens;                 /* < 0: no limit other than stops (default -1) */
    const char *const *stop;        /* stop strings (need a tokenizer) */
    int n_stop;
    const int32_t *stop_ids;        /* ids that end generation besides EOS (e.g. <end_of_turn>) */
    int n_stop_ids;
    rg_sampling_params sampling;
    int ignore_eos;                 /* non-zero: EOS does not stop (stop_ids still do) */
    const volatile int *cancel;     /* if non-NULL and *cancel becomes non-zero (e.g. from a signal
                                       handler), generation stops: RG_STOP_CALLBACK */
    const int32_t *history;         /* ids of the sequence before the prompt, already in the state (e.g. a
                                       shared prefix processed once): the penalties see them as if they
                                       had been the prompt's first ids; they are not processed (default
                                       NULL, n_history 0: none) */
    int n_history;
} rg_generate_params;

RG_API void rg_generate_params_default(rg_generate_params *p);

/* Called for each generated token that is part of the output (not for the
 * EOS / stop id that ends it) with the text that became complete: never half
 * of a UTF-8 character, never text that could still turn out to start a stop
 * string (that is held back until it cannot). Called once more at the end
 * with token -1 and the text still held (empty after a stop string), except
 * after a stop by callback, cancel or error. text is NULL when there is no
 * tokenizer. Return non-zero to stop. */
typedef int (*rg_token_cb)(void *ctx, int32_t token, const char *text, size_t len);

typedef struct {
    int prompt_tokens, generated_tokens; /* generated counts every sampled token, EOS included */
    double prompt_seconds, generate_seconds;
    rg_stop_reason stop_reason;
    /* The last sampled token (or -1 if none): it is part of the sequence but
     * NOT yet processed by the state (its logits were never needed). A later
     * call that continues the sequence passes it first in its prompt. */
    int32_t next_token;
    uint64_t seed; /* the sampler's seed (the drawn one when sampling.seed was RG_SEED_RANDOM) */
} rg_generate_result;

/* Continue the sequence in state s: process the prompt ids (batched prefill,
 * n_prompt >= 1), then sample until a stop. The state then holds the prompt
 * and every generated token but the last (res->next_token), so a later call
 * continues the same sequence with prompt = {next_token, new ids...}.
 * Penalties look at p->history, the prompt and the generated tokens of this call.
 * t may be NULL (ids only; no stop strings). Returns -1 on error. */
RG_API int rg_generate(const rg_model *m, const rg_tokenizer *t, rg_state *s, const int32_t *prompt, int n_prompt,
                       const rg_generate_params *p, rg_token_cb cb, void *ctx, rg_generate_result *res);

/* The same generation one step at a time, for callers that run many
 * sequences together (a server's slots, N samples of one prompt): each
 * rg_seq_step is one rg_forward_batch over all the sequences given, so the
 * weights are read once per step for all of them. A sequence prefills its
 * prompt (up to the step's prompt budget), then samples one token per step;
 * it calls cb exactly as rg_generate does. rg_generate(...) is
 * rg_seq_new + rg_seq_step until rg_seq_done + rg_seq_result.
 * p (and the arrays it points to), t, s and ctx must outlive the sequence. */
typedef struct rg_seq rg_seq;
/* NULL (with rg_last_error) on a bad prompt or bad parameters. */
RG_API rg_seq *rg_seq_new(const rg_model *m, const rg_tokenizer *t, rg_state *s, const int32_t *prompt, int n_prompt,
                          const rg_generate_params *p, rg_token_cb cb, void *ctx);
/* One step over the sequences not yet done (all of one model). Each
 * decoding sequence brings its one token; prompt tokens are given to the
 * prefilling sequences in order, prompt_budget in all (<= 0: no limit).
 * Returns -1 if the step could not run (then every sequence in it ends with
 * RG_STOP_ERROR). A sequence can also end alone with RG_STOP_ERROR (e.g.
 * non-finite logits): see rg_seq_error. */
RG_API int rg_seq_step(rg_seq *const *seqs, int n, int prompt_budget);
RG_API int rg_seq_done(const rg_seq *q);
/* End the sequence at its next step (RG_STOP_CALLBACK, no final callback). */
RG_API void rg_seq_stop(rg_seq *q);
RG_API const rg_generate_result *rg_seq_result(const rg_seq *q);
/* Why the sequence ended with RG_STOP_ERROR ("" otherwise). */
RG_API const char *rg_seq_error(const rg_seq *q);
RG_API void rg_seq_free(rg_seq *q);

/* Gemma chat format: the ids of one user turn,
 *   [BOS] <start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n
 * BOS only when first != 0 (an empty state). Otherwise the ids first close the
 * previous model reply: they start with pending (the previous result's
 * next_token, if >= 0), then "\n" when pending is <end_of_turn>, else
 * "<end_of_turn>\n" (the reply was cut off). system (may be NULL) is folded
 * into the first user turn: Gemma has no system role. *ids is malloc'd. */
RG_API int rg_chat_turn(const rg_tokenizer *t, const char *system, const char *text, int first, int32_t pending,
                        int32_t **ids, size_t *n_ids);
/* rg_chat_turn encodes system and text with special pieces as plain text
 * (rg_tokenize_ex, parse_special = 0): only the template places turn markers.
 * This variant lets the caller choose (parse_special != 0: a trusted author). */
RG_API int rg_chat_turn_ex(const rg_tokenizer *t, const char *system, const char *text, int first, int32_t pending,
                           int parse_special, int32_t **ids, size_t *n_ids);

/* ------------------------------------------------------------------ server */

/* An OpenAI-compatible HTTP server on libmicrohttpd (src/server/). Endpoints:
 * POST /v1/chat/completions, POST /v1/completions (JSON or SSE streams),
 * GET /v1/models, GET /health, GET /ready, POST /tokenize, POST /detokenize,
 * GET /metrics (Prometheus text). */
typedef struct {
    const char *host;        /* address to bind (numeric or a name); default 127.0.0.1 */
    int port;                /* 0: any free port (see rg_server_port) */
    int n_slots;             /* requests processed at once */
    int threads;             /* kernel threads of the batched steps over all slots */
    int prefill_chunk;       /* prompt tokens per step (0: adaptive: a full chunk while no slot
                              * decodes, else max(16, decoding slots)) */
    int queue_max;           /* requests that may wait for a slot; more get 503 */
    double timeout_s;        /* a request's limit from arrival to its last token */
    int cache_states;        /* conversation states kept (0 = no state cache) */
    size_t max_body;         /* largest request body in bytes; more get 413 */
    int max_tokens;          /* largest max_tokens a request may ask for, and its default */
    const char *model_name;  /* the id in /v1/models and the accepted "model" field */
    int verbose;             /* one line per request on stderr: status, tokens, duration */
    int header_timeout_s;    /* a client's time to send a request's headers and body, and to stay
                              * idle between requests (a request being answered has --timeout) */
    int max_connections;     /* connections open at once */
    int max_conn_per_ip;     /* connections from one address (0 = no limit) */
    const char *cors_origin; /* NULL: no CORS; else the Access-Control-Allow-Origin
                              * value ("*" or an origin), and OPTIONS preflights
                              * are answered */
    const char *state_store; /* NULL: none; else redis://HOST:PORT[/DB], where conversation
                              * states are shared with other replicas (below the local cache) */
    int state_ttl_s;         /* seconds a state stays in the store (default 3600) */
} rg_server_opts;

RG_API void rg_server_opts_default(rg_server_opts *o);

typedef struct rg_server rg_server;

/* Start listening and serving in background threads. The model and the
 * tokenizer must outlive the server. rg_server_listen + rg_server_attach. */
RG_API int rg_server_start(const rg_model *m, const rg_tokenizer *t, const rg_server_opts *o, rg_server **out);
/* The same in two steps, so that a load balancer sees the server while its
 * model loads: listen answers GET /health (200, "loading": alive) and GET
 * /ready (503: not ready), every other request 503; attach (the model
 * loaded) makes it serve and /ready answer 200. */
RG_API int rg_server_listen(const rg_server_opts *o, rg_server **out);
RG_API int rg_server_attach(rg_server *s, const rg_model *m, const rg_tokenizer *t);
/* Draining before a stop (SIGTERM): /health, /ready and new requests answer
 * 503 from now on; the requests in flight go on. */
RG_API void rg_server_drain(rg_server *s);
/* Completion requests in flight: queued, running, or their answer still
 * being sent. */
RG_API int rg_server_active(rg_server *s);
/* The port actually bound. */
RG_API int rg_server_port(const rg_server *s);
/* Stop accepting, end every request (queued ones get 503) and free. */
RG_API void rg_server_stop(rg_server *s);

/* ---------------------------------------------------------- machine probes */

/* The rooflines `rgemma bench` sets its rows against, measured on all
 * threads with the active kernel set (rg_kernel_path). */

/* Read bandwidth in bytes/s: the best of reps passes over a buffer of bytes. */
RG_API double rg_measure_read_bandwidth(size_t bytes, int reps);
/* Peak multiply-add rate in operations/s (2 per multiply-add) of the set's
 * f32 FMA (int8 = 0) or int8 dot product (int8 = 1); 0 when the set has no
 * such instruction (e.g. the scalar set's int8). */
RG_API double rg_measure_peak_flops(int int8);
/* Type names of model m's weights: the projection matrices' and the tied
 * embedding's ("F32", "BF16", "F16", "Q8_0", "Q4_0"). */
RG_API const char *rg_model_weight_type(const rg_model *m);
RG_API const char *rg_model_embed_type(const rg_model *m);
/* 1 when the active kernel set runs m's prefill on int8 dot products (it
 * rounds the activations to int8 for m's projection type), else 0. */
RG_API int rg_model_prefill_int8(const rg_model *m);

/* ----------------------------------------------------- synthetic checkpoints */

/* Random weights of exactly the released shapes, written as a Hugging Face
 * folder: for benchmarks and for trying the program end to end without the
 * gated weights. The text such a model writes is meaningless. */

/* "2b", "9b" (the released shapes) or "tiny" (small widths, the real
 * 256000-token vocabulary so the Gemma tokenizer works with it). */
RG_API int rg_synth_preset(const char *name, rg_config *cfg);
typedef struct {
    const char *dtype;        /* stored weight type: "f32", "bf16" (default) or "f16" */
    uint64_t seed;            /* same seed -> same bytes, whatever the thread count (default 1) */
    uint64_t max_shard_bytes; /* 0: 2 GB */
    void (*progress)(void *ctx, uint64_t done, uint64_t total); /* bytes written; may be NULL */
    void *progress_ctx;
} rg_synth_params;
RG_API void rg_synth_params_default(rg_synth_params *p);
/* What rg_synth would write for cfg in dtype: tensors, parameters and bytes
 * of tensor data (any may be NULL). -1 for an unknown dtype. */
RG_API int rg_synth_size(const rg_config *cfg, const char *dtype, int *n_tensors, uint64_t *n_params, uint64_t *bytes);
/* Create dir (if needed) and write config.json, the weights (sharded like
 * the released checkpoints) and a README.md saying the weights are random.
 * n_shards may be NULL. */
RG_API int rg_synth(const rg_config *cfg, const char *dir, const rg_synth_params *p, int *n_shards);

/* ---------------------------------------------------------------- gradients */

/* Exact gradients of the next-token loss (src/train/), for training. The
 * parameters and their gradient live in flat float32 buffers of
 * rg_grad_size() floats: the model's tensors one after another, each under
 * its Hugging Face name in the layout of model.safetensors (conv_1d.weight
 * [R,1,K], the RG-LRU gates [H,in,out], ...). The tied embedding is one
 * tensor; there is no lm_head.weight. */
typedef struct rg_grad rg_grad;

typedef struct {
    const char *name; /* e.g. "model.layers.0.mlp_block.gate_proj.weight" */
    int ndim;
    int64_t shape[3];
    size_t offset;    /* its first element in a parameter or gradient buffer */
    size_t count;     /* its elements */
} rg_grad_tensor;

/* The parameter layout of a config (checked as config.json is); NULL with
 * rg_last_error on a bad config. */
RG_API rg_grad *rg_grad_new(const rg_config *cfg);
RG_API void rg_grad_free(rg_grad *g);
/* Elements of a parameter (or gradient) buffer. */
RG_API size_t rg_grad_size(const rg_grad *g);
RG_API int rg_grad_n_tensors(const rg_grad *g);
/* Tensor i (0 <= i < rg_grad_n_tensors), in buffer order; NULL out of range. */
RG_API const rg_grad_tensor *rg_grad_tensor_at(const rg_grad *g, int i);
/* The index of the tensor of that name, or -1. */
RG_API int rg_grad_find(const rg_grad *g, const char *name);
/* Model m's weights, whatever their stored type, widened to float32 into
 * params (rg_grad_size floats). m must have g's config. */
RG_API int rg_grad_params_from_model(const rg_grad *g, const rg_model *m, float *params);
/* The loss of one sequence and its gradient. tokens[0..n) (n >= 2) run from
 * an empty state (positions 0..n-1); the row at position t predicts
 * tokens[t+1]. Target t+1 counts when mask is NULL or mask[t+1] != 0
 * (mask has n entries; mask[0] is not used), e.g. to score only a chat's
 * model turns. Outputs:
 *   *nll_sum   = sum over counted targets of -log softmax(logits[t])[tokens[t+1]]
 *                (soft-capped logits, as the forward pass), in double;
 *   *n_targets = the number of counted targets;
 *   grad      += grad_scale * d nll_sum / d params (grad may be NULL: the loss
 *                only). grad_scale = 1 / n_targets gives the gradient of the
 *                mean loss; several calls add up (gradient accumulation).
 * The RG-LRU's sqrt(1 - a^2) has its derivative bounded at 1000 as in the
 * reference. The result does not depend on the thread count. */
RG_API int rg_grad_compute(const rg_grad *g, const float *params, const int32_t *tokens, int n, const uint8_t *mask,
                           double grad_scale, float *grad, double *nll_sum, int64_t *n_targets);

/* ---------------------------------------------------------------- training */

/* rg_train: train a model from scratch or fine-tune a checkpoint on text
 * (src/train/trainer.c). The data files are read whole and tokenized: a
 * ".jsonl" file holds one JSON object a line, {"text": ...} (a document) or
 * {"messages": [{"role": "user"|"model"|"assistant"|"system", "content": ...}]}
 * (a chat in Gemma's turn format whose loss counts the model's turns only);
 * any other file is one plain-text document. Documents are BOS + text + EOS,
 * joined into one stream and cut into sequences of ctx tokens; a seeded
 * eval_frac of the sequences is held out. Optimiser: AdamW with f32 master
 * weights, linear warm-up then cosine decay to min_lr, global-norm clipping,
 * weight decay on the matrices only (ndim >= 2: projections, embedding,
 * conv taps, RG-LRU gates; not on norms, biases, recurrent_param). A
 * checkpoint in out_dir is a Hugging Face folder (config.json,
 * model.safetensors, the tokenizer) plus optimizer.bin (AdamW moments,
 * step, data position, and the f32 weights when the safetensors are bf16),
 * written to out_dir.tmp and swapped into place. */
typedef enum {
    RG_TRAIN_INFO,  /* message: what is being trained on */
    RG_TRAIN_STEP,  /* an optimiser step is done */
    RG_TRAIN_EVAL,  /* the held-out loss at step */
    RG_TRAIN_SAVED  /* a checkpoint was written to path */
} rg_train_event_kind;

typedef struct {
    rg_train_event_kind kind;
    const char *message, *path;
    int step, steps;
    double loss;          /* STEP: mean loss of the batch's targets; EVAL: of the held-out targets */
    double lr, grad_norm; /* STEP: the learning rate used, the gradient norm before clipping */
    int64_t tokens;       /* tokens trained on so far (the whole run) */
    double seconds;       /* training time so far (the whole run) */
    double tokens_per_s;  /* STEP: of this call so far */
    double eta_s;         /* STEP: time to the last step at this call's pace */
} rg_train_event;

typedef struct {
    /* the model: model_path (fine-tune) or config (from scratch, weights as
     * rg_synth writes them with seed) */
    const char *model_path;
    const rg_config *config;
    const char *tokenizer_path; /* NULL: the model's own (model_path) */
    const char *const *data_files;
    int n_data_files;
    const char *out_dir;
    int ctx;                    /* tokens per sequence (>= 2) */
    int batch;                  /* sequences per optimiser step (gradient accumulation) */
    int steps;                  /* optimiser steps of the whole run (the schedule's length) */
    double lr, min_lr;          /* peak and final learning rate */
    int warmup;                 /* steps of linear warm-up from 0 to lr */
    double weight_decay;        /* decoupled (AdamW), times lr */
    double clip;                /* global gradient norm limit (0 = none) */
    double beta1, beta2, adam_eps;
    double eval_frac;           /* held-out share of the sequences (0 = none) */
    int eval_every;             /* evaluate every N steps (0 = at the start and end only) */
    int save_every;             /* checkpoint every N steps (0 = at the end only) */
    uint64_t seed;              /* initial weights, the held-out split, the order of the sequences */
    const char *csv_path;       /* NULL or: step,train_loss,eval_loss,lr,tokens,seconds per step */
    int resume;                 /* continue the run saved in out_dir (refused if it is another run) */
    const char *save_dtype;     /* "f32" (default) or "bf16" for model.safetensors */
    int stop_after;             /* > 0: stop (and save) after this many steps of this call */
    int lora_rank;              /* > 0: train LoRA adapters of this rank on the layers' linear
                                   matrices (model_path only; the rest frozen): out_dir gets
                                   adapter_model.safetensors and adapter_config.json (see
                                   rg_model_apply_lora), not the weights */
    double lora_alpha;          /* LoRA scale alpha / rank (0: alpha = rank) */
    int lora_merge;             /* with LoRA: out_dir also gets the merged checkpoint (config.json,
                                   model.safetensors with W + s B A, the tokenizer) */
    int checkpoint_activations; /* keep each layer's input only and recompute its activations in the
                                   backward pass: less memory, one more forward pass, the same bits */
    const volatile int *cancel; /* non-NULL and set (e.g. by SIGINT): save and stop after the current step */
    void (*progress)(void *ctx, const rg_train_event *e); /* may be NULL */
    void *progress_ctx;
} rg_train_params;

typedef struct {
    int steps_done;       /* the step the run stands at */
    int stopped;          /* 1 when it stopped early (cancel or stop_after) */
    double train_loss, eval_loss; /* the last ones (eval_loss NaN when there is no held-out data) */
    int64_t tokens;
    double seconds;
} rg_train_result;

/* Defaults: ctx 256, batch 8, steps 100, lr 3e-4, min_lr 3e-5, warmup 10,
 * weight_decay 0.1, clip 1.0, beta1 0.9, beta2 0.95, adam_eps 1e-8,
 * eval_frac 0.05, eval_every 50, save_every 0, seed 1, save_dtype "f32". */
RG_API void rg_train_params_default(rg_train_params *p);
/* Runs the training; 0 also when it stopped early (res->stopped; res may
 * be NULL). A bad input (data, config, resume file) fails before anything
 * is written. */
RG_API int rg_train(const rg_train_params *p, rg_train_result *res);

/* -------------------------------------------------------------- evaluation */

/* 0 when the n logits of one row are all finite; else -1 and an error naming
 * the position pos, the first bad id and nan/inf. One pass over the row (not
 * over the weights): eval, perplexity and the generation loop call it per row. */
RG_API int rg_logits_check(const float *logits, int n, int64_t pos);

/* log softmax(logits)[y] over n logits, in double and stable for any
 * magnitude: x_y - m - log(sum_i exp(x_i - m)) with m = max_i x_i. */
RG_API double rg_logprob(const float *logits, int n, int32_t y);

/* Log-likelihood of a continuation. The state s holds the context, and
 * last_logits are the logits its last token produced (they predict cont[0]).
 * *logprob = sum_i log p(cont[i] | context, cont[0..i-1]); *greedy (may be
 * NULL) = 1 when every cont[i] was the argmax; token_logprobs (may be NULL)
 * gets the n terms. s advances over cont[0..n-2] (the last token's own
 * logits are not needed), in chunks, so memory stays bounded. */
RG_API int rg_score_continuation(const rg_model *m, rg_state *s, const float *last_logits, const int32_t *cont, int n,
                                 double *logprob, int *greedy, double *token_logprobs);

/* Perplexity: the sum of -log p over scored tokens and its uncertainty. */
typedef struct {
    double sum, sum2; /* sum of nll and of nll^2 */
    int64_t n;
} rg_nll_stats;

/* PPL = exp(mean nll). */
RG_API double rg_nll_ppl(const rg_nll_stats *st);
/* Standard error of PPL by the delta method, as llama.cpp reports it:
 * PPL * sqrt(var(nll) / (n - 1)), var(nll) = mean(nll^2) - mean(nll)^2. */
RG_API double rg_nll_ppl_stderr(const rg_nll_stats *st);

/* One perplexity window: tokens[start, start+len) are fed from an empty state
 * and the tokens at indices [first_scored, start+len) are scored (each by the
 * row before it, so first_scored > start). */
typedef struct {
    int64_t start, len, first_scored;
} rg_ppl_window;

/* Windows of ctx tokens starting every stride tokens over n tokens; the first
 * window scores tokens 1.., every later one its last stride tokens (never its
 * own first token), so each token from 1 on is scored exactly once when
 * stride < ctx. ctx == 0: one window over everything. *out is malloc'd. */
RG_API int rg_ppl_plan(int64_t n, int64_t ctx, int64_t stride, rg_ppl_window **out, int64_t *n_windows);

/* Run one window from an empty state (s is reset) and add its tokens' nll to st.
 * bos >= 0: the window's first token is replaced by bos (as llama.cpp does, so
 * every window starts like a document). */
RG_API int rg_ppl_run_window(const rg_model *m, rg_state *s, const int32_t *tokens, const rg_ppl_window *w, int32_t bos,
                             rg_nll_stats *st);

/* Benchmark task files: JSON Lines, one item a line (schema in README
 * "Evaluation"). */

/* A piece of input: text, or token ids used exactly as given. */
typedef struct {
    char *text; /* NULL when the piece is ids */
    size_t len;
    int32_t *ids;
    int n_ids;
} rg_piece;

typedef enum { RG_ITEM_MC = 0, RG_ITEM_GEN = 1 } rg_item_kind;

typedef struct {
    int line;       /* 1-based line in the task file */
    rg_item_kind kind;
    int is_ids;     /* every piece is ids */
    char *id, *group, *description; /* optional (NULL) */
    /* multiple choice: choice i is the continuation cont[i] of context ctx[i];
     * shared_ctx: every ctx[i] is ctx[0] (a "context" field), else "contexts"
     * with one shared continuation (WinoGrande's partial scoring) */
    int n_choices, label, shared_ctx;
    rg_piece *ctx, *cont; /* n_choices each (ctx[i] aliases ctx[0] when shared) */
    /* generation */
    rg_piece prompt;
    rg_piece *answers;
    int n_answers;
    char *target;   /* how the answer is written when the item is a shot */
    char **stop;    /* NULL: the run's default stop strings */
    int n_stop;
    int max_tokens; /* -1: the run's default */
} rg_item;

typedef struct {
    rg_item *items;
    int n;
} rg_task;

/* Parse a JSONL task file (blank lines and lines starting with '#' are
 * skipped). A malformed line fails with "FILE:LINE: what is wrong". */
RG_API int rg_task_load(const char *path, rg_task *task);
RG_API int rg_task_parse(const char *text, size_t len, const char *name, rg_task *task);
RG_API void rg_task_free(rg_task *task);

/* Extract the answer from generated text. mode: NULL or "text" (all of it,
 * trimmed), "number" (the last number, commas removed, a trailing '.' or ".0…"
 * fraction of zeros dropped), or a POSIX extended regex (its last match;
 * the first group when it has one). Returns malloc'd text ("" when nothing
 * matched) or NULL with an error for a bad regex. */
RG_API char *rg_extract_answer(const char *mode, const char *text);

/* Mean and standard error of per-item scores: sqrt(sum (x - mean)^2 / (n-1) / n). */
RG_API void rg_mean_stderr(const double *x, int n, double *mean, double *stderr_out);

/* The evaluator: scores task items (multiple choice by log-likelihood,
 * generation by extracted answers and maj@k). */

typedef struct {
    const rg_model *model;
    const rg_tokenizer *tok; /* NULL: only ids items can run */
    const rg_task *shots;    /* NULL: zero-shot */
    int k_shots;
    uint64_t seed;
    const char *shot_sep;    /* written after each shot (default "\n\n") */
    int reuse;               /* 1: score choices from a snapshot and cache the shot prefix; 0: re-process all */
    int batch;               /* rg_eval_items with reuse: sequences (states) advanced together in one
                                batched step; <= 1: one at a time, as rg_eval_item */
    /* generation */
    int samples;             /* k of maj@k (>= 1) */
    rg_sampling_params sampling;
    int max_tokens;
    const char *const *stop; /* default stop strings */
    int n_stop;
    const char *extract;     /* see rg_extract_answer */
} rg_eval_opts;

typedef struct {
    /* multiple choice */
    double *ll;      /* [n_choices] sum of log p over the continuation */
    int *n_tokens;   /* [n_choices] continuation tokens */
    int *greedy;     /* [n_choices] 1 when every continuation token was the argmax */
    int pred, pred_norm;
    /* generation: samples outputs and their extracted answers */
    char **outputs, **extracted;
    int n_outputs;
    int vote;        /* index of the majority answer */
    /* both */
    double acc, acc_norm, em, nm, maj; /* 0/1 */
    int64_t tokens;  /* tokens run through the model for this item */
} rg_item_result;

typedef struct rg_evaluator rg_evaluator;

RG_API rg_evaluator *rg_evaluator_new(const rg_eval_opts *opts);
RG_API void rg_evaluator_free(rg_evaluator *ev);
/* Score one item (index: its position, for seeds). On failure the message
 * names the item's line. */
RG_API int rg_eval_item(rg_evaluator *ev, const rg_item *item, int index, rg_item_result *res);
RG_API void rg_item_result_free(rg_item_result *r);
/* Score items[0..n) (their indices index0..index0+n-1) with the same results
 * as rg_eval_item on each in turn (up to the float rounding of the batched
 * matrix kernels), but with opts.batch > 1 and reuse on, the contexts of
 * the multiple-choice items, then their choices, go through the model
 * together (rg_forward_batch): up to opts.batch sequences per step and at
 * most about 2 x opts.batch states alive; generation items run one at a
 * time. res: room for n results (each to be freed, also on failure). */
RG_API int rg_eval_items(rg_evaluator *ev, const rg_item *items, int n, int index0, rg_item_result *res);

/* ------------------------------------------------------ Hugging Face hub */

/* Progress of one file's transfer, for a progress bar. */
typedef struct {
    const char *file;  /* its name in the repository */
    uint64_t done;     /* bytes of it on disk (a resumed part included) */
    uint64_t total;    /* its size */
    uint64_t resumed;  /* bytes that were already there when this transfer began */
    int finished;      /* 1 on the last call for the file: complete and verified */
} rg_hub_progress;
typedef void (*rg_hub_progress_fn)(void *ctx, const rg_hub_progress *p);

/* Get a model repository of the Hugging Face hub ("ORG/NAME", or
 * "ORG/NAME@REV" when rev is NULL; rev NULL = "main") into huggingface_hub's
 * cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub:
 * models--ORG--NAME/{blobs,snapshots,refs}) and write the snapshot folder,
 * the one to load, to out_dir. The files: config.json, the weights
 * (model.safetensors.index.json and its shards, else model.safetensors), the
 * tokenizer (tokenizer.model and/or tokenizer.json) and, when the repository
 * has them, tokenizer_config.json, generation_config.json and
 * special_tokens_map.json. Files already in the cache are not downloaded
 * again; a partial one (blobs/ETAG.incomplete) is resumed; each file is
 * verified against its digest (sha256 for LFS files, the git blob sha1 for
 * others) before it is linked into the snapshot. Endpoint $HF_ENDPOINT
 * (default https://huggingface.co); token $HF_TOKEN, else the file
 * $HF_HOME/token. offline (or HF_HUB_OFFLINE=1): only the cache, which must
 * hold every file. progress (may be NULL) is called during transfers. */
RG_API int rg_hub_pull(const char *repo, const char *rev, int offline, rg_hub_progress_fn progress, void *ctx,
                       char *out_dir, size_t out_len);

#ifdef __cplusplus
}
#endif
#endif /* RGEMMA_H */

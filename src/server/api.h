/* The OpenAI-compatible JSON layer of `rgemma serve`: request parsing and
 * validation, the Gemma chat format, and response / error objects. No HTTP
 * and no threads here, so it is unit-tested on its own. */
#ifndef RG_SERVER_API_H
#define RG_SERVER_API_H

#include <stddef.h>
#include <stdint.h>
#include "rgemma.h"

/* An OpenAI-style error: {"error":{"message","type","param","code"}} with an
 * HTTP status. type/code/param are static strings (param may be NULL). */
typedef struct {
    int status;
    const char *type;
    const char *code;
    const char *param;
    char message[320];
} rg_api_error;

/* Fill e and return -1. */
int rg_api_fail(rg_api_error *e, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The error object as malloc'd JSON text. */
char *rg_api_error_json(const rg_api_error *e);

/* Strict UTF-8 check (no overlongs, surrogates or code points past U+10FFFF).
 * Returns -1 if valid, else the offset of the first bad byte. */
long rg_utf8_check(const char *s, size_t n);

/* What the server allows; checked while parsing. */
typedef struct {
    const char *model_name; /* the "model" field must be absent or equal this */
    int max_tokens;         /* cap for max_tokens, also its default */
    int vocab_size;         /* token ids in prompts must be below this */
} rg_api_limits;

/* One turn of the Gemma chat format after system messages were folded into
 * the next user turn (Gemma has no system role). */
typedef struct {
    int model;  /* 0: user turn, 1: model turn */
    char *text;
} rg_api_turn;

#define RG_API_MAX_STOP 16
#define RG_API_MAX_STOP_LEN 256

typedef struct {
    int chat;           /* /v1/chat/completions (else /v1/completions) */
    int stream;
    int include_usage;  /* stream_options.include_usage: usage in its own last chunk */
    /* chat: the turns; when the last message is the assistant's, its turn is
     * left open and the model continues it */
    rg_api_turn *turns;
    int n_turns;
    int open_model_turn;
    /* completion: a text prompt (BOS is added) or token ids (used as given) */
    char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids;
    int n_prompt_ids;
    int max_tokens;
    int ignore_eos;     /* llama-server's field: EOS and <end_of_turn> do not end the reply */
    char *stop[RG_API_MAX_STOP];
    int n_stop;
    rg_sampling_params sampling;
    /* "parse_special" (llama-server's name): spelled control pieces such as
     * "<end_of_turn>" in the text become those pieces. Default: off for chat
     * messages (text from users: no forged turns), on for a completion's
     * prompt (its author writes the template). */
    int parse_special;
} rg_api_request;

/* Parse a completion request body (len bytes, need not be NUL-terminated). */
int rg_api_parse_request(const char *body, size_t len, int chat, const rg_api_limits *lim, rg_api_request *r,
                         rg_api_error *e);
void rg_api_request_free(rg_api_request *r);

/* POST /tokenize {"content": str, "add_special": bool, "with_pieces": bool} */
typedef struct {
    char *content;
    size_t len;
    int add_special, with_pieces;
    int parse_special; /* default on, as before */
} rg_api_tokenize_req;
int rg_api_parse_tokenize(const char *body, size_t len, rg_api_tokenize_req *r, rg_api_error *e);
/* POST /detokenize {"tokens": [int]}; ids must be in [0, vocab). *ids is malloc'd. */
int rg_api_parse_detokenize(const char *body, size_t len, int vocab, int32_t **ids, int *n, rg_api_error *e);

/* ---- the Gemma chat format, the same ids as rg_chat_turn gives:
 *   <bos> then per turn <start_of_turn>{user|model}\n{text}<end_of_turn>\n
 * and <start_of_turn>model\n to ask for the reply. <start_of_turn> and
 * <end_of_turn> are the tokenizer's ids (never parsed out of text); each turn
 * is tokenized on its own, so a conversation's ids are a prefix of the ids of
 * any conversation that extends it: the state cache relies on this. */

/* BOS and the turns; the last turn is left open (no <end_of_turn>) when
 * open_last. Fails when the tokenizer has no turn pieces. *ids is malloc'd.
 * The turns' text is encoded with special pieces as plain text. */
int rg_chat_tokens(const rg_tokenizer *t, const rg_api_turn *turns, int n_turns, int open_last, int32_t **ids,
                   int *n_ids);
/* The same, parse_special != 0: spelled special pieces in the turns' text are
 * matched (a client that asked for it with "parse_special": true). */
int rg_chat_tokens_ex(const rg_tokenizer *t, const rg_api_turn *turns, int n_turns, int open_last, int parse_special,
                      int32_t **ids, int *n_ids);
/* Append one closed turn (model != 0: a model turn; its text plain) to *ids (realloc'd). */
int rg_chat_append_turn(const rg_tokenizer *t, int model, const char *text, size_t len, int32_t **ids, int *n);
/* Append "<start_of_turn>model\n" (the generation prompt). */
int rg_chat_append_reply_start(const rg_tokenizer *t, int32_t **ids, int *n);
/* Append "<end_of_turn>\n" (what closes a turn). */
int rg_chat_append_turn_end(const rg_tokenizer *t, int32_t **ids, int *n);
/* Append the ids of text (no BOS) to *ids (realloc'd); special pieces are parsed. */
int rg_tokens_append(const rg_tokenizer *t, const char *text, size_t len, int32_t **ids, int *n);
int rg_tokens_append_ex(const rg_tokenizer *t, const char *text, size_t len, int parse_special, int32_t **ids, int *n);

/* ---- responses */

typedef struct {
    const char *id;      /* "chatcmpl-…" or "cmpl-…" */
    long created;        /* unix seconds */
    const char *model;
} rg_api_meta;

typedef struct {
    const char *text;
    size_t len;
    const char *finish;  /* "stop" or "length" */
    int prompt_tokens;   /* all prompt tokens, cached ones included */
    int cached_tokens;   /* prompt tokens whose state came from the cache */
    int completion_tokens;
    double prompt_ms, predicted_ms;
} rg_api_result;

/* Non-streaming response body. */
char *rg_api_completion_json(int chat, const rg_api_meta *m, const rg_api_result *r);
/* One streaming chunk (the JSON only, without "data: "). role: put
 * "role":"assistant" in the delta (first chat chunk); finish: NULL or the
 * finish reason; usage: NULL or the result whose usage/timings to include;
 * no_choices: an empty choices list (the include_usage chunk). */
char *rg_api_chunk_json(int chat, const rg_api_meta *m, const char *text, size_t len, int role, const char *finish,
                        const rg_api_result *usage, int no_choices);

#endif

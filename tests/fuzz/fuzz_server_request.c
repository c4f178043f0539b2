/* The server's request JSON: /v1/chat/completions and /v1/completions bodies
 * to messages, prompt and sampling parameters (every range checked), then the
 * chat template's ids; /tokenize and /detokenize bodies. */
#include "fuzz_util.h"
#include "server/api.h"

static rg_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &tok)) {
        fprintf(stderr, "fuzz_server_request: %s (run from the repository root)\n", rg_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    rg_api_limits lim = {"tiny", 4096, 1000};
    rg_api_error e;
    for (int chat = 0; chat < 2; chat++) {
        rg_api_request r;
        if (rg_api_parse_request(body, size, chat, &lim, &r, &e) == 0) {
            if (r.max_tokens < 1 || r.max_tokens > lim.max_tokens) abort();
            if (!(r.sampling.temperature >= 0 && r.sampling.temperature <= 2)) abort();
            if (!(r.sampling.top_p >= 0 && r.sampling.top_p <= 1)) abort();
            if (r.n_stop < 0 || r.n_stop > RG_API_MAX_STOP) abort();
            int32_t *ids = NULL;
            int n = 0;
            if (chat) {
                if (rg_chat_tokens_ex(tok, r.turns, r.n_turns, r.open_model_turn, r.parse_special, &ids, &n) == 0 &&
                    !r.open_model_turn)
                    rg_chat_append_reply_start(tok, &ids, &n);
            } else if (r.prompt) {
                rg_tokens_append_ex(tok, r.prompt, r.prompt_len, r.parse_special, &ids, &n);
            } else {
                for (int i = 0; i < r.n_prompt_ids; i++)
                    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= lim.vocab_size) abort();
            }
            for (int i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= lim.vocab_size) abort();
            free(ids);
            rg_api_request_free(&r);
        } else if (e.status < 400 || e.status > 599) {
            abort();
        }
    }
    rg_api_tokenize_req t;
    if (rg_api_parse_tokenize(body, size, &t, &e) == 0) {
        if (memchr(t.content, 0, t.len)) abort(); /* a NUL would have cut the text */
        free(t.content);
    }
    int32_t *ids;
    int n;
    if (rg_api_parse_detokenize(body, size, 1000, &ids, &n, &e) == 0) free(ids);
    return 0;
}

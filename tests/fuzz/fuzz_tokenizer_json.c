/* tokenizer.json (Hugging Face): the vocab, merges, added tokens and the
 * SentencePiece layout rebuilt from them; then an encode. */
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rg_tokenizer *t = rg_xmalloc(sizeof *t);
    rg_tok_init(t);
    if (rg_tok_read_hf_json(t, (const char *)data, size, "tokenizer.json", NULL, 0) == 0) {
        int32_t *ids;
        size_t n;
        const char *s = "Hello, world! <start_of_turn>user\n 123";
        if (rg_tokenize(t, s, strlen(s), 0, 0, &ids, &n) == 0) free(ids);
    }
    rg_tok_release(t);
    free(t);
    return 0;
}

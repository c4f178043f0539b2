/* tokenizer.model: SentencePiece's ModelProto (protobuf wire format), then an
 * encode and a decode with whatever model it gave. */
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rg_tokenizer *t = rg_xmalloc(sizeof *t);
    rg_tok_init(t);
    if (rg_tok_read_model_proto(t, data, size, "tokenizer.model") == 0) {
        int32_t *ids;
        size_t n;
        const char *s = "Hello, world! <start_of_turn>user\n\xc3\xa9\xff 123";
        if (rg_tokenize(t, s, strlen(s), 1, 1, &ids, &n) == 0) {
            char *text;
            size_t len;
            if (rg_detokenize(t, ids, n, &text, &len) == 0) free(text);
            free(ids);
        }
    }
    rg_tok_release(t);
    free(t);
    return 0;
}

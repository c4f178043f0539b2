/* Training data files (src/train/data.c): JSON Lines of documents and chats
 * tokenized with the small test tokenizer. */
#include "fuzz_util.h"
#include "train/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static rg_tokenizer *tok;
    if (!tok && rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &tok)) abort();
    rg_train_stream s = {0};
    if (rg_train_stream_add_file(&s, tok, fuzz_file("data.jsonl", data, size)) == 0)
        for (size_t i = 0; i < s.n; i++)
            if (s.ids[i] < 0 || s.ids[i] >= rg_tokenizer_vocab_size(tok) || s.counts[i] > 1) abort();
    rg_train_stream_free(&s);
    return 0;
}

/* GGUF: header, metadata, tensor infos, data offsets, the config read from
 * the metadata and the binding of every tensor (rg_model_load), and the
 * tokenizer inside (rg_tokenizer_load). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("m.gguf", data, size);
    rg_model *m = NULL;
    if (rg_model_load(path, &m) == 0) {
        const rg_config *cfg = rg_model_config(m);
        if (cfg->vocab_size < 1 || cfg->num_layers < 1) abort();
        rg_model_free(m);
    }
    rg_tokenizer *t = NULL;
    if (rg_tokenizer_load(path, &t) == 0) {
        int32_t *ids;
        size_t n;
        if (rg_tokenize(t, "Hello <start_of_turn> world", 27, 1, 0, &ids, &n) == 0) free(ids);
        rg_tokenizer_free(t);
    }
    return 0;
}

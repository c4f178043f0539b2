/* rg_tokenizer_find: the tokenizer that belongs to a model path. The one
 * place that knows where a model keeps its tokenizer (the CLI's commands,
 * the server and rg_quantize all ask here). */
#include <stdlib.h>
#include <string.h>
#include "rgemma.h"
#include "util/util.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int rg_tokenizer_find(const char *model_path, rg_tokenizer **out) {
    *out = NULL;
    int gguf = ends_with(model_path, ".gguf") && !rg_is_dir(model_path);
    if (gguf) { /* a GGUF file written by rg_quantize carries its tokenizer */
        int rc = rg_tokenizer_load(model_path, out);
        if (rc != -2) return rc; /* loaded, or there is one and it is broken */
    }
    /* the model's folder, or the folder of a model file */
    char *dir = rg_model_dir(model_path);
    char *a = rg_path_join(dir, "tokenizer.model"), *b = rg_path_join(dir, "tokenizer.json");
    int found = rg_file_exists(a) || rg_file_exists(b);
    free(a);
    free(b);
    int rc;
    if (!found) {
        rg_error("%s%s has no tokenizer.model or tokenizer.json", gguf ? "the GGUF file holds no tokenizer and " : "",
                 dir);
        rc = -2;
    } else {
        rc = rg_tokenizer_load(dir, out);
    }
    free(dir);
    return rc;
}

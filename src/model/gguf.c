#include "model/model.h"
#include "util/util.h"

int rg_model_load_gguf(rg_model *m, const char *path) {
    (void)m;
    return rg_error("%s: GGUF models are not supported by this build yet", path);
}

/* state files (--load-state): header, version, fingerprint, sizes, pending
 * tokens and checksum, against the dev_4layer test model. A state that
 * loads must then run. */
#include "fuzz_util.h"

static rg_model *model;
static rg_state *state;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (rg_model_load("tests/data/golden/dev_4layer", &model)) {
        fprintf(stderr, "fuzz_state: %s (run from the repository root)\n", rg_last_error());
        abort();
    }
    rg_set_threads(1);
    state = rg_state_new(model);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("s.state", data, size);
    int32_t pending[RG_STATE_MAX_PENDING];
    int np = 0;
    rg_state_reset(state);
    if (rg_state_load_pending(state, path, pending, &np) == 0) {
        int V = rg_model_config(model)->vocab_size;
        for (int i = 0; i < np; i++)
            if (pending[i] >= 0 && pending[i] < V) rg_forward(model, state, &pending[i], 1, NULL, 0);
    }
    return 0;
}

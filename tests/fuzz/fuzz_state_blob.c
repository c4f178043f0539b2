/* state blobs (the server's shared state store; bytes from Redis): header,
 * version, fingerprint, size against position and checksum, against the
 * dev_4layer test model. A blob that passes must then read and run. */
#include "fuzz_util.h"
#include "model/state.h"

static rg_model *model;
static rg_state *state;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (rg_model_load("tests/data/golden/dev_4layer", &model)) {
        fprintf(stderr, "fuzz_state_blob: %s (run from the repository root)\n", rg_last_error());
        abort();
    }
    rg_set_threads(1);
    state = rg_state_new(model);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rg_state_reset(state);
    if (rg_state_blob_check(rg_model_config(model), RG_DT_F32, data, size, "fuzz") == 0) {
        if (rg_state_blob_read(state, data, size, "fuzz")) abort(); /* check passed: read must too */
        int32_t t = 7;
        rg_forward(model, state, &t, 1, NULL, 0);
    }
    return 0;
}

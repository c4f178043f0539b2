/* Prints the size and field offsets of the structs the Python package
 * mirrors with ctypes (python/rgemma/_lib.py), as "struct.field offset" and
 * "struct sizeof" lines: test_rgemma.py compares them with its own. */
#include <rgemma.h>
#include <stddef.h>
#include <stdio.h>

#define SIZE(T) printf(#T " %zu\n", sizeof(T))
#define FIELD(T, f) printf(#T "." #f " %zu\n", offsetof(T, f))

int main(void) {
    SIZE(rg_config);
    FIELD(rg_config, vocab_size);
    FIELD(rg_config, logits_soft_cap);
    FIELD(rg_config, embed_scale);
    FIELD(rg_config, pattern_len);
    FIELD(rg_config, pattern);
    SIZE(rg_sampling_params);
    FIELD(rg_sampling_params, repeat_last_n);
    FIELD(rg_sampling_params, seed);
    SIZE(rg_generate_params);
    FIELD(rg_generate_params, stop);
    FIELD(rg_generate_params, stop_ids);
    FIELD(rg_generate_params, sampling);
    FIELD(rg_generate_params, ignore_eos);
    FIELD(rg_generate_params, cancel);
    FIELD(rg_generate_params, history);
    FIELD(rg_generate_params, n_history);
    SIZE(rg_generate_result);
    FIELD(rg_generate_result, prompt_seconds);
    FIELD(rg_generate_result, stop_reason);
    FIELD(rg_generate_result, next_token);
    FIELD(rg_generate_result, seed);
    return 0;
}

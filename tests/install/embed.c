/* A program outside the project that uses an installed librgemma: built by
 * tests/cli/install.sh with `pkg-config --cflags --libs rgemma` only.
 * Usage: embed MODEL PROMPT_IDS N   (PROMPT_IDS: comma-separated ids)
 * Prints the library's version and the N greedy tokens after the prompt. */
#include <rgemma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int collect(void *ctx, int32_t token, const char *text, size_t len) {
    (void)text, (void)len;
    if (token >= 0) printf("%s%d", (*(int *)ctx)++ ? "," : "", token);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: embed MODEL PROMPT_IDS N\n");
        return 2;
    }
    /* the header this program was built with must match the loaded library */
    printf("librgemma %s (header %s)\n", rg_version(), RG_VERSION);
    if (strcmp(rg_version(), RG_VERSION) != 0) {
        fprintf(stderr, "embed: library %s, header %s\n", rg_version(), RG_VERSION);
        return 1;
    }
    int32_t prompt[256];
    int n_prompt = 0;
    for (char *p = argv[2], *end; *p && n_prompt < 256; p = *end ? end + 1 : end) {
        prompt[n_prompt++] = (int32_t)strtol(p, &end, 10);
        if (end == p) {
            fprintf(stderr, "embed: bad prompt ids: %s\n", argv[2]);
            return 2;
        }
    }
    rg_model *m = NULL;
    if (rg_model_load(argv[1], &m)) {
        fprintf(stderr, "embed: %s\n", rg_last_error());
        return 1;
    }
    rg_state *s = rg_state_new(m);
    rg_generate_params p;
    rg_generate_params_default(&p);
    p.max_tokens = atoi(argv[3]);
    p.sampling.temperature = 0;
    p.ignore_eos = 1;
    rg_generate_result res;
    int n_out = 0;
    int rc = s ? rg_generate(m, NULL, s, prompt, n_prompt, &p, collect, &n_out, &res) : -1;
    printf("\n");
    if (rc) fprintf(stderr, "embed: %s\n", rg_last_error());
    rg_state_free(s);
    rg_model_free(m);
    return rc ? 1 : 0;
}

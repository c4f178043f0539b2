/* rgemma generate: a prompt in, generated tokens out (streamed), with
 * llama.cpp's sampling options, then a short report on stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_util.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma generate -m MODEL (--prompt-ids IDS | --load-state FILE) [options]\n\n"
            "  -m, --model DIR          Hugging Face RecurrentGemma folder (or .safetensors / .gguf)\n"
            "      --prompt-ids IDS     prompt as token ids, e.g. 2,651,6037 (used as given: include BOS 2);\n"
            "                           the generated ids are printed\n"
            "  -n, --n-predict N        tokens to generate (default -1: until EOS or Ctrl-C)\n"
            "  -s, --seed N             sampling seed (default -1: random)\n"
            "      --temp T             temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K            keep the K most likely tokens (default 40; 0 = off)\n"
            "      --top-p P            keep the smallest set with probability >= P (default 0.95; 1 = off)\n"
            "      --min-p P            drop tokens below P x the top probability (default 0.05; 0 = off)\n"
            "      --repeat-penalty X   penalise repeated tokens (default 1.0 = off)\n"
            "      --repeat-last-n N    tokens the penalties look back over (default 64; 0 = off, -1 = all)\n"
            "      --presence-penalty X (default 0.0 = off)\n"
            "      --frequency-penalty X (default 0.0 = off)\n"
            "      --ignore-eos         do not stop at EOS\n"
            "      --save-state FILE    save the sequence's state at the end (fixed size)\n"
            "      --load-state FILE    continue the sequence saved in FILE\n"
            "  -t, --threads N          worker threads (default: all cores)\n");
}

enum {
    OPT_PROMPT_IDS = 256, OPT_TEMP, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_REPEAT_LAST_N,
    OPT_PRESENCE, OPT_FREQUENCY, OPT_IGNORE_EOS, OPT_SAVE_STATE, OPT_LOAD_STATE
};

typedef struct {
    int first;
} print_ctx;

static int print_id(void *ctx, int32_t token, const char *text, size_t len) {
    (void)text, (void)len;
    print_ctx *p = ctx;
    if (token < 0) return 0;
    printf("%s%d", p->first ? "" : ",", token);
    fflush(stdout);
    p->first = 0;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"n-predict", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {"prompt-ids", required_argument, 0, OPT_PROMPT_IDS},
        {"temp", required_argument, 0, OPT_TEMP},
        {"top-k", required_argument, 0, OPT_TOP_K},
        {"top-p", required_argument, 0, OPT_TOP_P},
        {"min-p", required_argument, 0, OPT_MIN_P},
        {"repeat-penalty", required_argument, 0, OPT_REPEAT_PENALTY},
        {"repeat-last-n", required_argument, 0, OPT_REPEAT_LAST_N},
        {"presence-penalty", required_argument, 0, OPT_PRESENCE},
        {"frequency-penalty", required_argument, 0, OPT_FREQUENCY},
        {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
        {"save-state", required_argument, 0, OPT_SAVE_STATE},
        {"load-state", required_argument, 0, OPT_LOAD_STATE},
        {0, 0, 0, 0}};
    const char *cmd = "generate", *model_path = NULL, *ids_arg = NULL, *save_path = NULL, *load_path = NULL;
    rg_generate_params gp;
    rg_generate_params_default(&gp);
    rg_sampling_params *sp = &gp.sampling;
    long v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:n:s:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case OPT_PROMPT_IDS: ids_arg = optarg; break;
        case OPT_SAVE_STATE: save_path = optarg; break;
        case OPT_LOAD_STATE: load_path = optarg; break;
        case OPT_IGNORE_EOS: gp.ignore_eos = 1; break;
        case 'n':
            if (cli_int(cmd, "-n", optarg, -1, 1L << 30, &v)) return 2;
            gp.max_tokens = (int)v;
            break;
        case 's':
            if (cli_int(cmd, "--seed", optarg, -1, 0xFFFFFFFFL, &v)) return 2;
            sp->seed = v < 0 ? RG_SEED_RANDOM : (uint64_t)v;
            break;
        case 't':
            if (cli_int(cmd, "--threads", optarg, 1, 4096, &v)) return 2;
            rg_set_threads((int)v);
            break;
        case OPT_TEMP:
            if (cli_float(cmd, "--temp", optarg, 0, 1e6, &sp->temperature)) return 2;
            break;
        case OPT_TOP_K:
            if (cli_int(cmd, "--top-k", optarg, 0, 1L << 30, &v)) return 2;
            sp->top_k = (int)v;
            break;
        case OPT_TOP_P:
            if (cli_float(cmd, "--top-p", optarg, 0, 1, &sp->top_p)) return 2;
            break;
        case OPT_MIN_P:
            if (cli_float(cmd, "--min-p", optarg, 0, 1, &sp->min_p)) return 2;
            break;
        case OPT_REPEAT_PENALTY:
            if (cli_float(cmd, "--repeat-penalty", optarg, 1e-6, 1e6, &sp->repeat_penalty)) return 2;
            break;
        case OPT_REPEAT_LAST_N:
            if (cli_int(cmd, "--repeat-last-n", optarg, -1, 1L << 30, &v)) return 2;
            sp->repeat_last_n = (int)v;
            break;
        case OPT_PRESENCE:
            if (cli_float(cmd, "--presence-penalty", optarg, -1e6, 1e6, &sp->presence_penalty)) return 2;
            break;
        case OPT_FREQUENCY:
            if (cli_float(cmd, "--frequency-penalty", optarg, -1e6, 1e6, &sp->frequency_penalty)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: generate: unknown option or missing value '%s' (try 'rgemma generate --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rgemma: generate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model_path) {
        fprintf(stderr, "rgemma: generate: -m MODEL is required (try 'rgemma generate --help')\n");
        return 2;
    }
    if (!ids_arg && !load_path) {
        fprintf(stderr, "rgemma: generate: give a prompt (--prompt-ids) or --load-state\n");
        return 2;
    }
    int32_t *ids = NULL;
    int n_ids = 0;
    if (ids_arg && cli_ids(cmd, "--prompt-ids", ids_arg, &ids, &n_ids)) return 2;

    int rc = 1;
    rg_model *m = NULL;
    rg_state *st = NULL;
    int32_t *prompt = NULL;
    if (rg_model_load(model_path, &m)) {
        fprintf(stderr, "rgemma: %s\n", rg_last_error());
        goto done;
    }
    const rg_config *cfg = rg_model_config(m);
    st = rg_state_new(m);
    /* a loaded state may carry the token its run sampled last but never
     * processed: it goes first */
    int32_t pending[RG_STATE_MAX_PENDING];
    int n_pending = 0;
    if (load_path && rg_state_load_pending(st, load_path, pending, &n_pending)) {
        fprintf(stderr, "rgemma: %s\n", rg_last_error());
        goto done;
    }
    int n_prompt = n_pending + n_ids;
    if (n_prompt == 0) {
        fprintf(stderr, "rgemma: generate: %s holds no pending token: give a prompt to continue from it\n",
                load_path);
        goto done;
    }
    prompt = malloc(sizeof *prompt * (size_t)n_prompt);
    memcpy(prompt, pending, sizeof *prompt * (size_t)n_pending);
    if (n_ids) memcpy(prompt + n_pending, ids, sizeof *ids * (size_t)n_ids);

    cli_catch_sigint();
    gp.cancel = &cli_interrupted;
    print_ctx pc = {1};
    rg_generate_result res;
    if (rg_generate(m, NULL, st, prompt, n_prompt, &gp, print_id, &pc, &res)) {
        printf("\n");
        fprintf(stderr, "rgemma: %s\n", rg_last_error());
        goto done;
    }
    printf("\n");
    fflush(stdout);
    if (save_path) {
        int np = res.next_token >= 0;
        if (rg_state_save_pending(st, &res.next_token, np, save_path)) {
            fprintf(stderr, "rgemma: %s\n", rg_last_error());
            goto done;
        }
        fprintf(stderr, "saved state to %s (%zu bytes, position %lld)\n", save_path, rg_state_file_bytes(cfg),
                (long long)rg_state_pos(st));
    }
    cli_report(&res, cfg);
    rc = 0;
done:
    free(prompt);
    free(ids);
    rg_state_free(st);
    rg_model_free(m);
    return rc;
}

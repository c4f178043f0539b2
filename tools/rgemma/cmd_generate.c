/* rgemma generate: a prompt in, generated text (or ids) out, streamed, with
 * llama.cpp's sampling options, then a short report on stderr. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_util.h"
#include "commands.h"

#define MAX_STOPS 16
#define MAX_PARALLEL 256 /* rows of one batched step */

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma generate -m MODEL (-p TEXT | -f FILE | --prompt-ids IDS | --load-state FILE) [options]\n\n"
            "  -m, --model DIR          Hugging Face RecurrentGemma folder (or .safetensors / .gguf)\n"
            "  -hf ORG/NAME[@REV]       a model of Hugging Face, pulled first (rgemma pull; --offline: cache only)\n"
            "      --lora PATH          LoRA adapters applied at load (rgemma train --lora's folder or its\n"
            "                           adapter_model.safetensors; float weights only)\n"
            "      --kv-type f32|f16|q8_0   attention window (KV cache) element type (default f32); f16 halves\n"
            "                           the state, q8_0 takes 27%% of f32's window bytes (README\n"
            "                           \"Attention window in float16\")\n"
            "  -p, --prompt TEXT        prompt text (BOS is added at the start of a sequence)\n"
            "  -f, --file FILE          read the prompt from FILE ('-' = stdin)\n"
            "      --prompt-ids IDS     prompt as token ids, e.g. 2,651,6037 (used as given: include BOS 2);\n"
            "                           the generated ids are printed instead of text\n"
            "      --chat               wrap the prompt as one Gemma user turn (for -it models)\n"
            "      --system TEXT        system prompt for --chat (folded into the user turn)\n"
            "      --parse-special      spelled special pieces (\"<end_of_turn>\", \"<unused0>\", ...) in the text\n"
            "                           become those pieces: the default for a raw prompt, not for --chat\n"
            "      --no-parse-special   encode them as plain text (the default with --chat)\n"
            "  -n, --n-predict N        tokens to generate (default -1: until EOS, a stop or Ctrl-C)\n"
            "  -s, --seed N             sampling seed (default -1: random)\n"
            "      --temp T             temperature (default 0.8; 0 = greedy)\n"
            "      --top-k K            keep the K most likely tokens (default 40; 0 = off)\n"
            "      --top-p P            keep the smallest set with probability >= P (default 0.95; 1 = off)\n"
            "      --min-p P            drop tokens below P x the top probability (default 0.05; 0 = off)\n"
            "      --repeat-penalty X   penalise repeated tokens (default 1.0 = off)\n"
            "      --repeat-last-n N    tokens the penalties look back over (default 64; 0 = off, -1 = all)\n"
            "      --presence-penalty X (default 0.0 = off)\n"
            "      --frequency-penalty X (default 0.0 = off)\n"
            "      --stop STRING        stop when STRING appears (not printed); repeatable\n"
            "      --ignore-eos         do not stop at EOS or <end_of_turn>\n"
            "      --no-display-prompt  do not print the prompt before the generated text\n"
            "      --save-state FILE    save the sequence's state at the end (fixed size)\n"
            "      --load-state FILE    continue the sequence saved in FILE\n"
            "      --tokenizer PATH     tokenizer.model / tokenizer.json / folder (default: the model's folder)\n"
            "      --parallel N         N independent samples of the prompt (1..%d): the prompt is processed once,\n"
            "                           its state copied, the N sequences decoded together; sample i uses seed+i\n"
            "                           (so it equals a plain run with -s seed+i); printed one after another\n"
            "      --json               with --parallel: print the samples as a JSON array of\n"
            "                           {index, text, tokens, finish_reason, seed}\n"
            "  -t, --threads N          worker threads (default: all cores)\n\n"
            "Generation also stops at <end_of_turn>. Ctrl-C stops it cleanly (a second Ctrl-C kills).\n",
            MAX_PARALLEL);
}

enum {
    OPT_PROMPT_IDS = CLI_OPT_OWN, OPT_IGNORE_EOS, OPT_SAVE_STATE, OPT_LOAD_STATE, OPT_STOP, OPT_CHAT, OPT_SYSTEM, OPT_TOKENIZER, OPT_NO_DISPLAY,
    OPT_PARSE_SPECIAL, OPT_NO_PARSE_SPECIAL, OPT_PARALLEL, OPT_JSON, OPT_LORA
};

typedef struct {
    int ids, first;
} printer;

static int print_out(void *ctx, int32_t token, const char *text, size_t len) {
    printer *p = ctx;
    if (p->ids) {
        if (token >= 0) printf("%s%d", p->first ? "" : ",", token);
        p->first = 0;
    } else if (len) {
        fwrite(text, 1, len, stdout);
    }
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------- --parallel N */

/* One sample's output, kept until all are done. */
typedef struct {
    char *text;
    size_t len, cap;
    int32_t *ids;
    int n_ids, cap_ids;
    int as_ids;
} sample_out;

static void out_append(sample_out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->text = cli_realloc(o->text, o->cap);
    }
    memcpy(o->text + o->len, s, n);
    o->len += n;
    o->text[o->len] = 0;
}

static int collect_out(void *ctx, int32_t token, const char *text, size_t len) {
    sample_out *o = ctx;
    if (token >= 0) {
        if (o->n_ids == o->cap_ids) {
            o->cap_ids = o->cap_ids * 2 + 64;
            o->ids = cli_realloc(o->ids, sizeof *o->ids * (size_t)o->cap_ids);
        }
        o->ids[o->n_ids++] = token;
    }
    if (o->as_ids) {
        if (token >= 0) {
            char num[16];
            int k = snprintf(num, sizeof num, o->n_ids > 1 ? ",%d" : "%d", token);
            out_append(o, num, (size_t)k);
        }
    } else if (len) {
        out_append(o, text, len);
    }
    return 0;
}

static const char *finish_reason(rg_stop_reason r) {
    switch (r) {
    case RG_STOP_EOS:
    case RG_STOP_STRING: return "stop";
    case RG_STOP_LENGTH: return "length";
    case RG_STOP_CALLBACK: return "interrupted";
    default: return "error";
    }
}

/* N samples of prompt: all but its last token run once on st, the state is
 * copied N times, and N sequences (seed, seed+1, ...; each starting from the
 * last token, the rest of the prompt as the penalties' history) are stepped
 * together. Returns the exit status. */
static int run_parallel(rg_model *m, const rg_tokenizer *tok, rg_state *st, const int32_t *prompt, int n_prompt,
                        const rg_generate_params *gp0, int n, int as_ids, const char *shown, size_t shown_len,
                        int json) {
    int rc = 1;
    uint64_t seed = gp0->sampling.seed;
    double t0 = cli_time_s();
    if (n_prompt > 1 && rg_forward(m, st, prompt, n_prompt - 1, NULL, 0)) {
        fprintf(stderr, "rgemma: generate: %s\n", rg_last_error());
        return 1;
    }
    double t_prompt = cli_time_s() - t0;
    rg_state **states = cli_calloc((size_t)n, sizeof *states);
    rg_seq **seqs = cli_calloc((size_t)n, sizeof *seqs);
    rg_generate_params *gps = cli_calloc((size_t)n, sizeof *gps);
    sample_out *outs = cli_calloc((size_t)n, sizeof *outs);
    for (int i = 0; i < n; i++) {
        states[i] = i == 0 ? st : rg_state_new(m);
        if (!states[i] || (i > 0 && rg_state_copy(states[i], st))) {
            fprintf(stderr, "rgemma: generate: %s\n", rg_last_error());
            goto done;
        }
        gps[i] = *gp0;
        gps[i].sampling.seed = seed == RG_SEED_RANDOM ? RG_SEED_RANDOM : seed + (uint64_t)i;
        gps[i].history = prompt;
        gps[i].n_history = n_prompt - 1;
        outs[i].as_ids = as_ids;
        seqs[i] = rg_seq_new(m, as_ids ? NULL : tok, states[i], prompt + n_prompt - 1, 1, &gps[i], collect_out,
                             &outs[i]);
        if (!seqs[i]) {
            fprintf(stderr, "rgemma: generate: %s\n", rg_last_error());
            goto done;
        }
    }
    double t1 = cli_time_s();
    int live = n;
    while (live > 0) {
        if (rg_seq_step(seqs, n, 0)) {
            fprintf(stderr, "rgemma: generate: %s\n", rg_last_error());
            goto done;
        }
        live = 0;
        for (int i = 0; i < n; i++) live += !rg_seq_done(seqs[i]);
    }
    double t_gen = cli_time_s() - t1;
    long long generated = 0;
    int interrupted = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        const rg_generate_result *r = rg_seq_result(seqs[i]);
        generated += r->generated_tokens;
        interrupted |= r->stop_reason == RG_STOP_CALLBACK;
        if (r->stop_reason == RG_STOP_ERROR) {
            fprintf(stderr, "rgemma: generate: sample %d: %s\n", i, rg_seq_error(seqs[i]));
            failed = 1;
        }
    }
    if (json) {
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < n; i++) {
            const rg_generate_result *r = rg_seq_result(seqs[i]);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "index", i);
            if (as_ids) cJSON_AddNullToObject(o, "text");
            else cJSON_AddStringToObject(o, "text", outs[i].text ? outs[i].text : "");
            cJSON *ids = cJSON_AddArrayToObject(o, "tokens");
            for (int k = 0; k < outs[i].n_ids; k++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(outs[i].ids[k]));
            cJSON_AddStringToObject(o, "finish_reason", finish_reason(r->stop_reason));
            cJSON_AddNumberToObject(o, "seed", (double)r->seed);
            cJSON_AddItemToArray(arr, o);
        }
        char *txt = cJSON_Print(arr);
        printf("%s\n", txt);
        free(txt);
        cJSON_Delete(arr);
    } else {
        for (int i = 0; i < n; i++) {
            const rg_generate_result *r = rg_seq_result(seqs[i]);
            printf("--- sample %d (seed %llu, stop: %s) ---\n", i, (unsigned long long)r->seed,
                   cli_stop_name(r->stop_reason));
            if (shown) fwrite(shown, 1, shown_len, stdout);
            if (outs[i].len) fwrite(outs[i].text, 1, outs[i].len, stdout);
            printf("\n");
        }
    }
    fflush(stdout);
    char a[32], b[32];
    fprintf(stderr, "\nprompt:    %6d tokens  %8.3f s  (processed once for %d samples)\n", n_prompt, t_prompt, n);
    fprintf(stderr, "generated: %6lld tokens  %8.3f s  %9.2f tok/s aggregate, %.2f tok/s per sample\n", generated,
            t_gen, t_gen > 0 ? generated / t_gen : 0, t_gen > 0 ? generated / t_gen / n : 0);
    fprintf(stderr, "state:     %d x %s (%s window)\n", n, cli_bytes(rg_model_state_bytes(m), a), rg_model_kv_type(m));
    fprintf(stderr, "peak RSS:  %s\n", cli_bytes(cli_peak_rss(), b));
    rc = failed ? 1 : interrupted ? 130 : 0;
done:
    for (int i = 0; i < n; i++) {
        rg_seq_free(seqs[i]);
        if (i > 0) rg_state_free(states[i]);
        free(outs[i].text);
        free(outs[i].ids);
    }
    free(states);
    free(seqs);
    free(gps);
    free(outs);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},
        CLI_GENERATION_OPTIONS,
        {"help", no_argument, 0, 'h'},
        {"prompt-ids", required_argument, 0, OPT_PROMPT_IDS},
        {"stop", required_argument, 0, OPT_STOP},
        {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
        {"chat", no_argument, 0, OPT_CHAT},
        {"system", required_argument, 0, OPT_SYSTEM},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"no-display-prompt", no_argument, 0, OPT_NO_DISPLAY},
        {"parse-special", no_argument, 0, OPT_PARSE_SPECIAL},
        {"no-parse-special", no_argument, 0, OPT_NO_PARSE_SPECIAL},
        {"save-state", required_argument, 0, OPT_SAVE_STATE},
        {"load-state", required_argument, 0, OPT_LOAD_STATE},
        {"parallel", required_argument, 0, OPT_PARALLEL},
        {"json", no_argument, 0, OPT_JSON},
        {"lora", required_argument, 0, OPT_LORA},
        CLI_KV_TYPE_OPTION,
        {0, 0, 0, 0}};
    const char *cmd = "generate", *model_path = NULL, *ids_arg = NULL, *save_path = NULL, *load_path = NULL;
    const char *text_arg = NULL, *file_arg = NULL, *system_arg = NULL, *tok_arg = NULL, *lora = NULL;
    const char *kv_type = NULL;
    const char *stops[MAX_STOPS];
    int n_stops = 0, chat = 0, display_prompt = 1, json = 0, parse_special = -1; /* -1: the default for the prompt's kind */
    long parallel = 0;
    rg_generate_params gp;
    rg_generate_params_default(&gp);
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:p:f:n:s:t:h", opts, NULL)) != -1) {
        int shared = cli_generation_option(cmd, c, optarg, &gp);
        if (shared < 0) return 2;
        if (shared) continue;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'p': text_arg = optarg; break;
        case 'f': file_arg = optarg; break;
        case OPT_PROMPT_IDS: ids_arg = optarg; break;
        case OPT_SAVE_STATE: save_path = optarg; break;
        case OPT_LOAD_STATE: load_path = optarg; break;
        case OPT_IGNORE_EOS: gp.ignore_eos = 1; break;
        case OPT_CHAT: chat = 1; break;
        case OPT_SYSTEM: system_arg = optarg; break;
        case OPT_TOKENIZER: tok_arg = optarg; break;
        case OPT_NO_DISPLAY: display_prompt = 0; break;
        case OPT_PARSE_SPECIAL: parse_special = 1; break;
        case OPT_NO_PARSE_SPECIAL: parse_special = 0; break;
        case OPT_JSON: json = 1; break;
        case OPT_LORA: lora = optarg; break;
        case CLI_OPT_KV_TYPE:
            if (cli_kv_type(cmd, optarg, &kv_type)) return 2;
            break;
        case OPT_PARALLEL:
            if (cli_int(cmd, "--parallel", optarg, 1, MAX_PARALLEL, &parallel)) return 2;
            break;
        case OPT_STOP:
            if (n_stops == MAX_STOPS || !*optarg) {
                fprintf(stderr, "rgemma: generate: --stop takes a non-empty string, at most %d times\n", MAX_STOPS);
                return 2;
            }
            stops[n_stops++] = optarg;
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
    if (!!text_arg + !!file_arg + !!ids_arg > 1) {
        fprintf(stderr, "rgemma: generate: give one of -p, -f and --prompt-ids\n");
        return 2;
    }
    if (!text_arg && !file_arg && !ids_arg && !load_path) {
        fprintf(stderr, "rgemma: generate: give a prompt (-p TEXT, -f FILE or --prompt-ids) or --load-state\n");
        return 2;
    }
    if ((chat || system_arg) && !text_arg && !file_arg) {
        fprintf(stderr, "rgemma: generate: --chat and --system need a text prompt (-p or -f)\n");
        return 2;
    }
    if (json && !parallel) {
        fprintf(stderr, "rgemma: generate: --json needs --parallel N\n");
        return 2;
    }
    if (parallel && save_path) {
        fprintf(stderr, "rgemma: generate: --save-state cannot be used with --parallel (which sample's state?)\n");
        return 2;
    }
    if (parallel && gp.sampling.seed != RG_SEED_RANDOM && gp.sampling.seed + (uint64_t)(parallel - 1) >= RG_SEED_RANDOM) {
        fprintf(stderr, "rgemma: generate: --seed + --parallel - 1 must stay below %llu (the random-seed value)\n",
                (unsigned long long)RG_SEED_RANDOM);
        return 2;
    }
    if (n_stops && ids_arg) {
        fprintf(stderr, "rgemma: generate: --stop works on text: use -p or -f\n");
        return 2;
    }

    if (save_path && cli_check_writable(cmd, "--save-state", save_path)) return 1;
    int rc = 1, failed;
    char *text = NULL;
    size_t text_len = 0;
    int32_t *ids = NULL, *prompt = NULL;
    int n_ids = 0;
    rg_model *m = NULL;
    rg_state *st = NULL;
    rg_tokenizer *tok = NULL;
    if (ids_arg && cli_ids(cmd, "--prompt-ids", ids_arg, &ids, &n_ids)) return 2;
    if (text_arg) {
        text = strdup(text_arg);
        text_len = strlen(text);
    } else if (file_arg) {
        if (cli_read_file(!strcmp(file_arg, "-") ? "/dev/stdin" : file_arg, 256u << 20, &text, &text_len)) {
            cli_error(cmd);
            return 1;
        }
    }
    if (text && text_len == 0) {
        fprintf(stderr, "rgemma: generate: the prompt is empty\n");
        goto done;
    }
    if (cli_load_model(model_path, lora, kv_type, &m)) {
        cli_error(cmd);
        goto done;
    }
    const rg_config *cfg = rg_model_config(m);
    /* text in or out needs the tokenizer; ids in/out uses it only for <end_of_turn> */
    tok = cli_tokenizer(cmd, model_path, tok_arg, text != NULL || tok_arg, &failed);
    if (failed) goto done;
    if (tok && rg_tokenizer_check_vocab(tok, cfg->vocab_size)) {
        cli_error(cmd);
        goto done;
    }
    st = rg_state_new(m);
    /* a loaded state may carry the token its run sampled last but never
     * processed: it goes first */
    int32_t pending[RG_STATE_MAX_PENDING];
    int n_pending = 0;
    if (load_path && rg_state_load_pending(st, load_path, pending, &n_pending)) {
        cli_error(cmd);
        goto done;
    }
    int fresh = rg_state_pos(st) == 0 && n_pending == 0;
    if (text) {
        size_t n;
        int r;
        if (chat) {
            r = rg_chat_turn_ex(tok, system_arg, text, fresh, n_pending ? pending[n_pending - 1] : -1,
                                parse_special == 1, &ids, &n);
            if (!r && n_pending) n_pending--; /* rg_chat_turn placed it */
        } else {
            r = rg_tokenize_ex(tok, text, text_len, fresh, 0, parse_special != 0, &ids, &n);
        }
        if (r) {
            cli_error(cmd);
            goto done;
        }
        n_ids = (int)n;
    }
    int n_prompt = n_pending + n_ids;
    if (n_prompt == 0) {
        fprintf(stderr, "rgemma: generate: %s holds no pending token: give a prompt to continue from it\n",
                load_path);
        goto done;
    }
    prompt = cli_malloc(sizeof *prompt * (size_t)n_prompt);
    memcpy(prompt, pending, sizeof *prompt * (size_t)n_pending);
    if (n_ids) memcpy(prompt + n_pending, ids, sizeof *ids * (size_t)n_ids);

    int32_t eot = tok ? rg_tokenizer_piece_id(tok, "<end_of_turn>") : -1;
    gp.stop_ids = &eot;
    gp.n_stop_ids = eot >= 0 && !gp.ignore_eos; /* --ignore-eos: no end-of-text id stops (as llama.cpp) */
    gp.stop = stops;
    gp.n_stop = n_stops;
    cli_catch_sigint();
    gp.cancel = &cli_interrupted;
    printer pr = {ids_arg != NULL || !tok, 1};
    if (parallel) {
        int show = text && !chat && display_prompt && !json;
        rc = run_parallel(m, tok, st, prompt, n_prompt, &gp, (int)parallel, pr.ids, show ? text : NULL, text_len,
                          json);
        goto done;
    }
    if (text && !chat && display_prompt) {
        fwrite(text, 1, text_len, stdout);
        fflush(stdout);
    }
    rg_generate_result res;
    if (rg_generate(m, pr.ids ? NULL : tok, st, prompt, n_prompt, &gp, print_out, &pr, &res)) {
        printf("\n");
        cli_error(cmd);
        goto done;
    }
    printf("\n");
    fflush(stdout);
    if (save_path) {
        int np = res.next_token >= 0;
        if (rg_state_save_pending(st, &res.next_token, np, save_path)) {
            cli_error(cmd);
            goto done;
        }
        fprintf(stderr, "saved state to %s (%zu bytes, position %lld)\n", save_path, rg_model_state_file_bytes(m),
                (long long)rg_state_pos(st));
    }
    cli_report(&res, m);
    rc = res.stop_reason == RG_STOP_CALLBACK ? 130 : 0; /* 130: interrupted, as shells report Ctrl-C */
done:
    free(text);
    free(prompt);
    free(ids);
    rg_tokenizer_free(tok);
    rg_state_free(st);
    rg_model_free(m);
    return rc;
}

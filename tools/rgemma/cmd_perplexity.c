/* rgemma perplexity: token-level negative log-likelihood of a text file, in
 * windows of -c tokens that start every --stride tokens (src/eval/logprob.c),
 * printed as llama.cpp does: a running "[i]ppl" per window, then
 * "Final estimate: PPL = x +/- y". */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "cli_util.h"
#include "eval_cli.h"
#include "rgemma.h"

#define MAX_FILE_BYTES ((size_t)1 << 30)

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma perplexity -m MODEL -f FILE [options]\n\n"
            "Perplexity of a text: each window of CTX tokens is run from an empty state\n"
            "(its first token replaced by BOS, as llama.cpp does) and scores the tokens no\n"
            "earlier window scored, so each scored token sees at least CTX-STRIDE before it.\n\n"
            "  -m, --model PATH     model folder or file\n"
            "  -hf ORG/NAME[@REV]   a model of Hugging Face, pulled first (rgemma pull;\n"
            "                       --offline: the cache only)\n"
            "  -f, --file FILE      the text (UTF-8); with --ids, token ids\n"
            "  -c, --ctx N          window length in tokens (default 512; 0 = the whole file\n"
            "                       as one sequence, the recurrent state carrying everything)\n"
            "      --stride S       a window starts every S tokens and scores its last S\n"
            "                       (default CTX/2; S = CTX gives non-overlapping windows)\n"
            "      --ids            FILE holds token ids (separated by spaces, commas or\n"
            "                       newlines), used exactly as given, no tokenizer needed\n"
            "      --tokenizer PATH tokenizer (default: the model folder's)\n"
            "      --lora PATH      LoRA adapters applied at load (rgemma train --lora's folder)\n"
            "      --kv-type f32|f16|q8_0 attention window (KV cache) element type (default f32)\n"
            "      --json           print a JSON report on stdout (the running values go to stderr)\n"
            "  -t, --threads N      worker threads (default: all cores)\n");
}

/* Token ids separated by whitespace, commas or brackets. */
static int read_ids(const char *path, int32_t **out, int64_t *n) {
    char *data;
    size_t len;
    if (cli_read_file(path, MAX_FILE_BYTES, &data, &len) < 0) return -1;
    int64_t cap = 1024, k = 0;
    int32_t *ids = cli_malloc(sizeof(int32_t) * (size_t)cap);
    for (size_t i = 0; i < len;) {
        char c = data[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']') {
            i++;
            continue;
        }
        long long v = 0;
        size_t b = i;
        while (i < len && data[i] >= '0' && data[i] <= '9' && v <= INT32_MAX) v = v * 10 + (data[i++] - '0');
        if (i == b || v > INT32_MAX) {
            free(ids);
            free(data);
            return cli_fail("%s: byte %zu: expected a token id (a non-negative integer)", path, b);
        }
        if (k == cap) ids = cli_realloc(ids, sizeof(int32_t) * (size_t)(cap *= 2));
        ids[k++] = (int32_t)v;
    }
    free(data);
    *out = ids;
    *n = k;
    return 0;
}

static int read_text_tokens(const char *path, const rg_tokenizer *tok, int32_t **out, int64_t *n) {
    char *data;
    size_t len;
    if (cli_read_file(path, MAX_FILE_BYTES, &data, &len) < 0) return -1;
    int32_t *ids;
    size_t k;
    int rc = rg_tokenize(tok, data, len, 1, 0, &ids, &k);
    free(data);
    if (rc < 0) return -1;
    *out = ids;
    *n = (int64_t)k;
    return 0;
}

int cmd_perplexity(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"ctx", required_argument, 0, 'c'},   {"stride", required_argument, 0, 'S'},
        {"ids", no_argument, 0, 'I'},         {"tokenizer", required_argument, 0, 'T'},
        {"json", no_argument, 0, 'J'},        {"threads", required_argument, 0, 't'},
        {"lora", required_argument, 0, 'L'},  {"help", no_argument, 0, 'h'},
        CLI_KV_TYPE_OPTION,                   {0, 0, 0, 0}};
    const char *model_path = NULL, *file = NULL, *tok_path = NULL, *lora = NULL, *kv_type = NULL;
    long ctx = 512, stride = -1, v;
    int ids_mode = 0, json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:f:c:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'f': file = optarg; break;
        case 'T': tok_path = optarg; break;
        case 'L': lora = optarg; break;
        case CLI_OPT_KV_TYPE:
            if (cli_kv_type("perplexity", optarg, &kv_type)) return 2;
            break;
        case 'I': ids_mode = 1; break;
        case 'J': json = 1; break;
        case 'c':
            if (cli_int("perplexity", "-c", optarg, 0, INT32_MAX, &ctx)) return 2;
            if (ctx == 1) {
                fprintf(stderr, "rgemma: perplexity: -c must be 0 or at least 2 (got 1)\n");
                return 2;
            }
            break;
        case 'S':
            if (cli_int("perplexity", "--stride", optarg, 1, INT32_MAX, &stride)) return 2;
            break;
        case 't':
            if (cli_int("perplexity", "--threads", optarg, 1, 4096, &v)) return 2;
            rg_set_threads((int)v);
            break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: perplexity: unknown or incomplete option '%s' (try 'rgemma perplexity --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rgemma: perplexity: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model_path || !file) {
        fprintf(stderr, "rgemma: perplexity: -m MODEL and -f FILE are required (try 'rgemma perplexity --help')\n");
        return 2;
    }
    if (stride < 0) stride = ctx > 1 ? ctx / 2 : 0;
    if (ctx > 0 && stride > ctx) {
        fprintf(stderr, "rgemma: perplexity: --stride %ld is longer than the window (-c %ld)\n", stride, ctx);
        return 2;
    }

    rg_model *m = NULL;
    rg_tokenizer *tok = NULL;
    rg_state *s = NULL;
    int32_t *tokens = NULL;
    rg_ppl_window *plan = NULL;
    cJSON *report = NULL;
    int64_t n = 0, nw = 0;
    int rc = 1;
    if (cli_load_model(model_path, lora, kv_type, &m) < 0) goto fail;
    const rg_config *cfg = rg_model_config(m);
    int32_t bos;
    if (ids_mode) {
        if (read_ids(file, &tokens, &n) < 0) goto fail;
        bos = n > 0 && tokens[0] == cfg->bos_id ? cfg->bos_id : -1; /* BOS-started text: every window too */
    } else {
        if (cli_load_tokenizer(model_path, tok_path, &tok) < 0 || rg_tokenizer_check_vocab(tok, cfg->vocab_size) ||
            read_text_tokens(file, tok, &tokens, &n) < 0)
            goto fail;
        bos = rg_tokenizer_bos(tok);
    }
    if (rg_ppl_plan(n, ctx, stride, &plan, &nw) < 0) goto fail;
    int64_t to_score = 0;
    for (int64_t i = 0; i < nw; i++) to_score += plan[i].start + plan[i].len - plan[i].first_scored;
    fprintf(stderr, "perplexity: %lld tokens, %lld window%s of %lld, stride %lld, scoring %lld tokens\n",
            (long long)n, (long long)nw, nw == 1 ? "" : "s", (long long)plan[0].len,
            (long long)(nw > 1 ? plan[1].start : plan[0].len), (long long)to_score);
    s = rg_state_new(m);
    if (!s) goto fail;
    FILE *run = json ? stderr : stdout;
    cJSON *running = cJSON_CreateArray();
    report = cJSON_CreateObject();
    rg_nll_stats st = {0};
    double t0 = cli_time_s();
    int64_t fed = 0;
    for (int64_t i = 0; i < nw; i++) {
        if (rg_ppl_run_window(m, s, tokens, &plan[i], bos, &st) < 0) {
            if (i) fputc('\n', run);
            cJSON_Delete(running);
            goto fail;
        }
        fed += plan[i].len - 1;
        double ppl = rg_nll_ppl(&st);
        fprintf(run, "%s[%lld]%.4f", i ? "," : "", (long long)i + 1, ppl);
        fflush(run);
        cJSON_AddItemToArray(running, cJSON_CreateNumber(ppl));
    }
    fputc('\n', run);
    double secs = cli_time_s() - t0, ppl = rg_nll_ppl(&st), err = rg_nll_ppl_stderr(&st);
    fprintf(stderr, "perplexity: %.2f s, %.1f tokens/s\n", secs, secs > 0 ? fed / secs : 0);
    if (json) {
        cJSON_AddStringToObject(report, "model", model_path);
        cJSON_AddStringToObject(report, "file", file);
        cJSON_AddNumberToObject(report, "tokens", (double)n);
        cJSON_AddNumberToObject(report, "scored", (double)st.n);
        cJSON_AddNumberToObject(report, "ctx", (double)plan[0].len);
        cJSON_AddNumberToObject(report, "stride", (double)(nw > 1 ? plan[1].start : plan[0].len));
        cJSON_AddNumberToObject(report, "windows", (double)nw);
        cJSON_AddNumberToObject(report, "nll", st.sum / st.n);
        cJSON_AddNumberToObject(report, "ppl", ppl);
        if (st.n > 1) cJSON_AddNumberToObject(report, "ppl_stderr", err);
        else cJSON_AddNullToObject(report, "ppl_stderr");
        cJSON_AddNumberToObject(report, "seconds", secs);
        cJSON_AddNumberToObject(report, "tokens_per_second", secs > 0 ? fed / secs : 0);
        cJSON_AddItemToObject(report, "running", running);
        char *out = cJSON_Print(report);
        printf("%s\n", out);
        free(out);
    } else {
        cJSON_Delete(running);
        printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, st.n > 1 ? err : 0.0);
    }
    rc = 0;
fail:
    if (rc) cli_error("perplexity");
    cJSON_Delete(report);
    free(plan);
    free(tokens);
    rg_state_free(s);
    rg_tokenizer_free(tok);
    rg_model_free(m);
    return rc;
}

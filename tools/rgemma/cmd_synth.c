/* rgemma synth: write a checkpoint folder of RANDOM weights in the released
 * shapes (rg_synth), plus the Gemma tokenizer when one is at hand. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "cli_util.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma synth --preset 2b|9b|tiny|CONFIG.json -o DIR [options]\n\n"
            "Writes a Hugging Face RecurrentGemma folder (config.json, sharded safetensors,\n"
            "model.safetensors.index.json, tokenizer) whose weights are RANDOM: exactly the\n"
            "tensor names and shapes of the released checkpoints, never trained, so the\n"
            "text it generates is meaningless. For speed tests and end-to-end trials.\n\n"
            "  --preset P         2b, 9b (released shapes), tiny (small widths, real 256000\n"
            "                     vocabulary), or a config.json to copy the shapes from\n"
            "  -o, --output DIR   folder to write (created if needed)\n"
            "  --dtype T          f32, bf16 (default) or f16\n"
            "  --seed N           random seed (default 1); same seed -> same bytes\n"
            "  --max-shard-size S largest shard, e.g. 2GB (default), 500MB\n"
            "  --tokenizer PATH   tokenizer.model / tokenizer.json / folder to copy in\n"
            "                     (default: ~/.cache/rgemma/gemma-tokenizer, filled by\n"
            "                     scripts/get-gemma-tokenizer.sh)\n"
            "  -t, --threads N    worker threads (default: all cores)\n");
}

typedef struct {
    double t0, last;
    int tty;
} progress_bar;

static void show_progress(void *ctx, uint64_t done, uint64_t total) {
    progress_bar *p = ctx;
    double now = cli_time_s();
    if (!p->tty || (done < total && now - p->last < 0.1)) return;
    p->last = now;
    int width = 30, fill = total ? (int)((double)done / (double)total * width) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double el = now - p->t0;
    fprintf(stderr, "\r  [%s] %3d%%  %.2f / %.2f GB  %.2f GB/s ", bar, (int)(100.0 * (double)done / (double)total),
            (double)done / 1e9, (double)total / 1e9, el > 0 ? (double)done / 1e9 / el : 0.0);
    if (done >= total) fputc('\n', stderr);
}

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mult = 1;
    if (!strcasecmp(end, "GB") || !strcasecmp(end, "G")) mult = 1e9;
    else if (!strcasecmp(end, "MB") || !strcasecmp(end, "M")) mult = 1e6;
    else if (!strcasecmp(end, "KB") || !strcasecmp(end, "K")) mult = 1e3;
    else if (*end) return -1;
    if (errno || end == s || !(v > 0) || v * mult > 1e15) return -1;
    *out = (uint64_t)(v * mult);
    return 0;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    if (!in) return cli_fail("%s: cannot open: %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return cli_fail("%s: cannot create: %s", to, strerror(errno));
    }
    char buf[1 << 16];
    size_t k;
    int rc = 0;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) rc = cli_fail("%s: write failed: %s", to, strerror(errno));
    if (ferror(in)) rc = cli_fail("%s: read failed", from);
    fclose(in);
    if (fclose(out) && !rc) rc = cli_fail("%s: write failed: %s", to, strerror(errno));
    return rc;
}

/* Copies the tokenizer files found at src (a file or a folder) into dir;
 * returns how many were copied, or -1. */
static int copy_tokenizer(const char *src, const char *dir) {
    static const char *const names[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    int copied = 0;
    if (cli_is_file(src)) { /* a .json is an HF tokenizer.json, anything else a SentencePiece model */
        size_t n = strlen(src);
        int json = n >= 5 && !strcmp(src + n - 5, ".json");
        char *to = cli_path_join(dir, json ? "tokenizer.json" : "tokenizer.model");
        int rc = copy_file(src, to);
        free(to);
        return rc ? -1 : 1;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *from = cli_path_join(src, names[i]);
        if (cli_is_file(from)) {
            char *to = cli_path_join(dir, names[i]);
            int rc = copy_file(from, to);
            free(to);
            if (rc) {
                free(from);
                return -1;
            }
            copied++;
        }
        free(from);
    }
    return copied;
}

int cmd_synth(int argc, char **argv) {
    static const struct option opts[] = {
        {"preset", required_argument, 0, 'P'}, {"output", required_argument, 0, 'o'},
        {"dtype", required_argument, 0, 'd'},  {"seed", required_argument, 0, 's'},
        {"max-shard-size", required_argument, 0, 'S'}, {"tokenizer", required_argument, 0, 'T'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *preset = NULL, *out = NULL, *tok = NULL;
    rg_synth_params o;
    rg_synth_params_default(&o);
    const char *dtype_name = "BF16";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:t:s:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'P': preset = optarg; break;
        case 'o': out = optarg; break;
        case 'T': tok = optarg; break;
        case 'd':
            if (!strcasecmp(optarg, "f32") || !strcasecmp(optarg, "float32")) o.dtype = "f32", dtype_name = "F32";
            else if (!strcasecmp(optarg, "bf16") || !strcasecmp(optarg, "bfloat16")) o.dtype = "bf16", dtype_name = "BF16";
            else if (!strcasecmp(optarg, "f16") || !strcasecmp(optarg, "float16")) o.dtype = "f16", dtype_name = "F16";
            else {
                fprintf(stderr, "rgemma: synth: --dtype must be f32, bf16 or f16 (got \"%s\")\n", optarg);
                return 2;
            }
            break;
        case 's':
            errno = 0;
            o.seed = strtoull(optarg, &end, 0);
            if (errno || *end || !*optarg || optarg[0] == '-') {
                fprintf(stderr, "rgemma: synth: --seed must be a non-negative integer (got \"%s\")\n", optarg);
                return 2;
            }
            break;
        case 'S':
            if (parse_size(optarg, &o.max_shard_bytes)) {
                fprintf(stderr, "rgemma: synth: --max-shard-size must be a size like 2GB or 500MB (got \"%s\")\n",
                        optarg);
                return 2;
            }
            break;
        case 't': {
            long n;
            if (cli_int("synth", "--threads", optarg, 1, 4096, &n)) return 2;
            rg_set_threads((int)n);
            break;
        }
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: synth: unknown or incomplete option '%s' (try 'rgemma synth --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rgemma: synth: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!preset || !out) {
        fprintf(stderr, "rgemma: synth: --preset and -o DIR are required (try 'rgemma synth --help')\n");
        return 2;
    }
    rg_config cfg;
    int is_file = strchr(preset, '/') || strstr(preset, ".json");
    if (is_file ? rg_config_load(preset, &cfg) : rg_synth_preset(preset, &cfg)) {
        cli_error("synth");
        return 1;
    }
    int n;
    uint64_t bytes, params;
    if (rg_synth_size(&cfg, o.dtype, &n, &params, &bytes)) {
        cli_error("synth");
        return 1;
    }
    fprintf(stderr,
            "rgemma synth: writing RANDOM weights (never trained: generated text will be meaningless)\n"
            "  preset %s: hidden %d, %d layers, vocab %d, %llu parameters in %d tensors, %s, %.2f GB -> %s\n",
            preset, cfg.hidden_size, cfg.num_layers, cfg.vocab_size, (unsigned long long)params, n,
            dtype_name, (double)bytes / 1e9, out);
    progress_bar bar = {cli_time_s(), 0, isatty(2)};
    o.progress = show_progress;
    o.progress_ctx = &bar;
    int shards;
    if (rg_synth(&cfg, out, &o, &shards)) {
        fprintf(stderr, "\nrgemma: synth: %s\n", rg_last_error());
        return 1;
    }
    double secs = cli_time_s() - bar.t0;

    char *dflt = NULL;
    if (!tok) {
        const char *home = getenv("HOME");
        dflt = cli_path_join(home && *home ? home : ".", ".cache/rgemma/gemma-tokenizer");
    }
    const char *tsrc = tok ? tok : dflt;
    int copied = 0;
    if (tok || cli_is_dir(tsrc)) {
        if (!cli_is_dir(tsrc) && !cli_is_file(tsrc)) {
            fprintf(stderr, "rgemma: synth: tokenizer %s: no such file or folder\n", tsrc);
            free(dflt);
            return 1;
        }
        copied = copy_tokenizer(tsrc, out);
        if (copied < 0) {
            cli_error("synth");
            free(dflt);
            return 1;
        }
        if (copied == 0 && tok) {
            fprintf(stderr, "rgemma: synth: %s holds no tokenizer.model or tokenizer.json\n", tsrc);
            free(dflt);
            return 1;
        }
    }
    fprintf(stderr, "wrote %s: %d shard%s, %.2f GB in %.1f s (%.2f GB/s); RANDOM weights, seed %llu\n", out, shards,
            shards == 1 ? "" : "s", (double)bytes / 1e9, secs, secs > 0 ? (double)bytes / 1e9 / secs : 0.0,
            (unsigned long long)o.seed);
    if (copied > 0)
        fprintf(stderr, "tokenizer: copied %d file%s from %s\n", copied, copied == 1 ? "" : "s", tsrc);
    else
        fprintf(stderr,
                "tokenizer: none found at %s (run scripts/get-gemma-tokenizer.sh, or pass --tokenizer);\n"
                "           without it the model takes --prompt-ids only\n",
                tsrc);
    free(dflt);
    return 0;
}

/* rgemma quantize: write a GGUF file from a Hugging Face checkpoint, or
 * (--eval) measure how far a quantised model's distributions are from its
 * reference. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli_util.h"
#include "commands.h"
#include "rgemma.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma quantize IN_DIR OUT.gguf [--type TYPE] [--embed-type TYPE] [--tensor-type KIND=TYPE]\n"
            "       rgemma quantize --eval REF MODEL [-n N] [--ctx L] [--seed S] [--json]\n"
            "\n"
            "  IN_DIR          Hugging Face folder (config.json + safetensors) or a .safetensors file\n"
            "  --type T        type of the projection matrices: f32, bf16, q8_0 (default), q4_0, q4_k,\n"
            "                  q6_k, or the mix q4_k_m (q4_k, the most sensitive kinds in q6_k); norms,\n"
            "                  biases, conv and RG-LRU parameters stay float32, the RG-LRU gates\n"
            "                  bfloat16 (see README)\n"
            "  --embed-type T  type of the tied embedding/logit matrix (default q8_0 for --type q8_0\n"
            "                  and q4_0, q6_k for q4_k and q4_k_m, else --type: its error goes\n"
            "                  straight into the logits)\n"
            "  --tensor-type KIND=TYPE  the tensors whose name contains .KIND. (down_proj, linear_x,\n"
            "                  embed_tokens, layers.3.mlp_block, ...) get TYPE (repeatable; the last\n"
            "                  match wins, over --type, --embed-type and the mix)\n"
            "  --eval REF MODEL  run both models over N tokens (random ids, BOS first, sequences of L)\n"
            "                  and print the mean/max KL(REF || MODEL), top-1 agreement, max |dlogit|\n"
            "  -n, --n-tokens N  positions to compare (default 4096); --ctx L: sequence length (default 512)\n"
            "  --seed S        seed of the random ids (default 1)\n"
            "  --json          print the --eval result as JSON\n"
            "  -t, --threads N threads (default: all cores)\n");
}

typedef struct {
    int tty;
    char last[128];
    struct {
        char type[8];
        const char *why;
        int tensors;
    } kinds[16];
    int n_kinds;
} progress_state;

static void on_progress(void *ctx, const char *tensor, const char *type, const char *why, uint64_t done,
                        uint64_t total) {
    progress_state *ps = ctx;
    if (tensor) {
        int k = 0;
        while (k < ps->n_kinds && (strcmp(ps->kinds[k].type, type) || ps->kinds[k].why != why)) k++;
        if (k == ps->n_kinds && k < 16) {
            snprintf(ps->kinds[k].type, sizeof ps->kinds[k].type, "%s", type);
            ps->kinds[k].why = why;
            ps->n_kinds++;
        }
        if (k < 16) ps->kinds[k].tensors++;
    }
    if (!ps->tty) return;
    int width = 30, filled = total ? (int)(width * (double)done / (double)total) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %3d%%  %7.2f / %.2f GiB  %-56.56s %-5s", bar,
            total ? (int)(100.0 * (double)done / (double)total) : 100, (double)done / (1u << 30),
            (double)total / (1u << 30), tensor ? tensor : "done", type ? type : "");
    if (!tensor) fputc('\n', stderr);
}

/* SIGINT/SIGTERM during the conversion: remove the temporary (the library
 * writes OUT.tmp and renames it when complete), say so and die of the signal.
 * Only async-signal-safe calls here. */
static char *g_tmp;
static size_t g_tmp_msg_len;
static char *g_tmp_msg;

static void on_stop_signal(int sig) {
    if (g_tmp) unlink(g_tmp);
    if (g_tmp_msg) {
        ssize_t w = write(2, g_tmp_msg, g_tmp_msg_len);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_stop_signals(const char *out) {
    size_t n = strlen(out);
    g_tmp = malloc(n + 5);
    memcpy(g_tmp, out, n);
    memcpy(g_tmp + n, ".tmp", 5);
    const char *fmt = "\nrgemma: quantize: interrupted: removed %s; %s was not written\n";
    g_tmp_msg_len = (size_t)snprintf(NULL, 0, fmt, g_tmp, out);
    g_tmp_msg = malloc(g_tmp_msg_len + 1);
    snprintf(g_tmp_msg, g_tmp_msg_len + 1, fmt, g_tmp, out);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void release_stop_signals(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    free(g_tmp);
    free(g_tmp_msg);
    g_tmp = g_tmp_msg = NULL;
}

static int run_quantize(const char *in, const char *out, const char *type, const char *embed_type,
                        const char *tensor_types) {
    rg_quantize_params p;
    rg_quantize_params_default(&p);
    if (type) p.type = type;
    p.embed_type = embed_type;
    p.tensor_types = tensor_types;
    progress_state ps = {.tty = isatty(2)};
    p.progress = on_progress;
    p.progress_ctx = &ps;
    catch_stop_signals(out);
    int rc = rg_quantize(in, out, &p);
    release_stop_signals();
    if (rc) {
        if (ps.tty) fputc('\n', stderr);
        cli_error("quantize");
        return 1;
    }
    FILE *f = fopen(out, "rb");
    long size = -1;
    if (f && !fseek(f, 0, SEEK_END)) size = ftell(f);
    if (f) fclose(f);
    printf("wrote %s (%.1f MiB, --type %s)\n", out, (double)size / (1 << 20), p.type);
    for (int k = 0; k < ps.n_kinds; k++)
        printf("  %-5s %4d tensors%s%s%s\n", ps.kinds[k].type, ps.kinds[k].tensors, ps.kinds[k].why ? "  (" : "",
               ps.kinds[k].why ? ps.kinds[k].why : "", ps.kinds[k].why ? ")" : "");
    return 0;
}

static int run_eval(const char *ref_path, const char *path, int n, int ctx, uint64_t seed, int json) {
    rg_model *ref = NULL, *m = NULL;
    if (rg_model_load(ref_path, &ref) || rg_model_load(path, &m)) {
        cli_error("quantize");
        rg_model_free(ref);
        return 1;
    }
    int V = rg_model_config(ref)->vocab_size, bos = rg_model_config(ref)->bos_id;
    int32_t *tok = malloc(sizeof *tok * (size_t)n);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        /* splitmix64 */
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        tok[i] = i % ctx == 0 ? bos : (int32_t)(z % (uint64_t)V);
    }
    rg_divergence d;
    int rc = rg_model_divergence(ref, m, tok, n, ctx, &d);
    free(tok);
    rg_model_free(ref);
    rg_model_free(m);
    if (rc) {
        cli_error("quantize");
        return 1;
    }
    if (json)
        printf("{\"reference\": \"%s\", \"model\": \"%s\", \"positions\": %lld, \"seq_len\": %d, \"seed\": %llu, "
               "\"mean_kl\": %.6g, \"max_kl\": %.6g, \"top1_agreement\": %.6f, \"max_abs_logit_diff\": %.6g}\n",
               ref_path, path, (long long)d.positions, ctx, (unsigned long long)seed, d.mean_kl, d.max_kl,
               d.top1_agreement, d.max_abs_logit_diff);
    else
        printf("reference   %s\nmodel       %s\npositions   %lld (sequences of %d random ids, seed %llu)\n"
               "mean KL     %.4g nats\nmax KL      %.4g nats\ntop-1       %.2f %%\nmax |dlogit| %.4g\n",
               ref_path, path, (long long)d.positions, ctx, (unsigned long long)seed, d.mean_kl, d.max_kl,
               100 * d.top1_agreement, d.max_abs_logit_diff);
    return 0;
}

int cmd_quantize(int argc, char **argv) {
    enum { OPT_TYPE = 256, OPT_EMBED_TYPE, OPT_TENSOR_TYPE, OPT_EVAL, OPT_CTX, OPT_SEED, OPT_JSON };
    static const struct option opts[] = {
        {"type", required_argument, 0, OPT_TYPE}, {"embed-type", required_argument, 0, OPT_EMBED_TYPE},
        {"tensor-type", required_argument, 0, OPT_TENSOR_TYPE},
        {"eval", no_argument, 0, OPT_EVAL},       {"n-tokens", required_argument, 0, 'n'},
        {"ctx", required_argument, 0, OPT_CTX},   {"seed", required_argument, 0, OPT_SEED},
        {"threads", required_argument, 0, 't'},   {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    const char *type = NULL, *embed_type = NULL;
    char tensor_types[1024] = ""; /* the --tensor-type values, comma-separated */
    int eval = 0, json = 0, c;
    long n = 4096, ctx = 512, seed = 1, v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_TYPE: type = optarg; break;
        case OPT_EMBED_TYPE: embed_type = optarg; break;
        case OPT_TENSOR_TYPE:
            if (strlen(tensor_types) + strlen(optarg) + 2 > sizeof tensor_types || strchr(optarg, ',')) {
                fprintf(stderr, "rgemma: quantize: --tensor-type %s: one KIND=TYPE each, %zu bytes in all\n", optarg,
                        sizeof tensor_types - 1);
                return 2;
            }
            if (*tensor_types) strcat(tensor_types, ",");
            strcat(tensor_types, optarg);
            break;
        case OPT_EVAL: eval = 1; break;
        case OPT_JSON: json = 1; break;
        case 'n': if (cli_int("quantize", "-n", optarg, 1, 1L << 30, &n)) return 2; break;
        case OPT_CTX: if (cli_int("quantize", "--ctx", optarg, 1, 1L << 24, &ctx)) return 2; break;
        case OPT_SEED: if (cli_int("quantize", "--seed", optarg, 0, LONG_MAX, &seed)) return 2; break;
        case 't':
            if (cli_int("quantize", "--threads", optarg, 1, 4096, &v)) return 2;
            rg_set_threads((int)v);
            break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: quantize: unknown or incomplete option '%s' (try 'rgemma quantize --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "rgemma: quantize: %s (try 'rgemma quantize --help')\n",
                argc - optind < 2 ? (eval ? "--eval needs REF and MODEL" : "needs IN and OUT.gguf")
                                  : "too many arguments");
        return 2;
    }
    const char *a = argv[optind], *b = argv[optind + 1];
    if (eval) return run_eval(a, b, (int)n, (int)ctx, (uint64_t)seed, json);
    return run_quantize(a, b, type, embed_type, *tensor_types ? tensor_types : NULL);
}

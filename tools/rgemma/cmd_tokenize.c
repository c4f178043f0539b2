/* rgemma tokenize / detokenize: text <-> token ids with a model's tokenizer
 * (-m) or a tokenizer.model, tokenizer.json or folder (--tokenizer); JSON
 * Lines in and out for batches; conversion of tokenizer.json to
 * tokenizer.model; a speed benchmark. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "rgemma.h"
#include "cli_util.h"
#include "commands.h"

static const char *tokenize_usage =
    "usage: rgemma tokenize (-m MODEL | --tokenizer TOKENIZER) [--bos] [--eos] [[--] TEXT]\n"
    "       rgemma tokenize (-m MODEL | --tokenizer TOKENIZER) [--bos] [--eos] --jsonl FILE\n"
    "       rgemma tokenize --convert TOKENIZER OUT.model\n"
    "       rgemma tokenize (-m MODEL | --tokenizer TOKENIZER) --bench FILE\n"
    "\n"
    "TEXT (or standard input when it is missing) is encoded and the ids printed on one line.\n"
    "  -m, --model PATH  use the model's tokenizer (inside a .gguf file, else in the model's folder)\n"
    "  -hf ORG/NAME[@REV] the tokenizer of a Hugging Face model, pulled first (rgemma pull)\n"
    "  --tokenizer PATH  a tokenizer.model, a tokenizer.json or a folder with one of them\n"
    "  -t, --threads N   threads (accepted as in every command; tokenizing uses one)\n"
    "  --bos, --eos     add the BOS / EOS id\n"
    "  --no-parse-special  encode spelled special pieces (\"<end_of_turn>\", ...) as plain text,\n"
    "                   as chat turns do (default: they become those pieces)\n"
    "  --jsonl FILE     read lines {\"text\": ...} (or {\"hex\": ...}) from FILE ('-' = stdin),\n"
    "                   write one line {\"ids\": [...]} per line, in order\n"
    "  --convert IN OUT write the SentencePiece tokenizer.model for IN (e.g. a tokenizer.json)\n"
    "  --bench FILE     print the load time and the encode/decode speed on FILE's text\n";

static const char *detokenize_usage =
    "usage: rgemma detokenize (-m MODEL | --tokenizer TOKENIZER) IDS...\n"
    "       rgemma detokenize (-m MODEL | --tokenizer TOKENIZER) --jsonl FILE\n"
    "\n"
    "IDS are separated by spaces or commas (\"[1, 2]\" works too); the text is printed with a newline.\n"
    "  -m, --model PATH  use the model's tokenizer (inside a .gguf file, else in the model's folder)\n"
    "  -hf ORG/NAME[@REV] the tokenizer of a Hugging Face model, pulled first (rgemma pull)\n"
    "  --tokenizer PATH  a tokenizer.model, a tokenizer.json or a folder with one of them\n"
    "  -t, --threads N   threads (accepted as in every command; detokenizing uses one)\n"
    "  --jsonl FILE     read lines {\"ids\": [...]} from FILE ('-' = stdin), write {\"text\": ...} lines\n";

/* the command running ("tokenize" or "detokenize"): every error line names
 * it, as in the other commands */
static const char *cmd_name = "tokenize";

static int fail(const char *what) {
    fprintf(stderr, "rgemma: %s: %s%s%s\n", cmd_name, what ? what : "", what ? ": " : "", cli_errmsg());
    return 1;
}

/* The tokenizer: --tokenizer PATH, else the model's (-m); prints the error. */
static rg_tokenizer *load(const char *model_path, const char *tok_path) {
    rg_tokenizer *t = NULL;
    if (tok_path ? rg_tokenizer_load(tok_path, &t) : rg_tokenizer_find(model_path, &t)) {
        fail(NULL);
        return NULL;
    }
    return t;
}

/* The options tokenize and detokenize share: -m, --tokenizer, -t. Returns 1
 * when c was one of them, 0 when not, -1 on a bad value (printed). */
enum { OPT_TOKENIZER = 256, OPT_BOS, OPT_EOS, OPT_SPECIAL, OPT_NO_SPECIAL, OPT_JSONL, OPT_BENCH, OPT_CONVERT };
static int common_option(const char *cmd, int c, const char **model_path, const char **tok_path) {
    long v;
    switch (c) {
    case 'm': *model_path = optarg; return 1;
    case OPT_TOKENIZER: *tok_path = optarg; return 1;
    case 't':
        if (cli_int(cmd, "--threads", optarg, 1, 4096, &v)) return -1;
        rg_set_threads((int)v);
        return 1;
    default: return 0;
    }
}

static int bad_option(const char *cmd, char **argv) {
    fprintf(stderr, "rgemma: %s: unknown option or missing value: %s (try 'rgemma %s --help')\n", cmd,
            argv[optind - 1], cmd);
    return 2;
}

static int read_stream(FILE *f, char **data, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = cli_malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = cli_realloc(buf, cap);
        }
    }
    if (ferror(f)) {
        free(buf);
        return cli_fail("read error");
    }
    *data = buf;
    *len = n;
    return 0;
}

static void print_ids_json(FILE *f, const int32_t *ids, size_t n) {
    fputs("{\"ids\": [", f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", ids[i]);
    fputs("]}\n", f);
}

static int hex_decode(const char *hex, size_t n, char **out, size_t *len) {
    if (n % 2) return cli_fail("\"hex\" has an odd number of digits");
    char *b = cli_malloc(n / 2 + 1);
    for (size_t i = 0; i < n; i += 2) {
        unsigned v;
        char pair[3] = {hex[i], hex[i + 1], 0};
        char *end;
        v = (unsigned)strtoul(pair, &end, 16);
        if (*end || !hex[i] || !hex[i + 1] || pair[0] == '-' || pair[0] == '+' || pair[0] == ' ') {
            free(b);
            return cli_fail("\"hex\" holds a non-hex digit");
        }
        b[i / 2] = (char)v;
    }
    *out = b;
    *len = n / 2;
    return 0;
}

/* Run fn on each non-blank line of path ('-' = stdin); errors name the line. */
static int for_each_line(const char *path, int (*fn)(void *, const char *, size_t), void *ctx) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "rgemma: %s: %s: cannot open: %s\n", cmd_name, path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    for (long no = 1; (n = getline(&line, &cap, f)) >= 0; no++) {
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        size_t i = 0;
        while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == len) continue;
        if (fn(ctx, line, len)) {
            fprintf(stderr, "rgemma: %s: %s:%ld: %s\n", cmd_name, path, no, cli_errmsg());
            rc = 1;
            break;
        }
    }
    free(line);
    if (f != stdin) fclose(f);
    fflush(stdout);
    return rc;
}

typedef struct {
    const rg_tokenizer *t;
    int bos, eos, special;
} line_ctx;

static int tokenize_line(void *vctx, const char *line, size_t len) {
    line_ctx *c = vctx;
    char *text = NULL, *hex = NULL;
    size_t n = 0, hn = 0;
    int rc = rg_jsonl_string(line, len, "text", &text, &n);
    if (rc == 0) {
        rc = rg_jsonl_string(line, len, "hex", &hex, &hn);
        if (rc == 0) rc = cli_fail("no \"text\" (or \"hex\") string");
        if (rc == 1) rc = hex_decode(hex, hn, &text, &n) ? -1 : 1;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (rc == 1) rc = rg_tokenize_ex(c->t, text, n, c->bos, c->eos, c->special, &ids, &n_ids);
    if (rc == 0) print_ids_json(stdout, ids, n_ids);
    free(ids);
    free(text);
    free(hex);
    return rc < 0 ? -1 : 0;
}

static int detokenize_line(void *vctx, const char *line, size_t len) {
    line_ctx *c = vctx;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = rg_jsonl_ints(line, len, "ids", &ids, &n);
    if (rc == 0) rc = cli_fail("no \"ids\" array");
    char *text = NULL;
    size_t tlen = 0;
    if (rc == 1) rc = rg_detokenize(c->t, ids, n, &text, &tlen);
    if (rc == 0) {
        fputs("{\"text\": ", stdout);
        rg_json_write_string(stdout, text, tlen);
        fputs("}\n", stdout);
    }
    free(ids);
    free(text);
    return rc < 0 ? -1 : 0;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(const char *model_path, const char *tok_path, const char *file) {
    double t0 = cli_time_s(), c0 = cpu_s();
    rg_tokenizer *t = load(model_path, tok_path);
    if (!t) return 1;
    if (!tok_path) tok_path = model_path;
    double load_s = cli_time_s() - t0, load_cpu = cpu_s() - c0;
    char *text;
    size_t len;
    if (cli_read_file(file, (size_t)1 << 31, &text, &len)) {
        rg_tokenizer_free(t);
        return fail(NULL);
    }
    printf("load:   %.3f s  (%.3f s CPU; %d pieces, %s)\n", load_s, load_cpu, rg_tokenizer_vocab_size(t), tok_path);
    double enc_best = 1e30, dec_best = 1e30, enc_cpu = 1e30;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *back = NULL;
    size_t back_len = 0;
    for (int rep = 0; rep < 3; rep++) {
        free(ids);
        free(back);
        t0 = cli_time_s();
        c0 = cpu_s();
        if (rg_tokenize(t, text, len, 0, 0, &ids, &n_ids)) return fail(NULL);
        double e = cli_time_s() - t0, ec = cpu_s() - c0;
        if (ec < enc_cpu) enc_cpu = ec;
        t0 = cli_time_s();
        if (rg_detokenize(t, ids, n_ids, &back, &back_len)) return fail(NULL);
        double d = cli_time_s() - t0;
        if (e < enc_best) enc_best = e;
        if (d < dec_best) dec_best = d;
    }
    /* the same text one line per call, as prompts come: no reuse across calls */
    double line_best = 1e30, line_cpu = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        t0 = cli_time_s();
        c0 = cpu_s();
        for (const char *p = text, *end = text + len; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
            int32_t *line_ids;
            size_t line_n;
            if (rg_tokenize(t, p, n, 0, 0, &line_ids, &line_n)) return fail(NULL);
            free(line_ids);
            p += n;
        }
        double e = cli_time_s() - t0, ec = cpu_s() - c0;
        if (e < line_best) line_best = e;
        if (ec < line_cpu) line_cpu = ec;
    }
    double mb = (double)len / 1e6;
    printf("encode: %.2f MB in %.3f s = %.1f MB/s; CPU time %.3f s = %.1f MB/s  (%zu tokens, %.2f bytes/token; "
           "best of 3)\n",
           mb, enc_best, mb / enc_best, enc_cpu, mb / enc_cpu, n_ids, n_ids ? (double)len / (double)n_ids : 0.0);
    printf("encode: %.1f MB/s; CPU time %.1f MB/s  (one line per call)\n", mb / line_best, mb / line_cpu);
    printf("decode: %.1f MB/s  (round trip %s)\n", mb / dec_best,
           back_len == len && !memcmp(back, text, len) ? "exact" : "differs: text has U+2581 or invalid UTF-8");
    free(ids);
    free(back);
    free(text);
    rg_tokenizer_free(t);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},         {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"threads", required_argument, 0, 't'},       {"bos", no_argument, 0, OPT_BOS},
        {"eos", no_argument, 0, OPT_EOS},             {"parse-special", no_argument, 0, OPT_SPECIAL},
        {"no-parse-special", no_argument, 0, OPT_NO_SPECIAL}, {"jsonl", required_argument, 0, OPT_JSONL},
        {"bench", required_argument, 0, OPT_BENCH},   {"convert", required_argument, 0, OPT_CONVERT},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *model = NULL, *tok = NULL, *jsonl = NULL, *bench_file = NULL, *convert = NULL, *text = NULL;
    int bos = 0, eos = 0, special = 1, c;
    cmd_name = "tokenize";
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:t:h", opts, NULL)) != -1) {
        int k = common_option("tokenize", c, &model, &tok);
        if (k < 0) return 2;
        if (k) continue;
        switch (c) {
        case OPT_BOS: bos = 1; break;
        case OPT_EOS: eos = 1; break;
        case OPT_SPECIAL: special = 1; break;
        case OPT_NO_SPECIAL: special = 0; break;
        case OPT_JSONL: jsonl = optarg; break;
        case OPT_BENCH: bench_file = optarg; break;
        case OPT_CONVERT: convert = optarg; break;
        case 'h': fputs(tokenize_usage, stdout); return 0;
        default: return bad_option("tokenize", argv);
        }
    }
    if (convert) { /* --convert IN OUT */
        if (optind + 1 != argc) {
            fprintf(stderr, "rgemma: tokenize: --convert needs IN and OUT (--convert IN OUT.model)\n");
            return 2;
        }
        const char *out = argv[optind];
        rg_tokenizer *t;
        if (rg_tokenizer_load(convert, &t)) return fail(NULL);
        int rc = rg_tokenizer_save_model(t, out);
        if (!rc) fprintf(stderr, "wrote %s (%d pieces)\n", out, rg_tokenizer_vocab_size(t));
        rg_tokenizer_free(t);
        return rc ? fail(NULL) : 0;
    }
    if (optind < argc) text = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "rgemma: tokenize: one TEXT only (quote it; got also \"%s\")\n", argv[optind]);
        return 2;
    }
    if (!tok && !model) {
        fprintf(stderr, "rgemma: tokenize: no tokenizer: give -m MODEL or --tokenizer PATH (try 'rgemma tokenize --help')\n");
        return 2;
    }
    if (bench_file) return bench(model, tok, bench_file);
    rg_tokenizer *t = load(model, tok);
    if (!t) return 1;
    int rc = 0;
    if (jsonl) {
        line_ctx lc = {t, bos, eos, special};
        rc = for_each_line(jsonl, tokenize_line, &lc);
    } else {
        char *data = NULL;
        size_t len = 0;
        if (text) {
            len = strlen(text);
        } else if (read_stream(stdin, &data, &len)) {
            rg_tokenizer_free(t);
            return fail("stdin");
        }
        int32_t *ids;
        size_t n;
        if (rg_tokenize_ex(t, text ? text : data, len, bos, eos, special, &ids, &n)) {
            rc = fail(NULL);
        } else {
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
            free(ids);
        }
        free(data);
    }
    rg_tokenizer_free(t);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"threads", required_argument, 0, 't'}, {"jsonl", required_argument, 0, OPT_JSONL},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *model = NULL, *tok = NULL, *jsonl = NULL;
    int c;
    cmd_name = "detokenize";
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:t:h", opts, NULL)) != -1) {
        int k = common_option("detokenize", c, &model, &tok);
        if (k < 0) return 2;
        if (k) continue;
        switch (c) {
        case OPT_JSONL: jsonl = optarg; break;
        case 'h': fputs(detokenize_usage, stdout); return 0;
        default: return bad_option("detokenize", argv);
        }
    }
    /* ids: numbers separated by spaces, commas or brackets, in any number of arguments */
    size_t n = 0, cap = 64;
    int32_t *ids = cli_malloc(cap * sizeof *ids);
    for (int i = optind; i < argc; i++)
        for (const char *p = argv[i]; *p;) {
            if (strchr(" ,[]\t\n", *p)) {
                p++;
                continue;
            }
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < INT32_MIN || v > INT32_MAX || !strchr(" ,[]\t\n", *end)) {
                fprintf(stderr, "rgemma: detokenize: not a token id: %s\n", argv[i]);
                free(ids);
                return 2;
            }
            if (n == cap) ids = cli_realloc(ids, (cap *= 2) * sizeof *ids);
            ids[n++] = (int32_t)v;
            p = end;
        }
    if (!tok && !model) {
        fprintf(stderr, "rgemma: detokenize: no tokenizer: give -m MODEL or --tokenizer PATH (try 'rgemma detokenize --help')\n");
        free(ids);
        return 2;
    }
    int rc = 0;
    rg_tokenizer *t = load(model, tok);
    if (!t) rc = 1;
    if (!rc && jsonl) {
        line_ctx lc = {t, 0, 0, 1};
        rc = for_each_line(jsonl, detokenize_line, &lc);
    } else if (!rc) {
        char *text;
        size_t len;
        if (rg_detokenize(t, ids, n, &text, &len)) {
            rc = fail(NULL);
        } else {
            fwrite(text, 1, len, stdout);
            putchar('\n');
            free(text);
        }
    }
    rg_tokenizer_free(t);
    free(ids);
    return rc;
}

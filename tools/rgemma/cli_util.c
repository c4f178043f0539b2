#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli_util.h"

int cli_generation_option(const char *cmd, int c, const char *arg, rg_generate_params *gp) {
    rg_sampling_params *sp = &gp->sampling;
    long v;
    switch (c) {
    case 'n':
        if (cli_int(cmd, "-n", arg, -1, 1L << 30, &v)) return -1;
        gp->max_tokens = (int)v;
        return 1;
    case 's':
        if (cli_int(cmd, "--seed", arg, -1, 0xFFFFFFFFL, &v)) return -1;
        sp->seed = v < 0 ? RG_SEED_RANDOM : (uint64_t)v;
        return 1;
    case 't':
        if (cli_int(cmd, "--threads", arg, 1, 4096, &v)) return -1;
        rg_set_threads((int)v);
        return 1;
    case CLI_OPT_TEMP: return cli_float(cmd, "--temp", arg, 0, 1e6, &sp->temperature) ? -1 : 1;
    case CLI_OPT_TOP_K:
        if (cli_int(cmd, "--top-k", arg, 0, 1L << 30, &v)) return -1;
        sp->top_k = (int)v;
        return 1;
    case CLI_OPT_TOP_P: return cli_float(cmd, "--top-p", arg, 0, 1, &sp->top_p) ? -1 : 1;
    case CLI_OPT_MIN_P: return cli_float(cmd, "--min-p", arg, 0, 1, &sp->min_p) ? -1 : 1;
    case CLI_OPT_REPEAT_PENALTY:
        return cli_float(cmd, "--repeat-penalty", arg, 1e-6, 1e6, &sp->repeat_penalty) ? -1 : 1;
    case CLI_OPT_REPEAT_LAST_N:
        if (cli_int(cmd, "--repeat-last-n", arg, -1, 1L << 30, &v)) return -1;
        sp->repeat_last_n = (int)v;
        return 1;
    case CLI_OPT_PRESENCE:
        return cli_float(cmd, "--presence-penalty", arg, -1e6, 1e6, &sp->presence_penalty) ? -1 : 1;
    case CLI_OPT_FREQUENCY:
        return cli_float(cmd, "--frequency-penalty", arg, -1e6, 1e6, &sp->frequency_penalty) ? -1 : 1;
    default: return 0;
    }
}

static __thread char cli_msg[1024];

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cli_msg, sizeof cli_msg, fmt, ap);
    va_end(ap);
    return -1;
}

const char *cli_errmsg(void) { return cli_msg[0] ? cli_msg : rg_last_error(); }

double cli_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *out_of_memory(size_t n) {
    fprintf(stderr, "rgemma: out of memory (%zu bytes)\n", n);
    abort();
}

void *cli_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    return p ? p : out_of_memory(n);
}

void *cli_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : out_of_memory(n * size);
}

void *cli_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    return q ? q : out_of_memory(n);
}

int cli_read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (!fstat(fileno(f), &st) && S_ISDIR(st.st_mode)) {
        fclose(f);
        return cli_fail("%s: is a directory, not a file", path);
    }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = cli_malloc(cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n > max_bytes) {
            free(buf);
            fclose(f);
            return cli_fail("%s: file too large (limit %zu bytes)", path, max_bytes);
        }
        if (n == cap) {
            char *b = realloc(buf, (cap *= 2) + 1);
            if (!b) {
                free(buf);
                fclose(f);
                return cli_fail("%s: out of memory", path);
            }
            buf = b;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return cli_fail("%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int cli_is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

int cli_is_file(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode);
}

char *cli_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a && dir[a - 1] != '/';
    char *p = cli_malloc(a + slash + b + 1);
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

int cli_kv_type(const char *cmd, const char *arg, const char **kv_type) {
    if (strcmp(arg, "f32") && strcmp(arg, "f16") && strcmp(arg, "q8_0")) {
        fprintf(stderr, "rgemma: %s: --kv-type must be f32, f16 or q8_0 (got \"%s\")\n", cmd, arg);
        return -1;
    }
    *kv_type = arg;
    return 0;
}

int cli_load_model(const char *path, const char *lora, const char *kv_type, rg_model **m) {
    if (rg_model_load(path, m)) return -1;
    if ((lora && rg_model_apply_lora(*m, lora)) || (kv_type && rg_model_set_kv_type(*m, kv_type))) {
        rg_model_free(*m);
        *m = NULL;
        return -1;
    }
    return 0;
}

void cli_error(const char *cmd) {
    static const char *const names[] = {"generate", "chat", "perplexity", "eval", "serve", "synth", "quantize",
                                        "bench", "pull", "train"};
    const char *m = cli_errmsg();
    for (int again = 1; again;) {
        again = 0;
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            size_t n = strlen(names[i]);
            if (!strncmp(m, names[i], n) && m[n] == ':' && m[n + 1] == ' ') {
                m += n + 2;
                again = 1;
            }
        }
    }
    fprintf(stderr, "rgemma: %s: %s\n", cmd, m);
}

int cli_check_writable(const char *cmd, const char *opt, const char *path) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "rgemma: %s: %s %s: is a directory, not a file\n", cmd, opt, path);
        return -1;
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int existed = !access(tmp, F_OK);
    int fd = open(tmp, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) {
        fprintf(stderr, "rgemma: %s: %s %s: cannot write: %s\n", cmd, opt, path, strerror(errno));
        free(tmp);
        return -1;
    }
    close(fd);
    if (!existed) unlink(tmp);
    free(tmp);
    return 0;
}

int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "rgemma: %s: %s must be an integer in [%ld, %ld] (got \"%s\")\n", cmd, opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "rgemma: %s: %s must be a number in [%g, %g] (got \"%s\")\n", cmd, opt, lo, hi, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_ids(const char *cmd, const char *opt, const char *s, int32_t **ids, int *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(sizeof *v * cap);
    int k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "rgemma: %s: %s must be comma-separated token ids like 2,651,6037 (got \"%s\")\n", cmd,
                    opt, s);
            free(v);
            return -1;
        }
        v[k++] = (int32_t)x;
        if (!*end) break;
        p = end + 1;
    }
    *ids = v;
    *n = k;
    return 0;
}

rg_tokenizer *cli_tokenizer(const char *cmd, const char *model_path, const char *override, int required,
                            int *failed) {
    *failed = 0;
    rg_tokenizer *t = NULL;
    int rc = override ? rg_tokenizer_load(override, &t) : rg_tokenizer_find(model_path, &t);
    if (rc == 0) return t;
    if (rc == -2 && !override) { /* the model has none */
        if (required) {
            fprintf(stderr,
                    "rgemma: %s: %s: text needs one (get the Gemma tokenizer with scripts/get-gemma-tokenizer.sh and "
                    "pass --tokenizer, or use --prompt-ids)\n",
                    cmd, rg_last_error());
            *failed = 1;
        }
        return NULL;
    }
    fprintf(stderr, "rgemma: %s: tokenizer: %s\n", cmd, rg_last_error());
    *failed = 1;
    return NULL;
}

volatile int cli_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C terminates */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

size_t cli_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

const char *cli_stop_name(rg_stop_reason r) {
    switch (r) {
    case RG_STOP_EOS: return "end of text";
    case RG_STOP_STRING: return "stop string";
    case RG_STOP_LENGTH: return "token limit";
    case RG_STOP_CALLBACK: return "interrupted";
    case RG_STOP_ERROR: return "error";
    default: return "none";
    }
}

char *cli_bytes(size_t n, char buf[32]) {
    if (n < 1024 * 1024) snprintf(buf, 32, "%.1f KiB", (double)n / 1024.0);
    else if (n < 1024ull * 1024 * 1024) snprintf(buf, 32, "%.1f MiB", (double)n / (1024.0 * 1024.0));
    else snprintf(buf, 32, "%.2f GiB", (double)n / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

static double rate(int n, double s) { return s > 0 ? n / s : 0; }

void cli_report(const rg_generate_result *r, const rg_model *m) {
    fprintf(stderr, "\n");
    fprintf(stderr, "prompt:    %6d tokens  %8.3f s  %9.2f tok/s\n", r->prompt_tokens, r->prompt_seconds,
            rate(r->prompt_tokens, r->prompt_seconds));
    fprintf(stderr, "generated: %6d tokens  %8.3f s  %9.2f tok/s  (stop: %s, seed %llu)\n", r->generated_tokens,
            r->generate_seconds, rate(r->generated_tokens, r->generate_seconds), cli_stop_name(r->stop_reason),
            (unsigned long long)r->seed);
    char a[32], b[32];
    fprintf(stderr, "state:     %s (%s window; fixed: does not grow with the sequence)\n",
            cli_bytes(rg_model_state_bytes(m), a), rg_model_kv_type(m));
    fprintf(stderr, "peak RSS:  %s\n", cli_bytes(cli_peak_rss(), b));
}

/* ------------------------------------------------ Hugging Face downloads */

typedef struct {
    char file[256];
    double t0, last;
    int tty, quiet;
} pull_bar;

static void pull_progress(void *ctx, const rg_hub_progress *pr) {
    pull_bar *b = ctx;
    double now = cli_time_s();
    if (strcmp(b->file, pr->file)) { /* a new file */
        snprintf(b->file, sizeof b->file, "%s", pr->file);
        b->t0 = now;
        b->last = 0;
    }
    if (b->quiet || (!b->tty && !pr->finished)) return;
    if (!pr->finished && now - b->last < 0.1) return;
    b->last = now;
    double el = now - b->t0, rate = el > 0 ? (double)(pr->done - pr->resumed) / el : 0;
    char d[32], t[32], r[32];
    cli_bytes((size_t)pr->done, d);
    cli_bytes((size_t)pr->total, t);
    cli_bytes((size_t)rate, r);
    if (b->tty) {
        int width = 24, fill = pr->total ? (int)((double)pr->done / (double)pr->total * width) : width;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%-32.32s [%s] %3d%%  %s / %s  %s/s \033[K", pr->file, bar,
                pr->total ? (int)(100.0 * (double)pr->done / (double)pr->total) : 100, d, t, r);
        if (pr->finished) fputc('\n', stderr);
    } else {
        char res[64] = "";
        if (pr->resumed) snprintf(res, sizeof res, ", resumed at %llu bytes", (unsigned long long)pr->resumed);
        fprintf(stderr, "pulled %s: %s in %.1f s (%s/s%s)\n", pr->file, t, el, r, res);
    }
}

int cli_pull(const char *cmd, const char *repo, int offline, int quiet, char *out, size_t out_len) {
    pull_bar b;
    memset(&b, 0, sizeof b);
    b.tty = isatty(2);
    b.quiet = quiet;
    if (rg_hub_pull(repo, NULL, offline, pull_progress, &b, out, out_len) == 0) return 0;
    if (b.tty && !quiet && b.file[0]) fputc('\n', stderr); /* after a bar cut short */
    if (!strcmp(cmd, "pull")) cli_error(cmd);
    else fprintf(stderr, "rgemma: %s: -hf %s: %s\n", cmd, repo, rg_last_error());
    return -1;
}

/* what cli_hf_args allocates, kept reachable until exit */
static char **hf_kept;
static size_t hf_nkept;

static void *hf_keep(void *s) {
    hf_kept = cli_realloc(hf_kept, sizeof *hf_kept * (hf_nkept + 1));
    return hf_kept[hf_nkept++] = s;
}

static char *hf_dup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(hf_keep(cli_malloc(n)), s, n);
}

int cli_hf_args(const char *cmd, int argc, char **argv, char ***argv_out) {
    int offline = 0, help = 0, alias = 0, end = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            end = i;
            break;
        }
        if (!strcmp(argv[i], "--offline")) offline = 1;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) help = 1;
        if (!strcmp(argv[i], "--alias") || !strncmp(argv[i], "--alias=", 8)) alias = 1;
    }
    char **nv = hf_keep(cli_malloc(sizeof *nv * (2 * (size_t)argc + 4))); /* --hf=X: one in, two out */
    const char *first = NULL;
    int out = 0;
    nv[out++] = argv[0];
    for (int i = 1; i < end; i++) {
        const char *a = argv[i], *repo = NULL;
        int eq = !strncmp(a, "--hf=", 5);
        if (!strcmp(a, "--offline")) continue;
        if (!strcmp(a, "-hf") || !strcmp(a, "--hf")) {
            if (i + 1 >= end) {
                fprintf(stderr, "rgemma: %s: %s needs a model: ORG/NAME[@REV] (try 'rgemma %s --help')\n", cmd, a,
                        cmd);
                return -1;
            }
            repo = argv[++i];
        } else if (eq) {
            repo = a + 5;
        } else {
            nv[out++] = argv[i];
            continue;
        }
        if (!first) first = repo;
        char dir[4096];
        if (help) snprintf(dir, sizeof dir, "%s", repo);
        else if (cli_pull(cmd, repo, offline, 0, dir, sizeof dir)) return -1;
        nv[out++] = "-m";
        nv[out++] = hf_dup(dir);
    }
    /* serve: the model id clients use is ORG/NAME, not the snapshot's commit */
    if (first && !alias && !strcmp(cmd, "serve")) {
        nv[out++] = "--alias";
        char *id = hf_dup(first), *at = strchr(id, '@');
        if (at) *at = 0;
        nv[out++] = id;
    }
    for (int i = end; i < argc; i++) nv[out++] = argv[i];
    nv[out] = NULL;
    *argv_out = nv;
    return out;
}

/* rgemma eval: score a JSONL task file (schema: README "Evaluation") and
 * report acc / acc_norm (multiple choice by log-likelihood) and em / nm /
 * maj@k (generation), as a markdown table shaped like the model card's and
 * as JSON. The scoring itself is the library's evaluator (rg_eval_items).
 * cmd_eval = parse_args -> load the task, model and tokenizer -> run_items
 * -> report. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "commands.h"
#include "cli_util.h"
#include "eval_cli.h"
#include "rgemma.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma eval -m MODEL --task FILE.jsonl [options]\n\n"
            "Scores a benchmark in the JSONL schema of the README (\"Evaluation\"): multiple\n"
            "choice by log-likelihood (acc, acc_norm), generation by exact / normalised match\n"
            "and majority vote over samples (em, nm, maj@K). Prints a markdown table.\n\n"
            "  -m, --model PATH      model folder or file\n"
            "  -hf ORG/NAME[@REV]    a model of Hugging Face, pulled first (rgemma pull;\n"
            "                        --offline: the cache only)\n"
            "      --task FILE       the items (scripts/eval-convert.py makes them from the\n"
            "                        public datasets)\n"
            "      --shots FILE      few-shot examples, same schema (their answers are shown)\n"
            "  -k, --num-shots K     shots per item (default 5 with --shots); chosen per group\n"
            "                        (e.g. MMLU subject) with --seed\n"
            "      --shot-sep STR    written after each shot (default \"\\n\\n\"; \\n and \\t understood)\n"
            "      --seed N          shot choice and sampling seed (default 1234)\n"
            "      --limit N         the first N items only\n"
            "      --name NAME       benchmark name in the report (default: the task file's name)\n"
            "      --no-reuse        process every choice from scratch instead of from a state\n"
            "                        snapshot (same scores; the baseline of the speed-up)\n"
            "  -b, --batch N         sequences scored together in one batched pass (default 8;\n"
            "                        1 = one choice after another): the contexts of several\n"
            "                        items, then their choices, share each read of the weights;\n"
            "                        up to about 2N states in memory (same scores)\n"
            "  generation:\n"
            "      --samples K       generations per item for maj@K (default 1)\n"
            "      --temp T          temperature (default 0 = greedy)\n"
            "      --top-k N, --top-p P   sampling filters (default off)\n"
            "  -n, --max-tokens N    tokens per generation (default 256)\n"
            "      --stop STR        stop string for items without \"stop\" (repeatable)\n"
            "      --extract MODE    answer in the output: text (default), number (the last\n"
            "                        number, as for GSM8K) or a POSIX regex (its last match,\n"
            "                        group 1 when it has one)\n"
            "  output:\n"
            "      --json FILE       JSON report (\"-\" = stdout, instead of the table)\n"
            "      --items FILE      one JSON line per item: predictions, log-likelihoods, outputs\n"
            "      --by-group        add a table row per group\n"
            "      --progress, --no-progress   progress bar on stderr (default: if a terminal)\n"
            "      --tokenizer PATH  tokenizer (default: the model folder's)\n"
            "      --kv-type f32|f16|q8_0 attention window (KV cache) element type (default f32)\n"
            "      --check           only validate the task (and shots) file and count its items\n"
            "  -t, --threads N       worker threads (default: all cores)\n");
}

static int parse_seed(const char *s, unsigned long long *out) {
    char *end;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno || end == s || *end || *s == '-' ? -1 : 0;
}

/* user + system CPU seconds of this process (steadier than wall time on a busy machine) */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* "\n" and "\t" in a --shot-sep / --stop argument */
static char *unescape(const char *s) {
    char *r = cli_malloc(strlen(s) + 1), *o = r;
    for (; *s; s++) {
        if (s[0] == '\\' && (s[1] == 'n' || s[1] == 't' || s[1] == '\\')) {
            *o++ = s[1] == 'n' ? '\n' : s[1] == 't' ? '\t' : '\\';
            s++;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
    return r;
}

/* ------------------------------------------------------------------ report */

enum { M_ACC, M_ACC_NORM, M_EM, M_NM, M_MAJ, N_METRICS };

typedef struct {
    char *name;
    double *v[N_METRICS]; /* per-item scores of each metric */
    int n[N_METRICS];
} score_set;

static void score_add(score_set *s, int metric, double x, int cap) {
    if (!s->v[metric]) s->v[metric] = cli_malloc(sizeof(double) * (size_t)cap);
    s->v[metric][s->n[metric]++] = x;
}

static void score_free(score_set *s) {
    free(s->name);
    for (int i = 0; i < N_METRICS; i++) free(s->v[i]);
}

static const char *metric_name(int metric, int samples, char *buf, size_t n) {
    static const char *names[] = {"acc", "acc_norm", "em", "nm", "maj"};
    if (metric == M_MAJ) {
        snprintf(buf, n, "maj@%d", samples);
        return buf;
    }
    return names[metric];
}

/* maj@K is reported when K > 1 (maj@1 is nm) */
static int shown(const score_set *s, int metric, int samples) {
    return s->n[metric] > 0 && (metric != M_MAJ || samples > 1);
}

static void md_rows(FILE *f, const char *bench, const score_set *s, int samples) {
    for (int m = 0; m < N_METRICS; m++) {
        if (!shown(s, m, samples)) continue;
        double mean, se;
        char buf[32];
        rg_mean_stderr(s->v[m], s->n[m], &mean, &se);
        fprintf(f, "| %s | %s | %.2f | %d | ", bench, metric_name(m, samples, buf, sizeof buf), 100 * mean, s->n[m]);
        if (isnan(se)) fprintf(f, "- |\n");
        else fprintf(f, "%.2f |\n", 100 * se);
    }
}

static cJSON *json_metrics(const score_set *s, int samples) {
    cJSON *o = cJSON_CreateObject();
    for (int m = 0; m < N_METRICS; m++) {
        if (!shown(s, m, samples)) continue;
        double mean, se;
        char buf[32];
        rg_mean_stderr(s->v[m], s->n[m], &mean, &se);
        cJSON *e = cJSON_AddObjectToObject(o, metric_name(m, samples, buf, sizeof buf));
        cJSON_AddNumberToObject(e, "score", mean);
        if (isnan(se)) cJSON_AddNullToObject(e, "stderr");
        else cJSON_AddNumberToObject(e, "stderr", se);
        cJSON_AddNumberToObject(e, "n", s->n[m]);
    }
    return o;
}

static void add_scores(score_set *s, const rg_item *it, const rg_item_result *r, int cap) {
    if (it->kind == RG_ITEM_MC) {
        score_add(s, M_ACC, r->acc, cap);
        score_add(s, M_ACC_NORM, r->acc_norm, cap);
    } else {
        score_add(s, M_EM, r->em, cap);
        score_add(s, M_NM, r->nm, cap);
        score_add(s, M_MAJ, r->maj, cap);
    }
}

static void log_item(FILE *f, const rg_item *it, const rg_item_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", it->line);
    if (it->id) cJSON_AddStringToObject(o, "id", it->id);
    if (it->group) cJSON_AddStringToObject(o, "group", it->group);
    if (it->kind == RG_ITEM_MC) {
        cJSON_AddNumberToObject(o, "label", it->label);
        cJSON_AddNumberToObject(o, "pred", r->pred);
        cJSON_AddNumberToObject(o, "pred_norm", r->pred_norm);
        cJSON_AddItemToObject(o, "ll", cJSON_CreateDoubleArray(r->ll, it->n_choices));
        cJSON_AddItemToObject(o, "n_tokens", cJSON_CreateIntArray(r->n_tokens, it->n_choices));
        cJSON_AddItemToObject(o, "greedy", cJSON_CreateIntArray(r->greedy, it->n_choices));
        cJSON_AddNumberToObject(o, "acc", r->acc);
        cJSON_AddNumberToObject(o, "acc_norm", r->acc_norm);
    } else {
        cJSON_AddItemToObject(o, "outputs", cJSON_CreateStringArray((const char *const *)r->outputs, r->n_outputs));
        cJSON_AddItemToObject(o, "extracted",
                              cJSON_CreateStringArray((const char *const *)r->extracted, r->n_outputs));
        cJSON_AddNumberToObject(o, "vote", r->vote);
        cJSON_AddNumberToObject(o, "em", r->em);
        cJSON_AddNumberToObject(o, "nm", r->nm);
        cJSON_AddNumberToObject(o, "maj", r->maj);
    }
    char *s = cJSON_PrintUnformatted(o);
    fprintf(f, "%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static const char *base_name(const char *path, char *buf, size_t n) {
    const char *b = strrchr(path, '/');
    snprintf(buf, n, "%s", b ? b + 1 : path);
    char *dot = strstr(buf, ".jsonl");
    if (dot && dot != buf) *dot = 0;
    return buf;
}

static void print_summary(const char *path, const rg_task *t) {
    int mc = 0, per_choice = 0, gen = 0, ids = 0;
    for (int i = 0; i < t->n; i++) {
        const rg_item *it = &t->items[i];
        mc += it->kind == RG_ITEM_MC;
        per_choice += it->kind == RG_ITEM_MC && !it->shared_ctx;
        gen += it->kind == RG_ITEM_GEN;
        ids += it->is_ids;
    }
    printf("%s: %d items: %d multiple choice (%d with a context per choice), %d generation; %d text, %d token ids\n",
           path, t->n, mc, per_choice, gen, t->n - ids, ids);
}

static int needs_text(const rg_task *t) {
    for (int i = 0; t && i < t->n; i++)
        if (!t->items[i].is_ids) return 1;
    return 0;
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *model_path, *task_path, *shots_path, *name, *json_path, *items_path, *tok_path, *kv_type;
    char *sep;    /* --shot-sep, unescaped (NULL: the evaluator's default) */
    char **stops; /* --stop, unescaped */
    int n_stop, by_group, progress, check;
    long k, limit, samples, max_tokens;
    unsigned long long seed;
    rg_eval_opts eo; /* all but the model, tokenizer and shots, set from the options */
} eval_args;

static void eval_args_free(eval_args *a) {
    for (int i = 0; i < a->n_stop; i++) free(a->stops[i]);
    free(a->stops);
    free(a->sep);
}

/* 0: run; 1: --help was printed; -1: a bad option (the error is printed). */
static int parse_args(int argc, char **argv, eval_args *a) {
    enum { O_TASK = 256, O_SHOTS, O_SEP, O_SEED, O_LIMIT, O_NAME, O_NOREUSE, O_SAMPLES, O_TEMP, O_TOPK, O_TOPP,
           O_STOP, O_EXTRACT, O_JSON, O_ITEMS, O_BYGROUP, O_PROGRESS, O_NOPROGRESS, O_TOK, O_CHECK };
    enum { DEFAULT_BATCH = 8, MAX_BATCH = 256 };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"task", required_argument, 0, O_TASK},
        {"shots", required_argument, 0, O_SHOTS},   {"num-shots", required_argument, 0, 'k'},
        {"shot-sep", required_argument, 0, O_SEP},  {"seed", required_argument, 0, O_SEED},
        {"limit", required_argument, 0, O_LIMIT},   {"name", required_argument, 0, O_NAME},
        {"no-reuse", no_argument, 0, O_NOREUSE},    {"samples", required_argument, 0, O_SAMPLES},
        {"temp", required_argument, 0, O_TEMP},     {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP},    {"max-tokens", required_argument, 0, 'n'},
        {"stop", required_argument, 0, O_STOP},     {"extract", required_argument, 0, O_EXTRACT},
        {"json", required_argument, 0, O_JSON},     {"items", required_argument, 0, O_ITEMS},
        {"by-group", no_argument, 0, O_BYGROUP},    {"progress", no_argument, 0, O_PROGRESS},
        {"no-progress", no_argument, 0, O_NOPROGRESS}, {"tokenizer", required_argument, 0, O_TOK},
        {"threads", required_argument, 0, 't'},     {"check", no_argument, 0, O_CHECK},
        {"batch", required_argument, 0, 'b'},       CLI_KV_TYPE_OPTION,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->progress = isatty(2);
    a->k = 5, a->limit = -1, a->samples = 1, a->max_tokens = 256, a->seed = 1234;
    long batch = DEFAULT_BATCH, v;
    int k_set = 0, c;
    a->eo.reuse = 1;
    rg_sampling_params_default(&a->eo.sampling);
    a->eo.sampling.temperature = 0;
    a->eo.sampling.top_k = 0;
    a->eo.sampling.top_p = 1;
    a->eo.sampling.min_p = 0;
    a->eo.sampling.repeat_penalty = 1;
#define BAD(...)                                                                                                       \
    do {                                                                                                               \
        fprintf(stderr, "rgemma: eval: " __VA_ARGS__);                                                                 \
        return -1;                                                                                                     \
    } while (0)
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:k:n:t:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model_path = optarg; break;
        case O_TASK: a->task_path = optarg; break;
        case O_SHOTS: a->shots_path = optarg; break;
        case O_NAME: a->name = optarg; break;
        case O_JSON: a->json_path = optarg; break;
        case O_ITEMS: a->items_path = optarg; break;
        case O_TOK: a->tok_path = optarg; break;
        case CLI_OPT_KV_TYPE:
            if (cli_kv_type("eval", optarg, &a->kv_type)) return -1;
            break;
        case O_NOREUSE: a->eo.reuse = 0; break;
        case O_BYGROUP: a->by_group = 1; break;
        case O_CHECK: a->check = 1; break;
        case O_PROGRESS: a->progress = 1; break;
        case O_NOPROGRESS: a->progress = 0; break;
        case O_EXTRACT: a->eo.extract = optarg; break;
        case O_SEP:
            free(a->sep);
            a->sep = unescape(optarg);
            break;
        case O_STOP:
            a->stops = cli_realloc(a->stops, sizeof *a->stops * (size_t)(a->n_stop + 1));
            a->stops[a->n_stop++] = unescape(optarg);
            if (!*a->stops[a->n_stop - 1]) BAD("--stop must not be empty\n");
            break;
        case 'k':
            if (cli_int("eval", "-k", optarg, 0, 1000, &a->k)) return -1;
            k_set = 1;
            break;
        case O_SEED:
            if (parse_seed(optarg, &a->seed)) BAD("--seed must be a non-negative integer (got \"%s\")\n", optarg);
            break;
        case O_LIMIT:
            if (cli_int("eval", "--limit", optarg, 1, INT32_MAX, &a->limit)) return -1;
            break;
        case O_SAMPLES:
            if (cli_int("eval", "--samples", optarg, 1, 1000, &a->samples)) return -1;
            break;
        case 'n':
            if (cli_int("eval", "--max-tokens", optarg, 1, INT32_MAX, &a->max_tokens)) return -1;
            break;
        case O_TEMP:
            if (cli_float("eval", "--temp", optarg, 0, 100, &a->eo.sampling.temperature)) return -1;
            break;
        case O_TOPK:
            if (cli_int("eval", "--top-k", optarg, 0, INT32_MAX, &v)) return -1;
            a->eo.sampling.top_k = (int)v;
            break;
        case O_TOPP:
            if (cli_float("eval", "--top-p", optarg, 0.000001, 1, &a->eo.sampling.top_p)) return -1;
            break;
        case 'b':
            if (cli_int("eval", "--batch", optarg, 1, MAX_BATCH, &batch)) return -1;
            break;
        case 't':
            if (cli_int("eval", "--threads", optarg, 1, 4096, &v)) return -1;
            rg_set_threads((int)v);
            break;
        case 'h': usage(stdout); return 1;
        default: BAD("unknown or incomplete option '%s' (try 'rgemma eval --help')\n", argv[optind - 1]);
        }
    }
    if (optind < argc) BAD("unexpected argument '%s'\n", argv[optind]);
    if (!a->task_path || (!a->model_path && !a->check))
        BAD("-m MODEL and --task FILE are required (try 'rgemma eval --help')\n");
    if (k_set && a->k > 0 && !a->shots_path) BAD("-k %ld needs --shots FILE to take the examples from\n", a->k);
    if (a->eo.extract) {
        char *probe = rg_extract_answer(a->eo.extract, "");
        if (!probe) BAD("%s\n", rg_last_error());
        free(probe);
    }
#undef BAD
    a->eo.k_shots = a->shots_path ? (int)a->k : 0;
    a->eo.seed = (uint64_t)a->seed;
    a->eo.shot_sep = a->sep;
    a->eo.samples = (int)a->samples;
    a->eo.max_tokens = (int)a->max_tokens;
    a->eo.stop = (const char *const *)a->stops;
    a->eo.n_stop = a->n_stop;
    a->eo.batch = (int)batch;
    return 0;
}

/* -------------------------------------------------------------------- run */

/* What a run measured: the scores over all items and per group, the time. */
typedef struct {
    int n; /* items scored */
    score_set all, *groups;
    int n_groups;
    int64_t tokens;
    double secs, cpu;
} eval_run;

static void eval_run_free(eval_run *r) {
    score_free(&r->all);
    for (int g = 0; g < r->n_groups; g++) score_free(&r->groups[g]);
    free(r->groups);
}

static score_set *group_scores(eval_run *r, const char *group) {
    int g = 0;
    while (g < r->n_groups && strcmp(r->groups[g].name, group)) g++;
    if (g == r->n_groups) {
        r->groups = cli_realloc(r->groups, sizeof *r->groups * (size_t)(r->n_groups + 1));
        memset(&r->groups[g], 0, sizeof *r->groups);
        r->groups[g].name = strdup(group);
        r->n_groups++;
    }
    return &r->groups[g];
}

/* Score the first r->n items of task: to the evaluator in chunks of the
 * batch size (it scores a chunk's multiple-choice items together), the
 * results come back in order; each one's scores go to r, its line to
 * items_f (may be NULL). -1 with cli_errmsg() on failure. */
static int run_items(const eval_args *a, rg_evaluator *ev, const rg_task *task, FILE *items_f, eval_run *r) {
    int n = r->n, correct = 0;
    cli_progress bar;
    cli_progress_start(&bar, a->progress, n, "items");
    double t0 = cli_time_s(), c0 = cpu_seconds();
    int chunk = a->eo.reuse ? a->eo.batch : 1;
    rg_item_result *rs = cli_calloc((size_t)chunk, sizeof *rs);
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int cn = n - i0 < chunk ? n - i0 : chunk;
        if (rg_eval_items(ev, &task->items[i0], cn, i0, rs) < 0) {
            for (int j = 0; j < cn; j++) rg_item_result_free(&rs[j]);
            free(rs);
            cli_progress_end(&bar);
            return cli_fail("%s: %s", a->task_path, rg_last_error());
        }
        for (int j = 0; j < cn; j++) {
            const rg_item *it = &task->items[i0 + j];
            rg_item_result *res = &rs[j];
            r->tokens += res->tokens;
            add_scores(&r->all, it, res, n);
            correct += it->kind == RG_ITEM_MC ? (int)res->acc : (int)res->nm;
            if (it->group) add_scores(group_scores(r, it->group), it, res, n);
            if (items_f) log_item(items_f, it, res);
            rg_item_result_free(res);
        }
        char extra[64];
        snprintf(extra, sizeof extra, "score %.1f%%", 100.0 * correct / (i0 + cn));
        cli_progress_update(&bar, i0 + cn, extra);
    }
    free(rs);
    cli_progress_end(&bar);
    r->secs = cli_time_s() - t0;
    r->cpu = cpu_seconds() - c0;
    fprintf(stderr, "eval: %d items in %.2f s (%.2f items/s), %lld tokens processed (%.1f tokens/s)\n", n, r->secs,
            r->secs > 0 ? n / r->secs : 0, (long long)r->tokens, r->secs > 0 ? r->tokens / r->secs : 0);
    return 0;
}

/* ----------------------------------------------------------------- report */

/* The markdown table on stdout (unless --json -), and the JSON report when
 * --json asks for one. -1 with cli_errmsg() when the JSON file cannot be
 * written. */
static int report(const eval_args *a, const char *bench, const eval_run *r) {
    int samples = (int)a->samples, batch = a->eo.reuse ? a->eo.batch : 1;
    int to_stdout = a->json_path && !strcmp(a->json_path, "-");
    if (!to_stdout) {
        printf("| Benchmark | Metric | Score | n | stderr |\n|---|---|---|---|---|\n");
        md_rows(stdout, bench, &r->all, samples);
        for (int g = 0; a->by_group && g < r->n_groups; g++) {
            char row[512];
            snprintf(row, sizeof row, "%s / %s", bench, r->groups[g].name);
            md_rows(stdout, row, &r->groups[g], samples);
        }
    }
    if (!a->json_path) return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "benchmark", bench);
    cJSON_AddStringToObject(o, "task", a->task_path);
    cJSON_AddStringToObject(o, "model", a->model_path);
    cJSON_AddNumberToObject(o, "n", r->n);
    cJSON_AddNumberToObject(o, "num_shots", a->eo.k_shots);
    if (a->shots_path) cJSON_AddStringToObject(o, "shots", a->shots_path);
    cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    cJSON_AddBoolToObject(o, "state_reuse", a->eo.reuse);
    cJSON_AddNumberToObject(o, "batch", batch);
    cJSON_AddNumberToObject(o, "samples", samples);
    cJSON_AddItemToObject(o, "metrics", json_metrics(&r->all, samples));
    cJSON *gs = cJSON_AddObjectToObject(o, "groups");
    for (int g = 0; g < r->n_groups; g++)
        cJSON_AddItemToObject(gs, r->groups[g].name, json_metrics(&r->groups[g], samples));
    cJSON_AddNumberToObject(o, "seconds", r->secs);
    cJSON_AddNumberToObject(o, "cpu_seconds", r->cpu);
    cJSON_AddNumberToObject(o, "items_per_second", r->secs > 0 ? r->n / r->secs : 0);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "tokens_per_second", r->secs > 0 ? r->tokens / r->secs : 0);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = to_stdout ? stdout : fopen(a->json_path, "w");
    if (!f) {
        free(s);
        return cli_fail("%s: cannot write", a->json_path);
    }
    fprintf(f, "%s\n", s);
    free(s);
    if (!to_stdout) fclose(f);
    return 0;
}

/* ------------------------------------------------------------------- main */

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int p = parse_args(argc, argv, &a);
    if (p) {
        eval_args_free(&a);
        return p > 0 ? 0 : 2;
    }
    int rc = 1;
    rg_task task = {0}, shots = {0};
    rg_model *m = NULL;
    rg_tokenizer *tok = NULL;
    rg_evaluator *ev = NULL;
    FILE *items_f = NULL;
    eval_run run = {0};
    if (rg_task_load(a.task_path, &task) < 0 || (a.shots_path && rg_task_load(a.shots_path, &shots) < 0)) goto done;
    run.n = a.limit > 0 && a.limit < task.n ? (int)a.limit : task.n;
    if (a.check) {
        print_summary(a.task_path, &task);
        if (a.shots_path) print_summary(a.shots_path, &shots);
        rc = 0;
        goto done;
    }
    if (cli_load_model(a.model_path, NULL, a.kv_type, &m) < 0) goto done;
    if ((needs_text(&task) || needs_text(a.shots_path ? &shots : NULL)) &&
        (cli_load_tokenizer(a.model_path, a.tok_path, &tok) < 0 ||
         rg_tokenizer_check_vocab(tok, rg_model_config(m)->vocab_size)))
        goto done;
    if (a.items_path && !(items_f = fopen(a.items_path, "w"))) {
        cli_fail("%s: cannot write", a.items_path);
        goto done;
    }
    a.eo.model = m;
    a.eo.tok = tok;
    a.eo.shots = a.shots_path ? &shots : NULL;
    if (!(ev = rg_evaluator_new(&a.eo))) goto done;

    char bench_buf[256];
    const char *bench = a.name ? a.name : base_name(a.task_path, bench_buf, sizeof bench_buf);
    fprintf(stderr, "eval: %s: %d items, %d-shot, state reuse %s, batch %d\n", bench, run.n, a.eo.k_shots,
            a.eo.reuse ? "on" : "off", a.eo.reuse ? a.eo.batch : 1);
    if (run_items(&a, ev, &task, items_f, &run) || report(&a, bench, &run)) goto done;
    rc = 0;
done:
    if (rc) cli_error("eval");
    if (items_f) fclose(items_f);
    eval_run_free(&run);
    rg_evaluator_free(ev);
    rg_tokenizer_free(tok);
    rg_model_free(m);
    rg_task_free(&task);
    rg_task_free(&shots);
    eval_args_free(&a);
    return rc;
}

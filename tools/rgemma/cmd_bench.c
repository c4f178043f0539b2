/* rgemma bench: prefill and decode speed in the spirit of llama-bench, with
 * each row set against this machine's roofline, measured in the same run:
 *   pp rows (compute-bound): FLOP/s of the matmuls / peak multiply-add rate
 *     of the instruction the kernels use for that weight type;
 *   tg rows (memory-bound): tokens/s / (read bandwidth / weight bytes read
 *     per token);
 *   tg rows of B > 1 sequences (--batch; one rg_forward_batch per step reads
 *     the weights once for all B tokens): the lower of the compute roofline
 *     (peak / FLOPs per token of the matmuls and the logits) and the memory
 *     roofline (B tokens per read of the weights and of the B states' parts a
 *     step reads: attention windows, conv and RG-LRU states).
 * Weights are never touched by value, so random-weight models (rgemma synth)
 * give the speed of real ones. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli_util.h"
#include "commands.h"

#define MAX_LIST 16
#define MAX_MODELS 8
#define MAX_BATCH 1024

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma bench -m MODEL [-m MODEL ...] [options]\n\n"
            "Measures prefill (pp) and decode (tg) speed, llama-bench style, and this\n"
            "machine's memory read bandwidth and peak multiply-add rate, and prints each\n"
            "row as a fraction of its roofline. Rows: ppP for each prefill size P (from an\n"
            "empty state), tgN @ dD for each decode length N and depth D (D tokens are\n"
            "processed first; the state does not grow with D), and with --batch,\n"
            "tgN @ dD \u00d7B for each B > 1: B sequences, each a copy of the state at depth D,\n"
            "decode N tokens together, each step one batched forward over B tokens (the\n"
            "logits of every sequence); t/s is the aggregate (B tokens per step), the\n"
            "\"per seq\" column one sequence's share.\n\n"
            "Rooflines: pp rows against the peak of the multiply-add instruction the\n"
            "prefill kernels use; tg rows against read bandwidth / weight bytes per token;\n"
            "\u00d7B rows against the lower of two: compute (that peak / FLOPs per token of\n"
            "the matmuls and logits; large B is compute-bound) and memory (B tokens per\n"
            "read of the weights plus each state's attention window and recurrent state).\n\n"
            "  -m, --model PATH     model folder, .safetensors or .gguf (repeat: one per\n"
            "                       weight type)\n"
            "  -hf ORG/NAME[@REV]   a model of Hugging Face, pulled first (rgemma pull; --offline:\n"
            "                       the cache only); repeatable like -m\n"
            "  -p, --prompt LIST    prefill sizes, e.g. 512 or 128,512 (default 512; 0 = none)\n"
            "  -n, --gen LIST       decode lengths (default 128; 0 = none)\n"
            "  -d, --depth LIST     depths of the decode rows (default 0,2048,8192)\n"
            "  -b, --batch LIST     sequences decoded at once, e.g. 1,4,16,64 (default 1;\n"
            "                       1 gives the plain tg rows; at most %d; each sequence\n"
            "                       holds one state, e.g. 32.7 MiB for the 2B shape)\n"
            "  -r, --reps N         repetitions per row (default 3)\n"
            "  -t, --threads N      threads (default: all cores)\n"
            "  -k, --kernels PATH   auto (default), scalar, avx2, avx512 or amx (x86-64),\n"
            "                       neon or neon-dotprod (arm64)\n"
            "  -o, --output FMT     md (default) or json\n"
            "      --kv-type f32|f16|q8_0  the states' attention window (KV cache) element type\n"
            "                       (default f32; f16 halves what each step reads at depth, q8_0\n"
            "                       takes 27%% of f32's bytes)\n",
            MAX_BATCH);
}

/* "512,1024" -> values in [lo, hi] */
static int parse_list(const char *opt, const char *s, long lo, long hi, long *out, int *n) {
    char buf[256];
    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "rgemma: bench: %s: list too long\n", opt);
        return -1;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *tok = buf, *end; tok; tok = end ? end + 1 : NULL) {
        if ((end = strchr(tok, ','))) *end = 0;
        if (!*tok && !end) break; /* "" or a trailing comma */
        if (!*tok) {              /* "1,,2" or ",1" */
            fprintf(stderr, "rgemma: bench: %s: empty value in \"%s\"\n", opt, s);
            return -1;
        }
        if (*n == MAX_LIST) {
            fprintf(stderr, "rgemma: bench: %s: at most %d values\n", opt, MAX_LIST);
            return -1;
        }
        if (cli_int("bench", opt, tok, lo, hi, &out[(*n)++])) return -1;
    }
    if (*n == 0) {
        fprintf(stderr, "rgemma: bench: %s: empty list\n", opt);
        return -1;
    }
    return 0;
}

/* Peak RSS per row: Linux resets the high-water mark on writing 5 to
 * /proc/self/clear_refs; without that the process peak is reported. */
static int g_hwm_resettable = -1;
static void reset_peak_rss(void) {
    malloc_trim(0); /* memory freed by earlier rows (e.g. prefill buffers) is not this row's */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    if (f && fclose(f)) ok = 0;
    if (g_hwm_resettable != 0) g_hwm_resettable = ok;
}
static size_t peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtoull(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb ? kb * 1024 : cli_peak_rss();
}

/* The value of a /proc/cpuinfo line "key : value" (newline cut), or NULL. */
static char *cpuinfo_value(char *line, const char *key) {
    if (strncmp(line, key, strlen(key))) return NULL;
    char *v = strchr(line, ':');
    if (!v) return NULL;
    v += strspn(v + 1, " \t") + 1;
    v[strcspn(v, "\n")] = 0;
    return v;
}

/* x86's "model name"; arm64 kernels give none, but the first core's
 * implementer and part numbers (0x41 = Arm; e.g. part 0xd0c = Neoverse N1). */
static void cpu_name(char *out, size_t len) {
    snprintf(out, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512], impl[32] = "", part[32] = "", *v;
    while (f && fgets(line, sizeof line, f)) {
        if ((v = cpuinfo_value(line, "model name"))) {
            snprintf(out, len, "%s", v);
            impl[0] = 0;
            break;
        }
        if ((v = cpuinfo_value(line, "CPU implementer")) && !impl[0]) snprintf(impl, sizeof impl, "%s", v);
        if ((v = cpuinfo_value(line, "CPU part")) && !part[0]) snprintf(part, sizeof part, "%s", v);
    }
    if (impl[0] && part[0]) snprintf(out, len, "CPU implementer %s part %s", impl, part);
    if (f) fclose(f);
}

static void load_average(double la[3]) {
    la[0] = la[1] = la[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = la[1] = la[2] = -1;
        fclose(f);
    }
}

/* Multiply-adds per token of every matmul but the logits. */
static double layer_macs(const rg_config *c) {
    double D = c->hidden_size, R = c->lru_width, F = c->mlp_width, H = c->num_heads, hd = c->head_dim;
    double total = 0;
    for (int l = 0; l < c->num_layers; l++) {
        total += 3 * D * F;
        if (rg_config_layer_type(c, l) == RG_LAYER_RECURRENT) total += 3 * R * D + 2 * R * (R / H);
        else total += 2 * H * hd * D + 2 * hd * D;
    }
    return total;
}

/* The machine's rooflines: the better of the measurements at the start and
 * at the end of the run (other processes may have been busy at one). The
 * read bandwidth of a shared or virtual machine also changes over minutes
 * (e.g. with where its cores run), so each decode row is set against the
 * better of two quick measurements taken just before and just after it;
 * bw_lo/bw_hi is the range seen. */
typedef struct {
    char cpu[128];
    int threads;
    double bw, bw_lo, bw_hi, peak_f32, peak_int8, load_start[3], load_end[3];
} machine;

static double row_bandwidth(machine *mc) {
    double bw = rg_measure_read_bandwidth((size_t)512 << 20, 3);
    mc->bw_lo = mc->bw_lo == 0 || bw < mc->bw_lo ? bw : mc->bw_lo;
    mc->bw_hi = bw > mc->bw_hi ? bw : mc->bw_hi;
    return bw;
}

static void measure_machine(machine *mc) {
    double bw = rg_measure_read_bandwidth((size_t)1 << 30, 5);
    double f32 = rg_measure_peak_flops(0), int8 = rg_measure_peak_flops(1);
    /* a kernel set without int8 dot products measures 0: it has no int8 peak to print */
    fprintf(stderr, "  read %.1f GB/s, f32 FMA %.1f GFLOP/s", bw / 1e9, f32 / 1e9);
    if (int8 > 0) fprintf(stderr, ", int8 dot %.1f GOP/s", int8 / 1e9);
    fputc('\n', stderr);
    mc->bw = bw > mc->bw ? bw : mc->bw;
    mc->bw_lo = mc->bw_lo == 0 || bw < mc->bw_lo ? bw : mc->bw_lo;
    mc->bw_hi = bw > mc->bw_hi ? bw : mc->bw_hi;
    mc->peak_f32 = f32 > mc->peak_f32 ? f32 : mc->peak_f32;
    mc->peak_int8 = int8 > mc->peak_int8 ? int8 : mc->peak_int8;
}

typedef struct {
    char test[48];
    int n_prompt, n_gen, depth, reps;
    int batch;       /* sequences decoded together (1: pp rows and plain tg rows) */
    double mean, std;
    double work;     /* pp: FLOPs of one repetition; tg: weight bytes read per step */
    double bw;       /* tg: read bandwidth measured around the row */
    double flops;    /* tg with batch > 1: FLOPs per token (matmuls and logits) */
    double state_read; /* tg with batch > 1: state bytes one sequence's step reads */
    double *samples; /* tokens/s per repetition (all sequences together) */
    size_t rss;
} row;

typedef struct {
    const char *path, *name, *compute;
    char wtype[48]; /* the projections' type, the embedding's if it differs, the window's if not f32 */
    int int8;
    size_t weight_bytes, state_bytes;
    row *rows;
    int nrows;
} model_result;

static void stats(row *r) {
    double s = 0, ss = 0;
    for (int i = 0; i < r->reps; i++) s += r->samples[i];
    r->mean = s / r->reps;
    for (int i = 0; i < r->reps; i++) ss += (r->samples[i] - r->mean) * (r->samples[i] - r->mean);
    r->std = r->reps > 1 ? sqrt(ss / (r->reps - 1)) : 0;
}

static void fill_tokens(int32_t *tok, int n, int vocab) {
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[i] = (int32_t)(3 + x % (uint64_t)(vocab - 3));
    }
}

/* Bytes of one sequence's state a decode step reads at position pos: the
 * keys and values in its attention windows, the conv inputs and RG-LRU
 * state of its recurrent layers. */
static double state_read_bytes(const rg_config *c, const char *kv_type, double pos) {
    double bytes = 0, kv_bytes = !strcmp(kv_type, "f16") ? 2.0 : !strcmp(kv_type, "q8_0") ? 34.0 / 32 : 4.0;
    for (int l = 0; l < c->num_layers; l++)
        if (rg_config_layer_type(c, l) == RG_LAYER_RECURRENT) bytes += sizeof(float) * c->conv_width * c->lru_width;
        else bytes += kv_bytes * 2 * fmin(pos + 1, c->window) * c->head_dim;
    return bytes;
}

/* A row against its roofline: pp rows against the peak FLOP/s (roof), tg
 * rows against the tokens/s the bandwidth allows (roof); batched tg rows
 * against the lower of their compute and memory rooflines (both tokens/s,
 * all sequences together). */
typedef struct {
    double frac, roof, compute, memory;
    int compute_bound;
} roofline;

static roofline row_roofline(const machine *mc, const model_result *m, const row *r) {
    roofline o = {0};
    double peak = m->int8 ? mc->peak_int8 : mc->peak_f32;
    if (r->n_prompt) {
        o.roof = peak;
        o.frac = o.roof > 0 ? r->work / ((double)r->n_prompt / r->mean) / o.roof : 0;
        return o;
    }
    if (r->batch == 1) {
        o.roof = r->bw / r->work;
    } else {
        o.compute = peak / r->flops;
        o.memory = r->bw * r->batch / (r->work + r->batch * r->state_read);
        o.compute_bound = o.compute < o.memory;
        o.roof = o.compute_bound ? o.compute : o.memory;
    }
    o.frac = o.roof > 0 ? r->mean / o.roof : 0;
    return o;
}

static size_t physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 0;
}

/* One decode row over B sequences (st[0..B-1], lg: B x V logits): each
 * repetition copies the depth's state into all of them, then runs N steps,
 * each one rg_forward_batch over the B sequences with one token each (for
 * B = 1 exactly rg_forward). */
static int decode_row(const rg_model *m, const rg_state *base, rg_state **st, float *lg, const int32_t *tok,
                      long ntok, row *r) {
    int B = r->batch, V = rg_model_config(m)->vocab_size, rc = 0;
    rg_batch_seq *q = cli_malloc(sizeof *q * (size_t)B);
    for (int k = 0; k < r->reps && !rc; k++) {
        for (int b = 0; b < B; b++) rg_state_copy(st[b], base);
        reset_peak_rss();
        double t0 = cli_time_s();
        for (long j = 0; j < r->n_gen && !rc; j++) {
            for (int b = 0; b < B; b++) /* each sequence its own tokens */
                q[b] = (rg_batch_seq){st[b], &tok[(j + 7 * b) % ntok], 1, lg + (size_t)b * V, 0};
            rc = rg_forward_batch(m, q, B);
        }
        double dt_s = cli_time_s() - t0;
        r->samples[k] = (double)B * r->n_gen / dt_s;
        size_t rss = peak_rss();
        r->rss = rss > r->rss ? rss : r->rss;
        if (B > 1)
            fprintf(stderr, "  %s rep %d: %.2f t/s (%.2f per sequence)\n", r->test, k + 1, r->samples[k],
                    r->samples[k] / B);
        else
            fprintf(stderr, "  %s rep %d: %.2f t/s\n", r->test, k + 1, r->samples[k]);
    }
    free(q);
    return rc;
}

static int bench_model(machine *mc, const char *path, const char *kv_type, const long *pp, int npp, const long *tg,
                       int ntg, const long *depth, int nd, const long *batch, int nb, int reps, model_result *res) {
    rg_model *m;
    fprintf(stderr, "loading %s\n", path);
    if (cli_load_model(path, NULL, kv_type, &m)) {
        cli_error("bench");
        return -1;
    }
    const rg_config *c = rg_model_config(m);
    /* prefill runs on int8 dot products where the kernel set rounds the
     * activations to int8 for this weight type */
    int int8 = rg_model_prefill_int8(m) && mc->peak_int8 > 0;
    const char *wt = rg_model_weight_type(m), *et = rg_model_embed_type(m);
    res->path = path;
    const char *slash = strrchr(path, '/');
    res->name = slash && slash[1] ? slash + 1 : path;
    kv_type = rg_model_kv_type(m);
    int at = strcmp(et, wt) ? snprintf(res->wtype, sizeof res->wtype, "%s, embedding %s", wt, et)
                            : snprintf(res->wtype, sizeof res->wtype, "%s", wt);
    if (strcmp(kv_type, "f32")) snprintf(res->wtype + at, sizeof res->wtype - at, ", %s window", kv_type);
    res->compute = int8 ? "int8 dot" : "f32 FMA";
    res->int8 = int8;
    res->weight_bytes = rg_model_weight_bytes(m);
    double macs = layer_macs(c);
    size_t sb = rg_model_state_bytes(m), mem = physical_memory();
    res->state_bytes = sb;
    long maxb = batch[nb - 1];
    if (ntg > 0 && maxb > 1 && mem > 0 && (double)maxb * sb > 0.9 * mem) {
        char b1[32], b2[32], b3[32];
        fprintf(stderr, "rgemma: bench: --batch %ld: %ld states of %s need %s, more than 90%% of this machine's %s\n",
                maxb, maxb, cli_bytes(sb, b1), cli_bytes((size_t)maxb * sb, b2), cli_bytes(mem, b3));
        rg_model_free(m);
        return -2;
    }
    res->rows = cli_calloc((size_t)(npp + ntg * nd * nb), sizeof *res->rows);

    long maxlen = 1;
    for (int i = 0; i < npp; i++) maxlen = pp[i] > maxlen ? pp[i] : maxlen;
    for (int i = 0; i < nd; i++) maxlen = depth[i] > maxlen ? depth[i] : maxlen;
    for (int i = 0; i < ntg; i++) maxlen = tg[i] > maxlen ? tg[i] : maxlen;
    int32_t *tok = cli_malloc(sizeof(int32_t) * (size_t)maxlen);
    fill_tokens(tok, (int)maxlen, c->vocab_size);
    float *logits = cli_malloc(sizeof(float) * (size_t)c->vocab_size);
    /* every buffer exists before the first row, so rows compare like for like */
    rg_state *base = rg_state_new(m), *s = rg_state_new(m);
    rg_state_copy(s, base);
    int rc = rg_forward(m, s, tok, 1, logits, 0); /* warm-up: maps every weight page */

    for (int i = 0; i < npp && !rc; i++) {
        row *r = &res->rows[res->nrows++];
        *r = (row){.n_prompt = (int)pp[i], .batch = 1, .reps = reps, .samples = cli_calloc((size_t)reps, sizeof(double))};
        snprintf(r->test, sizeof r->test, "pp%ld", pp[i]);
        for (int k = 0; k < reps && !rc; k++) {
            rg_state_copy(s, base);
            reset_peak_rss();
            double t0 = cli_time_s();
            rc = rg_forward(m, s, tok, (int)pp[i], logits, 0);
            double dt_s = cli_time_s() - t0;
            r->samples[k] = (double)pp[i] / dt_s;
            size_t rss = peak_rss();
            r->rss = rss > r->rss ? rss : r->rss;
            fprintf(stderr, "  %s rep %d: %.2f t/s\n", r->test, k + 1, r->samples[k]);
        }
        stats(r);
        /* FLOPs: 2 per multiply-add, every token through the layers, the logits of the last one */
        r->work = 2 * ((double)pp[i] * macs + (double)c->vocab_size * c->hidden_size);
    }
    long done = 0;
    for (int d = 0; d < nd && !rc; d++) {
        if (depth[d] > done) {
            double t0 = cli_time_s();
            rc = rg_forward(m, base, tok, (int)(depth[d] - done), NULL, 0);
            fprintf(stderr, "  depth %ld: %ld tokens processed in %.1f s\n", depth[d], depth[d] - done,
                    cli_time_s() - t0);
            done = depth[d];
        }
        for (int i = 0; i < ntg && !rc; i++)
            for (int bi = 0; bi < nb && !rc; bi++) {
                int B = (int)batch[bi];
                row *r = &res->rows[res->nrows++];
                *r = (row){.n_gen = (int)tg[i], .depth = (int)depth[d], .batch = B, .reps = reps,
                           .samples = cli_calloc((size_t)reps, sizeof(double))};
                int at = snprintf(r->test, sizeof r->test, "tg%ld", tg[i]);
                if (depth[d]) at += snprintf(r->test + at, sizeof r->test - at, " @ d%ld", depth[d]);
                if (B > 1) snprintf(r->test + at, sizeof r->test - at, " \u00d7%d", B);
                /* B = 1 uses the buffers made before the first row */
                rg_state **st = &s;
                float *lg = logits;
                if (B > 1) {
                    st = cli_malloc(sizeof *st * (size_t)B);
                    for (int b = 0; b < B; b++) st[b] = rg_state_new(m);
                    lg = cli_malloc(sizeof(float) * (size_t)B * c->vocab_size);
                }
                r->bw = row_bandwidth(mc);
                rc = decode_row(m, base, st, lg, tok, maxlen, r);
                stats(r);
                r->work = (double)res->weight_bytes;
                r->flops = 2 * (macs + (double)c->vocab_size * c->hidden_size);
                r->state_read = state_read_bytes(c, kv_type, depth[d] + tg[i] / 2.0);
                double after = row_bandwidth(mc);
                r->bw = after > r->bw ? after : r->bw;
                if (B > 1) {
                    for (int b = 0; b < B; b++) rg_state_free(st[b]);
                    free(st);
                    free(lg);
                }
            }
    }
    if (rc) cli_error("bench");
    rg_state_free(base);
    rg_state_free(s);
    free(tok);
    free(logits);
    rg_model_free(m);
    return rc;
}

/* batched: a "per seq" column after t/s (when --batch asked for more than
 * one sequence) */
static void print_markdown(const model_result *res, int nres, const machine *mc, int batched) {
    char b[32];
    printf("CPU: %s, %d threads, %s kernels; load average %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end\n",
           mc->cpu, mc->threads, rg_kernel_path(), mc->load_start[0], mc->load_start[1], mc->load_start[2],
           mc->load_end[0], mc->load_end[1], mc->load_end[2]);
    printf("measured: memory read %.1f-%.1f GB/s (each tg row against the better of its before/after); "
           "peak f32 FMA %.1f GFLOP/s",
           mc->bw_lo / 1e9, mc->bw_hi / 1e9, mc->peak_f32 / 1e9);
    if (mc->peak_int8 > 0) printf(", int8 dot %.1f GOP/s", mc->peak_int8 / 1e9);
    printf("\n\n| model | type | weights/token | threads | test | t/s |%s roofline | peak RSS |\n",
           batched ? " per seq |" : "");
    printf("|---|---|---:|---:|---|---:|%s---|---:|\n", batched ? "---:|" : "");
    for (int i = 0; i < nres; i++)
        for (int j = 0; j < res[i].nrows; j++) {
            const row *r = &res[i].rows[j];
            roofline o = row_roofline(mc, &res[i], r);
            char text[128], per[48] = "";
            if (r->n_prompt)
                snprintf(text, sizeof text, "%.0f%% of %.0f GFLOP/s (%s)", 100 * o.frac, o.roof / 1e9, res[i].compute);
            else if (r->batch == 1) /* also the weight stream's rate against the bandwidth measured around the row */
                snprintf(text, sizeof text, "%.0f%% of %.2f t/s (%.1f of %.1f GB/s)", 100 * o.frac, o.roof,
                         r->mean * r->work / 1e9, r->bw / 1e9);
            else /* the binding roofline first, then the other */
                snprintf(text, sizeof text, "%.0f%% of %.2f t/s (%s; %s %.2f t/s)", 100 * o.frac, o.roof,
                         o.compute_bound ? res[i].compute : "memory", o.compute_bound ? "memory" : res[i].compute,
                         o.compute_bound ? o.memory : o.compute);
            if (batched) snprintf(per, sizeof per, " %.2f |", r->mean / r->batch);
            printf("| %s | %s | %.2f GB | %d | %s | %.2f ± %.2f |%s %s | %s |\n", res[i].name, res[i].wtype,
                   (double)res[i].weight_bytes / 1e9, mc->threads, r->test, r->mean, r->std, per, text,
                   cli_bytes(r->rss, b));
        }
    if (!g_hwm_resettable) printf("\n(peak RSS is the process peak: /proc/self/clear_refs is not writable)\n");
}

static void print_json(const model_result *res, int nres, const machine *mc) {
    cJSON *root = cJSON_CreateObject(), *mach = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(mach, "cpu", mc->cpu);
    cJSON_AddNumberToObject(mach, "threads", mc->threads);
    cJSON_AddStringToObject(mach, "kernels", rg_kernel_path());
    cJSON_AddNumberToObject(mach, "read_bandwidth_bytes_per_s", mc->bw);
    cJSON_AddNumberToObject(mach, "read_bandwidth_min_bytes_per_s", mc->bw_lo);
    cJSON_AddNumberToObject(mach, "read_bandwidth_max_bytes_per_s", mc->bw_hi);
    cJSON_AddNumberToObject(mach, "peak_f32_fma_flops", mc->peak_f32);
    if (mc->peak_int8 > 0) cJSON_AddNumberToObject(mach, "peak_int8_dot_ops", mc->peak_int8);
    else cJSON_AddNullToObject(mach, "peak_int8_dot_ops"); /* the kernel set has no int8 dot product */
    cJSON_AddItemToObject(mach, "load_average_start", cJSON_CreateDoubleArray(mc->load_start, 3));
    cJSON_AddItemToObject(mach, "load_average_end", cJSON_CreateDoubleArray(mc->load_end, 3));
    cJSON *arr = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; i < nres; i++)
        for (int j = 0; j < res[i].nrows; j++) {
            const row *r = &res[i].rows[j];
            roofline rf = row_roofline(mc, &res[i], r);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", res[i].path);
            cJSON_AddStringToObject(o, "weight_type", res[i].wtype);
            cJSON_AddNumberToObject(o, "weight_bytes_per_token", (double)res[i].weight_bytes);
            cJSON_AddStringToObject(o, "test", r->test);
            cJSON_AddNumberToObject(o, "n_prompt", r->n_prompt);
            cJSON_AddNumberToObject(o, "n_gen", r->n_gen);
            cJSON_AddNumberToObject(o, "depth", r->depth);
            cJSON_AddNumberToObject(o, "batch", r->batch);
            /* all sequences together */
            cJSON_AddItemToObject(o, "tokens_per_s", cJSON_CreateDoubleArray(r->samples, r->reps));
            cJSON_AddNumberToObject(o, "tokens_per_s_mean", r->mean);
            cJSON_AddNumberToObject(o, "tokens_per_s_std", r->std);
            cJSON_AddNumberToObject(o, "tokens_per_s_per_sequence_mean", r->mean / r->batch);
            if (r->n_prompt) {
                cJSON_AddStringToObject(o, "roofline", res[i].compute);
                cJSON_AddNumberToObject(o, "roofline_peak_flops", rf.roof);
            } else {
                cJSON_AddStringToObject(o, "roofline", r->batch == 1 || !rf.compute_bound ? "memory read bandwidth"
                                                                                       : res[i].compute);
                cJSON_AddNumberToObject(o, "read_bandwidth_bytes_per_s", r->bw);
                /* the weights are read once per step of B tokens */
                cJSON_AddNumberToObject(o, "weight_stream_bytes_per_s", r->mean / r->batch * r->work);
                cJSON_AddNumberToObject(o, "roofline_tokens_per_s", rf.roof);
                if (r->batch > 1) {
                    cJSON_AddNumberToObject(o, "compute_roofline_tokens_per_s", rf.compute);
                    cJSON_AddNumberToObject(o, "memory_roofline_tokens_per_s", rf.memory);
                    cJSON_AddNumberToObject(o, "roofline_peak_flops", res[i].int8 ? mc->peak_int8 : mc->peak_f32);
                    cJSON_AddNumberToObject(o, "flops_per_token", r->flops);
                    cJSON_AddNumberToObject(o, "state_bytes_read_per_token", r->state_read);
                    cJSON_AddNumberToObject(o, "state_bytes_per_sequence", (double)res[i].state_bytes);
                }
            }
            cJSON_AddNumberToObject(o, "roofline_fraction", rf.frac);
            cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)r->rss);
            cJSON_AddItemToArray(arr, o);
        }
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"gen", required_argument, 0, 'n'},   {"depth", required_argument, 0, 'd'},
        {"reps", required_argument, 0, 'r'},  {"threads", required_argument, 0, 't'},
        {"kernels", required_argument, 0, 'k'}, {"output", required_argument, 0, 'o'},
        {"batch", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'},
        CLI_KV_TYPE_OPTION,                   {0, 0, 0, 0}};
    const char *models[MAX_MODELS], *fmt = "md", *kv_type = NULL;
    int nmodels = 0, npp = 1, ntg = 1, nd = 3, nb = 1;
    long pp[MAX_LIST] = {512}, tg[MAX_LIST] = {128}, depth[MAX_LIST] = {0, 2048, 8192}, batch[MAX_LIST] = {1};
    long reps = 3, v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:p:n:d:b:r:t:k:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (nmodels == MAX_MODELS) {
                fprintf(stderr, "rgemma: bench: at most %d models\n", MAX_MODELS);
                return 2;
            }
            models[nmodels++] = optarg;
            break;
        case 'p': if (parse_list("--prompt", optarg, 0, 1 << 20, pp, &npp)) return 2; break;
        case 'n': if (parse_list("--gen", optarg, 0, 1 << 20, tg, &ntg)) return 2; break;
        case 'd': if (parse_list("--depth", optarg, 0, 1 << 24, depth, &nd)) return 2; break;
        case 'b': if (parse_list("--batch", optarg, 1, MAX_BATCH, batch, &nb)) return 2; break;
        case 'r': if (cli_int("bench", "--reps", optarg, 1, 1000, &reps)) return 2; break;
        case 't':
            if (cli_int("bench", "--threads", optarg, 1, 4096, &v)) return 2;
            rg_set_threads((int)v);
            break;
        case 'k':
            if (rg_set_kernel_path(optarg)) {
                cli_error("bench");
                return 2;
            }
            break;
        case 'o':
            if (strcmp(optarg, "md") && strcmp(optarg, "json")) {
                fprintf(stderr, "rgemma: bench: --output must be md or json (got \"%s\")\n", optarg);
                return 2;
            }
            fmt = optarg;
            break;
        case CLI_OPT_KV_TYPE:
            if (cli_kv_type("bench", optarg, &kv_type)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: bench: unknown or incomplete option '%s' (try --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc || nmodels == 0) {
        fprintf(stderr, "rgemma: bench: %s (try --help)\n",
                nmodels ? "unexpected argument" : "no model given (-m PATH)");
        return 2;
    }
    /* 0 in a list means "none of these rows" */
    long *lists[2] = {pp, tg};
    int *counts[2] = {&npp, &ntg};
    for (int l = 0; l < 2; l++) {
        int k = 0;
        for (int i = 0; i < *counts[l]; i++)
            if (lists[l][i] > 0) lists[l][k++] = lists[l][i];
        *counts[l] = k;
    }
    /* depths are filled in order; batches run smallest first, each once */
    long *sorted[2] = {depth, batch};
    int *lens[2] = {&nd, &nb};
    for (int l = 0; l < 2; l++) {
        long *a = sorted[l];
        for (int i = 1; i < *lens[l]; i++)
            for (int j = i; j > 0 && a[j] < a[j - 1]; j--) {
                long t = a[j];
                a[j] = a[j - 1];
                a[j - 1] = t;
            }
    }
    int k = 1;
    for (int i = 1; i < nb; i++)
        if (batch[i] != batch[k - 1]) batch[k++] = batch[i];
    nb = k;
    int batched = nb > 1 || batch[0] > 1;

    machine mc = {.threads = rg_get_threads()};
    cpu_name(mc.cpu, sizeof mc.cpu);
    load_average(mc.load_start);
    fprintf(stderr, "measuring the machine (%d threads, %s kernels)\n", mc.threads, rg_kernel_path());
    measure_machine(&mc);

    model_result *res = cli_calloc((size_t)nmodels, sizeof *res);
    int rc = 0, nres = 0;
    for (int i = 0; i < nmodels && !rc; i++, nres++)
        rc = bench_model(&mc, models[i], kv_type, pp, npp, tg, ntg, depth, nd, batch, nb, (int)reps, &res[i]);
    int rows = 0;
    for (int i = 0; i < nres; i++) rows += res[i].nrows;
    if (rows > 0) {
        fprintf(stderr, "measuring the machine again\n");
        measure_machine(&mc);
        load_average(mc.load_end);
        if (!strcmp(fmt, "json")) print_json(res, nres, &mc);
        else print_markdown(res, nres, &mc, batched);
    }
    for (int i = 0; i < nres; i++) {
        for (int j = 0; j < res[i].nrows; j++) free(res[i].rows[j].samples);
        free(res[i].rows);
    }
    free(res);
    return rc == -2 ? 2 : rc ? 1 : 0;
}

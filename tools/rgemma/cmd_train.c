/* rgemma train: from scratch or fine-tuning, over rg_train (src/train/
 * trainer.c). This file parses the options and prints the progress. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_util.h"
#include "commands.h"

#define MAX_DATA_FILES 256

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma train --data FILE [--data FILE ...] (--preset P | --config config.json | -m MODEL)\n"
            "                    -o OUTDIR [options]\n\n"
            "Trains a RecurrentGemma model with AdamW on exact gradients. OUTDIR becomes a\n"
            "Hugging Face checkpoint (config.json, model.safetensors, the tokenizer) that\n"
            "every rgemma command loads, plus optimizer.bin for --resume.\n\n"
            "model:\n"
            "  --preset P           from scratch: tiny, 2b or 9b (rgemma synth's shapes)\n"
            "  --config FILE        from scratch: the shape of a config.json\n"
            "  -m, --model PATH     fine-tune this checkpoint (all weights; -hf ORG/NAME too)\n"
            "  --lora R             with -m: train rank-R LoRA adapters of the layers' linear\n"
            "                       matrices instead (projections and MLP; the rest frozen).\n"
            "                       OUTDIR gets the adapters only: adapter_model.safetensors and\n"
            "                       adapter_config.json (rgemma generate -m MODEL --lora OUTDIR)\n"
            "  --lora-alpha X       LoRA scale X/R (default X = R)\n"
            "  --lora-merge         with --lora: OUTDIR also gets the merged checkpoint (config.json,\n"
            "                       model.safetensors with W + (X/R) B A, the tokenizer); with\n"
            "                       --resume on a finished run, merges it\n"
            "  --tokenizer PATH     tokenizer.model / tokenizer.json / folder (from scratch:\n"
            "                       required; its size must fit the config's vocab_size)\n"
            "data:\n"
            "  --data FILE          repeatable. FILE.jsonl: one {\"text\": ...} document or one\n"
            "                       {\"messages\": [{\"role\", \"content\"}, ...]} chat a line (roles\n"
            "                       user, model/assistant, system; the loss counts the model's\n"
            "                       turns only); any other file: one plain-text document\n"
            "  --ctx N              tokens per sequence (default 256); documents are BOS text\n"
            "                       EOS, joined and cut into sequences of N\n"
            "  --eval-frac X        share of the sequences held out (default 0.05; 0 = none)\n"
            "  --eval-every N       held-out loss and perplexity every N steps (default 50;\n"
            "                       also before the first and after the last step)\n"
            "optimiser (AdamW, beta1 0.9, beta2 0.95, eps 1e-8, f32 master weights):\n"
            "  --steps N            optimiser steps (default 100)\n"
            "  --batch N            sequences per step, gradients summed (default 8)\n"
            "  --lr X               peak learning rate (default 3e-4)\n"
            "  --min-lr X           the cosine decay's end (default lr/10)\n"
            "  --warmup N           linear warm-up steps (default steps/10)\n"
            "  --weight-decay X     decoupled, on matrices only, not on norms, biases or\n"
            "                       recurrent_param (default 0.1)\n"
            "  --clip X             global gradient norm limit (default 1.0; 0 = off)\n"
            "  --beta2 X            AdamW's beta2 (default 0.95)\n"
            "  --seed N             initial weights, held-out split, data order (default 1)\n"
            "output:\n"
            "  -o, --output DIR     the checkpoint folder (written to DIR.tmp, then swapped in)\n"
            "  --save-every N       also save every N steps (default: at the end only)\n"
            "  --save-dtype T       model.safetensors as f32 (default) or bf16 (optimizer.bin\n"
            "                       then keeps the f32 weights)\n"
            "  --csv FILE           step,train_loss,eval_loss,lr,tokens,seconds per step\n"
            "  --resume             continue the run saved in DIR (same data and options):\n"
            "                       bit for bit as if it had not stopped\n"
            "  --stop-after N       stop (and save) after N steps of this call; the schedule\n"
            "                       still runs over --steps\n"
            "  --log-every N        a progress line every N steps (default 1)\n"
            "  --checkpoint-activations  keep each layer's input only and recompute its\n"
            "                       activations in the backward pass: less memory, about one more\n"
            "                       forward pass per step, the same weights bit for bit\n"
            "  -t, --threads N      worker threads (default: all cores; results do not depend on it)\n\n"
            "Ctrl-C saves a checkpoint and stops (exit status 130); --resume continues it.\n");
}

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "rgemma: train: %s must be a number in [%g, %g] (got \"%s\")\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static void format_time(double s, char *buf, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

typedef struct {
    int log_every;
} printer;

static void on_event(void *ctx, const rg_train_event *e) {
    const printer *pr = ctx;
    char eta[32];
    switch (e->kind) {
    case RG_TRAIN_INFO: fprintf(stderr, "train: %s\n", e->message); break;
    case RG_TRAIN_STEP:
        if (e->step % pr->log_every && e->step != e->steps) break;
        format_time(e->eta_s, eta, sizeof eta);
        fprintf(stderr, "step %*d/%d  loss %.4f  lr %.3e  |g| %.3f  %.0f tok/s  ETA %s\n", (int)log10(e->steps) + 1,
                e->step, e->steps, e->loss, e->lr, e->grad_norm, e->tokens_per_s, eta);
        break;
    case RG_TRAIN_EVAL:
        fprintf(stderr, "eval at step %d: loss %.4f  ppl %.3f\n", e->step, e->loss, exp(e->loss));
        break;
    case RG_TRAIN_SAVED: fprintf(stderr, "saved %s (step %d)\n", e->path, e->step); break;
    }
}

enum {
    OPT_DATA = 256, OPT_PRESET, OPT_CONFIG, OPT_TOKENIZER, OPT_CTX, OPT_BATCH, OPT_STEPS, OPT_LR, OPT_MIN_LR,
    OPT_WARMUP, OPT_WD, OPT_CLIP, OPT_BETA2, OPT_EVAL_EVERY, OPT_EVAL_FRAC, OPT_SAVE_EVERY, OPT_SEED, OPT_CSV,
    OPT_RESUME, OPT_SAVE_DTYPE, OPT_STOP_AFTER, OPT_LOG_EVERY, OPT_LORA, OPT_LORA_ALPHA, OPT_LORA_MERGE, OPT_CKPT_ACT
};

int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, OPT_DATA}, {"preset", required_argument, 0, OPT_PRESET},
        {"config", required_argument, 0, OPT_CONFIG}, {"model", required_argument, 0, 'm'},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER}, {"output", required_argument, 0, 'o'},
        {"ctx", required_argument, 0, OPT_CTX}, {"batch", required_argument, 0, OPT_BATCH},
        {"steps", required_argument, 0, OPT_STEPS}, {"lr", required_argument, 0, OPT_LR},
        {"min-lr", required_argument, 0, OPT_MIN_LR}, {"warmup", required_argument, 0, OPT_WARMUP},
        {"weight-decay", required_argument, 0, OPT_WD}, {"clip", required_argument, 0, OPT_CLIP},
        {"beta2", required_argument, 0, OPT_BETA2}, {"eval-every", required_argument, 0, OPT_EVAL_EVERY},
        {"eval-frac", required_argument, 0, OPT_EVAL_FRAC}, {"save-every", required_argument, 0, OPT_SAVE_EVERY},
        {"seed", required_argument, 0, OPT_SEED}, {"threads", required_argument, 0, 't'},
        {"csv", required_argument, 0, OPT_CSV}, {"resume", no_argument, 0, OPT_RESUME},
        {"save-dtype", required_argument, 0, OPT_SAVE_DTYPE}, {"stop-after", required_argument, 0, OPT_STOP_AFTER},
        {"log-every", required_argument, 0, OPT_LOG_EVERY}, {"lora", required_argument, 0, OPT_LORA},
        {"lora-alpha", required_argument, 0, OPT_LORA_ALPHA}, {"lora-merge", no_argument, 0, OPT_LORA_MERGE},
        {"checkpoint-activations", no_argument, 0, OPT_CKPT_ACT}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    rg_train_params p;
    rg_train_params_default(&p);
    const char *data[MAX_DATA_FILES], *preset = NULL, *config_path = NULL;
    int n_data = 0, warmup_given = 0, min_lr_given = 0;
    printer pr = {1};
    long v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:o:t:h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case OPT_DATA:
            if (n_data == MAX_DATA_FILES) {
                fprintf(stderr, "rgemma: train: at most %d --data files\n", MAX_DATA_FILES);
                return 2;
            }
            data[n_data++] = optarg;
            break;
        case OPT_PRESET: preset = optarg; break;
        case OPT_CONFIG: config_path = optarg; break;
        case 'm': p.model_path = optarg; break;
        case OPT_TOKENIZER: p.tokenizer_path = optarg; break;
        case 'o': p.out_dir = optarg; break;
        case OPT_CSV: p.csv_path = optarg; break;
        case OPT_RESUME: p.resume = 1; break;
        case OPT_LORA_MERGE: p.lora_merge = 1; break;
        case OPT_CKPT_ACT: p.checkpoint_activations = 1; break;
        case OPT_SAVE_DTYPE:
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) {
                fprintf(stderr, "rgemma: train: --save-dtype must be f32 or bf16 (got \"%s\")\n", optarg);
                return 2;
            }
            p.save_dtype = optarg;
            break;
        case OPT_CTX: bad = cli_int("train", "--ctx", optarg, 2, 1 << 20, &v), p.ctx = (int)v; break;
        case OPT_BATCH: bad = cli_int("train", "--batch", optarg, 1, 1 << 20, &v), p.batch = (int)v; break;
        case OPT_STEPS: bad = cli_int("train", "--steps", optarg, 1, 1 << 30, &v), p.steps = (int)v; break;
        case OPT_WARMUP: bad = cli_int("train", "--warmup", optarg, 0, 1 << 30, &v), p.warmup = (int)v, warmup_given = 1; break;
        case OPT_EVAL_EVERY: bad = cli_int("train", "--eval-every", optarg, 0, 1 << 30, &v), p.eval_every = (int)v; break;
        case OPT_SAVE_EVERY: bad = cli_int("train", "--save-every", optarg, 0, 1 << 30, &v), p.save_every = (int)v; break;
        case OPT_STOP_AFTER: bad = cli_int("train", "--stop-after", optarg, 1, 1 << 30, &v), p.stop_after = (int)v; break;
        case OPT_LORA: bad = cli_int("train", "--lora", optarg, 1, 4096, &v), p.lora_rank = (int)v; break;
        case OPT_LORA_ALPHA: bad = parse_double("--lora-alpha", optarg, 1e-6, 1e6, &p.lora_alpha); break;
        case OPT_LOG_EVERY: bad = cli_int("train", "--log-every", optarg, 1, 1 << 30, &v), pr.log_every = (int)v; break;
        case OPT_SEED: bad = cli_int("train", "--seed", optarg, 0, 0x7fffffffffffffffL, &v), p.seed = (uint64_t)v; break;
        case 't':
            bad = cli_int("train", "--threads", optarg, 1, 4096, &v);
            if (!bad) rg_set_threads((int)v);
            break;
        case OPT_LR: bad = parse_double("--lr", optarg, 1e-12, 10, &p.lr); break;
        case OPT_MIN_LR: bad = parse_double("--min-lr", optarg, 0, 10, &p.min_lr), min_lr_given = 1; break;
        case OPT_WD: bad = parse_double("--weight-decay", optarg, 0, 10, &p.weight_decay); break;
        case OPT_CLIP: bad = parse_double("--clip", optarg, 0, 1e9, &p.clip); break;
        case OPT_BETA2: bad = parse_double("--beta2", optarg, 0, 0.999999, &p.beta2); break;
        case OPT_EVAL_FRAC: bad = parse_double("--eval-frac", optarg, 0, 0.9, &p.eval_frac); break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: train: unknown or incomplete option '%s' (try 'rgemma train --help')\n",
                    argv[optind - 1]);
            return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "rgemma: train: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!n_data || !p.out_dir || (!!preset + !!config_path + !!p.model_path) != 1) {
        fprintf(stderr, "rgemma: train: needs --data, -o DIR and one of --preset, --config, -m (try 'rgemma train "
                        "--help')\n");
        return 2;
    }
    if (!warmup_given) p.warmup = p.steps / 10;
    if (!min_lr_given) p.min_lr = p.lr / 10;
    if (p.warmup > p.steps) {
        fprintf(stderr, "rgemma: train: --warmup %d is longer than --steps %d\n", p.warmup, p.steps);
        return 2;
    }
    if (p.lora_merge && !p.lora_rank) {
        fprintf(stderr, "rgemma: train: --lora-merge needs --lora R\n");
        return 2;
    }
    if (p.min_lr > p.lr) {
        fprintf(stderr, "rgemma: train: --min-lr %g is above --lr %g\n", p.min_lr, p.lr);
        return 2;
    }
    rg_config cfg;
    if ((preset && rg_synth_preset(preset, &cfg)) || (config_path && rg_config_load(config_path, &cfg))) {
        cli_error("train");
        return 1;
    }
    if (!p.model_path) p.config = &cfg;
    p.data_files = data;
    p.n_data_files = n_data;
    p.progress = on_event;
    p.progress_ctx = &pr;
    cli_catch_sigint();
    p.cancel = &cli_interrupted;
    rg_train_result r;
    if (rg_train(&p, &r)) {
        cli_error("train");
        return 1;
    }
    fprintf(stderr, "train: %s at step %d of %d: train loss %.4f", r.stopped ? "stopped" : "done", r.steps_done,
            p.steps, r.train_loss);
    if (!isnan(r.eval_loss)) fprintf(stderr, ", held-out loss %.4f (ppl %.3f)", r.eval_loss, exp(r.eval_loss));
    fprintf(stderr, "; %lld tokens in %.1f s; %s %s\n", (long long)r.tokens, r.seconds,
            p.lora_rank && !p.lora_merge ? "adapters" : "checkpoint", p.out_dir);
    return cli_interrupted ? 130 : 0;
}

/* rgemma chat: an interactive conversation in Gemma's turn format. The
 * state is kept between turns, so each turn processes only its own new
 * tokens: the history is never run through the model again. Works on a
 * terminal and with a pipe (one line = one user turn). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli_util.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma chat -m MODEL [options]\n\n"
            "Talk to an instruction-tuned (-it) RecurrentGemma. Type a message and press Enter; end a line\n"
            "with '\\' to continue it on the next. /reset starts a new conversation, /exit (or Ctrl-D) quits.\n"
            "Ctrl-C stops the reply being written; at the prompt it quits.\n\n"
            "  -m, --model DIR          model folder (with its tokenizer)\n"
            "  -hf ORG/NAME[@REV]       a model of Hugging Face, pulled first (rgemma pull; --offline: cache only)\n"
            "      --system TEXT        system prompt (folded into the first user turn)\n"
            "  -n, --n-predict N        most tokens per reply (default -1: until <end_of_turn>)\n"
            "  -s, --seed N             sampling seed (default -1: random)\n"
            "      --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty X, --repeat-last-n N,\n"
            "      --presence-penalty X, --frequency-penalty X   sampling, as in 'rgemma generate'\n"
            "      --load-state FILE    continue a conversation saved with --save-state\n"
            "      --save-state FILE    save the conversation's state when leaving\n"
            "      --verbose-prompt     print each turn's prompt ids and reply ids to stderr\n"
            "      --parse-special      spelled special pieces (\"<end_of_turn>\", ...) in messages and --system\n"
            "                           become those pieces (default: off, they are plain text)\n"
            "      --tokenizer PATH     tokenizer.model / tokenizer.json / folder (default: the model's folder)\n"
            "      --lora PATH          LoRA adapters applied at load (rgemma train --lora's folder)\n"
            "      --kv-type f32|f16|q8_0   attention window (KV cache) element type (default f32); f16 halves\n"
            "                           the state, q8_0 takes 27%% of f32's window bytes\n"
            "  -t, --threads N          worker threads (default: all cores)\n");
}

enum {
    OPT_SAVE_STATE = CLI_OPT_OWN, OPT_LOAD_STATE, OPT_SYSTEM, OPT_TOKENIZER, OPT_VERBOSE, OPT_PARSE_SPECIAL,
    OPT_NO_PARSE_SPECIAL, OPT_LORA
};

typedef struct {
    int verbose;
    int32_t *ids;
    size_t n, cap;
} reply;

static int print_reply(void *ctx, int32_t token, const char *text, size_t len) {
    reply *r = ctx;
    if (len) fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (r->verbose && token >= 0) {
        if (r->n == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 64;
            r->ids = cli_realloc(r->ids, sizeof *r->ids * r->cap);
        }
        r->ids[r->n++] = token;
    }
    return 0;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "%s", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? "," : "", ids[i]);
    fprintf(stderr, "\n");
}

/* One user message: lines ending in '\' continue. NULL at end of input
 * (or Ctrl-C). *nul is set when the message holds a NUL byte (the text after
 * it would be lost: the message is refused). */
static char *read_message(FILE *in, int tty, int *nul) {
    *nul = 0;
    char *msg = NULL, *line = NULL;
    size_t mlen = 0, cap = 0;
    for (;;) {
        if (tty) {
            fputs(msg ? ". " : "> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        ssize_t k = getline(&line, &cap, in);
        if (k < 0 || cli_interrupted) {
            free(line);
            if (msg && !cli_interrupted) return msg; /* the last line had no newline */
            free(msg);
            return NULL;
        }
        if (memchr(line, 0, (size_t)k)) *nul = 1;
        if (k && line[k - 1] == '\n') line[--k] = 0;
        if (k && line[k - 1] == '\r') line[--k] = 0;
        int more = k && line[k - 1] == '\\';
        if (more) line[k - 1] = '\n'; /* the line goes on: the backslash becomes the newline */
        msg = cli_realloc(msg, mlen + (size_t)k + 1);
        memcpy(msg + mlen, line, (size_t)k);
        mlen += (size_t)k;
        msg[mlen] = 0;
        if (!more) break;
    }
    free(line);
    return msg;
}

int cmd_chat(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        CLI_GENERATION_OPTIONS,
        {"help", no_argument, 0, 'h'},
        {"system", required_argument, 0, OPT_SYSTEM},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"verbose-prompt", no_argument, 0, OPT_VERBOSE},
        {"parse-special", no_argument, 0, OPT_PARSE_SPECIAL},
        {"no-parse-special", no_argument, 0, OPT_NO_PARSE_SPECIAL},
        {"save-state", required_argument, 0, OPT_SAVE_STATE},
        {"load-state", required_argument, 0, OPT_LOAD_STATE},
        {"lora", required_argument, 0, OPT_LORA},
        CLI_KV_TYPE_OPTION,
        {0, 0, 0, 0}};
    const char *cmd = "chat", *model_path = NULL, *save_path = NULL, *load_path = NULL, *system_arg = NULL,
               *tok_arg = NULL, *lora = NULL, *kv_type = NULL;
    int verbose = 0, parse_special = 0;
    rg_generate_params gp;
    rg_generate_params_default(&gp);
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "m:n:s:t:h", opts, NULL)) != -1) {
        int shared = cli_generation_option(cmd, c, optarg, &gp);
        if (shared < 0) return 2;
        if (shared) continue;
        switch (c) {
        case 'm': model_path = optarg; break;
        case OPT_SAVE_STATE: save_path = optarg; break;
        case OPT_LOAD_STATE: load_path = optarg; break;
        case OPT_LORA: lora = optarg; break;
        case CLI_OPT_KV_TYPE:
            if (cli_kv_type(cmd, optarg, &kv_type)) return 2;
            break;
        case OPT_SYSTEM: system_arg = optarg; break;
        case OPT_TOKENIZER: tok_arg = optarg; break;
        case OPT_VERBOSE: verbose = 1; break;
        case OPT_PARSE_SPECIAL: parse_special = 1; break;
        case OPT_NO_PARSE_SPECIAL: parse_special = 0; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "rgemma: chat: unknown option or missing value '%s' (try 'rgemma chat --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rgemma: chat: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model_path) {
        fprintf(stderr, "rgemma: chat: -m MODEL is required (try 'rgemma chat --help')\n");
        return 2;
    }
    if (save_path && cli_check_writable(cmd, "--save-state", save_path)) return 1;
    int rc = 1, failed;
    rg_model *m = NULL;
    rg_state *st = NULL;
    rg_tokenizer *tok = NULL;
    if (cli_load_model(model_path, lora, kv_type, &m)) {
        cli_error(cmd);
        goto done;
    }
    const rg_config *cfg = rg_model_config(m);
    tok = cli_tokenizer(cmd, model_path, tok_arg, 1, &failed);
    if (!tok) goto done;
    if (rg_tokenizer_check_vocab(tok, cfg->vocab_size)) {
        cli_error(cmd);
        goto done;
    }
    int32_t eot = rg_tokenizer_piece_id(tok, "<end_of_turn>");
    if (eot < 0 || rg_tokenizer_piece_id(tok, "<start_of_turn>") < 0) {
        fprintf(stderr, "rgemma: chat: the tokenizer has no <start_of_turn>/<end_of_turn>: not a Gemma tokenizer\n");
        goto done;
    }
    st = rg_state_new(m);
    int32_t pending = -1;
    if (load_path) {
        int32_t p[RG_STATE_MAX_PENDING];
        int np = 0;
        if (rg_state_load_pending(st, load_path, p, &np)) {
            cli_error(cmd);
            goto done;
        }
        if (np > 1) {
            fprintf(stderr, "rgemma: chat: %s: more than one pending token: not a chat state\n", load_path);
            goto done;
        }
        if (np) pending = p[0];
    }
    gp.stop_ids = &eot;
    gp.n_stop_ids = 1;
    gp.cancel = &cli_interrupted;
    int tty = isatty(0);
    if (tty)
        fprintf(stderr, "rgemma chat: %d layers, state %zu bytes whatever the length of the conversation. "
                        "/exit to quit, /reset to start over.\n",
                cfg->num_layers, rg_model_state_bytes(m));
    int turn = 0, refused = 0;
    for (;;) {
        cli_interrupted = 0;
        cli_catch_sigint();
        int nul;
        char *msg = read_message(stdin, tty, &nul);
        if (!msg) break;
        if (nul) {
            fprintf(stderr, "rgemma: chat: the message holds a NUL byte: refused (nothing was sent)\n");
            free(msg);
            refused++;
            /* piped turns stop here: the ones after would answer a conversation
             * without this turn (one error, no state saved); on a terminal the
             * user simply types it again */
            if (!tty) goto done;
            continue;
        }
        if (!strcmp(msg, "/exit") || !strcmp(msg, "/quit")) {
            free(msg);
            break;
        }
        if (!strcmp(msg, "/reset")) {
            rg_state_reset(st);
            pending = -1;
            turn = 0;
            free(msg);
            fprintf(stderr, "[new conversation]\n");
            continue;
        }
        if (!msg[0]) {
            free(msg);
            continue;
        }
        int32_t *ids;
        size_t n;
        int first = rg_state_pos(st) == 0 && pending < 0;
        if (rg_chat_turn_ex(tok, system_arg, msg, first, pending, parse_special, &ids, &n)) {
            cli_error(cmd);
            free(msg);
            goto done;
        }
        free(msg);
        if (verbose) print_ids("prompt ids: ", ids, n);
        reply r = {verbose, NULL, 0, 0};
        rg_generate_result res;
        int err = rg_generate(m, tok, st, ids, (int)n, &gp, print_reply, &r, &res);
        free(ids);
        fputc('\n', stdout);
        fflush(stdout);
        if (err) {
            free(r.ids);
            cli_error(cmd);
            goto done;
        }
        /* every sampled id: the printed ones and the stop id; the last is
         * the pending one that opens the next turn's prompt */
        if (res.stop_reason == RG_STOP_EOS) print_reply(&r, res.next_token, NULL, 0);
        if (verbose) print_ids("reply ids: ", r.ids, r.n);
        free(r.ids);
        pending = res.next_token;
        turn++;
        /* what this turn cost: only its own tokens went through the model */
        fprintf(stderr,
                "[turn %d: processed %d new prompt tokens in %.3f s, replied %d tokens at %.1f tok/s (%s); "
                "the state holds %lld tokens in %zu bytes]\n",
                turn, res.prompt_tokens, res.prompt_seconds, res.generated_tokens,
                res.generate_seconds > 0 ? res.generated_tokens / res.generate_seconds : 0.0,
                cli_stop_name(res.stop_reason), (long long)rg_state_pos(st), rg_model_state_bytes(m));
    }
    if (tty) fputc('\n', stdout);
    if (save_path) {
        if (rg_state_save_pending(st, &pending, pending >= 0, save_path)) {
            cli_error(cmd);
            goto done;
        }
        fprintf(stderr, "saved the conversation's state to %s (%zu bytes)\n", save_path, rg_model_state_file_bytes(m));
    }
    rc = refused ? 1 : 0; /* a refused message: the conversation is not what the input asked for */
done:
    rg_tokenizer_free(tok);
    rg_state_free(st);
    rg_model_free(m);
    return rc;
}

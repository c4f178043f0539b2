/* rgemma serve: the OpenAI-compatible HTTP server (src/server/server.h). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rgemma.h"
#include "cli_util.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma serve -m MODEL [options]\n"
            "\n"
            "An OpenAI-compatible HTTP server: POST /v1/chat/completions, POST /v1/completions\n"
            "(\"stream\": true for server-sent events), GET /v1/models, GET /health,\n"
            "POST /tokenize, POST /detokenize, GET /metrics (Prometheus).\n"
            "\n"
            "  -m, --model PATH        model folder or file (required)\n"
            "      --tokenizer PATH    tokenizer.model / tokenizer.json or its folder (default: the model's own: inside\n"
            "                          a .gguf file, else in the model's folder)\n"
            "      --alias NAME        the model id clients use (default: the model folder's name)\n"
            "      --host ADDR         address to listen on (default 127.0.0.1)\n"
            "      --port N            port (default 8080; 0 = any free port, printed at start)\n"
            "  -np, --parallel N       slots: requests processed at once (default 1); all busy slots\n"
            "                          advance together, one batched step per token (continuous batching)\n"
            "  -t, --threads N         threads of the batched steps (default: all cores)\n"
            "      --prefill-chunk N   prompt tokens per step (default: adaptive: 256 while no slot\n"
            "                          decodes, else max(16, decoding slots), so prompts delay others little)\n"
            "      --queue N           requests that may wait for a slot; more get 503 (default 32)\n"
            "      --timeout S         seconds a request may take, queue wait included (default 600)\n"
            "      --cache-states N    conversation states kept for follow-up turns (default 16; 0 = off)\n"
            "      --max-body BYTES    largest request body (default 1048576)\n"
            "      --max-tokens N      largest max_tokens a request may ask for, and its default (default 4096)\n"
            "      --cors ORIGIN       let web pages from ORIGIN (or \"*\": any) call the API: sends\n"
            "                          Access-Control-Allow-Origin and answers OPTIONS preflights (default: off)\n"
            "      --header-timeout S  seconds a client may take to send a request's headers and body, and to\n"
            "                          stay idle between requests (default 10)\n"
            "      --max-conn N        connections open at once (default 1024)\n"
            "      --max-conn-per-ip N connections from one address (default 64; 0 = no limit)\n"
            "  -v, --verbose           one line per request on stderr (status, tokens, duration)\n");
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "rgemma: %s needs an integer between %ld and %ld (got '%s')\n", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    rg_server_opts o;
    rg_server_opts_default(&o);
    const char *model_path = NULL, *tok_path = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
#define INT_OPT(lo, hi, dst)                                                                                           \
    do {                                                                                                               \
        if (parse_int(a, v, lo, hi, &x)) return 2;                                                                     \
        dst = x;                                                                                                       \
        i++;                                                                                                           \
    } while (0)
#define STR_OPT(dst)                                                                                                   \
    do {                                                                                                               \
        if (!v) {                                                                                                      \
            fprintf(stderr, "rgemma: %s needs a value\n", a);                                                          \
            return 2;                                                                                                  \
        }                                                                                                              \
        dst = v;                                                                                                       \
        i++;                                                                                                           \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) STR_OPT(model_path);
        else if (!strcmp(a, "--tokenizer")) STR_OPT(tok_path);
        else if (!strcmp(a, "--alias")) STR_OPT(o.model_name);
        else if (!strcmp(a, "--host")) STR_OPT(o.host);
        else if (!strcmp(a, "--port")) INT_OPT(0, 65535, o.port);
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) INT_OPT(1, 1024, o.n_slots);
        else if (!strcmp(a, "--prefill-chunk")) INT_OPT(1, 4096, o.prefill_chunk);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT_OPT(1, 1024, threads);
        else if (!strcmp(a, "--queue")) INT_OPT(0, 100000, o.queue_max);
        else if (!strcmp(a, "--timeout")) INT_OPT(1, 86400 * 7, o.timeout_s);
        else if (!strcmp(a, "--cache-states")) INT_OPT(0, 100000, o.cache_states);
        else if (!strcmp(a, "--max-body")) INT_OPT(16, LONG_MAX, o.max_body);
        else if (!strcmp(a, "--max-tokens")) INT_OPT(1, 1 << 30, o.max_tokens);
        else if (!strcmp(a, "--header-timeout")) INT_OPT(1, 86400, o.header_timeout_s);
        else if (!strcmp(a, "--max-conn")) INT_OPT(1, 1 << 20, o.max_connections);
        else if (!strcmp(a, "--max-conn-per-ip")) INT_OPT(0, 1 << 20, o.max_conn_per_ip);
        else if (!strcmp(a, "--cors")) {
            STR_OPT(o.cors_origin);
            for (const char *ch = o.cors_origin; *ch; ch++)
                if (*ch < 0x21 || *ch > 0x7e) {
                    fprintf(stderr, "rgemma: serve: --cors \"%s\": an origin is printable ASCII without spaces\n",
                            o.cors_origin);
                    return 2;
                }
            if (!*o.cors_origin) {
                fprintf(stderr, "rgemma: serve: --cors needs an origin (e.g. http://localhost:3000) or \"*\"\n");
                return 2;
            }
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o.verbose = 1;
        else {
            fprintf(stderr, "rgemma: serve: unknown option '%s' (try 'rgemma serve --help')\n", a);
            return 2;
        }
#undef INT_OPT
#undef STR_OPT
    }
    if (!model_path) {
        fprintf(stderr, "rgemma: serve needs a model (-m PATH)\n");
        return 2;
    }
    /* SIGINT/SIGTERM are taken by sigwait below: blocked before any thread
     * starts so that every thread inherits the mask, and before the model
     * loads so that a signal meanwhile stops the server as soon as it runs */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = threads ? threads : (int)(cores > 0 ? cores : 1);

    rg_model *m = NULL;
    rg_tokenizer *t = NULL;
    if (rg_model_load(model_path, &m)) {
        cli_error("serve");
        return 1;
    }
    if (tok_path ? rg_tokenizer_load(tok_path, &t) : rg_tokenizer_find(model_path, &t)) {
        cli_error("serve");
        rg_model_free(m);
        return 1;
    }
    /* the model id: the folder's (or file's) name unless --alias gives one */
    char name[256];
    if (!o.model_name) {
        size_t n = strlen(model_path);
        while (n > 1 && model_path[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && model_path[b - 1] != '/') b--;
        snprintf(name, sizeof name, "%.*s", (int)(n - b), model_path + b);
        o.model_name = name;
    }

    rg_server *srv;
    if (rg_server_start(m, t, &o, &srv)) {
        cli_error("serve");
        rg_tokenizer_free(t);
        rg_model_free(m);
        return 1;
    }
    const rg_config *cfg = rg_model_config(m);
    double state_mb = rg_state_bytes(cfg) / 1048576.0;
    fprintf(stderr,
            "rgemma serve: model '%s', %d slot%s in batched steps on %d thread%s, queue %d, state %.2f MiB (cache up to %d states, "
            "%.1f MiB)\n",
            o.model_name, o.n_slots, o.n_slots == 1 ? "" : "s", o.threads, o.threads == 1 ? "" : "s", o.queue_max,
            state_mb, o.cache_states, state_mb * o.cache_states);
    int v6 = strchr(o.host, ':') != NULL;
    fprintf(stderr, "rgemma serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", o.host, v6 ? "]" : "",
            rg_server_port(srv));
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "rgemma serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    rg_server_stop(srv);
    rg_tokenizer_free(t);
    rg_model_free(m);
    return 0;
}

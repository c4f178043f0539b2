/* rgemma serve: the OpenAI-compatible HTTP server (rg_server_start). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rgemma.h"
#include "cli_util.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: rgemma serve -m MODEL [options]\n"
            "\n"
            "An OpenAI-compatible HTTP server: POST /v1/chat/completions, POST /v1/completions\n"
            "(\"stream\": true for server-sent events), GET /v1/models, GET /health (liveness),\n"
            "GET /ready (readiness: 503 while the model loads), POST /tokenize, POST /detokenize,\n"
            "GET /metrics (Prometheus). An X-Request-Id header is logged (-v) and sent back.\n"
            "\n"
            "  -m, --model PATH        model folder or file (required)\n"
            "  -hf ORG/NAME[@REV]      a model of Hugging Face, pulled first (rgemma pull; --offline: cache only)\n"
            "      --tokenizer PATH    tokenizer.model / tokenizer.json or its folder (default: the model's own: inside\n"
            "                          a .gguf file, else in the model's folder)\n"
            "      --lora PATH         LoRA adapters applied at load (rgemma train --lora's folder)\n"
            "      --kv-type f32|f16|q8_0  attention window (KV cache) element type of the slots' and cached\n"
            "                          states (default f32); f16 halves each state, q8_0 about quarters it\n"
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
            "      --state-store redis://HOST:PORT[/DB]\n"
            "                          share conversation states with other replicas through Redis: after each\n"
            "                          chat turn the state is stored, and a turn the local cache cannot continue\n"
            "                          is continued from the store (Redis down: the local cache and a prefill)\n"
            "      --state-ttl S       seconds a stored state is kept (default 3600)\n"
            "      --drain-timeout S   on SIGTERM: /health and new requests answer 503 at once while the requests\n"
            "                          in flight finish, for at most S seconds (default 30; 0: stop at once).\n"
            "                          SIGINT, or a second signal, stops at once\n"
            "  -v, --verbose           one line per request on stderr (status, tokens, duration)\n");
}

int cmd_serve(int argc, char **argv) {
    enum {
        OPT_TOKENIZER = 256, OPT_ALIAS, OPT_HOST, OPT_PORT, OPT_PREFILL_CHUNK, OPT_QUEUE, OPT_TIMEOUT,
        OPT_CACHE_STATES, OPT_MAX_BODY, OPT_MAX_TOKENS, OPT_HEADER_TIMEOUT, OPT_MAX_CONN, OPT_MAX_CONN_PER_IP, OPT_CORS,
        OPT_STATE_STORE, OPT_STATE_TTL, OPT_DRAIN_TIMEOUT, OPT_LORA
    };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"alias", required_argument, 0, OPT_ALIAS},
        {"host", required_argument, 0, OPT_HOST},
        {"port", required_argument, 0, OPT_PORT},
        {"parallel", required_argument, 0, 'P'},
        {"prefill-chunk", required_argument, 0, OPT_PREFILL_CHUNK},
        {"threads", required_argument, 0, 't'},
        {"queue", required_argument, 0, OPT_QUEUE},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"cache-states", required_argument, 0, OPT_CACHE_STATES},
        {"max-body", required_argument, 0, OPT_MAX_BODY},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"header-timeout", required_argument, 0, OPT_HEADER_TIMEOUT},
        {"max-conn", required_argument, 0, OPT_MAX_CONN},
        {"max-conn-per-ip", required_argument, 0, OPT_MAX_CONN_PER_IP},
        {"cors", required_argument, 0, OPT_CORS},
        {"state-store", required_argument, 0, OPT_STATE_STORE},
        {"state-ttl", required_argument, 0, OPT_STATE_TTL},
        {"drain-timeout", required_argument, 0, OPT_DRAIN_TIMEOUT},
        {"lora", required_argument, 0, OPT_LORA},
        CLI_KV_TYPE_OPTION,
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    rg_server_opts o;
    rg_server_opts_default(&o);
    const char *model_path = NULL, *tok_path = NULL, *lora = NULL, *kv_type = NULL;
    long threads = 0, x, drain_s = 30;
    /* -np N is llama.cpp's spelling of --parallel N */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-np")) argv[i] = "--parallel";
    int c;
    optind = 1;
    opterr = 0;
#define INT_ARG(name, lo, hi, dst)                                                                                     \
    if (cli_int("serve", name, optarg, lo, hi, &x)) return 2;                                                          \
    dst = x;                                                                                                           \
    break
    while ((c = getopt_long(argc, argv, "m:t:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'm': model_path = optarg; break;
        case OPT_TOKENIZER: tok_path = optarg; break;
        case OPT_LORA: lora = optarg; break;
        case CLI_OPT_KV_TYPE:
            if (cli_kv_type("serve", optarg, &kv_type)) return 2;
            break;
        case OPT_ALIAS: o.model_name = optarg; break;
        case OPT_HOST: o.host = optarg; break;
        case OPT_PORT: INT_ARG("--port", 0, 65535, o.port);
        case 'P': INT_ARG("--parallel", 1, 1024, o.n_slots);
        case OPT_PREFILL_CHUNK: INT_ARG("--prefill-chunk", 1, 4096, o.prefill_chunk);
        case 't': INT_ARG("--threads", 1, 1024, threads);
        case OPT_QUEUE: INT_ARG("--queue", 0, 100000, o.queue_max);
        case OPT_TIMEOUT: INT_ARG("--timeout", 1, 86400 * 7, o.timeout_s);
        case OPT_CACHE_STATES: INT_ARG("--cache-states", 0, 100000, o.cache_states);
        case OPT_MAX_BODY: INT_ARG("--max-body", 16, LONG_MAX, o.max_body);
        case OPT_MAX_TOKENS: INT_ARG("--max-tokens", 1, 1 << 30, o.max_tokens);
        case OPT_HEADER_TIMEOUT: INT_ARG("--header-timeout", 1, 86400, o.header_timeout_s);
        case OPT_MAX_CONN: INT_ARG("--max-conn", 1, 1 << 20, o.max_connections);
        case OPT_MAX_CONN_PER_IP: INT_ARG("--max-conn-per-ip", 0, 1 << 20, o.max_conn_per_ip);
        case OPT_CORS:
            o.cors_origin = optarg;
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
            break;
        case OPT_STATE_STORE: o.state_store = optarg; break;
        case OPT_STATE_TTL: INT_ARG("--state-ttl", 1, 86400 * 365, o.state_ttl_s);
        case OPT_DRAIN_TIMEOUT: INT_ARG("--drain-timeout", 0, 86400, drain_s);
        case 'v': o.verbose = 1; break;
        default:
            fprintf(stderr, "rgemma: serve: unknown or incomplete option '%s' (try 'rgemma serve --help')\n",
                    argv[optind - 1]);
            return 2;
        }
    }
#undef INT_ARG
    if (optind < argc) {
        fprintf(stderr, "rgemma: serve: unexpected argument '%s' (try 'rgemma serve --help')\n", argv[optind]);
        return 2;
    }
    if (!model_path) {
        fprintf(stderr, "rgemma: serve: no model given (-m PATH)\n");
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
    o.threads = threads ? (int)threads : (int)(cores > 0 ? cores : 1);

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
    /* listening first: a load balancer sees the server alive and not ready
     * (/health, /ready) while the model loads */
    rg_server *srv;
    if (rg_server_listen(&o, &srv)) {
        cli_error("serve");
        return 1;
    }
    int v6 = strchr(o.host, ':') != NULL;
    fprintf(stderr, "rgemma serve: bound to http://%s%s%s:%d, loading the model\n", v6 ? "[" : "", o.host,
            v6 ? "]" : "", rg_server_port(srv));
    rg_model *m = NULL;
    rg_tokenizer *t = NULL;
    if (cli_load_model(model_path, lora, kv_type, &m) ||
        (tok_path ? rg_tokenizer_load(tok_path, &t) : rg_tokenizer_find(model_path, &t)) ||
        rg_server_attach(srv, m, t)) {
        cli_error("serve");
        rg_server_stop(srv);
        rg_tokenizer_free(t);
        rg_model_free(m);
        return 1;
    }
    double state_mb = rg_model_state_bytes(m) / 1048576.0;
    fprintf(stderr,
            "rgemma serve: model '%s', %d slot%s in batched steps on %d thread%s, queue %d, state %.2f MiB (cache up to %d states, "
            "%.1f MiB)%s%s\n",
            o.model_name, o.n_slots, o.n_slots == 1 ? "" : "s", o.threads, o.threads == 1 ? "" : "s", o.queue_max,
            state_mb, o.cache_states, state_mb * o.cache_states, o.state_store ? ", state store " : "",
            o.state_store ? o.state_store : "");
    fprintf(stderr, "rgemma serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", o.host, v6 ? "]" : "",
            rg_server_port(srv));
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGTERM && drain_s > 0) {
        /* drain: the requests in flight finish, for at most drain_s; another signal cuts it short */
        fprintf(stderr, "rgemma serve: terminated, draining (%d request%s in flight, at most %ld s)\n",
                rg_server_active(srv), rg_server_active(srv) == 1 ? "" : "s", drain_s);
        rg_server_drain(srv);
        struct timespec tick = {0, 100 * 1000000L}, t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int cut = 0;
        while (rg_server_active(srv) > 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - t0.tv_sec >= drain_s || sigtimedwait(&sigs, NULL, &tick) > 0) {
                cut = 1;
                break;
            }
        }
        if (cut)
            fprintf(stderr, "rgemma serve: drain cut short, %d request%s still in flight, stopping\n",
                    rg_server_active(srv), rg_server_active(srv) == 1 ? "" : "s");
        else
            fprintf(stderr, "rgemma serve: drained, stopping\n");
    } else {
        fprintf(stderr, "rgemma serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    }
    rg_server_stop(srv);
    rg_tokenizer_free(t);
    rg_model_free(m);
    return 0;
}

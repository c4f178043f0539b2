/* `rgemma serve`: an OpenAI-compatible HTTP server on libmicrohttpd.
 * Endpoints: POST /v1/chat/completions, POST /v1/completions (JSON or SSE
 * streams), GET /v1/models, GET /health, POST /tokenize, POST /detokenize,
 * GET /metrics (Prometheus text). */
#ifndef RG_SERVER_H
#define RG_SERVER_H

#include <stddef.h>
#include "rgemma.h"

typedef struct {
    const char *host;        /* address to bind (numeric or a name); default 127.0.0.1 */
    int port;                /* 0: any free port (see rg_server_port) */
    int n_slots;             /* requests processed at once */
    int threads;             /* kernel threads of the batched steps over all slots */
    int prefill_chunk;       /* prompt tokens per step (0: adaptive: a full chunk while no slot
                              * decodes, else max(16, decoding slots)) */
    int queue_max;           /* requests that may wait for a slot; more get 503 */
    double timeout_s;        /* a request's limit from arrival to its last token */
    int cache_states;        /* conversation states kept (0 = no state cache) */
    size_t max_body;         /* largest request body in bytes; more get 413 */
    int max_tokens;          /* largest max_tokens a request may ask for, and its default */
    const char *model_name;  /* the id in /v1/models and the accepted "model" field */
    int verbose;             /* one line per request on stderr: status, tokens, duration */
    int header_timeout_s;    /* a client's time to send a request's headers and body, and to stay
                              * idle between requests (a request being answered has --timeout) */
    int max_connections;     /* connections open at once */
    int max_conn_per_ip;     /* connections from one address (0 = no limit) */
    const char *cors_origin; /* NULL: no CORS; else the Access-Control-Allow-Origin
                              * value ("*" or an origin), and OPTIONS preflights
                              * are answered */
} rg_server_opts;

void rg_server_opts_default(rg_server_opts *o);

typedef struct rg_server rg_server;

/* Start listening and serving in background threads. The model and the
 * tokenizer must outlive the server. */
int rg_server_start(const rg_model *m, const rg_tokenizer *t, const rg_server_opts *o, rg_server **out);
/* The port actually bound. */
int rg_server_port(const rg_server *s);
/* Stop accepting, end every request (queued ones get 503) and free. */
void rg_server_stop(rg_server *s);

#endif

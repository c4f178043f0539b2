/* `rgemma serve`: an OpenAI-compatible HTTP server on libmicrohttpd.
 * Endpoints: POST /v1/chat/completions, POST /v1/completions (JSON or SSE
 * streams), GET /v1/models, GET /health, POST /tokenize, POST /detokenize,
 * GET /metrics (Prometheus text). */
#ifndef RG_SERVER_H
#define RG_SERVER_H

#include <stddef.h>
#include "rgemma.h"

/* The server's public part (rg_server_opts, rg_server_start, ...) is in
 * include/rgemma.h, "server". */

#endif

#include <stdarg.h>
#include <stdio.h>
#include "util/util.h"

static _Thread_local char g_err[1024];

const char *rg_last_error(void) { return g_err; }

/* A message may quote bytes of a bad file (a tensor name, a JSON key): its
 * control bytes become '?', so that an error stays one line. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}
void rg_clear_error(void) { g_err[0] = 0; }

int rg_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    one_line(g_err);
    return -1;
}

int rg_error_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof g_err - 3) n = sizeof g_err - 3;
    memcpy(g_err, prefix, n);
    memcpy(g_err + n, ": ", 2);
    size_t room = sizeof g_err - n - 3, ol = strlen(old);
    if (ol > room) ol = room;
    memcpy(g_err + n + 2, old, ol);
    g_err[n + 2 + ol] = 0;
    one_line(g_err);
    return -1;
}

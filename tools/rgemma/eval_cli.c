#include "eval_cli.h"
#include "cli_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_load_tokenizer(const char *model_path, const char *explicit_path, rg_tokenizer **out) {
    return explicit_path ? rg_tokenizer_load(explicit_path, out) : rg_tokenizer_find(model_path, out);
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void cli_progress_start(cli_progress *p, int enabled, int64_t total, const char *unit) {
    p->enabled = enabled;
    p->total = total;
    p->start = cli_time_s();
    p->last = 0;
    p->unit = unit;
}

static void draw(cli_progress *p, int64_t done, const char *extra) {
    double el = cli_time_s() - p->start, rate = el > 0 ? done / el : 0;
    double frac = p->total > 0 ? (double)done / p->total : 1;
    char bar[31], eta[32], spent[32];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fmt_time(rate > 0 ? (p->total - done) / rate : NAN, eta, sizeof eta);
    fmt_time(el, spent, sizeof spent);
    fprintf(stderr, "\r[%s] %lld/%lld %5.1f%%  %.2f %s/s  %s elapsed, ETA %s%s%s\033[K", bar, (long long)done,
            (long long)p->total, 100 * frac, rate, p->unit, spent, eta, extra ? "  " : "", extra ? extra : "");
    fflush(stderr);
}

void cli_progress_update(cli_progress *p, int64_t done, const char *extra) {
    if (!p->enabled) return;
    double now = cli_time_s();
    if (done < p->total && now - p->last < 0.2) return;
    p->last = now;
    draw(p, done, extra);
}

void cli_progress_end(cli_progress *p) {
    if (p->enabled) fputc('\n', stderr);
}

/* Answer matching and score statistics for evaluation tasks. */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include "eval/eval.h"
#include "util/util.h"

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

char *rg_normalize_answer(const char *s, size_t len) {
    /* lower case and punctuation dropped, then words re-joined without articles */
    char *t = rg_xmalloc(len + 1), *out = rg_xmalloc(len + 1);
    size_t n = 0, o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 128 && ispunct(c)) continue;
        t[n++] = c < 128 ? (char)tolower(c) : (char)c;
    }
    for (size_t i = 0; i < n;) {
        while (i < n && is_space(t[i])) i++;
        size_t b = i;
        while (i < n && !is_space(t[i])) i++;
        size_t w = i - b;
        if (w == 0) break;
        if ((w == 1 && t[b] == 'a') || (w == 2 && !memcmp(t + b, "an", 2)) || (w == 3 && !memcmp(t + b, "the", 3)))
            continue;
        if (o) out[o++] = ' ';
        memcpy(out + o, t + b, w);
        o += w;
    }
    out[o] = 0;
    free(t);
    return out;
}

static char *trimmed(const char *s, size_t len) {
    while (len && is_space(*s)) s++, len--;
    while (len && is_space(s[len - 1])) len--;
    char *r = rg_xmalloc(len + 1);
    memcpy(r, s, len);
    r[len] = 0;
    return r;
}

/* The last number in s: -?digits with optional comma groups and a fraction. */
static char *last_number(const char *s) {
    const char *best = NULL;
    size_t best_len = 0;
    for (const char *p = s; *p;) {
        if (!isdigit((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *b = p;
        if (b > s && b[-1] == '-') b--;
        while (isdigit((unsigned char)*p) || (*p == ',' && isdigit((unsigned char)p[1]))) p++;
        if (*p == '.' && isdigit((unsigned char)p[1]))
            for (p++; isdigit((unsigned char)*p);) p++;
        best = b;
        best_len = (size_t)(p - b);
    }
    char *r = rg_xmalloc(best_len + 1);
    size_t n = 0;
    for (size_t i = 0; i < best_len; i++)
        if (best[i] != ',') r[n++] = best[i];
    r[n] = 0;
    char *dot = strchr(r, '.');
    if (dot) { /* 18.00 -> 18 */
        size_t z = 1;
        while (dot[z] == '0') z++;
        if (!dot[z]) *dot = 0;
    }
    return r;
}

char *rg_extract_answer(const char *mode, const char *text) {
    if (!mode || !strcmp(mode, "text")) return trimmed(text, strlen(text));
    if (!strcmp(mode, "number")) return last_number(text);
    regex_t re;
    int rc = regcomp(&re, mode, REG_EXTENDED);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &re, msg, sizeof msg);
        rg_error("extract: bad regular expression \"%s\": %s", mode, msg);
        return NULL;
    }
    regmatch_t m[2];
    const char *p = text, *best = NULL;
    size_t best_len = 0;
    int flags = 0;
    while (*p && regexec(&re, p, 2, m, flags) == 0) {
        int g = re.re_nsub >= 1 && m[1].rm_so >= 0 ? 1 : 0;
        best = p + m[g].rm_so;
        best_len = (size_t)(m[g].rm_eo - m[g].rm_so);
        p += m[0].rm_eo > m[0].rm_so ? m[0].rm_eo : m[0].rm_so + 1; /* step past empty matches */
        flags = REG_NOTBOL;
    }
    regfree(&re);
    return best ? trimmed(best, best_len) : trimmed("", 0);
}

int rg_majority(char *const *answers, int n) {
    int best = 0, best_count = 0;
    for (int i = 0; i < n; i++) {
        int c = 0;
        for (int j = 0; j < n; j++) c += !strcmp(answers[i], answers[j]);
        if (c > best_count) {
            best = i;
            best_count = c;
        }
    }
    return best;
}

void rg_mean_stderr(const double *x, int n, double *mean, double *stderr_out) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double mu = n ? s / n : NAN, ss = 0;
    for (int i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *stderr_out = n > 1 ? sqrt(ss / (n - 1) / n) : NAN;
}

size_t rg_utf8_chars(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

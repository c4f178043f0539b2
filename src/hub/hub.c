/* rg_hub_pull: a model repository of the Hugging Face hub into
 * huggingface_hub's cache, so that both find each other's downloads:
 *
 *   CACHE/models--ORG--NAME/blobs/ETAG            a file's content
 *   CACHE/models--ORG--NAME/blobs/ETAG.incomplete  a transfer under way
 *   CACHE/models--ORG--NAME/snapshots/COMMIT/FILE  -> ../../blobs/ETAG
 *   CACHE/models--ORG--NAME/refs/REV               COMMIT
 *   CACHE/.locks/models--ORG--NAME/ETAG.lock       one writer per blob
 *
 * The protocol is huggingface_hub's: HEAD ENDPOINT/ORG/NAME/resolve/REV/FILE,
 * redirects not followed, gives the commit (X-Repo-Commit), the digest
 * (X-Linked-Etag for LFS files, whose answer is a redirect to a CDN, else
 * ETag) and the size (X-Linked-Size, else Content-Length); then GET, following
 * redirects, with Range: bytes=N- to resume a partial file. Every header is
 * untrusted: values are length-bounded, and what becomes a file name (digest,
 * commit, shard names from the index) must be hex of the right length or a
 * plain name. A file enters blobs/ only complete and verified: the sha256 of
 * an LFS file must be its etag, the git blob sha1 ("blob SIZE\0" + content)
 * that of a small one. The token goes to the endpoint only: libcurl does not
 * send credentials on to a redirect's other host (or port, or scheme). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hub/hub.h"
#include "util/hash.h"
#include "util/util.h"

#define MAX_REDIRECTS 5
#define INDEX_MAX_BYTES (64u << 20)
#define MAX_SHARDS 4096

static const char *const DEFAULT_ENDPOINT = "https://huggingface.co";

/* ------------------------------------------------------------- checks */

static int name_char(int c) { return isalnum(c) || c == '.' || c == '_' || c == '-'; }

static int valid_part(const char *s, size_t n, size_t max) {
    if (n == 0 || n > max || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_char((unsigned char)s[i])) return 0;
        if (i && s[i] == s[i - 1] && (s[i] == '.' || s[i] == '-')) return 0; /* ".." "--" */
    }
    return 1;
}

int rg_hub_valid_repo(const char *repo) {
    const char *slash = repo ? strchr(repo, '/') : NULL;
    if (!slash) return 0;
    return valid_part(repo, (size_t)(slash - repo), 96) && valid_part(slash + 1, strlen(slash + 1), 96);
}

int rg_hub_valid_hex(const char *s, size_t n) {
    if (!s || strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int rg_hub_valid_rev(const char *rev) {
    if (!rev || !*rev || strlen(rev) > 128 || rev[0] == '.' || rev[0] == '-' || strstr(rev, "..")) return 0;
    for (const char *p = rev; *p; p++)
        if (!name_char((unsigned char)*p)) return 0;
    return 1;
}

int rg_hub_valid_weight_name(const char *name) {
    static const char ext[] = ".safetensors";
    size_t n = name ? strlen(name) : 0, e = sizeof ext - 1;
    if (n <= e || n > 200 || name[0] == '.' || strstr(name, "..") || strcmp(name + n - e, ext)) return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)name[i])) return 0;
    return 1;
}

int rg_hub_parse_etag(const char *value, char out[65]) {
    const char *p = value;
    if (!strncmp(p, "W/", 2)) p += 2;
    size_t n = strlen(p);
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') p++, n -= 2;
    if (n != 40 && n != 64) return -1;
    memcpy(out, p, n);
    out[n] = 0;
    return rg_hub_valid_hex(out, n) ? 0 : -1;
}

/* ------------------------------------------------------------- helpers */

static char *fmt(const char *f, ...) RG_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = rg_xmalloc((size_t)n + 1);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int env_true(const char *name) {
    const char *v = env(name);
    if (!v) return 0;
    return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on");
}

static long env_seconds(const char *name, long def) {
    const char *v = env(name);
    if (!v) return def;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0)) return def;
    return d > 86400 ? 86400 : d < 1 ? 1 : (long)d;
}

/* huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface,
 * else ~/.cache/huggingface */
static char *hf_home(void) {
    if (env("HF_HOME")) return fmt("%s", env("HF_HOME"));
    if (env("XDG_CACHE_HOME")) return fmt("%s/huggingface", env("XDG_CACHE_HOME"));
    if (env("HOME")) return fmt("%s/.cache/huggingface", env("HOME"));
    return NULL;
}

char *rg_hub_cache_dir(void) {
    if (env("HF_HUB_CACHE")) return fmt("%s", env("HF_HUB_CACHE"));
    char *home = hf_home();
    if (!home) {
        rg_error("pull: no cache folder: set HF_HUB_CACHE or HF_HOME (HOME is not set either)");
        return NULL;
    }
    char *c = fmt("%s/hub", home);
    free(home);
    return c;
}

/* mkdir -p, its error in the command's style */
static int mkdirs(const char *path) { return rg_make_dirs(path) ? rg_error_prefix("pull") : 0; }

static int file_size(const char *path, uint64_t *size) {
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return -1;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* The token: $HF_TOKEN, else the file $HF_TOKEN_PATH or $HF_HOME/token.
 * NULL when there is none; -1 (with *bad) when it cannot be a token. */
static int read_token(char **out) {
    *out = NULL;
    char *tok = NULL;
    if (env("HF_TOKEN")) {
        tok = fmt("%s", env("HF_TOKEN"));
    } else {
        char *home = hf_home();
        char *path = env("HF_TOKEN_PATH") ? fmt("%s", env("HF_TOKEN_PATH")) : home ? fmt("%s/token", home) : NULL;
        free(home);
        size_t len;
        if (path && rg_file_exists(path) && rg_read_file(path, 4096, &tok, &len)) {
            rg_error_prefix("pull: token file");
            free(path);
            return -1;
        }
        free(path);
    }
    if (!tok) return 0;
    size_t n = strlen(tok);
    while (n && isspace((unsigned char)tok[n - 1])) tok[--n] = 0;
    char *s = tok;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) {
        free(tok);
        return 0;
    }
    for (char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || p - s > 1024) {
            free(tok);
            return rg_error("pull: the token (HF_TOKEN or the token file) has characters a token cannot have");
        }
    *out = fmt("%s", s);
    free(tok);
    return 0;
}

/* ------------------------------------------------------------- HTTP */

typedef struct {
    const char *repo, *rev;
    char *endpoint, *token, *cache, *repo_dir, *lock_dir;
    char commit[41];
    CURL *curl;
    long head_timeout, dl_timeout;
    rg_hub_progress_fn progress;
    void *ctx;
} pull_ctx;

/* what the last response's headers said (of the last response when a
 * transfer followed redirects) */
typedef struct {
    char commit[48], etag[80], linked_etag[80], error_code[48], location[2048], content_range[96];
    uint64_t linked_size, length;
    int have_linked_size, have_length, bad; /* bad: a value too long for its field */
} headers;

static void set_value(headers *h, char *field, size_t cap, const char *v, size_t n) {
    if (n >= cap) {
        h->bad = 1;
        field[0] = 0;
        return;
    }
    memcpy(field, v, n);
    field[n] = 0;
}

static int parse_u64(const char *v, size_t n, uint64_t *out) {
    if (n == 0 || n > 19) return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata) {
    headers *h = userdata;
    size_t n = size * nitems;
    if (n >= 5 && !memcmp(buf, "HTTP/", 5)) { /* a new response (after a redirect): its own headers */
        memset(h, 0, sizeof *h);
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t klen = (size_t)(colon - buf);
    const char *v = colon + 1, *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t vlen = (size_t)(end - v);
#define KEY(name) (klen == sizeof name - 1 && !strncasecmp(buf, name, klen))
    if (KEY("X-Repo-Commit")) set_value(h, h->commit, sizeof h->commit, v, vlen);
    else if (KEY("ETag")) set_value(h, h->etag, sizeof h->etag, v, vlen);
    else if (KEY("X-Linked-Etag")) set_value(h, h->linked_etag, sizeof h->linked_etag, v, vlen);
    else if (KEY("X-Error-Code")) set_value(h, h->error_code, sizeof h->error_code, v, vlen);
    else if (KEY("Location")) set_value(h, h->location, sizeof h->location, v, vlen);
    else if (KEY("Content-Range")) set_value(h, h->content_range, sizeof h->content_range, v, vlen);
    else if (KEY("X-Linked-Size")) h->have_linked_size = !parse_u64(v, vlen, &h->linked_size);
    else if (KEY("Content-Length")) h->have_length = !parse_u64(v, vlen, &h->length);
#undef KEY
    return n;
}

static void common_opts(pull_ctx *p, const char *url, headers *h) {
    CURL *c = p->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "rgemma/" RG_VERSION);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, p->dl_timeout);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    if (p->token) {
        /* libcurl's own auth: never sent on to another host, port or scheme
         * when a redirect leads there (CURLOPT_UNRESTRICTED_AUTH stays off) */
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, p->token);
        curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    }
}

static int gated(pull_ctx *p, const char *file, const char *url, long status) {
    return rg_error("pull: %s: %s: HTTP %ld: the model may be gated or private (or may not exist): accept its "
                    "licence on https://huggingface.co/%s and set HF_TOKEN to a token of that account "
                    "(https://huggingface.co/settings/tokens)%s",
                    file, url, status, p->repo, p->token ? "; the token that was sent is not allowed" : "");
}

typedef struct {
    char etag[65];
    uint64_t size;
} file_info;

/* HEAD: 0 = found (info set), 1 = the file is not in the repository (404),
 * -1 = error */
static int head(pull_ctx *p, const char *file, file_info *info) {
    char *url = fmt("%s/%s/resolve/%s/%s", p->endpoint, p->repo, p->rev, file);
    headers h;
    long status = 0;
    int rc = -1;
    for (int hop = 0;; hop++) {
        memset(&h, 0, sizeof h);
        common_opts(p, url, &h);
        curl_easy_setopt(p->curl, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(p->curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(p->curl, CURLOPT_TIMEOUT, p->head_timeout);
        struct curl_slist *hdr = curl_slist_append(NULL, "Accept-Encoding: identity");
        curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, hdr);
        CURLcode cc = curl_easy_perform(p->curl);
        curl_slist_free_all(hdr);
        if (cc != CURLE_OK) {
            rg_error("pull: %s: cannot reach %s: %s (--offline runs from the cache only)", file, url,
                     curl_easy_strerror(cc));
            goto done;
        }
        curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
        if (h.bad) {
            rg_error("pull: %s: %s: a response header is too long", file, url);
            goto done;
        }
        /* a relative redirect (a renamed repository): the hub's own, followed;
         * an LFS file's redirect to the CDN carries X-Linked-Etag and is not */
        if (status >= 300 && status < 400 && !h.linked_etag[0] && h.location[0] == '/' && h.location[1] != '/') {
            if (hop == MAX_REDIRECTS) {
                rg_error("pull: %s: %s: too many redirects", file, url);
                goto done;
            }
            for (const char *q = h.location; *q; q++)
                if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
                    rg_error("pull: %s: %s: a redirect to a malformed address", file, url);
                    goto done;
                }
            /* the endpoint's scheme://host[:port] and the new path */
            const char *host = strstr(p->endpoint, "://");
            const char *path = host ? strchr(host + 3, '/') : NULL;
            size_t origin = path ? (size_t)(path - p->endpoint) : strlen(p->endpoint);
            char *next = fmt("%.*s%s", (int)origin, p->endpoint, h.location);
            free(url);
            url = next;
            continue;
        }
        break;
    }
    if (status == 401 || status == 403) {
        gated(p, file, url, status);
        goto done;
    }
    if (status == 404) {
        if (!strcmp(h.error_code, "RepositoryNotFound")) {
            rg_error("pull: %s: repository %s not found (%s, HTTP 404)", file, p->repo, url);
        } else if (!strcmp(h.error_code, "RevisionNotFound")) {
            rg_error("pull: %s: revision %s of %s not found (%s, HTTP 404)", file, p->rev, p->repo, url);
        } else {
            rg_error("pull: %s: not in the repository (%s, HTTP 404)", file, url);
            rc = 1;
        }
        goto done;
    }
    if (!(status == 200 || (status >= 300 && status < 400 && h.linked_etag[0]))) {
        rg_error("pull: %s: %s: HTTP %ld", file, url, status);
        goto done;
    }
    const char *etag = h.linked_etag[0] ? h.linked_etag : h.etag;
    if (!etag[0] || rg_hub_parse_etag(etag, info->etag)) {
        rg_error("pull: %s: %s: no usable ETag (want a quoted sha256 or git sha1; got \"%.80s\")", file, url, etag);
        goto done;
    }
    if (!rg_hub_valid_hex(h.commit, 40)) {
        rg_error("pull: %s: %s: no usable X-Repo-Commit (want 40 hex digits; got \"%.48s\")", file, url, h.commit);
        goto done;
    }
    if (h.have_linked_size) info->size = h.linked_size;
    else if (h.have_length && status == 200) info->size = h.length;
    else {
        rg_error("pull: %s: %s: the response gives no size (X-Linked-Size or Content-Length)", file, url);
        goto done;
    }
    if (!p->commit[0]) {
        if (rg_hub_valid_hex(p->rev, 40) && strcmp(p->rev, h.commit)) {
            rg_error("pull: %s: %s: asked for commit %s, the server answers for %s", file, url, p->rev, h.commit);
            goto done;
        }
        memcpy(p->commit, h.commit, 41);
    } else if (strcmp(p->commit, h.commit)) {
        rg_error("pull: %s: the repository changed during the pull (commit %s, then %s): run it again", file,
                 p->commit, h.commit);
        goto done;
    }
    rc = 0;
done:
    free(url);
    return rc;
}

/* ------------------------------------------------------------- download */

typedef struct {
    pull_ctx *p;
    const char *file;
    int fd;
    uint64_t offset, size, resumed;
    int started, failed;
    headers *h;
    char err[256];
} sink;

static size_t on_data(char *buf, size_t size, size_t nmemb, void *userdata) {
    sink *s = userdata;
    size_t n = size * nmemb;
    if (!s->started) {
        s->started = 1;
        long status = 0;
        curl_easy_getinfo(s->p->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200 && s->offset > 0) { /* the range was ignored: the whole file comes */
            if (ftruncate(s->fd, 0) || lseek(s->fd, 0, SEEK_SET) < 0) {
                snprintf(s->err, sizeof s->err, "cannot truncate the partial file: %s", strerror(errno));
                return 0;
            }
            s->offset = s->resumed = 0;
        } else if (status == 206) {
            unsigned long long a = 0;
            if (sscanf(s->h->content_range, "bytes %llu-", &a) != 1 || a != s->offset) {
                snprintf(s->err, sizeof s->err, "asked for bytes %llu-, got the range \"%.60s\"",
                         (unsigned long long)s->offset, s->h->content_range);
                return 0;
            }
        } else if (status != 200) {
            snprintf(s->err, sizeof s->err, "HTTP %ld", status);
            return 0;
        }
    }
    if (n > s->size - s->offset) {
        snprintf(s->err, sizeof s->err, "the server sent more than the %llu bytes announced",
                 (unsigned long long)s->size);
        return 0;
    }
    for (size_t k = 0; k < n;) {
        ssize_t w = write(s->fd, buf + k, n - k);
        if (w < 0) {
            if (errno == EINTR) continue;
            snprintf(s->err, sizeof s->err, "write error: %s", strerror(errno));
            return 0;
        }
        k += (size_t)w;
    }
    s->offset += n;
    if (s->p->progress) {
        rg_hub_progress pr = {s->file, s->offset, s->size, s->resumed, 0};
        s->p->progress(s->p->ctx, &pr);
    }
    return n;
}

/* The digest of a file as the hub names it: sha256 of the content (64 hex)
 * or the git blob sha1, sha1("blob SIZE\0" + content) (40 hex). */
static int digest(const char *path, size_t hex_len, char out[65]) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rg_error("pull: cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return rg_error("pull: cannot stat %s: %s", path, strerror(errno));
    }
    rg_sha256_ctx s256;
    rg_sha1_ctx s1;
    rg_sha256_init(&s256);
    rg_sha1_init(&s1);
    if (hex_len == 40) {
        char prefix[40];
        int k = snprintf(prefix, sizeof prefix, "blob %llu", (unsigned long long)st.st_size);
        rg_sha1_update(&s1, prefix, (size_t)k + 1); /* with its NUL */
    }
    enum { BUF = 1 << 20 };
    uint8_t *buf = rg_xmalloc(BUF);
    for (;;) {
        ssize_t r = read(fd, buf, BUF);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return rg_error("pull: read error in %s: %s", path, strerror(errno));
        }
        if (r == 0) break;
        if (hex_len == 40) rg_sha1_update(&s1, buf, (size_t)r);
        else rg_sha256_update(&s256, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    uint8_t d[32];
    if (hex_len == 40) {
        rg_sha1_final(&s1, d);
        rg_hex(d, 20, out);
    } else {
        rg_sha256_final(&s256, d);
        rg_hex(d, 32, out);
    }
    return 0;
}

/* The blob of one file, downloaded (or resumed) into ETAG.incomplete,
 * verified, renamed to ETAG. */
static int download(pull_ctx *p, const char *file, const file_info *fi, const char *blob) {
    char *part = fmt("%s.incomplete", blob);
    char *lock = fmt("%s/%s.lock", p->lock_dir, fi->etag);
    char *url = fmt("%s/%s/resolve/%s/%s", p->endpoint, p->repo, p->commit, file);
    int rc = -1, fd = -1;
    int lfd = open(lock, O_RDWR | O_CREAT, 0644);
    if (lfd < 0) {
        rg_error("pull: %s: cannot create the lock %s: %s", file, lock, strerror(errno));
        goto done;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB)) {
        rg_error("pull: %s: another process is downloading it (lock %s held)", file, lock);
        goto done;
    }
    uint64_t have;
    if (!file_size(blob, &have) && have == fi->size) { /* the other process finished it */
        rc = 0;
        goto done;
    }
    fd = open(part, O_WRONLY | O_CREAT, 0644);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        rg_error("pull: %s: cannot write %s: %s", file, part, strerror(errno));
        goto done;
    }
    have = (uint64_t)st.st_size;
    if (have > fi->size) {
        if (ftruncate(fd, 0)) {
            rg_error("pull: %s: cannot truncate %s: %s", file, part, strerror(errno));
            goto done;
        }
        have = 0;
    }
    if (lseek(fd, (off_t)have, SEEK_SET) < 0) {
        rg_error("pull: %s: cannot seek in %s: %s", file, part, strerror(errno));
        goto done;
    }
    uint64_t resumed = have;
    if (have < fi->size) {
        headers h;
        memset(&h, 0, sizeof h);
        sink s = {.p = p, .file = file, .fd = fd, .offset = have, .size = fi->size, .resumed = have, .h = &h};
        common_opts(p, url, &h);
        curl_easy_setopt(p->curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(p->curl, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
        curl_easy_setopt(p->curl, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(p->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(p->curl, CURLOPT_LOW_SPEED_TIME, p->dl_timeout);
        char range[48];
        snprintf(range, sizeof range, "%llu-", (unsigned long long)have);
        if (have) curl_easy_setopt(p->curl, CURLOPT_RANGE, range);
        CURLcode cc = curl_easy_perform(p->curl);
        if (cc != CURLE_OK) {
            long status = 0;
            curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
            if (cc == CURLE_HTTP_RETURNED_ERROR && (status == 401 || status == 403)) {
                gated(p, file, url, status);
            } else if (cc == CURLE_HTTP_RETURNED_ERROR) {
                rg_error("pull: %s: %s: HTTP %ld", file, url, status);
            } else {
                rg_error("pull: %s: %s: the transfer stopped after %llu of %llu bytes: %s%s%s; the part is kept in "
                         "%s: run the pull again to resume",
                         file, url, (unsigned long long)s.offset, (unsigned long long)fi->size,
                         curl_easy_strerror(cc), s.err[0] ? ": " : "", s.err, part);
            }
            goto done;
        }
        resumed = s.resumed;
        if (s.offset != fi->size) {
            rg_error("pull: %s: %s: the transfer ended after %llu of %llu bytes; the part is kept in %s: run the "
                     "pull again to resume",
                     file, url, (unsigned long long)s.offset, (unsigned long long)fi->size, part);
            goto done;
        }
    }
    if (close(fd)) {
        fd = -1;
        rg_error("pull: %s: cannot write %s: %s", file, part, strerror(errno));
        goto done;
    }
    fd = -1;
    char got[65];
    size_t hex_len = strlen(fi->etag);
    if (digest(part, hex_len, got)) goto done;
    if (strcmp(got, fi->etag)) {
        unlink(part);
        rg_error("pull: %s: %s mismatch: expected %s, got %s (from %s); the download was deleted", file,
                 hex_len == 64 ? "sha256" : "git blob sha1", fi->etag, got, url);
        goto done;
    }
    if (rename(part, blob)) {
        rg_error("pull: %s: cannot rename %s: %s", file, part, strerror(errno));
        goto done;
    }
    if (p->progress) {
        rg_hub_progress pr = {file, fi->size, fi->size, resumed, 1};
        p->progress(p->ctx, &pr);
    }
    rc = 0;
done:
    if (fd >= 0) close(fd);
    if (lfd >= 0) close(lfd); /* releases the lock */
    free(part);
    free(lock);
    free(url);
    return rc;
}

/* snapshots/COMMIT/FILE -> ../../blobs/ETAG */
static int link_file(pull_ctx *p, const char *file, const char *etag) {
    char *dir = fmt("%s/snapshots/%s", p->repo_dir, p->commit);
    char *path = fmt("%s/%s", dir, file);
    char *target = fmt("../../blobs/%s", etag);
    int rc = mkdirs(dir);
    if (!rc) {
        char cur[256];
        ssize_t n = readlink(path, cur, sizeof cur - 1);
        if (n >= 0) cur[n] = 0;
        if (n < 0 || strcmp(cur, target)) {
            unlink(path);
            if (symlink(target, path)) rc = rg_error("pull: cannot link %s: %s", path, strerror(errno));
        }
    }
    free(dir);
    free(path);
    free(target);
    return rc;
}

/* One file: 0 = in the snapshot, 1 = not in the repository (404), -1 = error */
static int fetch(pull_ctx *p, const char *file) {
    file_info fi;
    memset(&fi, 0, sizeof fi);
    int rc = head(p, file, &fi);
    if (rc) return rc;
    char *blob = fmt("%s/blobs/%s", p->repo_dir, fi.etag);
    uint64_t have;
    if (file_size(blob, &have) || have != fi.size) rc = download(p, file, &fi, blob);
    free(blob);
    if (!rc) rc = link_file(p, file, fi.etag);
    return rc;
}

/* ------------------------------------------------------------- the index */

/* The shard files model.safetensors.index.json names (each once, in order
 * of first appearance). */
static int shard_names(const char *index_path, char ***names, int *n) {
    char *text;
    size_t len;
    *names = NULL;
    *n = 0;
    if (rg_read_file(index_path, INDEX_MAX_BYTES, &text, &len)) return rg_error_prefix("pull");
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return rg_error("pull: model.safetensors.index.json: no \"weight_map\" object");
    }
    char **v = NULL;
    int k = 0, rc = 0;
    size_t cap = 0;
    for (cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !rg_hub_valid_weight_name(e->valuestring)) {
            rc = rg_error("pull: model.safetensors.index.json: \"%.80s\" is not a shard file name (a plain name "
                          "ending in .safetensors)",
                          cJSON_IsString(e) ? e->valuestring : "(not a string)");
            break;
        }
        int seen = 0;
        for (int i = 0; i < k && !seen; i++) seen = !strcmp(v[i], e->valuestring);
        if (seen) continue;
        if (k == MAX_SHARDS) {
            rc = rg_error("pull: model.safetensors.index.json: more than %d shard files", MAX_SHARDS);
            break;
        }
        v = rg_grow(v, &cap, (size_t)k + 1, sizeof *v);
        v[k++] = fmt("%s", e->valuestring);
    }
    cJSON_Delete(root);
    if (!rc && k == 0) rc = rg_error("pull: model.safetensors.index.json: the weight_map names no file");
    if (rc) {
        for (int i = 0; i < k; i++) free(v[i]);
        free(v);
        return -1;
    }
    *names = v;
    *n = k;
    return 0;
}

static void free_names(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static const char *const EXTRAS[] = {"tokenizer_config.json", "generation_config.json", "special_tokens_map.json"};

static int pull_online(pull_ctx *p) {
    int rc = fetch(p, "config.json");
    if (rc) return rc > 0 ? -1 : rc;
    rc = fetch(p, "model.safetensors.index.json");
    if (rc < 0) return rc;
    if (rc == 0) {
        char *idx = fmt("%s/snapshots/%s/model.safetensors.index.json", p->repo_dir, p->commit);
        char **names;
        int n;
        rc = shard_names(idx, &names, &n);
        free(idx);
        if (rc) return rc;
        for (int i = 0; i < n && !rc; i++) rc = fetch(p, names[i]) ? -1 : 0;
        free_names(names, n);
        if (rc) return rc;
    } else if (fetch(p, "model.safetensors")) {
        return -1;
    }
    int spm = fetch(p, "tokenizer.model");
    if (spm < 0) return -1;
    int hf = fetch(p, "tokenizer.json");
    if (hf < 0) return -1;
    if (spm && hf)
        return rg_error("pull: %s has neither tokenizer.model nor tokenizer.json (%s/%s/resolve/%s/)", p->repo,
                        p->endpoint, p->repo, p->rev);
    for (size_t i = 0; i < sizeof EXTRAS / sizeof *EXTRAS; i++)
        if (fetch(p, EXTRAS[i]) < 0) return -1;
    rg_clear_error();
    /* refs/REV -> COMMIT (a commit hash needs no ref) */
    if (strcmp(p->rev, p->commit)) {
        char *refs = fmt("%s/refs", p->repo_dir);
        char *ref = fmt("%s/%s", refs, p->rev);
        char *tmp = fmt("%s.tmp", ref);
        rc = mkdirs(refs);
        FILE *f = rc ? NULL : fopen(tmp, "wb");
        if (!rc) {
            int bad = !f || fputs(p->commit, f) < 0;
            if (f && fclose(f)) bad = 1;
            if (bad || rename(tmp, ref)) {
                rc = rg_error("pull: cannot write %s: %s", ref, strerror(errno));
                unlink(tmp);
            }
        }
        free(refs);
        free(ref);
        free(tmp);
    }
    return rc;
}

/* --offline: refs/REV (or the commit) to a snapshot that must hold every file */
static int pull_offline(pull_ctx *p, char **snap_out) {
    if (rg_hub_valid_hex(p->rev, 40)) {
        memcpy(p->commit, p->rev, 41);
    } else {
        char *ref = fmt("%s/refs/%s", p->repo_dir, p->rev), *text;
        size_t len;
        if (!rg_file_exists(ref) || rg_read_file(ref, 256, &text, &len)) {
            rg_error("pull: offline: %s@%s is not in the cache (no %s): pull it once without --offline", p->repo,
                     p->rev, ref);
            free(ref);
            return -1;
        }
        while (len && isspace((unsigned char)text[len - 1])) text[--len] = 0;
        int ok = rg_hub_valid_hex(text, 40);
        if (ok) memcpy(p->commit, text, 41);
        free(text);
        if (!ok) {
            rg_error("pull: offline: %s does not hold a commit hash", ref);
            free(ref);
            return -1;
        }
        free(ref);
    }
    char *snap = fmt("%s/snapshots/%s", p->repo_dir, p->commit);
    int rc = 0;
#define NEED(name)                                                                                                 \
    do {                                                                                                           \
        char *f_ = fmt("%s/%s", snap, name);                                                                       \
        int ok_ = rg_file_exists(f_);                                                                              \
        free(f_);                                                                                                  \
        if (!ok_) {                                                                                                \
            rc = rg_error("pull: offline: %s is missing from the cached snapshot %s: pull it once without "       \
                          "--offline",                                                                             \
                          name, snap);                                                                             \
            goto out;                                                                                              \
        }                                                                                                          \
    } while (0)
    NEED("config.json");
    char *idx = fmt("%s/model.safetensors.index.json", snap);
    int has_idx = rg_file_exists(idx);
    if (has_idx) {
        char **names;
        int n;
        rc = shard_names(idx, &names, &n);
        free(idx);
        if (rc) goto out;
        for (int i = 0; i < n; i++) {
            char *f = fmt("%s/%s", snap, names[i]);
            int ok = rg_file_exists(f);
            free(f);
            if (!ok) {
                rc = rg_error("pull: offline: %s is missing from the cached snapshot %s: pull it once without "
                              "--offline",
                              names[i], snap);
                free_names(names, n);
                goto out;
            }
        }
        free_names(names, n);
    } else {
        free(idx);
        NEED("model.safetensors");
    }
    char *spm = fmt("%s/tokenizer.model", snap), *hf = fmt("%s/tokenizer.json", snap);
    int tok = rg_file_exists(spm) || rg_file_exists(hf);
    free(spm);
    free(hf);
    if (!tok) NEED("tokenizer.model");
#undef NEED
out:
    if (rc) free(snap);
    else *snap_out = snap;
    return rc;
}

/* ------------------------------------------------------------- entry */

int rg_hub_pull(const char *repo_arg, const char *rev_arg, int offline, rg_hub_progress_fn progress, void *ctx,
                char *out_dir, size_t out_len) {
    if (!repo_arg || !out_dir || !out_len) return rg_error("pull: no repository given");
    char repo[256], rev[160];
    const char *at = rev_arg ? NULL : strchr(repo_arg, '@');
    size_t rn = at ? (size_t)(at - repo_arg) : strlen(repo_arg);
    if (rn >= sizeof repo) return rg_error("pull: \"%.64s...\" is not a repository name (ORG/NAME)", repo_arg);
    memcpy(repo, repo_arg, rn);
    repo[rn] = 0;
    const char *r = rev_arg ? rev_arg : at ? at + 1 : "main";
    if (strlen(r) >= sizeof rev) return rg_error("pull: the revision \"%.64s...\" is too long", r);
    strcpy(rev, r);
    if (!rg_hub_valid_repo(repo))
        return rg_error("pull: \"%.200s\" is not a repository name: want ORG/NAME[@REV] of letters, digits, '.', "
                        "'_', '-'",
                        repo);
    if (!rg_hub_valid_rev(rev))
        return rg_error("pull: \"%.128s\" is not a revision (a branch, tag or commit of letters, digits, '.', "
                        "'_', '-')",
                        rev);

    pull_ctx p;
    memset(&p, 0, sizeof p);
    p.repo = repo;
    p.rev = rev;
    p.progress = progress;
    p.ctx = ctx;
    int rc = -1;
    char *snap = NULL;
    if (!(p.cache = rg_hub_cache_dir())) return -1;
    char org[128];
    const char *slash = strchr(repo, '/');
    snprintf(org, sizeof org, "%.*s", (int)(slash - repo), repo);
    p.repo_dir = fmt("%s/models--%s--%s", p.cache, org, slash + 1);
    p.lock_dir = fmt("%s/.locks/models--%s--%s", p.cache, org, slash + 1);

    if (offline || env_true("HF_HUB_OFFLINE")) {
        rc = pull_offline(&p, &snap);
        goto done;
    }
    const char *ep = env("HF_ENDPOINT") ? env("HF_ENDPOINT") : DEFAULT_ENDPOINT;
    if (strncmp(ep, "https://", 8) && strncmp(ep, "http://", 7)) {
        rg_error("pull: HF_ENDPOINT \"%.200s\" is not an http:// or https:// address", ep);
        goto done;
    }
    p.endpoint = fmt("%s", ep);
    for (size_t n = strlen(p.endpoint); n > 8 && p.endpoint[n - 1] == '/';) p.endpoint[--n] = 0;
    for (const char *q = p.endpoint; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
            rg_error("pull: HF_ENDPOINT has a character an address cannot have");
            goto done;
        }
    if (read_token(&p.token)) goto done;
    p.head_timeout = env_seconds("HF_HUB_ETAG_TIMEOUT", 10);
    p.dl_timeout = env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10);
    if (mkdirs(p.repo_dir) || mkdirs(p.lock_dir)) goto done;
    char *blobs = fmt("%s/blobs", p.repo_dir);
    int bad = mkdirs(blobs);
    free(blobs);
    if (bad) goto done;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(p.curl = curl_easy_init())) {
        rg_error("pull: cannot start libcurl");
        goto done;
    }
    rc = pull_online(&p);
    if (!rc) snap = fmt("%s/snapshots/%s", p.repo_dir, p.commit);
done:
    if (p.curl) curl_easy_cleanup(p.curl);
    if (!rc) {
        if (strlen(snap) >= out_len) rc = rg_error("pull: the snapshot path is too long (%zu bytes)", strlen(snap));
        else strcpy(out_dir, snap);
    }
    free(snap);
    free(p.endpoint);
    free(p.token);
    free(p.cache);
    free(p.repo_dir);
    free(p.lock_dir);
    return rc;
}

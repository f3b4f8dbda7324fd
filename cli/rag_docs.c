/* cli/rag_docs.c - documents for `loom rag index` (rules in rag_docs.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli/rag_docs.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "train/data_prep_html.h"

static int64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return (int64_t)(h >> 1); /* non-negative: easy to read in JSON */
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

/* 'h' HTML, 'm' Markdown, 't' text, 0 not a document */
static char kind_of(const char *p) {
    if (ends_with(p, ".html") || ends_with(p, ".htm")) return 'h';
    if (ends_with(p, ".md") || ends_with(p, ".markdown")) return 'm';
    if (ends_with(p, ".txt") || ends_with(p, ".rst") || ends_with(p, ".text")) return 't';
    return 0;
}

static bool slurp(const char *path, char **buf, size_t *n, char *err, size_t err_n) {
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, err_n, "%s: %s", path, strerror(errno)), false;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    while (b) {
        len += fread(b + len, 1, cap - len, f);
        if (len < cap) break;
        char *nb = realloc(b, 2 * cap + 1);
        if (!nb) free(b);
        b = nb, cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!b || bad) {
        free(b);
        return snprintf(err, err_n, "%s: %s", path, b ? "read error" : "out of memory"), false;
    }
    b[len] = 0;
    *buf = b, *n = len;
    return true;
}

typedef struct strv {
    char **v;
    size_t n, cap;
} strv;

static bool strv_push(strv *s, char *p) {
    if (!p) return false;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) return free(p), false;
        s->v = nv, s->cap = cap;
    }
    s->v[s->n++] = p;
    return true;
}

static bool walk(const char *dir, strv *out, int depth, char *err, size_t err_n) {
    if (depth > 64) return snprintf(err, err_n, "%s: directories nest too deep", dir), false;
    DIR *d = opendir(dir);
    if (!d) return snprintf(err, err_n, "%s: %s", dir, strerror(errno)), false;
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) {
            ok = false, snprintf(err, err_n, "out of memory");
            break;
        }
        snprintf(p, n, "%s%s%s", dir, ends_with(dir, "/") ? "" : "/", e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p);
            continue; /* a dangling link */
        }
        if (S_ISDIR(st.st_mode)) {
            ok = walk(p, out, depth + 1, err, err_n);
            free(p);
        } else if (S_ISREG(st.st_mode) && kind_of(p)) {
            if (!(ok = strv_push(out, p))) snprintf(err, err_n, "out of memory");
        } else {
            free(p);
        }
    }
    closedir(d);
    return ok;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bool loom_cli_doc_list(const char *path, char ***out, size_t *n, char *err, size_t err_n) {
    strv s = {0};
    struct stat st;
    bool ok = true;
    if (stat(path, &st) != 0) {
        snprintf(err, err_n, "%s: %s", path, strerror(errno));
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        ok = walk(path, &s, 0, err, err_n);
        if (ok) qsort(s.v, s.n, sizeof *s.v, cmp_str);
    } else if (ends_with(path, ".jsonl")) {
        char *buf = NULL;
        size_t len = 0;
        if (!(ok = slurp(path, &buf, &len, err, err_n))) return false;
        size_t line = 0;
        for (char *p = buf; ok && p < buf + len;) {
            char *e = memchr(p, '\n', (size_t)(buf + len - p));
            if (!e) e = buf + len;
            line++;
            bool blank = true;
            for (char *q = p; q < e; q++)
                blank &= *q == ' ' || *q == '\t' || *q == '\r';
            if (!blank) {
                size_t m = strlen(path) + 24;
                char *src = malloc(m);
                if (src) snprintf(src, m, "%s#%zu", path, line);
                if (!(ok = strv_push(&s, src))) snprintf(err, err_n, "out of memory");
            }
            p = e + 1;
        }
        free(buf);
    } else if (kind_of(path)) {
        if (!(ok = strv_push(&s, strdup(path)))) snprintf(err, err_n, "out of memory");
    } else {
        snprintf(err, err_n, "%s: not a directory, a .jsonl file or a document (.html, .md, .txt)",
                 path);
        ok = false;
    }
    if (!ok) return loom_cli_doc_list_free(s.v, s.n), false;
    *out = s.v, *n = s.n;
    return true;
}

void loom_cli_doc_list_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void loom_cli_doc_free(loom_cli_doc *d) {
    free(d->source), free(d->title), free(d->text);
    memset(d, 0, sizeof *d);
}

static char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return strdup(s ? s + 1 : p);
}

void loom_cli_jsonl_cache_free(loom_cli_jsonl_cache *jc) {
    free(jc->path), free(jc->buf), free(jc->line_off);
    memset(jc, 0, sizeof *jc);
}

/* Read file into jc with the offset of each line's start (and one past the
   end), so that line l is [line_off[l-1], line_off[l]) less its '\n'. */
static bool jsonl_fill(const char *file, loom_cli_jsonl_cache *jc, char *err, size_t err_n) {
    loom_cli_jsonl_cache c = {0};
    if (!slurp(file, &c.buf, &c.len, err, err_n)) return false;
    size_t n = 1;
    for (size_t i = 0; i < c.len; i++)
        n += c.buf[i] == '\n';
    c.line_off = malloc((n + 1) * sizeof *c.line_off);
    c.path = strdup(file);
    if (!c.line_off || !c.path) {
        loom_cli_jsonl_cache_free(&c);
        return snprintf(err, err_n, "out of memory"), false;
    }
    c.line_off[0] = 0;
    for (size_t i = 0, k = 1; i < c.len; i++)
        if (c.buf[i] == '\n') c.line_off[k++] = i + 1;
    c.line_off[n] = c.len + 1;
    c.n_lines = n;
    loom_cli_jsonl_cache_free(jc);
    *jc = c;
    return true;
}

/* Line `line` (1-based) of a JSONL file, through jc (or a cache of its own
   when jc is NULL). */
static bool load_jsonl(const char *file, long line, loom_cli_jsonl_cache *jc, loom_cli_doc *d,
                       char *err, size_t err_n) {
    loom_cli_jsonl_cache own = {0};
    if (!jc) jc = &own;
    bool ok = (jc->path && !strcmp(jc->path, file)) || jsonl_fill(file, jc, err, err_n);
    if (ok && (size_t)line > jc->n_lines) {
        snprintf(err, err_n, "%s: has no line %ld", file, line);
        ok = false;
    }
    cJSON *j = NULL;
    if (ok) {
        const char *p = jc->buf + jc->line_off[line - 1];
        size_t n = jc->line_off[line] - 1 - jc->line_off[line - 1];
        d->hash = fnv1a(p, n);
        j = cJSON_ParseWithLength(p, n);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        const cJSON *ti = cJSON_GetObjectItemCaseSensitive(j, "title");
        if (!cJSON_IsString(t)) {
            snprintf(err, err_n, "%s:%ld: %s", file, line,
                     j ? "no \"text\" string" : "not a JSON object");
            ok = false;
        } else {
            d->text = strdup(t->valuestring);
            d->len = d->text ? strlen(d->text) : 0;
            d->title = strdup(cJSON_IsString(ti) ? ti->valuestring : "");
            if (!d->text || !d->title) ok = false, snprintf(err, err_n, "out of memory");
        }
    }
    cJSON_Delete(j);
    loom_cli_jsonl_cache_free(&own);
    return ok;
}

bool loom_cli_doc_load(const char *source, loom_cli_jsonl_cache *jc, loom_cli_doc *d, char *err,
                       size_t err_n) {
    memset(d, 0, sizeof *d);
    if (!(d->source = strdup(source))) return snprintf(err, err_n, "out of memory"), false;
    const char *hash = strrchr(source, '#');
    if (hash && hash - source > 6 && !strncmp(hash - 6, ".jsonl", 6)) {
        char *file = strndup(source, (size_t)(hash - source)), *end = NULL;
        long line = strtol(hash + 1, &end, 10);
        bool ok = file && end && !*end && line > 0 && load_jsonl(file, line, jc, d, err, err_n);
        if (!file || !end || *end || line <= 0)
            snprintf(err, err_n, "%s: bad JSONL source", source);
        free(file);
        if (!ok) loom_cli_doc_free(d);
        return ok;
    }
    char *buf = NULL;
    size_t len = 0;
    if (!slurp(source, &buf, &len, err, err_n)) return loom_cli_doc_free(d), false;
    d->hash = fnv1a(buf, len);
    char k = kind_of(source);
    if (k == 'h') {
        loom_html_doc h = {0};
        loom_html_stats st = {0};
        loom_html_opts o = {.max_link_density = 0.5, .split_level = 0};
        loom_status s = loom_html_extract(buf, len, &o, &h, &st);
        free(buf);
        if (s != LOOM_OK) {
            /* an empty page: no text, no chunks */
            d->text = strdup(""), d->title = strdup("");
        } else {
            d->text = h.text, d->title = h.title;
            h.text = h.title = NULL;
            loom_html_doc_free(&h);
        }
    } else {
        d->text = buf;
        d->title = NULL;
        if (k == 'm') {
            for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (p[0] == '#' && p[1] == ' ') {
                    size_t n = strcspn(p + 2, "\r\n");
                    d->title = strndup(p + 2, n);
                    break;
                }
        }
        if (!d->title) d->title = base_name(source);
    }
    if (!d->text || !d->title)
        return loom_cli_doc_free(d), snprintf(err, err_n, "out of memory"), false;
    d->len = k == 'h' ? strlen(d->text) : len;
    return true;
}

/* Reads chunk text back from its source; keeps the last document. */
const char *loom_cli_doc_chunk(loom_cli_doc_reader *r, const loom_rag_meta *m, size_t *n) {
    char err[400];
    *n = 0;
    if (!r->have || strcmp(r->d.source, m->source)) {
        if (r->have) loom_cli_doc_free(&r->d);
        r->have = loom_cli_doc_load(m->source, &r->jc, &r->d, err, sizeof err);
        if (!r->have) {
            fprintf(stderr, "loom rag: warning: %s\n", err);
            return "";
        }
    }
    if (r->d.hash != m->tag || m->byte_end > r->d.len || m->byte_begin > m->byte_end) {
        if (!r->warned)
            fprintf(stderr,
                    "loom rag: warning: %s changed since it was indexed; re-run loom rag "
                    "index\n",
                    m->source);
        r->warned = true;
        return "";
    }
    *n = (size_t)(m->byte_end - m->byte_begin);
    return r->d.text + m->byte_begin;
}

void loom_cli_doc_reader_free(loom_cli_doc_reader *r) {
    if (r->have) loom_cli_doc_free(&r->d);
    r->have = false;
    loom_cli_jsonl_cache_free(&r->jc);
}

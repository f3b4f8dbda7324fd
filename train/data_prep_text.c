/* train/data_prep_text.c - NFKC, whitespace and URL/e-mail stages; rules in
 * data_prep_text.h. */
#include "train/data_prep_text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

loom_status loom_text_nfkc(const char *s, size_t n, char **out, size_t *out_n) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    if (r < 0) {
        free(dst);
        *out = NULL;
        return r == UTF8PROC_ERROR_NOMEM ? LOOM_ERR_OOM : LOOM_ERR_FORMAT;
    }
    *out = (char *)dst;
    *out_n = (size_t)r;
    return LOOM_OK;
}

/* Length of a UTF-8 sequence that the whitespace rule rewrites at s[i]:
 * sets *kind to 'n' (line break), 'x' (remove) or 0 (keep). */
static size_t special_seq(const unsigned char *s, size_t i, size_t n, char *kind) {
    *kind = 0;
    unsigned char c = s[i];
    if (c == '\r') {
        *kind = 'n';
        return i + 1 < n && s[i + 1] == '\n' ? 2 : 1;
    }
    if (c == '\n') return *kind = 'n', 1;
    if (c == '\t') return *kind = ' ', 1; /* a blank, kept as it is */
    if (c < 0x20 || c == 0x7f) return *kind = 'x', 1;
    if (c == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] < 0xa0) return *kind = 'x', 2;
    if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
        return *kind = 'n', 3; /* U+2028, U+2029 */
    if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && s[i + 2] >= 0x8b && s[i + 2] <= 0x8d)
        return *kind = 'x', 3; /* U+200B..U+200D */
    if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x81 && s[i + 2] == 0xa0) return *kind = 'x', 3;
    if (c == 0xef && i + 2 < n && s[i + 1] == 0xbb && s[i + 2] == 0xbf) return *kind = 'x', 3;
    return 1;
}

size_t loom_text_clean_ws(char *str, size_t n) {
    unsigned char *s = (unsigned char *)str;
    /* Line by line, in place: a line's bytes are copied after room for the
     * line breaks that precede it (at most 2), which never overtakes the
     * reading position, since each break written was read as >= 1 byte. */
    size_t w = 0, i = 0;
    int pending = 0; /* line breaks since the last line with text */
    while (i < n) {
        size_t at = w == 0 ? 0 : w + (size_t)(pending > 2 ? 2 : pending), o = at, end = at;
        bool broke = false;
        while (i < n) {
            char kind;
            size_t len = special_seq(s, i, n, &kind);
            if (kind == 'n') {
                i += len;
                broke = true;
                break;
            }
            if (kind == 'x') {
                i += len;
                continue;
            }
            bool blank = kind == ' ' || s[i] == ' ';
            if (blank && w == 0 && o == at) { /* the text's leading blanks */
                i += len;
                continue;
            }
            memmove(s + o, s + i, len);
            o += len;
            i += len;
            if (!blank) end = o; /* trailing blanks end before here */
        }
        if (end > at) {
            for (size_t k = w; k < at; k++)
                s[k] = '\n';
            w = end;
            pending = 0;
        }
        if (broke && w > 0) pending++;
    }
    s[w] = 0;
    return w;
}

/* ---- URLs and e-mail addresses ---- */

static bool is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool url_stop(unsigned char c) {
    return c <= ' ' || c == 0x7f || strchr("<>\"'`{}|\\^", c) != NULL;
}

static bool starts_ci(const char *s, size_t n, const char *p) {
    size_t k = strlen(p);
    if (n < k) return false;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != p[i]) return false;
    }
    return true;
}

/* End of a URL starting at s[i], or i when none starts there. */
static size_t url_at(const char *s, size_t i, size_t n) {
    if (i > 0 && (is_alnum((unsigned char)s[i - 1]) || s[i - 1] == '.' || s[i - 1] == '@'))
        return i;
    size_t p;
    if (starts_ci(s + i, n - i, "https://"))
        p = 8;
    else if (starts_ci(s + i, n - i, "http://"))
        p = 7;
    else if (starts_ci(s + i, n - i, "ftp://"))
        p = 6;
    else if (starts_ci(s + i, n - i, "www."))
        p = 4;
    else
        return i;
    size_t e = i + p;
    while (e < n && !url_stop((unsigned char)s[e]))
        e++;
    /* Sentence punctuation after a link is not part of it; a ')' is, when
     * the URL opened one (Wikipedia-style links). */
    for (;;) {
        if (e <= i + p) return i;
        char c = s[e - 1];
        if (strchr(".,;:!?", c)) {
            e--;
        } else if (c == ')') {
            int open = 0;
            for (size_t k = i; k < e; k++)
                open += s[k] == '(' ? 1 : s[k] == ')' ? -1 : 0;
            if (open >= 0) break;
            e--;
        } else {
            break;
        }
    }
    return e > i + p ? e : i;
}

static bool local_byte(unsigned char c) {
    return is_alnum(c) || strchr("._%+-", c) != NULL;
}
static bool domain_byte(unsigned char c) {
    return is_alnum(c) || c == '.' || c == '-';
}

/* An e-mail address around the '@' at s[at]: [*b, *e) or false. */
static bool email_at(const char *s, size_t at, size_t n, size_t lo, size_t *b, size_t *e) {
    size_t l = at;
    while (l > lo && local_byte((unsigned char)s[l - 1]))
        l--;
    while (l < at && s[l] == '.')
        l++;
    if (l == at) return false;
    size_t r = at + 1;
    while (r < n && domain_byte((unsigned char)s[r]))
        r++;
    while (r > at + 1 && (s[r - 1] == '.' || s[r - 1] == '-'))
        r--;
    /* A dot in the domain, no empty label, final label of 2+ letters. */
    size_t last_dot = 0;
    for (size_t k = at + 1; k < r; k++) {
        if (s[k] == '.') {
            if (k == at + 1 || s[k - 1] == '.') return false;
            last_dot = k;
        }
    }
    if (!last_dot || r - last_dot - 1 < 2) return false;
    for (size_t k = last_dot + 1; k < r; k++)
        if (!is_alpha((unsigned char)s[k])) return false;
    *b = l;
    *e = r;
    return true;
}

typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 64;
        while (c < b->n + n + 1)
            c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

loom_status loom_text_urls_emails(const char *s, size_t n, bool redact_urls, bool redact_emails,
                                  loom_text_spans *sp, char **out, size_t *out_n) {
    memset(sp, 0, sizeof *sp);
    sbuf o = {0};
    size_t copied = 0, i = 0, after_url = 0;
    while (i < n) {
        size_t e = url_at(s, i, n);
        if (e > i) {
            sp->n_urls++;
            sp->url_bytes += e - i;
            if (redact_urls) {
                sb_put(&o, s + copied, i - copied);
                sb_put(&o, "<URL>", 5);
                copied = e;
            }
            i = after_url = e;
            continue;
        }
        if (s[i] == '@') {
            size_t b, ee;
            if (email_at(s, i, n, after_url, &b, &ee) && b >= copied) {
                sp->n_emails++;
                if (redact_emails) {
                    sb_put(&o, s + copied, b - copied);
                    sb_put(&o, "<EMAIL>", 7);
                    copied = ee;
                }
                i = ee;
                continue;
            }
        }
        i++;
    }
    sb_put(&o, s + copied, n - copied);
    if (o.oom || !o.p) {
        free(o.p);
        if (o.oom) return LOOM_ERR_OOM;
        o.p = calloc(1, 1);
        if (!o.p) return LOOM_ERR_OOM;
    }
    *out = o.p;
    *out_n = o.n;
    return LOOM_OK;
}

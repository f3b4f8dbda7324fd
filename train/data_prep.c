/* train/data_prep.c - `loom data prep`: the stages and the report; what each
 * stage does is in data_prep.h. Records flow one at a time (a kept record is
 * written at once), so memory grows with the kept records' signatures and
 * hashes, not with their text. */
#define _POSIX_C_SOURCE 200809L /* getline, strdup */
#include "train/data_prep.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/tokenizer.h"
#include "train/data_prep_html.h"
#include "train/data_prep_pack.h"
#include "train/data_prep_text.h"
#include "train/minhash.h"

void loom_data_prep_defaults(loom_data_prep_opts *o) {
    memset(o, 0, sizeof *o);
    o->text_field = "text";
    o->messages_field = "messages";
    o->threshold = 0.8;
    o->ngram = 5;
    o->num_perm = 128;
    o->seed = 1;
    o->max_link_density = 0.5;
    o->max_url_fraction = 0.5;
    o->min_chars = 1;
    o->pack_len = 2048;
}

enum { ST_PARSE, ST_HTML, ST_NORMALIZE, ST_FILTER, ST_EXACT, ST_NEAR, ST_COUNT };
static const char *const STAGE_NAMES[ST_COUNT] = {"parse",  "html",  "normalize",
                                                  "filter", "exact", "near"};
#define MAX_REASONS 24
#define MAX_LISTED  10000

typedef struct {
    int stage;
    const char *reason; /* static string */
    int64_t count;
} reason_count;

typedef struct {
    uint64_t h1, h2;
    int64_t kept; /* index into kept[], -1 = empty slot */
} exact_slot;

typedef struct {
    int64_t record;
    char *source;
} kept_rec;

typedef struct {
    const loom_data_prep_opts *o;
    FILE *out;
    int64_t in[ST_COUNT], outn[ST_COUNT];
    reason_count reasons[MAX_REASONS];
    int n_reasons;
    cJSON *removed;
    int64_t n_listed, n_unlisted;
    int64_t n_records; /* records entering normalize (ids) */
    kept_rec *kept;
    int64_t n_kept, cap_kept;
    exact_slot *ex;
    uint64_t n_ex_slot, n_ex;
    loom_minhash mh;
    loom_lsh *lsh;
    uint32_t *sig;
    loom_html_stats html;
    int64_t nfkc_changed, emails, urls, url_records;
    loom_tokenizer *tok;
    loom_packer *pack;
    loom_pack_stats pack_st;
    loom_status fatal;
    char fatal_msg[512]; /* why, when fatal is set with a reason to give */
} prep;

static void count_reason(prep *p, int stage, const char *reason) {
    for (int i = 0; i < p->n_reasons; i++)
        if (p->reasons[i].stage == stage && !strcmp(p->reasons[i].reason, reason)) {
            p->reasons[i].count++;
            return;
        }
    if (p->n_reasons < MAX_REASONS) p->reasons[p->n_reasons++] = (reason_count){stage, reason, 1};
}

/* Records a removal: stage, reason, and for duplicates the kept record. */
static void drop(prep *p, int64_t record, const char *source, int stage, const char *reason,
                 int64_t dup_kept, double sim) {
    count_reason(p, stage, reason);
    if (p->n_listed >= MAX_LISTED) {
        p->n_unlisted++;
        return;
    }
    cJSON *e = cJSON_CreateObject();
    if (!e) return;
    if (record >= 0) cJSON_AddNumberToObject(e, "record", (double)record);
    cJSON_AddStringToObject(e, "source", source);
    cJSON_AddStringToObject(e, "stage", STAGE_NAMES[stage]);
    cJSON_AddStringToObject(e, "reason", reason);
    if (dup_kept >= 0) {
        cJSON_AddNumberToObject(e, "duplicate_of", (double)p->kept[dup_kept].record);
        cJSON_AddStringToObject(e, "duplicate_of_source", p->kept[dup_kept].source);
        if (sim >= 0) cJSON_AddNumberToObject(e, "similarity", sim);
    }
    cJSON_AddItemToArray(p->removed, e);
    p->n_listed++;
}

/* ---- exact-duplicate set: 128-bit content hashes ---- */

static void content_hash(const char *s, size_t n, uint64_t *h1, uint64_t *h2) {
    uint64_t a = UINT64_C(0xcbf29ce484222325), b = UINT64_C(0x84222325cbf29ce4) ^ n;
    for (size_t i = 0; i < n; i++) {
        a = (a ^ (unsigned char)s[i]) * UINT64_C(0x100000001b3);
        b = (b + (unsigned char)s[i] + 1) * UINT64_C(0x9E3779B97F4A7C15);
        b ^= b >> 29;
    }
    *h1 = a;
    *h2 = b;
}

static exact_slot *ex_find(prep *p, uint64_t h1, uint64_t h2) {
    uint64_t i = (h1 ^ (h2 >> 7)) & (p->n_ex_slot - 1);
    for (;; i = (i + 1) & (p->n_ex_slot - 1))
        if (p->ex[i].kept < 0 || (p->ex[i].h1 == h1 && p->ex[i].h2 == h2)) return &p->ex[i];
}

static bool ex_grow(prep *p) {
    uint64_t n = p->n_ex_slot ? p->n_ex_slot * 2 : 1024;
    exact_slot *old = p->ex, *nw = malloc(sizeof(exact_slot) * n);
    if (!nw) return false;
    for (uint64_t i = 0; i < n; i++)
        nw[i].kept = -1;
    uint64_t on = p->n_ex_slot;
    p->ex = nw;
    p->n_ex_slot = n;
    for (uint64_t i = 0; i < on; i++)
        if (old[i].kept >= 0) *ex_find(p, old[i].h1, old[i].h2) = old[i];
    free(old);
    return true;
}

/* ---- the text stages on one string ---- */

/* NFKC + whitespace; NULL with *bad set on invalid UTF-8. */
static char *normalize(prep *p, const char *s, bool *bad, bool *changed) {
    char *n = NULL;
    size_t nn = 0;
    loom_status st = loom_text_nfkc(s, strlen(s), &n, &nn);
    if (st != LOOM_OK) {
        if (st == LOOM_ERR_OOM) p->fatal = st;
        *bad = st == LOOM_ERR_FORMAT;
        return NULL;
    }
    *changed |= nn != strlen(s) || memcmp(n, s, nn) != 0;
    loom_text_clean_ws(n, nn);
    return n;
}

static char *filter_text(prep *p, const char *s, size_t *url_bytes, int64_t *emails,
                         int64_t *urls) {
    loom_text_spans sp;
    char *o = NULL;
    size_t on;
    if (loom_text_urls_emails(s, strlen(s), p->o->redact_urls, !p->o->keep_emails, &sp, &o, &on) !=
        LOOM_OK) {
        p->fatal = LOOM_ERR_OOM;
        return NULL;
    }
    *url_bytes += sp.url_bytes;
    *emails += sp.n_emails;
    *urls += sp.n_urls;
    return o;
}

static bool replace_string(cJSON *obj, const char *key, char *val /* freed */) {
    cJSON *s = cJSON_CreateString(val);
    free(val);
    return s && cJSON_ReplaceItemInObjectCaseSensitive(obj, key, s);
}

/* Appends s to a growing buffer (content keys and near-dup text). */
static bool cat(char **b, size_t *n, size_t *cap, const char *s, size_t k) {
    if (*n + k + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *n + k + 1)
            c *= 2;
        char *q = realloc(*b, c);
        if (!q) return false;
        *b = q;
        *cap = c;
    }
    memcpy(*b + *n, s, k);
    *n += k;
    (*b)[*n] = 0;
    return true;
}

/* Stages 3..6 for one record whose strings are in obj (text_key's string,
 * or msgs_key's array of {role, content}); writes it when kept. Takes obj. */
static void process(prep *p, cJSON *obj, const char *text_key, const char *msgs_key,
                    const char *source) {
    int64_t id = p->n_records++;
    cJSON *msgs = msgs_key ? cJSON_GetObjectItemCaseSensitive(obj, msgs_key) : NULL;
    int n_str = msgs ? cJSON_GetArraySize(msgs) : 1;
    char *key = NULL, *near = NULL;
    size_t kn = 0, kc = 0, nn = 0, nc = 0, url_bytes = 0;
    int64_t emails = 0, urls = 0;
    /* normalize */
    p->in[ST_NORMALIZE]++;
    bool bad = false, changed = false;
    for (int i = 0; i < n_str && !bad && !p->fatal; i++) {
        cJSON *holder = msgs ? cJSON_GetArrayItem(msgs, i) : obj;
        const char *k = msgs ? "content" : text_key;
        char *n =
            normalize(p, cJSON_GetObjectItemCaseSensitive(holder, k)->valuestring, &bad, &changed);
        if (n && !replace_string(holder, k, n)) p->fatal = LOOM_ERR_OOM;
    }
    if (p->fatal) goto out;
    if (bad) {
        drop(p, id, source, ST_NORMALIZE, "invalid UTF-8", -1, -1);
        goto out;
    }
    p->nfkc_changed += changed;
    p->outn[ST_NORMALIZE]++;
    /* filter */
    p->in[ST_FILTER]++;
    size_t total = 0;
    for (int i = 0; i < n_str && !p->fatal; i++) {
        cJSON *holder = msgs ? cJSON_GetArrayItem(msgs, i) : obj;
        const char *k = msgs ? "content" : text_key;
        const char *s = cJSON_GetObjectItemCaseSensitive(holder, k)->valuestring;
        total += strlen(s);
        char *f = filter_text(p, s, &url_bytes, &emails, &urls);
        if (f && !replace_string(holder, k, f)) p->fatal = LOOM_ERR_OOM;
    }
    if (p->fatal) goto out;
    if (total > 0 && (double)url_bytes > p->o->max_url_fraction * (double)total) {
        drop(p, id, source, ST_FILTER, "mostly URLs", -1, -1);
        goto out;
    }
    p->emails += p->o->keep_emails ? 0 : emails;
    p->urls += p->o->redact_urls ? urls : 0;
    /* The content: what dedup compares and what min_chars measures. */
    size_t chars = 0;
    for (int i = 0; i < n_str; i++) {
        cJSON *holder = msgs ? cJSON_GetArrayItem(msgs, i) : obj;
        const char *s =
            cJSON_GetObjectItemCaseSensitive(holder, msgs ? "content" : text_key)->valuestring;
        for (const unsigned char *c = (const unsigned char *)s; *c; c++)
            chars += (*c & 0xc0) != 0x80; /* code points */
        bool ok = true;
        if (msgs) {
            const char *role = cJSON_GetObjectItemCaseSensitive(holder, "role")->valuestring;
            ok = cat(&key, &kn, &kc, role, strlen(role)) && cat(&key, &kn, &kc, "\x1f", 1);
        }
        ok = ok && cat(&key, &kn, &kc, s, strlen(s)) && cat(&key, &kn, &kc, "\x1e", 1) &&
             (nn == 0 || cat(&near, &nn, &nc, "\n", 1)) && cat(&near, &nn, &nc, s, strlen(s));
        if (!ok) {
            p->fatal = LOOM_ERR_OOM;
            goto out;
        }
    }
    if (chars < (size_t)p->o->min_chars) {
        drop(p, id, source, ST_FILTER, chars == 0 ? "empty" : "shorter than --min-chars", -1, -1);
        goto out;
    }
    p->outn[ST_FILTER]++;
    /* exact */
    p->in[ST_EXACT]++;
    uint64_t h1, h2;
    content_hash(key ? key : "", kn, &h1, &h2);
    if ((p->n_ex + 1) * 2 > p->n_ex_slot && !ex_grow(p)) {
        p->fatal = LOOM_ERR_OOM;
        goto out;
    }
    exact_slot *es = ex_find(p, h1, h2);
    if (es->kept >= 0) {
        drop(p, id, source, ST_EXACT, "exact duplicate", es->kept, 1.0);
        goto out;
    }
    p->outn[ST_EXACT]++;
    /* near */
    p->in[ST_NEAR]++;
    if (p->lsh) {
        loom_minhash_signature(&p->mh, near ? near : "", nn, p->sig);
        double sim = 0;
        int64_t d = loom_lsh_query(p->lsh, p->sig, &sim);
        if (d >= 0) {
            drop(p, id, source, ST_NEAR, "near duplicate", d, sim);
            goto out;
        }
    }
    /* kept: remember it, then write it */
    if (p->n_kept == p->cap_kept) {
        int64_t c = p->cap_kept ? p->cap_kept * 2 : 256;
        kept_rec *k = realloc(p->kept, sizeof(kept_rec) * (size_t)c);
        if (!k) {
            p->fatal = LOOM_ERR_OOM;
            goto out;
        }
        p->kept = k;
        p->cap_kept = c;
    }
    char *src = strdup(source);
    if (!src || (p->lsh && loom_lsh_insert(p->lsh, p->sig) < 0)) {
        free(src);
        p->fatal = LOOM_ERR_OOM;
        goto out;
    }
    p->kept[p->n_kept] = (kept_rec){id, src};
    *es = (exact_slot){h1, h2, p->n_kept};
    p->n_ex++;
    p->n_kept++;
    p->outn[ST_NEAR]++;
    char *line = cJSON_PrintUnformatted(obj);
    if (!line || fputs(line, p->out) < 0 || fputc('\n', p->out) < 0)
        p->fatal = line ? LOOM_ERR_IO : LOOM_ERR_OOM;
    free(line);
    if (p->pack && !p->fatal) {
        if (msgs) {
            snprintf(p->fatal_msg, sizeof p->fatal_msg,
                     "%s: a chat record; --tokens packs plain-text records only (chat records "
                     "are rendered with the model's chat template by the trainer)",
                     source);
            p->fatal = LOOM_ERR_INVALID_ARG;
        } else {
            const char *t = cJSON_GetObjectItemCaseSensitive(obj, text_key)->valuestring;
            p->fatal = loom_packer_add(p->pack, t, strlen(t), p->fatal_msg, sizeof p->fatal_msg);
        }
    }
out:
    free(key);
    free(near);
    cJSON_Delete(obj);
}

/* ---- JSONL input ---- */

static const char *check_record(cJSON *obj, const char *text_key, const char *msgs_key,
                                const char **use_text, const char **use_msgs) {
    *use_text = *use_msgs = NULL;
    if (!cJSON_IsObject(obj)) return "not a JSON object";
    cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, text_key);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, msgs_key);
    if (t) {
        if (!cJSON_IsString(t)) return "text field is not a string";
        *use_text = text_key;
        return NULL;
    }
    if (!m) return "no text or messages field";
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) == 0) return "messages is not a non-empty array";
    cJSON *it;
    cJSON_ArrayForEach(it, m) {
        if (!cJSON_IsObject(it) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "role")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "content")))
            return "a message is not {role, content} strings";
    }
    *use_msgs = msgs_key;
    return NULL;
}

static loom_status run_jsonl(prep *p, char *err, size_t errn) {
    FILE *f = fopen(p->o->in_jsonl, "rb");
    if (!f) {
        snprintf(err, errn, "%s: %s", p->o->in_jsonl, strerror(errno));
        return LOOM_ERR_IO;
    }
    char *line = NULL, src[4200];
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    while (!p->fatal && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t k = 0;
        while (k < (size_t)len && strchr(" \t\r\n", line[k]))
            k++;
        if (k == (size_t)len) continue; /* blank line: not a record */
        snprintf(src, sizeof src, "%s:%lld", p->o->in_jsonl, (long long)lineno);
        p->in[ST_PARSE]++;
        cJSON *obj = cJSON_ParseWithLength(line, (size_t)len);
        const char *use_text, *use_msgs;
        const char *why =
            obj ? check_record(obj, p->o->text_field, p->o->messages_field, &use_text, &use_msgs)
                : "invalid JSON";
        if (why) {
            drop(p, -1, src, ST_PARSE, why, -1, -1);
            cJSON_Delete(obj);
            continue;
        }
        p->outn[ST_PARSE]++;
        p->in[ST_HTML]++, p->outn[ST_HTML]++; /* no HTML stage for JSONL */
        process(p, obj, use_text, use_msgs, src);
    }
    free(line);
    bool rerr = ferror(f);
    fclose(f);
    if (rerr) {
        snprintf(err, errn, "%s: read error", p->o->in_jsonl);
        return LOOM_ERR_IO;
    }
    return p->fatal;
}

/* ---- HTML input ---- */

typedef struct {
    char **v;
    size_t n, cap;
} pathlist;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_html_name(const char *n) {
    size_t k = strlen(n);
    return (k > 5 && !strcasecmp(n + k - 5, ".html")) || (k > 4 && !strcasecmp(n + k - 4, ".htm"));
}

/* Every *.html / *.htm below dir (symlinked directories are not followed,
 * so a link loop cannot trap the walk). */
static loom_status list_html(const char *dir, pathlist *pl, int depth, char *err, size_t errn) {
    if (depth > 64) return LOOM_OK;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errn, "%s: %s", dir, strerror(errno));
        return LOOM_ERR_IO;
    }
    struct dirent *e;
    loom_status st = LOOM_OK;
    while (st == LOOM_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t k = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(k);
        if (!path) {
            st = LOOM_ERR_OOM;
            break;
        }
        snprintf(path, k, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(path, &sb) != 0) {
            free(path);
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            st = list_html(path, pl, depth + 1, err, errn);
            free(path);
        } else if ((S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) && is_html_name(e->d_name)) {
            if (pl->n == pl->cap) {
                size_t c = pl->cap ? pl->cap * 2 : 64;
                char **v = realloc(pl->v, sizeof(char *) * c);
                if (!v) {
                    free(path);
                    st = LOOM_ERR_OOM;
                    break;
                }
                pl->v = v;
                pl->cap = c;
            }
            pl->v[pl->n++] = path;
        } else {
            free(path);
        }
    }
    closedir(d);
    if (st == LOOM_ERR_OOM) snprintf(err, errn, "out of memory listing %s", dir);
    return st;
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    while (b) {
        size_t got = fread(b + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        char *nb = cap < ((size_t)1 << 30) ? realloc(b, cap * 2) : NULL;
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    if (b && ferror(f)) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = len;
    return b;
}

static cJSON *chat_record(const char *q, const char *a, const char *source) {
    cJSON *o = cJSON_CreateObject(), *m = cJSON_AddArrayToObject(o, "messages");
    cJSON *u = cJSON_CreateObject(), *r = cJSON_CreateObject();
    if (!o || !m || !u || !r) {
        cJSON_Delete(o), cJSON_Delete(u), cJSON_Delete(r);
        return NULL;
    }
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", q);
    cJSON_AddStringToObject(r, "role", "assistant");
    cJSON_AddStringToObject(r, "content", a);
    cJSON_AddItemToArray(m, u);
    cJSON_AddItemToArray(m, r);
    cJSON_AddStringToObject(o, "source", source);
    return o;
}

static loom_status run_html(prep *p, char *err, size_t errn) {
    pathlist pl = {0};
    loom_status st = list_html(p->o->html_dir, &pl, 0, err, errn);
    if (st == LOOM_OK && pl.n == 0) {
        snprintf(err, errn, "%s: no .html or .htm files", p->o->html_dir);
        st = LOOM_ERR_INVALID_ARG;
    }
    if (st == LOOM_OK) qsort(pl.v, pl.n, sizeof(char *), cmp_str);
    size_t skip = strlen(p->o->html_dir) + 1; /* sources relative to the directory */
    loom_html_opts ho = {p->o->max_link_density, p->o->split_level};
    for (size_t i = 0; st == LOOM_OK && i < pl.n && !p->fatal; i++) {
        const char *rel = pl.v[i] + skip;
        p->in[ST_PARSE]++;
        size_t n = 0;
        char *b = read_file(pl.v[i], &n);
        if (!b) {
            drop(p, -1, rel, ST_PARSE, "unreadable file", -1, -1);
            continue;
        }
        p->outn[ST_PARSE]++;
        p->in[ST_HTML]++;
        loom_html_doc doc;
        loom_status hs = loom_html_extract(b, n, &ho, &doc, &p->html);
        free(b);
        if (hs == LOOM_ERR_OOM) {
            p->fatal = hs;
            break;
        }
        if (hs != LOOM_OK) {
            drop(p, -1, rel, ST_HTML, "no HTML document", -1, -1);
            continue;
        }
        if (p->o->split_level == 0) {
            p->outn[ST_HTML]++;
            cJSON *o = cJSON_CreateObject();
            if (!o || !cJSON_AddStringToObject(o, p->o->text_field, doc.text) ||
                !cJSON_AddStringToObject(o, "title", doc.title) ||
                !cJSON_AddStringToObject(o, "source", rel)) {
                cJSON_Delete(o);
                p->fatal = LOOM_ERR_OOM;
            } else {
                process(p, o, p->o->text_field, NULL, rel);
            }
        } else {
            if (doc.n_sec == 0)
                drop(p, -1, rel, ST_HTML, "no sections at --qa-heading level", -1, -1);
            /* One file in, n_sec records out: the stage's out counts records. */
            for (int k = 0; k < doc.n_sec && !p->fatal; k++) {
                char src[4200];
                snprintf(src, sizeof src, "%s#%d", rel, k + 1);
                cJSON *o = chat_record(doc.sec[k].heading, doc.sec[k].body, src);
                p->outn[ST_HTML]++;
                if (!o)
                    p->fatal = LOOM_ERR_OOM;
                else
                    process(p, o, NULL, "messages", src);
            }
        }
        loom_html_doc_free(&doc);
    }
    for (size_t i = 0; i < pl.n; i++)
        free(pl.v[i]);
    free(pl.v);
    return st != LOOM_OK ? st : p->fatal;
}

/* ---- report ---- */

static cJSON *report_json(const prep *p) {
    const loom_data_prep_opts *o = p->o;
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON_AddStringToObject(r, "input", o->in_jsonl ? o->in_jsonl : o->html_dir);
    cJSON_AddStringToObject(r, "input_kind", o->in_jsonl ? "jsonl" : "html");
    cJSON_AddStringToObject(r, "output", o->out_path);
    cJSON_AddNumberToObject(r, "records_in", (double)p->in[ST_PARSE]);
    cJSON_AddNumberToObject(r, "records_out", (double)p->outn[ST_NEAR]);
    cJSON *opt = cJSON_AddObjectToObject(r, "options");
    cJSON_AddNumberToObject(opt, "minhash_threshold", o->threshold);
    cJSON_AddNumberToObject(opt, "ngram", o->ngram);
    cJSON_AddNumberToObject(opt, "num_perm", o->num_perm);
    cJSON_AddNumberToObject(opt, "seed", (double)o->seed);
    if (p->lsh) {
        cJSON_AddNumberToObject(opt, "lsh_bands", loom_lsh_bands(p->lsh));
        cJSON_AddNumberToObject(opt, "lsh_rows", loom_lsh_rows(p->lsh));
    }
    cJSON_AddNumberToObject(opt, "min_chars", o->min_chars);
    cJSON_AddNumberToObject(opt, "max_url_fraction", o->max_url_fraction);
    cJSON_AddNumberToObject(opt, "max_link_density", o->max_link_density);
    cJSON_AddNumberToObject(opt, "split_level", o->split_level);
    cJSON_AddBoolToObject(opt, "redact_emails", !o->keep_emails);
    cJSON_AddBoolToObject(opt, "redact_urls", o->redact_urls);
    cJSON *stages = cJSON_AddArrayToObject(r, "stages");
    for (int s = 0; s < ST_COUNT; s++) {
        if (s == ST_HTML && o->in_jsonl) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "stage", STAGE_NAMES[s]);
        cJSON_AddNumberToObject(e, "in", (double)p->in[s]);
        cJSON_AddNumberToObject(e, "out", (double)p->outn[s]);
        cJSON *rm = cJSON_AddObjectToObject(e, "removed");
        for (int i = 0; i < p->n_reasons; i++)
            if (p->reasons[i].stage == s)
                cJSON_AddNumberToObject(rm, p->reasons[i].reason, (double)p->reasons[i].count);
        if (s == ST_HTML) {
            cJSON *b = cJSON_AddObjectToObject(e, "boilerplate");
            for (int d = 0; d < LOOM_HTML_DROP_COUNT; d++) {
                cJSON *x = cJSON_AddObjectToObject(b, loom_html_drop_name((loom_html_drop)d));
                cJSON_AddNumberToObject(x, "count", (double)p->html.n[d]);
                cJSON_AddNumberToObject(x, "bytes", (double)p->html.bytes[d]);
            }
            cJSON_AddNumberToObject(e, "kept_bytes", (double)p->html.kept_bytes);
        }
        if (s == ST_NORMALIZE)
            cJSON_AddNumberToObject(e, "changed_by_nfkc", (double)p->nfkc_changed);
        if (s == ST_FILTER) {
            cJSON_AddNumberToObject(e, "emails_redacted", (double)p->emails);
            cJSON_AddNumberToObject(e, "urls_redacted", (double)p->urls);
        }
        cJSON_AddItemToArray(stages, e);
    }
    if (p->pack_st.seqs) {
        cJSON *k = cJSON_AddObjectToObject(r, "pack");
        cJSON_AddStringToObject(k, "tokens_file", o->tokens_path);
        cJSON_AddNumberToObject(k, "seq_len", o->pack_len);
        cJSON_AddNumberToObject(k, "documents", (double)p->pack_st.docs);
        cJSON_AddNumberToObject(k, "tokens", (double)p->pack_st.tokens);
        cJSON_AddNumberToObject(k, "sequences", (double)p->pack_st.seqs);
        cJSON_AddNumberToObject(k, "padding", (double)p->pack_st.padding);
        cJSON_AddNumberToObject(k, "documents_split", (double)p->pack_st.split_docs);
    }
    cJSON_AddItemReferenceToObject(r, "removed", p->removed);
    cJSON_AddNumberToObject(r, "removed_not_listed", (double)p->n_unlisted);
    return r;
}

static void report_text(const prep *p, FILE *f) {
    fprintf(f, "loom data prep: %lld records in, %lld out\n", (long long)p->in[ST_PARSE],
            (long long)p->outn[ST_NEAR]);
    fprintf(f, "  %-10s %8s %8s  removed (why)\n", "stage", "in", "out");
    for (int s = 0; s < ST_COUNT; s++) {
        if (s == ST_HTML && p->o->in_jsonl) continue;
        fprintf(f, "  %-10s %8lld %8lld ", STAGE_NAMES[s], (long long)p->in[s],
                (long long)p->outn[s]);
        const char *sep = " ";
        for (int i = 0; i < p->n_reasons; i++)
            if (p->reasons[i].stage == s) {
                fprintf(f, "%s%s: %lld", sep, p->reasons[i].reason, (long long)p->reasons[i].count);
                sep = "; ";
            }
        if (s == ST_HTML) {
            for (int d = 0; d < LOOM_HTML_DROP_COUNT; d++)
                if (p->html.n[d]) {
                    fprintf(f, "%s%s: %lld (%lld bytes)", sep,
                            loom_html_drop_name((loom_html_drop)d), (long long)p->html.n[d],
                            (long long)p->html.bytes[d]);
                    sep = "; ";
                }
        }
        if (s == ST_NORMALIZE && p->nfkc_changed)
            fprintf(f, "%s(changed by NFKC: %lld)", sep, (long long)p->nfkc_changed);
        if (s == ST_FILTER && (p->emails || p->urls))
            fprintf(f, "%s(redacted: %lld e-mails, %lld URLs)", sep, (long long)p->emails,
                    (long long)p->urls);
        if (s == ST_NEAR && p->lsh)
            fprintf(f,
                    "%s(MinHash %d perms, %d-gram words, LSH %d bands x %d rows, threshold %.2f)",
                    sep, p->o->num_perm, p->o->ngram, loom_lsh_bands(p->lsh), loom_lsh_rows(p->lsh),
                    p->o->threshold);
        fputc('\n', f);
    }
    if (p->pack_st.seqs)
        fprintf(f,
                "  pack: %lld documents, %lld tokens in %lld sequences of %d (%lld padding, "
                "%lld documents split across sequences) -> %s\n",
                (long long)p->pack_st.docs, (long long)p->pack_st.tokens,
                (long long)p->pack_st.seqs, p->o->pack_len, (long long)p->pack_st.padding,
                (long long)p->pack_st.split_docs, p->o->tokens_path);
}

/* Writes text to path through a temporary file and rename. */
static loom_status write_atomic(const char *path, const char *text, char *err, size_t errn) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errn, "%s: %s", tmp, strerror(errno));
        return LOOM_ERR_IO;
    }
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errn, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return LOOM_ERR_IO;
    }
    return LOOM_OK;
}

static const char *check_opts(const loom_data_prep_opts *o) {
    if (!o->out_path || !o->out_path[0]) return "no output file";
    if (!o->in_jsonl == !o->html_dir)
        return "give exactly one input: a JSONL file or an HTML directory";
    if (!o->text_field || !o->text_field[0] || !o->messages_field || !o->messages_field[0])
        return "empty field name";
    if (!(o->threshold >= 0 && o->threshold <= 1)) return "the MinHash threshold must be in [0, 1]";
    if (o->ngram < 1 || o->num_perm < 1 || o->num_perm > 1024) return "bad --ngram or --num-perm";
    if (o->split_level < 0 || o->split_level > 6) return "the split level must be 0..6";
    if (o->min_chars < 0) return "--min-chars must be >= 0";
    if (!o->tokenizer_path != !o->tokens_path) return "--tokenizer and --tokens go together";
    if (o->tokens_path && (o->pack_len < 16 || o->pack_len > 65535))
        return "--pack-len must be 16..65535";
    return NULL;
}

/* The tokenizer (tokenizer.json, or the one inside a .gguf model) and the
 * packer writing o->tokens_path. */
static loom_status open_packer(prep *p, char *err, size_t errn) {
    const char *path = p->o->tokenizer_path;
    size_t n = strlen(path);
    char e2[512] = "";
    loom_status st;
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) {
        loom_gguf *g = NULL;
        st = loom_gguf_open(path, &g, e2, sizeof e2);
        if (st == LOOM_OK) st = loom_tokenizer_load_gguf(g, &p->tok, e2, sizeof e2);
        loom_gguf_close(g);
    } else {
        st = loom_tokenizer_load_hf_json(path, &p->tok, e2, sizeof e2);
    }
    if (st != LOOM_OK) {
        snprintf(err, errn, "%s: %s", path, e2[0] ? e2 : loom_status_str(st));
        return st;
    }
    return loom_packer_open(p->o->tokens_path, p->tok, p->o->pack_len, &p->pack, err, errn);
}

loom_status loom_data_prep(const loom_data_prep_opts *o, loom_data_prep_result *res, char *err,
                           size_t errn) {
    if (errn) err[0] = 0;
    const char *bad = check_opts(o);
    if (bad) {
        snprintf(err, errn, "%s", bad);
        return LOOM_ERR_INVALID_ARG;
    }
    prep p = {.o = o};
    p.removed = cJSON_CreateArray();
    loom_status st = p.removed ? LOOM_OK : LOOM_ERR_OOM;
    if (st == LOOM_OK && o->threshold > 0) {
        st = loom_minhash_init(&p.mh, o->num_perm, o->ngram, o->seed);
        if (st == LOOM_OK) st = loom_lsh_create(o->num_perm, o->threshold, &p.lsh);
        p.sig = malloc(sizeof(uint32_t) * (size_t)o->num_perm);
        if (st == LOOM_OK && !p.sig) st = LOOM_ERR_OOM;
    }
    if (st == LOOM_OK && o->tokenizer_path) st = open_packer(&p, err, errn);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->out_path, (long)getpid());
    if (st == LOOM_OK) {
        p.out = fopen(tmp, "w");
        if (!p.out) {
            snprintf(err, errn, "%s: %s", tmp, strerror(errno));
            st = LOOM_ERR_IO;
        }
    } else if (!err[0]) {
        snprintf(err, errn, "out of memory");
    }
    if (st == LOOM_OK) st = o->in_jsonl ? run_jsonl(&p, err, errn) : run_html(&p, err, errn);
    if (st == LOOM_OK && p.fatal) st = p.fatal;
    if (st != LOOM_OK && p.fatal_msg[0] && !err[0]) snprintf(err, errn, "%s", p.fatal_msg);
    if (p.pack) {
        loom_status ps =
            st == LOOM_OK ? loom_packer_finish(p.pack, &p.pack_st, err, errn) : LOOM_OK;
        if (st != LOOM_OK) loom_packer_abort(p.pack);
        p.pack = NULL;
        if (st == LOOM_OK) st = ps;
    }
    if (p.out) {
        bool ok = fclose(p.out) == 0;
        if (st == LOOM_OK && (!ok || rename(tmp, o->out_path) != 0)) {
            snprintf(err, errn, "%s: cannot write: %s", o->out_path, strerror(errno));
            st = LOOM_ERR_IO;
        }
        if (st != LOOM_OK) remove(tmp);
    }
    if (st != LOOM_OK && !err[0])
        snprintf(err, errn, "%s", st == LOOM_ERR_OOM ? "out of memory" : "write error");
    if (st == LOOM_OK) {
        if (o->log) report_text(&p, o->log);
        if (o->report_path) {
            cJSON *r = report_json(&p);
            char *txt = r ? cJSON_Print(r) : NULL;
            st = txt ? write_atomic(o->report_path, txt, err, errn) : LOOM_ERR_OOM;
            if (!txt) snprintf(err, errn, "out of memory writing the report");
            free(txt);
            cJSON_Delete(r);
        }
        if (res) res->records_in = p.in[ST_PARSE], res->records_out = p.outn[ST_NEAR];
    }
    for (int64_t i = 0; i < p.n_kept; i++)
        free(p.kept[i].source);
    free(p.kept);
    free(p.ex);
    free(p.sig);
    loom_lsh_free(p.lsh);
    loom_minhash_free(&p.mh);
    loom_tokenizer_free(p.tok);
    cJSON_Delete(p.removed);
    return st;
}

/* model/tokenizer/wordpiece.c - the BERT WordPiece tokenizer, as Hugging
 * Face tokenizers runs it (BertNormalizer, BertPreTokenizer, WordPiece,
 * TemplateProcessing [CLS] $A [SEP]); the rules are listed in loom/encoder.h.
 *
 * Text goes through three arrays of code points: the decoded input, the
 * normalized text, then words cut from it, each matched greedily against a
 * hash table of the vocabulary (open addressing on FNV-1a). The special
 * tokens written in the input are split out first, on the raw bytes,
 * leftmost-longest, as tokenizers' added-vocabulary pass does. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "loom/encoder.h"
#include "model/model_internal.h"

#define WP_MAX_ADDED 64

struct loom_wordpiece {
    char **tok; /* id -> token text (NUL-terminated, each its own allocation) */
    int32_t n;
    int32_t *slots; /* hash table of ids, -1 = empty; cap = mask + 1 */
    uint32_t mask;
    int32_t unk, cls, sep, pad;
    bool clean, chinese, strip, lower;
    int max_chars;
    char prefix[16];
    int n_added;
    int32_t added[WP_MAX_ADDED]; /* ids matched on the raw text */
};

/* ---------------- vocabulary ---------------- */

static char *dupn(const char *s, size_t n) { /* strndup is POSIX, not C11 */
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static uint32_t fnv(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int32_t lookup(const loom_wordpiece *wp, const char *s, size_t n) {
    for (uint32_t i = fnv(s, n) & wp->mask;; i = (i + 1) & wp->mask) {
        int32_t id = wp->slots[i];
        if (id < 0) return -1;
        if (strlen(wp->tok[id]) == n && memcmp(wp->tok[id], s, n) == 0) return id;
    }
}

/* Index every token; the first id of a duplicated token wins. */
static loom_status build_index(loom_wordpiece *wp, char *err, size_t err_n) {
    uint32_t cap = 16;
    while (cap < (uint32_t)wp->n * 2u)
        cap *= 2;
    wp->slots = malloc(cap * sizeof *wp->slots);
    if (!wp->slots) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
    memset(wp->slots, 0xff, cap * sizeof *wp->slots);
    wp->mask = cap - 1;
    for (int32_t id = 0; id < wp->n; id++) {
        if (!wp->tok[id])
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "wordpiece: the vocabulary has no token with id %d", id);
        size_t n = strlen(wp->tok[id]);
        if (lookup(wp, wp->tok[id], n) >= 0) continue;
        uint32_t i = fnv(wp->tok[id], n) & wp->mask;
        while (wp->slots[i] >= 0)
            i = (i + 1) & wp->mask;
        wp->slots[i] = id;
    }
    return LOOM_OK;
}

static loom_status special(loom_wordpiece *wp, const char *name, int32_t *out, bool need, char *err,
                           size_t err_n) {
    *out = lookup(wp, name, strlen(name));
    if (*out < 0 && need)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "wordpiece: the vocabulary has no %s token", name);
    return LOOM_OK;
}

/* The special tokens' names: unk from the model, cls/sep from the post
 * processor (BERT: [CLS]/[SEP]; MPNet, RoBERTa: <s>/</s>), pad when known. */
typedef struct wp_names {
    const char *unk, *cls, *sep, *pad;
} wp_names;

static loom_status finish(loom_wordpiece *wp, const wp_names *nm, char *err, size_t err_n) {
    LOOM_TRY(build_index(wp, err, err_n));
    LOOM_TRY(special(wp, nm->unk, &wp->unk, true, err, err_n));
    LOOM_TRY(special(wp, nm->cls, &wp->cls, true, err, err_n));
    LOOM_TRY(special(wp, nm->sep, &wp->sep, true, err, err_n));
    LOOM_TRY(special(wp, nm->pad, &wp->pad, false, err, err_n));
    if (wp->pad < 0) wp->pad = 0; /* padded positions are masked: any id will do */
    if (wp->n_added == 0) {       /* vocab.txt: the BERT specials */
        const char *names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
        for (int i = 0; i < 5; i++) {
            int32_t id = lookup(wp, names[i], strlen(names[i]));
            if (id >= 0) wp->added[wp->n_added++] = id;
        }
    }
    return LOOM_OK;
}

/* cls/sep names of tokenizer.json's post_processor (TemplateProcessing's
 * single template, or Bert/RobertaProcessing's "cls"/"sep" pairs). */
static void post_names(const cJSON *pp, wp_names *nm) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pp, "type");
    if (!cJSON_IsString(type)) return;
    if (!strcmp(type->valuestring, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
        const cJSON *first = cJSON_IsArray(single) ? single->child : NULL, *last = first;
        while (last && last->next)
            last = last->next;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(last, "SpecialToken");
        const cJSON *fid = cJSON_GetObjectItemCaseSensitive(f, "id");
        const cJSON *lid = cJSON_GetObjectItemCaseSensitive(l, "id");
        if (cJSON_IsString(fid)) nm->cls = fid->valuestring;
        if (cJSON_IsString(lid)) nm->sep = lid->valuestring;
    } else {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(pp, "cls");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(pp, "sep");
        if (cJSON_IsArray(c) && cJSON_IsString(c->child)) nm->cls = c->child->valuestring;
        if (cJSON_IsArray(s) && cJSON_IsString(s->child)) nm->sep = s->child->valuestring;
    }
}

static loom_wordpiece *wp_new(void) {
    loom_wordpiece *wp = calloc(1, sizeof *wp);
    if (!wp) return NULL;
    wp->clean = wp->chinese = wp->strip = wp->lower = true;
    wp->max_chars = 100;
    strcpy(wp->prefix, "##");
    return wp;
}

void loom_wordpiece_free(loom_wordpiece *wp) {
    if (!wp) return;
    for (int32_t i = 0; i < wp->n; i++)
        free(wp->tok[i]);
    free(wp->tok);
    free(wp->slots);
    free(wp);
}

static bool get_bool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static loom_status from_json(loom_wordpiece *wp, const cJSON *root, char *err, size_t err_n) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(model) || !cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece"))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "wordpiece: tokenizer.json's model is not WordPiece");
    if (!cJSON_IsObject(vocab))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "wordpiece: tokenizer.json has no model.vocab object");
    int32_t n = 0;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= 16777216.0 ||
            v->valuedouble != (double)(int32_t)v->valuedouble || !v->string)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "wordpiece: model.vocab entry '%s' is not an id in 0..2^24",
                                   v->string ? v->string : "?");
        if ((int32_t)v->valuedouble + 1 > n) n = (int32_t)v->valuedouble + 1;
    }
    if (n == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "wordpiece: the vocabulary is empty");
    wp->tok = calloc((size_t)n, sizeof *wp->tok);
    if (!wp->tok) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
    wp->n = n;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        int32_t id = (int32_t)v->valuedouble;
        if (wp->tok[id])
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "wordpiece: id %d appears twice in model.vocab", id);
        if (!(wp->tok[id] = dupn(v->string, strlen(v->string))))
            return loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
    }
    const cJSON *pfx = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    if (cJSON_IsString(pfx)) {
        if (strlen(pfx->valuestring) >= sizeof wp->prefix)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "wordpiece: continuing_subword_prefix is too long");
        strcpy(wp->prefix, pfx->valuestring);
    }
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    if (cJSON_IsNumber(mc)) wp->max_chars = mc->valuedouble < 1 ? 1 : (int)mc->valuedouble;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (cJSON_IsObject(norm)) {
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(norm, "type");
        if (!cJSON_IsString(nt) || strcmp(nt->valuestring, "BertNormalizer"))
            return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                                   "wordpiece: normalizer '%s' is not supported (BertNormalizer)",
                                   cJSON_IsString(nt) ? nt->valuestring : "?");
        wp->clean = get_bool(norm, "clean_text", true);
        wp->chinese = get_bool(norm, "handle_chinese_chars", true);
        wp->lower = get_bool(norm, "lowercase", true);
        wp->strip = get_bool(norm, "strip_accents", wp->lower); /* null: follows lowercase */
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= n ||
            wp->n_added == WP_MAX_ADDED)
            continue;
        wp->added[wp->n_added++] = (int32_t)id->valuedouble;
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    wp_names nm = {cJSON_IsString(unk) ? unk->valuestring : "[UNK]", "[CLS]", "[SEP]", "[PAD]"};
    post_names(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), &nm);
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(pad, "pad_token");
    if (cJSON_IsString(pt)) nm.pad = pt->valuestring;
    return finish(wp, &nm, err, err_n);
}

loom_status loom_wordpiece_load_json(const char *json, size_t n, loom_wordpiece **out, char *err,
                                     size_t err_n) {
    if (!out) return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "wordpiece: NULL argument");
    *out = NULL;
    cJSON *root = json ? cJSON_ParseWithLength(json, n) : NULL;
    if (!root)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "wordpiece: tokenizer.json is not JSON");
    loom_wordpiece *wp = wp_new();
    loom_status st = wp ? from_json(wp, root, err, err_n)
                        : loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
    cJSON_Delete(root);
    if (st != LOOM_OK) {
        loom_wordpiece_free(wp);
        return st;
    }
    *out = wp;
    return LOOM_OK;
}

static loom_status slurp(const char *path, char **data, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return LOOM_ERR_IO;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf) return LOOM_ERR_OOM;
    if (bad) {
        free(buf);
        return LOOM_ERR_IO;
    }
    buf[len] = '\0';
    *data = buf;
    *n = len;
    return LOOM_OK;
}

/* vocab.txt: one token per line, id = line number. */
static loom_status from_vocab_txt(loom_wordpiece *wp, char *text, size_t n, const char *dir,
                                  char *err, size_t err_n) {
    int32_t lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    if (n && text[n - 1] != '\n') lines++;
    wp->tok = calloc((size_t)lines + 1, sizeof *wp->tok);
    if (!wp->tok) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
    char *p = text, *end = text + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        size_t len = (size_t)(e - p);
        if (len && p[len - 1] == '\r') len--;
        if (!(wp->tok[wp->n] = dupn(p, len)))
            return loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
        wp->n++;
        p = nl ? nl + 1 : end;
    }
    if (wp->n == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "wordpiece: %s/vocab.txt is empty",
                               dir);
    char path[4096], *cfg = NULL;
    size_t cn = 0;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (slurp(path, &cfg, &cn) == LOOM_OK) {
        cJSON *root = cJSON_ParseWithLength(cfg, cn);
        wp->lower = get_bool(root, "do_lower_case", true);
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(root, "strip_accents");
        wp->strip = cJSON_IsBool(sa) ? cJSON_IsTrue(sa) : wp->lower;
        wp->chinese = get_bool(root, "tokenize_chinese_chars", true);
        cJSON_Delete(root);
        free(cfg);
    }
    const wp_names nm = {"[UNK]", "[CLS]", "[SEP]", "[PAD]"};
    return finish(wp, &nm, err, err_n);
}

loom_status loom_wordpiece_load(const char *dir, loom_wordpiece **out, char *err, size_t err_n) {
    if (!dir || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "wordpiece: NULL argument");
    *out = NULL;
    char path[4096], *data = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    loom_status st = slurp(path, &data, &n);
    if (st == LOOM_OK) {
        st = loom_wordpiece_load_json(data, n, out, err, err_n);
        if (st != LOOM_OK) {
            char msg[LOOM_ERROR_MAX];
            snprintf(msg, sizeof msg, "%s", err && err_n ? err : "");
            loom_model_fail(err, err_n, st, "%s: %s", path, msg);
        }
        free(data);
        return st;
    }
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if ((st = slurp(path, &data, &n)) != LOOM_OK)
        return loom_model_fail(err, err_n, st,
                               "wordpiece: %s has neither tokenizer.json nor "
                               "vocab.txt (%s)",
                               dir, strerror(errno));
    loom_wordpiece *wp = wp_new();
    st = wp ? from_vocab_txt(wp, data, n, dir, err, err_n)
            : loom_model_fail(err, err_n, LOOM_ERR_OOM, "wordpiece: out of memory");
    free(data);
    if (st != LOOM_OK) {
        loom_wordpiece_free(wp);
        return st;
    }
    *out = wp;
    return LOOM_OK;
}

int32_t loom_wordpiece_vocab_size(const loom_wordpiece *wp) {
    return wp ? wp->n : 0;
}
const char *loom_wordpiece_token(const loom_wordpiece *wp, int32_t id) {
    return wp && id >= 0 && id < wp->n ? wp->tok[id] : "";
}
int32_t loom_wordpiece_pad_id(const loom_wordpiece *wp) {
    return wp ? wp->pad : 0;
}

/* ---------------- character classes (tokenizers' bert normalizer) ---------------- */

static bool is_ws(int32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static bool is_control(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
        return true;
    default:
        return false;
    }
}

static bool is_punct(int32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return true;
    default:
        return false;
    }
}

static bool is_cjk(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---------------- encoding ---------------- */

typedef struct cps {
    int32_t *v;
    size_t n, cap;
} cps;

static bool push(cps *a, int32_t c) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv) return false;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = c;
    return true;
}

typedef struct out_ids {
    int32_t *ids;
    int cap, n, limit; /* limit: pieces allowed (max_tokens - 2) */
} out_ids;

static void emit(out_ids *o, int32_t id) {
    if (o->n - 1 >= o->limit) return; /* o->n counts [CLS] */
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* One word of code points: greedy longest match. */
static bool wordpiece_word(const loom_wordpiece *wp, const int32_t *w, size_t n, out_ids *o) {
    if (n > (size_t)wp->max_chars) {
        emit(o, wp->unk);
        return true;
    }
    /* UTF-8 of the word with the byte offset of every character. */
    const size_t pl = strlen(wp->prefix);
    size_t *at = malloc((n + 1) * sizeof *at);
    char *s = malloc(pl + 4 * n + 1);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!at || !s || !ids) {
        free(at);
        free(s);
        free(ids);
        return false;
    }
    memcpy(s, wp->prefix, pl);
    char *u = s + pl;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        at[i] = len;
        len += (size_t)utf8proc_encode_char(w[i], (utf8proc_uint8_t *)u + len);
    }
    at[n] = len;
    int k = 0;
    bool bad = false;
    for (size_t start = 0; start < n && !bad;) {
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--) {
            if (start == 0) {
                id = lookup(wp, u, at[end]);
            } else {
                /* prefix + piece, the prefix copied just before the piece */
                char *p = u + at[start] - pl;
                char save[16];
                memcpy(save, p, pl);
                memcpy(p, wp->prefix, pl);
                id = lookup(wp, p, pl + at[end] - at[start]);
                memcpy(p, save, pl);
            }
            if (id >= 0) break;
        }
        if (id < 0)
            bad = true;
        else
            ids[k++] = id;
        start = end;
    }
    if (bad)
        emit(o, wp->unk);
    else
        for (int i = 0; i < k; i++)
            emit(o, ids[i]);
    free(at);
    free(s);
    free(ids);
    return true;
}

/* Normalize and pre-tokenize one span of raw text (no special tokens in it). */
static bool encode_span(const loom_wordpiece *wp, const char *text, size_t len, out_ids *o) {
    cps a = {0}, w = {0};
    bool ok = true;
    for (size_t i = 0; i < len && ok;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) { /* invalid byte: one U+FFFD, as a lossy decode gives */
            c = 0xFFFD;
            k = 1;
        }
        i += (size_t)k;
        if (wp->clean) {
            if (c == 0 || c == 0xFFFD || is_control(c)) continue;
            if (is_ws(c)) c = ' ';
        }
        int32_t buf[32];
        int nd = 1;
        buf[0] = c;
        if (wp->strip) {
            utf8proc_ssize_t r = utf8proc_decompose_char(c, buf, 32, UTF8PROC_DECOMPOSE, NULL);
            nd = r > 0 && r <= 32 ? (int)r : 1;
            if (r <= 0 || r > 32) buf[0] = c;
        }
        for (int j = 0; j < nd && ok; j++) {
            int32_t d = buf[j];
            if (wp->strip && utf8proc_category(d) == UTF8PROC_CATEGORY_MN) continue;
            if (wp->lower) {
                if (d == 0x130) { /* the one unconditional multi-character lower case */
                    ok = push(&a, 'i') && push(&a, 0x307);
                    continue;
                }
                d = utf8proc_tolower(d);
            }
            if (wp->chinese && is_cjk(d))
                ok = push(&a, ' ') && push(&a, d) && push(&a, ' ');
            else
                ok = push(&a, d);
        }
    }
    for (size_t i = 0; i <= a.n && ok; i++) {
        const int32_t c = i < a.n ? a.v[i] : ' ';
        if (is_ws(c) || is_punct(c)) {
            if (w.n) ok = wordpiece_word(wp, w.v, w.n, o);
            w.n = 0;
            if (ok && !is_ws(c)) ok = wordpiece_word(wp, &c, 1, o);
        } else {
            ok = push(&w, c);
        }
    }
    free(a.v);
    free(w.v);
    return ok;
}

loom_status loom_wordpiece_encode(const loom_wordpiece *wp, const char *text, size_t len,
                                  int max_tokens, int32_t *ids, int cap, int *n_out) {
    if (!wp || (!text && len) || max_tokens < 2 || (!ids && cap > 0) || cap < 0 || !n_out)
        return LOOM_ERR_INVALID_ARG;
    out_ids o = {.ids = ids, .cap = cap, .limit = max_tokens - 2};
    if (o.cap > 0) o.ids[0] = wp->cls;
    o.n = 1;
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        /* leftmost-longest special token at i */
        int32_t best = -1;
        size_t best_n = 0;
        for (int s = 0; s < wp->n_added; s++) {
            const char *t = wp->tok[wp->added[s]];
            size_t tn = strlen(t);
            if (tn > best_n && tn <= len - i && memcmp(text + i, t, tn) == 0) {
                best = wp->added[s];
                best_n = tn;
            }
        }
        if (best < 0) {
            i++;
            continue;
        }
        if (!encode_span(wp, text + start, i - start, &o)) return LOOM_ERR_OOM;
        emit(&o, best);
        i += best_n;
        start = i;
    }
    if (!encode_span(wp, text + start, len - start, &o)) return LOOM_ERR_OOM;
    if (o.n < o.cap) o.ids[o.n] = wp->sep;
    o.n++;
    *n_out = o.n;
    return LOOM_OK;
}

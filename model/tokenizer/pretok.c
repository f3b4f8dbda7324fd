/* model/tokenizer/pretok.c - pre-tokenization: the text between special tokens
 * is cut into pieces by one or more PCRE2 regexes, each applied to the pieces
 * of the previous one (Hugging Face's Sequence of Isolated splits), and the
 * GGUF tokenizer.ggml.pre names that stand for such sequences.
 *
 * A single combined regex is not enough: SmolLM's Digits-then-ByteLevel
 * split differs from GPT-2's regex with \p{N} in front, because GPT-2's
 * \s+(?!\S) looks past the digit that the first stage has already cut off
 * ("a  1": "a", "  ", "1" in two stages, "a", " ", " ", "1" in one). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

/* The regex of Llama 3's tokenizer.json (also tiktoken's cl100k-style split). */
static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* GPT-2's split: Hugging Face's ByteLevel pre-tokenizer with use_regex. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Hugging Face's Digits(individual_digits = true): every Unicode number
 * character (Rust's char::is_numeric: Nd, Nl, No) on its own. */
static const char DIGITS_PATTERN[] = "\\p{N}";

const char *loom_tokenizer_llama3_pattern(void) {
    return LLAMA3_PATTERN;
}
const char *loom_pretok_gpt2_pattern(void) {
    return GPT2_PATTERN;
}
const char *loom_pretok_digits_pattern(void) {
    return DIGITS_PATTERN;
}

/* GGUF tokenizer.ggml.pre values (llama.cpp's names for llama-family files)
 * and the Hugging Face pre-tokenizers they stand for. The first name of a
 * row is the one loom writes. "default" is llama.cpp's value for a file
 * whose converter did not recognise the pre-tokenizer; loom reads it as
 * GPT-2's regex, what a ByteLevel tokenizer.json without a Split uses. */
static const struct {
    const char *names[3];
    const char *stages[LOOM_PRETOK_MAX_STAGES];
    size_t n_stages;
    bool ignore_merges;
} NAMED[] = {
    {{"llama-bpe", "llama3", "llama-v3"}, {LLAMA3_PATTERN}, 1, true},
    {{"gpt2", "default"}, {GPT2_PATTERN}, 1, false},
    {{"smollm"}, {DIGITS_PATTERN, GPT2_PATTERN}, 2, false},
};
#define N_NAMED (sizeof NAMED / sizeof NAMED[0])

loom_status loom_pretok_named(const char *name, size_t len, const char *const **stages,
                              size_t *n_stages, bool *ignore_merges, char *err, size_t err_n) {
    for (size_t i = 0; i < N_NAMED; i++)
        for (size_t k = 0; k < 3 && NAMED[i].names[k]; k++)
            if (strlen(NAMED[i].names[k]) == len && !memcmp(NAMED[i].names[k], name, len)) {
                *stages = NAMED[i].stages;
                *n_stages = NAMED[i].n_stages;
                *ignore_merges = NAMED[i].ignore_merges;
                return LOOM_OK;
            }
    return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                           "tokenizer: tokenizer.ggml.pre '%.*s' is not supported (known: "
                           "llama-bpe, llama3, llama-v3, smollm, gpt2, default)",
                           (int)(len > 64 ? 64 : len), name);
}

struct loom_pretok {
    size_t n;
    pcre2_code *re[LOOM_PRETOK_MAX_STAGES];
    char *src[LOOM_PRETOK_MAX_STAGES]; /* as given (for export) */
};

/* The Unicode White_Space set, which Hugging Face's regex engine (Oniguruma)
 * uses for \s. PCRE2's \s under UCP also matches U+180E (whitespace before
 * Unicode 6.3, now a format character), so \s and \S are spelled out. */
#define TOK_WS_ITEMS "\\t\\n\\x0b\\f\\r\\x{85}\\p{Z}"

static void sb_put(char *dst, size_t *k, const char *s, size_t n) {
    memcpy(dst + *k, s, n);
    *k += n;
}

/* Copy pattern with \s -> White_Space (a class, or its items inside a class)
 * and \S -> its complement outside classes. Other syntax is copied verbatim;
 * the scanner only tracks escapes, \Q...\E and [...] classes. Returns a
 * malloc'd string or NULL on OOM. */
static char *rewrite_space_classes(const char *in) {
    size_t n = strlen(in), items = strlen(TOK_WS_ITEMS);
    char *out = malloc(n * (items + 4) / 2 + 8); /* each 2-byte escape grows to items + 3 */
    if (!out) return NULL;
    size_t k = 0, i = 0;
    bool in_class = false;
    while (i < n) {
        char c = in[i];
        if (c == '\\' && i + 1 < n) {
            char d = in[i + 1];
            if (d == 's' && in_class) {
                sb_put(out, &k, TOK_WS_ITEMS, items);
            } else if (d == 's' || d == 'S') {
                sb_put(out, &k, d == 's' ? "[" : "[^", d == 's' ? 1 : 2);
                sb_put(out, &k, TOK_WS_ITEMS, items);
                sb_put(out, &k, "]", 1);
            } else if (d == 'Q') { /* literal text up to \E */
                const char *e = strstr(in + i + 2, "\\E");
                size_t stop = e ? (size_t)(e - in) + 2 : n;
                sb_put(out, &k, in + i, stop - i);
                i = stop;
                continue;
            } else {
                sb_put(out, &k, in + i, 2);
            }
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            size_t j = i + 1;
            if (j < n && in[j] == '^') j++;
            if (j < n && in[j] == ']') /* a leading ] is literal */
                j++;
            sb_put(out, &k, in + i, j - i);
            i = j;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && in[i + 1] == ':') { /* [:alpha:] */
            const char *e = strstr(in + i + 2, ":]");
            size_t stop = e ? (size_t)(e - in) + 2 : i + 1;
            sb_put(out, &k, in + i, stop - i);
            i = stop;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        out[k++] = c;
        i++;
    }
    out[k] = 0;
    return out;
}

void loom_pretok_free(loom_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        if (p->re[i]) pcre2_code_free(p->re[i]);
        free(p->src[i]);
    }
    free(p);
}

loom_status loom_pretok_new(const char *const *stages, size_t n, loom_pretok **out, char *err,
                            size_t err_n) {
    *out = NULL;
    if (n == 0 || n > LOOM_PRETOK_MAX_STAGES)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "tokenizer: %zu pre-tokenizer stages (1 to %d)", n,
                               LOOM_PRETOK_MAX_STAGES);
    loom_pretok *p = calloc(1, sizeof *p);
    if (!p) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
    for (size_t i = 0; i < n; i++) {
        p->n = i + 1;
        p->src[i] = malloc(strlen(stages[i]) + 1);
        char *rewritten = rewrite_space_classes(stages[i]);
        if (!p->src[i] || !rewritten) {
            free(rewritten);
            loom_pretok_free(p);
            return loom_model_fail(err, err_n, LOOM_ERR_OOM, "tokenizer: out of memory");
        }
        memcpy(p->src[i], stages[i], strlen(stages[i]) + 1);
        /* UTF + Unicode properties; MATCH_INVALID_UTF so invalid bytes are
         * skipped instead of failing the whole match. */
        int ecode;
        PCRE2_SIZE eoff;
        p->re[i] =
            pcre2_compile((PCRE2_SPTR)rewritten, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ecode, &eoff, NULL);
        free(rewritten);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ecode, msg, sizeof(msg));
            loom_pretok_free(p);
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "tokenizer: pre-tokenizer regex does not compile (PCRE2): %s",
                                   (const char *)msg);
        }
        /* JIT is an optimisation only: without it pcre2_match interprets. */
        (void)pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
    }
    *out = p;
    return LOOM_OK;
}

const char *loom_pretok_name(const loom_pretok *p) {
    for (size_t i = 0; i < N_NAMED; i++) {
        if (NAMED[i].n_stages != p->n) continue;
        bool same = true;
        for (size_t k = 0; k < p->n; k++)
            same = same && !strcmp(NAMED[i].stages[k], p->src[k]);
        if (same) return NAMED[i].names[0];
    }
    return NULL;
}

const char *loom_pretok_pattern(const loom_pretok *p) {
    return p->n == 1 ? p->src[0] : NULL;
}

bool loom_pretok_default_ignore_merges(const char *name) {
    for (size_t i = 0; name && i < N_NAMED; i++)
        if (!strcmp(NAMED[i].names[0], name)) return NAMED[i].ignore_merges;
    return true; /* a loom.tokenizer.pattern file: loom's default since Llama 3 */
}

void *loom_pretok_scratch_new(const loom_pretok *p) {
    (void)p;
    return pcre2_match_data_create(1, NULL); /* only the whole match is read */
}

void loom_pretok_scratch_free(void *s) {
    if (s) pcre2_match_data_free((pcre2_match_data *)s);
}

static size_t utf8_len_at(const uint8_t *p, size_t n) {
    /* Length of the (possibly invalid) character at p: used only to step past
     * an empty regex match. */
    size_t l = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : 4;
    if (l > n) l = n;
    for (size_t k = 1; k < l; k++)
        if ((p[k] & 0xc0) != 0x80) return k;
    return l;
}

static loom_status piece(const loom_pretok *p, size_t stage, pcre2_match_data *md,
                         const uint8_t *text, size_t n, loom_pretok_emit emit, void *ud, char *err,
                         size_t err_n);

/* Split text with stage's regex. Text the regex does not cover (gaps: runs
 * of invalid UTF-8, or anything a later-stage regex does not match) becomes
 * its own piece, like the unmatched parts of Hugging Face's Split(behavior =
 * Isolated). Every piece goes on to the next stage. */
static loom_status split(const loom_pretok *p, size_t stage, pcre2_match_data *md,
                         const uint8_t *text, size_t n, loom_pretok_emit emit, void *ud, char *err,
                         size_t err_n) {
    size_t gap = 0, at = 0;
    uint32_t opts = 0;
    while (at < n) {
        int rc = pcre2_match(p->re[stage], text, n, at, opts, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
            opts |= PCRE2_NO_JIT; /* the interpreter keeps its backtracking on the heap */
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            return loom_model_fail(err, err_n, LOOM_ERR_INTERNAL,
                                   "tokenizer: regex match failed at byte %zu: %s", at,
                                   (const char *)msg);
        }
        /* copied out: the next stage reuses md */
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], f = ov[1];
        if (f == s) { /* empty match: step over one character, it joins the gap */
            at = s + utf8_len_at(text + s, n - s);
            continue;
        }
        LOOM_TRY(piece(p, stage + 1, md, text + gap, s - gap, emit, ud, err, err_n));
        LOOM_TRY(piece(p, stage + 1, md, text + s, f - s, emit, ud, err, err_n));
        gap = at = f;
    }
    return piece(p, stage + 1, md, text + gap, n - gap, emit, ud, err, err_n);
}

static loom_status piece(const loom_pretok *p, size_t stage, pcre2_match_data *md,
                         const uint8_t *text, size_t n, loom_pretok_emit emit, void *ud, char *err,
                         size_t err_n) {
    if (n == 0) return LOOM_OK;
    if (stage == p->n) {
        loom_status st = emit(ud, text, n);
        if (st != LOOM_OK)
            return loom_model_fail(err, err_n, st, "tokenizer: encode failed: %s",
                                   loom_status_str(st));
        return LOOM_OK;
    }
    return split(p, stage, md, text, n, emit, ud, err, err_n);
}

loom_status loom_pretok_split(const loom_pretok *p, void *scratch, const uint8_t *text, size_t n,
                              loom_pretok_emit emit, void *ud, char *err, size_t err_n) {
    return piece(p, 0, (pcre2_match_data *)scratch, text, n, emit, ud, err, err_n);
}

/* train/minhash.c - MinHash + LSH; the rule is in minhash.h. */
#include "train/minhash.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MERSENNE61 ((UINT64_C(1) << 61) - 1)

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* (a * x) mod 2^61-1 for a, x < 2^61 in ISO C (no __int128): the 128-bit
 * product from four 32x32 products, then Mersenne folding (2^61 == 1). */
static uint64_t mulmod61(uint64_t a, uint64_t x) {
    uint64_t al = a & 0xffffffffu, ah = a >> 32, xl = x & 0xffffffffu, xh = x >> 32;
    uint64_t ll = al * xl, lh = al * xh, hl = ah * xl, hh = ah * xh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    uint64_t lo = (ll & 0xffffffffu) | (mid << 32);
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    /* value = hi * 2^64 + lo; 2^64 = 8 * 2^61 == 8 (mod p); 2^61 == 1. */
    uint64_t r = (lo & MERSENNE61) + (lo >> 61) + (hi << 3);
    r = (r & MERSENNE61) + (r >> 61);
    r = (r & MERSENNE61) + (r >> 61);
    return r >= MERSENNE61 ? r - MERSENNE61 : r;
}

loom_status loom_minhash_init(loom_minhash *m, int num_perm, int ngram, uint64_t seed) {
    if (!m || num_perm < 1 || num_perm > 1024 || ngram < 1) return LOOM_ERR_INVALID_ARG;
    memset(m, 0, sizeof *m);
    m->a = malloc(sizeof(uint64_t) * (size_t)num_perm);
    m->b = malloc(sizeof(uint64_t) * (size_t)num_perm);
    if (!m->a || !m->b) {
        loom_minhash_free(m);
        return LOOM_ERR_OOM;
    }
    uint64_t s = seed;
    for (int i = 0; i < num_perm; i++) {
        do
            m->a[i] = splitmix64(&s) % MERSENNE61;
        while (m->a[i] == 0);
        m->b[i] = splitmix64(&s) % MERSENNE61;
    }
    m->num_perm = num_perm;
    m->ngram = ngram;
    return LOOM_OK;
}

void loom_minhash_free(loom_minhash *m) {
    if (!m) return;
    free(m->a);
    free(m->b);
    memset(m, 0, sizeof *m);
}

static bool word_byte(unsigned char c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME  UINT64_C(0x100000001b3)

/* Word boundaries of a text: (start, end) pairs, malloc'd; count in *nw. */
static size_t *words_of(const char *t, size_t len, size_t *nw) {
    size_t cap = 64, n = 0;
    size_t *w = malloc(sizeof(size_t) * cap);
    if (!w) return NULL;
    for (size_t i = 0; i < len;) {
        while (i < len && !word_byte((unsigned char)t[i]))
            i++;
        if (i >= len) break;
        size_t s = i;
        while (i < len && word_byte((unsigned char)t[i]))
            i++;
        if (n + 2 > cap) {
            size_t *nwp = realloc(w, sizeof(size_t) * (cap *= 2));
            if (!nwp) {
                free(w);
                return NULL;
            }
            w = nwp;
        }
        w[n++] = s;
        w[n++] = i;
    }
    *nw = n / 2;
    return w;
}

/* Hash of words [k, k+cnt) joined by single spaces, ASCII lowercased. */
static uint64_t shingle_hash(const char *t, const size_t *w, size_t k, size_t cnt) {
    uint64_t h = FNV_OFFSET;
    for (size_t j = k; j < k + cnt; j++) {
        if (j > k) h = (h ^ (uint64_t)' ') * FNV_PRIME;
        for (size_t i = w[2 * j]; i < w[2 * j + 1]; i++) {
            unsigned char c = (unsigned char)t[i];
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
            h = (h ^ c) * FNV_PRIME;
        }
    }
    return h;
}

/* Calls per-shingle: fills hashes[] (malloc'd), returns count or -1 on OOM. */
static int64_t shingles_of(int ngram, const char *t, size_t len, uint64_t **out) {
    size_t nw = 0;
    *out = NULL;
    size_t *w = words_of(t, len, &nw);
    if (!w) return -1;
    if (nw == 0) {
        free(w);
        return 0;
    }
    size_t cnt = nw < (size_t)ngram ? nw : (size_t)ngram, ns = nw - cnt + 1;
    uint64_t *h = malloc(sizeof(uint64_t) * ns);
    if (!h) {
        free(w);
        return -1;
    }
    for (size_t k = 0; k < ns; k++)
        h[k] = shingle_hash(t, w, k, cnt);
    free(w);
    *out = h;
    return (int64_t)ns;
}

int64_t loom_minhash_signature(const loom_minhash *m, const char *text, size_t len, uint32_t *sig) {
    for (int i = 0; i < m->num_perm; i++)
        sig[i] = UINT32_MAX;
    uint64_t *h;
    int64_t ns = shingles_of(m->ngram, text, len, &h);
    for (int64_t k = 0; k < ns; k++) {
        uint64_t x = h[k] % MERSENNE61;
        for (int i = 0; i < m->num_perm; i++) {
            uint64_t v = mulmod61(m->a[i], x) + m->b[i];
            v = v >= MERSENNE61 ? v - MERSENNE61 : v;
            uint32_t v32 = (uint32_t)v;
            sig[i] = v32 < sig[i] ? v32 : sig[i];
        }
    }
    free(h);
    return ns;
}

double loom_minhash_jaccard(const uint32_t *s1, const uint32_t *s2, int num_perm) {
    int eq = 0;
    for (int i = 0; i < num_perm; i++)
        eq += s1[i] == s2[i];
    return (double)eq / (double)num_perm;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t uniq(uint64_t *h, int64_t n) {
    if (n <= 0) return 0;
    qsort(h, (size_t)n, sizeof *h, cmp_u64);
    size_t k = 1;
    for (int64_t i = 1; i < n; i++)
        if (h[i] != h[k - 1]) h[k++] = h[i];
    return k;
}

double loom_minhash_exact_jaccard(int ngram, const char *t1, size_t n1, const char *t2, size_t n2) {
    uint64_t *a, *b;
    int64_t na = shingles_of(ngram, t1, n1, &a), nb = shingles_of(ngram, t2, n2, &b);
    if (na < 0 || nb < 0) {
        free(a), free(b);
        return -1;
    }
    size_t ua = uniq(a, na), ub = uniq(b, nb), i = 0, j = 0, inter = 0;
    while (i < ua && j < ub) {
        if (a[i] == b[j])
            inter++, i++, j++;
        else if (a[i] < b[j])
            i++;
        else
            j++;
    }
    free(a), free(b);
    size_t uni = ua + ub - inter;
    return uni == 0 ? 1.0 : (double)inter / (double)uni;
}

/* Simpson's rule on [lo, hi] with 1000 intervals of P(s) or 1 - P(s). */
static double lsh_area(double lo, double hi, int b, int r, bool fn) {
    enum { N = 1000 };
    double h = (hi - lo) / N, sum = 0;
    for (int k = 0; k <= N; k++) {
        double s = lo + h * k, p = 1.0 - pow(1.0 - pow(s, r), b);
        double y = fn ? 1.0 - p : p;
        sum += y * (k == 0 || k == N ? 1 : k % 2 ? 4 : 2);
    }
    return sum * h / 3.0;
}

void loom_lsh_params(double threshold, int num_perm, int *bands, int *rows) {
    double best = INFINITY;
    *bands = 1, *rows = num_perm;
    for (int b = 1; b <= num_perm; b++)
        for (int r = 1; r <= num_perm / b; r++) {
            double err = 0.5 * lsh_area(0.0, threshold, b, r, false) +
                         0.5 * lsh_area(threshold, 1.0, b, r, true);
            if (err < best) best = err, *bands = b, *rows = r;
        }
}

/* ---- the index: one open-addressing table of (band, key) -> chain ---- */

typedef struct {
    uint64_t key;
    int64_t doc;
    int64_t next;
    int32_t band;
} lsh_entry;

struct loom_lsh {
    int num_perm, bands, rows;
    double threshold;
    uint32_t *sigs; /* [n_docs][num_perm] */
    int64_t n_docs, cap_docs;
    lsh_entry *ent;
    int64_t n_ent, cap_ent;
    int64_t *slot; /* head entry per slot, -1 empty; size a power of two */
    uint64_t n_slot;
};

static uint64_t band_key(const uint32_t *sig, int band, int rows) {
    uint64_t h = FNV_OFFSET ^ (uint64_t)band;
    for (int i = band * rows; i < (band + 1) * rows; i++)
        for (int k = 0; k < 4; k++)
            h = (h ^ ((sig[i] >> (8 * k)) & 0xff)) * FNV_PRIME;
    return h;
}

loom_status loom_lsh_create(int num_perm, double threshold, loom_lsh **out) {
    if (!out || num_perm < 1 || !(threshold > 0 && threshold <= 1)) return LOOM_ERR_INVALID_ARG;
    loom_lsh *l = calloc(1, sizeof *l);
    if (!l) return LOOM_ERR_OOM;
    l->num_perm = num_perm;
    l->threshold = threshold;
    loom_lsh_params(threshold, num_perm, &l->bands, &l->rows);
    l->n_slot = 1024;
    l->slot = malloc(sizeof(int64_t) * l->n_slot);
    if (!l->slot) {
        free(l);
        return LOOM_ERR_OOM;
    }
    memset(l->slot, 0xff, sizeof(int64_t) * l->n_slot);
    *out = l;
    return LOOM_OK;
}

void loom_lsh_free(loom_lsh *l) {
    if (!l) return;
    free(l->sigs);
    free(l->ent);
    free(l->slot);
    free(l);
}

int loom_lsh_bands(const loom_lsh *l) {
    return l->bands;
}
int loom_lsh_rows(const loom_lsh *l) {
    return l->rows;
}

/* Slot of (band, key): linear probing over heads whose first entry matches. */
static uint64_t find_slot(const loom_lsh *l, int band, uint64_t key) {
    uint64_t i = (key * UINT64_C(0x9E3779B97F4A7C15)) & (l->n_slot - 1);
    for (;; i = (i + 1) & (l->n_slot - 1)) {
        int64_t e = l->slot[i];
        if (e < 0 || (l->ent[e].key == key && l->ent[e].band == band)) return i;
    }
}

int64_t loom_lsh_query(const loom_lsh *l, const uint32_t *sig, double *sim) {
    int64_t best = -1;
    double bs = -1;
    for (int b = 0; b < l->bands; b++) {
        uint64_t key = band_key(sig, b, l->rows);
        for (int64_t e = l->slot[find_slot(l, b, key)]; e >= 0; e = l->ent[e].next) {
            int64_t d = l->ent[e].doc;
            double j = loom_minhash_jaccard(sig, l->sigs + d * l->num_perm, l->num_perm);
            if (j >= l->threshold && (j > bs || (j == bs && d < best))) bs = j, best = d;
        }
    }
    if (sim) *sim = best >= 0 ? bs : 0;
    return best;
}

static bool grow_slots(loom_lsh *l) {
    uint64_t n = l->n_slot * 2;
    int64_t *s = malloc(sizeof(int64_t) * n);
    if (!s) return false;
    memset(s, 0xff, sizeof(int64_t) * n);
    int64_t *old = l->slot;
    uint64_t old_n = l->n_slot;
    l->slot = s;
    l->n_slot = n;
    for (uint64_t i = 0; i < old_n; i++)
        if (old[i] >= 0) l->slot[find_slot(l, l->ent[old[i]].band, l->ent[old[i]].key)] = old[i];
    free(old);
    return true;
}

int64_t loom_lsh_insert(loom_lsh *l, const uint32_t *sig) {
    if (l->n_docs == l->cap_docs) {
        int64_t c = l->cap_docs ? l->cap_docs * 2 : 256;
        uint32_t *s = realloc(l->sigs, sizeof(uint32_t) * (size_t)c * (size_t)l->num_perm);
        if (!s) return -1;
        l->sigs = s;
        l->cap_docs = c;
    }
    if (l->n_ent + l->bands > l->cap_ent) {
        int64_t c = l->cap_ent ? l->cap_ent * 2 : 4096;
        while (c < l->n_ent + l->bands)
            c *= 2;
        lsh_entry *e = realloc(l->ent, sizeof(lsh_entry) * (size_t)c);
        if (!e) return -1;
        l->ent = e;
        l->cap_ent = c;
    }
    int64_t d = l->n_docs++;
    memcpy(l->sigs + d * l->num_perm, sig, sizeof(uint32_t) * (size_t)l->num_perm);
    for (int b = 0; b < l->bands; b++) {
        /* Heads fill at most half the slots, so probing stays short. */
        if ((uint64_t)(l->n_ent + 1) * 2 > l->n_slot && !grow_slots(l)) return -1;
        uint64_t key = band_key(sig, b, l->rows);
        uint64_t s = find_slot(l, b, key);
        int64_t e = l->n_ent++;
        l->ent[e] = (lsh_entry){key, d, l->slot[s], b};
        l->slot[s] = e;
    }
    return d;
}

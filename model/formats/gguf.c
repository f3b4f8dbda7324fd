/* model/formats/gguf.c - GGUF reader: mmap, validate everything up front, then serve
 * KVs and tensors from the mapping without further bounds worries.
 *
 * Every length read from the file is checked against the bytes that remain
 * before it is used to index or to size an allocation, so a hostile file can
 * cost at most O(file size) memory and never reads outside the mapping. */
#define _POSIX_C_SOURCE 200809L

#include "loom/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/formats/gguf_internal.h"
#include "model/model_internal.h"

/* ------------------------------------------------------------- type tables */

static const char *const value_type_names[LOOM_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *loom_gguf_type_name(loom_gguf_type t) {
    return (unsigned)t < LOOM_GGUF_TYPE_COUNT ? value_type_names[t] : "?";
}

size_t loom_gguf_scalar_size(uint32_t t) {
    static const uint8_t sz[LOOM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < LOOM_GGUF_TYPE_COUNT ? sz[t] : 0;
}

/* ggml's block layouts (values per block, bytes per block). Ids 4, 5 and
 * 31..33, 36..38 were removed from ggml and never appear in valid files. */
static const loom_ggml_type_traits ggml_traits[] = {
    [0] = {"f32", 1, 4},         [1] = {"f16", 1, 2},         [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},      [6] = {"q5_0", 32, 22},      [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},      [9] = {"q8_1", 32, 36},      [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},   [12] = {"q4_K", 256, 144},   [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},   [15] = {"q8_K", 256, 292},   [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},  [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},   [21] = {"iq3_s", 256, 110},  [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},         [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},        [27] = {"i64", 1, 8},        [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},   [30] = {"bf16", 1, 2},       [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},   [39] = {"mxfp4", 32, 17},
};

const loom_ggml_type_traits *loom_ggml_traits(uint32_t t) {
    if (t >= sizeof ggml_traits / sizeof ggml_traits[0] || ggml_traits[t].name == NULL) return NULL;
    return &ggml_traits[t];
}

const char *loom_ggml_type_name(uint32_t t) {
    const loom_ggml_type_traits *tr = loom_ggml_traits(t);
    return tr ? tr->name : NULL;
}

loom_status loom_ggml_type_from_dtype(loom_dtype t, uint32_t *out) {
    switch (t) {
    case LOOM_F32:
        *out = LOOM_GGML_TYPE_F32;
        return LOOM_OK;
    case LOOM_F16:
        *out = LOOM_GGML_TYPE_F16;
        return LOOM_OK;
    case LOOM_BF16:
        *out = LOOM_GGML_TYPE_BF16;
        return LOOM_OK;
    case LOOM_I32:
        *out = LOOM_GGML_TYPE_I32;
        return LOOM_OK;
    case LOOM_Q8_0:
        *out = LOOM_GGML_TYPE_Q8_0;
        return LOOM_OK;
    case LOOM_Q4_0:
        *out = LOOM_GGML_TYPE_Q4_0;
        return LOOM_OK;
    case LOOM_Q4_1:
        *out = LOOM_GGML_TYPE_Q4_1;
        return LOOM_OK;
    case LOOM_Q5_0:
        *out = LOOM_GGML_TYPE_Q5_0;
        return LOOM_OK;
    case LOOM_Q5_1:
        *out = LOOM_GGML_TYPE_Q5_1;
        return LOOM_OK;
    case LOOM_Q2_K:
    case LOOM_Q3_K:
    case LOOM_Q4_K:
    case LOOM_Q5_K:
    case LOOM_Q6_K: /* k-quants, ADR 0024 */
        *out = LOOM_GGML_TYPE_Q2_K + (uint32_t)(t - LOOM_Q2_K);
        return LOOM_OK;
    default:
        return LOOM_ERR_UNSUPPORTED;
    }
}

loom_status loom_gguf_set_err(loom_gguf *g, loom_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loom_model_vfail(g->err, sizeof g->err, s, fmt, ap);
    va_end(ap);
    return s;
}

/* ------------------------------------------------------------- parsing */

typedef struct rd {
    loom_gguf *g;
    const uint8_t *p;
    size_t n, pos;
    const char *src; /* path or "<memory>" */
    char *err;
    size_t err_n;
} rd;

/* loom_model_fail with the parser's context: the source and the byte the
 * problem was found at. */
static loom_status parse_error(rd *r, loom_status s, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static loom_status parse_error(rd *r, loom_status s, size_t at, const char *fmt, ...) {
    if (!r->err || r->err_n == 0) return s;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    loom_model_vfail(msg, sizeof msg, s, fmt, ap);
    va_end(ap);
    return loom_model_fail(r->err, r->err_n, s, "gguf %s: %s (at byte %zu)", r->src, msg, at);
}

static size_t left(const rd *r) {
    return r->n - r->pos;
}

static loom_status need(rd *r, uint64_t k, const char *what, const char *who) {
    if (k > left(r))
        return parse_error(r, LOOM_ERR_FORMAT, r->pos, "truncated: %s%s needs %llu bytes, %zu left",
                           who, what, (unsigned long long)k, left(r));
    return LOOM_OK;
}

static loom_status rd_u32(rd *r, const char *what, const char *who, uint32_t *out) {
    LOOM_TRY(need(r, 4, what, who));
    *out = le32(r->p + r->pos);
    r->pos += 4;
    return LOOM_OK;
}

static loom_status rd_u64(rd *r, const char *what, const char *who, uint64_t *out) {
    LOOM_TRY(need(r, 8, what, who));
    *out = le64(r->p + r->pos);
    r->pos += 8;
    return LOOM_OK;
}

/* A gguf string: u64 length then bytes. Leaves *off at the first byte. */
static loom_status rd_str(rd *r, const char *what, const char *who, size_t *off, uint64_t *len) {
    size_t at = r->pos;
    LOOM_TRY(rd_u64(r, what, who, len));
    if (*len > left(r))
        return parse_error(r, LOOM_ERR_FORMAT, at,
                           "%s%s: string length %llu runs past end of file (%zu left)", who, what,
                           (unsigned long long)*len, left(r));
    *off = r->pos;
    r->pos += (size_t)*len;
    return LOOM_OK;
}

/* Copy a name (key or tensor name) into the arena, NUL-terminated. */
static loom_status add_name(rd *r, size_t off, uint64_t len, const char *what, size_t *out) {
    loom_gguf *g = r->g;
    if (len == 0) return parse_error(r, LOOM_ERR_FORMAT, off - 8, "empty %s", what);
    if (memchr(r->p + off, 0, (size_t)len))
        return parse_error(r, LOOM_ERR_FORMAT, off, "%s '%.*s' contains a NUL byte", what,
                           (int)(len > 64 ? 64 : len), (const char *)r->p + off);
    if (g->names_len + len + 1 > g->names_cap) {
        size_t cap = g->names_cap ? g->names_cap * 2 : 1024;
        while (cap < g->names_len + len + 1)
            cap *= 2;
        char *nn = realloc(g->names, cap);
        if (!nn) return parse_error(r, LOOM_ERR_OOM, off, "out of memory for names");
        g->names = nn;
        g->names_cap = cap;
    }
    memcpy(g->names + g->names_len, r->p + off, (size_t)len);
    g->names[g->names_len + len] = '\0';
    *out = g->names_len;
    g->names_len += (size_t)len + 1;
    return LOOM_OK;
}

/* Minimum encoded size of one element of type t (its count bound). */
static size_t min_elem_size(uint32_t t) {
    if (t == LOOM_GGUF_STRING) return 8;
    if (t == LOOM_GGUF_ARRAY) return 12;
    return loom_gguf_scalar_size(t);
}

static loom_status check_type(rd *r, size_t at, uint32_t t, const char *who) {
    if (t >= LOOM_GGUF_TYPE_COUNT)
        return parse_error(r, LOOM_ERR_FORMAT, at, "%sunknown value type %u", who, t);
    return LOOM_OK;
}

/* Skip count elements of scalar/string type t, validating bools. When offs
 * is not NULL it receives each element's offset (strings). */
static loom_status skip_elems(rd *r, uint32_t t, uint64_t count, uint64_t *offs, const char *who) {
    if (t == LOOM_GGUF_STRING) {
        for (uint64_t i = 0; i < count; i++) {
            size_t off = 0;
            uint64_t len = 0;
            if (offs) offs[i] = r->pos;
            LOOM_TRY(rd_str(r, "string element", who, &off, &len));
        }
        return LOOM_OK;
    }
    size_t es = loom_gguf_scalar_size(t);
    LOOM_TRY(need(r, count * es, "array data", who)); /* count*es cannot overflow: checked */
    if (t == LOOM_GGUF_BOOL)
        for (uint64_t i = 0; i < count; i++)
            if (r->p[r->pos + i] > 1)
                return parse_error(r, LOOM_ERR_FORMAT, r->pos + (size_t)i,
                                   "%sbool element %llu is %u, not 0 or 1", who,
                                   (unsigned long long)i, r->p[r->pos + i]);
    r->pos += (size_t)(count * es);
    return LOOM_OK;
}

/* Array header (elem type, count) with the count bounded by the remaining bytes. */
static loom_status rd_arr_head(rd *r, const char *who, uint32_t *et, uint64_t *count) {
    size_t at = r->pos;
    LOOM_TRY(rd_u32(r, "array element type", who, et));
    LOOM_TRY(check_type(r, at, *et, who));
    at = r->pos;
    LOOM_TRY(rd_u64(r, "array count", who, count));
    if (*count > left(r) / min_elem_size(*et))
        return parse_error(
            r, LOOM_ERR_FORMAT, at, "%sarray of %llu %s elements cannot fit in the %zu bytes left",
            who, (unsigned long long)*count, loom_gguf_type_name((loom_gguf_type)*et), left(r));
    return LOOM_OK;
}

static loom_status parse_value(rd *r, gguf_kv *kv, const char *who) {
    if (kv->type == LOOM_GGUF_STRING) {
        size_t off = 0;
        LOOM_TRY(rd_str(r, "value", who, &off, &kv->count));
        kv->val = off;
        return LOOM_OK;
    }
    if (kv->type != LOOM_GGUF_ARRAY) {
        kv->val = r->pos;
        kv->count = 1;
        return skip_elems(r, kv->type, 1, NULL, who);
    }
    LOOM_TRY(rd_arr_head(r, who, &kv->elem_type, &kv->count));
    kv->val = r->pos;
    if (kv->elem_type != LOOM_GGUF_STRING && kv->elem_type != LOOM_GGUF_ARRAY)
        return skip_elems(r, kv->elem_type, kv->count, NULL, who);
    /* Bounded by the check in rd_arr_head: at most file size / 8 entries. */
    kv->elems = malloc((size_t)(kv->count ? kv->count : 1) * sizeof *kv->elems);
    if (!kv->elems)
        return parse_error(r, LOOM_ERR_OOM, r->pos, "%sout of memory for %llu array elements", who,
                           (unsigned long long)kv->count);
    if (kv->elem_type == LOOM_GGUF_STRING)
        return skip_elems(r, LOOM_GGUF_STRING, kv->count, kv->elems, who);
    for (uint64_t i = 0; i < kv->count; i++) {
        uint32_t et;
        uint64_t n;
        kv->elems[i] = r->pos;
        size_t at = r->pos;
        LOOM_TRY(rd_arr_head(r, who, &et, &n));
        if (et == LOOM_GGUF_ARRAY)
            return parse_error(r, LOOM_ERR_FORMAT, at, "%sarrays nested more than one level deep",
                               who);
        LOOM_TRY(skip_elems(r, et, n, NULL, who));
    }
    return LOOM_OK;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t hash_cap_for(int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    return cap;
}

/* Find name in a table whose entries index names via name_at; returns the
 * slot (empty or matching). */
static size_t hash_slot(const int64_t *tab, size_t cap, const char *name,
                        const char *(*name_at)(const loom_gguf *, int64_t), const loom_gguf *g) {
    size_t i = (size_t)hash_str(name) & (cap - 1);
    while (tab[i] >= 0 && strcmp(name_at(g, tab[i]), name) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static const char *kv_name_at(const loom_gguf *g, int64_t i) {
    return g->kv[i].key;
}
static const char *t_name_at(const loom_gguf *g, int64_t i) {
    return g->tensors[i].name;
}

static int64_t *new_table(size_t cap) {
    int64_t *t = malloc(cap * sizeof *t);
    if (t)
        for (size_t i = 0; i < cap; i++)
            t[i] = -1;
    return t;
}

static loom_status parse_kvs(rd *r) {
    loom_gguf *g = r->g;
    char who[160];
    for (int64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        size_t off = 0;
        uint64_t len = 0;
        snprintf(who, sizeof who, "key of kv #%lld", (long long)i);
        LOOM_TRY(rd_str(r, "", who, &off, &len));
        LOOM_TRY(add_name(r, off, len, "key", &kv->key_off));
        snprintf(who, sizeof who, "kv '%.100s' ", g->names + kv->key_off);
        size_t at = r->pos;
        LOOM_TRY(rd_u32(r, "type", who, &kv->type));
        LOOM_TRY(check_type(r, at, kv->type, who));
        LOOM_TRY(parse_value(r, kv, who));
        kv->raw_off = at; /* the encoded value, for loom_gguf_writer_copy_kv */
        kv->raw_n = r->pos - at;
    }
    return LOOM_OK;
}

static loom_status parse_tensor_infos(rd *r) {
    loom_gguf *g = r->g;
    char who[160];
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        size_t off = 0;
        uint64_t len = 0;
        t->info_pos = r->pos;
        snprintf(who, sizeof who, "name of tensor #%lld", (long long)i);
        LOOM_TRY(rd_str(r, "", who, &off, &len));
        LOOM_TRY(add_name(r, off, len, "tensor name", &t->name_off));
        const char *name = g->names + t->name_off;
        snprintf(who, sizeof who, "tensor '%.100s' ", name);
        uint32_t nd;
        size_t at = r->pos;
        LOOM_TRY(rd_u32(r, "n_dims", who, &nd));
        if (nd < 1 || nd > LOOM_GGUF_MAX_DIMS)
            return parse_error(r, LOOM_ERR_FORMAT, at, "tensor '%.100s': n_dims %u outside 1..%d",
                               name, nd, LOOM_GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        uint64_t nel = 1;
        for (int d = 0; d < LOOM_GGUF_MAX_DIMS; d++) {
            uint64_t v = 1;
            at = r->pos;
            if (d < t->n_dims) LOOM_TRY(rd_u64(r, "dim", who, &v));
            if (v == 0 || v > (uint64_t)INT64_MAX)
                return parse_error(r, LOOM_ERR_FORMAT, at, "tensor '%.100s': dim %d is %llu", name,
                                   d, (unsigned long long)v);
            if (nel > (uint64_t)INT64_MAX / v)
                return parse_error(r, LOOM_ERR_FORMAT, at,
                                   "tensor '%.100s': element count overflows", name);
            nel *= v;
            t->ne[d] = (int64_t)v;
        }
        at = r->pos;
        LOOM_TRY(rd_u32(r, "type", who, &t->type));
        const loom_ggml_type_traits *tr = loom_ggml_traits(t->type);
        if (!tr)
            return parse_error(r, LOOM_ERR_UNSUPPORTED, at,
                               "tensor '%.100s': unknown ggml type id %u", name, t->type);
        if (t->ne[0] % tr->blck != 0)
            return parse_error(
                r, LOOM_ERR_FORMAT, at,
                "tensor '%.100s': ne[0] = %lld is not a multiple of %s's block size %u", name,
                (long long)t->ne[0], tr->name, tr->blck);
        uint64_t nblk = nel / tr->blck;
        if (nblk > SIZE_MAX / tr->size)
            return parse_error(r, LOOM_ERR_FORMAT, at, "tensor '%.100s': byte size overflows",
                               name);
        t->nbytes = nblk * tr->size;
        LOOM_TRY(rd_u64(r, "offset", who, &t->offset));
    }
    return LOOM_OK;
}

/* Resolve arena offsets to pointers and build the lookup tables, rejecting
 * duplicate keys and tensor names. */
static loom_status index_names(rd *r) {
    loom_gguf *g = r->g;
    for (int64_t i = 0; i < g->n_kv; i++)
        g->kv[i].key = g->names + g->kv[i].key_off;
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->tensors[i].name = g->names + g->tensors[i].name_off;
    g->kv_hash_cap = hash_cap_for(g->n_kv);
    g->t_hash_cap = hash_cap_for(g->n_tensors);
    g->kv_hash = new_table(g->kv_hash_cap);
    g->t_hash = new_table(g->t_hash_cap);
    if (!g->kv_hash || !g->t_hash)
        return parse_error(r, LOOM_ERR_OOM, 0, "out of memory for lookup tables");
    for (int64_t i = 0; i < g->n_kv; i++) {
        size_t s = hash_slot(g->kv_hash, g->kv_hash_cap, g->kv[i].key, kv_name_at, g);
        if (g->kv_hash[s] >= 0)
            return parse_error(r, LOOM_ERR_FORMAT, g->kv[i].key_off,
                               "duplicate key '%.100s' (kv #%lld and #%lld)", g->kv[i].key,
                               (long long)g->kv_hash[s], (long long)i);
        g->kv_hash[s] = i;
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        size_t s = hash_slot(g->t_hash, g->t_hash_cap, g->tensors[i].name, t_name_at, g);
        if (g->t_hash[s] >= 0)
            return parse_error(r, LOOM_ERR_FORMAT, g->tensors[i].info_pos,
                               "duplicate tensor name '%.100s' (tensors #%lld and #%lld)",
                               g->tensors[i].name, (long long)g->t_hash[s], (long long)i);
        g->t_hash[s] = i;
    }
    return LOOM_OK;
}

static loom_status read_alignment(rd *r) {
    loom_gguf *g = r->g;
    g->alignment = LOOM_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = loom_gguf_find_kv(g, "general.alignment");
    if (i < 0) return LOOM_OK;
    const gguf_kv *kv = &g->kv[i];
    if (kv->type != LOOM_GGUF_U32)
        return parse_error(r, LOOM_ERR_FORMAT, kv->val,
                           "kv 'general.alignment' has type %s, expected u32",
                           loom_gguf_type_name((loom_gguf_type)kv->type));
    uint32_t a = le32(r->p + kv->val);
    if (a == 0 || (a & (a - 1)) != 0 || a > LOOM_GGUF_MAX_ALIGNMENT)
        return parse_error(r, LOOM_ERR_FORMAT, kv->val,
                           "general.alignment %u is not a power of two up to %u", a,
                           LOOM_GGUF_MAX_ALIGNMENT);
    g->alignment = a;
    return LOOM_OK;
}

static loom_status check_tensor_data(rd *r) {
    loom_gguf *g = r->g;
    size_t a = g->alignment;
    size_t pad = (a - r->pos % a) % a;
    g->data_off = r->pos + pad;
    if (g->n_tensors == 0) return LOOM_OK; /* the data section may be absent */
    if (pad > left(r))
        return parse_error(r, LOOM_ERR_FORMAT, r->pos,
                           "truncated: data section would start at %zu, file has %zu bytes",
                           g->data_off, r->n);
    size_t avail = r->n - g->data_off;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (t->offset % a != 0)
            return parse_error(
                r, LOOM_ERR_FORMAT, t->info_pos,
                "tensor '%.100s': offset %llu is not a multiple of the alignment %zu", t->name,
                (unsigned long long)t->offset, a);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return parse_error(
                r, LOOM_ERR_FORMAT, t->info_pos,
                "tensor '%.100s': data [%llu, +%llu) runs past the end of the data section "
                "(%zu bytes)",
                t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes, avail);
    }
    return LOOM_OK;
}

static loom_status parse(rd *r) {
    loom_gguf *g = r->g;
    LOOM_TRY(need(r, 4, "magic", ""));
    if (memcmp(r->p, LOOM_GGUF_MAGIC, 4) != 0)
        return parse_error(r, LOOM_ERR_FORMAT, 0,
                           "bad magic %02x %02x %02x %02x (expected \"GGUF\")", r->p[0], r->p[1],
                           r->p[2], r->p[3]);
    r->pos = 4;
    LOOM_TRY(rd_u32(r, "version", "", &g->version));
    uint32_t v = g->version;
    if (v == 0x02000000u || v == 0x03000000u)
        return parse_error(r, LOOM_ERR_UNSUPPORTED, 4, "big-endian GGUF files are not supported");
    if (v == 0) return parse_error(r, LOOM_ERR_FORMAT, 4, "version 0 is invalid");
    if (v != 2 && v != 3)
        return parse_error(r, LOOM_ERR_UNSUPPORTED, 4,
                           "GGUF version %u is not supported (only 2 and 3)", v);
    uint64_t nt, nkv;
    LOOM_TRY(rd_u64(r, "tensor_count", "", &nt));
    LOOM_TRY(rd_u64(r, "kv_count", "", &nkv));
    /* Each KV takes at least 13 bytes (key length, type, 1 value byte) and each
     * tensor info at least 32, so larger counts cannot be honest. */
    if (nkv > left(r) / 13 || nt > left(r) / 32 || nkv * 13 + nt * 32 > left(r))
        return parse_error(r, LOOM_ERR_FORMAT, 8,
                           "tensor_count %llu and kv_count %llu cannot fit in %zu bytes",
                           (unsigned long long)nt, (unsigned long long)nkv, r->n);
    g->n_tensors = (int64_t)nt;
    g->n_kv = (int64_t)nkv;
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return parse_error(r, LOOM_ERR_OOM, 8, "out of memory");
    LOOM_TRY(parse_kvs(r));
    LOOM_TRY(parse_tensor_infos(r));
    LOOM_TRY(index_names(r));
    LOOM_TRY(read_alignment(r));
    return check_tensor_data(r);
}

static loom_status open_common(const uint8_t *buf, size_t n, bool mapped, const char *src,
                               loom_gguf **out, char *err, size_t err_n) {
    loom_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        if (mapped) munmap((void *)buf, n);
        if (err && err_n) snprintf(err, err_n, "gguf %s: out of memory", src);
        return LOOM_ERR_OOM;
    }
    g->base = buf;
    g->size = n;
    g->mapped = mapped;
    rd r = {g, buf, n, 0, src, err, err_n};
    loom_status s = parse(&r);
    if (s != LOOM_OK) {
        loom_gguf_close(g);
        return s;
    }
    if (err && err_n) err[0] = '\0';
    *out = g;
    return LOOM_OK;
}

loom_status loom_gguf_open_memory(const void *buf, size_t n, loom_gguf **out, char *err,
                                  size_t err_n) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    if (!buf && n) return LOOM_ERR_INVALID_ARG;
    return open_common(buf ? buf : "", n, false, "<memory>", out, err, err_n);
}

loom_status loom_gguf_open(const char *path, loom_gguf **out, char *err, size_t err_n) {
    if (!out || !path) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && err_n) snprintf(err, err_n, "gguf %s: cannot open: %s", path, strerror(errno));
        return LOOM_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (err && err_n) snprintf(err, err_n, "gguf %s: not a regular file", path);
        close(fd);
        return LOOM_ERR_IO;
    }
    size_t n = (size_t)st.st_size;
    if (n == 0) {
        close(fd);
        return open_common((const uint8_t *)"", 0, false, path, out, err, err_n);
    }
    void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (m == MAP_FAILED) {
        if (err && err_n)
            snprintf(err, err_n, "gguf %s: mmap of %zu bytes failed: %s", path, n,
                     strerror(map_errno));
        return LOOM_ERR_IO;
    }
    return open_common(m, n, true, path, out, err, err_n);
}

void loom_gguf_close(loom_gguf *g) {
    if (!g) return;
    if (g->mapped) munmap((void *)g->base, g->size);
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].elems);
    free(g->kv);
    free(g->tensors);
    free(g->names);
    free(g->kv_hash);
    free(g->t_hash);
    free(g);
}

/* ------------------------------------------------------------- lookup */

int64_t loom_gguf_find_kv(const loom_gguf *g, const char *key) {
    if (!g || !key || !g->kv_hash) return -1;
    return g->kv_hash[hash_slot(g->kv_hash, g->kv_hash_cap, key, kv_name_at, g)];
}

int64_t loom_gguf_find_tensor(const loom_gguf *g, const char *name) {
    if (!g || !name || !g->t_hash) return -1;
    return g->t_hash[hash_slot(g->t_hash, g->t_hash_cap, name, t_name_at, g)];
}

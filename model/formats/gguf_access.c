/* model/formats/gguf_access.c - typed getters over a validated GGUF context. Every
 * offset they follow was bounds-checked by the parser in model/gguf.c. */
#include <stdio.h>
#include <string.h>

#include "loom/gguf.h"
#include "model/formats/gguf_internal.h"

/* ------------------------------------------------------------- accessors */

const char *loom_gguf_error(const loom_gguf *g) {
    return g ? g->err : "";
}
uint32_t loom_gguf_version(const loom_gguf *g) {
    return g->version;
}
size_t loom_gguf_alignment(const loom_gguf *g) {
    return g->alignment;
}
size_t loom_gguf_data_offset(const loom_gguf *g) {
    return g->data_off;
}
size_t loom_gguf_file_size(const loom_gguf *g) {
    return g->size;
}
int64_t loom_gguf_n_kv(const loom_gguf *g) {
    return g->n_kv;
}
int64_t loom_gguf_n_tensors(const loom_gguf *g) {
    return g->n_tensors;
}

const char *loom_gguf_kv_key(const loom_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].key : NULL;
}

loom_gguf_type loom_gguf_kv_type(const loom_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? (loom_gguf_type)g->kv[i].type : LOOM_GGUF_TYPE_COUNT;
}

/* The KV for key if it has type want (want == TYPE_COUNT: any); else NULL
 * with the reason recorded. */
static const gguf_kv *lookup(loom_gguf *g, const char *key, uint32_t want, loom_status *s) {
    int64_t i = loom_gguf_find_kv(g, key);
    if (i < 0) {
        *s = loom_gguf_set_err(g, LOOM_ERR_INVALID_ARG, "gguf: key '%s' not found",
                               key ? key : "(null)");
        return NULL;
    }
    const gguf_kv *kv = &g->kv[i];
    if (want != LOOM_GGUF_TYPE_COUNT && kv->type != want) {
        *s = loom_gguf_set_err(g, LOOM_ERR_FORMAT, "gguf: key '%s' has type %s, not %s", key,
                               loom_gguf_type_name((loom_gguf_type)kv->type),
                               loom_gguf_type_name((loom_gguf_type)want));
        return NULL;
    }
    *s = LOOM_OK;
    return kv;
}

#define LOOM_GGUF_GETTER(fn, ctype, tid)                                                           \
    loom_status fn(loom_gguf *g, const char *key, ctype *out) {                                    \
        loom_status s;                                                                             \
        const gguf_kv *kv = lookup(g, key, tid, &s);                                               \
        if (!kv) return s;                                                                         \
        memcpy(out, g->base + kv->val, sizeof *out); /* LE host */                                 \
        return LOOM_OK;                                                                            \
    }
LOOM_GGUF_GETTER(loom_gguf_get_u8, uint8_t, LOOM_GGUF_U8)
LOOM_GGUF_GETTER(loom_gguf_get_i8, int8_t, LOOM_GGUF_I8)
LOOM_GGUF_GETTER(loom_gguf_get_u16, uint16_t, LOOM_GGUF_U16)
LOOM_GGUF_GETTER(loom_gguf_get_i16, int16_t, LOOM_GGUF_I16)
LOOM_GGUF_GETTER(loom_gguf_get_u32, uint32_t, LOOM_GGUF_U32)
LOOM_GGUF_GETTER(loom_gguf_get_i32, int32_t, LOOM_GGUF_I32)
LOOM_GGUF_GETTER(loom_gguf_get_u64, uint64_t, LOOM_GGUF_U64)
LOOM_GGUF_GETTER(loom_gguf_get_i64, int64_t, LOOM_GGUF_I64)
LOOM_GGUF_GETTER(loom_gguf_get_f32, float, LOOM_GGUF_F32)
LOOM_GGUF_GETTER(loom_gguf_get_f64, double, LOOM_GGUF_F64)
#undef LOOM_GGUF_GETTER

loom_status loom_gguf_get_bool(loom_gguf *g, const char *key, bool *out) {
    loom_status s;
    const gguf_kv *kv = lookup(g, key, LOOM_GGUF_BOOL, &s);
    if (!kv) return s;
    *out = g->base[kv->val] != 0;
    return LOOM_OK;
}

/* Integer element of type t at p, widened; false for non-integer types. */
static bool read_int(uint32_t t, const uint8_t *p, int64_t *out) {
    switch (t) {
    case LOOM_GGUF_U8:
        *out = p[0];
        return true;
    case LOOM_GGUF_I8:
        *out = (int8_t)p[0];
        return true;
    case LOOM_GGUF_U16:
        *out = (uint16_t)(p[0] | p[1] << 8);
        return true;
    case LOOM_GGUF_I16:
        *out = (int16_t)(uint16_t)(p[0] | p[1] << 8);
        return true;
    case LOOM_GGUF_U32:
        *out = le32(p);
        return true;
    case LOOM_GGUF_I32:
        *out = (int32_t)le32(p);
        return true;
    case LOOM_GGUF_I64:
        *out = (int64_t)le64(p);
        return true;
    case LOOM_GGUF_U64:
        if (le64(p) > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)le64(p);
        return true;
    default:
        return false;
    }
}

loom_status loom_gguf_get_int(loom_gguf *g, const char *key, int64_t *out) {
    loom_status s;
    const gguf_kv *kv = lookup(g, key, LOOM_GGUF_TYPE_COUNT, &s);
    if (!kv) return s;
    if (kv->type == LOOM_GGUF_STRING || kv->type == LOOM_GGUF_ARRAY ||
        !read_int(kv->type, g->base + kv->val, out))
        return loom_gguf_set_err(
            g, LOOM_ERR_FORMAT,
            "gguf: key '%s' has type %s, not an integer (or out of int64 range)", key,
            loom_gguf_type_name((loom_gguf_type)kv->type));
    return LOOM_OK;
}

loom_status loom_gguf_get_str(loom_gguf *g, const char *key, const char **str, uint64_t *len) {
    loom_status s;
    const gguf_kv *kv = lookup(g, key, LOOM_GGUF_STRING, &s);
    if (!kv) return s;
    *str = (const char *)g->base + kv->val;
    *len = kv->count;
    return LOOM_OK;
}

loom_status loom_gguf_get_arr_info(loom_gguf *g, const char *key, loom_gguf_type *elem_type,
                                   uint64_t *count) {
    loom_status s;
    const gguf_kv *kv = lookup(g, key, LOOM_GGUF_ARRAY, &s);
    if (!kv) return s;
    *elem_type = (loom_gguf_type)kv->elem_type;
    *count = kv->count;
    return LOOM_OK;
}

/* The array at key with element index i in range (and elem type want unless TYPE_COUNT). */
static const gguf_kv *arr_elem(loom_gguf *g, const char *key, uint32_t want, uint64_t i,
                               loom_status *s) {
    const gguf_kv *kv = lookup(g, key, LOOM_GGUF_ARRAY, s);
    if (!kv) return NULL;
    if (want != LOOM_GGUF_TYPE_COUNT && kv->elem_type != want) {
        *s = loom_gguf_set_err(g, LOOM_ERR_FORMAT, "gguf: key '%s' is an array of %s, not of %s",
                               key, loom_gguf_type_name((loom_gguf_type)kv->elem_type),
                               loom_gguf_type_name((loom_gguf_type)want));
        return NULL;
    }
    if (i >= kv->count) {
        *s = loom_gguf_set_err(g, LOOM_ERR_INVALID_ARG,
                               "gguf: index %llu out of range for array '%s' of %llu elements",
                               (unsigned long long)i, key, (unsigned long long)kv->count);
        return NULL;
    }
    return kv;
}

loom_status loom_gguf_get_arr_data(loom_gguf *g, const char *key, loom_gguf_type elem_type,
                                   const void **data, uint64_t *count) {
    loom_status s;
    const gguf_kv *kv = lookup(g, key, LOOM_GGUF_ARRAY, &s);
    if (!kv) return s;
    if (kv->elem_type != (uint32_t)elem_type || loom_gguf_scalar_size(elem_type) == 0)
        return loom_gguf_set_err(g, LOOM_ERR_FORMAT, "gguf: key '%s' is an array of %s, not of %s",
                                 key, loom_gguf_type_name((loom_gguf_type)kv->elem_type),
                                 loom_gguf_type_name(elem_type));
    *data = g->base + kv->val;
    *count = kv->count;
    return LOOM_OK;
}

loom_status loom_gguf_get_arr_str(loom_gguf *g, const char *key, uint64_t i, const char **str,
                                  uint64_t *len) {
    loom_status s;
    const gguf_kv *kv = arr_elem(g, key, LOOM_GGUF_STRING, i, &s);
    if (!kv) return s;
    const uint8_t *p = g->base + kv->elems[i];
    *len = le64(p);
    *str = (const char *)p + 8;
    return LOOM_OK;
}

loom_status loom_gguf_get_arr_int(loom_gguf *g, const char *key, uint64_t i, int64_t *out) {
    loom_status s;
    const gguf_kv *kv = arr_elem(g, key, LOOM_GGUF_TYPE_COUNT, i, &s);
    if (!kv) return s;
    size_t es = loom_gguf_scalar_size(kv->elem_type);
    if (kv->elem_type == LOOM_GGUF_BOOL || kv->elem_type == LOOM_GGUF_F32 ||
        kv->elem_type == LOOM_GGUF_F64 || es == 0 ||
        !read_int(kv->elem_type, g->base + kv->val + i * es, out))
        return loom_gguf_set_err(
            g, LOOM_ERR_FORMAT, "gguf: element %llu of array '%s' (%s) is not an int64 integer",
            (unsigned long long)i, key, loom_gguf_type_name((loom_gguf_type)kv->elem_type));
    return LOOM_OK;
}

loom_status loom_gguf_get_arr_f64(loom_gguf *g, const char *key, uint64_t i, double *out) {
    loom_status s;
    const gguf_kv *kv = arr_elem(g, key, LOOM_GGUF_TYPE_COUNT, i, &s);
    if (!kv) return s;
    if (kv->elem_type == LOOM_GGUF_F32) {
        float f;
        memcpy(&f, g->base + kv->val + i * 4, 4);
        *out = f;
    } else if (kv->elem_type == LOOM_GGUF_F64) {
        memcpy(out, g->base + kv->val + i * 8, 8);
    } else {
        return loom_gguf_set_err(g, LOOM_ERR_FORMAT, "gguf: array '%s' holds %s, not f32/f64", key,
                                 loom_gguf_type_name((loom_gguf_type)kv->elem_type));
    }
    return LOOM_OK;
}

loom_status loom_gguf_get_arr_sub(loom_gguf *g, const char *key, uint64_t i,
                                  loom_gguf_type *elem_type, const void **data, uint64_t *count) {
    loom_status s;
    const gguf_kv *kv = arr_elem(g, key, LOOM_GGUF_ARRAY, i, &s);
    if (!kv) return s;
    const uint8_t *p = g->base + kv->elems[i];
    *elem_type = (loom_gguf_type)le32(p);
    *count = le64(p + 4);
    *data = p + 12;
    return LOOM_OK;
}

loom_status loom_gguf_tensor(loom_gguf *g, int64_t i, loom_gguf_tensor_info *out) {
    if (!g || i < 0 || i >= g->n_tensors)
        return g ? loom_gguf_set_err(g, LOOM_ERR_INVALID_ARG,
                                     "gguf: tensor index %lld out of range", (long long)i)
                 : LOOM_ERR_INVALID_ARG;
    const gguf_tensor *t = &g->tensors[i];
    out->name = t->name;
    out->ggml_type = t->type;
    out->type_name = loom_ggml_type_name(t->type);
    out->n_dims = t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->offset = t->offset;
    out->nbytes = (size_t)t->nbytes;
    out->data = g->base + g->data_off + t->offset;
    return LOOM_OK;
}

_Static_assert(LOOM_Q6_K - LOOM_Q2_K == LOOM_GGML_TYPE_Q6_K - LOOM_GGML_TYPE_Q2_K,
               "k-quant dtypes and ggml ids run in the same order");

loom_status loom_gguf_tensor_dtype(loom_gguf *g, int64_t i, loom_dtype *out) {
    if (!g || i < 0 || i >= g->n_tensors)
        return g ? loom_gguf_set_err(g, LOOM_ERR_INVALID_ARG,
                                     "gguf: tensor index %lld out of range", (long long)i)
                 : LOOM_ERR_INVALID_ARG;
    const gguf_tensor *t = &g->tensors[i];
    switch (t->type) {
    case LOOM_GGML_TYPE_F32:
        *out = LOOM_F32;
        return LOOM_OK;
    case LOOM_GGML_TYPE_F16:
        *out = LOOM_F16;
        return LOOM_OK;
    case LOOM_GGML_TYPE_BF16:
        *out = LOOM_BF16;
        return LOOM_OK;
    case LOOM_GGML_TYPE_I32:
        *out = LOOM_I32;
        return LOOM_OK;
    case LOOM_GGML_TYPE_Q8_0:
        *out = LOOM_Q8_0;
        return LOOM_OK;
    case LOOM_GGML_TYPE_Q4_0:
        *out = LOOM_Q4_0;
        return LOOM_OK;
    case LOOM_GGML_TYPE_Q4_1:
        *out = LOOM_Q4_1;
        return LOOM_OK;
    case LOOM_GGML_TYPE_Q5_0:
        *out = LOOM_Q5_0;
        return LOOM_OK;
    case LOOM_GGML_TYPE_Q5_1:
        *out = LOOM_Q5_1;
        return LOOM_OK;
    case LOOM_GGML_TYPE_Q2_K:
    case LOOM_GGML_TYPE_Q2_K + 1:
    case LOOM_GGML_TYPE_Q2_K + 2:
    case LOOM_GGML_TYPE_Q2_K + 3:
    case LOOM_GGML_TYPE_Q6_K: /* k-quants, ADR 0024 */
        *out = (loom_dtype)(LOOM_Q2_K + (int)(t->type - LOOM_GGML_TYPE_Q2_K));
        return LOOM_OK;
    default:
        return loom_gguf_set_err(
            g, LOOM_ERR_UNSUPPORTED,
            "gguf: tensor '%s' has type %s (ggml type %u), which loom does not support "
            "(supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K..q6_K, i32)",
            t->name, loom_ggml_type_name(t->type), t->type);
    }
}

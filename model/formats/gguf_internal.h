/* model/formats/gguf_internal.h - tables shared by the GGUF reader and writer. */
#ifndef LOOM_MODEL_GGUF_INTERNAL_H
#define LOOM_MODEL_GGUF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/gguf.h"

#define LOOM_GGUF_MAGIC   "GGUF"
#define LOOM_GGUF_VERSION 3

/* Block geometry of a ggml tensor type: blck values stored in size bytes. */
typedef struct loom_ggml_type_traits {
    const char *name;
    uint32_t blck;
    uint32_t size;
} loom_ggml_type_traits;

/* NULL for ids with no known layout (removed or future types). */
const loom_ggml_type_traits *loom_ggml_traits(uint32_t ggml_type);

/* Bytes of one metadata scalar of type t (0 for string/array/invalid). */
size_t loom_gguf_scalar_size(uint32_t t);

/* Little-endian decoding, independent of the host's byte order. */
static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const uint8_t *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Parsed context (model/formats/gguf.c builds it, model/formats/gguf_access.c reads it). */
typedef struct gguf_kv {
    size_t key_off; /* into the names arena until parsing ends */
    const char *key;
    uint32_t type;
    uint32_t elem_type; /* arrays */
    size_t val;         /* file offset: scalar bytes, string chars, first array element */
    uint64_t count;     /* string length or array element count */
    uint64_t *elems;    /* string arrays, arrays of arrays: file offset of each element */
    size_t raw_off;     /* file offset of the value's type field */
    size_t raw_n;       /* bytes from raw_off to the end of the value (type + value) */
} gguf_kv;

typedef struct gguf_tensor {
    size_t name_off;
    const char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[LOOM_GGUF_MAX_DIMS];
    uint64_t offset;
    uint64_t nbytes;
    size_t info_pos; /* where its info starts, for messages */
} gguf_tensor;

struct loom_gguf {
    const uint8_t *base;
    size_t size;
    bool mapped;
    uint32_t version;
    size_t alignment;
    size_t data_off;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    char *names;
    size_t names_len, names_cap;
    int64_t *kv_hash, *t_hash; /* open addressing, -1 = empty */
    size_t kv_hash_cap, t_hash_cap;
    char err[512];
};

/* Record the message of a failed getter in g->err; returns s. */
loom_status loom_gguf_set_err(loom_gguf *g, loom_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif

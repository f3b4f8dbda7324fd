/* loom/gguf.h - GGUF (v2/v3) reader and v3 writer.
 *
 * Reader: loom_gguf_open mmaps the file read-only and validates the whole
 * header (key/value pairs, tensor infos, alignment, every offset and size
 * against the file) before returning, so later accessors never touch memory
 * outside the mapping. Tensor data is not copied: loom_gguf_tensor() hands
 * out pointers into the mapping, valid until loom_gguf_close.
 *
 * Byte order: GGUF is little-endian; header fields are decoded byte by byte,
 * tensor data is returned as stored (loom only runs on little-endian hosts).
 *
 * Shapes: ne[0] is the innermost dimension, exactly the GGUF dims order (and
 * loom's IR order), so ne[i] == dims[i] as stored in the file.
 *
 * Errors: open functions write a message into the caller's err buffer
 * (naming the source, the byte offset and the key/tensor involved). Getters
 * keep the message of their last failure in the context (loom_gguf_error),
 * so a context is not safe to query from several threads at once.
 */
#ifndef LOOM_GGUF_H
#define LOOM_GGUF_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/dtype.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_GGUF_DEFAULT_ALIGNMENT 32
/* Largest general.alignment accepted (reader and writer). GGUF only asks for a
 * power of two; anything above this only pads files with zeros (a fuzzer
 * found 2^30 making the writer emit a gigabyte of padding). */
#define LOOM_GGUF_MAX_ALIGNMENT (1u << 20)
#define LOOM_GGUF_MAX_DIMS      4

/* GGUF metadata value types (the on-disk ids). */
typedef enum loom_gguf_type {
    LOOM_GGUF_U8 = 0,
    LOOM_GGUF_I8 = 1,
    LOOM_GGUF_U16 = 2,
    LOOM_GGUF_I16 = 3,
    LOOM_GGUF_U32 = 4,
    LOOM_GGUF_I32 = 5,
    LOOM_GGUF_F32 = 6,
    LOOM_GGUF_BOOL = 7,
    LOOM_GGUF_STRING = 8,
    LOOM_GGUF_ARRAY = 9,
    LOOM_GGUF_U64 = 10,
    LOOM_GGUF_I64 = 11,
    LOOM_GGUF_F64 = 12,
    LOOM_GGUF_TYPE_COUNT
} loom_gguf_type;

/* Static name ("u32", "string", ...); "?" when out of range. */
LOOM_API const char *loom_gguf_type_name(loom_gguf_type t);

/* ggml tensor type ids that loom maps to its own dtypes. */
#define LOOM_GGML_TYPE_F32  0
#define LOOM_GGML_TYPE_F16  1
#define LOOM_GGML_TYPE_Q4_0 2
#define LOOM_GGML_TYPE_Q4_1 3
#define LOOM_GGML_TYPE_Q5_0 6
#define LOOM_GGML_TYPE_Q5_1 7
#define LOOM_GGML_TYPE_Q8_0 8
#define LOOM_GGML_TYPE_Q2_K 10 /* q2_K..q6_K: ids 10..14, in loom_dtype's order */
#define LOOM_GGML_TYPE_Q6_K 14
#define LOOM_GGML_TYPE_I32  26
#define LOOM_GGML_TYPE_BF16 30

/* Static ggml name of a tensor type id ("f32", "q4_K", "iq2_xxs", ...);
 * NULL for an id this build does not know. */
LOOM_API const char *loom_ggml_type_name(uint32_t ggml_type);
/* ggml type id of a loom dtype; LOOM_ERR_UNSUPPORTED for nf4/nf4_dq. */
LOOM_API loom_status loom_ggml_type_from_dtype(loom_dtype t, uint32_t *out);

/* ---------------------------------------------------------------- reader */

typedef struct loom_gguf loom_gguf; /* opaque; freed with loom_gguf_close */

/* Open and validate path. On success *out is owned by the caller. On failure
 * *out is NULL, the status is LOOM_ERR_IO (cannot open/map), LOOM_ERR_FORMAT
 * (malformed or truncated), LOOM_ERR_UNSUPPORTED (valid but unknown version or
 * unknown tensor type id) or LOOM_ERR_OOM, and err (if not NULL) receives a
 * NUL-terminated message of at most err_n bytes. */
LOOM_API loom_status loom_gguf_open(const char *path, loom_gguf **out, char *err, size_t err_n);
/* Same, over caller memory: buf is borrowed (not copied) and must outlive the
 * context. Used by the fuzzer and by in-memory tests. */
LOOM_API loom_status loom_gguf_open_memory(const void *buf, size_t n, loom_gguf **out, char *err,
                                           size_t err_n);
LOOM_API void loom_gguf_close(loom_gguf *g); /* unmaps and frees; NULL is fine */

/* Message of the last failed getter ("" if none); owned by g. */
LOOM_API const char *loom_gguf_error(const loom_gguf *g);
LOOM_API uint32_t loom_gguf_version(const loom_gguf *g);
LOOM_API size_t loom_gguf_alignment(const loom_gguf *g);   /* general.alignment or 32 */
LOOM_API size_t loom_gguf_data_offset(const loom_gguf *g); /* file offset of the data section */
LOOM_API size_t loom_gguf_file_size(const loom_gguf *g);

/* ---- key/value pairs, in file order ---- */
LOOM_API int64_t loom_gguf_n_kv(const loom_gguf *g);
/* -1 when absent. Keys are unique (duplicates are rejected at open). */
LOOM_API int64_t loom_gguf_find_kv(const loom_gguf *g, const char *key);
/* NUL-terminated, owned by g */
LOOM_API const char *loom_gguf_kv_key(const loom_gguf *g, int64_t i);
/* TYPE_COUNT if i is bad */
LOOM_API loom_gguf_type loom_gguf_kv_type(const loom_gguf *g, int64_t i);

/* Typed getters by key. Each fails with LOOM_ERR_INVALID_ARG when the key is
 * absent and with LOOM_ERR_FORMAT when it holds another type (message names
 * the key, the stored and the requested type); *out is untouched then. */
LOOM_API loom_status loom_gguf_get_u8(loom_gguf *g, const char *key, uint8_t *out);
LOOM_API loom_status loom_gguf_get_i8(loom_gguf *g, const char *key, int8_t *out);
LOOM_API loom_status loom_gguf_get_u16(loom_gguf *g, const char *key, uint16_t *out);
LOOM_API loom_status loom_gguf_get_i16(loom_gguf *g, const char *key, int16_t *out);
LOOM_API loom_status loom_gguf_get_u32(loom_gguf *g, const char *key, uint32_t *out);
LOOM_API loom_status loom_gguf_get_i32(loom_gguf *g, const char *key, int32_t *out);
LOOM_API loom_status loom_gguf_get_u64(loom_gguf *g, const char *key, uint64_t *out);
LOOM_API loom_status loom_gguf_get_i64(loom_gguf *g, const char *key, int64_t *out);
LOOM_API loom_status loom_gguf_get_f32(loom_gguf *g, const char *key, float *out);
LOOM_API loom_status loom_gguf_get_f64(loom_gguf *g, const char *key, double *out);
LOOM_API loom_status loom_gguf_get_bool(loom_gguf *g, const char *key, bool *out);
/* Any integer type (u64 above INT64_MAX fails), for config fields that
 * different writers store with different widths. */
LOOM_API loom_status loom_gguf_get_int(loom_gguf *g, const char *key, int64_t *out);
/* String value: *s points into the file (NOT NUL-terminated, may contain NUL
 * bytes), *len is its length; valid until loom_gguf_close. */
LOOM_API loom_status loom_gguf_get_str(loom_gguf *g, const char *key, const char **s,
                                       uint64_t *len);

/* Arrays. Element type and count: */
LOOM_API loom_status loom_gguf_get_arr_info(loom_gguf *g, const char *key,
                                            loom_gguf_type *elem_type, uint64_t *count);
/* Raw little-endian elements of a numeric/bool array whose element type is
 * elem_type: count * size bytes at *data, inside the file and possibly
 * unaligned (read with memcpy). Fails for string arrays and arrays of arrays. */
LOOM_API loom_status loom_gguf_get_arr_data(loom_gguf *g, const char *key, loom_gguf_type elem_type,
                                            const void **data, uint64_t *count);
/* Element i of a string array (same pointer rules as loom_gguf_get_str). */
LOOM_API loom_status loom_gguf_get_arr_str(loom_gguf *g, const char *key, uint64_t i,
                                           const char **s, uint64_t *len);
/* Element i of an integer (any width) or float (f32/f64) array, converted. */
LOOM_API loom_status loom_gguf_get_arr_int(loom_gguf *g, const char *key, uint64_t i, int64_t *out);
LOOM_API loom_status loom_gguf_get_arr_f64(loom_gguf *g, const char *key, uint64_t i, double *out);
/* Element i of an array of arrays (one nesting level is allowed): its element
 * type, count and raw data. For numeric inner arrays *data is count * size
 * bytes; for string inner arrays it is the serialized form (u64 length +
 * bytes, repeated), already bounds-checked. */
LOOM_API loom_status loom_gguf_get_arr_sub(loom_gguf *g, const char *key, uint64_t i,
                                           loom_gguf_type *elem_type, const void **data,
                                           uint64_t *count);

/* ---- tensors, in file order ---- */
typedef struct loom_gguf_tensor_info {
    const char *name;               /* NUL-terminated, owned by the context */
    uint32_t ggml_type;             /* as stored */
    const char *type_name;          /* ggml name, e.g. "q4_K" (static) */
    int n_dims;                     /* 1..4 as stored */
    int64_t ne[LOOM_GGUF_MAX_DIMS]; /* dims as stored, unused ones 1 */
    uint64_t offset;                /* relative to the data section, aligned */
    size_t nbytes;                  /* data size in bytes */
    const void *data;               /* into the mapping; valid until loom_gguf_close */
} loom_gguf_tensor_info;

LOOM_API int64_t loom_gguf_n_tensors(const loom_gguf *g);
LOOM_API int64_t loom_gguf_find_tensor(const loom_gguf *g, const char *name); /* -1 when absent */
/* Info of tensor i (any ggml type). LOOM_ERR_INVALID_ARG when i is out of range. */
LOOM_API loom_status loom_gguf_tensor(loom_gguf *g, int64_t i, loom_gguf_tensor_info *out);
/* loom dtype of tensor i: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 and i32 map; any other
 * type gives LOOM_ERR_UNSUPPORTED with a message naming the tensor and its
 * ggml type (read it with loom_gguf_error). */
LOOM_API loom_status loom_gguf_tensor_dtype(loom_gguf *g, int64_t i, loom_dtype *out);

/* ---------------------------------------------------------------- writer */

/* Builds a GGUF v3 file in memory order: KVs in the order set, tensors in the
 * order added, each tensor's data aligned to general.alignment (32 unless the
 * caller sets the key, which must then be a power-of-two u32). */
typedef struct loom_gguf_writer loom_gguf_writer;

/* *out is owned by the caller; free it with loom_gguf_writer_free. */
LOOM_API loom_status loom_gguf_writer_new(loom_gguf_writer **out);
LOOM_API void loom_gguf_writer_free(loom_gguf_writer *w); /* NULL is fine */
LOOM_API const char *
loom_gguf_writer_error(const loom_gguf_writer *w); /* last failure, owned by w */

/* Setters copy the key and the value. Setting a key twice is an error
 * (LOOM_ERR_INVALID_ARG), as GGUF forbids duplicates. */
LOOM_API loom_status loom_gguf_writer_set_u8(loom_gguf_writer *w, const char *key, uint8_t v);
LOOM_API loom_status loom_gguf_writer_set_i8(loom_gguf_writer *w, const char *key, int8_t v);
LOOM_API loom_status loom_gguf_writer_set_u16(loom_gguf_writer *w, const char *key, uint16_t v);
LOOM_API loom_status loom_gguf_writer_set_i16(loom_gguf_writer *w, const char *key, int16_t v);
LOOM_API loom_status loom_gguf_writer_set_u32(loom_gguf_writer *w, const char *key, uint32_t v);
LOOM_API loom_status loom_gguf_writer_set_i32(loom_gguf_writer *w, const char *key, int32_t v);
LOOM_API loom_status loom_gguf_writer_set_u64(loom_gguf_writer *w, const char *key, uint64_t v);
LOOM_API loom_status loom_gguf_writer_set_i64(loom_gguf_writer *w, const char *key, int64_t v);
LOOM_API loom_status loom_gguf_writer_set_f32(loom_gguf_writer *w, const char *key, float v);
LOOM_API loom_status loom_gguf_writer_set_f64(loom_gguf_writer *w, const char *key, double v);
LOOM_API loom_status loom_gguf_writer_set_bool(loom_gguf_writer *w, const char *key, bool v);
LOOM_API loom_status loom_gguf_writer_set_str(loom_gguf_writer *w, const char *key, const char *s);
LOOM_API loom_status loom_gguf_writer_set_strn(loom_gguf_writer *w, const char *key, const char *s,
                                               size_t len);
/* Numeric/bool array: n elements of elem_type in host (little-endian) layout,
 * e.g. int32_t[] for LOOM_GGUF_I32, uint8_t 0/1 for LOOM_GGUF_BOOL. Copied. */
LOOM_API loom_status loom_gguf_writer_set_arr(loom_gguf_writer *w, const char *key,
                                              loom_gguf_type elem_type, const void *data,
                                              uint64_t n);
/* String array of n NUL-terminated strings. Copied. */
LOOM_API loom_status loom_gguf_writer_set_arr_str(loom_gguf_writer *w, const char *key,
                                                  const char *const *strs, uint64_t n);

/* Copy key/value pair i of an open reader g (any type, arrays of strings and
 * nested arrays included) byte for byte: used to carry a model's metadata
 * (tokenizer.ggml.*, llama.*) into a re-typed file. The same duplicate and
 * general.alignment rules as the setters apply; LOOM_ERR_INVALID_ARG when i
 * is out of range. */
LOOM_API loom_status loom_gguf_writer_copy_kv(loom_gguf_writer *w, const loom_gguf *g, int64_t i);

/* Add a tensor of n_dims (1..4) extents ne (ne[0] innermost). data holds
 * loom_dtype_nbytes(t, prod(ne)) bytes and is REFERENCED, not copied: it must
 * stay valid until loom_gguf_writer_write* returns. nf4 types are rejected
 * (GGUF has no such type); ne[0] must be a multiple of the block size. */
LOOM_API loom_status loom_gguf_writer_add_tensor(loom_gguf_writer *w, const char *name,
                                                 loom_dtype t, int n_dims, const int64_t *ne,
                                                 const void *data);
/* Same with a raw ggml type id (any type loom_ggml_type_name knows), for
 * passing through tensors loom cannot compute with. */
LOOM_API loom_status loom_gguf_writer_add_tensor_ggml(loom_gguf_writer *w, const char *name,
                                                      uint32_t ggml_type, int n_dims,
                                                      const int64_t *ne, const void *data);

/* Write the file atomically: into a new "path.tmp.XXXXXX" in the same
 * directory, fsync'ed, renamed onto path, then the directory fsync'ed. Readers
 * and crashes see the old file or the complete new one, never a prefix; on
 * failure the temporary file is removed and an existing path is unchanged
 * (LOOM_ERR_IO, with the reason). An existing path's permission bits are kept.
 * path itself is replaced (a symlink at path is replaced, not followed). The
 * writer stays usable. */
LOOM_API loom_status loom_gguf_writer_write(loom_gguf_writer *w, const char *path);
/* Serialize into a malloc'd buffer; the caller frees *buf with free(). */
LOOM_API loom_status loom_gguf_writer_write_memory(loom_gguf_writer *w, void **buf, size_t *n);

#ifdef __cplusplus
}
#endif
#endif

/* model/formats/gguf_writer.c - GGUF v3 writer.
 *
 * Each KV is serialized when it is set (so the caller's buffers can go away
 * at once); tensor data is only referenced and streamed out at write time,
 * since a model's weights are far too big to copy. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "model/formats/gguf_internal.h"
#include "model/model_internal.h"

typedef struct wkv {
    char *key;
    uint8_t *blob; /* u32 type + encoded value */
    size_t blob_n;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[LOOM_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

struct loom_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    size_t alignment;
    char err[384];
};

static loom_status werr(loom_gguf_writer *w, loom_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static loom_status werr(loom_gguf_writer *w, loom_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loom_model_vfail(w->err, sizeof w->err, s, fmt, ap);
    va_end(ap);
    return s;
}

loom_status loom_gguf_writer_new(loom_gguf_writer **out) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = calloc(1, sizeof **out);
    if (!*out) return LOOM_ERR_OOM;
    (*out)->alignment = LOOM_GGUF_DEFAULT_ALIGNMENT;
    return LOOM_OK;
}

void loom_gguf_writer_free(loom_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].blob);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

const char *loom_gguf_writer_error(const loom_gguf_writer *w) {
    return w ? w->err : "";
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- blob building: a growable byte buffer ---- */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_str(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}

static bool is_alignment_key(const char *key) {
    return key && strcmp(key, "general.alignment") == 0;
}

/* Take ownership of blob as the value of key (after validating the key). */
static loom_status add_kv(loom_gguf_writer *w, const char *key, buf *b) {
    loom_status s = LOOM_OK;
    if (!key || !key[0]) s = werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: empty or NULL key");
    for (size_t i = 0; s == LOOM_OK && i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            s = werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: key '%s' set twice", key);
    if (s == LOOM_OK && is_alignment_key(key) && (b->n < 4 || b->p[0] != LOOM_GGUF_U32))
        s = werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: general.alignment must be a u32");
    if (s == LOOM_OK && b->oom)
        s = werr(w, LOOM_ERR_OOM, "gguf writer: out of memory for key '%s'", key);
    if (s == LOOM_OK && w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk)
            s = werr(w, LOOM_ERR_OOM, "gguf writer: out of memory");
        else {
            w->kv = nk;
            w->cap_kv = cap;
        }
    }
    char *k = s == LOOM_OK ? dup_str(key) : NULL;
    if (s == LOOM_OK && !k) s = werr(w, LOOM_ERR_OOM, "gguf writer: out of memory");
    if (s != LOOM_OK) {
        free(b->p);
        return s;
    }
    w->kv[w->n_kv++] = (wkv){k, b->p, b->n};
    return LOOM_OK;
}

static loom_status set_scalar(loom_gguf_writer *w, const char *key, loom_gguf_type t,
                              const void *v) {
    buf b = {0};
    put_u32(&b, (uint32_t)t);
    put(&b, v, loom_gguf_scalar_size(t)); /* little-endian host */
    return add_kv(w, key, &b);
}

#define LOOM_GGUF_SETTER(fn, ctype, tid)                                                           \
    loom_status fn(loom_gguf_writer *w, const char *key, ctype v) {                                \
        return set_scalar(w, key, tid, &v);                                                        \
    }
LOOM_GGUF_SETTER(loom_gguf_writer_set_u8, uint8_t, LOOM_GGUF_U8)
LOOM_GGUF_SETTER(loom_gguf_writer_set_i8, int8_t, LOOM_GGUF_I8)
LOOM_GGUF_SETTER(loom_gguf_writer_set_u16, uint16_t, LOOM_GGUF_U16)
LOOM_GGUF_SETTER(loom_gguf_writer_set_i16, int16_t, LOOM_GGUF_I16)
LOOM_GGUF_SETTER(loom_gguf_writer_set_i32, int32_t, LOOM_GGUF_I32)
LOOM_GGUF_SETTER(loom_gguf_writer_set_u64, uint64_t, LOOM_GGUF_U64)
LOOM_GGUF_SETTER(loom_gguf_writer_set_i64, int64_t, LOOM_GGUF_I64)
LOOM_GGUF_SETTER(loom_gguf_writer_set_f32, float, LOOM_GGUF_F32)
LOOM_GGUF_SETTER(loom_gguf_writer_set_f64, double, LOOM_GGUF_F64)
#undef LOOM_GGUF_SETTER

loom_status loom_gguf_writer_set_u32(loom_gguf_writer *w, const char *key, uint32_t v) {
    /* general.alignment changes the layout, so it is validated and applied here. */
    if (is_alignment_key(key) && (v == 0 || (v & (v - 1)) != 0 || v > LOOM_GGUF_MAX_ALIGNMENT))
        return werr(w, LOOM_ERR_INVALID_ARG,
                    "gguf writer: general.alignment %u is not a power of two up to %u", v,
                    LOOM_GGUF_MAX_ALIGNMENT);
    LOOM_TRY(set_scalar(w, key, LOOM_GGUF_U32, &v));
    if (is_alignment_key(key)) w->alignment = v;
    return LOOM_OK;
}

loom_status loom_gguf_writer_set_bool(loom_gguf_writer *w, const char *key, bool v) {
    uint8_t x = v ? 1 : 0;
    return set_scalar(w, key, LOOM_GGUF_BOOL, &x);
}

loom_status loom_gguf_writer_set_strn(loom_gguf_writer *w, const char *key, const char *s,
                                      size_t len) {
    if (!s && len)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: NULL string for key '%s'",
                    key ? key : "");
    buf b = {0};
    put_u32(&b, LOOM_GGUF_STRING);
    put_str(&b, s, len);
    return add_kv(w, key, &b);
}

loom_status loom_gguf_writer_set_str(loom_gguf_writer *w, const char *key, const char *s) {
    if (!s)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: NULL string for key '%s'",
                    key ? key : "");
    return loom_gguf_writer_set_strn(w, key, s, strlen(s));
}

loom_status loom_gguf_writer_set_arr(loom_gguf_writer *w, const char *key, loom_gguf_type elem_type,
                                     const void *data, uint64_t n) {
    size_t es = loom_gguf_scalar_size(elem_type);
    if (es == 0)
        return werr(w, LOOM_ERR_INVALID_ARG,
                    "gguf writer: key '%s': %s arrays go through set_arr_str", key ? key : "",
                    loom_gguf_type_name(elem_type));
    if ((!data && n) || n > SIZE_MAX / es)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: bad array for key '%s'", key ? key : "");
    if (elem_type == LOOM_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return werr(w, LOOM_ERR_INVALID_ARG,
                            "gguf writer: key '%s': bool element %llu is not 0/1", key,
                            (unsigned long long)i);
    buf b = {0};
    put_u32(&b, LOOM_GGUF_ARRAY);
    put_u32(&b, (uint32_t)elem_type);
    put_u64(&b, n);
    put(&b, data, (size_t)n * es);
    return add_kv(w, key, &b);
}

loom_status loom_gguf_writer_set_arr_str(loom_gguf_writer *w, const char *key,
                                         const char *const *strs, uint64_t n) {
    if ((!strs && n))
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: bad string array for key '%s'",
                    key ? key : "");
    buf b = {0};
    put_u32(&b, LOOM_GGUF_ARRAY);
    put_u32(&b, LOOM_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(b.p);
            return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: key '%s': string %llu is NULL",
                        key ? key : "", (unsigned long long)i);
        }
        put_str(&b, strs[i], strlen(strs[i]));
    }
    return add_kv(w, key, &b);
}

loom_status loom_gguf_writer_copy_kv(loom_gguf_writer *w, const loom_gguf *g, int64_t i) {
    if (!w) return LOOM_ERR_INVALID_ARG;
    if (!g || i < 0 || i >= g->n_kv)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: copy_kv: no key/value pair #%lld",
                    (long long)i);
    const gguf_kv *kv = &g->kv[i];
    if (kv->type == LOOM_GGUF_U32 && is_alignment_key(kv->key))
        return loom_gguf_writer_set_u32(w, kv->key, le32(g->base + kv->raw_off + 4));
    /* the reader validated the encoding, so the raw bytes are a valid value */
    buf b = {0};
    put(&b, g->base + kv->raw_off, kv->raw_n);
    return add_kv(w, kv->key, &b);
}

/* ---- tensors ---- */

loom_status loom_gguf_writer_add_tensor_ggml(loom_gguf_writer *w, const char *name,
                                             uint32_t ggml_type, int n_dims, const int64_t *ne,
                                             const void *data) {
    const loom_ggml_type_traits *tr = loom_ggml_traits(ggml_type);
    if (!name || !name[0])
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: empty or NULL tensor name");
    if (!tr)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown ggml type %u", name,
                    ggml_type);
    if (n_dims < 1 || n_dims > LOOM_GGUF_MAX_DIMS || !ne)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: tensor '%s': n_dims %d outside 1..4",
                    name, n_dims);
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || nel > (uint64_t)INT64_MAX / (uint64_t)ne[d])
            return werr(w, LOOM_ERR_INVALID_ARG,
                        "gguf writer: tensor '%s': bad extent ne[%d] = %lld", name, d,
                        (long long)ne[d]);
        nel *= (uint64_t)ne[d];
    }
    if (ne[0] % tr->blck != 0)
        return werr(w, LOOM_ERR_INVALID_ARG,
                    "gguf writer: tensor '%s': ne[0] = %lld is not a multiple of %s's block %u",
                    name, (long long)ne[0], tr->name, tr->blck);
    if (nel / tr->blck > SIZE_MAX / tr->size)
        return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: tensor '%s' is too large", name);
    if (!data) return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: tensor '%s': NULL data", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return werr(w, LOOM_ERR_INVALID_ARG, "gguf writer: tensor '%s' added twice", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return werr(w, LOOM_ERR_OOM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = dup_str(name);
    if (!t->name) return werr(w, LOOM_ERR_OOM, "gguf writer: out of memory");
    t->type = ggml_type;
    t->n_dims = n_dims;
    for (int d = 0; d < LOOM_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = (size_t)(nel / tr->blck) * tr->size;
    w->n_t++;
    return LOOM_OK;
}

loom_status loom_gguf_writer_add_tensor(loom_gguf_writer *w, const char *name, loom_dtype t,
                                        int n_dims, const int64_t *ne, const void *data) {
    uint32_t gt;
    if (loom_ggml_type_from_dtype(t, &gt) != LOOM_OK)
        return werr(w, LOOM_ERR_UNSUPPORTED, "gguf writer: tensor '%s': dtype %s has no GGUF type",
                    name ? name : "", loom_dtype_name(t));
    return loom_gguf_writer_add_tensor_ggml(w, name, gt, n_dims, ne, data);
}

/* ---- output ---- */

/* Streams to a FILE or grows a memory buffer. */
typedef struct sink {
    FILE *f;
    buf mem;
    size_t pos;
    bool failed;
    int err;         /* errno of the failure, 0 if unknown */
    size_t fault_at; /* test hook (see fault_hook): file offset, SIZE_MAX: none */
    bool fault_stop; /* at fault_at: stop the process (true) or fail like ENOSPC */
} sink;

/* Test hook, LOOM_TEST_GGUF_WRITE_FAULT: "fail:N" makes the file write fail
 * as on a full device once N bytes are written; "stop:N" flushes N bytes to
 * the temporary file and stops the process (SIGSTOP), so a test can kill it
 * mid-write at a known point. Unset in normal use. */
static void fault_hook(sink *s) {
    s->fault_at = SIZE_MAX;
    const char *e = getenv("LOOM_TEST_GGUF_WRITE_FAULT");
    if (!e || !*e) return;
    bool stop = !strncmp(e, "stop:", 5);
    if (!stop && strncmp(e, "fail:", 5) != 0) return;
    char *end = NULL;
    unsigned long long n = strtoull(e + 5, &end, 10);
    if (end == e + 5 || *end) return;
    s->fault_at = (size_t)n;
    s->fault_stop = stop;
}

static void emit(sink *s, const void *p, size_t n) {
    if (s->failed || n == 0) return;
    if (s->f) {
        if (s->pos + n > s->fault_at) {
            size_t k = s->fault_at - s->pos;
            if (k && fwrite(p, 1, k, s->f) != k) s->failed = true;
            s->pos += k;
            p = (const uint8_t *)p + k;
            n -= k;
            s->fault_at = SIZE_MAX;
            if (!s->fault_stop) {
                s->failed = true;
                s->err = ENOSPC;
                return;
            }
            fflush(s->f);
            raise(SIGSTOP);
        }
        if (fwrite(p, 1, n, s->f) != n) {
            s->failed = true;
            s->err = errno;
        }
    } else {
        put(&s->mem, p, n);
        s->failed = s->mem.oom;
    }
    s->pos += n;
}

static void emit_pad(sink *s, size_t align) {
    static const uint8_t zeros[64];
    size_t pad = (align - s->pos % align) % align;
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        emit(s, zeros, k);
        pad -= k;
    }
}

static void emit_buf(sink *s, buf *b) {
    emit(s, b->p, b->n);
    if (b->oom) s->failed = true;
    b->n = 0;
}

static void serialize(loom_gguf_writer *w, sink *s) {
    buf b = {0};
    put(&b, LOOM_GGUF_MAGIC, 4);
    put_u32(&b, LOOM_GGUF_VERSION);
    put_u64(&b, w->n_t);
    put_u64(&b, w->n_kv);
    emit_buf(s, &b);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&b, w->kv[i].key, strlen(w->kv[i].key));
        put(&b, w->kv[i].blob, w->kv[i].blob_n);
        emit_buf(s, &b);
    }
    size_t a = w->alignment, off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&b, t->name, strlen(t->name));
        put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(&b, (uint64_t)t->ne[d]);
        put_u32(&b, t->type);
        put_u64(&b, off);
        off += t->nbytes + (a - t->nbytes % a) % a;
        emit_buf(s, &b);
    }
    free(b.p);
    emit_pad(s, a);
    for (size_t i = 0; i < w->n_t; i++) {
        emit(s, w->t[i].data, w->t[i].nbytes);
        emit_pad(s, a);
    }
}

loom_status loom_gguf_writer_write_memory(loom_gguf_writer *w, void **out, size_t *n) {
    if (!w || !out || !n) return LOOM_ERR_INVALID_ARG;
    sink s = {0};
    serialize(w, &s);
    if (s.failed) {
        free(s.mem.p);
        return werr(w, LOOM_ERR_OOM, "gguf writer: out of memory while serializing");
    }
    *out = s.mem.p ? s.mem.p : malloc(1);
    *n = s.mem.n;
    return *out ? LOOM_OK : LOOM_ERR_OOM;
}

/* Creates "path.tmp.XXXXXX" (exclusively, so two writers of the same path
 * never share a temporary file) with the mode an existing target has, else
 * 0666 less the umask, as fopen would. Returns the fd or -1 (errno set). */
static int open_temp(const char *path, char *tmp, size_t tmp_n) {
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t r = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40) ^
                 (uint64_t)(uintptr_t)tmp;
    struct stat sb;
    bool keep_mode = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
    for (int attempt = 0; attempt < 100; attempt++) {
        char suf[7];
        for (int i = 0; i < 6; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            suf[i] = al[(r >> 33) % (sizeof al - 1)];
        }
        suf[6] = 0;
        snprintf(tmp, tmp_n, "%s.tmp.%s", path, suf);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            if (keep_mode) (void)fchmod(fd, sb.st_mode & 07777);
            return fd;
        }
        if (errno != EEXIST) return -1;
    }
    return -1;
}

/* fsync the directory holding path, so the rename itself is durable.
 * Filesystems that cannot sync a directory (EINVAL) are not an error. */
static int sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    char *dir = malloc(n + 2);
    if (!dir) return ENOMEM;
    if (!slash)
        memcpy(dir, ".", 2);
    else if (n == 0)
        memcpy(dir, "/", 2);
    else {
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = 0;
    if (fd < 0)
        e = errno;
    else if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        e = errno;
    if (fd >= 0) close(fd);
    free(dir);
    return e;
}

/* Atomic replacement (ADR 0013): write a temporary file in the target's
 * directory, fsync it, rename it over the target, fsync the directory. A
 * reader (or a crash, or SIGKILL) sees the old file or the complete new one,
 * never a prefix; on any error the temporary file is removed and an existing
 * target is left as it was. Only a process killed mid-write leaves its
 * "path.tmp.XXXXXX" behind (nothing can remove it then). */
loom_status loom_gguf_writer_write(loom_gguf_writer *w, const char *path) {
    if (!w || !path || !*path) return LOOM_ERR_INVALID_ARG;
    size_t tmp_n = strlen(path) + 16;
    char *tmp = malloc(tmp_n);
    if (!tmp) return werr(w, LOOM_ERR_OOM, "gguf writer: out of memory");
    sink s = {0};
    fault_hook(&s);
    int fd = open_temp(path, tmp, tmp_n);
    if (fd < 0 || !(s.f = fdopen(fd, "wb"))) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            remove(tmp);
        }
        free(tmp);
        return werr(w, LOOM_ERR_IO, "gguf writer: cannot create a temporary file next to '%s': %s",
                    path, strerror(e));
    }
    serialize(w, &s);
    /* e: errno of the first failure; nothing is renamed after one. */
    int e = s.failed ? (s.err ? s.err : EIO) : 0;
    const char *step = "writing";
    if (!e && fflush(s.f) != 0) e = errno;
    if (!e && fsync(fileno(s.f)) != 0) {
        e = errno;
        step = "syncing";
    }
    if (fclose(s.f) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) {
        e = errno;
        step = "renaming the temporary file to";
    }
    if (e) {
        remove(tmp);
        free(tmp);
        return werr(w, LOOM_ERR_IO,
                    "gguf writer: %s '%s' failed: %s (any previous file is unchanged)", step, path,
                    strerror(e));
    }
    free(tmp);
    if ((e = sync_dir(path)) != 0)
        return werr(w, LOOM_ERR_IO, "gguf writer: wrote '%s' but syncing its directory failed: %s",
                    path, strerror(e));
    return LOOM_OK;
}

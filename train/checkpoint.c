/* train/checkpoint.c - checkpoint files and atomic writes (see checkpoint.h). */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fsync */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_MAGIC   "LOOMCKPT"
#define CKPT_VERSION 1u

static loom_status fail(char *err, size_t n, loom_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static loom_status fail(char *err, size_t n, loom_status st, const char *fmt, ...) {
    if (err && n) {
        int k = snprintf(err, n, "checkpoint: ");
        va_list ap;
        va_start(ap, fmt);
        if (k >= 0 && (size_t)k < n) vsnprintf(err + k, n - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return st;
}

loom_status loom_train_write_atomic(const char *path, const void *data, size_t n, char *err,
                                    size_t err_n) {
    size_t pn = strlen(path);
    char *tmp = malloc(pn + 16);
    if (!tmp) return fail(err, err_n, LOOM_ERR_OOM, "out of memory writing '%s'", path);
    memcpy(tmp, path, pn);
    memcpy(tmp + pn, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return fail(err, err_n, LOOM_ERR_IO, "cannot create a temporary file next to '%s': %s",
                    path, strerror(e));
    }
    const char *p = data;
    size_t left = n;
    int e = 0;
    /* Test hook, LOOM_TEST_CKPT_WRITE_FAULT (as the GGUF writer's, ADR 0013):
     * "stop:N" stops the process (SIGSTOP) once N bytes are in the temporary
     * file, so a test can kill -9 it mid-save; "fail:N" fails there as a full
     * disk would. Unset in normal use. */
    size_t fault_at = SIZE_MAX;
    bool fault_stop = false;
    const char *fe = getenv("LOOM_TEST_CKPT_WRITE_FAULT");
    if (fe && (!strncmp(fe, "stop:", 5) || !strncmp(fe, "fail:", 5))) {
        fault_stop = fe[0] == 's';
        fault_at = (size_t)strtoull(fe + 5, NULL, 10);
    }
    while (left && !e) {
        size_t done = n - left;
        if (done >= fault_at) {
            if (!fault_stop) {
                e = ENOSPC;
                break;
            }
            raise(SIGSTOP);
            fault_at = SIZE_MAX;
        }
        size_t chunk = fault_at > done && fault_at - done < left ? fault_at - done : left;
        ssize_t w = write(fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            e = w < 0 ? errno : EIO;
        else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (!e && fchmod(fd, 0644) != 0) e = errno;
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) {
        unlink(tmp);
        free(tmp);
        return fail(err, err_n, LOOM_ERR_IO, "writing '%s' failed: %s (any previous file is kept)",
                    path, strerror(e));
    }
    free(tmp);
    /* the rename itself must reach the disk */
    char *dir = strdup(path);
    if (!dir) return LOOM_OK;
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP) e = errno;
        close(dfd);
    }
    free(dir);
    if (e)
        return fail(err, err_n, LOOM_ERR_IO, "wrote '%s' but syncing its directory failed: %s",
                    path, strerror(e));
    return LOOM_OK;
}

/* ---------------- records ---------------- */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
    bool oom;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 1 << 16;
        while (c < b->n + n)
            c *= 2;
        unsigned char *np = realloc(b->p, c);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(buf *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, x, 4);
}

static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void record(buf *b, const char *name, const void *d, size_t n) {
    put_u32(b, (uint32_t)strlen(name));
    put(b, name, strlen(name));
    put_u64(b, n);
    put(b, d, n);
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* meta: the state's integers and the shapes they must be resumed into. */
static void meta_words(const loom_ckpt_state *s, const loom_lora *lo, const loom_optim *o,
                       uint64_t w[14]) {
    w[0] = (uint64_t)s->step;
    w[1] = (uint64_t)s->epoch;
    w[2] = (uint64_t)s->cursor;
    for (int i = 0; i < 4; i++)
        w[3 + i] = s->rng[i];
    w[7] = s->seed;
    w[8] = (uint64_t)o->t;
    w[9] = (uint64_t)lo->n_params;
    w[10] = (uint64_t)lo->cfg.r;
    w[11] = lo->cfg.targets;
    w[12] = (uint64_t)lo->mc.n_layers;
    w[13] = (uint64_t)lo->mc.dim;
}

loom_status loom_checkpoint_save(const char *path, const loom_ckpt_state *s, const loom_lora *lo,
                                 loom_optim *o, char *err, size_t err_n) {
    buf b = {0};
    int n_state = o->ops->n_state(o);
    put(&b, CKPT_MAGIC, 8);
    put_u32(&b, CKPT_VERSION);
    put_u32(&b, (uint32_t)(2 + lo->n_params + n_state + (s->has_scaler ? 1 : 0)));
    uint64_t w[14];
    meta_words(s, lo, o, w);
    unsigned char mw[14 * 8];
    for (int i = 0; i < 14; i++)
        for (int k = 0; k < 8; k++)
            mw[i * 8 + k] = (unsigned char)(w[i] >> (8 * k));
    record(&b, "meta", mw, sizeof mw);
    record(&b, "optimizer", o->ops->name, strlen(o->ops->name));
    for (int i = 0; i < lo->n_params; i++)
        record(&b, lo->p[i].name, lo->p[i].w, (size_t)(lo->p[i].rows * lo->p[i].cols) * 4);
    for (int k = 0; k < n_state; k++) {
        const char *name;
        void *d;
        size_t n;
        o->ops->state(o, k, &name, &d, &n);
        char full[160];
        snprintf(full, sizeof full, "optim.%s", name);
        record(&b, full, d, n);
    }
    if (s->has_scaler) { /* f32 scale bits, growth tracker: u32 each */
        uint32_t bits;
        memcpy(&bits, &s->scaler.scale, 4);
        unsigned char sc[8];
        for (int k = 0; k < 4; k++) {
            sc[k] = (unsigned char)(bits >> (8 * k));
            sc[4 + k] = (unsigned char)((uint32_t)s->scaler.growth_tracker >> (8 * k));
        }
        record(&b, "loss_scaler", sc, sizeof sc);
    }
    if (!b.oom) put_u64(&b, fnv1a(b.p, b.n));
    loom_status st = b.oom ? fail(err, err_n, LOOM_ERR_OOM, "out of memory saving '%s'", path)
                           : loom_train_write_atomic(path, b.p, b.n, err, err_n);
    free(b.p);
    return st;
}

/* Walks the records of a verified file. */
typedef struct reader {
    const unsigned char *p, *end;
} reader;

static bool next(reader *r, const char **name, uint32_t *nl, const unsigned char **d, size_t *n) {
    if (r->end - r->p < 4) return false;
    *nl = get_u32(r->p);
    if ((size_t)(r->end - r->p - 4) < (size_t)*nl + 8) return false;
    *name = (const char *)r->p + 4;
    uint64_t len = get_u64(r->p + 4 + *nl);
    const unsigned char *data = r->p + 4 + *nl + 8;
    if ((uint64_t)(r->end - data) < len) return false;
    *d = data;
    *n = (size_t)len;
    r->p = data + len;
    return true;
}

static bool name_is(const char *name, uint32_t nl, const char *want) {
    return strlen(want) == nl && memcmp(name, want, nl) == 0;
}

loom_status loom_checkpoint_load(const char *path, loom_ckpt_state *s, loom_lora *lo, loom_optim *o,
                                 char *err, size_t err_n) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_n, LOOM_ERR_IO, "cannot open '%s'", path);
    unsigned char *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 20;
            unsigned char *nd = realloc(data, cap);
            if (!nd) {
                free(data);
                fclose(f);
                return fail(err, err_n, LOOM_ERR_OOM, "out of memory reading '%s'", path);
            }
            data = nd;
        }
        size_t k = fread(data + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    fclose(f);
    loom_status st = LOOM_OK;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        st = fail(err, err_n, LOOM_ERR_FORMAT, __VA_ARGS__);                                       \
        goto done;                                                                                 \
    } while (0)
    if (n < 24 || memcmp(data, CKPT_MAGIC, 8) != 0) BAD("'%s' is not a loom checkpoint", path);
    if (get_u32(data + 8) != CKPT_VERSION) BAD("'%s' has an unknown version", path);
    if (fnv1a(data, n - 8) != get_u64(data + n - 8))
        BAD("'%s' is damaged (checksum mismatch)", path);
    reader r = {data + 16, data + n - 8};
    uint32_t n_rec = get_u32(data + 12), nl;
    const char *name;
    const unsigned char *d;
    size_t len;
    int n_state = o->ops->n_state(o);
    const uint32_t n_base = (uint32_t)(2 + lo->n_params + n_state);
    if (n_rec != n_base && n_rec != n_base + 1)
        BAD("'%s' was written for another adapter or optimizer (record count)", path);
    if (!next(&r, &name, &nl, &d, &len) || !name_is(name, nl, "meta") || len != 14 * 8)
        BAD("'%s': bad meta record", path);
    uint64_t w[14], want[14];
    for (int i = 0; i < 14; i++)
        w[i] = get_u64(d + 8 * i);
    loom_ckpt_state tmp = {0};
    meta_words(&tmp, lo, o, want);
    for (int i = 9; i < 14; i++)
        if (w[i] != want[i]) BAD("'%s' was written for another model or LoRA shape", path);
    if (!next(&r, &name, &nl, &d, &len) || !name_is(name, nl, "optimizer") ||
        len != strlen(o->ops->name) || memcmp(d, o->ops->name, len) != 0)
        BAD("'%s' holds another optimizer's state than %s", path, o->ops->name);
    for (int i = 0; i < lo->n_params; i++) {
        if (!next(&r, &name, &nl, &d, &len) || !name_is(name, nl, lo->p[i].name) ||
            len != (size_t)(lo->p[i].rows * lo->p[i].cols) * 4)
            BAD("'%s': record for %s is missing or has another size", path, lo->p[i].name);
        memcpy(lo->p[i].w, d, len);
    }
    for (int k = 0; k < n_state; k++) {
        const char *sn;
        void *sd;
        size_t sb;
        o->ops->state(o, k, &sn, &sd, &sb);
        char full[160];
        snprintf(full, sizeof full, "optim.%s", sn);
        if (!next(&r, &name, &nl, &d, &len) || !name_is(name, nl, full) || len != sb)
            BAD("'%s': optimizer state %s is missing or has another size", path, full);
        memcpy(sd, d, len);
    }
    s->has_scaler = false;
    if (n_rec == n_base + 1) {
        if (!next(&r, &name, &nl, &d, &len) || !name_is(name, nl, "loss_scaler") || len != 8)
            BAD("'%s': bad loss_scaler record", path);
        uint32_t bits = get_u32(d);
        memcpy(&s->scaler.scale, &bits, 4);
        s->scaler.growth_tracker = (int32_t)get_u32(d + 4);
        s->has_scaler = true;
    }
    s->step = (int64_t)w[0];
    s->epoch = (int64_t)w[1];
    s->cursor = (int64_t)w[2];
    for (int i = 0; i < 4; i++)
        s->rng[i] = w[3 + i];
    s->seed = w[7];
    o->t = (int64_t)w[8];
#undef BAD
done:
    free(data);
    return st;
}

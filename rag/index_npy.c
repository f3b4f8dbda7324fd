/* rag/index_npy.c - vectors in and out of `loom rag`: NumPy .npy files
 * (format 1.0/2.0/3.0; the header is a Python dict literal, read strictly
 * for the three keys numpy writes) and raw float32. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/index.h"

#define BAD(st_, ...) (snprintf(err, err_n, __VA_ARGS__), (st_))

void loom_rag_matrix_free(loom_rag_matrix *m) {
    if (!m) return;
    free(m->data);
    m->data = NULL;
}

/* The value text after 'key': in the header dict (NULL when absent). */
static const char *dict_value(const char *h, size_t hn, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= hn; i++)
        if (h[i] == '\'' && !memcmp(h + i + 1, key, kl) && h[i + 1 + kl] == '\'') {
            size_t j = i + 2 + kl;
            while (j < hn && h[j] == ' ')
                j++;
            if (j >= hn || h[j] != ':') return NULL;
            j++;
            while (j < hn && h[j] == ' ')
                j++;
            return h + j;
        }
    return NULL;
}

static bool parse_dim(const char **p, const char *end, size_t *v) {
    const char *s = *p;
    size_t x = 0;
    if (s >= end || *s < '0' || *s > '9') return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (x > ((size_t)1 << 40)) return false;
        x = x * 10 + (size_t)(*s - '0');
    }
    *v = x;
    *p = s;
    return true;
}

loom_status loom_rag_matrix_parse(const void *bytes, size_t n, bool is_npy, int dim,
                                  loom_rag_matrix *out, char *err, size_t err_n) {
    memset(out, 0, sizeof *out);
    const unsigned char *b = bytes;
    const unsigned char *payload;
    size_t plen, rows, cols, esz;
    char kind;
    if (!is_npy) {
        if (dim <= 0) return BAD(LOOM_ERR_INVALID_ARG, "raw float32 vectors need --dim");
        if (n % ((size_t)dim * 4))
            return BAD(LOOM_ERR_FORMAT, "%zu bytes is not a whole number of %d-float vectors", n,
                       dim);
        kind = 'f', esz = 4, cols = (size_t)dim, rows = n / ((size_t)dim * 4), payload = b,
        plen = n;
    } else {
        if (n < 10 || memcmp(b, "\x93NUMPY", 6))
            return BAD(LOOM_ERR_FORMAT, "not a .npy file (bad magic)");
        size_t hl, ho;
        if (b[6] == 1) {
            hl = (size_t)b[8] | (size_t)b[9] << 8, ho = 10;
        } else if (b[6] == 2 || b[6] == 3) {
            if (n < 12) return BAD(LOOM_ERR_FORMAT, ".npy header truncated");
            hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24,
            ho = 12;
        } else {
            return BAD(LOOM_ERR_UNSUPPORTED, ".npy format version %u is not supported", b[6]);
        }
        if (hl > n - ho) return BAD(LOOM_ERR_FORMAT, ".npy header runs past the end of the file");
        const char *h = (const char *)b + ho, *end = h + hl;
        const char *descr = dict_value(h, hl, "descr"), *fo = dict_value(h, hl, "fortran_order"),
                   *shape = dict_value(h, hl, "shape");
        if (!descr || !fo || !shape)
            return BAD(LOOM_ERR_FORMAT, ".npy header lacks descr, fortran_order or shape");
        if (end - descr >= 6 && !memcmp(descr, "'<f4'", 5))
            kind = 'f', esz = 4;
        else if (end - descr >= 6 && !memcmp(descr, "'<i4'", 5))
            kind = 'i', esz = 4;
        else if (end - descr >= 6 && !memcmp(descr, "'<i8'", 5))
            kind = 'l', esz = 8;
        else
            return BAD(LOOM_ERR_UNSUPPORTED,
                       ".npy dtype is not float32, int32 or int64 (little-endian)");
        if (end - fo < 5 || memcmp(fo, "False", 5))
            return BAD(LOOM_ERR_UNSUPPORTED, ".npy array is in Fortran order");
        const char *p = shape;
        if (p >= end || *p != '(') return BAD(LOOM_ERR_FORMAT, ".npy shape is not a tuple");
        p++;
        size_t d0 = 0, d1 = 1;
        if (!parse_dim(&p, end, &d0)) return BAD(LOOM_ERR_FORMAT, ".npy shape is not 1-D or 2-D");
        if (p < end && *p == ',') p++;
        while (p < end && *p == ' ')
            p++;
        if (p < end && *p != ')') {
            if (!parse_dim(&p, end, &d1))
                return BAD(LOOM_ERR_FORMAT, ".npy shape is not 1-D or 2-D");
            if (p < end && *p == ',') p++;
        }
        if (p >= end || *p != ')') return BAD(LOOM_ERR_FORMAT, ".npy shape is not 1-D or 2-D");
        rows = d0, cols = d1;
        payload = b + ho + hl;
        plen = n - ho - hl;
        if (cols && rows > plen / esz / cols)
            return BAD(LOOM_ERR_FORMAT,
                       ".npy data truncated: shape (%zu, %zu) needs %zu bytes, file has %zu", rows,
                       cols, rows * cols * esz, plen);
        if (rows * cols * esz != plen)
            return BAD(LOOM_ERR_FORMAT, ".npy data is %zu bytes, shape says %zu", plen,
                       rows * cols * esz);
        if (dim > 0 && kind == 'f' && cols != (size_t)dim)
            return BAD(LOOM_ERR_INVALID_ARG, ".npy vectors have %zu columns, --dim says %d", cols,
                       dim);
    }
    out->data = malloc(plen ? plen : 1);
    if (!out->data) return BAD(LOOM_ERR_OOM, "out of memory for %zu bytes of vectors", plen);
    memcpy(out->data, payload, plen);
    out->kind = kind, out->rows = rows, out->cols = cols;
    return LOOM_OK;
}

loom_status loom_rag_matrix_read(const char *path, int dim, loom_rag_matrix *out, char *err,
                                 size_t err_n) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return BAD(LOOM_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return BAD(LOOM_ERR_OOM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return BAD(LOOM_ERR_IO, "%s: read error", path);
    }
    size_t l = strlen(path);
    bool npy = l >= 4 && !strcmp(path + l - 4, ".npy");
    char why[200];
    loom_status st = loom_rag_matrix_parse(buf, n, npy, dim, out, why, sizeof why);
    free(buf);
    if (st != LOOM_OK) return BAD(st, "%s: %s", path, why);
    return LOOM_OK;
}

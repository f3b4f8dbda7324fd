/* train/tb_writer.c - TensorBoard scalar event files; format in tb_writer.h. */
#define _DEFAULT_SOURCE /* gethostname */
#define _POSIX_C_SOURCE 200809L
#include "train/tb_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* CRC-32C four bits at a time: CRC32C_NIBBLE[i] is i run through four
 * steps of the reflected polynomial 0x82F63B78. A constant 16-entry table
 * needs no initialisation and is plenty for a few records per step. */
static const uint32_t CRC32C_NIBBLE[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

uint32_t loom_crc32c(const void *p, size_t n) {
    const unsigned char *b = p;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        c = (c >> 4) ^ CRC32C_NIBBLE[c & 15];
        c = (c >> 4) ^ CRC32C_NIBBLE[c & 15];
    }
    return c ^ 0xffffffffu;
}

uint32_t loom_crc32c_mask(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

struct loom_tb_writer {
    FILE *f;
    char path[4096];
};

const char *loom_tb_path(const loom_tb_writer *w) {
    return w ? w->path : NULL;
}

static void put_le(unsigned char *o, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        o[i] = (unsigned char)(v >> (8 * i));
}

static size_t put_varint(unsigned char *o, uint64_t v) {
    size_t k = 0;
    do {
        o[k++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return k;
}

static loom_status write_record(loom_tb_writer *w, const unsigned char *payload, size_t n) {
    unsigned char head[12], tail[4];
    put_le(head, n, 8);
    put_le(head + 8, loom_crc32c_mask(loom_crc32c(head, 8)), 4);
    put_le(tail, loom_crc32c_mask(loom_crc32c(payload, n)), 4);
    if (fwrite(head, 1, 12, w->f) != 12 || fwrite(payload, 1, n, w->f) != n ||
        fwrite(tail, 1, 4, w->f) != 4 || fflush(w->f) != 0)
        return LOOM_ERR_IO;
    return LOOM_OK;
}

/* Event header: wall_time (1, fixed64 double) and step (2, varint). */
static size_t event_head(unsigned char *o, double wall_time, int64_t step) {
    size_t k = 0;
    uint64_t bits;
    memcpy(&bits, &wall_time, 8);
    o[k++] = 0x09;
    put_le(o + k, bits, 8);
    k += 8;
    o[k++] = 0x10;
    k += put_varint(o + k, (uint64_t)step);
    return k;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

loom_status loom_tb_open(const char *dir, loom_tb_writer **out, char *err, size_t errn) {
    if (!dir || !dir[0] || !out) {
        snprintf(err, errn, "tensorboard: no log directory given");
        return LOOM_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errn, "tensorboard: cannot create %s: %s", dir, strerror(errno));
        return LOOM_ERR_IO;
    }
    loom_tb_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errn, "tensorboard: out of memory");
        return LOOM_ERR_OOM;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    for (char *h = host; *h; h++) /* keep the name one path component */
        if (*h == '/') *h = '_';
    /* Created exclusively ("x"): two writers opened on one directory in the
     * same second by one process get .loom, .1.loom, ... instead of one
     * truncating the other. */
    long long now = (long long)time(NULL);
    for (int k = 0; k < 100; k++) {
        char sfx[16] = "";
        if (k) snprintf(sfx, sizeof sfx, ".%d", k);
        int n = snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s.%ld%s.loom", dir,
                         now, host, (long)getpid(), sfx);
        if (n < 0 || (size_t)n >= sizeof w->path) {
            free(w);
            snprintf(err, errn, "tensorboard: log directory path too long: %s", dir);
            return LOOM_ERR_INVALID_ARG;
        }
        w->f = fopen(w->path, "wbx");
        if (w->f || errno != EEXIST) break;
    }
    if (!w->f) {
        snprintf(err, errn, "tensorboard: cannot create %s: %s", w->path, strerror(errno));
        free(w);
        return LOOM_ERR_IO;
    }
    unsigned char ev[64];
    size_t k = event_head(ev, now_s(), 0);
    static const char ver[] = "brain.Event:2";
    ev[k++] = 0x1a;
    ev[k++] = (unsigned char)(sizeof ver - 1);
    memcpy(ev + k, ver, sizeof ver - 1);
    k += sizeof ver - 1;
    if (write_record(w, ev, k) != LOOM_OK) {
        snprintf(err, errn, "tensorboard: cannot write %s: %s", w->path, strerror(errno));
        loom_tb_close(w);
        return LOOM_ERR_IO;
    }
    *out = w;
    return LOOM_OK;
}

loom_status loom_tb_scalar(loom_tb_writer *w, const char *tag, float value, int64_t step,
                           double wall_time) {
    if (!w || !tag || step < 0) return LOOM_ERR_INVALID_ARG;
    size_t tl = strlen(tag);
    if (tl == 0 || tl >= 256) return LOOM_ERR_INVALID_ARG;
    unsigned char ev[32 + 256 + 16];
    size_t k = event_head(ev, wall_time < 0 ? now_s() : wall_time, step);
    /* Value{tag, simple_value}: 1 + varint(tl) + tl + 1 + 4 bytes. */
    unsigned char val[256 + 16];
    size_t v = 0;
    val[v++] = 0x0a;
    v += put_varint(val + v, tl);
    memcpy(val + v, tag, tl);
    v += tl;
    val[v++] = 0x15;
    uint32_t fb;
    memcpy(&fb, &value, 4);
    put_le(val + v, fb, 4);
    v += 4;
    /* Summary{value = val} inside Event.summary (field 5). */
    unsigned char sum[256 + 24];
    size_t s = 0;
    sum[s++] = 0x0a;
    s += put_varint(sum + s, v);
    memcpy(sum + s, val, v);
    s += v;
    ev[k++] = 0x2a;
    k += put_varint(ev + k, s);
    memcpy(ev + k, sum, s);
    k += s;
    return write_record(w, ev, k);
}

void loom_tb_close(loom_tb_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w);
}

/* ---- reader ---- */

typedef struct {
    const unsigned char *p, *end;
} pb;

static int pb_varint(pb *b, uint64_t *v) {
    *v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (b->p >= b->end) return 0;
        unsigned char c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) return 1;
    }
    return 0;
}

/* Next field: its number, wire type, and for length-delimited ones the
 * bytes (sub), for fixed ones the raw bits (v). 0 at the end, -1 if bad. */
static int pb_field(pb *b, uint32_t *num, int *wt, uint64_t *v, pb *sub) {
    if (b->p >= b->end) return 0;
    uint64_t key;
    if (!pb_varint(b, &key) || (key >> 3) == 0 || (key >> 3) > 0xffffffffu) return -1;
    *num = (uint32_t)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0:
        return pb_varint(b, v) ? 1 : -1;
    case 1:
    case 5: {
        size_t n = *wt == 1 ? 8 : 4;
        if ((size_t)(b->end - b->p) < n) return -1;
        *v = 0;
        for (size_t i = 0; i < n; i++)
            *v |= (uint64_t)b->p[i] << (8 * i);
        b->p += n;
        return 1;
    }
    case 2:
        if (!pb_varint(b, v) || *v > (uint64_t)(b->end - b->p)) return -1;
        sub->p = b->p;
        sub->end = b->p + *v;
        b->p += *v;
        return 1;
    default:
        return -1;
    }
}

/* One Event payload; 0 ok, -1 malformed. */
static int parse_event(const unsigned char *p, size_t n, int first, loom_tb_scalar_cb cb,
                       void *ud) {
    pb ev = {p, p + n}, sub;
    uint32_t num;
    int wt, r, saw_version = 0;
    uint64_t v;
    double wall = 0;
    int64_t step = 0;
    pb summary = {NULL, NULL};
    while ((r = pb_field(&ev, &num, &wt, &v, &sub)) == 1) {
        if (num == 1 && wt == 1)
            memcpy(&wall, &v, 8);
        else if (num == 2 && wt == 0)
            step = (int64_t)v;
        else if (num == 3 && wt == 2)
            saw_version = sub.end - sub.p == 13 && !memcmp(sub.p, "brain.Event:2", 13);
        else if (num == 5 && wt == 2)
            summary = sub;
    }
    if (r < 0) return -1;
    if (first) return saw_version ? 0 : -1;
    while (summary.p && (r = pb_field(&summary, &num, &wt, &v, &sub)) == 1) {
        if (num != 1 || wt != 2) continue;
        pb val = sub, s2;
        char tag[256] = "";
        float fv = 0;
        int have_v = 0, r2;
        while ((r2 = pb_field(&val, &num, &wt, &v, &s2)) == 1) {
            if (num == 1 && wt == 2) {
                size_t tl = (size_t)(s2.end - s2.p);
                if (tl >= sizeof tag) return -1;
                memcpy(tag, s2.p, tl);
                tag[tl] = 0;
            } else if (num == 2 && wt == 5) {
                uint32_t bits = (uint32_t)v;
                memcpy(&fv, &bits, 4);
                have_v = 1;
            }
        }
        if (r2 < 0) return -1;
        if (have_v && cb) cb(ud, tag, fv, step, wall);
    }
    return r < 0 ? -1 : 0;
}

static uint32_t get_le32(const unsigned char *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

loom_status loom_tb_read(const char *path, loom_tb_scalar_cb cb, void *ud, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errn, "%s: %s", path, strerror(errno));
        return LOOM_ERR_IO;
    }
    loom_status st = LOOM_OK;
    unsigned char head[12], tail[4], *buf = NULL;
    long off = 0;
    for (int first = 1;; first = 0) {
        size_t got = fread(head, 1, 12, f);
        if (got == 0 && !first) break;
        if (got != 12) {
            snprintf(err, errn, "%s: record at byte %ld: truncated header", path, off);
            st = LOOM_ERR_FORMAT;
            break;
        }
        uint64_t len = 0;
        for (int i = 0; i < 8; i++)
            len |= (uint64_t)head[i] << (8 * i);
        if (get_le32(head + 8) != loom_crc32c_mask(loom_crc32c(head, 8))) {
            snprintf(err, errn, "%s: record at byte %ld: length CRC mismatch", path, off);
            st = LOOM_ERR_FORMAT;
            break;
        }
        if (len > (64u << 20)) {
            snprintf(err, errn, "%s: record at byte %ld: length %llu too large", path, off,
                     (unsigned long long)len);
            st = LOOM_ERR_FORMAT;
            break;
        }
        unsigned char *nb = realloc(buf, len ? (size_t)len : 1);
        if (!nb) {
            st = LOOM_ERR_OOM;
            snprintf(err, errn, "%s: out of memory", path);
            break;
        }
        buf = nb;
        if (fread(buf, 1, (size_t)len, f) != len || fread(tail, 1, 4, f) != 4) {
            snprintf(err, errn, "%s: record at byte %ld: truncated payload", path, off);
            st = LOOM_ERR_FORMAT;
            break;
        }
        if (get_le32(tail) != loom_crc32c_mask(loom_crc32c(buf, (size_t)len))) {
            snprintf(err, errn, "%s: record at byte %ld: payload CRC mismatch", path, off);
            st = LOOM_ERR_FORMAT;
            break;
        }
        if (parse_event(buf, (size_t)len, first, cb, ud) != 0) {
            snprintf(err, errn, "%s: record at byte %ld: malformed Event%s", path, off,
                     first ? " (the first must carry file_version brain.Event:2)" : "");
            st = LOOM_ERR_FORMAT;
            break;
        }
        off += 16 + (long)len;
    }
    free(buf);
    fclose(f);
    return st;
}

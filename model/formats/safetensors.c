/* model/formats/safetensors.c - safetensors reader: mmap, validate the JSON header
 * and every offset up front, serve tensors from the mapping; sharded
 * checkpoints through model.safetensors.index.json; quantize-on-load.
 *
 * Every number taken from the file is range-checked before it indexes or
 * sizes anything, so a hostile file costs O(file size) memory at most and is
 * never read outside its mapping. */
#define _POSIX_C_SOURCE 200809L

#include "loom/safetensors.h"
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ dtype table */

typedef struct st_dtype {
    const char *name;
    size_t size;
    int loom; /* loom_dtype, or -1 when loom cannot compute with it */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, LOOM_F32}, {"F16", 2, LOOM_F16}, {"BF16", 2, LOOM_BF16}, {"F64", 8, -1},
    {"I64", 8, -1},       {"U64", 8, -1},       {"I32", 4, -1},         {"U32", 4, -1},
    {"I16", 2, -1},       {"U16", 2, -1},       {"I8", 1, -1},          {"U8", 1, -1},
    {"BOOL", 1, -1},      {"F8_E4M3", 1, -1},   {"F8_E5M2", 1, -1},
};
#define N_ST_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static int st_dtype_find(const char *s) {
    for (int i = 0; i < N_ST_DTYPES; i++)
        if (!strcmp(st_dtypes[i].name, s)) return i;
    return -1;
}

/* ------------------------------------------------------------- structures */

typedef struct st_tensor {
    char *name;
    int dtype; /* index into st_dtypes */
    int n_dims;
    int64_t shape[LOOM_ST_MAX_DIMS];
    int64_t n_elements;
    uint64_t begin, end; /* relative to the shard's data buffer */
    int shard;
} st_tensor;

typedef struct st_shard {
    char *label; /* file path, or "<memory>" */
    const uint8_t *base;
    size_t size;
    bool mapped;
    const uint8_t *data; /* base + 8 + header length */
    size_t data_size;
} st_shard;

struct loom_safetensors {
    st_shard *shards;
    int n_shards;
    st_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    int64_t *by_name; /* tensor indices sorted by name */
    char **meta;      /* key, value, key, value ... (shard 0's __metadata__) */
    int n_meta;
    char err[512];
};

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a
 * double, and above any real file size). */
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

void loom_safetensors_close(loom_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_shards; i++) {
        if (st->shards[i].mapped && st->shards[i].size)
            munmap((void *)st->shards[i].base, st->shards[i].size);
        free(st->shards[i].label);
    }
    free(st->shards);
    for (int64_t i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    free(st->by_name);
    for (int i = 0; i < 2 * st->n_meta; i++)
        free(st->meta[i]);
    free(st->meta);
    free(st);
}

/* --------------------------------------------------------- header parsing */

static loom_status add_meta(loom_safetensors *st, const char *label, const cJSON *obj, char *err,
                            size_t err_n, bool keep) {
    if (!cJSON_IsObject(obj))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: __metadata__ is not an object",
                               label);
    for (const cJSON *m = obj->child; m; m = m->next) {
        if (!cJSON_IsString(m) || !m->valuestring)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "%s: __metadata__ value of '%s' is not a string", label,
                                   m->string);
        if (!keep) continue;
        char **nm = realloc(st->meta, (size_t)(st->n_meta + 1) * 2 * sizeof *nm);
        if (!nm) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", label);
        st->meta = nm;
        nm[2 * st->n_meta] = dup_str(m->string);
        nm[2 * st->n_meta + 1] = dup_str(m->valuestring);
        st->n_meta++;
        if (!nm[2 * st->n_meta - 2] || !nm[2 * st->n_meta - 1])
            return loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", label);
    }
    return LOOM_OK;
}

static loom_status parse_tensor(loom_safetensors *st, int shard, const char *label, const cJSON *j,
                                char *err, size_t err_n) {
    const char *name = j->string;
    if (!cJSON_IsObject(j))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: tensor '%s' is not a JSON object",
                               label, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: tensor '%s' has no string \"dtype\"", label, name);
    int d = st_dtype_find(dt->valuestring);
    if (d < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: tensor '%s' has unknown dtype '%.32s'", label, name,
                               dt->valuestring);
    if (!cJSON_IsArray(sh))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: tensor '%s' has no array \"shape\"", label, name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: tensor '%s': \"data_offsets\" must be an array [begin, end]",
                               label, name);
    st_tensor t = {.dtype = d, .shard = shard, .n_elements = 1};
    for (const cJSON *e = sh->child; e; e = e->next) {
        uint64_t v;
        if (t.n_dims == LOOM_ST_MAX_DIMS)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "%s: tensor '%s' has more than %d dims (loom's maximum)", label,
                                   name, LOOM_ST_MAX_DIMS);
        if (!json_uint(e, &v))
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "%s: tensor '%s': shape[%d] is not a non-negative integer",
                                   label, name, t.n_dims);
        t.shape[t.n_dims++] = (int64_t)v;
        /* v < 2^53 and the running product is < 2^53, so the product fits */
        if (v != 0 && (uint64_t)t.n_elements > (UINT64_C(1) << 53) / v)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "%s: tensor '%s': shape is too large", label, name);
        t.n_elements *= (int64_t)v;
    }
    if (!json_uint(off->child, &t.begin) || !json_uint(off->child->next, &t.end))
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets are not non-negative integers", label,
                               name);
    if (t.end < t.begin)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets end %llu is before begin %llu", label,
                               name, (unsigned long long)t.end, (unsigned long long)t.begin);
    uint64_t want = (uint64_t)t.n_elements * st_dtypes[d].size; /* < 2^56 */
    if (t.end - t.begin != want)
        return loom_model_fail(
            err, err_n, LOOM_ERR_FORMAT,
            "%s: tensor '%s': %llu bytes at data_offsets but shape x %s needs %llu", label, name,
            (unsigned long long)(t.end - t.begin), st_dtypes[d].name, (unsigned long long)want);
    if (st->n_tensors == st->cap_tensors) {
        int64_t cap = st->cap_tensors ? 2 * st->cap_tensors : 64;
        st_tensor *nt = realloc(st->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", label);
        st->tensors = nt;
        st->cap_tensors = cap;
    }
    t.name = dup_str(name);
    if (!t.name) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", label);
    st->tensors[st->n_tensors++] = t;
    return LOOM_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : (x > y); /* file order */
}
static int cmp_name(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x < y ? -1 : (x > y)); /* file order */
}

/* The tensors [first, st->n_tensors) of one shard must tile its data buffer. */
static loom_status check_tiling(loom_safetensors *st, int64_t first, const st_shard *sh, char *err,
                                size_t err_n) {
    int64_t n = st->n_tensors - first;
    if (n == 0) {
        if (sh->data_size != 0)
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "%s: no tensors but %zu bytes of data after the header",
                                   sh->label, sh->data_size);
        return LOOM_OK;
    }
    const st_tensor **idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", sh->label);
    for (int64_t i = 0; i < n; i++)
        idx[i] = &st->tensors[first + i];
    qsort(idx, (size_t)n, sizeof *idx, cmp_offset);
    loom_status s = LOOM_OK;
    uint64_t at = 0;
    const char *prev = NULL;
    for (int64_t i = 0; i < n && s == LOOM_OK; i++) {
        const st_tensor *t = idx[i];
        if (t->end > sh->data_size)
            s = loom_model_fail(
                err, err_n, LOOM_ERR_FORMAT,
                "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                "(%zu bytes; file truncated?)",
                sh->label, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                sh->data_size);
        else if (t->begin < at)
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "%s: tensor '%s' (data_offsets [%llu, %llu]) overlaps tensor '%s'",
                                sh->label, t->name, (unsigned long long)t->begin,
                                (unsigned long long)t->end, prev ? prev : "?");
        else if (t->begin > at)
            s = loom_model_fail(
                err, err_n, LOOM_ERR_FORMAT,
                "%s: tensor '%s' starts at %llu, leaving a hole after byte %llu of the data",
                sh->label, t->name, (unsigned long long)t->begin, (unsigned long long)at);
        at = t->end;
        prev = t->name;
    }
    free(idx);
    if (s == LOOM_OK && at != sh->data_size)
        s = loom_model_fail(
            err, err_n, LOOM_ERR_FORMAT,
            "%s: tensors cover %llu bytes of data but %zu follow the header (trailing "
            "bytes)",
            sh->label, (unsigned long long)at, sh->data_size);
    return s;
}

static loom_status parse_shard(loom_safetensors *st, int shard, char *err, size_t err_n) {
    st_shard *sh = &st->shards[shard];
    const char *label = sh->label;
    if (sh->size < 8)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: %zu bytes, too short for the 8-byte header length", label,
                               sh->size);
    uint64_t hn = le64(sh->base);
    if (hn > LOOM_ST_MAX_HEADER)
        return loom_model_fail(
            err, err_n, LOOM_ERR_FORMAT,
            "%s: header length %llu is absurd (more than %u bytes; not a safetensors "
            "file?)",
            label, (unsigned long long)hn, LOOM_ST_MAX_HEADER);
    if (hn > sh->size - 8)
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: header length %llu runs past the end of the file (%zu bytes; "
                               "truncated?)",
                               label, (unsigned long long)hn, sh->size);
    const char *h = (const char *)sh->base + 8;
    if (hn < 2 || h[0] != '{')
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                               "%s: header does not start with '{' (not a JSON object)", label);
    sh->data = sh->base + 8 + hn;
    sh->data_size = sh->size - 8 - (size_t)hn;
    /* NUL-terminated copy: cJSON must never read past the header */
    char *txt = malloc((size_t)hn + 1);
    if (!txt) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", label);
    memcpy(txt, h, (size_t)hn);
    txt[hn] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(txt, &end, 0);
    loom_status s = LOOM_OK;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= txt && at <= txt + hn ? (size_t)(at - txt) : 0;
        s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                            "%s: header is not valid JSON (near byte %zu)", label, pos);
    } else if (!cJSON_IsObject(root)) {
        s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: header JSON is not an object", label);
    } else {
        for (const char *p = end; p < txt + hn; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                    "%s: unexpected bytes after the header JSON (at byte %zu)",
                                    label, (size_t)(p - txt));
                break;
            }
    }
    int64_t first = st->n_tensors;
    bool seen_meta = false;
    for (const cJSON *j = root && s == LOOM_OK ? root->child : NULL; j && s == LOOM_OK;
         j = j->next) {
        if (!j->string) {
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: header member without a name",
                                label);
        } else if (!strcmp(j->string, "__metadata__")) {
            if (seen_meta)
                s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: duplicate __metadata__",
                                    label);
            else
                s = add_meta(st, label, j, err, err_n, shard == 0);
            seen_meta = true;
        } else {
            s = parse_tensor(st, shard, label, j, err, err_n);
        }
    }
    cJSON_Delete(root);
    free(txt);
    if (s == LOOM_OK) s = check_tiling(st, first, sh, err, err_n);
    return s;
}

/* Sort the name index and reject duplicates (within or across shards). */
static loom_status index_names(loom_safetensors *st, char *err, size_t err_n) {
    size_t n = st->n_tensors ? (size_t)st->n_tensors : 1;
    const st_tensor **p = malloc(n * sizeof *p);
    st->by_name = malloc(n * sizeof *st->by_name);
    if (!p || !st->by_name) {
        free(p);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "safetensors: out of memory");
    }
    for (int64_t i = 0; i < st->n_tensors; i++)
        p[i] = &st->tensors[i];
    qsort(p, (size_t)st->n_tensors, sizeof *p, cmp_name);
    for (int64_t i = 0; i < st->n_tensors; i++)
        st->by_name[i] = p[i] - st->tensors;
    free(p);
    for (int64_t i = 1; i < st->n_tensors; i++) {
        const st_tensor *a = &st->tensors[st->by_name[i - 1]], *b = &st->tensors[st->by_name[i]];
        if (!strcmp(a->name, b->name))
            return loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                   "%s: duplicate tensor name '%s'%s%s", st->shards[b->shard].label,
                                   b->name, a->shard != b->shard ? " (also in " : "",
                                   a->shard != b->shard ? st->shards[a->shard].label : "");
    }
    return LOOM_OK;
}

static loom_safetensors *new_ctx(int n_shards) {
    loom_safetensors *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->shards = calloc((size_t)n_shards, sizeof *st->shards);
    if (!st->shards) {
        free(st);
        return NULL;
    }
    st->n_shards = n_shards;
    return st;
}

loom_status loom_safetensors_open_memory(const void *buf, size_t n, loom_safetensors **out,
                                         char *err, size_t err_n) {
    if (out) *out = NULL;
    if (err && err_n) err[0] = '\0';
    if (!out || (!buf && n))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "safetensors: NULL argument");
    loom_safetensors *st = new_ctx(1);
    if (!st || !(st->shards[0].label = dup_str("<memory>"))) {
        loom_safetensors_close(st);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "safetensors: out of memory");
    }
    st->shards[0].base = buf;
    st->shards[0].size = n;
    loom_status s = parse_shard(st, 0, err, err_n);
    if (s == LOOM_OK) s = index_names(st, err, err_n);
    if (s != LOOM_OK) {
        loom_safetensors_close(st);
        return s;
    }
    *out = st;
    return LOOM_OK;
}

/* mmap path into shard i (size 0 files are "mapped" as an empty range). */
static loom_status map_shard(loom_safetensors *st, int i, const char *path, char *err,
                             size_t err_n) {
    st_shard *sh = &st->shards[i];
    if (!(sh->label = dup_str(path)))
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "safetensors: out of memory");
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_IO, "%s: cannot open: %s", path,
                               strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return loom_model_fail(err, err_n, LOOM_ERR_IO, "%s: not a regular file", path);
    }
    sh->size = (size_t)sb.st_size;
    sh->mapped = true;
    if (sh->size == 0) {
        static const uint8_t empty[1];
        sh->base = empty;
        sh->mapped = false;
        close(fd);
        return LOOM_OK;
    }
    void *p = mmap(NULL, sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        sh->mapped = false;
        return loom_model_fail(err, err_n, LOOM_ERR_IO, "%s: mmap failed: %s", path,
                               strerror(errno));
    }
    sh->base = p;
    return LOOM_OK;
}

static char *read_text(const char *path, size_t *n, char *err, size_t err_n, loom_status *s) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *s = loom_model_fail(err, err_n, LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 1 >= cap) {
            cap = cap ? 2 * cap : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                *s = loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len - 1, f);
        len += k;
        if (k == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        *s = loom_model_fail(err, err_n, LOOM_ERR_IO, "%s: read error", path);
        return NULL;
    }
    buf[len] = '\0';
    *n = len;
    *s = LOOM_OK;
    return buf;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static loom_status open_index(const char *path, loom_safetensors **out, char *err, size_t err_n) {
    loom_status s;
    size_t n;
    char *txt = read_text(path, &n, err, err_n, &s);
    if (!txt) return s;
    cJSON *root = strlen(txt) == n ? cJSON_ParseWithOpts(txt, NULL, 1) : NULL;
    free(txt);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: %s", path,
                               root ? "no \"weight_map\" object" : "not valid JSON");
    }
    /* the distinct shard file names, sorted */
    int n_map = cJSON_GetArraySize(wm), n_files = 0;
    const char **files = calloc(n_map ? (size_t)n_map : 1, sizeof *files);
    loom_safetensors *st = NULL;
    s = files ? LOOM_OK : loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", path);
    for (const cJSON *e = wm->child; e && s == LOOM_OK; e = e->next) {
        const char *f = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!f || !f[0] || strchr(f, '/') || strchr(f, '\\') || !strcmp(f, ".") || !strcmp(f, ".."))
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "%s: weight_map entry '%s' must name a file in the same directory",
                                path, e->string ? e->string : "?");
        else
            files[n_files++] = f;
    }
    if (s == LOOM_OK && n_files == 0)
        s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "%s: weight_map is empty", path);
    if (s == LOOM_OK) {
        qsort(files, (size_t)n_files, sizeof *files, cmp_cstr);
        int u = 0;
        for (int i = 0; i < n_files; i++)
            if (u == 0 || strcmp(files[u - 1], files[i])) files[u++] = files[i];
        n_files = u;
        st = new_ctx(n_files);
        if (!st) s = loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", path);
    }
    /* directory of the index */
    const char *slash = strrchr(path, '/');
    size_t dir_n = slash ? (size_t)(slash - path) + 1 : 0;
    for (int i = 0; i < n_files && s == LOOM_OK; i++) {
        size_t fn = strlen(files[i]);
        char *p = malloc(dir_n + fn + 1);
        if (!p) {
            s = loom_model_fail(err, err_n, LOOM_ERR_OOM, "%s: out of memory", path);
            break;
        }
        memcpy(p, path, dir_n);
        memcpy(p + dir_n, files[i], fn + 1);
        s = map_shard(st, i, p, err, err_n);
        free(p);
        if (s == LOOM_OK) s = parse_shard(st, i, err, err_n);
    }
    if (s == LOOM_OK) s = index_names(st, err, err_n);
    /* every weight_map entry must be in the shard it names */
    for (const cJSON *e = wm->child; e && s == LOOM_OK; e = e->next) {
        int64_t t = loom_safetensors_find(st, e->string);
        const char **f = bsearch(&e->valuestring, files, (size_t)n_files, sizeof *files, cmp_cstr);
        int shard = f ? (int)(f - files) : -1;
        if (t < 0)
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "%s: weight_map lists tensor '%s' in %s but no shard holds it",
                                path, e->string, e->valuestring);
        else if (st->tensors[t].shard != shard)
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "%s: weight_map puts tensor '%s' in %s but it is in %s", path,
                                e->string, e->valuestring, st->shards[st->tensors[t].shard].label);
    }
    free(files);
    cJSON_Delete(root);
    if (s != LOOM_OK) {
        loom_safetensors_close(st);
        return s;
    }
    *out = st;
    return LOOM_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

loom_status loom_safetensors_open(const char *path, loom_safetensors **out, char *err,
                                  size_t err_n) {
    if (out) *out = NULL;
    if (err && err_n) err[0] = '\0';
    if (!path || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "safetensors: NULL argument");
    if (is_dir(path)) {
        size_t n = strlen(path) + 64;
        char *p = malloc(n);
        if (!p) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "safetensors: out of memory");
        snprintf(p, n, "%s/model.safetensors", path);
        if (!exists(p)) snprintf(p, n, "%s/model.safetensors.index.json", path);
        loom_status s = exists(p)
                            ? loom_safetensors_open(p, out, err, err_n)
                            : loom_model_fail(err, err_n, LOOM_ERR_IO,
                                              "%s: no model.safetensors or "
                                              "model.safetensors.index.json in this directory",
                                              path);
        free(p);
        return s;
    }
    if (ends_with(path, ".json")) return open_index(path, out, err, err_n);
    loom_safetensors *st = new_ctx(1);
    if (!st) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "safetensors: out of memory");
    loom_status s = map_shard(st, 0, path, err, err_n);
    if (s == LOOM_OK) s = parse_shard(st, 0, err, err_n);
    if (s == LOOM_OK) s = index_names(st, err, err_n);
    if (s != LOOM_OK) {
        loom_safetensors_close(st);
        return s;
    }
    *out = st;
    return LOOM_OK;
}

/* -------------------------------------------------------------- accessors */

static loom_status acc_err(loom_safetensors *st, loom_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static loom_status acc_err(loom_safetensors *st, loom_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loom_model_vfail(st->err, sizeof st->err, s, fmt, ap);
    va_end(ap);
    return s;
}

const char *loom_safetensors_error(const loom_safetensors *st) {
    return st ? st->err : "safetensors: NULL context";
}
int loom_safetensors_n_shards(const loom_safetensors *st) {
    return st ? st->n_shards : 0;
}
int64_t loom_safetensors_n_tensors(const loom_safetensors *st) {
    return st ? st->n_tensors : 0;
}

int64_t loom_safetensors_find(const loom_safetensors *st, const char *name) {
    if (!st || !name) return -1;
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[st->by_name[mid]].name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

loom_status loom_safetensors_tensor(loom_safetensors *st, int64_t i, loom_st_tensor_info *out) {
    if (!st || !out) return LOOM_ERR_INVALID_ARG;
    if (i < 0 || i >= st->n_tensors)
        return acc_err(st, LOOM_ERR_INVALID_ARG, "tensor index %lld out of range (0..%lld)",
                       (long long)i, (long long)st->n_tensors - 1);
    const st_tensor *t = &st->tensors[i];
    const st_shard *sh = &st->shards[t->shard];
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->st_dtype = st_dtypes[t->dtype].name;
    out->elem_size = st_dtypes[t->dtype].size;
    out->n_dims = t->n_dims;
    for (int d = 0; d < LOOM_ST_MAX_DIMS; d++) {
        out->shape[d] = d < t->n_dims ? t->shape[d] : 0;
        out->ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
    }
    out->n_elements = t->n_elements;
    out->nbytes = (size_t)(t->end - t->begin);
    out->data = sh->data + t->begin;
    out->shard = t->shard;
    return LOOM_OK;
}

loom_status loom_safetensors_tensor_dtype(loom_safetensors *st, int64_t i, loom_dtype *out) {
    if (!st || !out) return LOOM_ERR_INVALID_ARG;
    if (i < 0 || i >= st->n_tensors)
        return acc_err(st, LOOM_ERR_INVALID_ARG, "tensor index %lld out of range (0..%lld)",
                       (long long)i, (long long)st->n_tensors - 1);
    const st_tensor *t = &st->tensors[i];
    if (st_dtypes[t->dtype].loom < 0)
        return acc_err(st, LOOM_ERR_UNSUPPORTED,
                       "tensor '%s' has dtype %s; loom supports F32, F16 and BF16", t->name,
                       st_dtypes[t->dtype].name);
    *out = (loom_dtype)st_dtypes[t->dtype].loom;
    return LOOM_OK;
}

const char *loom_safetensors_metadata(const loom_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

/* ------------------------------------------------------- quantize-on-load */

static bool dst_ok(loom_dtype t) {
    return loom_dtype_is_float(t) || t == LOOM_Q8_0 || t == LOOM_Q4_0 || loom_dtype_is_nf4(t);
}

/* Does tensor t fit dst's blocks? */
static bool fits_blocks(const st_tensor *t, loom_dtype dst) {
    int64_t bs = loom_dtype_block_size(dst);
    if (loom_dtype_is_nf4(dst)) return t->n_elements % bs == 0;
    int64_t inner = t->n_dims ? t->shape[t->n_dims - 1] : 1;
    return inner % bs == 0;
}

loom_status loom_safetensors_nbytes_as(loom_safetensors *st, int64_t i, loom_dtype dst_t,
                                       size_t *out) {
    loom_dtype src;
    if (!st || !out) return LOOM_ERR_INVALID_ARG;
    LOOM_TRY(loom_safetensors_tensor_dtype(st, i, &src));
    const st_tensor *t = &st->tensors[i];
    if (!dst_ok(dst_t))
        return acc_err(st, LOOM_ERR_INVALID_ARG,
                       "tensor '%s': cannot load as %s (f32, f16, bf16, q8_0, q4_0, nf4, nf4_dq)",
                       t->name, loom_dtype_name(dst_t));
    if (!fits_blocks(t, dst_t))
        return acc_err(
            st, LOOM_ERR_INVALID_ARG, "tensor '%s': %s needs %s a multiple of %lld (got %lld)",
            t->name, loom_dtype_name(dst_t),
            loom_dtype_is_nf4(dst_t) ? "the element count" : "the innermost dim",
            (long long)loom_dtype_block_size(dst_t),
            (long long)(loom_dtype_is_nf4(dst_t) ? t->n_elements
                                                 : (t->n_dims ? t->shape[t->n_dims - 1] : 1)));
    *out = loom_dtype_nbytes(dst_t, t->n_elements);
    return LOOM_OK;
}

loom_status loom_safetensors_read(loom_safetensors *st, int64_t i, loom_dtype dst_t, void *dst,
                                  size_t dst_n) {
    size_t need;
    LOOM_TRY(loom_safetensors_nbytes_as(st, i, dst_t, &need));
    const st_tensor *t = &st->tensors[i];
    if (!dst || dst_n < need)
        return acc_err(st, LOOM_ERR_INVALID_ARG,
                       "tensor '%s': destination holds %zu bytes, %s needs %zu", t->name,
                       dst ? dst_n : 0, loom_dtype_name(dst_t), need);
    if (t->n_elements == 0) return LOOM_OK;
    loom_dtype src = (loom_dtype)st_dtypes[t->dtype].loom;
    const void *data = st->shards[t->shard].data + t->begin;
    loom_status s = loom_convert(src, data, dst_t, dst, t->n_elements);
    if (s != LOOM_OK)
        return acc_err(st, s, "tensor '%s': converting %s to %s failed: %s", t->name,
                       st_dtypes[t->dtype].name, loom_dtype_name(dst_t), loom_status_str(s));
    return LOOM_OK;
}

loom_status loom_safetensors_load_dtype(loom_safetensors *st, int64_t i, loom_dtype want,
                                        loom_dtype *out) {
    loom_dtype src;
    if (!st || !out) return LOOM_ERR_INVALID_ARG;
    LOOM_TRY(loom_safetensors_tensor_dtype(st, i, &src));
    const st_tensor *t = &st->tensors[i];
    if (!dst_ok(want))
        return acc_err(st, LOOM_ERR_INVALID_ARG, "cannot load weights as %s",
                       loom_dtype_name(want));
    if (t->n_dims <= 1)
        *out = LOOM_F32;
    else if (loom_dtype_is_quantized(want) && !fits_blocks(t, want))
        *out = LOOM_F16;
    else
        *out = want;
    return LOOM_OK;
}

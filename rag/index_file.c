/* rag/index_file.c - the index file (format version 1.1, ADR 0026):
 *
 *   header   128 bytes: magic "LOOMVIDX", version, sizes, HNSW parameters,
 *            and at byte 124 the CRC-32C of bytes 0..123 plus the table
 *   table    n_sections x 32 bytes: {u32 id, u32 crc32c, u64 offset, u64 size, u64 0}
 *   sections each at a 64-byte aligned offset, so the mapping can be used
 *            in place: vectors, int8 scales, tombstones, metadata records,
 *            metadata strings, encoder name, graph levels, level-0 lists,
 *            upper-list offsets, upper lists, and (1.1) the text settings
 *
 * Minor versions: 1.1 adds the optional section 'text settings' and writes
 * its minor number in the header word after the entry point (0 in 1.0
 * files). A 1.0 loom skips the unknown section and reads 1.1 files; this
 * loom reads 1.0 files as indexes without text settings.
 *
 * Little-endian throughout. Saving writes PATH.tmp.PID, fsyncs it, renames
 * it over PATH and fsyncs the directory: a crash at any point leaves the old
 * file or the new one, never a mix. Loading maps the file read-only and
 * checks everything a search would touch (sizes, ids, string bounds), so a
 * bad file gives one line of error and never a crash; the CRCs catch silent
 * corruption of the data as well. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rag/index_impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index file format is little-endian; a big-endian port needs byte swaps here"
#endif

#define MAGIC        "LOOMVIDX"
#define VERSION      1u
#define MINOR        1u
#define HDR          128u
#define ALIGN        64u
#define MAX_SECTIONS 32u

enum {
    S_VECS = 1,
    S_SCALES,
    S_DEAD,
    S_META,
    S_POOL,
    S_ENCODER,
    S_LEVELS,
    S_L0,
    S_UOFF,
    S_UPOOL,
    S_TEXT, /* 1.1 */
    S_LAST = S_TEXT
};
static const char *const section_name[] = {
    "?",       "vectors", "scales",        "tombstones",    "metadata",    "strings",
    "encoder", "levels",  "level-0 links", "upper offsets", "upper links", "text settings"};

typedef struct hdr {
    char magic[8];
    uint32_t version, header_size, dim, vtype, metric, n_sections;
    uint64_t n_rows, n_dead, file_size;
    uint32_t has_graph, M, efc;
    int32_t max_level;
    uint32_t entry, minor; /* minor: 0 in 1.0 files */
    uint64_t seed, upool_len, pool_len;
    uint8_t reserved[20];
    uint32_t crc;
} hdr;
_Static_assert(sizeof(hdr) == HDR, "header is 128 bytes");

typedef struct sect {
    uint32_t id, crc;
    uint64_t offset, size, reserved;
} sect;
_Static_assert(sizeof(sect) == 32, "section entry is 32 bytes");

/* The 'text settings' section (1.1): loom_rag_text_settings, then zeros. */
typedef struct text_sect {
    uint32_t chunk, overlap, encoder_dim, normalize, max_tokens, reserved[3];
} text_sect;
_Static_assert(sizeof(text_sect) == 32, "text settings section is 32 bytes");

typedef struct part {
    uint32_t id;
    const void *data;
    uint64_t size;
} part;

static size_t list_parts(const loom_rag_index *ix, part *p, text_sect *ts) {
    size_t k = 0, n = ix->n;
    p[k++] = (part){S_VECS, ix->vecs, n * ix->row_bytes};
    if (ix->vtype == LOOM_RAG_I8) p[k++] = (part){S_SCALES, ix->scales, n * 4};
    p[k++] = (part){S_DEAD, ix->dead, n};
    p[k++] = (part){S_META, ix->meta, n * sizeof(loom_rag_meta_rec)};
    p[k++] = (part){S_POOL, ix->pool, ix->pool_len};
    p[k++] = (part){S_ENCODER, ix->encoder, strlen(ix->encoder)};
    if (ix->has_graph) {
        p[k++] = (part){S_LEVELS, ix->levels, n};
        p[k++] = (part){S_L0, ix->l0, n * (size_t)(1 + ix->M0) * 4};
        p[k++] = (part){S_UOFF, ix->uoff, n * 4};
        p[k++] = (part){S_UPOOL, ix->upool, ix->upool_len * 4};
    }
    if (ix->has_text) {
        memset(ts, 0, sizeof *ts);
        ts->chunk = ix->text.chunk, ts->overlap = ix->text.overlap;
        ts->encoder_dim = ix->text.encoder_dim, ts->normalize = ix->text.normalize;
        ts->max_tokens = ix->text.max_tokens;
        p[k++] = (part){S_TEXT, ts, sizeof *ts};
    }
    return k;
}

static uint64_t align_up(uint64_t x) {
    return (x + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
}

static bool write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

loom_status loom_rag_index_save(loom_rag_index *ix, const char *path) {
    if (!ix || !path || !*path) return LOOM_ERR_INVALID_ARG;
    pthread_rwlock_rdlock(&ix->lock);
    part parts[MAX_SECTIONS];
    text_sect ts;
    const size_t np = list_parts(ix, parts, &ts);
    hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, 8);
    h.version = VERSION;
    h.minor = MINOR;
    h.header_size = HDR;
    h.dim = (uint32_t)ix->dim;
    h.vtype = ix->vtype;
    h.metric = ix->metric;
    h.n_sections = (uint32_t)np;
    h.n_rows = ix->n;
    h.n_dead = ix->n_dead;
    h.has_graph = ix->has_graph;
    if (ix->has_graph) {
        h.M = (uint32_t)ix->M;
        h.efc = (uint32_t)ix->efc;
        h.max_level = ix->max_level;
        h.entry = ix->entry;
        h.seed = ix->seed;
        h.upool_len = ix->upool_len;
    }
    h.pool_len = ix->pool_len;
    sect table[MAX_SECTIONS];
    memset(table, 0, sizeof table);
    uint64_t off = align_up(HDR + np * sizeof(sect));
    for (size_t i = 0; i < np; i++) {
        table[i].id = parts[i].id;
        table[i].offset = off;
        table[i].size = parts[i].size;
        table[i].crc = loom_rag__crc32c(0, parts[i].data, parts[i].size);
        off = align_up(off + parts[i].size);
    }
    h.file_size = off;
    h.crc = loom_rag__crc32c(loom_rag__crc32c(0, &h, offsetof(hdr, crc)), table, np * sizeof(sect));

    size_t tn = strlen(path) + 32;
    char *tmp = malloc(tn);
    loom_status st = LOOM_OK;
    int fd = -1;
    if (!tmp) {
        st = loom_rag__fail(ix, LOOM_ERR_OOM, "out of memory");
        goto done;
    }
    snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = loom_rag__fail(ix, LOOM_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    static const char zeros[ALIGN];
    uint64_t at = HDR + np * sizeof(sect);
    bool ok = write_all(fd, &h, sizeof h) && write_all(fd, table, np * sizeof(sect));
    for (size_t i = 0; ok && i < np; i++) {
        ok = write_all(fd, zeros, table[i].offset - at) &&
             write_all(fd, parts[i].data, parts[i].size);
        at = table[i].offset + parts[i].size;
    }
    ok = ok && write_all(fd, zeros, h.file_size - at);
    if (!ok || fsync(fd) != 0) {
        st = loom_rag__fail(ix, LOOM_ERR_IO, "writing %s failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = loom_rag__fail(ix, LOOM_ERR_IO, "writing %s failed: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = loom_rag__fail(ix, LOOM_ERR_IO, "cannot rename %s to %s: %s", tmp, path,
                            strerror(errno));
        goto done;
    }
    /* The rename itself is durable only once the directory is synced. */
    {
        char *dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
            int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
done:
    if (fd >= 0) close(fd);
    if (st != LOOM_OK && tmp) unlink(tmp);
    free(tmp);
    pthread_rwlock_unlock(&ix->lock);
    return st;
}

/* ---- loading ---- */

#define BAD(st_, ...) (snprintf(err, err_n, __VA_ARGS__), (st_))

static loom_status parse(const uint8_t *base, size_t size, unsigned flags, loom_rag_index **out,
                         char *err, size_t err_n) {
    if (size < HDR)
        return BAD(LOOM_ERR_FORMAT,
                   "file is %zu bytes, too short for the %u-byte header (truncated?)", size, HDR);
    hdr h;
    memcpy(&h, base, sizeof h);
    if (memcmp(h.magic, MAGIC, 8))
        return BAD(LOOM_ERR_FORMAT, "not a loom vector index (bad magic)");
    if (h.version != VERSION)
        return BAD(LOOM_ERR_UNSUPPORTED, "index format version %u; this loom reads version %u",
                   h.version, VERSION);
    if (h.header_size != HDR)
        return BAD(LOOM_ERR_FORMAT, "header size %u, expected %u", h.header_size, HDR);
    if (h.file_size != size)
        return BAD(LOOM_ERR_FORMAT, "%s: header says %" PRIu64 " bytes, file has %zu",
                   size < h.file_size ? "truncated" : "trailing bytes", h.file_size, size);
    if (h.n_sections == 0 || h.n_sections > MAX_SECTIONS)
        return BAD(LOOM_ERR_FORMAT, "%u sections (1..%u allowed)", h.n_sections, MAX_SECTIONS);
    const size_t tbytes = (size_t)h.n_sections * sizeof(sect);
    if (HDR + tbytes > size)
        return BAD(LOOM_ERR_FORMAT, "section table runs past the end of the file");
    const uint32_t crc =
        loom_rag__crc32c(loom_rag__crc32c(0, base, offsetof(hdr, crc)), base + HDR, tbytes);
    if (!(flags & LOOM_RAG_LOAD_NO_VERIFY) && crc != h.crc)
        return BAD(LOOM_ERR_FORMAT, "header checksum mismatch (corrupted file)");
    if (h.dim < 1 || h.dim > 65536 || h.vtype > LOOM_RAG_I8 || h.metric > LOOM_RAG_L2)
        return BAD(LOOM_ERR_FORMAT, "bad header: dim %u, type %u, metric %u", h.dim, h.vtype,
                   h.metric);
    if (h.n_rows > 0xfffffff0u || h.n_dead > h.n_rows)
        return BAD(LOOM_ERR_FORMAT, "bad header: %" PRIu64 " rows, %" PRIu64 " deleted", h.n_rows,
                   h.n_dead);
    if (h.has_graph > 1 || (h.has_graph && (h.M < 4 || h.M > LOOM_RAG_MAX_M || h.efc < h.M)))
        return BAD(LOOM_ERR_FORMAT, "bad graph parameters: M %u, efConstruction %u", h.M, h.efc);
    if (h.pool_len > 0xffffffffu || h.upool_len > 0xfffffff0u)
        return BAD(LOOM_ERR_FORMAT, "bad header: string or link pool too large");

    loom_rag_index *ix = NULL;
    loom_status st =
        loom_rag__alloc_common((int)h.dim, (loom_rag_vtype)h.vtype, (loom_rag_metric)h.metric, &ix);
    if (st != LOOM_OK) return BAD(st, "out of memory");
    const size_t n = (size_t)h.n_rows;
    const void *where[S_LAST + 1] = {0};
    size_t enc_size = 0;
    for (uint32_t i = 0; i < h.n_sections; i++) {
        sect s;
        memcpy(&s, base + HDR + i * sizeof(sect), sizeof s);
        if (s.offset % ALIGN || s.offset < HDR + tbytes || s.offset > size ||
            s.size > size - s.offset) {
            st = BAD(LOOM_ERR_FORMAT, "section %u lies outside the file or is misaligned", i);
            goto fail;
        }
        if (s.id == 0 || s.id > S_LAST) continue; /* a later minor version's extra: skip */
        if (where[s.id]) {
            st = BAD(LOOM_ERR_FORMAT, "section '%s' appears twice", section_name[s.id]);
            goto fail;
        }
        uint64_t want;
        switch (s.id) {
        case S_VECS:
            want = n * ix->row_bytes;
            break;
        case S_SCALES:
            want = n * 4;
            break;
        case S_DEAD:
        case S_LEVELS:
            want = n;
            break;
        case S_META:
            want = n * sizeof(loom_rag_meta_rec);
            break;
        case S_POOL:
            want = h.pool_len;
            break;
        case S_ENCODER:
            want = s.size < sizeof ix->encoder ? s.size : UINT64_MAX;
            break;
        case S_L0:
            want = n * (uint64_t)(1 + 2 * h.M) * 4;
            break;
        case S_UOFF:
            want = n * 4;
            break;
        case S_TEXT:
            want = sizeof(text_sect);
            break;
        default:
            want = h.upool_len * 4;
            break;
        }
        if (s.size != want) {
            st = BAD(LOOM_ERR_FORMAT, "section '%s' is %" PRIu64 " bytes, expected %" PRIu64,
                     section_name[s.id], s.size, want);
            goto fail;
        }
        if (!(flags & LOOM_RAG_LOAD_NO_VERIFY) &&
            loom_rag__crc32c(0, base + s.offset, s.size) != s.crc) {
            st = BAD(LOOM_ERR_FORMAT, "section '%s' checksum mismatch (corrupted file)",
                     section_name[s.id]);
            goto fail;
        }
        where[s.id] = base + s.offset;
        if (s.id == S_ENCODER) enc_size = (size_t)s.size;
    }
    const int need[] = {S_VECS, S_DEAD, S_META, S_POOL, S_ENCODER};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!where[need[i]]) {
            st = BAD(LOOM_ERR_FORMAT, "section '%s' is missing", section_name[need[i]]);
            goto fail;
        }
    if ((h.vtype == LOOM_RAG_I8) != (where[S_SCALES] != NULL)) {
        st = BAD(LOOM_ERR_FORMAT, "int8 scales section %s",
                 where[S_SCALES] ? "present for a non-int8 index" : "missing");
        goto fail;
    }
    if (h.has_graph && (!where[S_LEVELS] || !where[S_L0] || !where[S_UOFF] || !where[S_UPOOL])) {
        st = BAD(LOOM_ERR_FORMAT, "graph sections missing");
        goto fail;
    }
    ix->mapped = true;
    ix->n = ix->cap = (uint32_t)n;
    ix->vecs = (uint8_t *)where[S_VECS];
    ix->scales = (float *)where[S_SCALES];
    ix->dead = (uint8_t *)where[S_DEAD];
    ix->meta = (loom_rag_meta_rec *)where[S_META];
    ix->pool = (char *)where[S_POOL];
    ix->pool_len = ix->pool_cap = h.pool_len;
    /* The mapping is read-only: the arrays are only written after to_heap. */
    memcpy(ix->encoder, where[S_ENCODER], enc_size);
    ix->encoder[enc_size] = '\0';
    if (strlen(ix->encoder) != enc_size) {
        st = BAD(LOOM_ERR_FORMAT, "encoder name holds a NUL byte");
        goto fail;
    }
    if (where[S_TEXT]) {
        text_sect t;
        memcpy(&t, where[S_TEXT], sizeof t);
        if (t.chunk < 1 || t.overlap >= t.chunk || t.encoder_dim != h.dim || t.normalize > 1) {
            st = BAD(LOOM_ERR_FORMAT,
                     "bad text settings: chunk %u, overlap %u, encoder dim %u (index %u), "
                     "normalize %u",
                     t.chunk, t.overlap, t.encoder_dim, h.dim, t.normalize);
            goto fail;
        }
        ix->has_text = true;
        ix->text = (loom_rag_text_settings){.chunk = t.chunk,
                                            .overlap = t.overlap,
                                            .encoder_dim = t.encoder_dim,
                                            .normalize = t.normalize,
                                            .max_tokens = t.max_tokens};
    }
    uint64_t dead = 0;
    for (size_t i = 0; i < n; i++) {
        if (ix->dead[i] > 1) {
            st = BAD(LOOM_ERR_FORMAT, "row %zu: tombstone byte %u is not 0 or 1", i, ix->dead[i]);
            goto fail;
        }
        dead += ix->dead[i];
        const loom_rag_meta_rec *r = &ix->meta[i];
        const uint32_t o[3] = {r->src_off, r->title_off, r->tstr_off},
                       l[3] = {r->src_len, r->title_len, r->tstr_len};
        for (int j = 0; j < 3; j++)
            if ((uint64_t)o[j] + l[j] >= h.pool_len || ix->pool[o[j] + l[j]] != '\0' ||
                memchr(ix->pool + o[j], '\0', l[j])) {
                st = BAD(LOOM_ERR_FORMAT, "row %zu: metadata string outside the string section", i);
                goto fail;
            }
        if (r->byte_end < r->byte_begin) {
            st = BAD(LOOM_ERR_FORMAT, "row %zu: byte range end before begin", i);
            goto fail;
        }
        if (ix->scales && !isfinite(ix->scales[i])) {
            st = BAD(LOOM_ERR_FORMAT, "row %zu: int8 scale is not finite", i);
            goto fail;
        }
    }
    if (dead != h.n_dead) {
        st = BAD(LOOM_ERR_FORMAT, "header says %" PRIu64 " deleted rows, tombstones say %" PRIu64,
                 h.n_dead, dead);
        goto fail;
    }
    ix->n_dead = (uint32_t)dead;
    if (h.has_graph) {
        ix->has_graph = true;
        ix->M = (int)h.M;
        ix->M0 = 2 * (int)h.M;
        ix->efc = (int)h.efc;
        ix->seed = h.seed;
        ix->max_level = h.max_level;
        ix->entry = h.entry;
        ix->levels = (uint8_t *)where[S_LEVELS];
        ix->l0 = (uint32_t *)where[S_L0];
        ix->uoff = (uint32_t *)where[S_UOFF];
        ix->upool = (uint32_t *)where[S_UPOOL];
        ix->upool_len = ix->upool_cap = h.upool_len;
        char why[160];
        if (!loom_rag__hnsw_check(ix, why, sizeof why)) {
            st = BAD(LOOM_ERR_FORMAT, "bad graph: %s", why);
            goto fail;
        }
    }
    *out = ix;
    return LOOM_OK;
fail:
    ix->mapped = true; /* nothing of ours to free; the caller unmaps */
    ix->map = NULL;
    loom_rag_index_free(ix);
    return st;
}

loom_status loom_rag_index_load_mem(const void *data, size_t size, unsigned flags,
                                    loom_rag_index **out, char *err, size_t err_n) {
    if (!out || (!data && size)) return BAD(LOOM_ERR_INVALID_ARG, "no buffer");
    *out = NULL;
    if ((uintptr_t)data % ALIGN) return BAD(LOOM_ERR_INVALID_ARG, "buffer is not 64-byte aligned");
    return parse(data, size, flags, out, err, err_n);
}

loom_status loom_rag_index_load(const char *path, unsigned flags, loom_rag_index **out, char *err,
                                size_t err_n) {
    if (!out || !path) return BAD(LOOM_ERR_INVALID_ARG, "no path");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return BAD(LOOM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return BAD(LOOM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < HDR) {
        close(fd);
        return BAD(LOOM_ERR_FORMAT,
                   "%s: file is %zu bytes, too short for the %u-byte header (truncated?)", path,
                   size, HDR);
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return BAD(LOOM_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    char why[200];
    loom_status st = parse(m, size, flags, out, why, sizeof why);
    if (st != LOOM_OK) {
        munmap(m, size);
        return BAD(st, "%s: %s", path, why);
    }
    (*out)->map = m;
    (*out)->map_len = size;
    (*out)->map_is_mmap = true;
    return LOOM_OK;
}

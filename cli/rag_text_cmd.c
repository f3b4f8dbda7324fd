/* cli/rag_text_cmd.c - `loom rag index` and text queries for `loom rag
 * search`: documents (cli/rag_docs.c) -> sentence-aware token chunks
 * (rag/chunk.c) -> a loom encoder (model/) -> the vector index (rag/).
 * docs/adr/0026-vector-index.md, addendum "text". */
#define _XOPEN_SOURCE 700
#include "cli/rag_text.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/rag_docs.h"
#include "loom/encoder.h"
#include "rag/chunk.h"
#ifdef LOOM_HAVE_LIBPQ
#include "rag/store_pg.h"
#endif

enum { BATCH = 32 };

static void index_usage(FILE *f) {
    fprintf(f,
            "usage: loom rag index --docs DIR|FILE.jsonl (-o INDEX | --store URL) [-m ENCODER] "
            "[options]\n"
            "  --docs PATH          a directory (.html/.htm, .md/.markdown, .txt/.rst, walked\n"
            "                       recursively), one such file, or a .jsonl file of\n"
            "                       {\"text\": ..., \"title\": ...} objects\n"
            "  -o INDEX             index file; when it exists it is updated: new and changed\n"
            "                       sources are (re)indexed, removed ones deleted\n"
            "  --store URL          (also) PostgreSQL + pgvector: rows with metadata and chunk\n"
            "                       text, updated the same way\n"
            "  --table NAME         the store's table (default loom_vectors)\n"
            "  -m, --encoder ENC    sentence encoder: a directory or 'minilm' (default, or the\n"
            "                       one an existing index or table records)\n"
            "  --chunk N            tokens per chunk (default 256, capped at the encoder's max;\n"
            "                       an existing index or table keeps its own)\n"
            "  --overlap N          tokens shared by neighbouring chunks (default 32)\n"
            "  --exact              no HNSW graph (default: HNSW 16,200)\n"
            "  --dump-chunks FILE   also write the chunks as JSON lines (source, byte offsets,\n"
            "                       title, text), e.g. for a reference pipeline\n"
            "  --threads N          HNSW build threads (default: every core)\n");
}

static double mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* The progress line on stderr: redrawn in place on a terminal (every 0.1 s),
 * a plain line every 10 s and at the end elsewhere. (train/progress.c draws
 * training steps with loss and learning rate; chunks have neither.) */
typedef struct prog {
    bool tty, drawn;
    double t0, last;
    size_t total;
} prog;

static void prog_update(prog *p, size_t done) {
    double now = mono();
    bool last = done >= p->total;
    if (!last && now - p->last < (p->tty ? 0.1 : 10.0)) return;
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    int pct = p->total ? (int)(100.0 * (double)done / (double)p->total) : 100;
    char bar[23] = "[....................]";
    for (int i = 0; i < pct / 5 && i < 20; i++)
        bar[1 + i] = '#';
    fprintf(stderr, "%srag index: %zu/%zu chunks %s %3d%% | %.1f chunks/s | %.0fs%s",
            p->tty ? "\r" : "", done, p->total, bar, pct, rate, el, p->tty ? "" : "\n");
    fflush(stderr);
    p->last = now, p->drawn = true;
}

typedef struct pending {
    char *text[BATCH];
    loom_rag_meta meta[BATCH];
    int n;
} pending;

static void json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* The name recorded in the index: a bundled name as given, a directory as
 * an absolute path (so a search from elsewhere finds it). */
static char *encoder_name(const char *arg) {
    struct stat st;
    char buf[PATH_MAX];
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode) && realpath(arg, buf)) return strdup(buf);
    return strdup(arg);
}

static loom_encoder *open_encoder(const char *cmd, const char *arg) {
    char dir[PATH_MAX], err[400];
    loom_encoder *e = NULL;
    if (loom_encoder_resolve(arg, dir, sizeof dir, err, sizeof err) != LOOM_OK ||
        loom_encoder_load(dir, NULL, &e, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag %s: encoder '%s': %s\n", cmd, arg, err);
        return NULL;
    }
    return e;
}

/* Where the chunks go: an index file, a store table, or both. */
typedef struct sink {
    loom_rag_index *ix;
    struct loom_rag_pg *pg;
    uint64_t next_id; /* the store's next row id when there is no index */
} sink;

/* Embed and add the pending chunks. */
static bool flush(loom_encoder *enc, sink *sk, pending *p, float *vec, size_t *done, prog *pr) {
    if (!p->n) return true;
    char err[600];
    bool ok = true;
    uint32_t first = 0;
    if (loom_encoder_embed(enc, (const char *const *)p->text, p->n, vec, err, sizeof err) !=
        LOOM_OK) {
        fprintf(stderr, "loom rag index: encoder: %s\n", err);
        ok = false;
    } else if (sk->ix &&
               loom_rag_index_add(sk->ix, vec, (size_t)p->n, p->meta, NULL, &first) != LOOM_OK) {
        fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(sk->ix));
        ok = false;
    }
#ifdef LOOM_HAVE_LIBPQ
    /* With an index the store's ids are its ids (rag/store_pg.h). */
    if (ok && sk->pg) {
        uint64_t id0 = sk->ix ? first : sk->next_id;
        if (loom_rag_pg_insert_text(sk->pg, vec, (size_t)p->n, (int)loom_encoder_dim(enc), p->meta,
                                    (const char *const *)p->text, id0, err,
                                    sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag index: --store: %s\n", err);
            ok = false;
        }
        sk->next_id = id0 + (uint64_t)p->n;
    }
#endif
    for (int i = 0; i < p->n; i++)
        free(p->text[i]);
    *done += (size_t)p->n;
    p->n = 0;
    if (ok) prog_update(pr, *done);
    return ok;
}

/* Rows of the index whose source is src (live ones): is any, and do all
 * carry this hash. */
static void find_source(const loom_rag_index *ix, const char *src, int64_t hash, bool *any,
                        bool *same) {
    *any = false, *same = true;
    for (uint32_t id = 0, n = loom_rag_index_count(ix); id < n; id++) {
        loom_rag_meta m;
        if (loom_rag_index_is_deleted(ix, id) || loom_rag_index_meta(ix, id, &m) != LOOM_OK ||
            strcmp(m.source, src))
            continue;
        *any = true;
        *same &= m.tag == hash && !strcmp(m.tag_str, "loom-rag-text");
    }
}

static size_t delete_source(loom_rag_index *ix, const char *src) {
    size_t n = 0;
    for (uint32_t id = 0, c = loom_rag_index_count(ix); id < c; id++) {
        loom_rag_meta m;
        if (loom_rag_index_is_deleted(ix, id) || loom_rag_index_meta(ix, id, &m) != LOOM_OK ||
            strcmp(m.source, src))
            continue;
        if (loom_rag_index_delete(ix, id) == LOOM_OK) n++;
    }
    return n;
}

/* The settings an index file or store table recorded. */
typedef struct recorded {
    bool have, ts;
    char name[1024];
    loom_rag_text_settings t;
    const char *what;
} recorded;

/* Open the store table for indexing; *rec gets its settings when it exists. */
static bool open_store(const char *url, const char *table, sink *sk, recorded *rec) {
#ifdef LOOM_HAVE_LIBPQ
    char err[600];
    bool exists = false;
    if (loom_rag_pg_open(url, table, &sk->pg, err, sizeof err) != LOOM_OK ||
        loom_rag_pg_exists(sk->pg, &exists, err, sizeof err) != LOOM_OK ||
        (exists && loom_rag_pg_text_settings(sk->pg, &rec->ts, rec->name, sizeof rec->name, &rec->t,
                                             err, sizeof err) != LOOM_OK)) {
        fprintf(stderr, "loom rag index: --store: %s\n", err);
        return false;
    }
    if (exists && !rec->ts) {
        fprintf(stderr,
                "loom rag index: --store: table %s was not made by loom rag index (no text "
                "settings); give another --table\n",
                table);
        return false;
    }
    rec->have = exists, rec->what = table;
    return true;
#else
    (void)url, (void)table, (void)sk, (void)rec;
    fprintf(stderr, "loom rag index: --store: this loom was built without libpq\n");
    return false;
#endif
}

/* Settings given on the command line against recorded ones: false after
 * one line saying which differs. */
static bool same_settings(const recorded *r, const char *name, int chunk, int overlap,
                          bool chunk_set, bool overlap_set) {
    if (!r->have) return true;
    if (strcmp(r->name, name)) {
        fprintf(stderr,
                "loom rag index: %s was made with encoder '%s', not '%s'; give the same -m (or "
                "none) or another target\n",
                r->what, r->name, name);
        return false;
    }
    if (r->ts && ((chunk_set && (uint32_t)chunk != r->t.chunk) ||
                  (overlap_set && (uint32_t)overlap != r->t.overlap))) {
        char want[64] = "";
        size_t w = 0;
        if (chunk_set) w += (size_t)snprintf(want, sizeof want, "--chunk %d", chunk);
        if (overlap_set)
            snprintf(want + w, sizeof want - w, "%s--overlap %d", w ? " " : "", overlap);
        fprintf(stderr,
                "loom rag index: %s was made with --chunk %u --overlap %u, not %s; give the "
                "same (or none) or another target\n",
                r->what, r->t.chunk, r->t.overlap, want);
        return false;
    }
    return true;
}

#ifdef LOOM_HAVE_LIBPQ
static const loom_rag_pg_source *store_source(const loom_rag_pg_source *sv, size_t n,
                                              const char *src) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(sv[i].source, src)) return &sv[i];
    return NULL;
}
#endif

int loom_cli_rag_index(int argc, char **argv) {
    const char *C = "rag index", *docs = NULL, *out = NULL, *enc_arg = NULL, *dump = NULL,
               *store = NULL, *table = "loom_vectors";
    int chunk = 256, overlap = 32, threads = 0;
    bool exact = false, chunk_set = false, overlap_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return index_usage(stdout), 0;
#define VAL()                                                                                      \
    if (!(v = loom_cli_value(C, argc, argv, &i))) return LOOM_CLI_USAGE
        if (!strcmp(a, "--docs")) {
            VAL();
            docs = v;
        } else if (!strcmp(a, "-o")) {
            VAL();
            out = v;
        } else if (!strcmp(a, "--store")) {
            VAL();
            store = v;
        } else if (!strcmp(a, "--table")) {
            VAL();
            table = v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--encoder")) {
            VAL();
            enc_arg = v;
        } else if (!strcmp(a, "--chunk")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 8, 8192, &chunk)) return LOOM_CLI_USAGE;
            chunk_set = true;
        } else if (!strcmp(a, "--overlap")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 0, 8191, &overlap)) return LOOM_CLI_USAGE;
            overlap_set = true;
        } else if (!strcmp(a, "--dump-chunks")) {
            VAL();
            dump = v;
        } else if (!strcmp(a, "--threads")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 4096, &threads)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--exact")) {
            exact = true;
        } else {
            loom_cli_unknown(C, a);
            index_usage(stderr);
            return LOOM_CLI_USAGE;
        }
#undef VAL
    }
    if (!docs || (!out && !store)) {
        fprintf(stderr, "loom rag index: %s is required\n",
                !docs ? "--docs PATH" : "-o INDEX or --store URL");
        return LOOM_CLI_USAGE;
    }
    if (overlap >= chunk && overlap_set) {
        fprintf(stderr, "loom rag index: --overlap %d must be smaller than --chunk %d\n", overlap,
                chunk);
        return LOOM_CLI_USAGE;
    }
    if (overlap >= chunk) overlap = chunk / 8; /* the default overlap with a small --chunk */
    char err[400];
    char **srcs = NULL;
    size_t nsrc = 0;
    if (!loom_cli_doc_list(docs, &srcs, &nsrc, err, sizeof err)) {
        fprintf(stderr, "loom rag index: %s\n", err);
        return 1;
    }
    /* What an existing index file and store table recorded. */
    sink sk = {0};
    recorded ri = {.what = out}, rs = {0};
    bool ok = true, update = out && access(out, F_OK) == 0;
    if (update) {
        if (loom_rag_index_load(out, 0, &sk.ix, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag index: %s\n", err);
            ok = false;
        } else {
            ri.have = true;
            snprintf(ri.name, sizeof ri.name, "%s", loom_rag_index_encoder(sk.ix));
            ri.ts = loom_rag_index_text_settings(sk.ix, &ri.t);
        }
    }
    if (ok && store) ok = open_store(store, table, &sk, &rs);
    if (ok && ri.have && rs.have && rs.ts &&
        !same_settings(&ri, rs.name, (int)rs.t.chunk, (int)rs.t.overlap, ri.ts, ri.ts))
        ok = false;
    const recorded *rec = ri.have ? &ri : rs.have ? &rs : NULL;
    char *name = !ok                   ? NULL
                 : enc_arg             ? encoder_name(enc_arg)
                 : rec && rec->name[0] ? strdup(rec->name)
                                       : strdup("minilm");
    loom_encoder *enc = name ? open_encoder("index", name) : NULL;
    int dim = 0;
    if (enc) {
        const int maxc = loom_encoder_max_tokens(enc) - 2; /* [CLS] and [SEP] */
        if (chunk > maxc) {
            if (chunk_set)
                fprintf(stderr,
                        "loom rag index: warning: --chunk %d is more than the encoder takes (%d "
                        "tokens); chunks are capped at %d\n",
                        chunk, maxc, maxc);
            chunk = maxc;
            if (overlap >= chunk && !overlap_set) overlap = chunk / 8;
            if (overlap >= chunk) {
                fprintf(stderr, "loom rag index: --overlap %d must be smaller than the chunk %d\n",
                        overlap, chunk);
                ok = false;
            }
        }
        dim = (int)loom_encoder_dim(enc);
        ok = ok && same_settings(&ri, name, chunk, overlap, chunk_set, overlap_set) &&
             same_settings(&rs, name, chunk, overlap, chunk_set, overlap_set);
        if (ok && rec && rec->ts) chunk = (int)rec->t.chunk, overlap = (int)rec->t.overlap;
        if (ok && sk.ix && loom_rag_index_dim(sk.ix) != dim) {
            fprintf(stderr, "loom rag index: %s holds %d-d vectors, encoder '%s' makes %d-d\n", out,
                    loom_rag_index_dim(sk.ix), name, dim);
            ok = false;
        }
    } else {
        ok = false;
    }
    loom_rag_text_settings ts = {.chunk = (uint32_t)chunk,
                                 .overlap = (uint32_t)overlap,
                                 .encoder_dim = (uint32_t)dim,
                                 .normalize = 1,
                                 .max_tokens = enc ? (uint32_t)loom_encoder_max_tokens(enc) : 0};
    if (ok && out && !sk.ix &&
        (loom_rag_index_new(dim, LOOM_RAG_F32, LOOM_RAG_COSINE, &sk.ix) != LOOM_OK ||
         loom_rag_index_set_encoder(sk.ix, name) != LOOM_OK)) {
        fprintf(stderr, "loom rag index: out of memory or encoder name too long\n");
        ok = false;
    }
    if (ok && sk.ix && loom_rag_index_set_text_settings(sk.ix, &ts) != LOOM_OK) {
        fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(sk.ix));
        ok = false;
    }
#ifdef LOOM_HAVE_LIBPQ
    loom_rag_pg_source *sv = NULL;
    size_t nsv = 0;
    if (ok && sk.pg) {
        char e2[600];
        loom_status st =
            rs.have ? LOOM_OK
                    : loom_rag_pg_create(sk.pg, dim, LOOM_RAG_COSINE, false, e2, sizeof e2);
        if (st == LOOM_OK && !rs.have)
            st = loom_rag_pg_set_text_settings(sk.pg, LOOM_RAG_COSINE, name, &ts, e2, sizeof e2);
        if (st == LOOM_OK) st = loom_rag_pg_sources(sk.pg, &sv, &nsv, e2, sizeof e2);
        if (st == LOOM_OK) st = loom_rag_pg_next_id(sk.pg, &sk.next_id, e2, sizeof e2);
        if (st != LOOM_OK) fprintf(stderr, "loom rag index: --store: %s\n", e2), ok = false;
    }
#endif
    FILE *df = NULL;
    if (ok && dump && !(df = fopen(dump, "w"))) {
        fprintf(stderr, "loom rag index: --dump-chunks: cannot write %s\n", dump);
        ok = false;
    }
    float *vec = malloc((size_t)BATCH * (size_t)(dim ? dim : 1) * sizeof *vec);
    if (ok && !vec) fprintf(stderr, "loom rag index: out of memory\n"), ok = false;
    /* Pass 1: load and chunk every document that is new or changed. */
    loom_cli_doc *dv = calloc(nsrc ? nsrc : 1, sizeof *dv);
    loom_rag_chunk **cv = calloc(nsrc ? nsrc : 1, sizeof *cv);
    size_t *nc = calloc(nsrc ? nsrc : 1, sizeof *nc), total = 0, n_skip = 0, n_del = 0, n_same = 0;
    if (ok && (!dv || !cv || !nc)) ok = false, fprintf(stderr, "loom rag index: out of memory\n");
    loom_cli_jsonl_cache jc = {0};
    for (size_t i = 0; ok && i < nsrc; i++) {
        if (!loom_cli_doc_load(srcs[i], &jc, &dv[i], err, sizeof err)) {
            fprintf(stderr, "loom rag index: warning: skipped %s\n", err);
            n_skip++;
            continue;
        }
        /* Unchanged when every target holds it with this hash. */
        bool any_l = false, same_l = true, any_s = false, same_s = true;
        if (update) find_source(sk.ix, srcs[i], dv[i].hash, &any_l, &same_l);
#ifdef LOOM_HAVE_LIBPQ
        const loom_rag_pg_source *ps = sk.pg ? store_source(sv, nsv, srcs[i]) : NULL;
        any_s = ps != NULL, same_s = ps && ps->one_hash && ps->hash == dv[i].hash;
#endif
        if ((!sk.ix || (any_l && same_l)) && (!sk.pg || (any_s && same_s))) {
            n_same++;
            loom_cli_doc_free(&dv[i]);
            continue;
        }
        if (any_l) n_del += delete_source(sk.ix, srcs[i]);
#ifdef LOOM_HAVE_LIBPQ
        size_t nd = 0;
        if (any_s && loom_rag_pg_delete_source(sk.pg, srcs[i], &nd, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag index: --store: %s\n", err);
            ok = false;
        }
        if (!sk.ix) n_del += nd;
#endif
        loom_status st = loom_rag_chunk_text(loom_encoder_tokenizer(enc), dv[i].text, dv[i].len,
                                             chunk, overlap, &cv[i], &nc[i]);
        if (st != LOOM_OK) {
            fprintf(stderr, "loom rag index: %s: chunking: %s\n", srcs[i], loom_status_str(st));
            ok = false;
        }
        total += nc[i];
    }
    loom_cli_jsonl_cache_free(&jc);
    /* Sources gone from the documents are deleted. */
    if (ok && update) {
        for (uint32_t id = 0, c = loom_rag_index_count(sk.ix); id < c; id++) {
            loom_rag_meta m;
            if (loom_rag_index_is_deleted(sk.ix, id) ||
                loom_rag_index_meta(sk.ix, id, &m) != LOOM_OK)
                continue;
            bool found = false;
            for (size_t i = 0; i < nsrc && !found; i++)
                found = !strcmp(srcs[i], m.source);
            if (!found && loom_rag_index_delete(sk.ix, id) == LOOM_OK) n_del++;
        }
    }
#ifdef LOOM_HAVE_LIBPQ
    for (size_t j = 0; ok && j < nsv; j++) {
        bool found = false;
        for (size_t i = 0; i < nsrc && !found; i++)
            found = !strcmp(srcs[i], sv[j].source);
        size_t nd = 0;
        if (!found &&
            loom_rag_pg_delete_source(sk.pg, sv[j].source, &nd, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag index: --store: %s\n", err);
            ok = false;
        }
        if (!sk.ix) n_del += nd;
    }
    loom_rag_pg_free_sources(sv, nsv);
#endif
    /* Pass 2: embed in batches, add. */
    prog pr = {.tty = isatty(2), .t0 = mono(), .total = total};
    pending p = {.n = 0};
    size_t done = 0;
    for (size_t i = 0; ok && i < nsrc; i++) {
        for (size_t j = 0; ok && j < nc[i]; j++) {
            const loom_rag_chunk *c = &cv[i][j];
            char *t = strndup(dv[i].text + c->begin, c->end - c->begin);
            if (!t) {
                ok = false;
                break;
            }
            if (df) {
                fprintf(df, "{\"source\":");
                json_str(df, srcs[i], strlen(srcs[i]));
                fprintf(df,
                        ",\"byte_begin\":%zu,\"byte_end\":%zu,\"tokens\":%d,\"title\":", c->begin,
                        c->end, c->tokens);
                json_str(df, dv[i].title, strlen(dv[i].title));
                fprintf(df, ",\"text\":");
                json_str(df, t, strlen(t));
                fprintf(df, "}\n");
            }
            p.text[p.n] = t;
            p.meta[p.n] = (loom_rag_meta){.source = srcs[i],
                                          .title = dv[i].title,
                                          .tag_str = "loom-rag-text",
                                          .byte_begin = c->begin,
                                          .byte_end = c->end,
                                          .tag = dv[i].hash};
            if (++p.n == BATCH) ok = flush(enc, &sk, &p, vec, &done, &pr);
        }
        /* metadata strings point into dv[i]: flush before freeing it */
        if (ok) ok = flush(enc, &sk, &p, vec, &done, &pr);
        loom_cli_doc_free(&dv[i]);
    }
    if (pr.tty && pr.drawn) fputc('\n', stderr);
    for (int i = 0; i < p.n; i++)
        free(p.text[i]);
    loom_threadpool *pool = NULL;
    if (ok && sk.ix && loom_threadpool_new(threads, &pool) != LOOM_OK) pool = NULL;
    if (ok && sk.ix && !exact && !loom_rag_index_has_hnsw(sk.ix)) {
        loom_rag_hnsw_params hp = {.M = 16, .ef_construction = 200, .seed = 0};
        if (loom_rag_index_build_hnsw(sk.ix, &hp, pool) != LOOM_OK) {
            fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(sk.ix));
            ok = false;
        }
    }
#ifdef LOOM_HAVE_LIBPQ
    /* pgvector keeps its HNSW index up to date on insert: created once. */
    if (ok && sk.pg && !exact &&
        loom_rag_pg_build_hnsw(sk.pg, 16, 200, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag index: --store: %s\n", err);
        ok = false;
    }
#endif
    if (ok && sk.ix && loom_rag_index_save(sk.ix, out) != LOOM_OK) {
        fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(sk.ix));
        ok = false;
    }
    if (df && fclose(df) != 0 && ok) {
        fprintf(stderr, "loom rag index: --dump-chunks: write error on %s\n", dump);
        ok = false;
    }
    if (ok)
        printf("indexed %zu chunks from %zu sources (%zu unchanged, %zu skipped), %zu rows "
               "deleted; %s: %u live rows, encoder %s, chunk %d overlap %d tokens\n",
               total, nsrc - n_skip - n_same, n_same, n_skip, n_del, out ? out : table,
               sk.ix ? loom_rag_index_live(sk.ix) : (unsigned)total, name, chunk, overlap);
    for (size_t i = 0; i < nsrc; i++) {
        if (dv) loom_cli_doc_free(&dv[i]);
        if (cv) free(cv[i]);
    }
    free(dv), free(cv), free(nc), free(vec), free(name);
    loom_threadpool_free(pool);
    loom_rag_index_free(sk.ix);
#ifdef LOOM_HAVE_LIBPQ
    loom_rag_pg_close(sk.pg);
#endif
    loom_encoder_free(enc);
    loom_cli_doc_list_free(srcs, nsrc);
    return ok ? 0 : 1;
}

static char **read_lines(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char **v = NULL, *line = NULL;
    size_t cap = 0;
    int k = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len) continue;
        char **nv = realloc(v, (size_t)(k + 1) * sizeof *nv);
        if (!nv) break;
        v = nv;
        if (!(v[k] = strdup(line))) break;
        k++;
    }
    free(line);
    fclose(f);
    *n = k;
    if (!v) v = calloc(1, sizeof *v);
    return v;
}

void loom_cli_rag_print_hit(int query, int rank, const loom_cli_hit *h, bool json) {
    const loom_rag_meta *m = &h->meta;
    if (json) {
        printf("{\"query\":%d,\"rank\":%d,\"id\":%u,\"score\":%.7g,\"source\":", query, rank, h->id,
               h->score);
        json_str(stdout, m->source, strlen(m->source));
        printf(",\"byte_begin\":%" PRIu64 ",\"byte_end\":%" PRIu64 ",\"title\":", m->byte_begin,
               m->byte_end);
        json_str(stdout, m->title, strlen(m->title));
        printf(",\"text\":");
        json_str(stdout, h->text, h->len);
        printf("}\n");
        return;
    }
    printf("  %d. score %.4f  %s [%" PRIu64 ", %" PRIu64 ")  %s\n", rank, h->score, m->source,
           m->byte_begin, m->byte_end, m->title);
    /* the chunk, indented, its line breaks kept */
    fputs("     ", stdout);
    for (size_t c = 0; c < h->len; c++) {
        putchar(h->text[c]);
        if (h->text[c] == '\n') fputs("     ", stdout);
    }
    putchar('\n');
}

int loom_cli_rag_text_search(const loom_cli_retrieve_opts *ro, const char *text, const char *qfile,
                             const loom_cli_search_opts *so, bool json) {
    loom_cli_retriever r;
    if (!loom_cli_retriever_open(&r, "search", ro)) return 1;
    int nq = 1;
    char **qs = NULL;
    if (qfile && !(qs = read_lines(qfile, &nq))) {
        fprintf(stderr, "loom rag search: --query-file: cannot read %s\n", qfile);
        loom_cli_retriever_close(&r);
        return 1;
    }
    const int dim = r.dim, cap = so->rerank > so->k ? so->rerank : so->k;
    float *q = malloc((size_t)(nq ? nq : 1) * (size_t)dim * sizeof *q);
    loom_cli_hit *hits = calloc((size_t)cap, sizeof *hits);
    bool ok = q && hits;
    if (!ok) fprintf(stderr, "loom rag search: out of memory\n");
    const char *one[1] = {text};
    if (ok) ok = loom_cli_retriever_encode(&r, qs ? (const char *const *)qs : one, nq, q);
    for (int i = 0; ok && i < nq; i++) {
        int nh = 0;
        ok = loom_cli_retrieve(&r, q + (size_t)i * dim, so, hits, &nh);
        if (ok && !json) printf("query %d: %s\n", i, qs ? qs[i] : text);
        for (int j = 0; ok && j < nh; j++)
            loom_cli_rag_print_hit(i, j + 1, &hits[j], json);
        loom_cli_hits_free(hits, nh);
    }
    for (int i = 0; qs && i < nq; i++)
        free(qs[i]);
    free(qs), free(q), free(hits);
    loom_cli_retriever_close(&r);
    return ok ? 0 : 1;
}

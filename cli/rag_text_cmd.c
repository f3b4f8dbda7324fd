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

enum { BATCH = 32 };

static void index_usage(FILE *f) {
    fprintf(f,
            "usage: loom rag index --docs DIR|FILE.jsonl -o INDEX [-m ENCODER] [options]\n"
            "  --docs PATH          a directory (.html/.htm, .md/.markdown, .txt/.rst, walked\n"
            "                       recursively), one such file, or a .jsonl file of\n"
            "                       {\"text\": ..., \"title\": ...} objects\n"
            "  -o INDEX             index file; when it exists it is updated: new and changed\n"
            "                       sources are (re)indexed, removed ones deleted\n"
            "  -m, --encoder ENC    sentence encoder: a directory or 'minilm' (default)\n"
            "  --chunk N            tokens per chunk (default 256, capped at the encoder's max)\n"
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

/* Embed and add the pending chunks. */
static bool flush(loom_encoder *enc, loom_rag_index *ix, pending *p, float *vec, size_t *done,
                  prog *pr) {
    if (!p->n) return true;
    char err[400];
    bool ok = true;
    if (loom_encoder_embed(enc, (const char *const *)p->text, p->n, vec, err, sizeof err) !=
        LOOM_OK) {
        fprintf(stderr, "loom rag index: encoder: %s\n", err);
        ok = false;
    } else if (loom_rag_index_add(ix, vec, (size_t)p->n, p->meta, NULL, NULL) != LOOM_OK) {
        fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(ix));
        ok = false;
    }
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

int loom_cli_rag_index(int argc, char **argv) {
    const char *C = "rag index", *docs = NULL, *out = NULL, *enc_arg = "minilm", *dump = NULL;
    int chunk = 256, overlap = 32, threads = 0;
    bool exact = false, chunk_set = false;
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
    if (!docs || !out) {
        fprintf(stderr, "loom rag index: %s is required\n", !docs ? "--docs PATH" : "-o INDEX");
        return LOOM_CLI_USAGE;
    }
    if (overlap >= chunk) {
        fprintf(stderr, "loom rag index: --overlap %d must be smaller than --chunk %d\n", overlap,
                chunk);
        return LOOM_CLI_USAGE;
    }
    char err[400];
    char **srcs = NULL;
    size_t nsrc = 0;
    if (!loom_cli_doc_list(docs, &srcs, &nsrc, err, sizeof err)) {
        fprintf(stderr, "loom rag index: %s\n", err);
        return 1;
    }
    loom_encoder *enc = open_encoder("index", enc_arg);
    if (!enc) return loom_cli_doc_list_free(srcs, nsrc), 1;
    const int maxc = loom_encoder_max_tokens(enc) - 2; /* [CLS] and [SEP] */
    if (chunk > maxc) {
        if (chunk_set)
            fprintf(stderr,
                    "loom rag index: warning: --chunk %d is more than the encoder takes (%d "
                    "tokens); chunks are capped at %d\n",
                    chunk, maxc, maxc);
        chunk = maxc;
        if (overlap >= chunk) overlap = chunk / 8;
    }
    char *name = encoder_name(enc_arg);
    const int dim = (int)loom_encoder_dim(enc);
    loom_rag_index *ix = NULL;
    bool update = access(out, F_OK) == 0;
    if (update) {
        if (loom_rag_index_load(out, 0, &ix, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag index: %s\n", err);
        } else if (strcmp(loom_rag_index_encoder(ix), name) || loom_rag_index_dim(ix) != dim) {
            fprintf(stderr,
                    "loom rag index: %s was made with encoder '%s' (%d-d), not '%s' (%d-d); "
                    "give another -o or the same -m\n",
                    out, loom_rag_index_encoder(ix), loom_rag_index_dim(ix), name, dim);
            loom_rag_index_free(ix), ix = NULL;
        }
    } else if (loom_rag_index_new(dim, LOOM_RAG_F32, LOOM_RAG_COSINE, &ix) != LOOM_OK ||
               loom_rag_index_set_encoder(ix, name) != LOOM_OK) {
        fprintf(stderr, "loom rag index: out of memory\n");
        loom_rag_index_free(ix), ix = NULL;
    }
    FILE *df = NULL;
    if (ix && dump && !(df = fopen(dump, "w"))) {
        fprintf(stderr, "loom rag index: --dump-chunks: cannot write %s\n", dump);
        loom_rag_index_free(ix), ix = NULL;
    }
    float *vec = malloc((size_t)BATCH * (size_t)dim * sizeof *vec);
    bool ok = ix && vec;
    if (ix && !vec) fprintf(stderr, "loom rag index: out of memory\n");
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
        if (update) {
            bool any, same;
            find_source(ix, srcs[i], dv[i].hash, &any, &same);
            if (any && same) {
                n_same++;
                loom_cli_doc_free(&dv[i]);
                continue;
            }
            if (any) n_del += delete_source(ix, srcs[i]);
        }
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
        for (uint32_t id = 0, c = loom_rag_index_count(ix); id < c; id++) {
            loom_rag_meta m;
            if (loom_rag_index_is_deleted(ix, id) || loom_rag_index_meta(ix, id, &m) != LOOM_OK)
                continue;
            bool found = false;
            for (size_t i = 0; i < nsrc && !found; i++)
                found = !strcmp(srcs[i], m.source);
            if (!found && loom_rag_index_delete(ix, id) == LOOM_OK) n_del++;
        }
    }
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
            if (++p.n == BATCH) ok = flush(enc, ix, &p, vec, &done, &pr);
        }
        /* metadata strings point into dv[i]: flush before freeing it */
        if (ok) ok = flush(enc, ix, &p, vec, &done, &pr);
        loom_cli_doc_free(&dv[i]);
    }
    if (pr.tty && pr.drawn) fputc('\n', stderr);
    for (int i = 0; i < p.n; i++)
        free(p.text[i]);
    loom_threadpool *pool = NULL;
    if (ok && loom_threadpool_new(threads, &pool) != LOOM_OK) pool = NULL;
    if (ok && !exact && !loom_rag_index_has_hnsw(ix)) {
        loom_rag_hnsw_params hp = {.M = 16, .ef_construction = 200, .seed = 0};
        if (loom_rag_index_build_hnsw(ix, &hp, pool) != LOOM_OK) {
            fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(ix));
            ok = false;
        }
    }
    if (ok && loom_rag_index_save(ix, out) != LOOM_OK) {
        fprintf(stderr, "loom rag index: %s\n", loom_rag_index_error(ix));
        ok = false;
    }
    if (df && fclose(df) != 0 && ok) {
        fprintf(stderr, "loom rag index: --dump-chunks: write error on %s\n", dump);
        ok = false;
    }
    if (ok)
        printf("indexed %zu chunks from %zu sources (%zu unchanged, %zu skipped), %zu rows "
               "deleted; %s: %u live rows, encoder %s, chunk %d overlap %d tokens\n",
               total, nsrc - n_skip - n_same, n_same, n_skip, n_del, out, loom_rag_index_live(ix),
               name, chunk, overlap);
    for (size_t i = 0; i < nsrc; i++) {
        if (dv) loom_cli_doc_free(&dv[i]);
        if (cv) free(cv[i]);
    }
    free(dv), free(cv), free(nc), free(vec), free(name);
    loom_threadpool_free(pool);
    loom_rag_index_free(ix);
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

int loom_cli_rag_text_search(const char *index, const char *encoder, const char *text,
                             const char *qfile, int k, int ef, bool exact, const loom_rag_filter *f,
                             bool json, int threads) {
    char err[400];
    loom_rag_index *ix = NULL;
    if (loom_rag_index_load(index, 0, &ix, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag search: %s\n", err);
        return 1;
    }
    const char *ename = encoder ? encoder : loom_rag_index_encoder(ix);
    if (!ename[0]) {
        fprintf(stderr,
                "loom rag search: %s does not name its encoder (built from vectors?); give -m "
                "ENCODER or a query vector\n",
                index);
        return loom_rag_index_free(ix), 1;
    }
    loom_encoder *enc = open_encoder("search", ename);
    if (!enc) return loom_rag_index_free(ix), 1;
    if (loom_encoder_dim(enc) != loom_rag_index_dim(ix)) {
        fprintf(stderr, "loom rag search: encoder '%s' makes %d-d vectors, the index holds %d-d\n",
                ename, (int)loom_encoder_dim(enc), loom_rag_index_dim(ix));
        loom_encoder_free(enc), loom_rag_index_free(ix);
        return 1;
    }
    int nq = 1;
    char **qs = NULL;
    if (qfile && !(qs = read_lines(qfile, &nq))) {
        fprintf(stderr, "loom rag search: --query-file: cannot read %s\n", qfile);
        loom_encoder_free(enc), loom_rag_index_free(ix);
        return 1;
    }
    const int dim = loom_rag_index_dim(ix);
    float *q = malloc((size_t)(nq ? nq : 1) * (size_t)dim * sizeof *q);
    loom_rag_hit *hits = malloc((size_t)k * sizeof *hits);
    loom_threadpool *pool = NULL;
    bool ok = q && hits && loom_threadpool_new(threads, &pool) == LOOM_OK;
    if (!ok) fprintf(stderr, "loom rag search: out of memory\n");
    for (int b = 0; ok && b < nq; b += BATCH) {
        int n = nq - b < BATCH ? nq - b : BATCH;
        const char *one[1] = {text};
        const char *const *t = qs ? (const char *const *)qs + b : one;
        if (loom_encoder_embed(enc, t, n, q + (size_t)b * dim, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom rag search: encoder: %s\n", err);
            ok = false;
        }
    }
    loom_cli_doc_reader rd = {.have = false};
    loom_rag_search_params sp = {.k = k, .ef_search = ef, .exact = exact, .filter = f};
    for (int i = 0; ok && i < nq; i++) {
        int nh = 0;
        if (loom_rag_index_search(ix, q + (size_t)i * dim, &sp, pool, hits, &nh) != LOOM_OK) {
            fprintf(stderr, "loom rag search: %s\n", loom_rag_index_error(ix));
            ok = false;
            break;
        }
        const char *qt = qs ? qs[i] : text;
        if (!json) printf("query %d: %s\n", i, qt);
        for (int j = 0; j < nh; j++) {
            loom_rag_meta m;
            loom_rag_index_meta(ix, hits[j].id, &m);
            size_t tn = 0;
            const char *tx = loom_cli_doc_chunk(&rd, &m, &tn);
            if (json) {
                printf("{\"query\":%d,\"rank\":%d,\"id\":%u,\"score\":%.7g,\"source\":", i, j + 1,
                       hits[j].id, hits[j].score);
                json_str(stdout, m.source, strlen(m.source));
                printf(",\"byte_begin\":%" PRIu64 ",\"byte_end\":%" PRIu64 ",\"title\":",
                       m.byte_begin, m.byte_end);
                json_str(stdout, m.title, strlen(m.title));
                printf(",\"text\":");
                json_str(stdout, tx, tn);
                printf("}\n");
            } else {
                printf("  %d. score %.4f  %s [%" PRIu64 ", %" PRIu64 ")  %s\n", j + 1,
                       hits[j].score, m.source, m.byte_begin, m.byte_end, m.title);
                /* the chunk, indented, its line breaks kept */
                fputs("     ", stdout);
                for (size_t c = 0; c < tn; c++) {
                    putchar(tx[c]);
                    if (tx[c] == '\n') fputs("     ", stdout);
                }
                putchar('\n');
            }
        }
    }
    loom_cli_doc_reader_free(&rd);
    for (int i = 0; qs && i < nq; i++)
        free(qs[i]);
    free(qs), free(q), free(hits);
    loom_threadpool_free(pool);
    loom_encoder_free(enc);
    loom_rag_index_free(ix);
    return ok ? 0 : 1;
}

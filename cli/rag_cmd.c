/* cli/rag_cmd.c - `loom rag`: build, grow, query and benchmark a vector
 * index file (rag/index.h). Text in (`loom rag index`, text queries) is in
 * cli/rag_text_cmd.c. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/rag_meta.h"
#include "cli/rag_text.h"
#include "rag/index.h"
#ifdef LOOM_HAVE_LIBPQ
#include "rag/store_pg.h"
#endif

static void rag_usage(FILE *f) {
    fprintf(f, "usage: loom rag <command> [options]\n"
               "\n"
               "commands (loom rag COMMAND --help for each):\n"
               "  index    chunk and embed documents (HTML, Markdown, text) into an index\n"
               "  ask      answer a question from the top chunks, citing them\n"
               "  build    make an index file from vectors (.npy or raw float32)\n"
               "  add      append vectors to an index (linked into its graph)\n"
               "  delete   tombstone vectors by id\n"
               "  search   top k of a text query or a query vector\n"
               "  info     what an index file holds\n"
               "  bench    recall@k and queries/s over an efSearch sweep\n");
}

static void build_usage(FILE *f) {
    fprintf(f,
            "usage: loom rag build --vectors FILE -o INDEX [options]\n"
            "  --vectors FILE       .npy (float32, N x D) or raw float32 (needs --dim)\n"
            "  --dim D              vector dimension of a raw file\n"
            "  -o INDEX             index file to write (atomically)\n"
            "  --type T             storage: f32 (default), f16, int8\n"
            "  --metric M           ip, cosine (default), l2\n"
            "  --hnsw M,EFC         build an HNSW graph (default 16,200)\n"
            "  --exact              no graph: exact search only\n"
            "  --seed S             graph levels seed (default 0)\n"
            "  --threads N          build threads (default: every core)\n"
            "  --encoder NAME       record the encoder that made the vectors\n"
            "  --meta FILE.jsonl    metadata, one JSON object per vector: source, title,\n"
            "                       byte_begin, byte_end, tag (integer), tag_str\n"
            "  --store URL          also (or instead of -o) load them into PostgreSQL + pgvector\n"
            "  --table NAME         the store's table (default loom_vectors; replaced)\n");
}
static void add_usage(FILE *f) {
    fprintf(f, "usage: loom rag add --index INDEX --vectors FILE [--dim D] [--threads N]\n");
}
static void delete_usage(FILE *f) {
    fprintf(f, "usage: loom rag delete --index INDEX --id N [--id N ...]\n");
}
static void search_usage(FILE *f) {
    fprintf(f, "usage: loom rag search (--index INDEX | --store URL) \"query text\" [options]\n"
               "       loom rag search (--index INDEX | --store URL) (--vector-file Q | "
               "--query-vec X,Y,...) [options]\n"
               "  \"TEXT\"               a text query, encoded with the index's encoder; hits\n"
               "                       show the chunk text read back from its source\n"
               "  --query-file FILE    text queries, one per line\n"
               "  -m, --encoder ENC    encoder for text queries (default: the index's)\n"
               "  --vector-file Q      query vectors (.npy or raw float32); one result block each\n"
               "  --query-vec LIST     one query, comma-separated floats\n"
               "  -k K                 hits per query (default 5)\n"
               "  --ef N               HNSW efSearch (default max(k, 64))\n"
               "  --exact              brute force even when the index has a graph\n"
               "  --tag N              only vectors whose integer tag is N\n"
               "  --tag-str S          only vectors whose string tag is S\n"
               "  --source S           only vectors from source S\n"
               "  --json               one JSON object per hit\n"
               "  --threads N          threads (default: every core)\n"
               "  --store URL          search PostgreSQL + pgvector instead of an index file\n"
               "  --table NAME         the store's table (default loom_vectors)\n"
               "  --rerank N           text queries: fetch N candidates, re-encode their chunks\n"
               "                       (f32) and keep the k of highest exact cosine\n"
               "  --mmr LAMBDA         text queries: pick the k by maximal marginal relevance\n"
               "                       (0..1; 1 = relevance only) among the candidates\n");
}
static void bench_usage(FILE *f) {
    fprintf(
        f, "usage: loom rag bench --index INDEX --queries Q.npy [--gt GT.npy] [options]\n"
           "  --queries Q.npy      query vectors\n"
           "  --gt GT.npy          true neighbours (int32/int64, nq x >=k); default: exact search\n"
           "  -k K                 recall@K (default 10)\n"
           "  --ef LIST            efSearch values, comma-separated (default 16,32,64,128,256)\n"
           "  --threads N          search threads (default: every core)\n"
           "  prints one JSON line per efSearch (and \"exact\"): recall, queries/s\n");
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (every thread): benchmarks report it next
 * to wall time, which a busy machine stretches. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int fail_ix(const char *cmd, loom_rag_index *ix, loom_status st) {
    fprintf(stderr, "loom rag %s: %s\n", cmd, ix ? loom_rag_index_error(ix) : loom_status_str(st));
    loom_rag_index_free(ix);
    return 1;
}

static loom_threadpool *make_pool(const char *cmd, int threads) {
    loom_threadpool *p = NULL;
    if (loom_threadpool_new(threads, &p) != LOOM_OK) {
        fprintf(stderr, "loom rag %s: cannot start %d threads\n", cmd, threads);
        return NULL;
    }
    return p;
}

static bool read_vectors(const char *cmd, const char *path, int dim, loom_rag_matrix *m) {
    char err[300];
    if (loom_rag_matrix_read(path, dim, m, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag %s: %s\n", cmd, err);
        return false;
    }
    if (m->kind != 'f') {
        fprintf(stderr, "loom rag %s: %s: vectors must be float32\n", cmd, path);
        loom_rag_matrix_free(m);
        return false;
    }
    return true;
}

static loom_rag_index *load_index(const char *cmd, const char *path) {
    loom_rag_index *ix = NULL;
    char err[400];
    if (loom_rag_index_load(path, 0, &ix, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag %s: %s\n", cmd, err);
        return NULL;
    }
    return ix;
}

/* "M,EFC" */
static bool parse_hnsw(const char *s, loom_rag_hnsw_params *p) {
    char a[32], *comma;
    if (!s || strlen(s) >= sizeof a) goto bad;
    strcpy(a, s);
    comma = strchr(a, ',');
    if (!comma) goto bad;
    *comma = '\0';
    return loom_cli_parse_int("rag build", "--hnsw", a, 4, 128, &p->M) &&
           loom_cli_parse_int("rag build", "--hnsw", comma + 1, 4, 100000, &p->ef_construction);
bad:
    fprintf(stderr, "loom rag build: --hnsw: '%s' is not M,EFC (e.g. 16,200)\n", s ? s : "");
    return false;
}

static bool to_store(const char *url, const char *table, const loom_rag_matrix *m, int metric,
                     const loom_rag_hnsw_params *hp, const loom_rag_meta *meta) {
#ifdef LOOM_HAVE_LIBPQ
    char err[400];
    loom_rag_pg *pg = NULL;
    double t0 = now_s();
    loom_status st = loom_rag_pg_open(url, table, &pg, err, sizeof err);
    if (st == LOOM_OK)
        st = loom_rag_pg_create(pg, (int)m->cols, (loom_rag_metric)metric, true, err, sizeof err);
    if (st == LOOM_OK)
        st = loom_rag_pg_insert(pg, m->data, m->rows, (int)m->cols, meta, 0, err, sizeof err);
    if (st == LOOM_OK && hp)
        st = loom_rag_pg_build_hnsw(pg, hp->M, hp->ef_construction, err, sizeof err);
    loom_rag_pg_close(pg);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom rag build: --store: %s\n", err);
        return false;
    }
    fprintf(stderr, "loom rag build: %zu vectors into table %s%s in %.3f s\n", m->rows, table,
            hp ? " with a pgvector hnsw index" : "", now_s() - t0);
    return true;
#else
    (void)url, (void)table, (void)m, (void)metric, (void)hp, (void)meta;
    fprintf(stderr, "loom rag build: --store: this loom was built without libpq\n");
    return false;
#endif
}

static int cmd_build(int argc, char **argv) {
    const char *C = "rag build", *vecs = NULL, *out = NULL, *encoder = NULL, *store = NULL,
               *metaf = NULL, *table = "loom_vectors";
    int dim = 0, threads = 0, vt = 0, mt = 1;
    bool exact = false;
    loom_rag_hnsw_params hp = {.M = 16, .ef_construction = 200, .seed = 0};
    static const char *const types[] = {"f32", "f16", "int8", NULL};
    static const char *const metrics[] = {"ip", "cosine", "l2", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return build_usage(stdout), 0;
#define VAL()                                                                                      \
    if (!(v = loom_cli_value(C, argc, argv, &i))) return LOOM_CLI_USAGE
        if (!strcmp(a, "--vectors")) {
            VAL();
            vecs = v;
        } else if (!strcmp(a, "-o")) {
            VAL();
            out = v;
        } else if (!strcmp(a, "--encoder")) {
            VAL();
            encoder = v;
        } else if (!strcmp(a, "--meta")) {
            VAL();
            metaf = v;
        } else if (!strcmp(a, "--store")) {
            VAL();
            store = v;
        } else if (!strcmp(a, "--table")) {
            VAL();
            table = v;
        } else if (!strcmp(a, "--dim")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 65536, &dim)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--threads")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 4096, &threads)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--type")) {
            VAL();
            if (!loom_cli_parse_choice(C, a, v, types, &vt)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--metric")) {
            VAL();
            if (!loom_cli_parse_choice(C, a, v, metrics, &mt)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--hnsw")) {
            VAL();
            if (!parse_hnsw(v, &hp)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--seed")) {
            VAL();
            if (!loom_cli_parse_u64(C, a, v, 0, UINT64_MAX, &hp.seed)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--exact"))
            exact = true;
        else {
            loom_cli_unknown(C, a);
            build_usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (!vecs || (!out && !store)) {
        fprintf(stderr, "loom rag build: %s is required\n",
                !vecs ? "--vectors FILE" : "-o INDEX or --store URL");
        return LOOM_CLI_USAGE;
    }
    loom_rag_matrix m;
    if (!read_vectors("build", vecs, dim, &m)) return 1;
    loom_rag_meta *meta = NULL;
    if (metaf && !(meta = loom_cli_rag_read_meta(metaf, m.rows)))
        return loom_rag_matrix_free(&m), 1;
    if ((store && !to_store(store, table, &m, mt, exact ? NULL : &hp, meta)) || !out) {
        loom_cli_rag_free_meta(meta, m.rows);
        loom_rag_matrix_free(&m);
        return out ? 1 : 0;
    }
    loom_rag_index *ix = NULL;
    loom_status st = loom_rag_index_new((int)m.cols, (loom_rag_vtype)vt, (loom_rag_metric)mt, &ix);
    if (st != LOOM_OK) {
        loom_rag_matrix_free(&m);
        loom_cli_rag_free_meta(meta, m.rows);
        fprintf(stderr, "loom rag build: %zu columns is not a valid dimension (1..65536)\n",
                m.cols);
        return 1;
    }
    loom_threadpool *pool = make_pool("build", threads);
    if (!pool)
        return loom_rag_matrix_free(&m), loom_cli_rag_free_meta(meta, m.rows),
               loom_rag_index_free(ix), 1;
    double t0 = now_s(), c0 = cpu_s();
    st = loom_rag_index_add(ix, m.data, m.rows, meta, NULL, NULL);
    loom_cli_rag_free_meta(meta, m.rows);
    loom_rag_matrix_free(&m);
    if (st == LOOM_OK && !exact) st = loom_rag_index_build_hnsw(ix, &hp, pool);
    double t1 = now_s(), c1 = cpu_s();
    if (st == LOOM_OK && encoder) st = loom_rag_index_set_encoder(ix, encoder);
    if (st == LOOM_OK) st = loom_rag_index_save(ix, out);
    int nth = loom_threadpool_size(pool);
    loom_threadpool_free(pool);
    if (st != LOOM_OK) return fail_ix("build", ix, st);
    fprintf(stderr,
            "loom rag build: %u vectors x %d (%s, %s), %s, built in %.3f s with %d threads -> %s\n",
            loom_rag_index_count(ix), loom_rag_index_dim(ix), types[vt], metrics[mt],
            exact ? "exact only" : "hnsw", t1 - t0, nth, out);
    if (!exact)
        fprintf(stderr, "  hnsw M=%d efConstruction=%d seed=%" PRIu64 "\n", hp.M,
                hp.ef_construction, hp.seed);
    printf("{\"vectors\":%u,\"dim\":%d,\"build_s\":%.6f,\"build_cpu_s\":%.6f,\"threads\":%d}\n",
           loom_rag_index_count(ix), loom_rag_index_dim(ix), t1 - t0, c1 - c0, nth);
    loom_rag_index_free(ix);
    return 0;
}

static int cmd_add(int argc, char **argv) {
    const char *C = "rag add", *index = NULL, *vecs = NULL;
    int dim = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return add_usage(stdout), 0;
        if (!strcmp(a, "--index")) {
            VAL();
            index = v;
        } else if (!strcmp(a, "--vectors")) {
            VAL();
            vecs = v;
        } else if (!strcmp(a, "--dim")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 65536, &dim)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--threads")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 4096, &threads)) return LOOM_CLI_USAGE;
        } else {
            loom_cli_unknown(C, a);
            add_usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (!index || !vecs) {
        fprintf(stderr, "loom rag add: %s is required\n",
                !index ? "--index INDEX" : "--vectors FILE");
        return LOOM_CLI_USAGE;
    }
    loom_rag_index *ix = load_index("add", index);
    if (!ix) return 1;
    loom_rag_matrix m;
    if (!read_vectors("add", vecs, dim ? dim : loom_rag_index_dim(ix), &m))
        return loom_rag_index_free(ix), 1;
    if (m.cols != (size_t)loom_rag_index_dim(ix)) {
        fprintf(stderr, "loom rag add: %s has %zu columns, the index %d\n", vecs, m.cols,
                loom_rag_index_dim(ix));
        loom_rag_matrix_free(&m);
        loom_rag_index_free(ix);
        return 1;
    }
    loom_threadpool *pool = make_pool("add", threads);
    uint32_t first = 0;
    loom_status st =
        pool ? loom_rag_index_add(ix, m.data, m.rows, NULL, pool, &first) : LOOM_ERR_OOM;
    loom_rag_matrix_free(&m);
    loom_threadpool_free(pool);
    if (st == LOOM_OK) st = loom_rag_index_save(ix, index);
    if (st != LOOM_OK) return fail_ix("add", ix, st);
    fprintf(stderr, "loom rag add: ids %u..%u added, %u rows -> %s\n", first,
            loom_rag_index_count(ix) - 1, loom_rag_index_count(ix), index);
    loom_rag_index_free(ix);
    return 0;
}

static int cmd_delete(int argc, char **argv) {
    const char *C = "rag delete", *index = NULL;
    int64_t ids[256];
    int nid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return delete_usage(stdout), 0;
        if (!strcmp(a, "--index")) {
            VAL();
            index = v;
        } else if (!strcmp(a, "--id")) {
            VAL();
            if (nid == 256) {
                fprintf(stderr, "loom rag delete: --id: at most 256 ids per call\n");
                return LOOM_CLI_USAGE;
            }
            if (!loom_cli_parse_i64(C, a, v, 0, 4294967279LL, &ids[nid++])) return LOOM_CLI_USAGE;
        } else {
            loom_cli_unknown(C, a);
            delete_usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (!index || !nid) {
        fprintf(stderr, "loom rag delete: %s is required\n", !index ? "--index INDEX" : "--id N");
        return LOOM_CLI_USAGE;
    }
    loom_rag_index *ix = load_index("delete", index);
    if (!ix) return 1;
    for (int i = 0; i < nid; i++)
        if (loom_rag_index_delete(ix, (uint32_t)ids[i]) != LOOM_OK)
            return fail_ix("delete", ix, LOOM_ERR_INVALID_ARG);
    if (loom_rag_index_save(ix, index) != LOOM_OK) return fail_ix("delete", ix, LOOM_ERR_IO);
    fprintf(stderr, "loom rag delete: %d deleted, %u live of %u -> %s\n", nid,
            loom_rag_index_live(ix), loom_rag_index_count(ix), index);
    loom_rag_index_free(ix);
    return 0;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* "x,y,z" into a malloc'd float array. */
static float *parse_vec(const char *s, int *n) {
    size_t cap = 16, k = 0;
    float *v = malloc(cap * 4);
    char *copy = strdup(s), *save = NULL;
    if (!v || !copy) return free(v), free(copy), NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (k == cap && !(v = realloc(v, (cap *= 2) * 4))) return free(copy), NULL;
        if (!loom_cli_parse_f32("rag search", "--query-vec", t, -1e30f, 1e30f, &v[k++]))
            return free(v), free(copy), NULL;
    }
    free(copy);
    if (!k) {
        fprintf(stderr, "loom rag search: --query-vec: no values\n");
        return free(v), NULL;
    }
    *n = (int)k;
    return v;
}

static void print_hit(size_t qi, int rank, const loom_rag_hit *h, const loom_rag_meta *md,
                      bool json) {
    if (json) {
        printf("{\"query\":%zu,\"rank\":%d,\"id\":%u,\"score\":%.7g,\"source\":", qi, rank, h->id,
               h->score);
        json_str(md->source);
        printf(",\"byte_begin\":%" PRIu64 ",\"byte_end\":%" PRIu64 ",\"title\":", md->byte_begin,
               md->byte_end);
        json_str(md->title);
        printf(",\"tag\":%" PRId64 ",\"tag_str\":", md->tag);
        json_str(md->tag_str);
        printf("}\n");
    } else {
        printf("  %2d. id %-8u score %-12.6g %s [%" PRIu64 ", %" PRIu64 ") %s\n", rank, h->id,
               h->score, md->source[0] ? md->source : "-", md->byte_begin, md->byte_end, md->title);
    }
}

/* Queries against the PostgreSQL store, one SELECT each. */
static int search_store(const char *url, const char *table, float *q, int qd, const char *vfile,
                        int k, int ef, bool exact, const loom_rag_filter *f, bool json) {
#ifdef LOOM_HAVE_LIBPQ
    char err[400];
    loom_rag_pg *pg = NULL;
    size_t nq = 1;
    if (vfile) {
        loom_rag_matrix m;
        if (!read_vectors("search", vfile, 0, &m)) return 1;
        q = m.data, nq = m.rows, qd = (int)m.cols;
    }
    loom_rag_hit *hits = malloc((size_t)k * sizeof *hits);
    loom_rag_meta *meta = calloc((size_t)k, sizeof *meta);
    loom_status st =
        hits && meta ? loom_rag_pg_open(url, table, &pg, err, sizeof err) : LOOM_ERR_OOM;
    for (size_t i = 0; st == LOOM_OK && i < nq; i++) {
        int n = 0;
        st = loom_rag_pg_search(pg, q + i * (size_t)qd, qd, k, ef, exact, f, hits, meta, &n, err,
                                sizeof err);
        if (st == LOOM_OK && !json) printf("query %zu: %d hits\n", i, n);
        for (int j = 0; st == LOOM_OK && j < n; j++)
            print_hit(i, j + 1, &hits[j], &meta[j], json);
        loom_rag_pg_free_meta(meta, n);
    }
    if (st != LOOM_OK)
        fprintf(stderr, "loom rag search: --store: %s\n",
                st == LOOM_ERR_OOM ? "out of memory" : err);
    loom_rag_pg_close(pg);
    free(hits), free(meta), free(q);
    return st == LOOM_OK ? 0 : 1;
#else
    (void)url, (void)table, (void)qd, (void)vfile, (void)k, (void)ef, (void)exact, (void)f,
        (void)json;
    free(q);
    fprintf(stderr, "loom rag search: --store: this loom was built without libpq\n");
    return 1;
#endif
}

static int cmd_search(int argc, char **argv) {
    const char *C = "rag search", *index = NULL, *vfile = NULL, *qvec = NULL, *text = NULL,
               *store = NULL, *table = "loom_vectors", *qfile = NULL, *enc = NULL;
    int k = 5, ef = 0, threads = 0, rerank = 0;
    float mmr = -1;
    bool exact = false, json = false;
    loom_rag_filter f = {0};
    bool use_f = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return search_usage(stdout), 0;
        if (!strcmp(a, "--index")) {
            VAL();
            index = v;
        } else if (!strcmp(a, "--vector-file")) {
            VAL();
            vfile = v;
        } else if (!strcmp(a, "--query-file")) {
            VAL();
            qfile = v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--encoder")) {
            VAL();
            enc = v;
        } else if (!strcmp(a, "--query-vec")) {
            VAL();
            qvec = v;
        } else if (!strcmp(a, "-k")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 10000, &k)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--ef")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 100000, &ef)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--threads")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 4096, &threads)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--tag")) {
            VAL();
            if (!loom_cli_parse_i64(C, a, v, INT64_MIN, INT64_MAX, &f.tag_min))
                return LOOM_CLI_USAGE;
            f.tag_max = f.tag_min, f.use_tag_range = use_f = true;
        } else if (!strcmp(a, "--tag-str")) {
            VAL();
            f.tag_str = v, use_f = true;
        } else if (!strcmp(a, "--store")) {
            VAL();
            store = v;
        } else if (!strcmp(a, "--table")) {
            VAL();
            table = v;
        } else if (!strcmp(a, "--source")) {
            VAL();
            f.source = v, use_f = true;
        } else if (!strcmp(a, "--rerank")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 10000, &rerank)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--mmr")) {
            VAL();
            if (!loom_cli_parse_f32(C, a, v, 0.0f, 1.0f, &mmr)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--exact"))
            exact = true;
        else if (!strcmp(a, "--json"))
            json = true;
        else if (a[0] != '-' && !text)
            text = a;
        else {
            loom_cli_unknown(C, a);
            search_usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (text || qfile) {
        if (!index == !store || vfile || qvec || (text && qfile)) {
            fprintf(stderr, "loom rag search: %s\n",
                    text && qfile      ? "give a text query or --query-file, not both"
                    : !index == !store ? "a text query needs one of --index INDEX or --store URL"
                                       : "give a text query or a query vector, not both");
            return LOOM_CLI_USAGE;
        }
        loom_cli_retrieve_opts ro = {
            .index = index, .store = store, .table = table, .encoder = enc, .threads = threads};
        loom_cli_search_opts so = {.k = k,
                                   .ef = ef,
                                   .rerank = rerank,
                                   .mmr = mmr,
                                   .exact = exact,
                                   .filter = use_f ? &f : NULL};
        return loom_cli_rag_text_search(&ro, text, qfile, &so, json);
    }
    if (enc || rerank || mmr >= 0) {
        fprintf(stderr, "loom rag search: %s is for text queries\n",
                enc      ? "-m ENCODER"
                : rerank ? "--rerank"
                         : "--mmr");
        return LOOM_CLI_USAGE;
    }
    if (!index == !store || (!vfile == !qvec)) {
        fprintf(stderr, "loom rag search: %s\n",
                !index == !store ? "give one of --index INDEX or --store URL"
                                 : "give one of --vector-file or --query-vec");
        return LOOM_CLI_USAGE;
    }
    float *q = NULL;
    size_t nq = 1;
    int qd = 0;
    loom_rag_matrix m = {0};
    if (qvec && !(q = parse_vec(qvec, &qd))) return LOOM_CLI_USAGE;
    if (store)
        return search_store(store, table, q, qd, vfile, k, ef, exact, use_f ? &f : NULL, json);
    loom_rag_index *ix = load_index("search", index);
    if (!ix) return free(q), 1;
    const int d = loom_rag_index_dim(ix);
    if (vfile) {
        if (!read_vectors("search", vfile, d, &m)) return loom_rag_index_free(ix), 1;
        q = m.data, nq = m.rows, qd = (int)m.cols;
        m.data = NULL;
    }
    if (qd != d) {
        fprintf(stderr, "loom rag search: the query has %d values, the index's vectors %d\n", qd,
                d);
        free(q);
        loom_rag_index_free(ix);
        return 1;
    }
    loom_threadpool *pool = make_pool("search", threads);
    loom_rag_hit *hits = malloc(nq * (size_t)k * sizeof *hits);
    int *nh = malloc(nq * sizeof *nh);
    loom_rag_search_params sp = {
        .k = k, .ef_search = ef, .exact = exact, .filter = use_f ? &f : NULL};
    loom_status st = pool && hits && nh ? LOOM_OK : LOOM_ERR_OOM;
    if (st == LOOM_OK && nq == 1)
        st = loom_rag_index_search(ix, q, &sp, pool, hits, nh);
    else if (st == LOOM_OK)
        st = loom_rag_index_search_batch(ix, q, nq, &sp, pool, hits, nh);
    for (size_t i = 0; st == LOOM_OK && i < nq; i++) {
        if (!json) printf("query %zu: %d hits\n", i, nh[i]);
        for (int j = 0; j < nh[i]; j++) {
            const loom_rag_hit *h = &hits[i * (size_t)k + j];
            loom_rag_meta md;
            loom_rag_index_meta(ix, h->id, &md);
            print_hit(i, j + 1, h, &md, json);
        }
    }
    if (st != LOOM_OK) fprintf(stderr, "loom rag search: %s\n", loom_status_str(st));
    free(hits), free(nh), free(q);
    loom_threadpool_free(pool);
    loom_rag_index_free(ix);
    return st == LOOM_OK ? 0 : 1;
}

static int cmd_bench(int argc, char **argv) {
    const char *C = "rag bench", *index = NULL, *qfile = NULL, *gtfile = NULL,
               *eflist = "16,32,64,128,256";
    int k = 10, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return bench_usage(stdout), 0;
        if (!strcmp(a, "--index")) {
            VAL();
            index = v;
        } else if (!strcmp(a, "--queries")) {
            VAL();
            qfile = v;
        } else if (!strcmp(a, "--gt")) {
            VAL();
            gtfile = v;
        } else if (!strcmp(a, "--ef")) {
            VAL();
            eflist = v;
        } else if (!strcmp(a, "-k")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 1000, &k)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--threads")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 4096, &threads)) return LOOM_CLI_USAGE;
        } else {
            loom_cli_unknown(C, a);
            bench_usage(stderr);
            return LOOM_CLI_USAGE;
        }
#undef VAL
    }
    int efs[32], nef = 0;
    {
        char buf[256], *save = NULL;
        if (strlen(eflist) >= sizeof buf) eflist = "";
        strcpy(buf, eflist);
        for (char *t = strtok_r(buf, ",", &save); t && nef < 32; t = strtok_r(NULL, ",", &save))
            if (!loom_cli_parse_int(C, "--ef", t, 1, 100000, &efs[nef++])) return LOOM_CLI_USAGE;
        if (!nef) {
            fprintf(stderr, "loom rag bench: --ef: '%s' is not a list of efSearch values\n",
                    eflist);
            return LOOM_CLI_USAGE;
        }
    }
    if (!index || !qfile) {
        fprintf(stderr, "loom rag bench: %s is required\n",
                !index ? "--index INDEX" : "--queries Q.npy");
        return LOOM_CLI_USAGE;
    }
    loom_rag_index *ix = load_index("bench", index);
    if (!ix) return 1;
    loom_rag_matrix qm = {0}, gm = {0};
    char err[300];
    if (!read_vectors("bench", qfile, loom_rag_index_dim(ix), &qm))
        return loom_rag_index_free(ix), 1;
    if (gtfile && (loom_rag_matrix_read(gtfile, 0, &gm, err, sizeof err) != LOOM_OK ||
                   gm.kind == 'f' || gm.rows != qm.rows || gm.cols < (size_t)k)) {
        fprintf(stderr, "loom rag bench: %s: %s\n", gtfile,
                gm.data ? "not int32/int64 nq x >= k" : err);
        loom_rag_matrix_free(&qm), loom_rag_matrix_free(&gm), loom_rag_index_free(ix);
        return 1;
    }
    const size_t nq = qm.rows;
    loom_threadpool *pool = make_pool("bench", threads);
    loom_rag_hit *hits = malloc(nq * (size_t)k * sizeof *hits);
    uint32_t *truth = malloc(nq * (size_t)k * 4);
    int *nh = malloc(nq * sizeof *nh);
    if (!pool || !hits || !truth || !nh)
        return fprintf(stderr, "loom rag bench: out of memory\n"), 1;
    /* The exact pass: its own line, and the truth when no --gt. */
    loom_rag_search_params ex = {.k = k, .exact = true};
    double t0 = now_s(), c0 = cpu_s();
    loom_rag_index_search_batch(ix, qm.data, nq, &ex, pool, hits, nh);
    double te = now_s() - t0, ce = cpu_s() - c0;
    for (size_t i = 0; i < nq * (size_t)k; i++) {
        if (gm.data) {
            size_t r = i / k, c = i % k;
            truth[i] = gm.kind == 'i' ? (uint32_t)((int32_t *)gm.data)[r * gm.cols + c]
                                      : (uint32_t)((int64_t *)gm.data)[r * gm.cols + c];
        } else {
            truth[i] = hits[i].id;
        }
    }
    for (int e = -1; e < nef; e++) {
        double t = te, c = ce;
        if (e >= 0) {
            loom_rag_search_params sp = {.k = k, .ef_search = efs[e]};
            t0 = now_s(), c0 = cpu_s();
            loom_rag_index_search_batch(ix, qm.data, nq, &sp, pool, hits, nh);
            t = now_s() - t0, c = cpu_s() - c0;
        }
        size_t found = 0;
        for (size_t i = 0; i < nq; i++)
            for (int a = 0; a < k; a++)
                for (int b = 0; b < nh[i]; b++)
                    found += truth[i * k + a] == hits[i * k + b].id;
        if (e < 0 && !gm.data) found = nq * (size_t)k;
        if (e >= 0)
            printf("{\"engine\":\"loom\",\"kind\":\"hnsw\",\"ef\":%d,\"recall\":%.4f,\"qps\":%.1f,"
                   "\"qps_cpu\":%.1f,\"threads\":%d}\n",
                   efs[e], (double)found / (double)(nq * k), nq / t, nq / c,
                   loom_threadpool_size(pool));
        else
            printf("{\"engine\":\"loom\",\"kind\":\"exact\",\"recall\":%.4f,\"qps\":%.1f,"
                   "\"qps_cpu\":%.1f,\"threads\":%d,\"isa\":\"%s\"}\n",
                   (double)found / (double)(nq * k), nq / t, nq / c, loom_threadpool_size(pool),
                   loom_rag_isa_name());
        if (e >= 0 && !loom_rag_index_has_hnsw(ix)) break;
    }
    free(hits), free(truth), free(nh);
    loom_rag_matrix_free(&qm), loom_rag_matrix_free(&gm);
    loom_threadpool_free(pool);
    loom_rag_index_free(ix);
    return 0;
}

int loom_cli_rag(int argc, char **argv) {
    if (argc < 2) {
        rag_usage(stderr);
        return LOOM_CLI_USAGE;
    }
    const char *sub = argv[1];
    if (loom_cli_is_help(sub)) return rag_usage(stdout), 0;
    if (!strcmp(sub, "index")) return loom_cli_rag_index(argc - 1, argv + 1);
    if (!strcmp(sub, "ask")) return loom_cli_rag_ask(argc - 1, argv + 1);
    if (!strcmp(sub, "build")) return cmd_build(argc - 1, argv + 1);
    if (!strcmp(sub, "add")) return cmd_add(argc - 1, argv + 1);
    if (!strcmp(sub, "delete")) return cmd_delete(argc - 1, argv + 1);
    if (!strcmp(sub, "search")) return cmd_search(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return loom_cli_rag_info(argc - 1, argv + 1);
    if (!strcmp(sub, "bench")) return cmd_bench(argc - 1, argv + 1);
    fprintf(
        stderr,
        "loom rag: unknown command '%s' (index, ask, build, add, delete, search, info, bench)\n",
        sub);
    return LOOM_CLI_USAGE;
}

/* cli/rag_ask_cmd.c - `loom rag ask`: grounded answers. The question is
 * encoded with the index's encoder, the top k chunks are read back from
 * their sources, as many as fit the model's context (after the answer's
 * -n tokens) go into the chat template as numbered sources, and the model
 * answers citing them as [n]. docs/adr/0026-vector-index.md, addendum. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/rag_retrieve.h"
#include "cli/rag_text.h"
#include "loom/encoder.h"
#include "loom/generate.h"
#include "loom/model.h"
#include "loom/runtime.h"
#include "loom/tokenizer.h"

static const char *k_system =
    "Answer the question using only the numbered sources below. After each statement, cite "
    "the sources that support it as [1], [2], ... If the sources do not hold the answer, say "
    "that they do not.";

static void ask_usage(FILE *f) {
    fprintf(f, "usage: loom rag ask (--index INDEX | --store URL) [-m MODEL] \"question\" "
               "[options]\n"
               "  --index INDEX        made by loom rag index (its encoder encodes the question)\n"
               "  --store URL          or a table made by loom rag index --store (the context\n"
               "                       comes from its chunk column)\n"
               "  --table NAME         the store's table (default loom_vectors)\n"
               "  --rerank N           re-rank N candidates by exact cosine of re-encoded chunks\n"
               "  --mmr LAMBDA         pick the k by maximal marginal relevance (0..1)\n"
               "  -m, --model MODEL    the chat model (default: SmolLM2-135M-Instruct)\n"
               "  -k K                 chunks retrieved (default 4); those that do not fit the\n"
               "                       context are left out, lowest score first\n"
               "  -n N                 answer tokens at most (default 256)\n"
               "  --ctx N              context size (default: the model's, at most 4096)\n"
               "  --chat-template NAME override the model's template\n"
               "  --exact              exact search even when the index has a graph\n"
               "  --show-prompt        print the prompt sent to the model on stderr\n");
}

typedef struct src {
    char *text; /* "[n] title (source)\ntext" */
    const loom_cli_hit *hit;
} src;

/* Render the conversation with the first n sources. */
static char *render(const loom_tokenizer *tok, const char *tmpl, const src *s, int n, const char *q,
                    char *err, size_t err_n) {
    size_t len = strlen(q) + 64;
    for (int i = 0; i < n; i++)
        len += strlen(s[i].text) + 2;
    char *u = malloc(len), *out = NULL;
    if (!u) return NULL;
    size_t k = (size_t)snprintf(u, len, "Sources:\n\n");
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(u + k, len - k, "%s\n\n", s[i].text);
    snprintf(u + k, len - k, "Question: %s", q);
    loom_chat_message m[2] = {{"system", k_system}, {"user", u}};
    if (loom_tokenizer_chat_render(tok, tmpl, m, 2, true, &out, err, err_n) != LOOM_OK) out = NULL;
    free(u);
    return out;
}

int loom_cli_rag_ask(int argc, char **argv) {
    const char *C = "rag ask", *index = NULL, *model = NULL, *q = NULL, *tmpl = NULL, *store = NULL,
               *table = NULL;
    int k = 4, n_predict = 256, ctx = 0, rerank = 0;
    float mmr = -1;
    bool exact = false, show = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return ask_usage(stdout), 0;
#define VAL()                                                                                      \
    if (!(v = loom_cli_value(C, argc, argv, &i))) return LOOM_CLI_USAGE
        if (!strcmp(a, "--index")) {
            VAL();
            index = v;
        } else if (!strcmp(a, "--store")) {
            VAL();
            store = v;
        } else if (!strcmp(a, "--table")) {
            VAL();
            table = v;
        } else if (!strcmp(a, "--rerank")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 10000, &rerank)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--mmr")) {
            VAL();
            if (!loom_cli_parse_f32(C, a, v, 0.0f, 1.0f, &mmr)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VAL();
            model = v;
        } else if (!strcmp(a, "-k")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 100, &k)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "-n")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 1, 65536, &n_predict)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--ctx")) {
            VAL();
            if (!loom_cli_parse_int(C, a, v, 64, 1 << 24, &ctx)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--chat-template")) {
            VAL();
            tmpl = v;
        } else if (!strcmp(a, "--exact")) {
            exact = true;
        } else if (!strcmp(a, "--show-prompt")) {
            show = true;
        } else if (a[0] != '-' && !q) {
            q = a;
        } else {
            loom_cli_unknown(C, a);
            ask_usage(stderr);
            return LOOM_CLI_USAGE;
        }
#undef VAL
    }
    if (!index == !store || !q) {
        fprintf(stderr, "loom rag ask: %s\n",
                !q ? "a question is required" : "give one of --index INDEX or --store URL");
        return LOOM_CLI_USAGE;
    }
    char err[1024], defpath[1200];
    loom_cli_retriever r;
    loom_cli_retrieve_opts ro = {.index = index, .store = store, .table = table};
    if (!loom_cli_retriever_open(&r, "ask", &ro)) return 1;
    const int cap = rerank > k ? rerank : k;
    float *qv = malloc((size_t)r.dim * sizeof *qv);
    loom_cli_hit *hits = calloc((size_t)cap, sizeof *hits);
    src *s = calloc((size_t)cap, sizeof *s);
    int nh = 0, rc = 1;
    loom_model *m = NULL;
    char *prompt = NULL, *answer = NULL;
    if (!qv || !hits || !s) {
        fprintf(stderr, "loom rag ask: out of memory\n");
        goto done;
    }
    loom_cli_search_opts so = {.k = k, .rerank = rerank, .mmr = mmr, .exact = exact};
    if (!loom_cli_retriever_encode(&r, &q, 1, qv) || !loom_cli_retrieve(&r, qv, &so, hits, &nh))
        goto done;
    int ns = 0;
    for (int i = 0; i < nh; i++) {
        const loom_cli_hit *h = &hits[i];
        if (!h->len) continue; /* source gone or changed: warned */
        size_t len = h->len + strlen(h->meta.title) + strlen(h->meta.source) + 32;
        if (!(s[ns].text = malloc(len))) break;
        snprintf(s[ns].text, len, "[%d] %s (%s)\n%.*s", ns + 1, h->meta.title, h->meta.source,
                 (int)h->len, h->text);
        s[ns].hit = h;
        ns++;
    }
    if (!model) {
        if (loom_cli_default_model(defpath, sizeof defpath) != 0) goto done;
        model = defpath;
    }
    loom_model_params mp = {0};
    mp.n_ctx = ctx;
    if (loom_model_load(model, &mp, &m, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag ask: %s: %s\n", model, err);
        goto done;
    }
    const loom_tokenizer *tok = loom_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "loom rag ask: %s has no tokenizer\n", model);
        goto done;
    }
    /* The context budget: prompt + answer <= n_ctx. Sources are dropped from
       the lowest-scored up until the prompt fits. */
    const int64_t n_ctx = loom_model_n_ctx(m);
    int used = ns;
    int64_t n_prompt = 0;
    for (;; used--) {
        free(prompt);
        if (!(prompt = render(tok, tmpl, s, used, q, err, sizeof err))) {
            fprintf(stderr, "loom rag ask: %s\n", err);
            goto done;
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        if (loom_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &nid, err, sizeof err) !=
            LOOM_OK) {
            fprintf(stderr, "loom rag ask: %s\n", err);
            goto done;
        }
        free(ids);
        n_prompt = (int64_t)nid;
        if (n_prompt + n_predict <= n_ctx || used == 0) break;
    }
    if (n_prompt + n_predict > n_ctx) {
        fprintf(stderr,
                "loom rag ask: the question alone takes %" PRId64 " tokens; with -n %d that "
                "passes the context (%" PRId64 ")\n",
                n_prompt, n_predict, n_ctx);
        goto done;
    }
    if (used < ns)
        fprintf(stderr, "loom rag ask: %d of %d sources fit the context (%" PRId64 " tokens)\n",
                used, ns, n_ctx);
    if (show) fprintf(stderr, "%s\n", prompt);
    loom_generate_params gp = loom_generate_default_params();
    gp.n_predict = n_predict;
    gp.add_bos = false;          /* templates that want BOS write it */
    gp.sampling.temperature = 0; /* greedy: answers repeat */
    loom_generate_stats gs;
    if (loom_generate(m, prompt, &gp, &answer, &gs, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag ask: %s\n", err);
        goto done;
    }
    printf("%s\n\nSources:\n", answer);
    for (int i = 0; i < used; i++) {
        const loom_rag_meta *md = &s[i].hit->meta;
        printf("[%d] %s [%" PRIu64 ", %" PRIu64 ") %s (score %.4f)\n", i + 1, md->source,
               md->byte_begin, md->byte_end, md->title, s[i].hit->score);
    }
    fprintf(stderr, "rag ask: %d sources, prompt %" PRId64 " tokens, answer %" PRId64 " tokens\n",
            used, gs.n_prompt, gs.n_gen);
    rc = 0;
done:
    for (int i = 0; s && i < cap; i++)
        free(s[i].text);
    loom_cli_hits_free(hits, nh);
    free(s), free(hits), free(qv), free(prompt), free(answer);
    loom_model_free(m);
    loom_cli_retriever_close(&r);
    loom_registry_shutdown();
    return rc;
}

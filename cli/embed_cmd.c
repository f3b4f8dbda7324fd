/* cli/embed_cmd.c - `loom embed`: sentence embeddings from an encoder
 * (loom/encoder.h), one L2-normalised vector per input text.
 *
 * Inputs are the TEXT arguments, or else the lines of stdin. As
 * sentence-transformers' encode does, the texts are sorted by token count
 * and cut into batches of -b (each padded to its longest), so texts of
 * similar length share a batch; the vectors are printed in input order. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/encoder.h"
#include "loom/loom.h"

static void embed_usage(FILE *f) {
    fprintf(f, "usage: loom embed [-m ENCODER] [--json] [-b N] [--max-tokens N] [--timing]\n"
               "                  [--backend NAME] [TEXT...]\n"
               "Prints one L2-normalised embedding per TEXT (or per line of stdin when no\n"
               "TEXT is given), in input order: the floats separated by spaces, or with\n"
               "--json one JSON object per line, {\"index\": I, \"embedding\": [...]}.\n"
               "ENCODER: a directory with a Hugging Face BERT model (config.json,\n"
               "model.safetensors, tokenizer.json or vocab.txt), or 'minilm' (default), the\n"
               "bundled all-MiniLM-L6-v2 that scripts/fetch-models.sh installs.\n"
               "-b: texts per batch (default 32; each batch is padded to its longest text);\n"
               "--max-tokens: truncate texts to N tokens ([CLS] and [SEP] included; default\n"
               "the model's max_seq_length); --timing: texts/s of the embedding (model loading\n"
               "excluded) on stderr.\n"
               "ranges: -b 1..4096, --max-tokens 2..1048576\n");
}

typedef struct text_list {
    char **v;
    int n, cap;
} text_list;

static bool add_text(text_list *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, (size_t)cap * sizeof *nv);
        if (!nv) return false;
        l->v = nv;
        l->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c) return false;
    memcpy(c, s, n);
    c[n] = '\0';
    l->v[l->n++] = c;
    return true;
}

static bool read_stdin_lines(text_list *l) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    bool ok = true;
    while (ok && (k = getline(&line, &cap, stdin)) >= 0) {
        size_t n = (size_t)k;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        ok = add_text(l, line, n);
    }
    free(line);
    return ok && !ferror(stdin);
}

typedef struct len_idx {
    int len, idx;
} len_idx;
static int by_len_desc(const void *a, const void *b) { /* longest first, then input order */
    const len_idx *x = a, *y = b;
    if (x->len != y->len) return y->len - x->len;
    return x->idx - y->idx;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int embed_all(loom_encoder *e, text_list *texts, int batch, int max_tokens, bool json,
                     bool timing) {
    const int n = texts->n, M = max_tokens;
    const int64_t dim = loom_encoder_dim(e);
    const loom_wordpiece *wp = loom_encoder_tokenizer(e);
    int32_t *ids = malloc((size_t)n * (size_t)M * sizeof *ids);
    int *lens = malloc((size_t)n * sizeof *lens), *order = malloc((size_t)n * sizeof *order);
    len_idx *li = malloc((size_t)n * sizeof *li);
    float *out = malloc((size_t)n * (size_t)dim * sizeof *out);
    float *tmp = malloc((size_t)batch * (size_t)dim * sizeof *tmp);
    const int32_t **bids = malloc((size_t)batch * sizeof *bids);
    int *blens = malloc((size_t)batch * sizeof *blens);
    int rc = 0;
    if (!ids || !lens || !order || !li || !out || !tmp || !bids || !blens) {
        fprintf(stderr, "loom embed: out of memory\n");
        rc = 1;
        goto done;
    }
    const double t0 = now_s();
    const clock_t c0 = clock();
    for (int i = 0; i < n; i++) {
        order[i] = i;
        if (loom_wordpiece_encode(wp, texts->v[i], strlen(texts->v[i]), M, ids + (size_t)i * M, M,
                                  &lens[i]) != LOOM_OK) {
            fprintf(stderr, "loom embed: tokenizing text %d failed\n", i);
            rc = 1;
            goto done;
        }
    }
    for (int i = 0; i < n; i++)
        li[i] = (len_idx){lens[i], i};
    qsort(li, (size_t)n, sizeof *li, by_len_desc);
    for (int i = 0; i < n; i++)
        order[i] = li[i].idx;
    char err[LOOM_ERROR_MAX] = "";
    for (int s = 0; s < n; s += batch) {
        const int b = n - s < batch ? n - s : batch;
        for (int j = 0; j < b; j++) {
            bids[j] = ids + (size_t)order[s + j] * M;
            blens[j] = lens[order[s + j]];
        }
        if (loom_encoder_embed_ids(e, bids, blens, b, tmp, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom embed: %s\n", err);
            rc = 1;
            goto done;
        }
        for (int j = 0; j < b; j++)
            memcpy(out + (size_t)order[s + j] * dim, tmp + (size_t)j * dim,
                   (size_t)dim * sizeof *out);
    }
    const double t1 = now_s();
    const double cpu_s = (double)(clock() - c0) / CLOCKS_PER_SEC;
    for (int i = 0; i < n; i++) {
        const float *v = out + (size_t)i * dim;
        if (json) printf("{\"index\": %d, \"embedding\": [", i);
        for (int64_t k = 0; k < dim; k++)
            printf(json ? "%s%.8g" : "%s%.8g", k ? (json ? ", " : " ") : "", (double)v[k]);
        printf(json ? "]}\n" : "\n");
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "loom embed: writing the output failed\n");
        rc = 1;
    }
    if (timing) {
        long tokens = 0;
        for (int i = 0; i < n; i++)
            tokens += lens[i];
        fprintf(stderr,
                "loom embed: %d texts (%ld tokens) in %.3f s (cpu time %.3f s): %.1f texts/s, "
                "batch %d, on %s\n",
                n, tokens, t1 - t0, cpu_s, (double)n / (t1 - t0 > 0 ? t1 - t0 : 1e-9), batch,
                loom_encoder_backend(e));
    }
done:
    free(ids);
    free(lens);
    free(order);
    free(li);
    free(out);
    free(tmp);
    free(bids);
    free(blens);
    return rc;
}

int loom_cli_embed(const char *backend, int argc, char **argv) {
    const char *cmd = "embed", *model = "minilm";
    int batch = 32, max_tokens = 0;
    bool json = false, timing = false;
    text_list texts = {0};
    int first_text = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) {
            embed_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            if (!(v = loom_cli_value(cmd, argc, argv, &i)) ||
                !loom_cli_parse_int(cmd, a, v, 1, 4096, &batch))
                return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--max-tokens")) {
            if (!(v = loom_cli_value(cmd, argc, argv, &i)) ||
                !loom_cli_parse_int(cmd, a, v, 2, 1048576, &max_tokens))
                return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--timing")) {
            timing = true;
        } else if (!strcmp(a, "--backend")) {
            if (!(backend = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--")) {
            first_text = i + 1;
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            loom_cli_unknown(cmd, a);
            embed_usage(stderr);
            return LOOM_CLI_USAGE;
        } else {
            first_text = i;
            break;
        }
    }
    /* TEXT arguments come last: everything after the first one is text. */
    char dir[4096], err[LOOM_ERROR_MAX] = "";
    if (loom_encoder_resolve(model, dir, sizeof dir, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom embed: %s\n", err);
        return 1;
    }
    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom embed: backend registry failed: %s\n", loom_status_str(st));
        return 1;
    }
    int rc = 1;
    loom_encoder *e = NULL;
    loom_encoder_params p = {.backend = backend, .max_tokens = max_tokens};
    if (loom_encoder_load(dir, &p, &e, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom embed: %s\n", err);
        goto out;
    }
    bool ok = true;
    for (int i = first_text; i < argc && ok; i++)
        ok = add_text(&texts, argv[i], strlen(argv[i]));
    if (ok && first_text >= argc) ok = read_stdin_lines(&texts);
    if (!ok) {
        fprintf(stderr, "loom embed: reading the input failed\n");
        goto out;
    }
    rc = texts.n ? embed_all(e, &texts, batch, loom_encoder_max_tokens(e), json, timing) : 0;
out:
    for (int i = 0; i < texts.n; i++)
        free(texts.v[i]);
    free(texts.v);
    loom_encoder_free(e);
    loom_registry_shutdown();
    return rc;
}

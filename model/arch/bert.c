/* model/arch/bert.c - BERT-family sentence encoders on the IR (loom/encoder.h):
 * Hugging Face BertModel (absolute positions, token types, post-LN) loaded
 * from config.json + model.safetensors, mean pooling over the attention mask
 * and L2 normalisation, as sentence-transformers' all-MiniLM-L6-v2 runs it.
 *
 * Every piece is a composition of IR ops (docs/adr/0027-sentence-encoders.md):
 *   LayerNorm(x) = rms_norm(x - mean(x)) * w + b, the mean from sum_to;
 *   attention = softmax(k.q / sqrt(D) + mask) then v, as batched matmuls over
 *     [D, T, heads, B] with an additive key mask [T, 1, 1, B] (0 or -1e30);
 *   pooling = sum_to of the hidden states times the 0/1 token mask, then
 *     rms_norm(eps 0) / sqrt(H), which is x / |x|. The division by the token
 *     count that sentence-transformers does first cancels in the normalisation.
 * Only GELU (erf form) is an op of its own.
 *
 * Token layout (ADR 0027 addendum "packed tokens"): every per-token op
 * (projections, FFN, LayerNorm) runs on the P real tokens of the batch packed
 * back to back, [H, P], P = their count rounded up to ENC_PACK (the few filler
 * columns are pad tokens nobody reads). Only attention needs the padded
 * [D, T, heads, B] layout: get_rows scatters q, k, v into it and gathers the
 * attention output back, so padding costs copies, not GEMM work. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/encoder.h"
#include "loom/safetensors.h"
#include "model/model_internal.h"

#define ENC_GRAPH_CACHE     4
#define LOOM_CONST_NEG_MEAN "loom.layer_norm_neg_mean"
#define ENC_MASK_NEG        (-1e30f)
#define ENC_PACK            16 /* packed token counts round up to this: graph reuse */

typedef struct bert_layer {
    loom_tensor *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln1_w, *ln1_b;
    loom_tensor *wi, *bi, *wout, *bout, *ln2_w, *ln2_b;
} bert_layer;

typedef struct enc_graph {
    bool used;
    int T, B, P; /* padded length, sequences, packed token columns */
    loom_graph *g;
    loom_sched *s;
    loom_tensor *ids, *pos, *mask, *tmask, *buckets, *out;
    loom_tensor *scat; /* [T*nh*B]: padded (t, h, b) <- packed row h + nh*j of [D, nh*P] */
    loom_tensor *gath; /* [nh*P]: packed (h, j) <- padded row t + T*h + T*nh*b */
    loom_tensor *pool; /* [T, B]: padded (t, b) <- packed column j (0 for padding) */
    uint64_t last_used;
} enc_graph;

typedef enum enc_arch { ENC_BERT, ENC_MPNET } enc_arch;

struct loom_encoder {
    enc_arch arch;
    int64_t H, F, n_layers, n_heads, vocab, max_pos, n_types;
    int64_t n_buckets; /* MPNet: relative-position buckets (32) */
    int pos_offset;    /* position of token 0: BERT 0, MPNet 2 (padding_idx + 1) */
    float eps;
    int max_tokens;
    loom_wordpiece *tok;
    loom_backend *be, *cpu;
    loom_graph *wg;
    loom_buffer **wbufs;
    int n_wbufs;
    loom_tensor *word, *posemb, *type, *eln_w, *eln_b;
    loom_tensor *rel_bias;   /* MPNet: [n_heads, n_buckets] (PyTorch [buckets, heads]) */
    loom_tensor *neg_mean_w; /* [H, 1], every entry -1/H: LayerNorm's mean as a matmul */
    bert_layer *L;
    enc_graph cache[ENC_GRAPH_CACHE];
    uint64_t tick;
};

/* ---------------- config ---------------- */

static loom_status read_text(const char *path, char **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return LOOM_ERR_IO;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            if (cap > (64u << 20)) break; /* a config is never this large */
            char *nb = realloc(buf, cap + 1);
            if (!nb) break;
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    bool bad = ferror(f) || !buf || len == cap;
    fclose(f);
    if (bad) {
        free(buf);
        return LOOM_ERR_IO;
    }
    buf[len] = '\0';
    *out = buf;
    *n = len;
    return LOOM_OK;
}

static bool num(const cJSON *o, const char *key, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return false;
    *v = x->valuedouble;
    return true;
}

static loom_status read_config(loom_encoder *e, const char *dir, char *err, size_t err_n) {
    char path[4096], *text = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (read_text(path, &text, &n) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_IO, "encoder: cannot read %s", path);
    cJSON *c = cJSON_ParseWithLength(text, n);
    free(text);
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "encoder: %s is not a JSON object",
                               path);
    }
    loom_status st = LOOM_OK;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, "hidden_act");
    const cJSON *pet = cJSON_GetObjectItemCaseSensitive(c, "position_embedding_type");
    struct {
        const char *key;
        int64_t *dst;
    } ints[] = {{"hidden_size", &e->H},
                {"intermediate_size", &e->F},
                {"num_hidden_layers", &e->n_layers},
                {"num_attention_heads", &e->n_heads},
                {"vocab_size", &e->vocab},
                {"max_position_embeddings", &e->max_pos},
                {"type_vocab_size", &e->n_types},
                {"relative_attention_num_buckets", &e->n_buckets}};
    double eps = 1e-12;
    const bool mpnet = cJSON_IsString(mt) && !strcmp(mt->valuestring, "mpnet");
    e->arch = mpnet ? ENC_MPNET : ENC_BERT;
    e->pos_offset = mpnet ? 2 : 0;
    if (mpnet) { /* no token types; the bucket count has a default */
        e->n_types = 1;
        e->n_buckets = 32;
        ints[6].key = ints[7].key = NULL;
        double v;
        if (num(c, "relative_attention_num_buckets", &v) && (v < 2 || v > 1024 || v != floor(v)))
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "encoder: %s: relative_attention_num_buckets must be in 2..1024",
                                 path);
        else if (num(c, "relative_attention_num_buckets", &v))
            e->n_buckets = (int64_t)v;
    } else {
        ints[7].key = NULL;
    }
    if (!cJSON_IsString(mt) || (strcmp(mt->valuestring, "bert") && !mpnet)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                             "encoder: %s: model_type '%s' is not supported (bert, mpnet)", path,
                             cJSON_IsString(mt) ? mt->valuestring : "?");
    } else if (cJSON_IsString(act) && strcmp(act->valuestring, "gelu")) {
        st = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                             "encoder: %s: hidden_act '%s' is not supported (gelu)", path,
                             act->valuestring);
    } else if (cJSON_IsString(pet) && strcmp(pet->valuestring, "absolute")) {
        st = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                             "encoder: %s: position_embedding_type '%s' is not supported "
                             "(absolute)",
                             path, pet->valuestring);
    }
    for (size_t i = 0; st == LOOM_OK && i < sizeof ints / sizeof ints[0]; i++) {
        double v;
        if (!ints[i].key) continue;
        if (!num(c, ints[i].key, &v) || v < 1 || v > 1e7 || v != floor(v))
            st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                 "encoder: %s: %s must be a positive integer", path, ints[i].key);
        else
            *ints[i].dst = (int64_t)v;
    }
    if (st == LOOM_OK && num(c, "layer_norm_eps", &eps) && !(eps >= 0 && eps < 1))
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "encoder: %s: layer_norm_eps must be in [0, 1)", path);
    if (st == LOOM_OK && e->H % e->n_heads)
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "encoder: %s: hidden_size %lld is not a multiple of "
                             "num_attention_heads %lld",
                             path, (long long)e->H, (long long)e->n_heads);
    e->eps = (float)eps;
    cJSON_Delete(c);
    return st;
}

/* max_seq_length of sentence_bert_config.json, else max_position_embeddings. */
static int default_max_tokens(const loom_encoder *e, const char *dir) {
    char path[4096], *text = NULL;
    size_t n = 0;
    int64_t m = e->max_pos - e->pos_offset;
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", dir);
    if (read_text(path, &text, &n) == LOOM_OK) {
        cJSON *c = cJSON_ParseWithLength(text, n);
        double v;
        if (num(c, "max_seq_length", &v) && v >= 2 && v < (double)m) m = (int64_t)v;
        cJSON_Delete(c);
        free(text);
    }
    return (int)(m > 1 << 20 ? 1 << 20 : m);
}

/* ---------------- weights ---------------- */

typedef struct wspec {
    char name[128];
    int64_t ne[4];
    loom_tensor **dst;
    int64_t si; /* safetensors index */
    loom_place at;
} wspec;

static int add_w(wspec *w, int n, loom_tensor **dst, int64_t ne0, int64_t ne1, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
static int add_w(wspec *w, int n, loom_tensor **dst, int64_t ne0, int64_t ne1, const char *fmt,
                 ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w[n].name, sizeof w[n].name, fmt, ap);
    va_end(ap);
    w[n].ne[0] = ne0;
    w[n].ne[1] = ne1;
    w[n].ne[2] = w[n].ne[3] = 1;
    w[n].dst = dst;
    return n + 1;
}

/* Per-layer module names: BertModel's and MPNetModel's. */
static const char *const bert_names[8] = {"attention.self.query",
                                          "attention.self.key",
                                          "attention.self.value",
                                          "attention.output.dense",
                                          "attention.output.LayerNorm",
                                          "intermediate.dense",
                                          "output.dense",
                                          "output.LayerNorm"};
static const char *const mpnet_names[8] = {
    "attention.attn.q",    "attention.attn.k",   "attention.attn.v", "attention.attn.o",
    "attention.LayerNorm", "intermediate.dense", "output.dense",     "output.LayerNorm"};

static int weight_list(loom_encoder *e, wspec *w) {
    const int64_t H = e->H, F = e->F;
    const char *const *nm = e->arch == ENC_MPNET ? mpnet_names : bert_names;
    int n = 0;
    n = add_w(w, n, &e->word, H, e->vocab, "embeddings.word_embeddings.weight");
    n = add_w(w, n, &e->posemb, H, e->max_pos, "embeddings.position_embeddings.weight");
    if (e->arch == ENC_BERT)
        n = add_w(w, n, &e->type, H, e->n_types, "embeddings.token_type_embeddings.weight");
    else
        n = add_w(w, n, &e->rel_bias, e->n_heads, e->n_buckets,
                  "encoder.relative_attention_bias.weight");
    n = add_w(w, n, &e->eln_w, H, 1, "embeddings.LayerNorm.weight");
    n = add_w(w, n, &e->eln_b, H, 1, "embeddings.LayerNorm.bias");
    /* not in the file: a constant (see layer_norm) */
    n = add_w(w, n, &e->neg_mean_w, H, 1, "%s", LOOM_CONST_NEG_MEAN);
    for (int64_t l = 0; l < e->n_layers; l++) {
        bert_layer *L = &e->L[l];
        const char *p = "encoder.layer";
        long long i = (long long)l;
        struct {
            loom_tensor **w, **b;
            int64_t in, out;
        } lin[8] = {{&L->wq, &L->bq, H, H},       {&L->wk, &L->bk, H, H},
                    {&L->wv, &L->bv, H, H},       {&L->wo, &L->bo, H, H},
                    {&L->ln1_w, &L->ln1_b, H, 1}, {&L->wi, &L->bi, H, F},
                    {&L->wout, &L->bout, F, H},   {&L->ln2_w, &L->ln2_b, H, 1}};
        for (int k = 0; k < 8; k++) {
            const bool ln = lin[k].out == 1; /* LayerNorm: weight and bias [H] */
            n = add_w(w, n, lin[k].w, lin[k].in, lin[k].out, "%s.%lld.%s.weight", p, i, nm[k]);
            n = add_w(w, n, lin[k].b, ln ? lin[k].in : lin[k].out, 1, "%s.%lld.%s.bias", p, i,
                      nm[k]);
        }
    }
    return n;
}

/* Find a tensor by its BertModel / MPNetModel name, or with the "bert." /
 * "mpnet." prefix that the *For* heads' checkpoints carry. */
static int64_t find(loom_safetensors *st, const char *name) {
    int64_t i = loom_safetensors_find(st, name);
    if (i >= 0) return i;
    char b[160];
    snprintf(b, sizeof b, "bert.%s", name);
    if ((i = loom_safetensors_find(st, b)) >= 0) return i;
    snprintf(b, sizeof b, "mpnet.%s", name);
    return loom_safetensors_find(st, b);
}

static loom_status load_weights(loom_encoder *e, const char *dir, char *err, size_t err_n) {
    loom_safetensors *st = NULL;
    char serr[LOOM_ERROR_MAX] = "";
    loom_status s = loom_safetensors_open(dir, &st, serr, sizeof serr);
    if (s != LOOM_OK) return loom_model_fail(err, err_n, s, "encoder: %s", serr);
    const int n_max = 6 + 16 * (int)e->n_layers;
    wspec *w = calloc((size_t)n_max, sizeof *w);
    e->L = calloc((size_t)e->n_layers, sizeof *e->L);
    loom_pack pk = {.max = loom_backend_max_buffer(e->be)};
    if (!w || !e->L || loom_graph_new(&e->wg) != LOOM_OK) {
        s = loom_model_fail(err, err_n, LOOM_ERR_OOM, "encoder: out of memory");
        goto done;
    }
    const int n = weight_list(e, w);
    for (int i = 0; i < n && s == LOOM_OK; i++) {
        loom_st_tensor_info info;
        loom_dtype dt;
        if (!strcmp(w[i].name, LOOM_CONST_NEG_MEAN)) {
            w[i].si = -1;
            s = loom_pack_add(&pk, loom_dtype_nbytes(LOOM_F32, w[i].ne[0]), &w[i].at);
            continue;
        }
        w[i].si = find(st, w[i].name);
        if (w[i].si < 0) {
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "encoder: %s: tensor '%s' is missing",
                                dir, w[i].name);
            break;
        }
        loom_safetensors_tensor(st, w[i].si, &info);
        if (loom_safetensors_tensor_dtype(st, w[i].si, &dt) != LOOM_OK) {
            s = loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED, "encoder: %s",
                                loom_safetensors_error(st));
            break;
        }
        if (info.ne[0] != w[i].ne[0] || info.ne[1] != w[i].ne[1] || info.ne[2] != 1 ||
            info.ne[3] != 1) {
            s = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                                "encoder: %s: tensor '%s' has ne [%lld, %lld, %lld] but the "
                                "config needs [%lld, %lld]",
                                dir, w[i].name, (long long)info.ne[0], (long long)info.ne[1],
                                (long long)info.ne[2], (long long)w[i].ne[0],
                                (long long)w[i].ne[1]);
            break;
        }
        s = loom_pack_add(&pk, loom_dtype_nbytes(LOOM_F32, w[i].ne[0] * w[i].ne[1]), &w[i].at);
        if (s != LOOM_OK)
            loom_model_fail(err, err_n, s, "encoder: tensor '%s' does not fit a %s buffer",
                            w[i].name, e->be->iface->name);
    }
    if (s == LOOM_OK && (s = loom_pack_finish(&pk)) != LOOM_OK)
        loom_model_fail(err, err_n, s, "encoder: out of memory");
    if (s == LOOM_OK)
        s = loom_alloc_buffers(e->be, pk.sizes, pk.n, &e->wbufs, &e->n_wbufs, "the weights", err,
                               err_n);
    for (int i = 0; i < n && s == LOOM_OK; i++) {
        /* Weights are kept at f32 whatever the file stores: the goldens are f32. */
        const size_t nb = loom_dtype_nbytes(LOOM_F32, w[i].ne[0] * w[i].ne[1]);
        float *buf = malloc(nb);
        if (!buf) {
            s = loom_model_fail(err, err_n, LOOM_ERR_OOM, "encoder: out of memory");
            break;
        }
        if (w[i].si < 0) /* the constant column -1/H */
            for (int64_t k = 0; k < w[i].ne[0]; k++)
                buf[k] = -1.0f / (float)e->H;
        else
            s = loom_safetensors_read(st, w[i].si, LOOM_F32, buf, nb);
        if (s != LOOM_OK) {
            loom_model_fail(err, err_n, s, "encoder: reading '%s': %s", w[i].name,
                            loom_safetensors_error(st));
        } else {
            loom_buffer *b = e->wbufs[w[i].at.buf];
            *w[i].dst = loom_bound_leaf(e->wg, LOOM_F32, w[i].ne, b, w[i].at.off, w[i].name);
            s = *w[i].dst ? e->be->iface->buffer_upload(b, w[i].at.off, buf, nb) : LOOM_ERR_OOM;
            if (s != LOOM_OK)
                loom_model_fail(err, err_n, s, "encoder: uploading '%s' to %s failed", w[i].name,
                                e->be->iface->name);
        }
        free(buf);
    }
done:
    loom_pack_free(&pk);
    free(w);
    loom_safetensors_close(st);
    return s;
}

/* ---------------- graph ---------------- */

static void release(enc_graph *eg) {
    loom_sched_free(eg->s);
    loom_graph_free(eg->g);
    memset(eg, 0, sizeof *eg);
}

static loom_tensor *input(loom_graph *g, loom_dtype t, int64_t n0, int64_t n1, int64_t n2,
                          int64_t n3, const char *name) {
    loom_tensor *x = loom_tensor_4d(g, t, n0, n1, n2, n3);
    if (!x) return NULL;
    loom_tensor_set_name(x, "%s", name);
    return loom_tensor_set_flags(x, LOOM_FLAG_INPUT);
}

/* LayerNorm over ne[0] of x [H, N]: rms_norm of the centred x, then w, b.
 * The mean is a matmul with the constant column -1/H (e->neg_mean_w), so it
 * runs on each backend's matmul kernel. */
static loom_tensor *layer_norm(const loom_encoder *e, loom_graph *g, loom_tensor *x, loom_tensor *w,
                               loom_tensor *b) {
    loom_tensor *neg_mean = loom_matmul(g, loom_model_mirror(g, e->neg_mean_w), x); /* [1, N] */
    loom_tensor *y = loom_rms_norm(g, loom_add(g, x, neg_mean), e->eps);
    return loom_add(g, loom_mul(g, y, w), b);
}

static loom_tensor *linear(loom_graph *g, loom_tensor *w, loom_tensor *b, loom_tensor *x) {
    return loom_add(g, loom_matmul(g, w, x), b);
}

/* Rows of the packed [D, nh*P] projection scattered to the padded
 * [D, T, nh, B] attention layout. */
static loom_tensor *to_heads(const enc_graph *eg, loom_graph *g, loom_tensor *x, int64_t D,
                             int64_t nh) {
    loom_tensor *r = loom_get_rows(g, loom_reshape_2d(g, x, D, nh * eg->P), eg->scat);
    return loom_reshape_4d(g, r, D, eg->T, nh, eg->B);
}

static loom_status build(loom_encoder *e, enc_graph *eg, char *err, size_t err_n) {
    const int64_t T = eg->T, B = eg->B, P = eg->P, H = e->H, nh = e->n_heads, D = H / nh;
    if (loom_graph_new(&eg->g) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "encoder: out of memory");
    loom_graph *g = eg->g;
    eg->ids = input(g, LOOM_I32, P, 1, 1, 1, "ids");
    eg->pos = input(g, LOOM_I32, P, 1, 1, 1, "positions");
    eg->scat = input(g, LOOM_I32, T * nh * B, 1, 1, 1, "to_padded");
    eg->gath = input(g, LOOM_I32, nh * P, 1, 1, 1, "to_packed");
    eg->pool = input(g, LOOM_I32, T, B, 1, 1, "pool_rows");
    eg->mask = input(g, LOOM_F32, T, 1, 1, B, "key_mask");    /* 0 or -1e30 per key */
    eg->tmask = input(g, LOOM_F32, 1, T, B, 1, "token_mask"); /* 1 or 0 per token */
    loom_tensor *x = loom_get_rows(g, loom_model_mirror(g, e->word), eg->ids);      /* [H, P] */
    x = loom_add(g, x, loom_get_rows(g, loom_model_mirror(g, e->posemb), eg->pos)); /* + [H, P] */
    if (e->arch == ENC_BERT)
        x = loom_add(g, x, loom_slice(g, loom_model_mirror(g, e->type), 1, 0, 1)); /* + type 0 */
    /* MPNet: the relative-position bias, the same in every layer, [Tk, Tq, nh],
     * pre-multiplied by sqrt(D) as it is added before softmax's 1/sqrt(D) */
    loom_tensor *rel = NULL;
    if (e->arch == ENC_MPNET) {
        eg->buckets = input(g, LOOM_I32, T * T, 1, 1, 1, "rel_buckets");        /* k + T*q */
        rel = loom_get_rows(g, loom_model_mirror(g, e->rel_bias), eg->buckets); /* [nh, T*T] */
        rel = loom_cont(g, loom_permute(g, loom_reshape_3d(g, rel, nh, T, T), 2, 0, 1, 3));
        rel = loom_scale(g, rel, sqrtf((float)D));
    }
    x = layer_norm(e, g, x, loom_model_mirror(g, e->eln_w), loom_model_mirror(g, e->eln_b));
    const float scale = 1.0f / sqrtf((float)D);
    for (int64_t l = 0; l < e->n_layers; l++) {
        const bert_layer *L = &e->L[l];
        /* q, k, v: [D, T, nh, B], padded from the packed projections */
        loom_tensor *q = to_heads(
            eg, g, linear(g, loom_model_mirror(g, L->wq), loom_model_mirror(g, L->bq), x), D, nh);
        loom_tensor *k = to_heads(
            eg, g, linear(g, loom_model_mirror(g, L->wk), loom_model_mirror(g, L->bk), x), D, nh);
        loom_tensor *v = to_heads(
            eg, g, linear(g, loom_model_mirror(g, L->wv), loom_model_mirror(g, L->bv), x), D, nh);
        /* v^T [T, D, nh, B]: matmul's weight operand needs unit stride along T */
        v = loom_cont(g, loom_permute(g, v, 1, 0, 2, 3));
        loom_tensor *s = loom_matmul(g, k, q); /* [Tk, Tq, nh, B] */
        if (rel) s = loom_add(g, s, rel);
        /* softmax(scale * (s + mask)): a -1e30 key stays -inf-like after scaling */
        loom_tensor *p = loom_softmax(g, loom_add(g, s, eg->mask), scale, false, 0);
        loom_tensor *o = loom_matmul(g, v, p); /* [D, Tq, nh, B] */
        /* back to the packed [H, P]: row h + nh*j of [D, nh*P] is head h of token j */
        o = loom_get_rows(g, loom_reshape_2d(g, o, D, T * nh * B), eg->gath);
        o = loom_reshape_2d(g, o, H, P);
        loom_tensor *a = linear(g, loom_model_mirror(g, L->wo), loom_model_mirror(g, L->bo), o);
        x = layer_norm(e, g, loom_add(g, x, a), loom_model_mirror(g, L->ln1_w),
                       loom_model_mirror(g, L->ln1_b));
        loom_tensor *h =
            loom_gelu(g, linear(g, loom_model_mirror(g, L->wi), loom_model_mirror(g, L->bi), x));
        loom_tensor *f = linear(g, loom_model_mirror(g, L->wout), loom_model_mirror(g, L->bout), h);
        x = layer_norm(e, g, loom_add(g, x, f), loom_model_mirror(g, L->ln2_w),
                       loom_model_mirror(g, L->ln2_b));
    }
    /* mean pooling over the real tokens (padded again: [H, T, B]), then x / |x| */
    loom_tensor *m = loom_mul(g, loom_get_rows(g, x, eg->pool), eg->tmask);
    loom_tensor *sum = loom_reshape_2d(g, loom_sum_to(g, m, (int64_t[]){H, 1, B, 1}), H, B);
    eg->out = loom_scale(g, loom_rms_norm(g, sum, 0.0f), 1.0f / sqrtf((float)H));
    if (eg->out) {
        loom_tensor_set_name(eg->out, "embeddings");
        loom_tensor_set_flags(eg->out, LOOM_FLAG_OUTPUT);
    }
    loom_status st = eg->out ? loom_graph_expand(g, eg->out) : loom_graph_status(g);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "encoder: building the graph failed: %s",
                               loom_graph_error(g));
    loom_backend *list[2] = {e->be, e->cpu};
    st = loom_sched_new(list, e->be == e->cpu ? 1 : 2, &eg->s);
    if (st == LOOM_OK) st = loom_sched_alloc(eg->s, g);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "encoder: scheduling the graph failed: %s",
                               eg->s ? loom_sched_error(eg->s) : loom_status_str(st));
    return LOOM_OK;
}

static loom_status get_graph(loom_encoder *e, int T, int B, int P, enc_graph **out, char *err,
                             size_t err_n) {
    enc_graph *lru = &e->cache[0];
    for (int i = 0; i < ENC_GRAPH_CACHE; i++) {
        enc_graph *eg = &e->cache[i];
        if (eg->used && eg->T == T && eg->B == B && eg->P == P) {
            eg->last_used = ++e->tick;
            *out = eg;
            return LOOM_OK;
        }
        if (!eg->used || (lru->used && eg->last_used < lru->last_used)) lru = eg;
    }
    release(lru);
    lru->used = true;
    lru->T = T;
    lru->B = B;
    lru->P = P;
    loom_status st = build(e, lru, err, err_n);
    if (st != LOOM_OK) {
        release(lru);
        return st;
    }
    lru->last_used = ++e->tick;
    *out = lru;
    return LOOM_OK;
}

/* ---------------- public API ---------------- */

loom_status loom_encoder_resolve(const char *arg, char *dir, size_t n, char *err, size_t err_n) {
    if (!arg || !*arg || !dir || n == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "encoder: no model given");
    const bool bundled = strcmp(arg, "minilm") == 0;
    int k;
    if (bundled) {
        char cache[4096];
        loom_model_cache_dir(cache, sizeof cache);
        k = snprintf(dir, n, "%s/all-MiniLM-L6-v2", cache);
    } else {
        k = snprintf(dir, n, "%s", arg);
    }
    if (k < 0 || (size_t)k >= n)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "encoder: path too long");
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *f = fopen(cfg, "rb");
    if (f) {
        fclose(f);
        return LOOM_OK;
    }
    if (bundled)
        return loom_model_fail(err, err_n, LOOM_ERR_IO,
                               "encoder: the bundled encoder 'minilm' is not installed in %s "
                               "(scripts/fetch-models.sh fetches it)",
                               dir);
    return loom_model_fail(err, err_n, LOOM_ERR_IO,
                           "encoder: '%s' is neither 'minilm' nor a directory with config.json, "
                           "model.safetensors and tokenizer.json",
                           arg);
}

void loom_encoder_free(loom_encoder *e) {
    if (!e) return;
    for (int i = 0; i < ENC_GRAPH_CACHE; i++)
        release(&e->cache[i]);
    loom_graph_free(e->wg);
    for (int i = 0; i < e->n_wbufs; i++)
        loom_buffer_free(e->wbufs[i]);
    free(e->wbufs);
    free(e->L);
    loom_wordpiece_free(e->tok);
    free(e);
}

loom_status loom_encoder_load(const char *dir, const loom_encoder_params *p, loom_encoder **out,
                              char *err, size_t err_n) {
    if (!dir || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "encoder: NULL argument");
    *out = NULL;
    loom_encoder *e = calloc(1, sizeof *e);
    if (!e) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "encoder: out of memory");
    loom_status st = read_config(e, dir, err, err_n);
    if (st == LOOM_OK) {
        e->cpu = loom_registry_find("cpu");
        char berr[LOOM_ERROR_MAX] = "";
        if (!e->cpu || !loom_registry_available(e->cpu->index))
            st = loom_model_fail(err, err_n, LOOM_ERR_UNAVAILABLE,
                                 "encoder: the cpu backend is unavailable");
        else if ((st = loom_registry_select(p ? p->backend : NULL, &e->be, berr, sizeof berr)) !=
                 LOOM_OK)
            loom_model_fail(err, err_n, st, "encoder: %s", berr[0] ? berr : loom_status_str(st));
    }
    if (st == LOOM_OK) st = loom_wordpiece_load(dir, &e->tok, err, err_n);
    if (st == LOOM_OK && loom_wordpiece_vocab_size(e->tok) > e->vocab)
        st = loom_model_fail(err, err_n, LOOM_ERR_FORMAT,
                             "encoder: %s: the tokenizer has %d tokens, the model's vocab_size "
                             "is %lld",
                             dir, loom_wordpiece_vocab_size(e->tok), (long long)e->vocab);
    if (st == LOOM_OK) st = load_weights(e, dir, err, err_n);
    if (st == LOOM_OK) {
        e->max_tokens = p && p->max_tokens > 0 ? p->max_tokens : default_max_tokens(e, dir);
        if (e->max_tokens < 2 || e->max_tokens > e->max_pos - e->pos_offset)
            st = loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                 "encoder: max tokens %d is outside 2..%lld (the model's "
                                 "max_position_embeddings)",
                                 e->max_tokens, (long long)(e->max_pos - e->pos_offset));
    }
    if (st != LOOM_OK) {
        loom_encoder_free(e);
        return st;
    }
    *out = e;
    return LOOM_OK;
}

int64_t loom_encoder_dim(const loom_encoder *e) {
    return e ? e->H : 0;
}
int loom_encoder_max_tokens(const loom_encoder *e) {
    return e ? e->max_tokens : 0;
}
const loom_wordpiece *loom_encoder_tokenizer(const loom_encoder *e) {
    return e ? e->tok : NULL;
}
const char *loom_encoder_backend(const loom_encoder *e) {
    return e && e->be ? e->be->iface->name : "";
}

/* MPNetModel.relative_position_bucket (T5's bidirectional buckets) for
 * relative position k - q, in float32 as PyTorch computes it: half the
 * buckets for each sign; distances below a quarter of the buckets exactly,
 * larger ones on a log scale up to max_distance 128. */
static int32_t rel_bucket(int64_t k_minus_q, int64_t n_buckets) {
    int64_t n = -k_minus_q, half = n_buckets / 2, ret = n < 0 ? half : 0;
    n = n < 0 ? -n : n;
    const int64_t exact = half / 2;
    if (n < exact) return (int32_t)(ret + n);
    const float v =
        logf((float)n / (float)exact) / (float)log(128.0 / (double)exact) * (float)(half - exact);
    int64_t large = exact + (int64_t)v;
    return (int32_t)(ret + (large < half - 1 ? large : half - 1));
}

static loom_status upload_buckets(const loom_encoder *e, enc_graph *eg, int T) {
    int32_t *b = malloc((size_t)T * (size_t)T * sizeof *b);
    if (!b) return LOOM_ERR_OOM;
    for (int q = 0; q < T; q++)
        for (int k = 0; k < T; k++)
            b[k + (size_t)T * q] = rel_bucket(k - q, e->n_buckets);
    loom_status st = loom_tensor_upload(eg->buckets, b, (size_t)T * (size_t)T * sizeof *b);
    free(b);
    return st;
}

loom_status loom_encoder_embed_ids(loom_encoder *e, const int32_t *const *ids, const int *lens,
                                   int n, float *out, char *err, size_t err_n) {
    if (!e || !ids || !lens || n < 1 || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "encoder: NULL argument or no sequence");
    int T = 0;
    for (int i = 0; i < n; i++) {
        if (!ids[i] || lens[i] < 1 || lens[i] > e->max_tokens)
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "encoder: sequence %d has %d tokens; 1..%d are allowed", i,
                                   lens[i], e->max_tokens);
        for (int t = 0; t < lens[i]; t++)
            if (ids[i][t] < 0 || ids[i][t] >= e->vocab)
                return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                       "encoder: token id %d is outside the vocabulary [0, %lld)",
                                       ids[i][t], (long long)e->vocab);
        if (lens[i] > T) T = lens[i];
    }
    int64_t real = 0;
    for (int b = 0; b < n; b++)
        real += lens[b];
    const int P = (int)((real + ENC_PACK - 1) / ENC_PACK * ENC_PACK), nh = (int)e->n_heads;
    enc_graph *eg;
    LOOM_TRY(get_graph(e, T, n, P, &eg, err, err_n));
    const size_t NT = (size_t)T * (size_t)n;
    int32_t *tok = malloc((size_t)P * sizeof *tok), *pos = malloc((size_t)P * sizeof *pos);
    int32_t *scat = malloc(NT * (size_t)nh * sizeof *scat);
    int32_t *gath = malloc((size_t)P * (size_t)nh * sizeof *gath);
    int32_t *pool = malloc(NT * sizeof *pool);
    float *km = malloc(NT * sizeof *km), *tm = malloc(NT * sizeof *tm);
    loom_status st = LOOM_ERR_OOM;
    if (tok && pos && scat && gath && pool && km && tm) {
        const int32_t pad = loom_wordpiece_pad_id(e->tok);
        /* filler columns: pad tokens at position 0, gathered from row 0 */
        for (int j = 0; j < P; j++) {
            tok[j] = pad;
            pos[j] = e->pos_offset;
        }
        for (size_t i = 0; i < (size_t)P * (size_t)nh; i++)
            gath[i] = (int32_t)(i % (size_t)nh) * T;
        int j0 = 0; /* packed column of sequence b's first token */
        for (int b = 0; b < n; b++) {
            for (int t = 0; t < T; t++) {
                const bool is_real = t < lens[b];
                const size_t bt = (size_t)b * T + t;
                const int j = is_real ? j0 + t : 0;
                if (is_real) {
                    tok[j] = ids[b][t];
                    pos[j] = t + e->pos_offset;
                }
                km[bt] = is_real ? 0.0f : ENC_MASK_NEG;
                tm[bt] = is_real ? 1.0f : 0.0f;
                pool[bt] = j;
                for (int h = 0; h < nh; h++) {
                    const size_t padded = (size_t)t + (size_t)T * ((size_t)h + (size_t)nh * b);
                    scat[padded] = h + nh * j;
                    if (is_real) gath[h + (size_t)nh * j] = (int32_t)padded;
                }
            }
            j0 += lens[b];
        }
        st = loom_tensor_upload(eg->ids, tok, (size_t)P * sizeof *tok);
        if (st == LOOM_OK) st = loom_tensor_upload(eg->pos, pos, (size_t)P * sizeof *pos);
        if (st == LOOM_OK) st = loom_tensor_upload(eg->scat, scat, NT * (size_t)nh * sizeof *scat);
        if (st == LOOM_OK)
            st = loom_tensor_upload(eg->gath, gath, (size_t)P * (size_t)nh * sizeof *gath);
        if (st == LOOM_OK) st = loom_tensor_upload(eg->pool, pool, NT * sizeof *pool);
        if (st == LOOM_OK) st = loom_tensor_upload(eg->mask, km, NT * sizeof *km);
        if (st == LOOM_OK) st = loom_tensor_upload(eg->tmask, tm, NT * sizeof *tm);
        if (st == LOOM_OK && eg->buckets) st = upload_buckets(e, eg, T);
    }
    free(tok);
    free(pos);
    free(scat);
    free(gath);
    free(pool);
    free(km);
    free(tm);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "encoder: uploading the batch failed");
    st = loom_sched_compute(eg->s, eg->g);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "encoder: forward pass failed: %s",
                               loom_sched_error(eg->s));
    st = loom_tensor_download(eg->out, out, (size_t)n * (size_t)e->H * sizeof(float));
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "encoder: reading the embeddings failed");
    return LOOM_OK;
}

loom_status loom_encoder_embed(loom_encoder *e, const char *const *texts, int n, float *out,
                               char *err, size_t err_n) {
    if (!e || !texts || n < 1 || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "encoder: NULL argument or no text");
    const int M = e->max_tokens;
    int32_t *buf = malloc((size_t)n * (size_t)M * sizeof *buf);
    int32_t **ids = malloc((size_t)n * sizeof *ids);
    int *lens = malloc((size_t)n * sizeof *lens);
    loom_status st = buf && ids && lens ? LOOM_OK : LOOM_ERR_OOM;
    for (int i = 0; i < n && st == LOOM_OK; i++) {
        ids[i] = buf + (size_t)i * M;
        const char *t = texts[i] ? texts[i] : "";
        st = loom_wordpiece_encode(e->tok, t, strlen(t), M, ids[i], M, &lens[i]);
    }
    if (st == LOOM_OK)
        st = loom_encoder_embed_ids(e, (const int32_t *const *)ids, lens, n, out, err, err_n);
    else
        loom_model_fail(err, err_n, st, "encoder: tokenizing failed: %s", loom_status_str(st));
    free(buf);
    free(ids);
    free(lens);
    return st;
}

/* train/merge.c - LoRA merge into a GGUF (train/merge.h). The export path
 * (loom_model_export_gguf) does the copying, dequantizing and storing; this
 * file only names the adapted tensors and adds the delta. */
#define _POSIX_C_SOURCE 200809L
#include "train/merge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "train/lora.h"
#include "train/peft.h"

typedef struct merge_ctx {
    loom_lora *lo;
    int n_merged;
} merge_ctx;

static loom_status fail(char *err, size_t err_n, loom_status s, const char *fmt, ...) {
    if (err && err_n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_n, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* llama.cpp's names of the seven projections, in loom_proj order */
static const char *const GGUF_PROJ[LOOM_PROJ_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* Index of lora_A in lo->p for GGUF tensor name, -1 when not adapted. */
static int param_of(const loom_lora *lo, const char *name) {
    long layer;
    char rest[64];
    int used = 0;
    if (sscanf(name, "blk.%ld.%63[^.].weight%n", &layer, rest, &used) != 2 || name[used]) return -1;
    if (layer < 0 || layer >= lo->mc.n_layers) return -1;
    for (int p = 0; p < LOOM_PROJ_COUNT; p++)
        if (!strcmp(rest, GGUF_PROJ[p])) return lo->index[layer * LOOM_PROJ_COUNT + p];
    return -1;
}

static bool wants(void *ud, const char *name) {
    return param_of(((merge_ctx *)ud)->lo, name) >= 0;
}

/* W [out rows of in] += scale * B [out x r] A [r x in], row by row: the
 * product in f32 first, then scaled and added, as PEFT's
 * W + (B @ A) * scaling. B's rows are already in the model's (GGUF) row
 * order: peft_load permuted q/k rows from Hugging Face's. */
static loom_status edit(void *ud, const char *name, int n_dims, const int64_t *ne, float *w,
                        char *err, size_t err_n) {
    merge_ctx *c = ud;
    const int i = param_of(c->lo, name);
    const loom_lora_param *A = &c->lo->p[i], *B = &c->lo->p[i + 1];
    if (n_dims != 2 || ne[0] != A->cols || ne[1] != B->rows || A->rows != B->cols)
        return fail(err, err_n, LOOM_ERR_INVALID_ARG,
                    "%s is [%lld, %lld] but the adapter's %s is [%lld, %lld] x "
                    "[%lld, %lld]",
                    name, (long long)ne[0], (long long)(n_dims > 1 ? ne[1] : 1), A->name,
                    (long long)B->rows, (long long)B->cols, (long long)A->rows, (long long)A->cols);
    const int64_t in = A->cols, r = A->rows;
    float *row = malloc((size_t)in * sizeof *row);
    if (!row) return fail(err, err_n, LOOM_ERR_OOM, "out of memory");
    const float scale = c->lo->scale;
    for (int64_t o = 0; o < B->rows; o++) {
        memset(row, 0, (size_t)in * sizeof *row);
        for (int64_t k = 0; k < r; k++) {
            const float b = B->w[o * r + k];
            const float *a = A->w + k * in;
            for (int64_t j = 0; j < in; j++)
                row[j] += b * a[j];
        }
        float *wr = w + o * in;
        for (int64_t j = 0; j < in; j++)
            wr[j] += row[j] * scale;
    }
    free(row);
    c->n_merged++;
    return LOOM_OK;
}

loom_status loom_lora_merge_gguf(const char *base, const char *lora_dir, const char *out,
                                 loom_dtype type, loom_export_stats *stats, int *n_merged,
                                 char *err, size_t err_n) {
    if (err && err_n) err[0] = '\0';
    if (!base || !lora_dir || !out)
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "merge-lora: NULL argument");
    char e[1024], tmp[4096] = "";
    loom_status s = LOOM_OK;
    const char *src = base;
    if (loom_model_path_is_hf(base)) {
        /* the export edits GGUF tensors only: go through an f32 GGUF (lossless
         * for the f32/f16/bf16 checkpoints HF directories hold) */
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/loom-merge-XXXXXX", td && td[0] ? td : "/tmp");
        int fd = mkstemp(tmp);
        if (fd < 0) return fail(err, err_n, LOOM_ERR_IO, "merge-lora: cannot create %s", tmp);
        close(fd);
        loom_export_params xp = {.type = LOOM_F32};
        if ((s = loom_model_export_gguf(base, tmp, &xp, NULL, e, sizeof e)) != LOOM_OK) {
            unlink(tmp);
            return fail(err, err_n, s, "merge-lora: %s", e);
        }
        src = tmp;
    }
    loom_gguf *g = NULL;
    loom_model_config mc;
    if ((s = loom_gguf_open(src, &g, e, sizeof e)) != LOOM_OK) {
        fail(err, err_n, s, "merge-lora: %s", e);
        goto done;
    }
    s = loom_model_config_from_gguf(g, &mc, e, sizeof e);
    loom_gguf_close(g);
    if (s != LOOM_OK) {
        fail(err, err_n, s, "merge-lora: %s: %s", base, e);
        goto done;
    }
    merge_ctx c = {0};
    if ((s = loom_peft_load(lora_dir, &mc, &c.lo, e, sizeof e)) != LOOM_OK) {
        fail(err, err_n, s, "merge-lora: --lora: %s", e);
        goto done;
    }
    loom_export_params xp = {.type = type, .edit_wants = wants, .edit = edit, .edit_ud = &c};
    s = loom_model_export_gguf(src, out, &xp, stats, e, sizeof e);
    if (s != LOOM_OK)
        fail(err, err_n, s, "merge-lora: %s", e);
    else if (c.n_merged * 2 != c.lo->n_params) {
        /* a base without some adapted weight (cannot happen for a config the
         * adapter was checked against, but a silent partial merge must not) */
        unlink(out);
        s = fail(err, err_n, LOOM_ERR_INVALID_ARG,
                 "merge-lora: %d of the adapter's %d projections found in %s", c.n_merged,
                 c.lo->n_params / 2, base);
    }
    if (n_merged) *n_merged = c.n_merged;
    loom_lora_free(c.lo);
done:
    if (tmp[0]) unlink(tmp);
    return s;
}

/* train/peft.c - PEFT adapter_config.json + adapter_model.safetensors
 * (see peft.h). */
#include "peft.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

#include "loom/safetensors.h"

static loom_status fail(char *err, size_t n, loom_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static loom_status fail(char *err, size_t n, loom_status st, const char *fmt, ...) {
    if (err && n) {
        int k = snprintf(err, n, "peft: ");
        va_list ap;
        va_start(ap, fmt);
        if (k >= 0 && (size_t)k < n) vsnprintf(err + k, n - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return st;
}

void loom_peft_permute_rows(const loom_model_config *mc, loom_proj which, bool to_hf, float *w,
                            int64_t rows, int64_t cols, float *scratch) {
    if ((which != LOOM_PROJ_Q && which != LOOM_PROJ_K) || mc->rope.mode != LOOM_ROPE_NORMAL) return;
    const int64_t D = mc->head_dim, H = rows / D, half = mc->rope.n_dims / 2;
    memcpy(scratch, w, (size_t)(rows * cols) * sizeof *w);
    /* loom row h*D + 2j + t  <->  HF row h*D + t*(n_dims/2) + j (rotated dims);
     * dims past n_dims keep their place (hf_convert.c permutes whole heads,
     * n_dims == head_dim there) */
    for (int64_t h = 0; h < H; h++)
        for (int64_t j = 0; j < half; j++)
            for (int64_t t = 0; t < 2; t++) {
                int64_t lr = h * D + 2 * j + t, hr = h * D + t * half + j;
                int64_t dst = to_hf ? hr : lr, src = to_hf ? lr : hr;
                memcpy(w + dst * cols, scratch + src * cols, (size_t)cols * sizeof *w);
            }
}

static const char *target_list(uint32_t t, char *buf, size_t n) {
    buf[0] = 0;
    for (int j = 0; j < LOOM_PROJ_COUNT; j++)
        if (t >> j & 1u) {
            size_t k = strlen(buf);
            snprintf(buf + k, n - k, "%s\"%s\"", k ? ", " : "", loom_lora_proj_name((loom_proj)j));
        }
    return buf;
}

loom_status loom_peft_save(const char *dir, const loom_lora *lo, const char *base_model, char *err,
                           size_t err_n) {
    char path[4096], tl[256];
    /* adapter_config.json: the fields PEFT 0.13 writes for a default LoraConfig */
    cJSON *bm = cJSON_CreateString(base_model ? base_model : "");
    char *bms = bm ? cJSON_PrintUnformatted(bm) : NULL;
    cJSON_Delete(bm);
    if (!bms) return fail(err, err_n, LOOM_ERR_OOM, "out of memory");
    char cfg[2048];
    int k = snprintf(cfg, sizeof cfg,
                     "{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n"
                     "  \"base_model_name_or_path\": %s,\n  \"bias\": \"none\",\n"
                     "  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
                     "  \"init_lora_weights\": true,\n  \"layers_pattern\": null,\n"
                     "  \"layers_to_transform\": null,\n  \"lora_alpha\": %.9g,\n"
                     "  \"lora_dropout\": %.9g,\n  \"modules_to_save\": null,\n"
                     "  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"rank_pattern\": {},\n"
                     "  \"revision\": null,\n  \"target_modules\": [%s],\n"
                     "  \"task_type\": \"CAUSAL_LM\",\n  \"use_dora\": false,\n"
                     "  \"use_rslora\": false\n}\n",
                     bms, (double)lo->cfg.alpha, (double)lo->cfg.dropout, lo->cfg.r,
                     target_list(lo->cfg.targets, tl, sizeof tl));
    free(bms);
    if (k < 0 || (size_t)k >= sizeof cfg)
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "base model name too long");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    LOOM_TRY(loom_train_write_atomic(path, cfg, (size_t)k, err, err_n));

    /* safetensors: header JSON then the tensors in order */
    size_t hcap = (size_t)lo->n_params * 200 + 128, hn = 0, data_n = 0;
    char *hdr = malloc(hcap);
    if (!hdr) return fail(err, err_n, LOOM_ERR_OOM, "out of memory");
    hn += (size_t)snprintf(hdr + hn, hcap - hn, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < lo->n_params; i++) {
        const loom_lora_param *p = &lo->p[i];
        size_t nb = (size_t)(p->rows * p->cols) * 4;
        hn +=
            (size_t)snprintf(hdr + hn, hcap - hn,
                             ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],"
                             "\"data_offsets\":[%zu,%zu]}",
                             p->name, (long long)p->rows, (long long)p->cols, data_n, data_n + nb);
        data_n += nb;
    }
    hdr[hn++] = '}';
    while (hn % 8)
        hdr[hn++] = ' ';
    unsigned char *file = malloc(8 + hn + data_n);
    float *scratch = NULL;
    size_t max_n = 1;
    for (int i = 0; i < lo->n_params; i++)
        if ((size_t)(lo->p[i].rows * lo->p[i].cols) > max_n)
            max_n = (size_t)(lo->p[i].rows * lo->p[i].cols);
    scratch = malloc(max_n * sizeof *scratch);
    if (!file || !scratch) {
        free(hdr);
        free(file);
        free(scratch);
        return fail(err, err_n, LOOM_ERR_OOM, "out of memory");
    }
    for (int b = 0; b < 8; b++)
        file[b] = (unsigned char)((uint64_t)hn >> (8 * b));
    memcpy(file + 8, hdr, hn);
    free(hdr);
    size_t off = 8 + hn;
    for (int i = 0; i < lo->n_params; i++) {
        const loom_lora_param *p = &lo->p[i];
        size_t nb = (size_t)(p->rows * p->cols) * 4;
        float *dst = (float *)(void *)(file + off); /* 8-aligned: header padded, sizes x4 */
        memcpy(dst, p->w, nb);
        if (p->is_b) loom_peft_permute_rows(&lo->mc, p->proj, true, dst, p->rows, p->cols, scratch);
        off += nb;
    }
    free(scratch);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    loom_status st = loom_train_write_atomic(path, file, off, err, err_n);
    free(file);
    return st;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *d = NULL;
    size_t cap = 0, len = 0, k;
    do {
        if (len + 4096 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *nd = realloc(d, cap + 1);
            if (!nd) {
                free(d);
                fclose(f);
                return NULL;
            }
            d = nd;
        }
        k = fread(d + len, 1, cap - len, f);
        len += k;
    } while (k > 0);
    fclose(f);
    d[len] = 0;
    *n = len;
    return d;
}

loom_status loom_peft_load(const char *dir, const loom_model_config *mc, loom_lora **out, char *err,
                           size_t err_n) {
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    size_t n;
    char *txt = slurp(path, &n);
    if (!txt) return fail(err, err_n, LOOM_ERR_IO, "cannot read '%s'", path);
    cJSON *j = cJSON_ParseWithLength(txt, n);
    free(txt);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return fail(err, err_n, LOOM_ERR_FORMAT, "'%s' is not a JSON object", path);
    }
    loom_lora_config c = {0};
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    const char *bad = NULL;
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") != 0)
        bad = "peft_type is not LORA";
    else if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 65536 ||
             r->valuedouble != floor(r->valuedouble))
        bad = "\"r\" must be an integer in 1..65536";
    else if (!cJSON_IsNumber(a) || !(a->valuedouble > 0))
        bad = "\"lora_alpha\" must be positive";
    else if (!cJSON_IsArray(t))
        bad = "\"target_modules\" must be a list (a regex is not supported)";
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_dora")))
        bad = "DoRA is not supported";
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora")))
        bad = "rsLoRA is not supported";
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rank_pattern");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(j, "bias");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "modules_to_save");
    if (!bad && ((rp && cJSON_GetArraySize(rp) > 0) || (ap && cJSON_GetArraySize(ap) > 0)))
        bad = "rank_pattern/alpha_pattern are not supported";
    if (!bad && bias && !(cJSON_IsString(bias) && !strcmp(bias->valuestring, "none")))
        bad = "bias other than \"none\" is not supported";
    if (!bad && ms && !cJSON_IsNull(ms)) bad = "modules_to_save is not supported";
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(j, "layers_to_transform");
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(j, "target_parameters");
    if (!bad && lt && !cJSON_IsNull(lt)) bad = "layers_to_transform is not supported";
    if (!bad && tp && !cJSON_IsNull(tp)) bad = "target_parameters is not supported";
    if (!bad && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "lora_bias")))
        bad = "lora_bias is not supported";
    if (!bad) {
        c.r = (int)r->valuedouble;
        c.alpha = (float)a->valuedouble;
        c.dropout = cJSON_IsNumber(d) ? (float)d->valuedouble : 0.0f;
        const cJSON *it;
        cJSON_ArrayForEach(it, t) {
            int found = -1;
            for (int k = 0; k < LOOM_PROJ_COUNT && cJSON_IsString(it); k++)
                if (!strcmp(it->valuestring, loom_lora_proj_name((loom_proj)k))) found = k;
            if (found < 0) {
                bad = "target_modules names a module loom does not have";
                break;
            }
            c.targets |= 1u << found;
        }
    }
    cJSON_Delete(j);
    if (bad) return fail(err, err_n, LOOM_ERR_UNSUPPORTED, "adapter_config.json: %s", bad);
    loom_lora *lo;
    char e2[4608];
    if (loom_lora_new(mc, &c, 0, &lo, e2, sizeof e2) != LOOM_OK)
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "%s", e2);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    loom_safetensors *st = NULL;
    loom_status s = loom_safetensors_open(path, &st, e2, sizeof e2);
    if (s != LOOM_OK) {
        loom_lora_free(lo);
        return fail(err, err_n, s, "%s", e2);
    }
    size_t max_n = 1;
    for (int i = 0; i < lo->n_params; i++)
        if ((size_t)(lo->p[i].rows * lo->p[i].cols) > max_n)
            max_n = (size_t)(lo->p[i].rows * lo->p[i].cols);
    float *scratch = malloc(max_n * sizeof *scratch);
    if (!scratch) s = LOOM_ERR_OOM;
    for (int i = 0; i < lo->n_params && s == LOOM_OK; i++) {
        loom_lora_param *p = &lo->p[i];
        int64_t ti = loom_safetensors_find(st, p->name);
        loom_st_tensor_info info;
        if (ti < 0 || loom_safetensors_tensor(st, ti, &info) != LOOM_OK || info.n_dims != 2 ||
            info.shape[0] != p->rows || info.shape[1] != p->cols) {
            snprintf(e2, sizeof e2, "'%s': tensor %s is missing or not [%lld, %lld]", path, p->name,
                     (long long)p->rows, (long long)p->cols);
            s = LOOM_ERR_FORMAT;
            break;
        }
        s = loom_safetensors_read(st, ti, LOOM_F32, p->w, (size_t)(p->rows * p->cols) * 4);
        if (s != LOOM_OK)
            snprintf(e2, sizeof e2, "'%s': %s", path, loom_safetensors_error(st));
        else if (p->is_b)
            loom_peft_permute_rows(mc, p->proj, false, p->w, p->rows, p->cols, scratch);
    }
    free(scratch);
    loom_safetensors_close(st);
    if (s != LOOM_OK) {
        loom_lora_free(lo);
        return fail(err, err_n, s, "%s", e2);
    }
    *out = lo;
    return LOOM_OK;
}

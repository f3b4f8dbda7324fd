/* model/formats/export.c - loom_model_export_gguf: a GGUF file or a Hugging
 * Face checkpoint directory written as a GGUF at another weight type
 * (docs/adr/0012-quantize-on-load.md). Depends on the loader (arch/load.c:
 * config from GGUF metadata, model paths), the converter (hf_convert.c) and
 * the storage-type policy (store_type.c); none of them calls back here. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/model.h"
#include "model/model_internal.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* ---------------- export ---------------- */

static int64_t info_elements(const loom_gguf_tensor_info *ti) {
    int64_t n = 1;
    for (int d = 0; d < ti->n_dims; d++)
        n *= ti->ne[d];
    return n;
}

/* GGUF -> GGUF at a new weight type. */
static loom_status gguf_export(const char *in, const char *out, const loom_export_params *p,
                               loom_export_stats *stats, char *err, size_t err_n) {
    char e[768];
    loom_gguf *g = NULL;
    loom_status s = loom_gguf_open(in, &g, e, sizeof e);
    if (s != LOOM_OK) return loom_model_fail(err, err_n, s, "%s", e);
    loom_model_config c;
    if ((s = loom_model_config_from_gguf(g, &c, e, sizeof e)) != LOOM_OK) {
        loom_gguf_close(g);
        return loom_model_fail(err, err_n, s, "%s: %s", in, e);
    }
    loom_gguf_writer *w = NULL;
    loom_blobs bufs = {0};
    if ((s = loom_gguf_writer_new(&w)) != LOOM_OK) {
        loom_gguf_close(g);
        return loom_model_fail(err, err_n, s, "export: out of memory");
    }
    for (int64_t i = 0; i < loom_gguf_n_kv(g) && s == LOOM_OK; i++) {
        const char *k = loom_gguf_kv_key(g, i);
        if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version")) continue;
        /* rope scaling is rewritten below in the form llama.cpp accepts */
        if (!strncmp(k, "llama.rope.scaling.", 19) || !strncmp(k, "loom.rope.scaling.", 18))
            continue;
        s = loom_gguf_writer_copy_kv(w, g, i);
    }
    if (s == LOOM_OK) s = loom_rope_write_gguf_kv(w, &c.rope);
    float rope_freqs[512];
    const int64_t n_freqs = c.rope.n_dims / 2;
    if (s == LOOM_OK && c.rope.scaling == LOOM_ROPE_SCALING_LLAMA3 &&
        loom_gguf_find_tensor(g, "rope_freqs.weight") < 0 && n_freqs <= 512 &&
        (s = loom_rope_freq_factors(&c.rope, rope_freqs, n_freqs)) == LOOM_OK)
        s = loom_gguf_writer_add_tensor(w, "rope_freqs.weight", LOOM_F32, 1, &n_freqs, rope_freqs);
    /* a mix picks each tensor's type by llama.cpp's rules (quant_mix.c) */
    loom_mix_state mix;
    if (p->mix != LOOM_MIX_NONE) loom_mix_begin(&mix, p->mix, &c, g);
    const int ftype =
        p->mix != LOOM_MIX_NONE ? loom_mix_file_type(p->mix) : loom_model_gguf_file_type(p->type);
    if (s == LOOM_OK) s = loom_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype);
    if (s == LOOM_OK) s = loom_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (s != LOOM_OK) {
        loom_model_fail(err, err_n, s, "export: metadata of %s: %s", in, loom_gguf_writer_error(w));
        goto done;
    }
    int64_t n_el_total = 0, n_el_done = 0;
    loom_export_stats st = {0};
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        loom_gguf_tensor_info ti;
        loom_gguf_tensor(g, i, &ti);
        n_el_total += info_elements(&ti);
    }
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        loom_gguf_tensor_info ti;
        loom_gguf_tensor(g, i, &ti);
        const int64_t n = info_elements(&ti);
        loom_dtype src, dst;
        if (loom_gguf_tensor_dtype(g, i, &src) != LOOM_OK || src == LOOM_I32) {
            s = loom_model_fail(
                err, err_n, LOOM_ERR_UNSUPPORTED,
                "export: %s: tensor '%s' has ggml type %s, which loom cannot dequantize "
                "(f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K..q6_K)",
                in, ti.name, ti.type_name ? ti.type_name : "?");
            goto done;
        }
        if (p->mix != LOOM_MIX_NONE)
            dst = loom_mix_type(&mix, ti.name, ti.n_dims, ti.ne);
        else
            loom_model_store_type(ti.name, ti.n_dims, ti.ne, p->type, &dst);
        const void *data = ti.data;
        if (p->edit && p->edit_wants && p->edit_wants(p->edit_ud, ti.name)) {
            /* dequantize, edit in f32, store at dst (even when dst == src) */
            float *f = malloc(loom_dtype_nbytes(LOOM_F32, n) + 1);
            void *conv = dst == LOOM_F32 ? (void *)f : malloc(loom_dtype_nbytes(dst, n) + 1);
            s = f && conv ? loom_convert(src, ti.data, LOOM_F32, f, n) : LOOM_ERR_OOM;
            char ee[512] = "";
            if (s == LOOM_OK &&
                (s = p->edit(p->edit_ud, ti.name, ti.n_dims, ti.ne, f, ee, sizeof ee)) != LOOM_OK) {
                loom_model_fail(err, err_n, s, "%s", ee);
            } else if (s == LOOM_OK && conv != f) {
                s = loom_convert(LOOM_F32, f, dst, conv, n);
            }
            if (s == LOOM_OK && !loom_blobs_keep(&bufs, conv)) s = LOOM_ERR_OOM;
            if (conv != f) free(f);
            if (s != LOOM_OK) {
                if (!ee[0])
                    loom_model_fail(err, err_n, s,
                                    "export: editing '%s' as f32 and storing it as "
                                    "%s: %s",
                                    ti.name, loom_dtype_name(dst), loom_status_str(s));
                free(conv);
                goto done;
            }
            data = conv;
            st.n_converted++;
        } else if (dst != src) {
            void *conv = malloc(loom_dtype_nbytes(dst, n) + 1);
            s = conv ? loom_convert(src, ti.data, dst, conv, n) : LOOM_ERR_OOM;
            if (s == LOOM_OK && !loom_blobs_keep(&bufs, conv)) s = LOOM_ERR_OOM;
            if (s != LOOM_OK) {
                free(conv);
                loom_model_fail(err, err_n, s, "export: converting '%s' from %s to %s: %s", ti.name,
                                loom_dtype_name(src), loom_dtype_name(dst), loom_status_str(s));
                goto done;
            }
            data = conv;
            st.n_converted++;
        }
        s = loom_gguf_writer_add_tensor(w, ti.name, dst, ti.n_dims, ti.ne, data);
        if (s != LOOM_OK) {
            loom_model_fail(err, err_n, s, "export: %s", loom_gguf_writer_error(w));
            goto done;
        }
        st.n_tensors++;
        st.bytes_in += ti.nbytes;
        st.bytes_out += loom_dtype_nbytes(dst, n);
        n_el_done += n;
        if (p->progress && n_el_total > 0)
            p->progress(p->progress_ud, (double)n_el_done / (double)n_el_total);
    }
    if ((s = loom_gguf_writer_write(w, out)) != LOOM_OK) {
        loom_model_fail(err, err_n, s, "export: %s", loom_gguf_writer_error(w));
        goto done;
    }
    if (stats) *stats = st;
done:
    loom_blobs_free(&bufs);
    loom_gguf_writer_free(w);
    loom_gguf_close(g);
    return s;
}

/* Tensor statistics of a written file (HF export). */
static void file_stats(const char *path, loom_export_stats *stats) {
    loom_gguf *g = NULL;
    memset(stats, 0, sizeof *stats);
    if (loom_gguf_open(path, &g, NULL, 0) != LOOM_OK) return;
    stats->n_tensors = loom_gguf_n_tensors(g);
    stats->n_converted = stats->n_tensors;
    for (int64_t i = 0; i < stats->n_tensors; i++) {
        loom_gguf_tensor_info ti;
        if (loom_gguf_tensor(g, i, &ti) == LOOM_OK) stats->bytes_out += ti.nbytes;
    }
    loom_gguf_close(g);
}

/* A mix needs the whole tensor list for its rules: the checkpoint goes to a
 * temporary GGUF at its own float type first (as llama.cpp converts, then
 * quantizes), then through gguf_export. */
static loom_status hf_mix_export(const char *in, const char *out, const loom_export_params *p,
                                 loom_export_stats *stats, char *err, size_t err_n) {
    const char *tmpdir = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/loom-export-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_IO,
                               "export: cannot create a temporary file in %s",
                               tmpdir && *tmpdir ? tmpdir : "/tmp");
    close(fd);
    loom_status s = loom_hf_dir_to_gguf(in, LOOM_DTYPE_COUNT, tmp, NULL, NULL, err, err_n);
    if (s == LOOM_OK) s = gguf_export(tmp, out, p, stats, err, err_n);
    unlink(tmp);
    return s;
}

loom_status loom_model_export_gguf(const char *in, const char *out, const loom_export_params *p,
                                   loom_export_stats *stats, char *err, size_t err_n) {
    if (err && err_n) err[0] = '\0';
    if (!in || !out || !p)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "export: NULL argument");
    if (p->mix == LOOM_MIX_NONE && loom_dtype_is_nf4(p->type))
        return loom_model_fail(
            err, err_n, LOOM_ERR_UNSUPPORTED,
            "export: %s is not a GGUF tensor type: llama.cpp has no NormalFloat-4 "
            "layout, and loom's nf4 (bitsandbytes' layout: codes and f32 absmax over "
            "the whole tensor, ADR 0003) cannot be split into GGUF's self-contained "
            "row blocks; export q4_0 for a 4-bit GGUF, or load with --quant nf4",
            loom_dtype_name(p->type));
    if (p->mix != LOOM_MIX_NONE && loom_mix_base(p->mix) == LOOM_DTYPE_COUNT)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "export: unknown quantization mix %d (q3_K_M, q4_K_M, q5_K_M)",
                               (int)p->mix);
    if (p->mix == LOOM_MIX_NONE && loom_model_gguf_file_type(p->type) < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "export: type %s cannot be exported (f32, f16, bf16, q8_0, q4_0, "
                               "q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, or a mix)",
                               loom_dtype_name(p->type));
    struct stat si, so;
    if (stat(in, &si) != 0)
        return loom_model_fail(err, err_n, LOOM_ERR_IO,
                               "export: cannot read %s: no such file or directory", in);
    if (stat(out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "export: the output %s is the input; write to another file", out);
    if (S_ISDIR(si.st_mode) && !loom_model_path_is_hf(in))
        return loom_model_fail(
            err, err_n, LOOM_ERR_IO,
            "export: %s is a directory without config.json (expected a GGUF file or a "
            "Hugging Face checkpoint directory)",
            in);
    if (ends_with(out, "/") || (stat(out, &so) == 0 && S_ISDIR(so.st_mode)))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "export: the output %s is a directory", out);
    /* fail before converting when the output cannot be created */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (stat(dir, &so) != 0 || !S_ISDIR(so.st_mode) || access(dir, W_OK) != 0)
        return loom_model_fail(
            err, err_n, LOOM_ERR_IO,
            "export: cannot write %s: directory %s does not exist or is not writable", out, dir);
    if (!S_ISDIR(si.st_mode)) return gguf_export(in, out, p, stats, err, err_n);
    if (p->edit)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "export: editing weights needs a GGUF input (%s is a Hugging Face "
                               "directory; export it to GGUF first)",
                               in);
    if (p->mix != LOOM_MIX_NONE) return hf_mix_export(in, out, p, stats, err, err_n);
    loom_status s = loom_hf_dir_to_gguf(in, p->type, out, p->progress, p->progress_ud, err, err_n);
    if (s == LOOM_OK && stats) file_stats(out, stats);
    return s;
}

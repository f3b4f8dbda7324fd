/* train/data_prep_pack.c - packing into LOOMPAK1 files; the layout is in
 * data_prep_pack.h. Tokens stream into the output's temporary file as each
 * sequence fills; segments stream into a second temporary file that is
 * appended at the end, so memory stays at one sequence. */
#define _POSIX_C_SOURCE 200809L
#include "train/data_prep_pack.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct loom_packer {
    const loom_tokenizer *tok;
    int seq_len, used;
    uint16_t seg; /* segment of the current piece in this sequence */
    int32_t *ids;
    uint16_t *segs;
    FILE *f, *fs;
    char path[4096], tmp[4200], tmp_seg[4200];
    int32_t eos, bos;
    loom_pack_stats st;
};

static void put32(unsigned char *o, uint32_t v) {
    for (int i = 0; i < 4; i++)
        o[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *o, uint64_t v) {
    for (int i = 0; i < 8; i++)
        o[i] = (unsigned char)(v >> (8 * i));
}

loom_status loom_packer_open(const char *path, const loom_tokenizer *tok, int seq_len,
                             loom_packer **out, char *err, size_t errn) {
    *out = NULL;
    if (!path || !tok || seq_len < 16 || seq_len > 65535) {
        snprintf(err, errn, "pack: sequence length must be 16..65535");
        return LOOM_ERR_INVALID_ARG;
    }
    if (loom_tokenizer_eos(tok) < 0) {
        snprintf(err, errn, "pack: the tokenizer has no EOS token to end documents with");
        return LOOM_ERR_INVALID_ARG;
    }
    loom_packer *p = calloc(1, sizeof *p);
    if (!p) return LOOM_ERR_OOM;
    p->tok = tok;
    p->seq_len = seq_len;
    p->eos = loom_tokenizer_eos(tok);
    p->bos = loom_tokenizer_add_bos(tok) ? loom_tokenizer_bos(tok) : -1;
    p->ids = malloc(sizeof(int32_t) * (size_t)seq_len);
    p->segs = malloc(sizeof(uint16_t) * (size_t)seq_len);
    snprintf(p->path, sizeof p->path, "%s", path);
    snprintf(p->tmp, sizeof p->tmp, "%s.tmp.%ld", path, (long)getpid());
    snprintf(p->tmp_seg, sizeof p->tmp_seg, "%s.seg.tmp.%ld", path, (long)getpid());
    if (!p->ids || !p->segs) {
        loom_packer_abort(p);
        return LOOM_ERR_OOM;
    }
    p->f = fopen(p->tmp, "w+b");
    p->fs = p->f ? fopen(p->tmp_seg, "w+b") : NULL;
    unsigned char zero[LOOM_PACK_HEADER_BYTES] = {0};
    if (!p->f || !p->fs || fwrite(zero, 1, sizeof zero, p->f) != sizeof zero) {
        snprintf(err, errn, "%s: %s", p->f ? p->tmp_seg : p->tmp, strerror(errno));
        loom_packer_abort(p);
        return LOOM_ERR_IO;
    }
    *out = p;
    return LOOM_OK;
}

static loom_status flush_seq(loom_packer *p) {
    unsigned char b[4];
    for (int i = 0; i < p->seq_len; i++) {
        put32(b, (uint32_t)p->ids[i]);
        if (fwrite(b, 1, 4, p->f) != 4) return LOOM_ERR_IO;
        b[0] = (unsigned char)p->segs[i];
        b[1] = (unsigned char)(p->segs[i] >> 8);
        if (fwrite(b, 1, 2, p->fs) != 2) return LOOM_ERR_IO;
    }
    p->st.seqs++;
    p->used = 0;
    p->seg = 0;
    return LOOM_OK;
}

/* Appends one token of the current document; a full sequence is written
 * and the document continues as segment 1 of the next. */
static loom_status push(loom_packer *p, int32_t id, bool *split) {
    if (p->used == p->seq_len) {
        LOOM_TRY(flush_seq(p));
        p->seg = 1;
        *split = true;
    }
    p->ids[p->used] = id;
    p->segs[p->used++] = p->seg;
    return LOOM_OK;
}

loom_status loom_packer_add(loom_packer *p, const char *text, size_t n, char *err, size_t errn) {
    int32_t *ids = NULL;
    size_t k = 0;
    loom_status s =
        loom_tokenizer_encode(p->tok, text, n, LOOM_TOK_NO_SPECIAL, &ids, &k, err, errn);
    if (s != LOOM_OK) return s;
    /* A new document starts a new segment, in this sequence if it has room. */
    if (p->used == p->seq_len) s = flush_seq(p);
    p->seg++;
    bool split = false;
    if (s == LOOM_OK && p->bos >= 0) s = push(p, p->bos, &split);
    for (size_t i = 0; s == LOOM_OK && i < k; i++)
        s = push(p, ids[i], &split);
    if (s == LOOM_OK) s = push(p, p->eos, &split);
    free(ids);
    if (s != LOOM_OK) {
        snprintf(err, errn, "%s: write error: %s", p->tmp, strerror(errno));
        return s;
    }
    p->st.docs++;
    p->st.tokens += (int64_t)k + 1 + (p->bos >= 0);
    p->st.split_docs += split;
    return LOOM_OK;
}

static bool append_file(FILE *dst, FILE *src) {
    char buf[1 << 16];
    rewind(src);
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, src)) > 0)
        if (fwrite(buf, 1, got, dst) != got) return false;
    return !ferror(src);
}

loom_status loom_packer_finish(loom_packer *p, loom_pack_stats *st, char *err, size_t errn) {
    loom_status s = LOOM_OK;
    if (p->used > 0) {
        p->st.padding = p->seq_len - p->used;
        while (p->used < p->seq_len) {
            p->ids[p->used] = p->eos;
            p->segs[p->used++] = 0;
        }
        s = flush_seq(p);
    }
    unsigned char h[LOOM_PACK_HEADER_BYTES] = {0};
    memcpy(h, "LOOMPAK1", 8);
    put32(h + 8, 1);
    put32(h + 12, (uint32_t)p->seq_len);
    put64(h + 16, (uint64_t)p->st.seqs);
    put64(h + 24, (uint64_t)p->st.docs);
    put64(h + 32, (uint64_t)p->st.tokens);
    put32(h + 40, (uint32_t)loom_tokenizer_vocab_size(p->tok));
    put32(h + 44, (uint32_t)p->eos);
    put32(h + 48, p->bos >= 0);
    if (s == LOOM_OK && (!append_file(p->f, p->fs) || fseek(p->f, 0, SEEK_SET) != 0 ||
                         fwrite(h, 1, sizeof h, p->f) != sizeof h))
        s = LOOM_ERR_IO;
    int c1 = fclose(p->f), c2 = fclose(p->fs);
    p->f = p->fs = NULL;
    if (s == LOOM_OK && (c1 != 0 || c2 != 0 || rename(p->tmp, p->path) != 0)) s = LOOM_ERR_IO;
    if (s != LOOM_OK) snprintf(err, errn, "%s: cannot write: %s", p->path, strerror(errno));
    if (st) *st = p->st;
    loom_packer_abort(p); /* removes what is left: the segment file */
    return s;
}

void loom_packer_abort(loom_packer *p) {
    if (!p) return;
    if (p->f) fclose(p->f);
    if (p->fs) fclose(p->fs);
    remove(p->tmp); /* after a successful rename this no longer exists */
    remove(p->tmp_seg);
    free(p->ids);
    free(p->segs);
    free(p);
}

/* parity/parity_cases_paged.c - batched paged attention (docs/adr/0044):
 * S sequences at different positions, each through its own block table,
 * in one flash_attn node (loom_flash_attn_paged_batch).
 *
 * The check is independent of the paged code: per sequence, its K/V rows
 * are gathered from the pool with get_rows and the plain flash_attn runs
 * over them at the sequence's offset; the S outputs are concatenated along
 * the batch dimension. Tables give every sequence distinct blocks, out of
 * order; offsets differ per sequence (one at 0, one ending on a block
 * boundary where the shape allows). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "parity/parity_internal.h"

/* Sequence b's offset: base + b * step, wrapped so that its Tq queries fit
 * the table (nbt blocks of bs rows). */
static int64_t seq_offset(const parity_args *a, int64_t b) {
    const int64_t Tq = a->n[1], cap = a->n[7] * a->n[5] - Tq + 1;
    return (a->n[2] + b * (int64_t)a->i[1]) % cap;
}

/* Block j of sequence b's table: ((b * nbt + j) * 7 + 3) mod nb, distinct
 * over all sequences when nb >= S * nbt and nb is not a multiple of 7. */
static int64_t seq_block(int64_t b, int64_t j, int64_t nbt, int64_t nb) {
    return ((b * nbt + j) * 7 + 3) % nb;
}

/* t->name: "bs nb nbt b" (b < 0: the whole table [nbt, S], else the pool
 * rows of sequence b's keys). */
static void fill_paged(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    (void)rng;
    long long bs = 1, nb = 1, nbt = 1, b = -1;
    sscanf(t->name, "%lld %lld %lld %lld", &bs, &nb, &nbt, &b);
    for (int64_t j = 0; j < n; j++)
        dst[j] = b < 0 ? (float)seq_block(j / nbt, j % nbt, nbt, nb)
                       : (float)(seq_block(b, j / bs, nbt, nb) * bs + j % bs);
}

/* t->name: "base step cap": the offsets of seq_offset. */
static void fill_offsets(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    (void)rng;
    long long base = 0, step = 0, cap = 1;
    sscanf(t->name, "%lld %lld %lld", &base, &step, &cap);
    for (int64_t b = 0; b < n; b++)
        dst[b] = (float)((base + b * step) % cap);
}

/* n0 D, n1 Tq, n2 base offset, n3 Hq, n4 Hkv, n5 block size, n6 pool
 * blocks, n7 table length; i0 S, i1 offset step; t0 K/V dtype. */
static loom_tensor *b_paged_batch(parity_ctx *c, loom_graph *g, const parity_args *a) {
    const int64_t D = a->n[0], Tq = a->n[1], Hq = a->n[3], Hkv = a->n[4], bs = a->n[5];
    const int64_t nb = a->n[6], nbt = a->n[7], R = bs * nb, S = a->i[0];
    const size_t esz = loom_dtype_block_bytes(a->t[0]);
    /* q as the model makes it: [D, Hq, Tq, S] permuted to [D, Tq, Hq, S] */
    loom_tensor *q = loom_permute(g, parity_input(c, g, LOOM_F32, D, Hq, Tq, S), 0, 2, 1, 3);
    loom_tensor *kp = parity_input(c, g, a->t[0], D * Hkv, R, 1, 1);
    loom_tensor *vp = parity_input(c, g, a->t[0], D * Hkv, R, 1, 1);
    parity_fill_normal(c, q, 1.0f);
    parity_fill_normal(c, kp, 1.0f);
    const int64_t ne[3] = {D, R, Hkv};
    const size_t nbs[3] = {esz, (size_t)(D * Hkv) * esz, (size_t)D * esz};
    loom_tensor *k = loom_view(g, kp, 3, ne, nbs, 0), *v = loom_view(g, vp, 3, ne, nbs, 0);
    loom_tensor *tbl = parity_input(c, g, LOOM_I32, nbt, S, 1, 1);
    loom_tensor_set_name(tbl, "%lld %lld %lld -1", (long long)bs, (long long)nb, (long long)nbt);
    parity_fill_custom(c, tbl, fill_paged);
    loom_tensor *offs = parity_input(c, g, LOOM_I32, S, 1, 1, 1);
    loom_tensor_set_name(offs, "%lld %d %lld", (long long)a->n[2], a->i[1],
                         (long long)(nbt * bs - Tq + 1));
    parity_fill_custom(c, offs, fill_offsets);
    int64_t tk_max = 1;
    for (int64_t b = 0; b < S; b++)
        if (seq_offset(a, b) + Tq > tk_max) tk_max = seq_offset(a, b) + Tq;
    parity_reduce(c, D > tk_max ? D : tk_max);
    const float scale = 1.0f / sqrtf((float)D);
    loom_tensor *out = loom_flash_attn_paged_batch(g, q, k, v, tbl, offs, (int32_t)bs, scale);
    loom_tensor *want = NULL;
    for (int64_t b = 0; b < S; b++) {
        const int64_t off = seq_offset(a, b), Tk = off + Tq;
        loom_tensor *rows = parity_input(c, g, LOOM_I32, Tk, 1, 1, 1);
        loom_tensor_set_name(rows, "%lld %lld %lld %lld", (long long)bs, (long long)nb,
                             (long long)nbt, (long long)b);
        parity_fill_custom(c, rows, fill_paged);
        loom_tensor *kg =
            loom_permute(g, loom_reshape_3d(g, loom_get_rows(g, kp, rows), D, Hkv, Tk), 0, 2, 1, 3);
        loom_tensor *vg =
            loom_permute(g, loom_reshape_3d(g, loom_get_rows(g, vp, rows), D, Hkv, Tk), 0, 2, 1, 3);
        loom_tensor *o =
            loom_flash_attn(g, loom_slice(g, q, 3, b, 1), kg, vg, scale, true, (int32_t)off);
        want = want ? loom_concat(g, want, o, 3) : o;
    }
    parity_equiv(c, g, want);
    return out;
}

void parity_cases_paged_batch(parity_table *tb) {
    /* D, Tq, base offset, Hq, Hkv, block size, pool blocks, table length,
     * S, offset step */
    static const int64_t cfg[][10] = {
        {64, 1, 0, 9, 3, 16, 67, 4, 16, 7},  /* 16 decodes (SmolLM2's heads), one at 0 */
        {64, 1, 39, 8, 2, 16, 13, 3, 4, 5},  /* decodes, partial last blocks */
        {64, 5, 16, 8, 8, 16, 11, 2, 3, 11}, /* chunked prefill of 3 sequences */
        {128, 3, 15, 4, 1, 8, 19, 6, 2, 17}, /* GQA 4, offsets across block ends */
        {64, 1, 31, 8, 1, 32, 17, 4, 4, 32}, /* offsets ending on block boundaries */
    };
    for (int i = 0; i < 5; i++)
        for (int kv = 0; kv < 2; kv++) {
            const loom_dtype kt = kv ? LOOM_F16 : LOOM_F32;
            const int64_t *x = cfg[i];
            parity_args a = {.t = {kt}, .i = {(int32_t)x[8], (int32_t)x[9]}};
            for (int d = 0; d < 8; d++)
                a.n[d] = x[d];
            parity_table_add(tb, LOOM_OP_FLASH_ATTN, b_paged_batch, a,
                             "paged batch S=%lld D=%lld Tq=%lld Hq=%lld Hkv=%lld block=%lld "
                             "kv=%s vs gathered rows",
                             (long long)x[8], (long long)x[0], (long long)x[1], (long long)x[3],
                             (long long)x[4], (long long)x[5], loom_dtype_name(kt));
        }
}

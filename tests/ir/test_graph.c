/* tests/ir/test_graph.c - graph builder: shape/dtype validation messages,
 * sticky errors, view geometry, execution order and decompositions. */
#include <string.h>

#include "loom/loom.h"
#include "testing.h"

static loom_graph *fresh(void) {
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK && g);
    return g;
}

/* The first error's message contains every fragment given. */
static void expect_error(loom_graph *g, const char *a, const char *b) {
    const char *m = loom_graph_error(g);
    CHECK_MSG(loom_graph_status(g) == LOOM_ERR_INVALID_ARG, "status %s, message '%s'",
              loom_status_str(loom_graph_status(g)), m);
    CHECK_MSG(strstr(m, a) != NULL, "'%s' not in '%s'", a, m);
    if (b) CHECK_MSG(strstr(m, b) != NULL, "'%s' not in '%s'", b, m);
}

static void test_validation(void) {
    loom_graph *g = fresh();
    loom_tensor *w = loom_tensor_2d(g, LOOM_F32, 64, 32);
    loom_tensor *x = loom_tensor_2d(g, LOOM_F32, 48, 7);
    CHECK(loom_matmul(g, w, x) == NULL);
    expect_error(g, "matmul", "f32[64,32,1,1]");
    /* sticky: later constructors return NULL and keep the first message */
    loom_tensor *y = loom_silu(g, loom_matmul(g, w, x));
    CHECK(y == NULL);
    CHECK(loom_silu(g, w) == NULL);
    expect_error(g, "matmul", "f32[48,7,1,1]");
    CHECK(loom_graph_expand(g, w) == LOOM_ERR_INVALID_ARG);
    loom_graph_free(g);

    struct {
        const char *what, *frag;
    } cases[] = {{"q4_0 row", "multiple of 32"},  {"add bcast", "does not broadcast"},
                 {"gqa", "not a multiple"},       {"rope pos", "positions"},
                 {"moe topk", "top_k"},           {"i32 matmul", "no matmul kernel"},
                 {"reshape count", "elements"},   {"slice range", "outside dim"},
                 {"permute axes", "permutation"}, {"nf4 slice", "whole"},
                 {"ce targets", "targets"},       {"concat dims", "differ in dim"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g = fresh();
        loom_tensor *a = loom_tensor_3d(g, LOOM_F32, 8, 4, 2);
        switch (i) {
        case 0:
            loom_tensor_2d(g, LOOM_Q4_0, 33, 2);
            break;
        case 1:
            loom_add(g, a, loom_tensor_3d(g, LOOM_F32, 8, 3, 2));
            break;
        case 2:
            loom_flash_attn(g, loom_tensor_4d(g, LOOM_F32, 8, 3, 6, 1),
                            loom_tensor_4d(g, LOOM_F32, 8, 5, 4, 1),
                            loom_tensor_4d(g, LOOM_F32, 8, 5, 4, 1), 1.0f, true, 0);
            break;
        case 3: {
            loom_rope_params p = loom_rope_params_llama3(8);
            loom_rope(g, loom_tensor_4d(g, LOOM_F32, 8, 2, 3, 1), loom_tensor_1d(g, LOOM_I32, 4),
                      &p);
            break;
        }
        case 4:
            loom_moe_gate(g, loom_tensor_2d(g, LOOM_F32, 8, 3), 9);
            break;
        case 5:
            loom_matmul(g, loom_tensor_2d(g, LOOM_I32, 8, 2), loom_tensor_2d(g, LOOM_F32, 8, 1));
            break;
        case 6:
            loom_reshape_2d(g, a, 8, 9);
            break;
        case 7:
            loom_slice(g, a, 1, 3, 2);
            break;
        case 8:
            loom_permute(g, a, 0, 1, 1, 3);
            break;
        case 9:
            loom_slice(g, loom_tensor_2d(g, LOOM_NF4, 64, 4), 1, 0, 2);
            break;
        case 10:
            loom_cross_entropy(g, loom_tensor_2d(g, LOOM_F32, 10, 3),
                               loom_tensor_1d(g, LOOM_I32, 4));
            break;
        case 11:
            loom_concat(g, a, loom_tensor_3d(g, LOOM_F32, 8, 5, 3), 1);
            break;
        }
        expect_error(g, cases[i].frag, NULL);
        loom_graph_free(g);
    }
}

static void test_views(void) {
    loom_graph *g = fresh();
    loom_tensor *a = loom_tensor_3d(g, LOOM_F32, 4, 3, 2);
    CHECK(loom_tensor_is_contiguous(a) && a->nb[1] == 16 && a->nb[2] == 48);
    loom_tensor *t = loom_transpose(g, a);
    CHECK(t->ne[0] == 3 && t->ne[1] == 4 && t->nb[0] == 16 && t->nb[1] == 4);
    CHECK(!loom_tensor_is_contiguous(t) && loom_tensor_storage(t) == a);
    loom_tensor *p = loom_permute(g, a, 2, 0, 1, 3); /* a dim0 -> 2, dim1 -> 0, dim2 -> 1 */
    CHECK(p->ne[0] == 3 && p->ne[1] == 2 && p->ne[2] == 4);
    loom_tensor *s = loom_slice(g, p, 1, 1, 1); /* offset = 1 * a->nb[2] */
    CHECK(s->view_src == a && s->view_offs == 48 && s->ne[1] == 1);
    loom_tensor *r = loom_reshape_2d(g, a, 12, 2);
    CHECK(r->view_src == a && loom_tensor_is_contiguous(r) && loom_tensor_nbytes(r) == 96);
    CHECK(loom_tensor_nbytes(t) == 96); /* a strided view spans its storage */
    loom_tensor *q = loom_tensor_2d(g, LOOM_Q8_0, 64, 3);
    CHECK(q->nb[0] == 34 && q->nb[1] == 68 && loom_tensor_nbytes(q) == 204);
    loom_tensor *qs = loom_slice(g, q, 0, 32, 32);
    CHECK(qs && qs->view_offs == 34);
    loom_tensor *n4 = loom_tensor_2d(g, LOOM_NF4_DQ, 64, 4);
    CHECK(loom_tensor_nbytes(n4) == loom_dtype_nbytes(LOOM_NF4_DQ, 256));
    CHECK(loom_graph_status(g) == LOOM_OK);
    loom_graph_free(g);
}

static void test_order_and_shapes(void) {
    loom_graph *g = fresh();
    loom_tensor *x = loom_tensor_2d(g, LOOM_F32, 16, 5);
    loom_tensor *w2 = loom_tensor_2d(g, LOOM_F16, 16, 8);
    loom_tensor *h = loom_matmul(g, w2, x);
    CHECK(h && h->ne[0] == 8 && h->ne[1] == 5 && h->dtype == LOOM_F32);
    loom_tensor *unused = loom_silu(g, x);
    loom_tensor *y = loom_rms_norm(g, loom_add(g, h, loom_tensor_1d(g, LOOM_F32, 8)), 1e-5f);
    CHECK(loom_graph_expand(g, y) == LOOM_OK);
    CHECK(loom_graph_expand(g, y) == LOOM_OK); /* idempotent */
    int n = loom_graph_n_nodes(g);
    CHECK(n == 3); /* matmul, add, rms_norm; leaves and the unused silu are not nodes */
    for (int i = 0; i < n; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        CHECK(t != unused && t->op != LOOM_OP_NONE);
        for (int s = 0; s < LOOM_MAX_SRC; s++) /* sources come earlier (or are leaves) */
            if (t->src[s] && t->src[s]->op != LOOM_OP_NONE) {
                int found = 0;
                for (int j = 0; j < i; j++)
                    found |= loom_graph_node(g, j) == t->src[s];
                CHECK(found);
            }
    }
    CHECK(loom_graph_node(g, n - 1) == y);
    loom_graph *other = fresh();
    CHECK(loom_silu(other, x) == NULL); /* tensors of another graph are rejected */
    CHECK(strstr(loom_graph_error(other), "another graph") != NULL);
    loom_graph_free(other);
    loom_graph_free(g);
}

static void test_decompose(void) {
    loom_graph *g = fresh();
    loom_tensor *q = loom_tensor_4d(g, LOOM_F32, 8, 3, 4, 1);
    loom_tensor *k = loom_tensor_4d(g, LOOM_F16, 8, 5, 2, 1);
    loom_tensor *v = loom_tensor_4d(g, LOOM_F16, 8, 5, 2, 1);
    loom_tensor *fa = loom_flash_attn(g, q, k, v, 0.3f, true, 2);
    CHECK(fa && fa->ne[0] == 8 && fa->ne[1] == 4 && fa->ne[2] == 3);
    loom_tensor *d = loom_decompose(g, fa);
    CHECK(d && memcmp(d->ne, fa->ne, sizeof d->ne) == 0 && loom_tensor_is_contiguous(d));
    loom_tensor *x = loom_tensor_2d(g, LOOM_F32, 64, 3);
    loom_tensor *lg = loom_tensor_2d(g, LOOM_F32, 4, 3);
    loom_tensor *gt = loom_tensor_3d(g, LOOM_NF4, 64, 32, 4);
    loom_tensor *up = loom_tensor_3d(g, LOOM_NF4, 64, 32, 4);
    loom_tensor *dn = loom_tensor_3d(g, LOOM_Q8_0, 32, 64, 4);
    loom_tensor *m = loom_moe(g, x, lg, gt, up, dn, 2);
    CHECK(m && memcmp(m->ne, x->ne, sizeof m->ne) == 0);
    loom_tensor *md = loom_decompose(g, m);
    CHECK(md && memcmp(md->ne, x->ne, sizeof md->ne) == 0);
    CHECK(loom_decompose(g, x) == NULL);
    CHECK(strstr(loom_graph_error(g), "not a fused op") != NULL);
    loom_graph_free(g);
}

/* The weight-dtype rule every layer asks: matmul and moe take every float and
 * quantized dtype that has kernels (up to nf4_dq), never i32; get_rows' table
 * every one but nf4 and i32; ops without weights take none. The k-quants
 * q2_K..q6_K are weights (q8_K is for activations only); the ggml legacy types
 * after nf4_dq join as their kernels land. Graph building
 * follows the rule. */
static void test_weight_dtypes(void) {
    for (int t = 0; t < LOOM_DTYPE_COUNT; t++) {
        /* the legacy ggml types (issue 16) and the k-quants (issue 17) included;
         * not q8_K: activations only */
        const bool kquant = t >= LOOM_Q2_K && t <= LOOM_Q6_K;
        const bool want = t != LOOM_I32 && (t <= LOOM_NF4_DQ || t == LOOM_Q4_1 || t == LOOM_Q5_0 ||
                                            t == LOOM_Q5_1 || kquant);
        CHECK_MSG(loom_op_weight_dtype_ok(LOOM_OP_MATMUL, (loom_dtype)t) == want, "matmul %s",
                  loom_dtype_name((loom_dtype)t));
        CHECK(loom_op_weight_dtype_ok(LOOM_OP_MOE, (loom_dtype)t) == want);
        CHECK(!loom_op_weight_dtype_ok(LOOM_OP_ADD, (loom_dtype)t));
        const bool table = want && !loom_dtype_is_nf4((loom_dtype)t);
        CHECK_MSG(loom_op_weight_dtype_ok(LOOM_OP_GET_ROWS, (loom_dtype)t) == table, "get_rows %s",
                  loom_dtype_name((loom_dtype)t));
    }
    CHECK(!loom_op_weight_dtype_ok(LOOM_OP_MATMUL, LOOM_DTYPE_COUNT));
    char list[128];
    loom_op_weight_dtypes(LOOM_OP_GET_ROWS, list, sizeof list);
    CHECK_MSG(!strcmp(list, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, "
                            "q6_K"),
              "get_rows list '%s'", list);

    /* loom_get_rows refuses an nf4 table with the rule's message. */
    loom_graph *g = fresh();
    if (!g) return;
    loom_tensor *tab = loom_tensor_2d(g, LOOM_NF4, 64, 8);
    loom_tensor *ids = loom_tensor_1d(g, LOOM_I32, 3);
    CHECK(loom_get_rows(g, tab, ids) == NULL);
    expect_error(g, "get_rows", "has no get_rows kernel");
    loom_graph_free(g);
}

int main(void) {
    test_weight_dtypes();
    test_validation();
    test_views();
    test_order_and_shapes();
    test_decompose();
    return test_summary("test_graph");
}

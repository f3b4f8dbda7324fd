/* tests/model/tp_mpi.c - tensor parallelism on 2 MPI ranks (issue 20 item
 * 4, docs/adr/0034), started by ctest as `mpirun -np 2 tp_mpi`: both ranks
 * load a small random model (a dense layer and a MoE layer: tiny-moe's
 * alternating pattern) with tp 2, rank 0 also loads it whole (no comm), and
 * a prefill of 7 tokens plus 24 greedy decode steps run on both. Rank 0
 * checks that the greedy tokens are the same and the logits of every step
 * within tolerance of the single-rank model, and that both ranks got the
 * same logits bit for bit (each rank samples for itself). For f32 and
 * q8_0 weights (quantize-on-load; a row-parallel slice is whole q8_0
 * blocks, so the shards hold the very blocks of the whole weight).
 *
 * Tolerance: a row-parallel matmul's sum over k is split in two halves and
 * the halves added by the all-reduce, where one rank sums k in one run
 * (in SIMD lanes and blocks of its own order): rounding of f32 sums,
 * ~1e-6 relative per layer. |logit diff| <= 1e-4 * (1 + max |logit|);
 * measured ~1e-6 (printed). A shard that computed the wrong heads or
 * columns, or a missing all-reduce, moves logits by O(1).
 *
 * usage: mpirun -np 2 tp_mpi DIR (DIR: a scratch directory both can see);
 * tp_mpi --write-model FILE writes the model alone (for tests/model/tp_cli.sh). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "loom/model.h"
#include "runtime/dist/dist.h"
#include "testing.h"

#include "train/train_fixture.h"

static loom_model *load(const char *path, loom_dtype quant, loom_comm *c) {
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    mp.n_ctx = 64;
    mp.kv_dtype = LOOM_F32;
    if (quant != LOOM_F32) {
        mp.quantize = true;
        mp.quant = quant;
    }
    mp.tp = c ? c->size : 1;
    mp.comm = c;
    loom_model *m = NULL;
    char err[512];
    loom_status st = loom_model_load(path, &mp, &m, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "load (tp %d): %s", mp.tp, err);
    return m;
}

static int argmax(const float *v, int64_t n) {
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = (int)i;
    return b;
}

static void run(loom_comm *c, const char *path, loom_dtype quant) {
    loom_model *tp = load(path, quant, c);
    loom_model *one = c->rank == 0 ? load(path, quant, NULL) : NULL;
    int ok = tp && (c->rank != 0 || one);
    int64_t bad = !ok;
    loom_comm_allreduce_sum(c, &bad, 1, LOOM_COMM_I64);
    if (bad) {
        CHECK_MSG(0, "a rank failed to load");
        loom_model_free(tp);
        loom_model_free(one);
        return;
    }
    const int64_t V = loom_model_config_of(tp)->vocab_size;
    float *lt = malloc((size_t)V * 8 * sizeof *lt), *l1 = malloc((size_t)V * sizeof *l1);
    float *other = malloc((size_t)V * sizeof *other);
    int32_t toks[7] = {256, 't', 'h', 'e', ' ', 'c', 'a'};
    const int slot = 0;
    double maxd = 0.0;
    int same_tokens = 1, same_ranks = 1;
    char err[512];
    for (int step = 0; step < 25; step++) {
        const int T = step == 0 ? 7 : 1;
        loom_batch b = {1, T, &slot, toks, false};
        loom_status st = loom_model_decode(tp, &b, lt, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "tp decode: %s", err);
        if (st != LOOM_OK) break;
        /* rank 1's logits to rank 0: a sum of (rank 0: 0, rank 1: logits) */
        memcpy(other, lt, (size_t)V * sizeof *other);
        if (c->rank == 0) memset(other, 0, (size_t)V * sizeof *other);
        loom_comm_allreduce_sum(c, other, (size_t)V, LOOM_COMM_F32);
        int next = argmax(lt, V);
        if (c->rank == 0) {
            same_ranks &= !memcmp(other, lt, (size_t)V * sizeof *lt);
            st = loom_model_decode(one, &b, l1, err, sizeof err);
            CHECK_MSG(st == LOOM_OK, "1-rank decode: %s", err);
            double mx = 0.0, d = 0.0;
            for (int64_t i = 0; i < V; i++) {
                mx = fmax(mx, fabs(l1[i]));
                d = fmax(d, fabs((double)lt[i] - l1[i]));
            }
            maxd = fmax(maxd, d / (1.0 + mx));
            same_tokens &= argmax(l1, V) == next;
        }
        toks[0] = next;
    }
    if (c->rank == 0) {
        fprintf(stderr, "tp 2 vs 1 rank (%s): max |dlogit| / (1 + max|logit|) = %.3g\n",
                loom_dtype_name(quant), maxd);
        CHECK_MSG(maxd <= 1e-4, "logits differ: %g", maxd);
        CHECK_MSG(same_tokens, "greedy tokens differ (%s)", loom_dtype_name(quant));
        CHECK_MSG(same_ranks, "the two ranks got different logits");
    }
    free(lt);
    free(l1);
    free(other);
    loom_model_free(tp);
    loom_model_free(one);
}

static loom_status write_model(const char *path) {
    char err[512];
    loom_tokenizer *tok = byte_tokenizer();
    loom_model_config cfg;
    loom_model_config_preset("tiny-moe", &cfg, err, sizeof err);
    cfg.dim = 64;
    cfg.n_layers = 2; /* tiny-moe alternates: one dense layer, one MoE layer */
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    cfg.head_dim = 16;
    cfg.ffn_dim = 128;
    cfg.expert_ffn_dim = 64;
    cfg.n_experts = 4;
    cfg.rope = loom_rope_params_llama3(16);
    cfg.rope.mode = LOOM_ROPE_NORMAL;
    cfg.vocab_size = 261;
    cfg.bos_id = 256;
    cfg.eos_id = 257;
    cfg.eot_id = 258;
    loom_status st = loom_model_write_random_gguf(&cfg, LOOM_F32, 11, tok, path, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "write model: %s", err);
    loom_tokenizer_free(tok);
    return st;
}

int main(int argc, char **argv) {
    loom_comm *c = NULL;
    char err[512] = "";
    if (argc == 3 && !strcmp(argv[1], "--write-model"))
        return write_model(argv[2]) == LOOM_OK ? 0 : 1;
    if (argc < 2 || loom_dist_open("auto", &c, err, sizeof err) != LOOM_OK || c->size != 2) {
        fprintf(stderr, "usage: mpirun -np 2 tp_mpi DIR (%s)\n", err);
        return 2;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/tp_tiny_moe.gguf", argv[1]);
    CHECK(loom_registry_init() == LOOM_OK);
    loom_status st = LOOM_OK;
    if (c->rank == 0) st = write_model(path);
    if (loom_comm_agree(c, st) == LOOM_OK) {
        run(c, path, LOOM_F32);
        run(c, path, LOOM_Q8_0);
    }
    loom_registry_shutdown();
    int rc = c->rank == 0 ? test_summary("tp_mpi") : 0;
    loom_comm_free(c);
    return rc;
}

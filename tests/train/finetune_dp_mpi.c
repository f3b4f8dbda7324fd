/* tests/train/finetune_dp_mpi.c - data-parallel fine-tuning on 2 MPI ranks
 * (issue 19 item 7, docs/adr/0034): `mpirun -np 2 loom finetune` with
 * --grad-accum 2 gives the adapter that one rank gives with --grad-accum 4,
 * within the reduction-order tolerance (below); an interrupted 2-rank run
 * resumed from rank 0's checkpoint ends bit for bit where the uninterrupted
 * 2-rank run does; and the per-step losses and token counts agree.
 *
 * Tolerance: the 2-rank gradient is (g0 + g2) + (g1 + g3) where one rank
 * sums g0 + g1 + g2 + g3 in order, so gradients differ by float rounding
 * (~1e-7 relative). AdamW's update m / (sqrt(v) + eps) is about lr * sign(g)
 * whatever g's size, so where the four micro-gradients nearly cancel, the
 * rounding of their sum moves that element's update by a visible part of lr
 * (measured: max |dw| 1.7e-6 = 4e-5 of lr * steps). Tolerance: 1e-3 * lr *
 * steps (4e-5) per element. Not averaging (each rank keeping its own
 * gradients) or not gathering the ZeRO shards moves weights by ~lr (1e-2).
 * The logged loss and grad_norm of every step agree to 1e-5 relative (the
 * grad norm catches a sum where a mean is due: AdamW would not). The
 * resumed run is compared bit for bit: both are 2-rank runs, and MPI's
 * allreduce of 2 ranks adds in one fixed order.
 * usage: finetune_dp_mpi LOOM_CLI MPIEXEC (CMake passes "0" for MPIEXEC in a
 * build without MPI or without mpirun: the test then exits 77, skipped). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/loom.h"
#include "testing.h"
#include "train/finetune.h"
#include "train/peft.h"

#include "train_fixture.h"

static char root[256], model_path[300], data_path[300], eval_path[300];
static const char *cli, *mpiexec;

static bool make_model(void) {
    loom_tokenizer *tok = byte_tokenizer();
    char err[512];
    if (!tok) return false;
    loom_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.vocab_size = 261;
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_dim = 128;
    c.rms_eps = 1e-5f;
    c.rope = loom_rope_params_llama3(16);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.rope.scaling = LOOM_ROPE_SCALING_NONE;
    c.rope.theta = 10000.0f;
    c.max_ctx = 256;
    c.tie_embeddings = true;
    c.bos_id = 256;
    c.eos_id = 257;
    c.eot_id = 258;
    loom_status st =
        loom_model_write_random_gguf(&c, LOOM_F32, 7, tok, model_path, err, sizeof err);
    loom_tokenizer_free(tok);
    CHECK_MSG(st == LOOM_OK, "write model: %s", err);
    return st == LOOM_OK;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)len + 1);
    *n = fread(d, 1, (size_t)len, f);
    d[*n] = 0;
    fclose(f);
    return d;
}

static const int STEPS = 4;
static const float LR = 1e-2f;

static int mpirun(const char *out, const char *extra_env, const char *extra_args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader "
             "LOOM_THREADS=1 %s '%s' -np 2 --oversubscribe '%s' finetune -m '%s' --data '%s' "
             "-o '%s' --backend cpu --lora-r 8 --grad-accum 2 --lr 0.01 --max-steps %d "
             "--seq 64 --quiet --save-every 1 --eval '%s' %s",
             extra_env, mpiexec, cli, model_path, data_path, out, STEPS, eval_path,
             extra_args);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "mpirun failed (%d): %s", rc, cmd);
    return rc;
}

static double jnum(const char *line, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* per-step "loss" and "tokens" of OUTDIR/train_log.jsonl */
/* the eval_loss lines (before and after), or NAN */
static void read_eval(const char *dir, double ev[2]) {
    char p[400];
    size_t n;
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    char *log = slurp(p, &n);
    ev[0] = ev[1] = NAN;
    int k = 0;
    for (char *l = log ? strtok(log, "\n") : NULL; l && k < 2; l = strtok(NULL, "\n"))
        if (!isnan(jnum(l, "eval_loss"))) ev[k++] = jnum(l, "eval_loss");
    free(log);
}

static int read_log(const char *dir, double *loss, double *tokens, double *gnorm) {
    char p[400];
    size_t n;
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    char *log = slurp(p, &n);
    int k = 0;
    for (char *l = log ? strtok(log, "\n") : NULL; l && k < 16; l = strtok(NULL, "\n")) {
        if (isnan(jnum(l, "loss"))) continue;
        loss[k] = jnum(l, "loss");
        gnorm[k] = jnum(l, "grad_norm");
        tokens[k++] = jnum(l, "tokens");
    }
    free(log);
    return k;
}

static loom_lora *load_adapter(const char *dir) {
    loom_model *m = NULL;
    loom_model_params mp = loom_model_default_params();
    mp.backend = "cpu";
    char err[512];
    loom_lora *lo = NULL;
    if (loom_model_load(model_path, &mp, &m, err, sizeof err) != LOOM_OK) return NULL;
    if (loom_peft_load(dir, loom_model_config_of(m), &lo, err, sizeof err) != LOOM_OK)
        fprintf(stderr, "peft load %s: %s\n", dir, err);
    loom_model_free(m);
    return lo;
}

int main(int argc, char **argv) {
    cli = argc > 1 ? argv[1] : NULL;
    mpiexec = argc > 2 ? argv[2] : NULL;
    if (!mpiexec || access(mpiexec, X_OK) != 0) {
        fprintf(stderr, "finetune_dp_mpi: no mpirun or a build without MPI: skipped\n");
        return 77;
    }
    CHECK(cli && access(cli, X_OK) == 0);
    char tmpl[] = "/tmp/loom_finetune_dp_XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    snprintf(root, sizeof root, "%s", tmpl);
    snprintf(model_path, sizeof model_path, "%s/tiny.gguf", root);
    snprintf(data_path, sizeof data_path, "%s/train.jsonl", root);
    snprintf(eval_path, sizeof eval_path, "%s/eval.jsonl", root);
    FILE *fe = fopen(eval_path, "w"); /* 3 examples: rank 0 gets two, rank 1 one */
    fputs("{\"text\": \"the cat sat on the log\"}\n{\"text\": \"a dog ran by the sea\"}\n"
          "{\"text\": \"owls fly at night\"}\n",
          fe);
    fclose(fe);
    FILE *f = fopen(data_path, "w");
    static const char *const docs[] = {
        "the cat sat on the mat", "the dog sat on the log", "a bird flew over the hill",
        "the cat ate the rat",    "fish swim in the sea",   "the sun rose over the bay",
        "a fox ran into the den", "rain fell on the roof",  "the owl sang at night",
        "bees hum in the garden"};
    for (int i = 0; i < 10; i++)
        fprintf(f, "{\"text\": \"%s\"}\n", docs[i]);
    fclose(f);
    if (!make_model()) return test_summary("finetune_dp_mpi");
    CHECK(loom_registry_init() == LOOM_OK);

    /* one rank, accumulation 4 (in process) */
    char one[300], two[300], res[300];
    snprintf(one, sizeof one, "%s/one", root);
    snprintf(two, sizeof two, "%s/two", root);
    snprintf(res, sizeof res, "%s/resumed", root);
    loom_finetune_params p = loom_finetune_default_params();
    p.model = model_path;
    p.data = data_path;
    p.eval = eval_path;
    p.out_dir = one;
    p.backend = "cpu";
    p.lora.r = 8;
    p.grad_accum = 4;
    p.lr = LR;
    p.max_steps = STEPS;
    p.seq = 64;
    p.quiet = true;
    char err[1024];
    CHECK_MSG(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK, "one rank: %s", err);

    /* two ranks, accumulation 2 each */
    if (mpirun(two, "", "") == 0) {
        loom_lora *a = load_adapter(one), *b = load_adapter(two);
        CHECK(a && b && a->n_params == b->n_params);
        double maxd = 0.0, maxw = 0.0;
        for (int i = 0; a && b && i < a->n_params; i++)
            for (int64_t j = 0; j < a->p[i].rows * a->p[i].cols; j++) {
                maxd = fmax(maxd, fabs((double)a->p[i].w[j] - (double)b->p[i].w[j]));
                maxw = fmax(maxw, fabs((double)a->p[i].w[j]));
            }
        const double tol = 1e-3 * LR * STEPS;
        fprintf(stderr, "2 ranks vs 1: max |dw| %.3g (tolerance %.3g; max |w| %.3g)\n", maxd,
                tol, maxw);
        CHECK_MSG(maxd <= tol, "2-rank adapter differs from 1-rank: %g > %g", maxd, tol);
        CHECK(maxw > 10 * tol); /* the adapter did move */
        loom_lora_free(a);
        loom_lora_free(b);
        double l1[16], t1[16], l2[16], t2[16], g1[16], g2[16];
        int n1 = read_log(one, l1, t1, g1), n2 = read_log(two, l2, t2, g2);
        CHECK_MSG(n1 == STEPS && n2 == STEPS, "log lines %d, %d", n1, n2);
        for (int k = 0; k < n1 && k < n2; k++) {
            CHECK_MSG(t1[k] == t2[k], "step %d tokens %g vs %g", k + 1, t1[k], t2[k]);
            CHECK_MSG(fabs(l1[k] - l2[k]) <= 1e-5 * fabs(l1[k]), "step %d loss %.9g vs %.9g",
                      k + 1, l1[k], l2[k]);
            CHECK_MSG(fabs(g1[k] - g2[k]) <= 1e-5 * fabs(g1[k]), "step %d grad_norm %.9g vs %.9g",
                      k + 1, g1[k], g2[k]);
        }
        /* the eval set is split across the ranks and the sums all-reduced */
        double e1[2], e2[2];
        read_eval(one, e1);
        read_eval(two, e2);
        for (int k = 0; k < 2; k++)
            CHECK_MSG(!isnan(e1[k]) && fabs(e1[k] - e2[k]) <= 1e-5 * fabs(e1[k]),
                      "eval loss %d: %.9g vs %.9g", k, e1[k], e2[k]);
    }

    /* killed after step 2 (rank 0 saved after every step), resumed on 2 ranks */
    if (mpirun(res, "LOOM_TEST_FINETUNE_STOP_AFTER=2", "") == 0 &&
        mpirun(res, "", "--resume") == 0) {
        char pa[400], pb[400];
        size_t na, nb;
        snprintf(pa, sizeof pa, "%s/adapter_model.safetensors", two);
        snprintf(pb, sizeof pb, "%s/adapter_model.safetensors", res);
        char *da = slurp(pa, &na), *db = slurp(pb, &nb);
        CHECK_MSG(da && db && na == nb && !memcmp(da, db, na),
                  "resumed 2-rank adapter differs from the uninterrupted one");
        free(da);
        free(db);
        snprintf(pa, sizeof pa, "%s/checkpoint.bin", two);
        snprintf(pb, sizeof pb, "%s/checkpoint.bin", res);
        da = slurp(pa, &na);
        db = slurp(pb, &nb);
        CHECK_MSG(da && db && na == nb && !memcmp(da, db, na),
                  "resumed 2-rank checkpoint (optimizer shards gathered) differs");
        free(da);
        free(db);
    }
    loom_registry_shutdown();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return test_summary("finetune_dp_mpi");
}

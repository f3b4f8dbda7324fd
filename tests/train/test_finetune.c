/* tests/train/test_finetune.c - the fine-tuning loop end to end on a small
 * generated model (random weights, 2 layers, dim 64, a byte-level tokenizer
 * with Llama-3's special tokens, so chats render with the real template):
 *   - a short run (text and chat data, dropout on) lowers the training and
 *     the held-out loss, and writes the adapter, the log and a checkpoint;
 *     so do runs on an nf4 (QLoRA's double-quantized NF4) and a q8_0 base;
 *   - exact resume: a run stopped after 3 of 6 steps (checkpoint at step 3)
 *     and resumed gives the same per-step losses and grad norms, and a
 *     byte-identical adapter, as the uninterrupted run (epochs wrap, dropout
 *     masks and AdamW state cross the checkpoint), with f32 AdamW and with
 *     8-bit AdamW (its block-wise states and the f32 states of its small
 *     tensors); an 8-bit run is not an f32 one and does not resume as one;
 *     in each precision (docs/adr/0041: bf16, the default; f16, whose loss
 *     scaler starts at 2^24 so it skips steps and backs off, its state in
 *     the checkpoint; f32), bit for bit on cpu;
 *   - f16 with GradScaler's defaults lowers the loss;
 *   - kill -9: a child saving a checkpoint every step is killed at random
 *     moments (the parent kills as soon as it sees a temporary checkpoint
 *     file, i.e. mid-save, when it can); each time checkpoint.bin still
 *     loads (checksum verified) and is at most the step in progress behind
 *     the log, and a resumed run finishes;
 *   - TensorBoard: the event files in OUTDIR/tb (read with tb_writer's
 *     reader) hold the JSONL log's steps and values (loss, lr, grad_norm,
 *     tokens/s, eval loss), also across a resume; OUTDIR/metrics.svg plots
 *     one loss point per step;
 *   - a damaged checkpoint is refused with a message, bad data lines name
 *     the file and line. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loom/loom.h"
#include "loom/model.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/finetune.h"
#include "train/tb_writer.h"
#include "train_fixture.h"

static char root[256], model_path[300], data_path[300], eval_path[300];

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

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
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

static loom_finetune_params params(const char *out) {
    loom_finetune_params p = loom_finetune_default_params();
    p.model = model_path;
    p.data = data_path;
    p.out_dir = out;
    p.backend = "cpu";
    p.lora.r = 8;
    p.grad_accum = 2;
    p.lr = 1e-2f;
    p.max_steps = 6;
    p.seq = 64;
    p.quiet = true;
    return p;
}

/* "loss" and "grad_norm" fields of every step line, concatenated */
static char *curve(const char *dir) {
    char p[400];
    size_t n;
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    char *log = slurp(p, &n);
    if (!log) return strdup("");
    char *out = calloc(n + 1, 1);
    for (char *l = strtok(log, "\n"); l; l = strtok(NULL, "\n")) {
        char *a = strstr(l, "\"loss\""), *b = strstr(l, ",\"lr\"");
        char *c = strstr(l, "\"grad_norm\""), *d = strstr(l, ",\"tokens\"");
        char *e = strstr(l, "\"loss_scale\""); /* f16: the scaler's state too */
        if (!a || !b || !c || !d) continue;
        strncat(out, a, (size_t)(b - a));
        strncat(out, c, (size_t)(d - c));
        if (e) strcat(out, e);
        strcat(out, "\n");
    }
    free(log);
    return out;
}

static int count_steps(const char *dir) {
    char *c = curve(dir);
    int n = 0;
    for (char *s = c; *s; s++)
        n += *s == '\n';
    free(c);
    return n;
}

/* ---- TensorBoard files and the plot against train_log.jsonl ---- */

typedef struct tb_rec {
    char tag[32];
    float v;
    int64_t step;
} tb_rec;
typedef struct tb_set {
    tb_rec r[512];
    int n;
} tb_set;

static void tb_collect(void *ud, const char *tag, float v, int64_t step, double wall) {
    tb_set *s = ud;
    (void)wall;
    if (s->n < 512) {
        snprintf(s->r[s->n].tag, sizeof s->r[0].tag, "%s", tag);
        s->r[s->n].v = v;
        s->r[s->n].step = step;
        s->n++;
    }
}

/* the value of "key": in a JSONL line, NAN when absent */
static double jnum(const char *line, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    if (p && !strncmp(p + strlen(k), "null", 4)) return NAN; /* a skipped f16 step's grad_norm */
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* v (from tensorboard) is want (from the JSONL, printed with %.9g) as f32:
 * equal, or one f32 step away (the decimal round trip of a double may round
 * to the neighbouring float); rel for fields printed with fewer digits. */
static bool same(float v, double want, double rel) {
    float w = (float)want;
    if (isnan(want)) return isnan(v) || isinf(v);
    if (rel > 0) return fabs((double)v - want) <= rel * fabs(want);
    return v == w || v == nextafterf(w, INFINITY) || v == nextafterf(w, -INFINITY);
}

static int tb_count(const tb_set *s, const char *tag) {
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += !strcmp(s->r[i].tag, tag);
    return n;
}

static bool tb_has(const tb_set *s, const char *tag, int64_t step, double want, double rel) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->r[i].tag, tag) && s->r[i].step == step && same(s->r[i].v, want, rel))
            return true;
    return false;
}

/* Every event file in DIR/tb read with tb_writer's reader (itself checked
 * against tensorboard's loader by tb_readback): one train/loss, train/lr,
 * train/grad_norm, train/tokens_per_s per step line of the log and one
 * eval/loss per eval line, same steps, same values; DIR/metrics.svg has a
 * loss line with one point per step. */
static void check_metrics(const char *dir, int steps, int evals) {
    char p[400], cmd[500], err[512];
    snprintf(cmd, sizeof cmd, "ls %s/tb/events.out.tfevents.* 2>/dev/null", dir);
    tb_set *s = calloc(1, sizeof *s);
    FILE *ls = popen(cmd, "r");
    int files = 0;
    while (ls && fgets(p, sizeof p, ls)) {
        p[strcspn(p, "\n")] = 0;
        CHECK_MSG(loom_tb_read(p, tb_collect, s, err, sizeof err) == LOOM_OK, "%s", err);
        files++;
    }
    if (ls) pclose(ls);
    CHECK_MSG(files >= 1, "no event file in %s/tb", dir);
    snprintf(p, sizeof p, "%s/train_log.jsonl", dir);
    size_t n;
    char *log = slurp(p, &n);
    int nstep = 0, neval = 0;
    for (char *l = log ? strtok(log, "\n") : NULL; l; l = strtok(NULL, "\n")) {
        int64_t st = (int64_t)jnum(l, "step");
        double ev = jnum(l, "eval_loss");
        if (!isnan(ev)) {
            neval++;
            CHECK_MSG(tb_has(s, "eval/loss", st, ev, 0), "%s: eval/loss at step %lld", dir,
                      (long long)st);
            continue;
        }
        nstep++;
        CHECK_MSG(tb_has(s, "train/loss", st, jnum(l, "loss"), 0) &&
                      tb_has(s, "train/lr", st, jnum(l, "lr"), 0) &&
                      tb_has(s, "train/grad_norm", st, jnum(l, "grad_norm"), 0) &&
                      tb_has(s, "train/tokens_per_s", st, jnum(l, "tokens_per_s"), 1e-5),
                  "%s: step %lld's scalars are not in the event files", dir, (long long)st);
    }
    free(log);
    CHECK_MSG(nstep == steps && neval == evals, "%s: log has %d steps, %d evals", dir, nstep,
              neval);
    CHECK_MSG(tb_count(s, "train/loss") == steps && tb_count(s, "train/lr") == steps &&
                  tb_count(s, "train/grad_norm") == steps &&
                  tb_count(s, "train/tokens_per_s") == steps && tb_count(s, "eval/loss") == evals,
              "%s: %d scalars in the event files", dir, s->n);
    free(s);
    snprintf(p, sizeof p, "%s/metrics.svg", dir);
    char *svg = slurp(p, &n);
    CHECK_MSG(svg != NULL, "%s missing", p);
    const char *pl = svg ? strstr(svg, "class=\"loss\"") : NULL;
    const char *pts = pl ? strstr(pl, "points=\"") : NULL;
    int commas = 0;
    for (const char *c = pts ? pts + 8 : ""; *c && *c != '"'; c++)
        commas += *c == ',';
    CHECK_MSG(commas == steps, "%s: the loss line has %d points, not %d", p, commas, steps);
    free(svg);
}

static void test_loss_goes_down(void) {
    char out[300], err[1024];
    snprintf(out, sizeof out, "%s/run", root);
    loom_finetune_params p = params(out);
    p.eval = eval_path;
    p.max_steps = 12;
    loom_finetune_result r;
    loom_status st = loom_finetune_run(&p, &r, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "finetune: %s", err);
    CHECK_MSG(r.steps == 12, "%lld steps", (long long)r.steps);
    CHECK_MSG(r.last_loss < 0.8 * r.first_loss, "training loss %.4f -> %.4f", r.first_loss,
              r.last_loss);
    CHECK_MSG(r.eval_after < r.eval_before, "held-out loss %.4f -> %.4f", r.eval_before,
              r.eval_after);
    printf("short run: loss %.4f -> %.4f, held-out %.4f -> %.4f, %.0f tokens/s\n", r.first_loss,
           r.last_loss, r.eval_before, r.eval_after, r.tokens_per_s);
    const char *files[] = {"adapter_config.json", "adapter_model.safetensors", "train_log.jsonl",
                           "checkpoint.bin"};
    for (int i = 0; i < 4; i++) {
        char f[400];
        struct stat sb;
        snprintf(f, sizeof f, "%s/%s", out, files[i]);
        CHECK_MSG(stat(f, &sb) == 0 && sb.st_size > 0, "%s missing", f);
    }
    CHECK(count_steps(out) == 12);
    check_metrics(out, 12, 2);
}

/* f16 with dynamic loss scaling (GradScaler's 65536 start) trains too */
static void test_f16_loss_goes_down(void) {
    char out[300], err[1024];
    snprintf(out, sizeof out, "%s/run_f16", root);
    loom_finetune_params p = params(out);
    p.precision = LOOM_F16;
    p.max_steps = 12;
    loom_finetune_result r;
    loom_status st = loom_finetune_run(&p, &r, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "f16 finetune: %s", err);
    CHECK_MSG(r.last_loss < 0.8 * r.first_loss, "f16: loss %.4f -> %.4f", r.first_loss,
              r.last_loss);
    CHECK(r.skipped_steps < 12 && r.loss_scale > 0);
    printf("f16 + loss scaling: loss %.4f -> %.4f, %lld skipped, scale %g\n", r.first_loss,
           r.last_loss, (long long)r.skipped_steps, (double)r.loss_scale);
}

/* QLoRA: the frozen base in nf4 (double-quantized) or q8_0 trains too */
static void test_quantized_bases(void) {
    const loom_dtype types[2] = {LOOM_NF4_DQ, LOOM_Q8_0};
    for (int i = 0; i < 2; i++) {
        char out[300], err[1024];
        snprintf(out, sizeof out, "%s/run_%s", root, loom_dtype_name(types[i]));
        loom_finetune_params p = params(out);
        p.quantize = true;
        p.quant = types[i];
        p.max_steps = 8;
        loom_finetune_result r;
        loom_status st = loom_finetune_run(&p, &r, err, sizeof err);
        CHECK_MSG(st == LOOM_OK, "%s base: %s", loom_dtype_name(types[i]), err);
        CHECK_MSG(r.last_loss < 0.8 * r.first_loss, "%s base: loss %.4f -> %.4f",
                  loom_dtype_name(types[i]), r.first_loss, r.last_loss);
        printf("%s base: loss %.4f -> %.4f\n", loom_dtype_name(types[i]), r.first_loss,
               r.last_loss);
    }
}

/* optim: loom_optim_create's name; r: the LoRA rank (32 puts the larger
 * adapter tensors over LOOM_ADAM8_MIN_SIZE, so adamw8bit then checkpoints
 * both 8-bit and f32 states). */
static void test_resume(const char *optim, int r, loom_dtype prec) {
    char a[300], b[300], err[1024];
    snprintf(a, sizeof a, "%s/full_%s_%s", root, optim, loom_dtype_name(prec));
    snprintf(b, sizeof b, "%s/split_%s_%s", root, optim, loom_dtype_name(prec));
    loom_finetune_params p = params(a);
    p.optim = optim;
    p.lora.r = r;
    p.precision = prec;
    /* f16: a first scale that overflows, so the scaler backs off (skipped
     * steps) and its state must survive the checkpoint */
    p.loss_scale_init = prec == LOOM_F16 ? 16777216.0f : 0.0f;
    loom_finetune_result full;
    CHECK_MSG(loom_finetune_run(&p, &full, err, sizeof err) == LOOM_OK, "full: %s", err);
    if (prec == LOOM_F16)
        CHECK_MSG(full.skipped_steps >= 1 && full.loss_scale < 16777216.0f,
                  "f16 from scale 2^24: %lld skipped steps, scale %g",
                  (long long)full.skipped_steps, (double)full.loss_scale);
    p = params(b);
    p.optim = optim;
    p.lora.r = r;
    p.precision = prec;
    p.loss_scale_init = prec == LOOM_F16 ? 16777216.0f : 0.0f;
    p.save_every = 3;
    p.stop_after = 3;
    CHECK_MSG(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK, "first half: %s", err);
    CHECK(count_steps(b) == 3);
    p.stop_after = 0;
    p.resume = true;
    CHECK_MSG(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK, "resumed: %s", err);
    char *ca = curve(a), *cb = curve(b);
    CHECK_MSG(strcmp(ca, cb) == 0 && count_steps(a) == 6,
              "%s: loss curves differ:\n--- uninterrupted\n%s--- resumed\n%s", optim, ca, cb);
    free(ca);
    free(cb);
    char fa[400], fb[400];
    size_t na, nb;
    snprintf(fa, sizeof fa, "%s/adapter_model.safetensors", a);
    snprintf(fb, sizeof fb, "%s/adapter_model.safetensors", b);
    char *da = slurp(fa, &na), *db = slurp(fb, &nb);
    CHECK_MSG(da && db && na == nb && memcmp(da, db, na) == 0, "%s: adapters differ after resume",
              optim);
    check_metrics(b, 6, 0); /* two event files, one per half */
    free(da);
    free(db);
    /* a damaged checkpoint is refused, naming the problem */
    snprintf(fb, sizeof fb, "%s/checkpoint.bin", b);
    db = slurp(fb, &nb);
    db[nb / 2] ^= 0x40;
    FILE *f = fopen(fb, "wb");
    fwrite(db, 1, nb, f);
    fclose(f);
    free(db);
    p.max_steps = 8;
    err[0] = 0;
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "checksum") != NULL, "message: %s", err);
}

/* adamw8bit is really in use: its checkpoint holds 8-bit states (m_code.*)
 * next to f32 ones for the small tensors, its curve differs from f32 AdamW's,
 * and resuming it as another optimizer is refused with a message. Runs after
 * test_resume("adamw8bit", 32), whose uninterrupted run it reads. */
static void test_optim_mismatch(void) {
    char a[300], c[300], f[400], err[1024];
    snprintf(a, sizeof a, "%s/full_adamw8bit_bf16", root);
    snprintf(c, sizeof c, "%s/f32_r32", root);
    snprintf(f, sizeof f, "%s/checkpoint.bin", a);
    size_t n;
    char *ck = slurp(f, &n);
    bool has8 = false, has32 = false;
    for (size_t i = 0; ck && i + 9 < n; i++) {
        has8 |= memcmp(ck + i, "m_code.", 7) == 0;
        has32 |= memcmp(ck + i, "exp_avg.", 8) == 0;
    }
    free(ck);
    CHECK_MSG(has8 && has32, "adamw8bit checkpoint: 8-bit states %d, f32 states %d", has8, has32);
    loom_finetune_params p = params(c);
    p.lora.r = 32;
    CHECK_MSG(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK, "adamw r32: %s", err);
    char *ca = curve(a), *cc = curve(c);
    CHECK_MSG(count_steps(c) == 6 && strcmp(ca, cc) != 0, "adamw8bit's curve equals adamw's");
    free(ca);
    free(cc);
    p = params(a);
    p.lora.r = 32;
    p.optim = "adamw";
    p.resume = true;
    p.max_steps = 8;
    err[0] = 0;
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) != LOOM_OK);
    CHECK_MSG(strstr(err, "optimizer") != NULL, "message: %s", err);
}

/* The child trains 3 steps (checkpoint each), then resumes with the write
 * hook set: the save of step 4 stops 64 KiB into its temporary file and the
 * parent kills it there. Runs before this process starts any thread (the
 * cpu backend's pool), so that the forked child can start its own. */
static void test_kill9(void) {
    char out[300], err[1024];
    snprintf(out, sizeof out, "%s/killed", root);
    const size_t half = 65536; /* the checkpoint is ~330 KB */
    pid_t pid = fork();
    if (pid == 0) {
        if (loom_registry_init() != LOOM_OK) _exit(2);
        loom_finetune_params p = params(out);
        p.save_every = 1;
        p.max_steps = 10;
        p.stop_after = 3;
        if (loom_finetune_run(&p, NULL, err, sizeof err) != LOOM_OK) _exit(3);
        char v[64];
        snprintf(v, sizeof v, "stop:%zu", half);
        setenv("LOOM_TEST_CKPT_WRITE_FAULT", v, 1);
        p.stop_after = 0;
        p.resume = true;
        loom_finetune_run(&p, NULL, err, sizeof err);
        _exit(4); /* not reached: stopped, then killed */
    }
    int status;
    waitpid(pid, &status, WUNTRACED);
    CHECK(loom_registry_init() == LOOM_OK);
    CHECK_MSG(WIFSTOPPED(status), "the child did not stop mid-save (status %d)", status);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_MSG(count_steps(out) == 4, "log has %d steps, want 4", count_steps(out));
    /* the checkpoint is step 3's: loads (checksum), and a resumed run
     * repeats step 4 and finishes like an uninterrupted one */
    loom_finetune_params p = params(out);
    p.resume = true;
    p.max_steps = 10;
    loom_finetune_result r;
    loom_status st = loom_finetune_run(&p, &r, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "resume after kill -9: %s", err);
    CHECK(r.steps == 10);
    char ref[300];
    snprintf(ref, sizeof ref, "%s/ref10", root);
    p = params(ref);
    p.max_steps = 10;
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_OK);
    char *cr = curve(ref), *ck = curve(out);
    /* the killed run's log holds step 4 twice (before the kill and again) */
    char *second4 = NULL;
    {
        char *first = strchr(ck, '\n'); /* skip to line 4's second occurrence */
        int line = 1;
        for (char *q = ck; *q && line < 5; q++)
            if (*q == '\n' && ++line == 5) second4 = q + 1;
        (void)first;
    }
    char *cr4 = cr;
    for (int line = 1; line < 4 && cr4; line++)
        cr4 = strchr(cr4, '\n') ? strchr(cr4, '\n') + 1 : NULL;
    CHECK_MSG(second4 && cr4 && strcmp(second4, cr4) == 0,
              "after kill -9 + resume, steps 4..10 differ from an uninterrupted run");
    free(cr);
    free(ck);
    /* a full disk while saving: an error, and the previous checkpoint stays */
    setenv("LOOM_TEST_CKPT_WRITE_FAULT", "fail:100", 1);
    p = params(out);
    p.resume = true;
    p.max_steps = 11;
    st = loom_finetune_run(&p, &r, err, sizeof err);
    unsetenv("LOOM_TEST_CKPT_WRITE_FAULT");
    CHECK_MSG(st == LOOM_ERR_IO && strstr(err, "No space"), "full disk: %d %s", st, err);
    p.max_steps = 10;
    p.stop_after = 1;
    CHECK(loom_finetune_run(&p, &r, err, sizeof err) == LOOM_OK && r.steps == 10);
}

static void test_bad_data(void) {
    char bad[300], out[300], err[1024];
    snprintf(bad, sizeof bad, "%s/bad.jsonl", root);
    snprintf(out, sizeof out, "%s/bad_run", root);
    write_file(bad, "{\"text\": \"fine line\"}\n{\"messages\": [{\"role\": \"user\"}]}\n");
    loom_finetune_params p = params(out);
    p.data = bad;
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "bad.jsonl:2:") && strstr(err, "content"), "message: %s", err);
    write_file(bad, "{\"text\": \"fine\"}\nnot json\n");
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "bad.jsonl:2: not a JSON object") != NULL, "message: %s", err);
    write_file(bad, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
    CHECK(loom_finetune_run(&p, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "assistant") != NULL, "message: %s", err);
}

int main(void) {
    char tmpl[] = "/tmp/loom_finetune_XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    snprintf(root, sizeof root, "%s", tmpl);
    snprintf(model_path, sizeof model_path, "%s/tiny.gguf", root);
    snprintf(data_path, sizeof data_path, "%s/train.jsonl", root);
    snprintf(eval_path, sizeof eval_path, "%s/eval.jsonl", root);
    write_file(data_path,
               "{\"text\": \"the cat sat on the mat\"}\n"
               "{\"text\": \"the dog sat on the log\"}\n"
               "\n"
               "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": "
               "\"user\", \"content\": \"capital of France?\"}, {\"role\": \"assistant\", "
               "\"content\": \"Paris\"}]}\n"
               "{\"text\": \"the cat ate the rat\"}\n"
               "{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": "
               "\"assistant\", \"content\": \"4\"}, {\"role\": \"user\", \"content\": \"3+3?\"}, "
               "{\"role\": \"assistant\", \"content\": \"6\"}]}\n");
    write_file(eval_path, "{\"text\": \"the cat sat on the log\"}\n");
    if (make_model()) {
        test_kill9(); /* forks: first */
        CHECK(loom_registry_init() == LOOM_OK);
        test_loss_goes_down();
        test_quantized_bases();
        test_resume("adamw", 8, LOOM_BF16);
        test_resume("adamw8bit", 32, LOOM_BF16);
        test_resume("adamw", 8, LOOM_F16);
        test_f16_loss_goes_down();
        test_optim_mismatch();
        test_bad_data();
    }
    loom_registry_shutdown();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return test_summary("test_finetune");
}

/* cli/finetune_cmd.c - `loom finetune`: LoRA fine-tuning (train/finetune.h,
 * docs/adr/0028-training.md). Every value is checked before the model loads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/wtype.h"
#include "loom/loom.h"
#include "runtime/dist/dist.h"
#include "train/finetune.h"
#include "train/merge.h"
#include "train/peft.h"

static void finetune_usage(FILE *f) {
    fprintf(f, "usage: loom finetune -m MODEL --data TRAIN.jsonl -o OUTDIR [--eval EVAL.jsonl]\n"
               "                     [--epochs N] [--max-steps N] [--lr LR] [--warmup-ratio R]\n"
               "                     [--lora-r R] [--lora-alpha A] [--lora-dropout P]\n"
               "                     [--targets q,k,v,o,gate,up,down] [--grad-accum N] [--seq N]\n"
               "                     [--seed N] [--max-grad-norm X] [--weight-decay W]\n"
               "                     [--quant f32|f16|bf16|q8_0|q4_0|nf4] [--save-every N]\n"
               "                     [--eval-every N] [--optim adamw|adamw8bit] [--resume]\n"
               "                     [--quiet] [--backend NAME] [--chat-template NAME] [--pack]\n"
               "                     [--comm auto|self|mpi|nccl]\n"
               "                     [--grad-checkpoint | --no-grad-checkpoint]\n"
               "                     [--precision bf16|f16|f32]\n"
               "LoRA fine-tuning of MODEL (GGUF file or Hugging Face directory; frozen base,\n"
               "--quant converts it while loading, nf4 = QLoRA's double-quantized NF4).\n"
               "Data: JSONL, one {\"text\": ...} or {\"messages\": [{\"role\", \"content\"}...]}\n"
               "per line; chats are rendered with the model's chat template (as loom chat picks\n"
               "it; --chat-template llama3|chatml|smollm2|mistral|llama2|zephyr overrides it)\n"
               "and only assistant tokens are trained on.\n"
               "Defaults (the QLoRA recipe): r 64, alpha 16, dropout\n"
               "0.05 on q,k,v,o,gate,up,down; AdamW lr 2e-4 (betas 0.9/0.999, weight decay 0),\n"
               "cosine schedule with 3%% warmup; batch 1 x 16 accumulation; clip 1.0; seq 512;\n"
               "1 epoch; seed 42; gradient checkpointing per decoder block (the backward\n"
               "recomputes each block's activations; --no-grad-checkpoint keeps them: more\n"
               "memory, less compute, the same numbers). --max-steps N overrides --epochs. --optim adamw8bit keeps\n"
               "AdamW's moments in bitsandbytes' block-wise 8-bit format (tensors under 4096\n"
               "elements keep f32 moments, as bitsandbytes does).\n"
               "--pack: several examples per sequence of --seq tokens (whole examples, in\n"
               "order); attention stays within each example and positions restart at 0 in\n"
               "each, as Hugging Face's packing with position_ids; a step then counts packed\n"
               "sequences, not examples. The eval set is not packed.\n"
               "--precision (default bf16): matmul inputs (activations and the base weight)\n"
               "in bf16 or f16 with f32 accumulation, forward and backward; f16 scales the loss\n"
               "dynamically (PyTorch GradScaler: 65536, x2 every 2000 clean steps, x0.5 and a\n"
               "skipped step on inf/nan). LoRA weights, gradient sums and AdamW stay f32.\n"
               "OUTDIR gets adapter_config.json + adapter_model.safetensors (PEFT format),\n"
               "train_log.jsonl (per step: loss, lr, grad_norm, tokens, tokens_per_s), the\n"
               "same as TensorBoard scalars in tb/, metrics.svg (loss, lr, tokens/s plot) and\n"
               "checkpoint.bin (every --save-every steps and at the end; --resume continues\n"
               "from it, repeating the uninterrupted run exactly). stderr shows a progress\n"
               "bar on a terminal, a plain line every 10 s otherwise (none with --quiet).\n"
               "Data-parallel ranks: run it under mpirun with R processes (--comm auto picks\n"
               "MPI there; nccl all-reduces on the GPUs, NCCL loaded at run time). Each\n"
               "optimizer step then takes R x --grad-accum micro-batches, gradients averaged\n"
               "over all; optimizer states are sharded across ranks (ZeRO-1); rank 0 writes\n"
               "OUTDIR.\n"
               "ranges: --epochs 1..1000, --max-steps 0..10^9, --lr 0..1, --warmup-ratio 0..1,\n"
               "--lora-r 1..4096, --lora-alpha 0.001..1e6, --lora-dropout 0..0.99,\n"
               "--grad-accum 1..65536, --seq 2..1048576, --max-grad-norm 0..1e6 (0 = off),\n"
               "--weight-decay 0..10, --save-every/--eval-every 0..10^9\n");
}

/* "q,k,v" or "q_proj,k_proj,v_proj": a comma-separated subset. */
static bool parse_targets(const char *v, uint32_t *out) {
    static const char *const names[] = {"q", "k", "v", "o", "gate", "up", "down"};
    *out = 0;
    const char *s = v;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int found = -1;
        for (int j = 0; j < 7; j++) {
            char full[16];
            snprintf(full, sizeof full, "%s_proj", names[j]);
            if ((strlen(names[j]) == n && !strncmp(s, names[j], n)) ||
                (strlen(full) == n && !strncmp(s, full, n)))
                found = j;
        }
        if (found < 0) {
            fprintf(stderr,
                    "loom finetune: --targets: '%.*s' is not one of q, k, v, o, gate, up, down\n",
                    (int)n, s);
            return false;
        }
        *out |= 1u << found;
        if (!e) return true;
        s = e + 1;
    }
}

int loom_cli_finetune(const char *backend, int argc, char **argv) {
    const char *cmd = "finetune";
    loom_finetune_params p = loom_finetune_default_params();
    const char *comm_kind = "auto";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (loom_cli_is_help(a)) {
            finetune_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--resume")) {
            p.resume = true;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            p.quiet = true;
            continue;
        }
        if (!strcmp(a, "--pack")) {
            p.pack = true;
            continue;
        }
        if (!strcmp(a, "--grad-checkpoint") || !strcmp(a, "--no-grad-checkpoint")) {
            p.no_grad_checkpoint = a[2] == 'n';
            continue;
        }
        static const char *const with_value[] = {
            "-m",           "--model",      "--data",          "--eval",         "-o",
            "--output",     "--epochs",     "--max-steps",     "--lr",           "--warmup-ratio",
            "--lora-r",     "--lora-alpha", "--lora-dropout",  "--targets",      "--grad-accum",
            "--seq",        "--seed",       "--max-grad-norm", "--weight-decay", "--quant",
            "--save-every", "--eval-every", "--optim",         "--backend",      "--comm",
            "--precision",  NULL};
        bool known = !strcmp(a, "--chat-template");
        for (int k = 0; with_value[k]; k++)
            known |= !strcmp(a, with_value[k]);
        if (!known) {
            int rc = loom_cli_unknown(cmd, a);
            finetune_usage(stderr);
            return rc;
        }
        const char *v = loom_cli_value(cmd, argc, argv, &i);
        if (!v) return LOOM_CLI_USAGE;
        bool ok = true;
        int iv;
        double dv;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            p.model = v;
        else if (!strcmp(a, "--data"))
            p.data = v;
        else if (!strcmp(a, "--eval"))
            p.eval = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            p.out_dir = v;
        else if (!strcmp(a, "--backend"))
            backend = v;
        else if (!strcmp(a, "--comm")) {
            static const char *const kinds[] = {"auto", "self", "mpi", "nccl", NULL};
            ok = loom_cli_parse_choice(cmd, a, v, kinds, &iv);
            comm_kind = v;
        }
        else if (!strcmp(a, "--chat-template")) {
            const char *names[16];
            int k = 0;
            while (k < 15 && (names[k] = loom_chat_template_names((size_t)k)))
                k++;
            names[k] = NULL;
            ok = loom_cli_parse_choice(cmd, a, v, names, &k);
            p.chat_template = v;
        } else if (!strcmp(a, "--optim")) {
            static const char *const optims[] = {"adamw", "adamw8bit", NULL};
            ok = loom_cli_parse_choice(cmd, a, v, optims, &iv);
            p.optim = v;
        } else if (!strcmp(a, "--epochs"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 1000, &p.epochs);
        else if (!strcmp(a, "--max-steps"))
            ok = loom_cli_parse_i64(cmd, a, v, 0, 1000000000, &p.max_steps);
        else if (!strcmp(a, "--lr"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 1.0f, &p.lr);
        else if (!strcmp(a, "--warmup-ratio"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 1.0f, &p.warmup_ratio);
        else if (!strcmp(a, "--lora-r"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 4096, &p.lora.r);
        else if (!strcmp(a, "--lora-alpha")) {
            ok = loom_cli_parse_f64(cmd, a, v, 0.001, 1e6, &dv); /* 0.001f > 0.001 */
            p.lora.alpha = (float)dv;
        } else if (!strcmp(a, "--lora-dropout"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 0.99f, &p.lora.dropout);
        else if (!strcmp(a, "--targets"))
            ok = parse_targets(v, &p.lora.targets);
        else if (!strcmp(a, "--grad-accum"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 65536, &p.grad_accum);
        else if (!strcmp(a, "--seq")) {
            ok = loom_cli_parse_int(cmd, a, v, 2, 1048576, &iv);
            p.seq = iv;
        } else if (!strcmp(a, "--seed"))
            ok = loom_cli_parse_u64(cmd, a, v, 0, UINT64_MAX, &p.seed);
        else if (!strcmp(a, "--max-grad-norm")) {
            ok = loom_cli_parse_f64(cmd, a, v, 0.0, 1e6, &dv);
            p.max_grad_norm = dv;
        } else if (!strcmp(a, "--weight-decay"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 10.0f, &p.adamw.weight_decay);
        else if (!strcmp(a, "--quant")) {
            loom_cli_wtype wt;
            ok = loom_cli_parse_wtype(cmd, a, v, LOOM_CLI_WT_FINETUNE, &wt);
            if (ok) {
                p.quantize = true;
                /* QLoRA's base is double-quantized: nf4 means nf4_dq */
                p.quant = wt.type == LOOM_NF4 ? LOOM_NF4_DQ : wt.type;
            }
        } else if (!strcmp(a, "--save-every"))
            ok = loom_cli_parse_i64(cmd, a, v, 0, 1000000000, &p.save_every);
        else if (!strcmp(a, "--eval-every"))
            ok = loom_cli_parse_i64(cmd, a, v, 0, 1000000000, &p.eval_every);
        else if (!strcmp(a, "--precision")) {
            static const char *const precs[] = {"bf16", "f16", "f32", NULL};
            static const loom_dtype pd[] = {LOOM_BF16, LOOM_F16, LOOM_F32};
            ok = loom_cli_parse_choice(cmd, a, v, precs, &iv);
            if (ok) p.precision = pd[iv];
        }
        if (!ok) return LOOM_CLI_USAGE;
    }
    const char *missing = !p.model     ? "-m MODEL"
                          : !p.data    ? "--data FILE"
                          : !p.out_dir ? "-o OUTDIR"
                                       : NULL;
    if (missing) {
        fprintf(stderr, "loom finetune: %s is required\n", missing);
        finetune_usage(stderr);
        return LOOM_CLI_USAGE;
    }
    p.backend = backend;
    if (loom_registry_init() != LOOM_OK) {
        fprintf(stderr, "loom finetune: backend registry failed to initialise\n");
        return 1;
    }
    loom_finetune_result r;
    char err[1024] = "";
    loom_comm *comm = NULL;
    loom_status st = loom_dist_open(comm_kind, &comm, err, sizeof err);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom finetune: --comm %s: %s\n", comm_kind, err);
        return 1;
    }
    p.comm = comm;
    /* Test hook (as LOOM_TEST_CKPT_WRITE_FAULT): stop as if killed after N
     * optimizer steps, so the multi-rank resume test can interrupt a run. */
    const char *stop = getenv("LOOM_TEST_FINETUNE_STOP_AFTER");
    if (stop) p.stop_after = strtoll(stop, NULL, 10);
    st = loom_finetune_run(&p, &r, err, sizeof err);
    const int rank = loom_comm_rank(comm);
    loom_comm_free(comm);
    if (st != LOOM_OK) {
        if (rank == 0)
            fprintf(stderr, "loom finetune: %s\n", err);
        else if (err[0] && !strstr(err, "another rank"))
            fprintf(stderr, "loom finetune: rank %d: %s\n", rank, err);
        return 1;
    }
    if (rank != 0) return 0;
    printf("finetune: %lld steps, loss %.4f -> %.4f, %.1f tokens/s, %.3f s/step",
           (long long)r.steps, r.first_loss, r.last_loss, r.tokens_per_s, r.step_s);
    if (p.eval) printf(", eval loss %.4f -> %.4f", r.eval_before, r.eval_after);
    printf(", precision %s", loom_dtype_name(p.precision));
    if (p.precision == LOOM_F16)
        printf(" (%lld steps skipped, loss scale %g)", (long long)r.skipped_steps,
               (double)r.loss_scale);
    printf("\nadapter: %s/adapter_model.safetensors\n", p.out_dir);
    return 0;
}

struct loom_cli_lora {
    loom_lora *lo;
    loom_lora_binding b;
};

int loom_cli_lora_attach(const char *cmd, loom_model *m, const char *dir, loom_cli_lora **out) {
    *out = NULL;
    loom_cli_lora *l = calloc(1, sizeof *l);
    char err[1024];
    if (!l) {
        fprintf(stderr, "loom %s: out of memory\n", cmd);
        return 1;
    }
    if (loom_peft_load(dir, loom_model_config_of(m), &l->lo, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom %s: --lora: %s\n", cmd, err);
        free(l);
        return 1;
    }
    if (loom_lora_binding_init(&l->b, l->lo, false) != LOOM_OK ||
        loom_model_set_proj_hook(m, loom_lora_hook, &l->b) != LOOM_OK) {
        fprintf(stderr, "loom %s: --lora: out of memory\n", cmd);
        loom_cli_lora_free(l);
        return 1;
    }
    fprintf(stderr, "lora: %s (r %d, alpha %g, %d tensors), applied unmerged\n", dir, l->lo->cfg.r,
            (double)l->lo->cfg.alpha, l->lo->n_params);
    *out = l;
    return 0;
}

void loom_cli_lora_free(loom_cli_lora *l) {
    if (!l) return;
    loom_lora_binding_free(&l->b);
    loom_lora_free(l->lo);
    free(l);
}

/* ---------------- merge-lora (train/merge.h) ---------------- */

static void merge_usage(FILE *f) {
    fprintf(f, "usage: loom merge-lora -m BASE --lora DIR -o OUT.gguf [--type TYPE]\n"
               "  writes BASE with the PEFT adapter in DIR folded into its weights:\n"
               "  W + (alpha/r) * B A, computed in f32, then stored at TYPE\n"
               "  BASE: a GGUF file or a Hugging Face checkpoint directory\n"
               "  OUT.gguf: a GGUF file (a directory: OUT/model.gguf), written atomically;\n"
               "            it loads in loom and llama.cpp like any other GGUF\n"
               "  --type f16|f32|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_K..q6_K  (default f16:\n"
               "         a 4-bit type would round the small LoRA delta away)\n");
}

int loom_cli_merge_lora(int argc, char **argv) {
    const char *cmd = "merge-lora", *base = NULL, *lora = NULL, *out = NULL;
    loom_dtype type = LOOM_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            merge_usage(stdout);
            return 0;
        }
        bool known = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-o") ||
                     !strcmp(a, "--output") || !strcmp(a, "--type") || !strcmp(a, "--lora");
        if (!known) {
            loom_cli_unknown(cmd, a);
            merge_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        if (!strcmp(a, "--type")) {
            loom_cli_wtype wt;
            if (!loom_cli_parse_wtype(cmd, a, v, LOOM_CLI_WT_MERGE, &wt)) return LOOM_CLI_USAGE;
            type = wt.type;
        } else if (!strcmp(a, "--lora")) {
            lora = v;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            base = v;
        } else {
            out = v;
        }
    }
    if (!base || !lora || !out) {
        fprintf(stderr, "loom %s: %s is required\n", cmd,
                !base   ? "-m BASE"
                : !lora ? "--lora DIR"
                        : "-o OUT.gguf");
        merge_usage(stderr);
        return LOOM_CLI_USAGE;
    }
    char path[4096];
    struct stat sb;
    if (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(path, sizeof path, "%s/model.gguf", out);
        out = path;
    }
    loom_export_stats st;
    int n = 0;
    char err[1024];
    loom_status s = loom_lora_merge_gguf(base, lora, out, type, &st, &n, err, sizeof err);
    if (s != LOOM_OK) {
        fprintf(stderr, "loom %s\n", err); /* err starts with "merge-lora: " */
        return s == LOOM_ERR_UNSUPPORTED || s == LOOM_ERR_INVALID_ARG ? 2 : 1;
    }
    printf("wrote %s: %s, %d weights merged, %lld tensors, %.2f MiB\n", out, loom_dtype_name(type),
           n, (long long)st.n_tensors, (double)st.bytes_out / (1 << 20));
    return 0;
}

/* cli/main.c - the `loom` command: subcommand dispatch and `loom devices`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "loom/loom.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: loom [--backend NAME] <command> [options]\n"
        "\n"
        "commands:\n"
        "  devices            list backends, their devices, and which one is selected\n"
        "  run [-m MODEL] [-p PROMPT] [-n N] [--temp T] [--seed S] ...\n"
        "                     generate text (no -m: the default model, SmolLM2-135M-Instruct\n"
        "                     from the model cache, else a labelled random-weight model); MODEL\n"
        "                     is a GGUF file or a Hugging Face checkpoint directory;\n"
        "                     --quant f16|q8_0|q4_0|nf4 quantizes the weights while loading\n"
        "  chat [-m MODEL]    interactive chat with the model's chat template\n"
        "  perplexity -m MODEL -f TEXT [--ctx N] [--chunks N]\n"
        "                     perplexity on a text file, as llama-perplexity\n"
        "  serve [-m MODEL]   OpenAI-compatible HTTP server (loom serve --help)\n"
        "  finetune -m MODEL --data TRAIN.jsonl -o OUTDIR\n"
        "                     LoRA fine-tuning, PEFT adapter out (loom finetune --help)\n"
        "  merge-lora -m BASE --lora DIR -o OUT.gguf [--type f16]\n"
        "                     fold a PEFT LoRA adapter into the weights (a plain GGUF)\n"
        "  embed [-m ENCODER] [--json] [TEXT...]\n"
        "                     sentence embeddings (BERT encoders; loom embed --help)\n"
        "  info [MODEL]       config, parameters, weight and KV-cache bytes of a model\n"
        "  export-gguf -m IN -o OUT.gguf --type f16|q8_0|q4_0|q5_0|...\n"
        "                     write a GGUF file or HF checkpoint as a llama.cpp GGUF\n"
        "  init-model --preset NAME -o FILE.gguf [--type q8_0] [--seed N]\n"
        "                     write a model with seeded random weights and the Llama-3\n"
        "                     tokenizer (presets: tiny-moe, tiny-dense, llama3-8b, seed)\n"
        "  data prep (--in F.jsonl | --html DIR) -o OUT.jsonl [opts]\n"
        "                     clean a fine-tuning data set: HTML to text, NFKC, dedup,\n"
        "                     near-dup removal, with a report (loom data prep --help)\n"
        "  rag build|add|delete|search|info|bench ...\n"
        "                     vector index: exact + HNSW search (loom rag --help)\n"
        "  demo [--backend X] run one transformer block on random weights, print a checksum\n"
        "  test-ops [opts]    cross-backend parity suite (loom test-ops --help)\n"
        "  bench ops [opts]   time ops on each backend vs measured limits (loom bench --help)\n"
        "  bench model [opts] tokens/s of whole models, llama-bench style (loom bench model -h)\n"
        "  help               this message\n"
        "\n"
        "options:\n"
        "  --backend NAME     cpu, vulkan, cuda or hip (default: $LOOM_BACKEND, else the\n"
        "                     highest-priority available backend)\n"
        "  --version          print the version\n"
        "\n"
        "environment: LOOM_BACKEND, LOOM_THREADS (cpu threads), LOOM_CPU_ISA (cpu kernels:\n"
        "avx512|avx2|scalar), LOOM_PLUGIN_DIR (where GPU backend plugins are looked up)\n");
}

static void devices_usage(FILE *f) {
    fprintf(f, "usage: loom devices [--backend NAME]\n"
               "  lists every registered backend, its devices, and which one is selected\n");
}

static void fmt_bytes(size_t b, char *buf, size_t n) {
    if (b == 0)
        snprintf(buf, n, "unknown");
    else if (b >= (size_t)1 << 30)
        snprintf(buf, n, "%.1f GiB", (double)b / (double)(1u << 30));
    else
        snprintf(buf, n, "%.0f MiB", (double)b / (double)(1u << 20));
}

int loom_cli_devices(const char *backend) {
    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom: backend registry failed to initialise: %s\n", loom_status_str(st));
        return 1;
    }
    int n = loom_registry_count();
    printf("backends (%d registered, highest priority first):\n", n);
    for (int i = 0; i < n; i++) {
        loom_backend *be = loom_registry_get(i);
        if (!loom_registry_available(i)) {
            printf("  %-8s unavailable: %s\n", loom_backend_name(be), loom_registry_why(i));
            continue;
        }
        loom_device_info info;
        memset(&info, 0, sizeof info);
        be->iface->device_info(be, &info);
        char total[32], avail[32];
        fmt_bytes(info.mem_total, total, sizeof total);
        fmt_bytes(info.mem_free, avail, sizeof avail);
        printf("  %-8s available:   %s (%s)\n", loom_backend_name(be), info.name, info.kind);
        printf("           memory %s total, %s free; fp16 %s, bf16 %s, int8 %s", total, avail,
               info.fp16 ? "yes" : "no", info.bf16 ? "yes" : "no", info.int8 ? "yes" : "no");
        if (info.subgroup_size) printf(", subgroup %d", info.subgroup_size);
        if (info.n_threads) printf(", %d threads", info.n_threads);
        printf("\n");
        if (info.features[0]) printf("           features: %s\n", info.features);
        if (info.driver[0]) printf("           driver: %s\n", info.driver);
    }
    loom_backend *sel = NULL;
    char err[LOOM_ERROR_MAX] = "";
    st = loom_registry_select(backend, &sel, err, sizeof err);
    int rc = 0;
    if (st != LOOM_OK) {
        printf("selected: none (%s)\n", err[0] ? err : loom_status_str(st));
        rc = 2;
    } else if (backend && backend[0]) {
        printf("selected: %s (requested with --backend)\n", loom_backend_name(sel));
    } else if (getenv("LOOM_BACKEND") && getenv("LOOM_BACKEND")[0]) {
        printf("selected: %s (requested by LOOM_BACKEND=%s)\n", loom_backend_name(sel),
               getenv("LOOM_BACKEND"));
    } else {
        printf("selected: %s (highest-priority available; override with LOOM_BACKEND or "
               "--backend)\n",
               loom_backend_name(sel));
    }
    loom_registry_shutdown();
    return rc;
}

/* Pull "--backend NAME" / "--backend=NAME" out of argv (in place); returns
 * the new argc, or -1 when the value is missing. */
static int take_backend(int argc, char **argv, const char **backend) {
    int w = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--backend")) {
            if (i + 1 >= argc) return -1;
            *backend = argv[++i];
        } else if (!strncmp(argv[i], "--backend=", 10)) {
            *backend = argv[i] + 10;
        } else {
            argv[w++] = argv[i];
        }
    }
    return w;
}

int main(int argc, char **argv) {
    const char *backend = NULL;
    int i = 1;
    /* Global options before the subcommand. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
            printf("loom %s\n", LOOM_VERSION_STRING);
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--backend")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "loom: --backend needs a value\n");
                return LOOM_CLI_USAGE;
            }
            backend = argv[++i];
        } else if (!strncmp(argv[i], "--backend=", 10)) {
            backend = argv[i] + 10;
        } else {
            fprintf(stderr, "loom: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i; /* argv[i] is the subcommand's argv[0] */
    char **sub_argv = argv + i;

    if (!strcmp(cmd, "test-ops")) return loom_cli_test_ops(backend, sub_argc, sub_argv);
    if (!strcmp(cmd, "bench")) return loom_cli_bench(backend, sub_argc, sub_argv);
    if (!strcmp(cmd, "serve")) return loom_cli_serve(backend, sub_argc, sub_argv);
    if (!strcmp(cmd, "embed")) return loom_cli_embed(backend, sub_argc, sub_argv);
    if (!strcmp(cmd, "data")) return loom_cli_data(sub_argc, sub_argv);
    if (!strcmp(cmd, "finetune")) return loom_cli_finetune(backend, sub_argc, sub_argv);
    if (!strcmp(cmd, "rag")) return loom_cli_rag(sub_argc, sub_argv);
    if (!strcmp(cmd, "init-model")) return loom_cli_init_model(sub_argc, sub_argv);
    if (!strcmp(cmd, "export-gguf")) return loom_cli_export_gguf(sub_argc, sub_argv);
    if (!strcmp(cmd, "merge-lora")) return loom_cli_merge_lora(sub_argc, sub_argv);
    if (!strcmp(cmd, "perplexity")) {
        sub_argc = take_backend(sub_argc, sub_argv, &backend);
        if (sub_argc < 0) {
            fprintf(stderr, "loom %s: --backend needs a value\n", cmd);
            return LOOM_CLI_USAGE;
        }
        return loom_cli_perplexity(backend, sub_argc, sub_argv);
    }
    if (!strcmp(cmd, "run") || !strcmp(cmd, "chat") || !strcmp(cmd, "info")) {
        sub_argc = take_backend(sub_argc, sub_argv, &backend);
        if (sub_argc < 0) {
            fprintf(stderr, "loom %s: --backend needs a value\n", cmd);
            return LOOM_CLI_USAGE;
        }
        if (!strcmp(cmd, "run")) return loom_cli_run(backend, sub_argc, sub_argv);
        if (!strcmp(cmd, "chat")) return loom_cli_chat(backend, sub_argc, sub_argv);
        return loom_cli_info(backend, sub_argc, sub_argv);
    }
    if (!strcmp(cmd, "devices") || !strcmp(cmd, "demo")) {
        sub_argc = take_backend(sub_argc, sub_argv, &backend);
        if (sub_argc < 0) {
            fprintf(stderr, "loom %s: --backend needs a value\n", cmd);
            return LOOM_CLI_USAGE;
        }
        if (!strcmp(cmd, "demo")) return loom_cli_demo(backend, sub_argc, sub_argv);
        if (sub_argc > 1 && loom_cli_is_help(sub_argv[1])) {
            devices_usage(stdout);
            return 0;
        }
        if (sub_argc > 1) {
            loom_cli_unknown("devices", sub_argv[1]);
            devices_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        return loom_cli_devices(backend);
    }
    if (!strcmp(cmd, "version")) {
        printf("loom %s\n", LOOM_VERSION_STRING);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "loom: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return LOOM_CLI_USAGE;
}

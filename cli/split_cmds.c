/* cli/split_cmds.c - the layer split in the CLI (docs/adr/0030): the flags
 * (parsed by cli/args.c) into model params, the plan a load prints, the
 * copies' cost `loom run` reports, and `loom info`'s plan table. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/model.h"
#include "loom/runtime.h"

void loom_cli_split_apply(const loom_cli_split *o, loom_model_params *p) {
    p->split = o->split;
    p->gpu_layers = o->gpu_layers;
    p->devices = o->devices;
    p->n_tensor_split = o->n_shares;
    for (int i = 0; i < o->n_shares && i < LOOM_MAX_DEVICES; i++)
        p->tensor_split[i] = o->shares[i];
}

/* Only when a device besides the cpu took part: a cpu-only load has nothing
 * to split and keeps its output as before. */
void loom_cli_print_plan(const loom_model *m) {
    const loom_split_plan *pl = loom_model_split_plan(m);
    if (!pl || pl->n_devices < 2) return;
    char line[1024];
    loom_split_plan_describe(pl, true, line, sizeof line);
    fprintf(stderr, "%s\n", line);
}

void loom_cli_print_split_cost(const loom_model *m, double total_s) {
    const loom_split_plan *pl = loom_model_split_plan(m);
    loom_sched_stats st;
    loom_model_sched_stats(m, &st);
    if (st.n_hook_calls > 0) /* --tp's all-reduces (docs/adr/0034) */
        fprintf(stderr,
                "tp all-reduces: %lld, %.3f ms each (waits for the other ranks included), "
                "%.1f%% of the time\n",
                st.n_hook_calls, 1e3 * st.hook_seconds / (double)st.n_hook_calls,
                total_s > 0 ? 100.0 * st.hook_seconds / total_s : 0.0);
    if (!pl || pl->n_devices < 2 || st.n_computes <= 0) return;
    fprintf(stderr,
            "split copies: %d activation copies (%d in all, %zu bytes) per forward | %.4f ms per "
            "forward copying, %lld forwards, %.2f%% of the time\n",
            st.n_act_copies, st.n_copies, st.copy_bytes,
            1e3 * st.copy_seconds / (double)st.n_computes, st.n_computes,
            total_s > 0 ? 100.0 * st.copy_seconds / total_s : 0.0);
}

int loom_cli_info_plan(const char *path, bool hf, const char *backend, const loom_cli_split *so,
                       loom_dtype kv, int n_slots, int64_t ctx, int64_t default_ctx) {
    if (hf) {
        printf("split plan        needs a GGUF file (convert with loom export-gguf; loom run "
               "prints the plan it loads with)\n");
        return 0;
    }
    loom_model_params mp = loom_model_default_params();
    mp.backend = backend;
    mp.kv_dtype = kv;
    mp.n_slots = n_slots;
    mp.n_ctx = ctx;
    loom_cli_split_apply(so, &mp);
    if (so->split == LOOM_SPLIT_NONE) mp.gpu_layers = LOOM_CLI_MAX_GPU_LAYERS; /* all */
    loom_split_plan plan;
    char err[1024];
    if (loom_model_plan_split(path, &mp, &plan, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom info: %s\n", err);
        return 1;
    }
    char table[4096];
    loom_split_plan_describe(&plan, false, table, sizeof table);
    printf("split plan        %s, ctx %lld, kv %s, %d slot%s\n",
           so->split == LOOM_SPLIT_NONE ? "--split none (as every layer off the cpu)"
           : so->n_shares               ? "--tensor-split"
           : so->gpu_layers >= 0        ? "--gpu-layers N"
                                        : "--gpu-layers auto",
           (long long)(ctx > 0 ? ctx : default_ctx), loom_dtype_name(kv), n_slots,
           n_slots == 1 ? "" : "s");
    fputs(table, stdout);
    return 0;
}

/* cli/tp_cmd.c - the ranks of `loom run --tp N` (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/runtime.h"
#include "runtime/dist/dist.h"

/* This rank's device of a GPU family named without an index: the registry
 * lists one entry per device (<name>:0 ..); "" when there is none. */
static void rank_device(const char *backend, int local_rank, char *dev, size_t dev_n) {
    dev[0] = '\0';
    if (!backend || strchr(backend, ':') ||
        (strcmp(backend, "cuda") && strcmp(backend, "hip") && strcmp(backend, "vulkan")))
        return;
    if (loom_registry_init() != LOOM_OK) return;
    char name[64];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, "%s:%d", backend, n);
        if (!loom_registry_find(name)) break;
    }
    if (n > 0) snprintf(dev, dev_n, "%s:%d", backend, local_rank % n);
}

int loom_cli_tp_open(const char *cmd, int tp, const char *kind, const char *backend,
                     struct loom_comm **out, char *dev, size_t dev_n) {
    *out = NULL;
    if (dev_n) dev[0] = '\0';
    if (tp <= 1) return 0;
    /* NCCL all-reduces where the activations live; MPI's go through host
     * memory (the hook downloads them from a GPU either way today, ADR 0034). */
    if (!kind || !strcmp(kind, "auto"))
        kind = backend && !strncmp(backend, "cuda", 4) ? "nccl" : "mpi";
    char err[512] = "";
    if (!loom_dist_have_mpi()) {
        fprintf(stderr, "loom %s: --tp %d: this loom was built without MPI (LOOM_MPI)\n", cmd, tp);
        return LOOM_CLI_USAGE;
    }
    if (!loom_dist_launched_by_mpirun()) {
        fprintf(stderr, "loom %s: --tp %d: start it with mpirun -np %d\n", cmd, tp, tp);
        return LOOM_CLI_USAGE;
    }
    loom_comm *c;
    if (loom_dist_open(kind, &c, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom %s: --tp %d (--comm %s): %s\n", cmd, tp, kind, err);
        return 1;
    }
    if (c->size != tp) {
        fprintf(stderr, "loom %s: --tp %d but mpirun started %d ranks\n", cmd, tp, c->size);
        loom_comm_free(c);
        return LOOM_CLI_USAGE;
    }
    if (c->rank != 0 && !freopen("/dev/null", "w", stdout)) {
        loom_comm_free(c);
        return 1;
    }
    rank_device(backend, c->local_rank, dev, dev_n);
    *out = c;
    return 0;
}

void loom_cli_tp_close(struct loom_comm *c) {
    loom_comm_free(c);
}

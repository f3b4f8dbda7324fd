/* cli/tp_cmd.c - the ranks of `loom run --tp N` (see cli.h). */
#include <stdio.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "runtime/dist/dist.h"

int loom_cli_tp_open(const char *cmd, int tp, struct loom_comm **out) {
    *out = NULL;
    if (tp <= 1) return 0;
    char err[512] = "";
    if (!loom_dist_have_mpi()) {
        fprintf(stderr, "loom %s: --tp %d: this loom was built without MPI (LOOM_MPI)\n", cmd,
                tp);
        return LOOM_CLI_USAGE;
    }
    if (!loom_dist_launched_by_mpirun()) {
        fprintf(stderr, "loom %s: --tp %d: start it with mpirun -np %d\n", cmd, tp, tp);
        return LOOM_CLI_USAGE;
    }
    loom_comm *c;
    if (loom_dist_open("mpi", &c, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom %s: --tp %d: %s\n", cmd, tp, err);
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
    *out = c;
    return 0;
}

void loom_cli_tp_close(struct loom_comm *c) {
    loom_comm_free(c);
}

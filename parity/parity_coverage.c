/* parity/parity_coverage.c - which kernel ran, per case and backend.
 *
 * A passing case proves nothing about a kernel that did not run: the cpu
 * backend silently takes the reference kernel when its optimised dispatch
 * declines a node (an nf4 MoE with F = 96 once hid the whole nf4 MoE kernel
 * this way), and a GPU backend hands unsupported nodes to cpu. So every
 * compute node of every case is counted by (op, loom_kernel_dtype) as
 * "optimised" or "fallback":
 *   - a node on a backend with kernel_info: what kernel_info says (cpu:
 *     ISA kernel vs loom_ref_compute);
 *   - a node on a backend without it: optimised = it ran on that backend;
 *   - a node the backend under test does not support (scheduled on cpu):
 *     fallback for that backend.
 * The backend's kernel_claims are then checked against the counts: a claim
 * that no case ran optimised fails (only in an unfiltered run, where every
 * case ran), and so does an optimised kernel the backend does not claim. */
#include <stdio.h>
#include <string.h>

#include "parity/parity_internal.h"

#define MAX_CLAIMS 256

void parity_backend_label(loom_backend *be, char *out, size_t n) {
    char set[32] = "";
    if (be->iface->kernel_info) be->iface->kernel_info(be, NULL, set, sizeof set);
    if (set[0])
        snprintf(out, n, "%s(%s)", be->iface->name, set);
    else
        snprintf(out, n, "%s", be->iface->name);
}

void parity_coverage_init(parity_coverage *cv, loom_backend *be) {
    memset(cv, 0, sizeof *cv);
    parity_backend_label(be, cv->label, sizeof cv->label);
}

static bool is_compute(const loom_tensor *t) {
    return t->op != LOOM_OP_NONE && !loom_op_is_view(t->op);
}

/* Which kernel node runs when g is scheduled on [be, cpu]. */
static bool node_kernel(loom_backend *be, loom_backend *cpu, const loom_tensor *t, char *name,
                        size_t name_n) {
    if (be != cpu && !be->iface->supports(be, t)) {
        snprintf(name, name_n, "fell back to cpu");
        return false;
    }
    if (be->iface->kernel_info) return be->iface->kernel_info(be, t, name, name_n);
    snprintf(name, name_n, "%s", be->iface->name);
    return true; /* ran on the device; it reports nothing finer */
}

bool parity_coverage_count(parity_coverage *cv, loom_backend *be, loom_backend *cpu,
                           const loom_graph *g, const loom_tensor *focus, char *kernel,
                           size_t kernel_n) {
    bool focus_opt = false;
    if (kernel && kernel_n) kernel[0] = '\0';
    for (int i = 0; i < loom_graph_n_nodes(g); i++) {
        const loom_tensor *t = loom_graph_node(g, i);
        if (!is_compute(t)) continue;
        char name[64] = "";
        const bool opt = node_kernel(be, cpu, t, name, sizeof name);
        const loom_dtype dt = loom_kernel_dtype(t);
        if ((int)t->op < LOOM_OP_COUNT && (int)dt < LOOM_DTYPE_COUNT) {
            cv->all[t->op][dt]++;
            cv->opt[t->op][dt] += opt;
        }
        if (t == focus) {
            focus_opt = opt;
            if (kernel && kernel_n) snprintf(kernel, kernel_n, "%s", name);
        }
    }
    return focus_opt;
}

int parity_coverage_report(const parity_coverage *cv, loom_backend *be, bool check_claims) {
    const bool info = be->iface->kernel_info != NULL;
    printf("%s coverage (%s / all nodes, by op and weight dtype):\n", cv->label,
           info ? "optimised kernel" : "on the device");
    for (int op = 0; op < LOOM_OP_COUNT; op++) {
        bool any = false;
        for (int dt = 0; dt < LOOM_DTYPE_COUNT; dt++) {
            if (!cv->all[op][dt]) continue;
            if (!any) printf("  %-18s", loom_op_name((loom_op)op));
            printf("%s%s %d/%d", any ? ", " : "", loom_dtype_name((loom_dtype)dt), cv->opt[op][dt],
                   cv->all[op][dt]);
            any = true;
        }
        if (any) printf("\n");
    }
    if (!be->iface->kernel_claims) return 0;
    loom_kernel_claim claims[MAX_CLAIMS];
    int n = be->iface->kernel_claims(be, claims, MAX_CLAIMS);
    if (n > MAX_CLAIMS) n = MAX_CLAIMS;
    int failures = 0;
    bool claimed[LOOM_OP_COUNT][LOOM_DTYPE_COUNT];
    memset(claimed, 0, sizeof claimed);
    for (int i = 0; i < n; i++) {
        const int op = (int)claims[i].op, dt = (int)claims[i].dtype;
        if (op < 0 || op >= LOOM_OP_COUNT || dt < 0 || dt >= LOOM_DTYPE_COUNT) continue;
        claimed[op][dt] = true;
        if (check_claims && cv->opt[op][dt] == 0) {
            printf("FAIL %s coverage: %s %s is claimed optimised but no case ran its optimised "
                   "kernel (%d nodes, all on the fallback): add a case it accepts\n",
                   cv->label, loom_op_name((loom_op)op), loom_dtype_name((loom_dtype)dt),
                   cv->all[op][dt]);
            failures++;
        }
    }
    for (int op = 0; op < LOOM_OP_COUNT; op++)
        for (int dt = 0; dt < LOOM_DTYPE_COUNT; dt++)
            if (cv->opt[op][dt] && !claimed[op][dt]) {
                printf("FAIL %s coverage: %s %s ran an optimised kernel the backend does not "
                       "claim (%d nodes): add it to its kernel_claims\n",
                       cv->label, loom_op_name((loom_op)op), loom_dtype_name((loom_dtype)dt),
                       cv->opt[op][dt]);
                failures++;
            }
    if (check_claims && failures == 0 && n > 0)
        printf("%s coverage: every one of its %d claimed kernels ran\n", cv->label, n);
    return failures;
}

/* tests/parity/test_parity_cases.c - the parity suite's case table, checked
 * through the loom_parity library (the same library `loom test-ops` links).
 *
 * The suite only proves what its table covers, so the table itself is held
 * to three rules: every computed op has at least one case (a new op without
 * parity cases fails here), case names are unique (--case selects by name and
 * failures are reported by it), and every case has a builder. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity/parity.h"
#include "testing.h"

static int cmp_names(const void *a, const void *b) {
    return strcmp(((const parity_case *)a)->name, ((const parity_case *)b)->name);
}

int main(void) {
    parity_case *cases = NULL;
    const int n = parity_cases_make(&cases);
    CHECK(n > 0 && cases != NULL);
    if (n <= 0 || !cases) return test_summary("test_parity_cases");

    int per_op[LOOM_OP_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        CHECK(cases[i].build != NULL);
        CHECK(cases[i].name[0] != '\0');
        /* LOOM_OP_NONE marks whole-graph cases (autodiff chains). */
        const bool op_ok = cases[i].op >= LOOM_OP_NONE && cases[i].op < LOOM_OP_COUNT;
        CHECK_MSG(op_ok, "case '%s' has op %d", cases[i].name, (int)cases[i].op);
        if (op_ok) per_op[cases[i].op]++;
    }
    /* Views and leaves are never computed; every other op needs a case. */
    for (int op = LOOM_OP_NONE + 1; op < LOOM_OP_COUNT; op++) {
        if (op == LOOM_OP_VIEW) continue;
        CHECK_MSG(per_op[op] > 0, "op %s has no parity case", loom_op_name((loom_op)op));
    }
    qsort(cases, (size_t)n, sizeof *cases, cmp_names);
    for (int i = 1; i < n; i++) {
        CHECK_MSG(strcmp(cases[i - 1].name, cases[i].name) != 0, "duplicate case name '%s'",
                  cases[i].name);
    }
    printf("parity case table: %d cases\n", n);
    free(cases);
    return test_summary("test_parity_cases");
}

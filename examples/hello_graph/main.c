/* examples/hello_graph - the smallest complete program on the installed
 * libloom: build a graph with the public IR API, run it on a backend, read
 * the result back and check it against a host computation.
 *
 *   y = 0.5 * (x @ W^T + b)     W: [K=8, N=4] (a Linear(8, 4) weight), x: [K, M=3]
 *
 * Usage: hello_graph [BACKEND]   (default: $LOOM_BACKEND, else the best
 * available one; the cpu backend takes whatever the chosen one cannot run).
 * Exit status 0 when the result matches. Built by examples/hello_graph/
 * CMakeLists.txt (find_package(loom)) or by hand:
 *   cc main.c $(pkg-config --cflags --libs loom) -o hello_graph */
#include <loom/loom.h>

#include <math.h>
#include <stdio.h>

enum { K = 8, N = 4, M = 3 };

int main(int argc, char **argv) {
    const char *want = argc > 1 ? argv[1] : NULL;
    float w[N][K], x[M][K], b[N], y[M][N];
    for (int n = 0; n < N; n++) {
        b[n] = 0.25f * (float)n;
        for (int k = 0; k < K; k++)
            w[n][k] = (float)((n + 1) * (k - 3)) / 16.0f;
    }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            x[m][k] = (float)(m - k) / 8.0f;

    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "hello_graph: registry: %s\n", loom_status_str(st));
        return 1;
    }
    char err[LOOM_ERROR_MAX];
    loom_backend *be = NULL, *cpu = loom_registry_find("cpu");
    if (loom_registry_select(want, &be, err, sizeof err) != LOOM_OK || !cpu) {
        fprintf(stderr, "hello_graph: %s\n", cpu ? err : "no cpu backend");
        loom_registry_shutdown();
        return 1;
    }

    /* ne[0] is the innermost dimension: W is [K, N], x is [K, M]. Leaves the
     * caller fills are INPUT; the result is OUTPUT so its memory is kept. */
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    int rc = 1;
    if ((st = loom_graph_new(&g)) != LOOM_OK) {
        fprintf(stderr, "hello_graph: %s\n", loom_status_str(st));
        goto done;
    }
    loom_tensor *tw = loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, K, N), LOOM_FLAG_INPUT);
    loom_tensor *tx = loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, K, M), LOOM_FLAG_INPUT);
    loom_tensor *tb = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_F32, N), LOOM_FLAG_INPUT);
    loom_tensor *ty = loom_scale(g, loom_add(g, loom_matmul(g, tw, tx), tb), 0.5f);
    /* Constructors are sticky on error: one check covers the whole graph. */
    if ((st = loom_graph_status(g)) != LOOM_OK) {
        fprintf(stderr, "hello_graph: graph: %s\n", loom_graph_error(g));
        goto done;
    }
    loom_tensor_set_flags(ty, LOOM_FLAG_OUTPUT);
    loom_backend *list[2] = {be, cpu};
    if ((st = loom_graph_expand(g, ty)) != LOOM_OK ||
        (st = loom_sched_new(list, be == cpu ? 1 : 2, &s)) != LOOM_OK ||
        (st = loom_sched_alloc(s, g)) != LOOM_OK ||
        (st = loom_tensor_upload(tw, w, sizeof w)) != LOOM_OK ||
        (st = loom_tensor_upload(tx, x, sizeof x)) != LOOM_OK ||
        (st = loom_tensor_upload(tb, b, sizeof b)) != LOOM_OK ||
        (st = loom_sched_compute(s, g)) != LOOM_OK ||
        (st = loom_tensor_download(ty, y, sizeof y)) != LOOM_OK) {
        fprintf(stderr, "hello_graph: %s%s%s\n", loom_status_str(st), s ? ": " : "",
                s ? loom_sched_error(s) : "");
        goto done;
    }

    printf("hello_graph: libloom %s, backend %s\n", LOOM_VERSION_STRING, be->iface->name);
    double max_err = 0;
    for (int m = 0; m < M; m++) {
        printf("  y[%d] =", m);
        for (int n = 0; n < N; n++) {
            double ref = b[n];
            for (int k = 0; k < K; k++)
                ref += (double)w[n][k] * x[m][k];
            ref *= 0.5;
            double e = fabs(y[m][n] - ref);
            if (e > max_err) max_err = e;
            printf(" %8.4f", y[m][n]);
        }
        printf("\n");
    }
    /* Every value is a short sum of exact binary fractions: any backend's f32
     * arithmetic lands within a few ulps. */
    rc = max_err <= 1e-4 ? 0 : 1;
    printf("hello_graph: max |error| %.3g: %s\n", max_err, rc == 0 ? "OK" : "MISMATCH");
done:
    loom_sched_free(s);
    loom_graph_free(g);
    loom_registry_shutdown();
    return rc;
}

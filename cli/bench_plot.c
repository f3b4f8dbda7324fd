/* cli/bench_plot.c - `loom bench model --plot FILE.svg`: tokens/s as grouped
 * bars (one group per test cell, one bar per backend), the roofline of each
 * bar as a dashed red mark, a log-scale axis (pp and tg differ by 10-100x,
 * so a linear axis would flatten tg) and a legend. Plain SVG 1.1 with no
 * scripts or external fonts: any browser or `convert`/`rsvg-convert` shows
 * it. Bars carry class="bar" and roofline marks class="roofline" so tests can
 * count them. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/bench_model.h"

#define PLOT_MAX 64

static const char *const COLORS[] = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1",
                                     "#76b7b2", "#edc948", "#9c755f", "#bab0ac"};

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

/* Cells that share everything but the backend form one group. */
static bool same_group(const bm_result *a, const bm_result *b) {
    return !strcmp(a->model_file, b->model_file) && a->threads == b->threads &&
           a->n_batch == b->n_batch && !strcmp(a->type_k, b->type_k) && !strcmp(a->test, b->test);
}

static int plot_svg(const char *path, const bm_result *r, int n) {
    const bm_result *grp[PLOT_MAX];
    const char *bes[8];
    int ng = 0, nb = 0;
    double lo = 1e300, hi = 0;
    for (int i = 0; i < n; i++) {
        int g = 0;
        while (g < ng && !same_group(grp[g], &r[i]))
            g++;
        if (g == ng && ng < PLOT_MAX) grp[ng++] = &r[i];
        int b = 0;
        while (b < nb && strcmp(bes[b], r[i].backend_label))
            b++;
        if (b == nb && nb < 8) bes[nb++] = r[i].backend_label;
        double v[2] = {r[i].avg_ts, r[i].roof_ts};
        for (int k = 0; k < 2; k++)
            if (v[k] > 0) lo = v[k] < lo ? v[k] : lo, hi = v[k] > hi ? v[k] : hi;
    }
    if (hi <= 0) lo = 0.1, hi = 1;
    /* Whole decades, with at least 0.15 of one under the smallest value so
     * every bar is visible (tests count bars on the rendered image). */
    const double y0 = floor(log10(lo) - 0.15),
                 y1 = ceil(log10(hi)) + (ceil(log10(hi)) == log10(hi));
    const int bw = 28, gap = 36, left = 70, top = 50, ph = 300;
    const int gw = nb * bw + gap, width = left + ng * gw + 20 < 560 ? 560 : left + ng * gw + 20,
              height = top + ph + 90;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "loom bench model: --plot: cannot write %s\n", path);
        return 1;
    }
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
            "height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"20\" font-size=\"14\">loom bench model: tokens/s (log scale); "
            "red dashes: roofline</text>\n",
            width, height, left);
#define Y(v) (top + ph - (log10(v) - y0) / (y1 - y0) * ph)
    for (double e = y0; e <= y1; e += 1) {
        double y = top + ph - (e - y0) / (y1 - y0) * ph;
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                left, y, width - 20, y, left - 6, y + 4, pow(10, e));
    }
    for (int g = 0; g < ng; g++) {
        const int gx = left + g * gw + gap / 2;
        for (int i = 0; i < n; i++) {
            if (!same_group(grp[g], &r[i])) continue;
            int b = 0;
            while (b < nb && strcmp(bes[b], r[i].backend_label))
                b++;
            const int x = gx + b * bw;
            const double v = r[i].avg_ts > 0 ? r[i].avg_ts : pow(10, y0);
            const double y = Y(v);
            fprintf(f,
                    "<rect class=\"bar\" x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" "
                    "fill=\"%s\"><title>",
                    x, y, bw - 4, top + ph - y, COLORS[b % 8]);
            xml_text(f, r[i].backend_label);
            fprintf(f, " %s: %.2f t/s</title></rect>\n", r[i].test, r[i].avg_ts);
            fprintf(
                f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\">%.*f</text>\n",
                x + (bw - 4) / 2, y - 3, r[i].avg_ts >= 100 ? 0 : 1, r[i].avg_ts);
            if (r[i].roof_ts > 0)
                fprintf(f,
                        "<line class=\"roofline\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                        "stroke=\"red\" stroke-width=\"2\" stroke-dasharray=\"4,2\"/>\n",
                        x - 2, Y(r[i].roof_ts), x + bw - 2, Y(r[i].roof_ts));
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", gx + (nb * bw) / 2,
                top + ph + 16);
        xml_text(f, grp[g]->test);
        fprintf(f, "</text><text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"9\">t=%d",
                gx + (nb * bw) / 2, top + ph + 30, grp[g]->threads);
        fprintf(f, " %s</text>\n", grp[g]->type_k);
    }
    for (int b = 0; b < nb; b++) {
        const int ly = top + ph + 50 + (b / 3) * 16, lx = left + (b % 3) * 220;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>", lx, ly - 10,
                COLORS[b % 8]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", lx + 16, ly);
        xml_text(f, bes[b]);
        fprintf(f, "</text>\n");
    }
    if (ng > 0) {
        fprintf(f, "<text x=\"%d\" y=\"38\" font-size=\"10\">", left);
        xml_text(f, grp[0]->model);
        fprintf(f, "</text>\n");
    }
#undef Y
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "loom bench model: --plot: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

bool loom_bench_plot_is_png(const char *path) {
    size_t n = strlen(path);
    return n >= 4 && (!strcmp(path + n - 4, ".png") || !strcmp(path + n - 4, ".PNG"));
}

/* PNG: the SVG next to path, rendered by rsvg-convert (librsvg) and removed;
 * loom links no image or font library of its own. */
int loom_bench_model_plot(const char *path, const bm_result *r, int n) {
    if (!loom_bench_plot_is_png(path)) return plot_svg(path, r, n);
    char conv[1024], svg[4096];
    if (!loom_bench_on_path("rsvg-convert", conv, sizeof conv)) {
        fprintf(stderr,
                "loom bench model: --plot %s: PNG needs rsvg-convert on PATH (Debian: "
                "librsvg2-bin); or write FILE.svg\n",
                path);
        return 1;
    }
    snprintf(svg, sizeof svg, "%s.tmp.svg", path);
    if (plot_svg(svg, r, n)) return 1;
    char *argv[] = {conv, svg, "-o", (char *)path, NULL};
    FILE *errf = tmpfile();
    char *out = NULL;
    int st = errf ? loom_bench_run_child(argv, errf, &out) : -1;
    char why[512] = "";
    if (errf) {
        rewind(errf);
        if (!fgets(why, sizeof why, errf)) why[0] = 0;
        why[strcspn(why, "\n")] = 0;
        fclose(errf);
    }
    free(out);
    unlink(svg);
    if (st != 0) {
        fprintf(stderr, "loom bench model: --plot %s: rsvg-convert failed (exit %d): %s\n", path,
                st, why[0] ? why : "no message");
        return 1;
    }
    return 0;
}

/* train/metrics_plot.c - loss / lr / tokens-per-second SVG; layout and the
 * coordinate rule in metrics_plot.h. */
#define _POSIX_C_SOURCE 200809L
#include "train/metrics_plot.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { X0 = 90, W = 640, TOP0 = 50, H = 150, GAP = 60 };

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static void panel(FILE *f, int top, const char *cls, const char *label, const char *color,
                  const int64_t *step, const float *v, int n, double s0, double s1, bool x_labels) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi == lo) {
        double d = fabs(hi) > 0 ? fabs(hi) * 0.05 : 1.0;
        lo -= d, hi += d;
    }
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n",
            X0, top, W, H);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", X0,
            top - 8, label);
    for (int k = 0; k <= 4; k++) {
        double val = lo + (hi - lo) * k / 4.0, y = top + H - (double)H * k / 4.0;
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#eee\"/>"
                "<text x=\"%d\" y=\"%.2f\" font-size=\"10\" text-anchor=\"end\">%.3g</text>\n",
                X0, y, X0 + W, y, X0 - 6, y + 3, val);
    }
    if (x_labels)
        for (int k = 0; k <= 4; k++) {
            double sv = s0 + (s1 - s0) * k / 4.0;
            fprintf(
                f,
                "<text x=\"%.2f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%.0f</text>\n",
                X0 + (double)W * k / 4.0, top + H + 14, sv);
        }
    /* %.9g: the data-lo/hi round-trip to the doubles used for the points. */
    fprintf(f,
            "<polyline class=\"%s\" data-lo=\"%.17g\" data-hi=\"%.17g\" fill=\"none\" "
            "stroke=\"%s\" stroke-width=\"1.5\" points=\"",
            cls, lo, hi, color);
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        double x = X0 + ((double)step[i] - s0) / (s1 - s0) * W;
        double y = top + H - ((double)v[i] - lo) / (hi - lo) * H;
        fprintf(f, "%.3f,%.3f ", x, y);
    }
    fputs("\"/>\n", f);
}

loom_status loom_metrics_plot_svg(const char *path, const int64_t *step, const float *loss,
                                  const float *lr, const float *tok_s, int n, const char *title,
                                  char *err, size_t errn) {
    if (!path || !step || n < 1) {
        snprintf(err, errn, "metrics plot: no data points");
        return LOOM_ERR_INVALID_ARG;
    }
    const float *ser[3] = {loss, lr, tok_s};
    static const char *const cls[3] = {"loss", "lr", "tok_s"};
    static const char *const lab[3] = {"training loss", "learning rate", "tokens / s"};
    static const char *const col[3] = {"#4e79a7", "#f28e2b", "#59a14f"};
    int np = 0;
    for (int k = 0; k < 3; k++)
        np += ser[k] != NULL;
    double s0 = (double)step[0], s1 = (double)step[0];
    for (int i = 0; i < n; i++)
        s0 = (double)step[i] < s0 ? (double)step[i] : s0,
        s1 = (double)step[i] > s1 ? (double)step[i] : s1;
    if (s1 == s0) s1 = s0 + 1;

    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errn, "metrics plot: path too long: %s", path);
        return LOOM_ERR_INVALID_ARG;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errn, "metrics plot: cannot create %s: %s", tmp, strerror(errno));
        return LOOM_ERR_IO;
    }
    int height = TOP0 + np * (H + GAP) + 10;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"22\" font-size=\"15\">",
            X0 + W + 30, height, X0);
    xml_text(f, title && title[0] ? title : "loom finetune");
    fputs("</text>\n", f);
    int top = TOP0, drawn = 0;
    for (int k = 0; k < 3; k++) {
        if (!ser[k]) continue;
        drawn++;
        panel(f, top, cls[k], lab[k], col[k], step, ser[k], n, s0, s1, drawn == np);
        top += H + GAP;
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">step</text>\n",
            X0 + W / 2, top - GAP + 30);
    fputs("</svg>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        snprintf(err, errn, "metrics plot: cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        return LOOM_ERR_IO;
    }
    return LOOM_OK;
}

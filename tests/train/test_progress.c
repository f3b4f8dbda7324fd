/* tests/train/test_progress.c - the progress line (train/progress.c) on a
 * pretend terminal and in plain mode, with injected time; and the metrics
 * SVG (train/metrics_plot.c), parsed with libxml2 and its points mapped back
 * to the data. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testing.h"
#include "train/metrics_plot.h"
#include "train/progress.h"

static char *contents(FILE *f) {
    long n = ftell(f);
    char *b = calloc((size_t)n + 1, 1);
    rewind(f);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) b[0] = 0;
    return b;
}

static int count(const char *s, char c) {
    int k = 0;
    for (; *s; s++)
        k += *s == c;
    return k;
}

static void test_format(void) {
    char b[256];
    loom_progress_format(b, sizeof b, true, 5, 20, 2.5, 2e-4, 1234.4, 65, 3725);
    CHECK_MSG(!strcmp(b, "step 5/20 [#####...............]  25% | loss 2.5000 | lr 2.00e-04 | "
                         "1234 tok/s | 01:05<1:02:05"),
              "%s", b);
    loom_progress_format(b, sizeof b, false, 0, 20, 1, 1, 1, 0, NAN);
    CHECK_MSG(strstr(b, "00:00<--:--") && !strchr(b, '['), "%s", b);
}

static void test_plain(void) {
    FILE *f = tmpfile();
    loom_progress p;
    loom_progress_init(&p, f, 0, 0, 50, 100.0);
    for (int s = 1; s <= 50; s++)
        loom_progress_update(&p, s, 3.0 - s * 0.01, 1e-4, 500, 100.0 + s);
    loom_progress_finish(&p);
    char *o = contents(f);
    /* Steps 1, 11, 21, 31, 41 (10 s apart) and the last, 50. */
    CHECK_MSG(count(o, '\n') == 6 && !strchr(o, '\r'), "%s", o);
    /* At step 11: 11 s for 11 steps, 39 to go -> ETA 39 s. */
    CHECK_MSG(strstr(o, "step 11/50  22% | loss 2.8900 | lr 1.00e-04 | 500 tok/s | 00:11<00:39\n"),
              "%s", o);
    CHECK(strstr(o, "step 50/50 100%") != NULL);
    free(o);
    fclose(f);
}

static void test_tty(void) {
    FILE *f = tmpfile();
    loom_progress p;
    loom_progress_init(&p, f, 1, 10, 20, 0.0); /* resumed at step 10 */
    for (int s = 11; s <= 20; s++)
        loom_progress_update(&p, s, s == 11 ? 10.0 : 1.0, 1e-4, 500, (s - 10) * 0.0625);
    loom_progress_finish(&p);
    char *o = contents(f);
    /* Redrawn at most every 0.1 s (steps 0.0625 s apart): steps 11, 13, 15, 17, 19 and 20; one
     * newline at the end. */
    CHECK_MSG(count(o, '\r') == 6 && count(o, '\n') == 1 && o[strlen(o) - 1] == '\n', "%s", o);
    /* The second line is shorter than the first ("10.0000" vs "1.0000"), so
     * it is padded with a blank over the leftover character. */
    const char *second = strchr(o + 1, '\r');
    const char *third = second ? strchr(second + 1, '\r') : NULL;
    CHECK(second && third && third[-1] == ' ');
    CHECK(strstr(o, "step 20/20 [####################] 100%") != NULL);
    free(o);
    fclose(f);
}

/* Maps polyline points back to (step, value) and compares with the input. */
static void check_polyline(xmlNode *pl, const int64_t *st, const float *v, int n, int top) {
    xmlChar *lo_s = xmlGetProp(pl, (const xmlChar *)"data-lo");
    xmlChar *hi_s = xmlGetProp(pl, (const xmlChar *)"data-hi");
    xmlChar *pts = xmlGetProp(pl, (const xmlChar *)"points");
    CHECK(lo_s && hi_s && pts);
    if (!lo_s || !hi_s || !pts) return;
    double lo = atof((char *)lo_s), hi = atof((char *)hi_s);
    const char *s = (const char *)pts;
    int k = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        double x, y;
        int used;
        if (sscanf(s, "%lf,%lf%n", &x, &y, &used) != 2) break;
        s += used;
        double step = st[0] + (x - 90) / 640.0 * (double)(st[n - 1] - st[0]);
        double val = lo + (top + 150 - y) / 150.0 * (hi - lo);
        bad += fabs(step - (double)st[i]) > 0.01 * (double)(st[n - 1] - st[0]) / 640 + 1e-9 ||
               fabs(val - v[i]) > (hi - lo) * 1e-4;
        k++;
    }
    int finite = 0;
    for (int i = 0; i < n; i++)
        finite += isfinite(v[i]) != 0;
    CHECK_MSG(k == finite && bad == 0, "%d of %d points read, %d off", k, finite, bad);
    xmlFree(lo_s), xmlFree(hi_s), xmlFree(pts);
}

static void test_plot(void) {
    enum { N = 40 };
    int64_t st[N];
    float loss[N], lr[N], tps[N];
    for (int i = 0; i < N; i++) {
        st[i] = 5 + 5 * i;
        loss[i] = 3.0f * expf(-0.05f * i) + 0.5f;
        lr[i] = i < 5 ? 2e-4f * (i + 1) / 5 : 2e-4f * 0.5f * (1 + cosf(3.14159f * (i - 5) / 35));
        tps[i] = 800 + 10 * (i % 3);
    }
    loss[7] = NAN; /* a skipped step: left out of the line */
    char dir[] = "/tmp/loom_plot_XXXXXX", path[256], err[512];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/metrics.svg", dir);
    CHECK(loom_metrics_plot_svg(path, st, loss, lr, tps, N, "run <1> & co", err, sizeof err) ==
          LOOM_OK);
    xmlDoc *doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR);
    CHECK_MSG(doc != NULL, "%s is not well-formed XML", path);
    if (doc) {
        int seen = 0;
        for (xmlNode *n = xmlDocGetRootElement(doc)->children; n; n = n->next) {
            if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, "polyline")) continue;
            xmlChar *c = xmlGetProp(n, (const xmlChar *)"class");
            if (!strcmp((char *)c, "loss")) check_polyline(n, st, loss, N, 50), seen |= 1;
            if (!strcmp((char *)c, "lr")) check_polyline(n, st, lr, N, 50 + 210), seen |= 2;
            if (!strcmp((char *)c, "tok_s")) check_polyline(n, st, tps, N, 50 + 420), seen |= 4;
            xmlFree(c);
        }
        CHECK(seen == 7);
        xmlFreeDoc(doc);
    }
    /* Bad path: one line naming it, nothing left behind. */
    CHECK(loom_metrics_plot_svg("/proc/nope/m.svg", st, loss, NULL, NULL, N, NULL, err,
                                sizeof err) == LOOM_ERR_IO);
    CHECK(strstr(err, "/proc/nope/m.svg") != NULL);
    CHECK(loom_metrics_plot_svg(path, st, loss, NULL, NULL, 0, NULL, err, sizeof err) ==
          LOOM_ERR_INVALID_ARG);
    remove(path);
    rmdir(dir);
}

int main(void) {
    test_format();
    test_plain();
    test_tty();
    test_plot();
    return test_summary("test_progress");
}

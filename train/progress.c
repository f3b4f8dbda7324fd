/* train/progress.c - the progress line; behaviour in progress.h. */
#define _POSIX_C_SOURCE 200809L
#include "train/progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double loom_progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void loom_progress_init(loom_progress *p, FILE *out, int tty, int64_t first_step, int64_t total,
                        double now) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = tty < 0 ? (out && isatty(fileno(out))) : tty != 0;
    p->first_step = first_step;
    p->total = total > 0 ? total : 1;
    p->t0 = now;
    p->last_draw = -1e300;
    p->redraw_s = 0.1;
    p->line_s = 10.0;
}

/* "1:02:03" or "02:03"; "--:--" when unknown. */
static void fmt_hms(char *b, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(b, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(b, n, "%02ld:%02ld", t / 60, t % 60);
}

size_t loom_progress_format(char *buf, size_t n, bool bar, int64_t step, int64_t total, double loss,
                            double lr, double tok_s, double elapsed, double eta) {
    char el[32], et[32], bars[32] = "";
    fmt_hms(el, sizeof el, elapsed);
    fmt_hms(et, sizeof et, eta);
    double frac = total > 0 ? (double)step / (double)total : 0;
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    if (bar) {
        enum { W = 20 };
        int full = (int)(frac * W);
        bars[0] = '[';
        for (int i = 0; i < W; i++)
            bars[1 + i] = i < full ? '#' : '.';
        bars[W + 1] = ']';
        bars[W + 2] = ' ';
        bars[W + 3] = 0;
    }
    int k =
        snprintf(buf, n, "step %lld/%lld %s%3.0f%% | loss %.4f | lr %.2e | %.0f tok/s | %s<%s",
                 (long long)step, (long long)total, bars, frac * 100.0, loss, lr, tok_s, el, et);
    return k < 0 ? 0 : (size_t)k < n ? (size_t)k : n - 1;
}

void loom_progress_update(loom_progress *p, int64_t step, double loss, double lr, double tok_s,
                          double now) {
    if (!p->out) return;
    bool last = step >= p->total;
    double since = now - p->last_draw;
    if (!last && since < (p->tty ? p->redraw_s : p->line_s)) return;
    double elapsed = now - p->t0;
    int64_t done = step - p->first_step, left = p->total - step;
    double eta = done > 0 ? elapsed / (double)done * (double)(left > 0 ? left : 0) : NAN;
    char line[256];
    size_t len = loom_progress_format(line, sizeof line, p->tty, step, p->total, loss, lr, tok_s,
                                      elapsed, eta);
    if (p->tty) {
        /* Pad with blanks over what the previous, longer line left. */
        int pad = p->last_len > (int)len ? p->last_len - (int)len : 0;
        fprintf(p->out, "\r%s%*s", line, pad, "");
        p->last_len = (int)len;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    p->last_draw = now;
    p->drawn = true;
}

void loom_progress_finish(loom_progress *p) {
    if (p->out && p->tty && p->drawn) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    p->drawn = false;
}

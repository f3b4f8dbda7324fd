/* train/progress.h - the training progress line on stderr.
 *
 * On a terminal (isatty) one line is redrawn in place with '\r' at most
 * every redraw_s seconds: step/total, a bar, percent, loss, lr, tokens/s,
 * elapsed and ETA. Anywhere else (a log file, CI, a pipe) a plain line is
 * printed every line_s seconds and at the last step, so logs stay readable
 * and small. The ETA is elapsed/done * remaining over the steps of this run
 * (a resumed run counts from where it resumed).
 *
 * Time is passed in (seconds, any monotonic origin) so the output is
 * deterministic in tests; loom_progress_now() gives CLOCK_MONOTONIC. The
 * struct is the caller's; it holds the stream but does not own it. */
#ifndef LOOM_TRAIN_PROGRESS_H
#define LOOM_TRAIN_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct loom_progress {
    FILE *out;
    bool tty;
    int64_t total;      /* steps in the run (> 0) */
    int64_t first_step; /* the step the run started from */
    double t0, last_draw;
    double redraw_s; /* tty: 0.1 */
    double line_s;   /* plain lines: 10 */
    int last_len;    /* tty: length of the drawn line, to blank leftovers */
    bool drawn;
} loom_progress;

/* tty: 1 or 0, or -1 to ask isatty(fileno(out)). */
void loom_progress_init(loom_progress *p, FILE *out, int tty, int64_t first_step, int64_t total,
                        double now);
/* After step `step` (1-based, first_step < step <= total). Prints when due. */
void loom_progress_update(loom_progress *p, int64_t step, double loss, double lr, double tok_s,
                          double now);
/* Ends the tty line with a newline (nothing for plain output). */
void loom_progress_finish(loom_progress *p);
/* The text of one progress line (no '\r' or '\n'); returns its length. */
size_t loom_progress_format(char *buf, size_t n, bool bar, int64_t step, int64_t total, double loss,
                            double lr, double tok_s, double elapsed, double eta);
double loom_progress_now(void);

#endif

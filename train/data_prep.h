/* train/data_prep.h - the data pipeline behind `loom data prep`.
 * docs/adr/0029-training-data-and-metrics.md.
 *
 * Input: a JSONL file (one object per line; a plain-text field, default
 * "text", or a chat field, default "messages" = [{role, content}, ...]) or a
 * directory of HTML files (every *.html / *.htm below it, in byte order of
 * the path). Stages, in order, each counting what it removed and why:
 *   1. parse     invalid JSON, a line that is not an object, no text/messages
 *                field, malformed messages; HTML: unreadable or empty files;
 *   2. html      (HTML input) text out of the DOM with boilerplate removed
 *                (data_prep_html.h); with split_level, one chat record per
 *                <hN> section (user = heading, assistant = body);
 *   3. normalize NFKC (utf8proc) and whitespace cleanup (data_prep_text.h);
 *                invalid UTF-8 removes the record;
 *   4. filter    e-mail addresses redacted to <EMAIL> (unless keep_emails),
 *                URLs redacted to <URL> when redact_urls; records whose URL
 *                bytes exceed max_url_fraction of their text, or shorter
 *                than min_chars, are removed;
 *   5. exact     records whose normalised content (roles and contents for
 *                chat records) repeats an earlier kept one (128-bit hash);
 *   6. near      MinHash LSH (minhash.h) against the earlier kept records:
 *                removed when the estimated Jaccard of word n-gram shingles
 *                is >= threshold (threshold 0 turns the stage off).
 * Kept records go to the output JSONL in input order: JSONL input keeps every
 * other field of the object (only text/contents are replaced); HTML input
 * gives {"text", "title", "source"} or {"messages", "source"}. The output is
 * written to a temporary file and renamed. The report (stdout table and an
 * optional JSON file) lists per stage the records in/out and the counts per
 * reason, and each removed record (up to 10000) with its source, stage,
 * reason and, for duplicates, the record it duplicates and the similarity.
 *   7. pack      (with a tokenizer) the kept plain-text records tokenised and
 *                packed into sequences of pack_len tokens with document
 *                segments (data_prep_pack.h); a chat record stops the run
 *                (chat templates and loss masks are the trainer's). */
#ifndef LOOM_TRAIN_DATA_PREP_H
#define LOOM_TRAIN_DATA_PREP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "loom/status.h"

typedef struct loom_data_prep_opts {
    const char *in_jsonl; /* one of in_jsonl / html_dir */
    const char *html_dir;
    const char *out_path;       /* required */
    const char *report_path;    /* NULL: stdout table only */
    const char *text_field;     /* "text" */
    const char *messages_field; /* "messages" */
    double threshold;           /* near-dup Jaccard threshold, 0.8; 0 = off */
    int ngram;                  /* 5 */
    int num_perm;               /* 128 */
    uint64_t seed;              /* 1 */
    int split_level;            /* HTML: 0 or 1..6 */
    double max_link_density;    /* 0.5 */
    double max_url_fraction;    /* 0.5 */
    int min_chars;              /* 1 */
    bool keep_emails, redact_urls;
    const char *tokenizer_path; /* tokenizer.json or a .gguf; NULL: no packing */
    const char *tokens_path;    /* the LOOMPAK1 file (data_prep_pack.h) */
    int pack_len;               /* 2048 */
    FILE *log;                  /* the stdout report; NULL = none */
} loom_data_prep_opts;

/* The defaults listed above. */
void loom_data_prep_defaults(loom_data_prep_opts *o);

/* Totals of one run (the report has the details). */
typedef struct loom_data_prep_result {
    int64_t records_in, records_out;
} loom_data_prep_result;

/* Runs the pipeline. Errors that stop the run (unreadable input, unwritable
 * output, bad options) return non-OK with one line in err; bad records are
 * not errors, they are removed and reported. */
loom_status loom_data_prep(const loom_data_prep_opts *o, loom_data_prep_result *res, char *err,
                           size_t errn);

#endif

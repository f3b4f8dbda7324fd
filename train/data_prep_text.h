/* train/data_prep_text.h - the text stages of `loom data prep`: Unicode
 * NFKC normalisation (utf8proc), whitespace cleanup, and finding URLs and
 * e-mail addresses. docs/adr/0029-training-data-and-metrics.md.
 *
 * Whitespace rule (after NFKC, which already maps NBSP, the U+2000 spaces
 * and U+3000 to U+0020): CR LF, CR, U+2028 and U+2029 become LF; C0/C1
 * controls other than TAB and LF, U+200B..U+200D, U+2060 and U+FEFF are
 * removed; blanks (space, tab) at the end of a line are removed; lines of
 * only blanks count as empty; more than one empty line in a row becomes one;
 * the text's leading blanks and empty lines and its trailing ones are
 * removed. Blanks inside and at the start of a line are kept: code and
 * aligned text keep their indentation (HTML text was already collapsed
 * outside <pre> by data_prep_html.c). All strings are UTF-8; returned
 * strings are malloc'd and owned by the caller. */
#ifndef LOOM_TRAIN_DATA_PREP_TEXT_H
#define LOOM_TRAIN_DATA_PREP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

/* NFKC of s[0..n). LOOM_ERR_FORMAT when s is not valid UTF-8. */
loom_status loom_text_nfkc(const char *s, size_t n, char **out, size_t *out_n);
/* The whitespace rule above, in place; returns the new length (the string
 * stays NUL-terminated at it). */
size_t loom_text_clean_ws(char *s, size_t n);

typedef struct loom_text_spans {
    int64_t n_urls, n_emails;
    size_t url_bytes; /* bytes inside URLs */
} loom_text_spans;

/* Counts URLs (http://, https://, ftp://, www. at a word start, up to
 * whitespace or <>"'`{}|\^, trailing .,;:!?'" and an unmatched ')' left out)
 * and e-mail addresses (local@domain.tld: local part of [A-Za-z0-9._%+-],
 * domain of [A-Za-z0-9.-] with a dot and a final label of 2+ letters),
 * and writes to *out (malloc'd) the text with every e-mail replaced by
 * "<EMAIL>" when redact_emails and every URL by "<URL>" when redact_urls.
 * An address inside a URL (user@host in a link) counts as the URL. */
loom_status loom_text_urls_emails(const char *s, size_t n, bool redact_urls, bool redact_emails,
                                  loom_text_spans *spans, char **out, size_t *out_n);

#endif

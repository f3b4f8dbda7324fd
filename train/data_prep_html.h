/* train/data_prep_html.h - text out of HTML for `loom data prep`, through
 * libxml2's HTML parser (the DOM, never regular expressions), with
 * boilerplate removed. docs/adr/0029-training-data-and-metrics.md.
 *
 * Rule:
 *   1. Subtrees dropped whole: <head> (its <title> is kept as the title),
 *      script, style, noscript, template, iframe, object, svg, canvas, nav,
 *      header, footer, aside, form, button, select; any element whose role is
 *      navigation, banner, contentinfo, search or complementary; any element
 *      whose class or id has a token among nav, navbar, navigation, menu,
 *      sidebar, sphinxsidebar, footer, header, breadcrumb(s), related,
 *      cookie, skip-link; and permalink anchors (<a class="headerlink">).
 *   2. The rest becomes blocks: p, li, dt, dd, td, th, h1-h6, pre,
 *      blockquote, div, section, article, main, table, tr, ul, ol, dl,
 *      figure, figcaption, caption and body start and end a block; <br>
 *      is a line break; text inside a block has its whitespace runs
 *      collapsed to one space, except inside <pre>, which is kept verbatim.
 *   3. A block that is not a heading or <pre> is dropped as link-dense when
 *      the text inside <a> elements is more than max_link_density of its
 *      text (menus and tables of contents that had no marker in step 1).
 *   4. text = the kept blocks joined by an empty line. With split_level N
 *      (1..6), each heading <h2>..<hN> (<h1> for N = 1; h1 is usually the
 *      page title) also starts a section: the heading's text, and as body
 *      the kept blocks after it (deeper headings included) up to the next
 *      heading of level <= N. A heading with an empty body (a category whose
 *      first child is a sub-heading) is dropped and counted. FAQ pages that
 *      put questions under <h2> on some pages and under <h3> below <h2>
 *      categories on others (the Python FAQ) all split with N = 3.
 * The counts of what each rule removed are added to loom_html_stats. */
#ifndef LOOM_TRAIN_DATA_PREP_HTML_H
#define LOOM_TRAIN_DATA_PREP_HTML_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

/* Why a subtree or block was dropped (one counter each). */
typedef enum {
    LOOM_HTML_DROP_TAG,       /* script, style, nav, header, footer, ... */
    LOOM_HTML_DROP_ROLE,      /* role=navigation, banner, ... */
    LOOM_HTML_DROP_CLASS,     /* class/id token: sidebar, footer, ... */
    LOOM_HTML_DROP_PERMALINK, /* <a class="headerlink"> */
    LOOM_HTML_DROP_LINK_DENSE,
    LOOM_HTML_DROP_EMPTY_SECTION,
    LOOM_HTML_DROP_COUNT
} loom_html_drop;

typedef struct loom_html_stats {
    int64_t n[LOOM_HTML_DROP_COUNT];     /* elements / blocks / sections */
    int64_t bytes[LOOM_HTML_DROP_COUNT]; /* text bytes they held */
    int64_t kept_bytes;
} loom_html_stats;

const char *loom_html_drop_name(loom_html_drop d);

typedef struct loom_html_section {
    char *heading, *body;
} loom_html_section;

typedef struct loom_html_doc {
    char *title; /* "" when the page has none */
    char *text;
    loom_html_section *sec;
    int n_sec;
} loom_html_doc;

typedef struct loom_html_opts {
    double max_link_density; /* 0.5 */
    int split_level;         /* 0: no sections */
} loom_html_opts;

/* Parses buf[0..n) (any encoding libxml2 detects; UTF-8 out). Fills *doc
 * (free with loom_html_doc_free) and adds to *st. LOOM_ERR_FORMAT when
 * libxml2 gives no document (empty input). */
loom_status loom_html_extract(const char *buf, size_t n, const loom_html_opts *o,
                              loom_html_doc *doc, loom_html_stats *st);
void loom_html_doc_free(loom_html_doc *doc);

#endif

/* train/data_prep_html.c - HTML to text with boilerplate removal; the rule
 * is in data_prep_html.h. */
#define _POSIX_C_SOURCE 200809L /* strdup, strncasecmp */
#include "train/data_prep_html.h"

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *loom_html_drop_name(loom_html_drop d) {
    static const char *const names[LOOM_HTML_DROP_COUNT] = {
        "boilerplate element", "boilerplate role", "boilerplate class/id",
        "permalink anchor",    "link-dense block", "section without body",
    };
    return d < LOOM_HTML_DROP_COUNT ? names[d] : "?";
}

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static bool put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 128;
        while (c < b->n + n + 1)
            c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return false;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

typedef struct {
    char *text;
    int heading; /* 1..6, 0 for text */
    bool pre;
} block;

typedef struct {
    const loom_html_opts *o;
    loom_html_stats *st;
    block *blk;
    int n_blk, cap_blk;
    buf cur;
    size_t cur_link; /* bytes of cur inside <a> */
    int cur_heading;
    bool cur_pre;
    bool oom;
} walker;

static bool name_is(const xmlNode *n, const char *const *list) {
    for (; *list; list++)
        if (!strcmp((const char *)n->name, *list)) return true;
    return false;
}

static const char *const DROP_TAGS[] = {
    "head", "script", "style",  "noscript", "template", "iframe", "object", "svg", "canvas",
    "nav",  "header", "footer", "aside",    "form",     "button", "select", NULL};
static const char *const DROP_ROLES[] = {"navigation", "banner",        "contentinfo",
                                         "search",     "complementary", NULL};
static const char *const DROP_TOKENS[] = {
    "nav",    "navbar",     "navigation",  "menu",    "sidebar", "sphinxsidebar", "footer",
    "header", "breadcrumb", "breadcrumbs", "related", "cookie",  "skip-link",     NULL};
static const char *const BLOCK_TAGS[] = {
    "p",  "li", "dt",  "dd",         "td",         "th",      "h1",      "h2",   "h3",    "h4",
    "h5", "h6", "pre", "blockquote", "div",        "section", "article", "main", "table", "tr",
    "ul", "ol", "dl",  "figure",     "figcaption", "caption", "body",    NULL};

/* Whether a whitespace-separated attribute value has one of the tokens. */
static bool has_token(const xmlNode *n, const char *attr, const char *const *tokens) {
    xmlChar *v = xmlGetProp(n, (const xmlChar *)attr);
    if (!v) return false;
    bool hit = false;
    for (char *t = (char *)v; *t && !hit;) {
        while (*t == ' ' || *t == '\t' || *t == '\n')
            t++;
        char *e = t;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n')
            e++;
        for (const char *const *k = tokens; *k && !hit; k++)
            hit = (size_t)(e - t) == strlen(*k) && !strncasecmp(t, *k, (size_t)(e - t));
        t = e;
    }
    xmlFree(v);
    return hit;
}

static int drop_reason(const xmlNode *n) {
    if (name_is(n, DROP_TAGS)) return LOOM_HTML_DROP_TAG;
    if (has_token(n, "role", DROP_ROLES)) return LOOM_HTML_DROP_ROLE;
    if (!strcmp((const char *)n->name, "a") &&
        has_token(n, "class", (const char *const[]){"headerlink", NULL}))
        return LOOM_HTML_DROP_PERMALINK;
    if (has_token(n, "class", DROP_TOKENS) || has_token(n, "id", DROP_TOKENS))
        return LOOM_HTML_DROP_CLASS;
    return -1;
}

static size_t subtree_bytes(xmlNode *n) {
    xmlChar *c = xmlNodeGetContent(n);
    size_t k = c ? strlen((const char *)c) : 0;
    xmlFree(c);
    return k;
}

static void flush(walker *w) {
    buf *b = &w->cur;
    size_t n = b->n;
    if (w->cur_pre) {
        while (n > 0 && (b->p[n - 1] == '\n' || b->p[n - 1] == ' '))
            n--;
    } else {
        while (n > 0 && b->p[n - 1] == ' ')
            n--;
    }
    size_t start = 0;
    if (w->cur_pre)
        while (start < n && b->p[start] == '\n')
            start++;
    if (n > start) {
        bool dense = !w->cur_heading && !w->cur_pre &&
                     (double)w->cur_link > w->o->max_link_density * (double)(n - start);
        if (dense) {
            w->st->n[LOOM_HTML_DROP_LINK_DENSE]++;
            w->st->bytes[LOOM_HTML_DROP_LINK_DENSE] += (int64_t)(n - start);
        } else {
            if (w->n_blk == w->cap_blk) {
                int c = w->cap_blk ? w->cap_blk * 2 : 32;
                block *nb = realloc(w->blk, sizeof(block) * (size_t)c);
                if (!nb) {
                    w->oom = true;
                    goto reset;
                }
                w->blk = nb;
                w->cap_blk = c;
            }
            char *t = malloc(n - start + 1);
            if (!t) {
                w->oom = true;
                goto reset;
            }
            memcpy(t, b->p + start, n - start);
            t[n - start] = 0;
            w->blk[w->n_blk++] = (block){t, w->cur_heading, w->cur_pre};
            w->st->kept_bytes += (int64_t)(n - start);
        }
    }
reset:
    b->n = 0;
    if (b->p) b->p[0] = 0;
    w->cur_link = 0;
}

/* Appends text, collapsing whitespace runs outside <pre>. */
static void add_text(walker *w, const char *s, bool in_link, bool in_pre) {
    size_t before = w->cur.n;
    for (; *s; s++) {
        char c = *s;
        bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
        if (in_pre) {
            if (c == '\r') continue;
            if (!put(&w->cur, &c, 1)) w->oom = true;
        } else if (ws) {
            if (w->cur.n > 0 && w->cur.p[w->cur.n - 1] != ' ' && w->cur.p[w->cur.n - 1] != '\n')
                if (!put(&w->cur, " ", 1)) w->oom = true;
        } else if (!put(&w->cur, &c, 1)) {
            w->oom = true;
        }
    }
    if (in_link) w->cur_link += w->cur.n - before;
}

static void walk(walker *w, xmlNode *node, bool in_link, bool in_pre) {
    for (xmlNode *n = node->children; n && !w->oom; n = n->next) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            if (n->content) add_text(w, (const char *)n->content, in_link, in_pre);
            continue;
        }
        if (n->type != XML_ELEMENT_NODE || !n->name) continue;
        int why = drop_reason(n);
        if (why >= 0) {
            w->st->n[why]++;
            w->st->bytes[why] += (int64_t)subtree_bytes(n);
            continue;
        }
        const char *name = (const char *)n->name;
        if (!strcmp(name, "br")) {
            /* A line break: trailing blank of the line goes first. */
            if (w->cur.n && w->cur.p[w->cur.n - 1] == ' ') w->cur.p[--w->cur.n] = 0;
            if (!put(&w->cur, "\n", 1)) w->oom = true;
            continue;
        }
        if (name_is(n, BLOCK_TAGS)) {
            int saved_h = w->cur_heading;
            bool saved_pre = w->cur_pre;
            flush(w);
            if (name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && !name[2])
                w->cur_heading = name[1] - '0';
            bool pre = in_pre || !strcmp(name, "pre");
            w->cur_pre = pre;
            walk(w, n, in_link, pre);
            flush(w);
            w->cur_heading = saved_h;
            w->cur_pre = saved_pre;
            continue;
        }
        walk(w, n, in_link || !strcmp(name, "a"), in_pre || !strcmp(name, "pre"));
    }
}

static char *title_of(xmlNode *n) {
    for (; n; n = n->next) {
        if (n->type == XML_ELEMENT_NODE && n->name && !strcmp((const char *)n->name, "title")) {
            xmlChar *c = xmlNodeGetContent(n);
            buf b = {0};
            bool sp = false;
            for (const char *s = c ? (const char *)c : ""; *s; s++) {
                bool ws = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
                if (ws) {
                    sp = b.n > 0;
                    continue;
                }
                if (sp) put(&b, " ", 1);
                sp = false;
                put(&b, s, 1);
            }
            xmlFree(c);
            return b.p ? b.p : calloc(1, 1);
        }
        char *t = title_of(n->children);
        if (t) return t;
    }
    return NULL;
}

static char *join(block *blk, int from, int to) {
    buf b = {0};
    for (int i = from; i < to; i++) {
        if (b.n) put(&b, "\n\n", 2);
        put(&b, blk[i].text, strlen(blk[i].text));
    }
    return b.p ? b.p : calloc(1, 1);
}

loom_status loom_html_extract(const char *in, size_t n, const loom_html_opts *o, loom_html_doc *doc,
                              loom_html_stats *st) {
    memset(doc, 0, sizeof *doc);
    if (n > (size_t)INT32_MAX) return LOOM_ERR_INVALID_ARG;
    htmlDocPtr d = htmlReadMemory(in, (int)n, NULL, NULL,
                                  HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                      HTML_PARSE_NONET | HTML_PARSE_COMPACT);
    if (!d) return LOOM_ERR_FORMAT;
    xmlNode *root = xmlDocGetRootElement(d);
    if (!root) {
        xmlFreeDoc(d);
        return LOOM_ERR_FORMAT;
    }
    walker w = {.o = o, .st = st};
    doc->title = title_of(root);
    /* The root itself may be a block (<body> when html is implied). */
    xmlNode fake = {0};
    fake.children = root;
    walk(&w, &fake, false, false);
    flush(&w);
    free(w.cur.p);
    xmlFreeDoc(d);
    loom_status s = w.oom ? LOOM_ERR_OOM : LOOM_OK;
    if (!doc->title) doc->title = calloc(1, 1);
    if (s == LOOM_OK) doc->text = join(w.blk, 0, w.n_blk);
    if (s == LOOM_OK && o->split_level >= 1 && o->split_level <= 6) {
        int lo = o->split_level == 1 ? 1 : 2;
        doc->sec = calloc((size_t)w.n_blk + 1, sizeof(loom_html_section));
        for (int i = 0; doc->sec && i < w.n_blk; i++) {
            if (w.blk[i].heading < lo || w.blk[i].heading > o->split_level) continue;
            int j = i + 1;
            while (j < w.n_blk && !(w.blk[j].heading && w.blk[j].heading <= o->split_level))
                j++;
            if (j == i + 1) {
                st->n[LOOM_HTML_DROP_EMPTY_SECTION]++;
                st->bytes[LOOM_HTML_DROP_EMPTY_SECTION] += (int64_t)strlen(w.blk[i].text);
                continue;
            }
            loom_html_section *sc = &doc->sec[doc->n_sec++];
            sc->heading = strdup(w.blk[i].text);
            sc->body = join(w.blk, i + 1, j);
        }
        if (!doc->sec) s = LOOM_ERR_OOM;
    }
    for (int i = 0; i < w.n_blk; i++)
        free(w.blk[i].text);
    free(w.blk);
    if (s == LOOM_OK && (!doc->text || !doc->title)) s = LOOM_ERR_OOM;
    if (s != LOOM_OK) loom_html_doc_free(doc);
    return s;
}

void loom_html_doc_free(loom_html_doc *doc) {
    if (!doc) return;
    free(doc->title);
    free(doc->text);
    for (int i = 0; i < doc->n_sec; i++) {
        free(doc->sec[i].heading);
        free(doc->sec[i].body);
    }
    free(doc->sec);
    memset(doc, 0, sizeof *doc);
}

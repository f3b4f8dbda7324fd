/* cli/rag_meta.c - reading `loom rag build --meta FILE.jsonl` (cli/rag_meta.h). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/rag_meta.h"

/* --meta FILE.jsonl: one object per vector, keys source, title, tag_str
 * (strings), byte_begin, byte_end (non-negative integers), tag (integer);
 * any missing key is empty/0. Strings are malloc'd (free_meta). */
void loom_cli_rag_free_meta(loom_rag_meta *m, size_t n) {
    for (size_t i = 0; m && i < n; i++) {
        free((char *)m[i].source);
        free((char *)m[i].title);
        free((char *)m[i].tag_str);
    }
    free(m);
}

static bool meta_key(loom_rag_meta *m, const cJSON *it) {
    const char *key = it->string;
    const char **sp = !strcmp(key, "source")    ? &m->source
                      : !strcmp(key, "title")   ? &m->title
                      : !strcmp(key, "tag_str") ? &m->tag_str
                                                : NULL;
    if (sp) {
        if (!cJSON_IsString(it) || *sp) return false;
        return (*sp = strdup(it->valuestring)) != NULL;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int64_t)it->valuedouble) return false;
    const int64_t v = (int64_t)it->valuedouble;
    if (!strcmp(key, "tag")) {
        m->tag = v;
        return true;
    }
    if (v < 0) return false;
    if (!strcmp(key, "byte_begin"))
        m->byte_begin = (uint64_t)v;
    else if (!strcmp(key, "byte_end"))
        m->byte_end = (uint64_t)v;
    else
        return false;
    return true;
}

loom_rag_meta *loom_cli_rag_read_meta(const char *path, size_t rows) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "loom rag build: --meta: cannot open %s\n", path);
        return NULL;
    }
    loom_rag_meta *m = calloc(rows ? rows : 1, sizeof *m);
    char *line = NULL;
    size_t cap = 0, n = 0, lineno = 0;
    bool ok = m != NULL;
    for (ssize_t len; ok && (len = getline(&line, &cap, f)) >= 0;) {
        lineno++;
        if (len == 0 || line[0] == '\n') continue;
        if (n == rows) {
            fprintf(stderr, "loom rag build: --meta: %s has more lines than the %zu vectors\n",
                    path, rows);
            ok = false;
            break;
        }
        cJSON *o = cJSON_Parse(line);
        if (!cJSON_IsObject(o)) {
            fprintf(stderr, "loom rag build: --meta: %s line %zu is not a JSON object\n", path,
                    lineno);
            ok = false;
        }
        for (cJSON *it = o ? o->child : NULL; ok && it; it = it->next)
            if (!meta_key(&m[n], it)) {
                fprintf(stderr,
                        "loom rag build: --meta: %s line %zu: bad, repeated or unknown key '%s'\n",
                        path, lineno, it->string);
                ok = false;
            }
        cJSON_Delete(o);
        if (ok && m[n].byte_end < m[n].byte_begin) {
            fprintf(stderr, "loom rag build: --meta: %s line %zu: byte_end < byte_begin\n", path,
                    lineno);
            ok = false;
        }
        n++;
    }
    free(line);
    fclose(f);
    if (ok && n != rows) {
        fprintf(stderr, "loom rag build: --meta: %s has %zu lines for %zu vectors\n", path, n,
                rows);
        ok = false;
    }
    if (!ok) {
        loom_cli_rag_free_meta(m, rows);
        return NULL;
    }
    return m;
}

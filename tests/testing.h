/* tests/testing.h - minimal test macros for loom's C unit tests.
 * Each CHECK counts one assertion; test_summary() prints the closing line
 * "N passed, N failed" (read by CI) and returns the process exit code. */
#ifndef LOOM_TESTING_H
#define LOOM_TESTING_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed_, test_failed_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            test_passed_++;                                                                        \
        } else {                                                                                   \
            test_failed_++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (cond) {                                                                                \
            test_passed_++;                                                                        \
        } else {                                                                                   \
            test_failed_++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* src with the first occurrence of from replaced by to: malloc'd (the caller
 * frees), NULL when from does not occur or memory runs out. For tests that
 * derive bad inputs from a good one (config variants, corrupted headers). */
static inline char *test_replace(const char *src, const char *from, const char *to) {
    const char *at = strstr(src, from);
    if (!at) return NULL;
    size_t n = strlen(src) - strlen(from) + strlen(to) + 1;
    char *o = malloc(n);
    if (o) snprintf(o, n, "%.*s%s%s", (int)(at - src), src, to, at + strlen(from));
    return o;
}

static inline int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, test_passed_, test_failed_);
    return test_failed_ == 0 ? 0 : 1;
}
#endif

/* serve/text.h - generated-text helpers for streaming: UTF-8 boundaries and
 * repair (JSON strings must be valid UTF-8, tokens may split a character),
 * and stop-sequence search. Pure functions. */
#ifndef LOOM_SERVE_TEXT_H
#define LOOM_SERVE_TEXT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of s[0..n) that can be sent now: all of them except a trailing
 * UTF-8 sequence that is incomplete but could still become valid. */
size_t loom_utf8_sendable(const char *s, size_t n);

/* Copy of s[0..n) with every invalid UTF-8 sequence and every NUL byte
 * replaced by U+FFFD. malloc'd, NUL-terminated, length in *out_n; caller
 * frees. NULL when out of memory. */
char *loom_utf8_repair(const char *s, size_t n, size_t *out_n);

/* Offset of the earliest occurrence of any stop string in t[0..n) that
 * starts at or after from; -1 when none. */
long loom_stop_find(const char *t, size_t n, size_t from, char *const *stop, size_t n_stop);

/* Length of the longest suffix of t[0..n) that is a proper prefix of a stop
 * string: those bytes are held back until the next token decides. */
size_t loom_stop_hold(const char *t, size_t n, char *const *stop, size_t n_stop);

#ifdef __cplusplus
}
#endif
#endif

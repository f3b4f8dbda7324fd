/* serve/text.c - UTF-8 boundaries/repair and stop strings (see text.h). */
#include "serve/text.h"

#include <stdlib.h>
#include <string.h>

/* Length of a valid UTF-8 sequence starting at s[0..n), 0 when invalid,
 * -1 when the bytes are a valid but incomplete start. */
static int seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80) return c ? 1 : 0;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    unsigned cp = c & (0x3Fu >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
        /* Reject overlongs and surrogates as early as the second byte tells. */
        if (i == 1 && len == 3 && c == 0xE0 && s[1] < 0xA0) return 0;
        if (i == 1 && len == 3 && c == 0xED && s[1] > 0x9F) return 0;
        if (i == 1 && len == 4 && c == 0xF0 && s[1] < 0x90) return 0;
        if (i == 1 && len == 4 && c == 0xF4 && s[1] > 0x8F) return 0;
    }
    return cp >= min ? len : 0;
}

size_t loom_utf8_sendable(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    /* Only the last 3 bytes can start an incomplete 4-byte sequence. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        size_t at = n - back;
        if ((u[at] & 0xC0) == 0x80) continue; /* continuation: look further back */
        return seq_len(u + at, back) == -1 ? at : n;
    }
    return n;
}

char *loom_utf8_repair(const char *s, size_t n, size_t *out_n) {
    const unsigned char *u = (const unsigned char *)s;
    /* Worst case: every byte becomes the 3-byte U+FFFD. */
    char *o = malloc(3 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l = seq_len(u + i, n - i);
        if (l > 0) {
            memcpy(o + k, s + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    o[k] = 0;
    *out_n = k;
    return o;
}

long loom_stop_find(const char *t, size_t n, size_t from, char *const *stop, size_t n_stop) {
    long best = -1;
    for (size_t k = 0; k < n_stop; k++) {
        size_t sl = strlen(stop[k]);
        if (!sl || sl > n) continue;
        for (size_t i = from; i + sl <= n; i++) {
            if (best >= 0 && (long)i >= best) break;
            if (!memcmp(t + i, stop[k], sl)) {
                best = (long)i;
                break;
            }
        }
    }
    return best;
}

size_t loom_stop_hold(const char *t, size_t n, char *const *stop, size_t n_stop) {
    size_t hold = 0;
    for (size_t k = 0; k < n_stop; k++) {
        size_t sl = strlen(stop[k]);
        for (size_t h = sl > 1 ? sl - 1 : 0; h > hold; h--)
            if (h <= n && !memcmp(t + n - h, stop[k], h)) {
                hold = h;
                break;
            }
    }
    return hold;
}

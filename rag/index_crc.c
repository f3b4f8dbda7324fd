/* rag/index_crc.c - CRC-32C (Castagnoli, the iSCSI/ext4 polynomial) for the
 * index file's checksums: the SSE4.2 instruction where the CPU has it (about
 * 8 bytes a cycle), else a table. crc32c("123456789") = 0xe3069283. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <string.h>

#include "rag/index_impl.h"

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t n) {
    /* Built on the stack each call: no global state, and the table path only
     * runs on CPUs without SSE4.2. */
    uint32_t t[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        t[i] = c;
    }
    for (size_t i = 0; i < n; i++)
        crc = t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; n--, p++)
        c32 = _mm_crc32_u8(c32, *p);
    return c32;
}
#endif

uint32_t loom_rag__crc32c(uint32_t crc, const void *data, size_t n) {
    crc = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(crc, data, n);
#endif
    return ~crc_table(crc, data, n);
}

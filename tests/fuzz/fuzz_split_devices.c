/* tests/fuzz/fuzz_split_devices.c - libFuzzer entry for the --devices
 * parser (loom_split_parse_devices, model/placement.c).
 *
 * The input (at most 256 bytes, NUL-terminated copy) is parsed. Accepted:
 * 1..LOOM_MAX_DEVICES entries, names of [a-z0-9_] of 1..31 characters,
 * indices 0..63, no entry twice, and the entries written back as
 * NAME[:INDEX] joined by commas give the input again up to the ":0"s it may
 * omit. Rejected: LOOM_ERR_INVALID_ARG with a non-empty message.
 *
 * Built as a libFuzzer binary with -DLOOM_FUZZ=ON (tests/fuzz/CMakeLists.txt);
 * tests/model/test_placement.c includes it and runs it over generated
 * inputs, the plain driver CI runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/placement.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DFUZZ_REQUIRE(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_split_devices: invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char in[257];
    if (size > 256) size = 256;
    memcpy(in, data, size);
    in[size] = '\0';
    loom_device_ref r[LOOM_MAX_DEVICES];
    int n = -1;
    char err[256] = "";
    loom_status st = loom_split_parse_devices(in, r, &n, err, sizeof err);
    if (st != LOOM_OK) {
        DFUZZ_REQUIRE(st == LOOM_ERR_INVALID_ARG && err[0]);
        return 0;
    }
    DFUZZ_REQUIRE(n >= 1 && n <= LOOM_MAX_DEVICES);
    char back[600] = "", withzero[600] = "";
    size_t k = 0, kz = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(r[i].name);
        DFUZZ_REQUIRE(len >= 1 && len < sizeof r[i].name);
        for (size_t j = 0; j < len; j++) {
            char c = r[i].name[j];
            DFUZZ_REQUIRE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
        }
        DFUZZ_REQUIRE(r[i].index >= 0 && r[i].index < 64);
        for (int j = 0; j < i; j++)
            DFUZZ_REQUIRE(strcmp(r[i].name, r[j].name) || r[i].index != r[j].index);
        k += (size_t)snprintf(back + k, sizeof back - k, "%s%s:%d", i ? "," : "", r[i].name,
                              r[i].index);
    }
    /* The input with every index made explicit (and without leading
     * zeros, which the parser accepts only as "0"-prefixed two digits). */
    for (const char *p = in; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t nl = colon ? (size_t)(colon - p) : len;
        int idx = colon ? atoi(colon + 1) : 0;
        kz += (size_t)snprintf(withzero + kz, sizeof withzero - kz, "%s%.*s:%d", kz ? "," : "",
                               (int)nl, p, idx);
        if (!e) break;
        p = e + 1;
    }
    DFUZZ_REQUIRE(strcmp(back, withzero) == 0);
    return 0;
}

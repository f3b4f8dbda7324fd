/* tests/runtime/test_host_huge_pages.c - the cpu backend's large buffers
 * (the packed weights, a KV cache) start on a 2 MiB boundary and are advised
 * for transparent huge pages, so that decode, which streams every weight from
 * DRAM once per token, does not take a TLB miss and a prefetcher stop every
 * 4 KiB (backends/cpu/loom_backend_cpu.c, cpu_buffer_alloc; base/hostmem.c;
 * ADR 0045). Whether the kernel then backs the range with 2 MiB pages
 * depends on free memory, so the check is the advice itself: the mapping
 * that holds the buffer reads "THPeligible: 1" in /proc/self/smaps where THP
 * is not switched off. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/backend.h"
#include "loom/backend_sdk.h"
#include "loom/hostmem.h"
#include "loom/runtime.h"
#include "testing.h"

#define TWO_MIB ((uintptr_t)2 << 20)

/* 1 if THP can apply to an madvised range here, 0 if not (THP "never", no
 * sysfs file: not Linux, or a kernel without THP). */
static int thp_available(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char line[128] = {0};
    const int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    return ok && strstr(line, "[never]") == NULL;
}

/* The THPeligible value of the mapping that contains p (0 or 1), -1 when
 * smaps has no such mapping or field. */
static int thp_eligible(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    const uintptr_t a = (uintptr_t)p;
    char line[512];
    int inside = 0, found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        /* A mapping's header line: "lo-hi perms offset dev inode [path]". */
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = a >= lo && a < hi;
            continue;
        }
        int v;
        if (inside && sscanf(line, "THPeligible: %d", &v) == 1) {
            found = v;
            break;
        }
    }
    fclose(f);
    return found;
}

/* loom_host_advise_huge itself, on memory from malloc (as the vector index
 * grows its rows with realloc): a large array is advised. The small call is
 * only exercised: smaps cannot show advice on a range too small for a 2 MiB
 * page (THPeligible stays 0 either way). */
static void check_advise(int thp) {
    const size_t n = 6 * ((size_t)1 << 20) + 100;
    unsigned char *big = malloc(n), *small = malloc(64 << 10);
    CHECK(big && small);
    if (big && small) {
        loom_host_advise_huge(big, n);
        loom_host_advise_huge(small, 64 << 10); /* under LOOM_HOST_HUGE: no advice */
        memset(big, 1, n);
        memset(small, 1, 64 << 10);
        loom_host_advise_huge(NULL, n); /* no memory: nothing to do, no crash */
        const int eb = thp ? thp_eligible(big + n / 2) : -1;
        if (eb >= 0) CHECK_MSG(eb == 1, "a 6 MiB malloc'd array advised but not THPeligible");
    }
    free(big);
    free(small);
}

int main(void) {
    const int thp = thp_available();
    if (!thp) printf("  transparent huge pages are off here: advice not checked\n");
    check_advise(thp);
    loom_backend *cpu = loom_registry_find("cpu");
    CHECK(cpu != NULL);
    if (!cpu) return test_summary("test_host_huge_pages");

    /* A weight-sized buffer: 2 MiB aligned, written end to end, advised. */
    const size_t big = 5 * ((size_t)1 << 20) + 12345;
    loom_buffer *b = NULL;
    CHECK_MSG(loom_buffer_alloc(cpu, big, &b) == LOOM_OK && b, "alloc: %s", cpu->error);
    if (b) {
        CHECK_MSG((uintptr_t)b->host % TWO_MIB == 0, "host %p is not 2 MiB aligned", b->host);
        memset(b->host, 0x5a, big); /* every byte is ours */
        CHECK(((unsigned char *)b->host)[big - 1] == 0x5a);
        const int e = thp ? thp_eligible(b->host) : -1;
        if (thp && e < 0)
            printf("  /proc/self/smaps has no THPeligible for the buffer: advice not checked\n");
        if (e >= 0) CHECK_MSG(e == 1, "the 5 MiB buffer's mapping is not THPeligible (no advice)");
        loom_buffer_free(b);
    }

    /* A small buffer keeps the 64-byte alignment and costs no 2 MiB. */
    loom_buffer *s = NULL;
    CHECK(loom_buffer_alloc(cpu, 4096, &s) == LOOM_OK && s);
    if (s) {
        CHECK((uintptr_t)s->host % 64 == 0);
        loom_buffer_free(s);
    }

    /* A size whose 2 MiB round-up would overflow fails with a message. */
    loom_buffer *o = NULL;
    cpu->error[0] = '\0';
    CHECK(loom_buffer_alloc(cpu, SIZE_MAX - 100, &o) == LOOM_ERR_OOM && o == NULL);
    CHECK(cpu->error[0] != '\0');
    return test_summary("test_host_huge_pages");
}

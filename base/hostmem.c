/* base/hostmem.c - transparent huge page advice for large host arrays
 * (loom/hostmem.h).
 *
 * Decode streams every weight from DRAM once per token, and an HNSW build or
 * search touches rows at random across the whole index. With 4 KiB pages
 * both take a TLB miss per page, and the hardware prefetchers stop at each
 * page's end. llama.cpp gets large pages without asking: it maps the GGUF
 * file, and on a recent kernel the page cache of ext4/xfs holds the file in
 * large folios. loom copies the weights into its own buffers, anonymous
 * memory, which a kernel in THP "madvise" mode (Debian's default) backs with
 * 4 KiB pages unless told otherwise (docs/adr/0045-host-huge-pages.md). */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#include "loom/hostmem.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void loom_host_advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    if (!p || n < LOOM_HOST_HUGE) return;
    const long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    const uintptr_t page = (uintptr_t)ps, a = (uintptr_t)p;
    const uintptr_t lo = (a + page - 1) / page * page, hi = (a + n) / page * page;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

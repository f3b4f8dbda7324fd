/* loom/hostmem.h - host memory for large, streamed arrays (base/hostmem.c).
 *
 * Part of the bottom layer (base/): the cpu backend's buffers (the packed
 * weights, KV caches) and the vector index's rows use it, so that the rule
 * for when to ask for 2 MiB pages lives in one place. */
#ifndef LOOM_HOSTMEM_H
#define LOOM_HOSTMEM_H

#include <stddef.h>

#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Arrays of at least this many bytes are worth transparent huge pages. */
#define LOOM_HOST_HUGE ((size_t)2 << 20)

/* Asks the kernel to back [p, p + n) with transparent huge pages, if n is at
 * least LOOM_HOST_HUGE; only the whole 4 KiB pages inside the range are
 * advised. Call it before the memory is first written: pages already faulted
 * in stay small until the kernel's background collapse gets to them. Advice
 * only: where the kernel refuses (THP "never", not Linux), nothing changes
 * but speed. The memory stays the caller's (free or munmap as allocated). */
LOOM_API void loom_host_advise_huge(void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif

/* tests/sanitizers/lsan_canary.c - proves the ASan pass still catches leaks
 * in loom's own code.
 *
 * The Vulkan driver is kept mapped in sanitizer builds (see
 * backends/vulkan/vk_device.c) so its allocations stay reachable and do not
 * fail the pass on hosts where Mesa's lavapipe leaks. This program loads
 * every backend (Vulkan included, as the other tests do), shuts the registry
 * down cleanly, and then leaks one graph made by libloom. The ctest
 * `lsan_canary` passes only when LeakSanitizer reports that leak with a
 * frame in loom_graph_new and the process exits non-zero: if the pinning or a
 * future suppression ever hid loom's own leaks, this test fails. */
#include <stdio.h>

#include "loom/loom.h"

/* Separate, not inlined, so the only reference dies with this frame. */
__attribute__((noinline)) static int leak_one_graph(void) {
    loom_graph *g = NULL;
    if (loom_graph_new(&g) != LOOM_OK) return 1;
    return 0;
}

int main(void) {
    if (loom_registry_init() != LOOM_OK) {
        fprintf(stderr, "lsan_canary: registry init failed\n");
        return 3;
    }
    loom_registry_shutdown();
    if (leak_one_graph() != 0) {
        fprintf(stderr, "lsan_canary: loom_graph_new failed\n");
        return 3;
    }
    printf("lsan_canary: leaked one graph on purpose\n");
    return 0;
}

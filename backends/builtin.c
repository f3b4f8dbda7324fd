/* backends/builtin.c - the list of backends compiled into libloom.
 *
 * Plugins need no entry here: the registry finds them by file name
 * (libloom-backend-<name>.so, ADR 0001). Only a backend linked into libloom
 * itself, like cpu, is added to this list. */
#include <stddef.h>

#include "backends/builtin.h"

const loom_backend_plugin_entry_fn *loom_builtin_backends(void) {
    static const loom_backend_plugin_entry_fn k_builtin[] = {loom_backend_cpu_iface, NULL};
    return k_builtin;
}

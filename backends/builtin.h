/* backends/builtin.h - the backends compiled into libloom (internal).
 *
 * The registry (runtime/registry.c) registers loom_builtin_backends() before
 * it scans for plugins; that is the only place runtime/ names a backend, and
 * it does so through this list, so backends never include runtime headers. */
#ifndef LOOM_BACKENDS_BUILTIN_H
#define LOOM_BACKENDS_BUILTIN_H

#include "loom/backend.h"

/* The "cpu" backend (backends/cpu/loom_backend_cpu.c); a static table. */
const loom_backend_iface *loom_backend_cpu_iface(void);

/* The built-in backends' entry functions (the same signature a plugin
 * exports), NULL-terminated, in registration order. */
const loom_backend_plugin_entry_fn *loom_builtin_backends(void);

#endif

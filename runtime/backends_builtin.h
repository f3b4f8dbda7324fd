/* runtime/backends_builtin.h - backends compiled into libloom (internal).
 * The registry registers these before looking for plugins. */
#ifndef LOOM_RUNTIME_BACKENDS_BUILTIN_H
#define LOOM_RUNTIME_BACKENDS_BUILTIN_H

#include "loom/backend.h"

/* The "cpu" backend (backends/cpu/loom_backend_cpu.c); a static table. */
const loom_backend_iface *loom_backend_cpu_iface(void);

#endif

/* backends/backend.c - helpers declared in loom/backend.h, for every backend.
 *
 * They sit in the backends layer, below runtime/, so that a backend (the
 * built-in cpu one or a plugin, which links libloom) can report errors
 * without calling into the registry that lists it. */
#include <stdarg.h>
#include <stdio.h>

#include "loom/backend.h"

loom_status loom_backend_fail(loom_backend *be, loom_status s, const char *fmt, ...) {
    if (!be) return s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->error, sizeof be->error, fmt, ap);
    va_end(ap);
    return s;
}

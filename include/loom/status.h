/* loom/status.h - status codes shared by every layer.
 *
 * Every fallible loom function returns a loom_status. The human-readable
 * message for the most recent error lives in the object that failed (a graph,
 * a scheduler, a backend probe), never in a global. */
#ifndef LOOM_STATUS_H
#define LOOM_STATUS_H

#include "loom/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_status {
    LOOM_OK = 0,
    LOOM_ERR_INVALID_ARG,  /* bad shape, dtype, parameter or NULL input */
    LOOM_ERR_OOM,          /* host or device allocation failed */
    LOOM_ERR_UNSUPPORTED,  /* valid request that this backend/build cannot do */
    LOOM_ERR_UNAVAILABLE,  /* backend/device not present on this machine */
    LOOM_ERR_IO,           /* file or stream error */
    LOOM_ERR_FORMAT,       /* malformed file or data */
    LOOM_ERR_DEVICE,       /* device/driver fault while running */
    LOOM_ERR_INTERNAL,     /* a loom bug: an invariant did not hold */
} loom_status;

/* Static string naming a status, e.g. "invalid argument". Never NULL. */
LOOM_API const char *loom_status_str(loom_status s);

/* Propagate a non-OK status from the enclosing function. */
#define LOOM_TRY(expr)                      \
    do {                                    \
        loom_status loom_try_s_ = (expr);   \
        if (loom_try_s_ != LOOM_OK)         \
            return loom_try_s_;             \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif

/* base/status.c - names of status codes (the bottom layer: every other layer may use it). */
#include "loom/status.h"

const char *loom_status_str(loom_status s) {
    switch (s) {
    case LOOM_OK: return "ok";
    case LOOM_ERR_INVALID_ARG: return "invalid argument";
    case LOOM_ERR_OOM: return "out of memory";
    case LOOM_ERR_UNSUPPORTED: return "unsupported";
    case LOOM_ERR_UNAVAILABLE: return "unavailable";
    case LOOM_ERR_IO: return "i/o error";
    case LOOM_ERR_FORMAT: return "malformed data";
    case LOOM_ERR_DEVICE: return "device error";
    case LOOM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

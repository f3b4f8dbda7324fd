/* loom/loom.h - umbrella header for the loom C library. */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H
#include "loom/backend.h"
#include "loom/dtype.h"
#include "loom/ir.h"
#include "loom/runtime.h"
#include "loom/status.h"

#define LOOM_VERSION_STRING "0.1.0"
#endif

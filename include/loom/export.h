/* loom/export.h - LOOM_API, the mark on every function and object of the
 * public API.
 *
 * libloom is compiled with -fvisibility=hidden, so only declarations marked
 * LOOM_API are exported from libloom.so; everything else (reference kernels
 * per op, the cpu backend's dispatch, the model loaders' helpers) stays
 * internal and can change without breaking users or plugins. The exported
 * set is pinned by tests/abi/exported_symbols.txt (docs/adr/0018).
 *
 * Defines (set by the build, never by users of the installed library):
 *   LOOM_BUILDING  compiling libloom itself (dllexport on Windows)
 *   LOOM_STATIC    compiling or using a static libloom (no decoration) */
#ifndef LOOM_EXPORT_H
#define LOOM_EXPORT_H

#if defined(LOOM_STATIC)
#define LOOM_API
#elif defined(_WIN32) || defined(__CYGWIN__)
#if defined(LOOM_BUILDING)
#define LOOM_API __declspec(dllexport)
#else
#define LOOM_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define LOOM_API __attribute__((visibility("default")))
#else
#define LOOM_API
#endif

#endif

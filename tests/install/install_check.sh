#!/bin/sh
# tests/install/install_check.sh - libloom as a user gets it (ADR 0018):
# `cmake --install` into a fresh prefix, then
#   1. the installed bin/loom runs (RPATH) and finds the installed plugins
#      next to libloom without LOOM_PLUGIN_DIR;
#   2. examples/hello_graph configures with find_package(loom) against the
#      prefix, builds, runs and checks its result;
#   3. the same example compiles with `cc $(pkg-config --cflags --libs loom)`
#      and runs.
# Usage: [CMAKE=cmake] install_check.sh BUILD_DIR SOURCE_DIR WORK_DIR CC [CFLAGS]
# CFLAGS carries the sanitizer flags in a LOOM_SANITIZE build: an
# instrumented libloom needs an instrumented program.
set -eu
build=$1 src=$2 work=$3 cc=$4 cflags=${5:-}
prefix=$work/prefix
cmake=${CMAKE:-cmake} # the cmake that built the tree (ctest passes it)

# The installed layout must work on its own: no build-tree plugin overrides.
unset LOOM_PLUGIN_DIR LOOM_EXTRA_PLUGINS LOOM_BACKEND

rm -rf "$work"
mkdir -p "$work"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
libdir=$(dirname "$(find "$prefix" -name 'libloom.so' | head -n 1)")
test -f "$libdir/pkgconfig/loom.pc" || { echo "FAIL: no loom.pc under $libdir/pkgconfig"; exit 1; }
test -f "$libdir/cmake/loom/loomConfig.cmake" || { echo "FAIL: no loomConfig.cmake"; exit 1; }

echo "== installed bin/loom devices"
"$prefix/bin/loom" devices >"$work/devices.log" 2>&1 || { cat "$work/devices.log"; echo "FAIL: installed loom devices"; exit 1; }
cat "$work/devices.log"
# Every plugin installed next to libloom must load from there (available or
# "unavailable" for want of a device, never "cannot load" or "not found").
for p in "$libdir"/libloom-backend-*.so; do
    [ -e "$p" ] || continue
    be=$(basename "$p" .so | sed 's/^libloom-backend-//')
    if grep -E "^ *$be +unavailable: (plugin .* not found|cannot load)" "$work/devices.log"; then
        echo "FAIL: installed plugin $p not loaded"
        exit 1
    fi
done

echo "== find_package(loom): examples/hello_graph"
"$cmake" -S "$src/examples/hello_graph" -B "$work/cmake-build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$cflags" \
    >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; echo "FAIL: configure"; exit 1; }
"$cmake" --build "$work/cmake-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; echo "FAIL: build"; exit 1; }
"$work/cmake-build/hello_graph"
"$work/cmake-build/hello_graph" cpu

echo "== pkg-config: cc \$(pkg-config --cflags --libs loom)"
PKG_CONFIG_PATH="$libdir/pkgconfig"
export PKG_CONFIG_PATH
pc=$(pkg-config --cflags --libs loom)
echo "pkg-config: $pc"
# shellcheck disable=SC2086 # word splitting of the flags is intended
"$cc" -std=c11 -Wall -Werror $cflags "$src/examples/hello_graph/main.c" $pc -lm \
    -Wl,-rpath,"$libdir" -o "$work/hello_graph_pc"
"$work/hello_graph_pc"
echo "install_check: OK"

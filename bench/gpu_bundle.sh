#!/usr/bin/env bash
# bench/gpu_bundle.sh BUILD_DIR DEST - copy what bench/gpu_run.sh needs on a
# GPU machine that has the CUDA driver and toolkit but not loom's own
# dependencies: loom, libloom.so, the backend plugins, and the PCRE2/cJSON
# shared libraries they were linked against.
set -euo pipefail
BUILD=${1:?BUILD_DIR}
DEST=${2:?DEST}
mkdir -p "$DEST"
cp "$BUILD"/loom "$BUILD"/libloom.so "$DEST"/
cp "$BUILD"/libloom-backend-*.so "$DEST"/
rm -f "$DEST"/libloom-backend-null.so
for lib in libpcre2-8.so.0 libcjson.so.1; do
    cp -L "$(ldd "$BUILD/loom" | awk -v l="$lib" '$1 == l {print $3}')" "$DEST/$lib"
done
du -sh "$DEST"

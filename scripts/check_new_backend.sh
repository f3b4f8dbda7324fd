#!/bin/sh
# scripts/check_new_backend.sh - a new backend needs no edit outside its folder.
#
#   check_new_backend.sh SOURCE_DIR WORK_DIR [NAME]
#
# Copies the source tree (git's tracked and untracked-but-not-ignored files,
# or everything but build*/ and .git outside a git checkout) to WORK_DIR/src,
# copies backends/null to backends/NAME (default: acme) with no other change,
# configures with the GPU backends off, builds only libloom, the new plugin
# and test_backend_conformance (-j2, -O0: this is about wiring, not speed),
# and runs the conformance test against NAME. It passes when the build
# discovered the folder (option LOOM_<NAME>, "loom backends: ... NAME"), the
# registry found libloom-backend-NAME.so by its file name, and the plugin,
# named after its folder, passed conformance on the template's host-memory
# device (LOOM_TEMPLATE_DEVICE=1). Registered in ctest as new_backend_from_template.
set -eu
src=$(cd "$1" && pwd -P)
work=$2
name=${3:-acme}
jobs=${LOOM_CHECK_JOBS:-2}

rm -rf "$work"
mkdir -p "$work/src"
start=$(date +%s)
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Files deleted in the work tree but still in the index are skipped.
    (cd "$src" && git ls-files --cached --others --exclude-standard |
        while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done) >"$work/files"
    tar -C "$src" -cf - -T "$work/files" | tar -C "$work/src" -xf -
else
    tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$work/src" -xf -
fi
if [ -e "$work/src/backends/$name" ]; then
    echo "check_new_backend: backends/$name already exists; pick another name" >&2
    exit 1
fi
cp -r "$work/src/backends/null" "$work/src/backends/$name"

cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG=-O0 \
    -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DLOOM_CUDA=OFF -DLOOM_HIP=OFF -DLOOM_VULKAN=OFF \
    >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
if ! grep -q "loom backends: .*\b$name\b" "$work/configure.log"; then
    cat "$work/configure.log"
    echo "check_new_backend: the configure did not report backend $name as built" >&2
    exit 1
fi
upper=$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')
grep -q "^LOOM_$upper:STRING=AUTO" "$work/build/CMakeCache.txt" || {
    echo "check_new_backend: no option LOOM_$upper in the cache" >&2
    exit 1
}
cmake --build "$work/build" -j"$jobs" --target "loom-backend-$name" test_backend_conformance \
    >"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log"; exit 1; }
test -f "$work/build/libloom-backend-$name.so"

test_bin="$work/build/tests/test_backend_conformance"
LOOM_PLUGIN_DIR="$work/build" LOOM_TEMPLATE_DEVICE=1 "$test_bin" --backend "$name"
echo "check_new_backend: backends/$name built and passed conformance in $(($(date +%s) - start)) s"

#!/usr/bin/env bash
# scripts/build-llamacpp.sh - build llama.cpp's tools, the peer of most of
# loom's comparisons, from the sources vendored in the PyPI sdist of
# llama-cpp-python (the brief's registries are Debian and PyPI only).
#
#   scripts/build-llamacpp.sh [DIR]      DIR defaults to .llamacpp/ in the tree
#
# Leaves DIR/build/bin/{llama-cli,llama-bench,llama-server,llama-perplexity,
# llama-quantize}, the paths the opt-in checks and `loom bench model --peer`
# look at. A developer/benchmark tool: `make test` never runs it (about ten
# minutes on two cores); the checks that need it skip without it.
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/.llamacpp}
PY=${PYTHON:-python3}
TARGETS=(llama-cli llama-bench llama-server llama-perplexity llama-quantize)
log() { printf 'build-llamacpp: %s\n' "$*"; }

mkdir -p "$DIR"
cd "$DIR"
sdist=$(ls llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)
if [ -z "$sdist" ]; then
    log "downloading the llama-cpp-python $VERSION sdist from PyPI"
    "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
    sdist=llama_cpp_python-"$VERSION".tar.gz
fi
src=llama_cpp_python-"$VERSION"/vendor/llama.cpp
[ -d "$src" ] || tar xzf "$sdist"
[ -f "$src/CMakeLists.txt" ] || { log "no llama.cpp sources in $sdist"; exit 1; }

# Static, native (AVX-512 where the host has it), OpenMP: llama.cpp's own
# defaults for a CPU build; no curl (no model downloads).
cmake -S "$src" -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
      -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON >/dev/null
cmake --build build -j"${JOBS:-2}" --target "${TARGETS[@]}"
for t in "${TARGETS[@]}"; do
    [ -x "build/bin/$t" ] || { log "missing build/bin/$t"; exit 1; }
done
log "llama.cpp (llama-cpp-python $VERSION) tools in $DIR/build/bin"

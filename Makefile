# Thin wrapper over CMake (the real build). Targets:
#   make / make build  configure build/ (Release) and build it
#   make run           install deps (and the default model, SmolLM2-135M-Instruct),
#                      build, show devices, answer a question with the default
#                      model (random weights, labelled, when it could not be fetched)
#   make test          install deps, Release build + ctest, then an
#                      ASan/UBSan Debug build in build-asan/ + ctest (less the
#                      tests labelled release_only), then a
#                      ThreadSanitizer build in build-tsan/ of only what the
#                      concurrency tests need, and those tests
#   make clean         remove the build trees
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
BUILD_DIR := build
ASAN_DIR := build-asan
TSAN_DIR := build-tsan
# The TSan pass (docs/adr/0019-serving.md): the thread pool, the graph
# scheduler, and `loom serve`'s engine, batching, paging and HTTP threads, plus
# a canary proving a race in libloom is caught. RelWithDebInfo: TSan at -O0
# is several times slower; Vulkan off: Mesa's driver is not instrumented.
# Tests labelled release_only run in the Release pass alone: the real-model
# tests (SmolLM2 logits, the real fine-tune, the FAQ recall) and the Vulkan
# shader-variant parity runs. Under ASan they took 1,400 of the pass's 3,700
# test-seconds; the host code they drive runs under ASan in smaller tests
# (default_answer_* on the real file, test_finetune, rag_text_cli, parity_vulkan).
TSAN_TARGETS := loom_cli test_threadpool test_sched tsan_canary
TSAN_TESTS := ^(tsan_canary|test_threadpool|test_sched|serve_model|serve_batching|serve_edge|serve_paged)$$

# OpenBLAS 0.3.21 does not recognise Zen 5 and silently picks its AVX2
# kernels (see toolchains notes): name its AVX-512 kernels, but only where the
# CPU has AVX-512. On an AVX2-only host the setting made every OpenBLAS in
# the test processes (numpy's bundled one too) run AVX-512 code: SIGILL.
ifneq ($(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes),)
export OPENBLAS_CORETYPE ?= SkylakeX
endif

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
	    ctest --output-on-failure -j$(JOBS) -LE '^release_only$$'
	cmake -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) \
	    -DLOOM_SANITIZE=thread -DLOOM_VULKAN=OFF
	cmake --build $(TSAN_DIR) -j$(JOBS) --target $(TSAN_TARGETS)
	cd $(TSAN_DIR) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    ctest --output-on-failure -j$(JOBS) -R '$(TSAN_TESTS)'

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR)

# train/aux.cmake - the training side modules that are not the training loop
# (docs/adr/0029-training-data-and-metrics.md): 8-bit AdamW states, the data
# pipeline behind `loom data prep`, TensorBoard event files, the progress
# line and the metrics plot: their tests and the fuzz target.
#
# libxml2 (HTML parser) and utf8proc (NFKC) are Debian packages
# (libxml2-dev, libutf8proc-dev; scripts/install-deps.sh).
# The modules are part of loom_train (train/CMakeLists.txt, which finds
# libxml2 and utf8proc and includes this file after defining the library).
# test_progress reads the SVG back with libxml2's XML parser.
if(TARGET test_progress)
  target_link_libraries(test_progress PRIVATE PkgConfig::LIBXML2)
endif()

# TensorBoard's own reader (PyPI tensorboard, scripts/requirements-test.txt)
# loads a file written by tb_writer.c; missing tensorboard fails the test, as
# a missing gguf fails gguf_python_check.
add_test(NAME tb_readback
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/train/tb_readback.py
                 $<TARGET_FILE:test_tb_writer> ${PROJECT_BINARY_DIR}/tb_readback)
set_tests_properties(tb_readback PROPERTIES TIMEOUT 120 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")

# `loom data prep` end to end on tests/train/data/prep (made by
# scripts/gen_data_prep_fixtures.py) against an independent Python
# computation (stdlib + numpy).
add_test(NAME data_prep_check
         COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/train/check_data_prep.py
                 $<TARGET_FILE:loom_cli> ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/data_prep_check)
set_tests_properties(data_prep_check PROPERTIES TIMEOUT 120 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
# The fuzz driver includes tests/fuzz/fuzz_data_prep.c, which checks output
# lines with cJSON.
if(TARGET test_data_prep_fuzz_corpus)
  target_link_libraries(test_data_prep_fuzz_corpus PRIVATE PkgConfig::CJSON)
endif()

# libFuzzer target (opt-in, clang; tests/fuzz):
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLOOM_FUZZ=ON
#   cmake --build build-fuzz --target fuzz_data_prep
#   ./build-fuzz/fuzz_data_prep -max_total_time=300 NEW_DIR tests/fuzz/corpus/data_prep
set(LOOM_TRAIN_AUX_SOURCES ${PROJECT_SOURCE_DIR}/train/adam8bit.c ${PROJECT_SOURCE_DIR}/train/tb_writer.c
    ${PROJECT_SOURCE_DIR}/train/progress.c ${PROJECT_SOURCE_DIR}/train/metrics_plot.c
    ${PROJECT_SOURCE_DIR}/train/minhash.c ${PROJECT_SOURCE_DIR}/train/data_prep_text.c
    ${PROJECT_SOURCE_DIR}/train/data_prep_html.c ${PROJECT_SOURCE_DIR}/train/data_prep.c
    ${PROJECT_SOURCE_DIR}/train/data_prep_pack.c)
if(LOOM_FUZZ)
  add_executable(fuzz_data_prep ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_data_prep.c
                                ${LOOM_TRAIN_AUX_SOURCES})
  target_include_directories(fuzz_data_prep PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
  target_compile_options(fuzz_data_prep PRIVATE -g -O1 -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_data_prep PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_data_prep PRIVATE loom PkgConfig::LIBXML2 PkgConfig::UTF8PROC
                                               PkgConfig::CJSON m)
  set_target_properties(fuzz_data_prep PROPERTIES BUILD_RPATH "${PROJECT_BINARY_DIR}"
                                                  RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
endif()

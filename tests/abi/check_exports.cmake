# tests/abi/check_exports.cmake - the symbols libloom.so exports must be
# exactly the allowed list (ADR 0018): a new export is a deliberate API
# addition, a missing one breaks users and plugins.
#
#   cmake -DNM=<nm> -DLIB=<libloom.so> -DALLOWED=<exported_symbols.txt> -P check_exports.cmake
#   ... -DUPDATE=ON rewrites ALLOWED from the library (after adding API on purpose).
#   ... "-DPLUGINS=a.so|b.so" also checks that every loom_* symbol those
#       plugins import is exported: plugins are linked with undefined symbols
#       allowed, so a hidden one would only show up as a dlopen failure.
#
# Reads the dynamic symbol table with `nm -D --defined-only`. Names starting
# with '_' are the toolchain's (_init, sanitizer runtime glue such as
# __odr_asan_gen_*), not loom's, and are ignored.
foreach(v NM LIB ALLOWED)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_exports: -D${v}=... is required")
  endif()
endforeach()

execute_process(COMMAND ${NM} -D --defined-only ${LIB}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_exports: ${NM} -D --defined-only ${LIB} failed (${rc}): ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(exported "")
foreach(line IN LISTS lines)
  # "<address> <type> <name>[@version]"
  if(line MATCHES "^[0-9a-fA-F]* *[A-Za-z] ([^@ ]+)")
    set(name "${CMAKE_MATCH_1}")
    if(NOT name MATCHES "^_")
      list(APPEND exported "${name}")
    endif()
  endif()
endforeach()
list(REMOVE_DUPLICATES exported)
list(SORT exported)
list(LENGTH exported n_exported)
if(n_exported EQUAL 0)
  message(FATAL_ERROR "check_exports: no symbols read from ${LIB}")
endif()

if(UPDATE)
  string(REPLACE ";" "\n" text "${exported}")
  file(WRITE ${ALLOWED} "${text}\n")
  message(STATUS "check_exports: wrote ${n_exported} names to ${ALLOWED}")
  return()
endif()

file(STRINGS ${ALLOWED} allowed)
list(FILTER allowed EXCLUDE REGEX "^(#.*|[ \t]*)$")
set(extra ${exported})
list(REMOVE_ITEM extra ${allowed})
set(missing ${allowed})
list(REMOVE_ITEM missing ${exported})
if(extra OR missing)
  set(msg "check_exports: ${LIB} does not export exactly ${ALLOWED}\n")
  foreach(s IN LISTS extra)
    string(APPEND msg "  exported but not allowed: ${s}\n")
  endforeach()
  foreach(s IN LISTS missing)
    string(APPEND msg "  allowed but not exported: ${s}\n")
  endforeach()
  string(APPEND msg "Internal functions must stay unmarked (no LOOM_API); for an intended API "
                    "change rerun with -DUPDATE=ON and review the diff.")
  message(FATAL_ERROR "${msg}")
endif()
string(REPLACE "|" ";" PLUGINS "${PLUGINS}")
foreach(plugin IN LISTS PLUGINS)
  execute_process(COMMAND ${NM} -D --undefined-only ${plugin}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_exports: ${NM} -D --undefined-only ${plugin} failed (${rc}): ${err}")
  endif()
  string(REGEX MATCHALL "loom_[A-Za-z0-9_]+" imported "${out}")
  list(REMOVE_DUPLICATES imported)
  set(hidden ${imported})
  if(hidden)
    list(REMOVE_ITEM hidden ${exported})
  endif()
  if(hidden)
    string(REPLACE ";" " " hidden "${hidden}")
    message(FATAL_ERROR "check_exports: ${plugin} needs symbols libloom does not export: ${hidden}")
  endif()
  list(LENGTH imported n_imported)
  message(STATUS "check_exports: ${plugin}: its ${n_imported} loom_* imports are all exported")
endforeach()

list(LENGTH allowed n_allowed)
message(STATUS "check_exports: ${n_exported} exported symbols, all allowed (${n_allowed} listed)")

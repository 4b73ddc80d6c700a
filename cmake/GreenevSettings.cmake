# greenev_apply_settings(<target>): the one place that sets the language level,
# warnings, sanitizer flags and shared-library link checks, so every library,
# test, example and bench target is built the same way.
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

if(GREENEV_SANITIZE STREQUAL "address")
  set(GREENEV_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
elseif(GREENEV_SANITIZE STREQUAL "thread")
  set(GREENEV_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT GREENEV_SANITIZE STREQUAL "")
  message(FATAL_ERROR "GREENEV_SANITIZE must be empty, 'address' or 'thread', not '${GREENEV_SANITIZE}'")
endif()

function(greenev_apply_settings target)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    return()
  endif()
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Wnon-virtual-dtor
                                           # designated initializers with defaults are idiomatic
                                           -Wno-missing-field-initializers)
  if(GREENEV_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    # GCC 12 at -O3 reports `"text" + std::string` as an overlapping memcpy
    # (GCC bug 105651, fixed in 13): a false positive in libstdc++ itself.
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(GREENEV_SANITIZER_FLAGS)
    # GCC's -Wmaybe-uninitialized misfires on std::regex / std::function with
    # sanitizer instrumentation at -O2 (GCC bug 105562 and friends).
    target_compile_options(${target} PRIVATE ${GREENEV_SANITIZER_FLAGS} -Wno-maybe-uninitialized)
    target_link_options(${target} PRIVATE ${GREENEV_SANITIZER_FLAGS})
  endif()
  if(type STREQUAL "SHARED_LIBRARY" AND NOT GREENEV_SANITIZER_FLAGS)
    # Every dependency named in DT_NEEDED, so the library loads on its own (a
    # sanitized library takes the runtime's symbols from the program instead).
    target_link_options(${target} PRIVATE LINKER:--no-undefined)
  endif()
endfunction()

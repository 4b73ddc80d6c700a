#!/usr/bin/env bash
# The whole test suite: installs what is missing, then
#   1. release build (static libraries) + every test,
#   2. the same with shared libraries (preset `shared`) + every test,
#   3. ASan+UBSan build + every test,
#   4. TSan build + every test (greenlets on many threads, cross-thread handles),
#   5. install the static and the shared libraries into one prefix and build + run a
#      consumer of each with find_package(greenev) and with pkg-config, then consumers
#      that take greenev's source with add_subdirectory and with FetchContent.
# Exits non-zero on the first failure. Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

greenev_install_packages

greenev_log "formatting (.clang-format)"
cd "$GREENEV_ROOT"
git ls-files -- '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror

for preset in release shared asan tsan; do
  greenev_build "$preset"
  greenev_log "tests: $preset"
  ctest --preset "$preset"
done

# memcheck over the greenlet and hub tests of the release build. greenev registers every
# greenlet stack with valgrind (VALGRIND_STACK_REGISTER), so switches are not reported as
# wild stack moves. Death tests (they fork), the *_serial soak/timing suites and the
# 100,000-greenlet stack test (40 s under valgrind) are left
# to the other builds: under valgrind they only measure valgrind.
greenev_log "valgrind memcheck: greenlet and hub tests"
for test_binary in "$GREENEV_ROOT"/build/release/tests/greenlet/*_test "$GREENEV_ROOT"/build/release/tests/hub/*_test; do
  valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    "$test_binary" --gtest_brief=1 --gtest_filter='-*_serial.*:*death*:*Death*:*hundred_thousand*' >/dev/null ||
    { echo "valgrind: $(basename "$test_binary") failed; rerun it under valgrind to see why" >&2; exit 1; }
  echo "valgrind: $(basename "$test_binary") clean"
done

# The header comments are the manual: the API reference must build without a warning.
greenev_log "API reference: Doxygen over the public headers, zero warnings"
cmake --build "$GREENEV_ROOT/build/release" --target docs

# links_greenev_shared PROGRAM: true if PROGRAM loads greenev's shared libraries.
links_greenev_shared() { readelf -d "$1" | grep 'NEEDED.*libgreenev_' >/dev/null; }
# build_consumer DIR CMAKE_ARGS...: configure tests/install_consumer into DIR, build, run.
build_consumer() {
  local dir=$1
  shift
  cmake -S "$GREENEV_ROOT/tests/install_consumer" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir"
  "$dir/consumer"
}

greenev_log "install the static libraries; find_package(greenev) and pkg-config --static consumers"
prefix="$GREENEV_ROOT/build/install"
consumers="$GREENEV_ROOT/build/consumers"
rm -rf "$prefix" "$consumers"
cmake --install "$GREENEV_ROOT/build/release" --prefix "$prefix" >/dev/null
build_consumer "$consumers/static" -DCMAKE_PREFIX_PATH="$prefix"
! links_greenev_shared "$consumers/static/consumer" || { echo "the static consumer loads libgreenev_*.so" >&2; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists --print-errors greenev
c++ -o "$consumers/pkg-config-static" "$GREENEV_ROOT/tests/install_consumer/main.cpp" \
  $(pkg-config --static --cflags --libs greenev)
"$consumers/pkg-config-static"
# Asking for a variant that is not installed fails at configure time, and says why.
if cmake -S "$GREENEV_ROOT/tests/install_consumer" -B "$consumers/missing-shared" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" -DGREENEV_SHARED_LIBS=ON >"$consumers/missing-shared.log" 2>&1 ||
  ! grep -q "holds only the static ones" "$consumers/missing-shared.log"; then
  cat "$consumers/missing-shared.log" >&2
  echo "find_package(greenev) did not refuse the missing shared variant clearly" >&2
  exit 1
fi

greenev_log "install the shared libraries beside them; find_package(greenev) and pkg-config consumers"
cmake --install "$GREENEV_ROOT/build/shared" --prefix "$prefix" >/dev/null
build_consumer "$consumers/shared" -DCMAKE_PREFIX_PATH="$prefix" -DGREENEV_SHARED_LIBS=ON
links_greenev_shared "$consumers/shared/consumer" || { echo "the shared consumer is static" >&2; exit 1; }
build_consumer "$consumers/static-beside-shared" -DCMAKE_PREFIX_PATH="$prefix"
! links_greenev_shared "$consumers/static-beside-shared/consumer" ||
  { echo "find_package(greenev) took the shared libraries by default" >&2; exit 1; }
c++ -o "$consumers/pkg-config-shared" "$GREENEV_ROOT/tests/install_consumer/main.cpp" \
  $(pkg-config --cflags --libs greenev) -Wl,-rpath,"$prefix/lib"
links_greenev_shared "$consumers/pkg-config-shared" || { echo "pkg-config --libs linked statically" >&2; exit 1; }
"$consumers/pkg-config-shared"
unset PKG_CONFIG_PATH

greenev_log "add_subdirectory(greenev) consumer"
rm -rf "$GREENEV_ROOT/build/subdirectory-consumer"
cmake -S "$GREENEV_ROOT/tests/subdirectory_consumer" -B "$GREENEV_ROOT/build/subdirectory-consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DGREENEV_SOURCE_DIR="$GREENEV_ROOT" >/dev/null
cmake --build "$GREENEV_ROOT/build/subdirectory-consumer" --target consumer
"$GREENEV_ROOT/build/subdirectory-consumer/consumer"

# FetchContent clones the repository at its HEAD commit (uncommitted changes are not
# in it), offline; the parent presets GREENEV_SHARED_LIBS, so this one is shared.
greenev_log "FetchContent consumer (file:// clone at HEAD, shared libraries)"
rm -rf "$GREENEV_ROOT/build/fetchcontent-consumer"
cmake -S "$GREENEV_ROOT/tests/fetchcontent_consumer" -B "$GREENEV_ROOT/build/fetchcontent-consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DGREENEV_GIT_REPOSITORY="file://$GREENEV_ROOT" \
  -DGREENEV_GIT_TAG="$(git -C "$GREENEV_ROOT" rev-parse HEAD)" -DGREENEV_SHARED_LIBS=ON >/dev/null
cmake --build "$GREENEV_ROOT/build/fetchcontent-consumer" --target consumer
links_greenev_shared "$GREENEV_ROOT/build/fetchcontent-consumer/consumer" ||
  { echo "the FetchContent consumer did not get greenev's shared libraries" >&2; exit 1; }
"$GREENEV_ROOT/build/fetchcontent-consumer/consumer"

greenev_log "C++ in README.md and docs/ is quoted verbatim from examples/ or tests/install_consumer/"
python3 - "$GREENEV_ROOT" <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
sources = [p.read_text() for p in [*root.glob("examples/*.cpp"), *root.glob("tests/install_consumer/*.cpp")]]
stale = []
for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
    for block in re.findall(r"```cpp\n(.*?)```", doc.read_text(), re.S):
        if not any(block in source for source in sources):
            stale.append(f"{doc.relative_to(root)}: a cpp block starting {block.splitlines()[0]!r}")
if stale:
    sys.exit("code in the docs no longer matches the examples:\n  " + "\n  ".join(stale))
PY

greenev_log "all tests passed"

#!/usr/bin/env bash
# The whole test suite: installs what is missing, then
#   1. release build (static libraries) + every test,
#   2. the same with shared libraries (preset `shared`) + every test,
#   3. ASan+UBSan build + every test,
#   4. TSan build + every test (greenlets on many threads, cross-thread handles),
#   5. valgrind memcheck, the API reference, the C++ quoted in the docs,
#   6. install the static and the shared libraries into one prefix and build + run a
#      consumer of each with find_package(greenev) and with pkg-config, then consumers
#      that take greenev's source with add_subdirectory and with FetchContent.
# One line per stage as it starts; each stage's output goes to build/logs/ (ctest-PRESET.log,
# build-PRESET.log, ...). Stops at the first failure with the failed tests and the end of
# their output, and exits non-zero. Ends with a table: stage, tests, passed, failed, time.
# Safe to run again.
#
# GREENEV_TEST_STAGES (local use; default every stage) runs only the stages it names, e.g.
# GREENEV_TEST_STAGES="formatting release": formatting, release, shared, asan, tsan,
# valgrind, docs, docs-quote, consumers.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# wants STAGE: true if this run includes STAGE.
wants() { [[ -z ${GREENEV_TEST_STAGES:-} || " ${GREENEV_TEST_STAGES//,/ } " == *" $1 "* ]]; }

greenev_install_packages "${GREENEV_PACKAGES[@]}"
# The browser test's puppeteer-core comes from the npm registry (tests/browser/package-lock.json):
# nodesource's nodejs carries npm, Debian's does not.
command -v npm >/dev/null || greenev_install_packages npm
greenev_use_ccache
greenev_stages_init summary
cd "$GREENEV_ROOT"

if wants formatting; then
  greenev_stage "formatting (.clang-format)" formatting
  git ls-files -- '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror
fi

for preset in release shared asan tsan; do
  wants "$preset" || continue
  greenev_stage "build: $preset" "build-$preset"
  greenev_build "$preset"
  greenev_stage "tests: $preset" "ctest-$preset"
  greenev_ctest "$preset"
done

# memcheck over the greenlet and hub tests of the release build. greenev registers every
# greenlet stack with valgrind (VALGRIND_STACK_REGISTER), so switches are not reported as
# wild stack moves. Death tests (they fork), the *_serial soak/timing suites and the
# 100,000-greenlet stack test (40 s under valgrind) are left
# to the other builds: under valgrind they only measure valgrind.
if wants valgrind; then
  greenev_stage "valgrind memcheck: greenlet and hub tests" valgrind
  valgrind_clean=0
  for test_binary in "$GREENEV_ROOT"/build/release/tests/greenlet/*_test "$GREENEV_ROOT"/build/release/tests/hub/*_test; do
    valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
      "$test_binary" --gtest_brief=1 --gtest_filter='-*_serial.*:*death*:*Death*:*hundred_thousand*' >/dev/null || {
      greenev_stage_count $((valgrind_clean + 1)) "$valgrind_clean" 1
      echo "valgrind: $(basename "$test_binary") failed; rerun it under valgrind to see why" >&2
      exit 1
    }
    echo "valgrind: $(basename "$test_binary") clean"
    valgrind_clean=$((valgrind_clean + 1))
  done
  greenev_stage_count "$valgrind_clean" "$valgrind_clean" 0
fi

# The header comments are the manual: the API reference must build without a warning.
if wants docs; then
  greenev_stage "API reference (Doxygen, zero warnings)" docs
  cmake --build "$GREENEV_ROOT/build/release" --target docs
fi

if wants docs-quote; then
  # C++ in README.md and docs/ is quoted verbatim from examples/ or tests/install_consumer/.
  greenev_stage "docs quote the examples verbatim" docs-quote
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
fi

# The consumers come last, so that a run without them can stop here.
wants consumers || exit 0
greenev_stage "install + consumers (find_package, pkg-config, add_subdirectory, FetchContent)" consumers

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

greenev_stage_close passed
greenev_log "all tests passed"

#!/usr/bin/env bash
# The whole test suite: installs what is missing, then
#   1. release build + every test,
#   2. ASan+UBSan build + every test,
#   3. TSan build + every test (greenlets on many threads, cross-thread handles),
#   4. install the release build and build + run a consumer project with
#      find_package(greenev), and check the pkg-config file.
# Exits non-zero on the first failure. Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

greenev_install_packages

greenev_log "formatting (.clang-format)"
cd "$GREENEV_ROOT"
git ls-files -- '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror

for preset in release asan tsan; do
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

greenev_log "install + find_package(greenev) consumer"
prefix="$GREENEV_ROOT/build/install"
rm -rf "$prefix" "$GREENEV_ROOT/build/consumer"
cmake --install "$GREENEV_ROOT/build/release" --prefix "$prefix" >/dev/null
cmake -S "$GREENEV_ROOT/tests/install_consumer" -B "$GREENEV_ROOT/build/consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$GREENEV_ROOT/build/consumer"
"$GREENEV_ROOT/build/consumer/consumer"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --exists --print-errors greenev
c++ -o "$GREENEV_ROOT/build/consumer/consumer-pc" "$GREENEV_ROOT/tests/install_consumer/main.cpp" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs greenev)
"$GREENEV_ROOT/build/consumer/consumer-pc"

greenev_log "add_subdirectory(greenev) consumer"
rm -rf "$GREENEV_ROOT/build/subdirectory-consumer"
cmake -S "$GREENEV_ROOT/tests/subdirectory_consumer" -B "$GREENEV_ROOT/build/subdirectory-consumer" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DGREENEV_SOURCE_DIR="$GREENEV_ROOT" >/dev/null
cmake --build "$GREENEV_ROOT/build/subdirectory-consumer" --target consumer
"$GREENEV_ROOT/build/subdirectory-consumer/consumer"

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

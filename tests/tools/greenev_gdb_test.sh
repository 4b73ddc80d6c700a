#!/usr/bin/env bash
# tools/greenev-gdb.py on a core file: run examples/run_info --trap under gdb
# (three greenlets: sleeping, reading a socket, waiting on an event), gcore it
# at the trap, then check that greenev-list names all three with what each
# waits on, and that greenev-bt unwinds a suspended greenlet's stack.
# Usage: greenev_gdb_test.sh RUN_INFO_PROGRAM GDB_SCRIPT [SANITIZER]
# Exit 77 (ctest: skipped) without gdb, or in a sanitizer build (the
# sanitizers' shadow memory makes a core file of tens of GB).
set -euo pipefail
program=$1
script=$2
sanitizer=${3:-}
if ! command -v gdb >/dev/null; then
  echo "SKIP: gdb is not installed (scripts/lib.sh lists it in GREENEV_PACKAGES)"
  exit 77
fi
if [[ -n $sanitizer ]]; then
  echo "SKIP: a core file of a $sanitizer-sanitized process holds the shadow memory (tens of GB)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
core=$work/run_info.core
gdb -batch -nx -ex run -ex "gcore $core" -ex kill --args "$program" --trap >"$work/gcore.log" 2>&1 || true
if [[ ! -s $core ]]; then
  cat "$work/gcore.log"
  echo "FAIL: gdb made no core file"
  exit 1
fi
gdb -batch -nx -x "$script" -ex greenev-list "$program" "$core" >"$work/list.log" 2>&1
cat "$work/list.log"
status=0
for expected in '"sleeper": suspended on sleep until' '"socket-reader": suspended on fd [0-9]+ read' \
                '"event-waiter": suspended on event' '"main": running'; do
  if ! grep -Eq "$expected" "$work/list.log"; then
    echo "FAIL: greenev-list did not print: $expected"
    status=1
  fi
done
sleeper_id=$(sed -nE 's/.*greenlet ([0-9]+) "sleeper".*/\1/p' "$work/list.log")
gdb -batch -nx -x "$script" -ex "greenev-bt $sleeper_id" "$program" "$core" >"$work/bt.log" 2>&1
cat "$work/bt.log"
# greenev::sleep is inline: the frame is the library's waiting sleep it calls.
if ! grep -Eq '#[1-9].* in greenev::(detail::sleep_waiting|sleep)\b' "$work/bt.log"; then
  echo "FAIL: greenev-bt $sleeper_id did not unwind the sleeper's stack into greenev's sleep"
  status=1
fi
exit $status

#!/bin/sh
# no_libc_interposer.sh <names> <check-bindings: 0|1> <program> [<library>...]
# A program that uses greenev's sockets without patching interposes nothing:
# neither it nor the given libraries (libgreenev_net, .so or .a) define any of
# <names> (the libc functions greenev::monkey interposes), and, run with
# LD_DEBUG=bindings, every call it makes to one of them binds to libc.so.6.
# The bindings are not checked under a sanitizer, whose runtime intercepts
# these calls itself.
set -u
names=$1
check_bindings=$2
program=$3
shift 3
status=0

for file in "$program" "$@"; do
  defined=$( (nm --defined-only --extern-only "$file" 2>/dev/null; nm -D --defined-only "$file" 2>/dev/null) |
    awk 'NF >= 3 {sub(/@.*/, "", $3); print $3}' | sort -u)
  for name in $names; do
    if printf '%s\n' "$defined" | grep -qx -- "$name"; then
      echo "FAIL: $file defines $name"
      status=1
    fi
  done
done

output=$(LD_DEBUG=bindings "$program" 2>&1)
if ! printf '%s\n' "$output" | grep -qx 'sockets_only_program: echo'; then
  echo "FAIL: $program did not run its echo:"
  printf '%s\n' "$output" | grep -v 'binding file' | tail -20
  status=1
fi
if [ "$check_bindings" = 1 ]; then
  bindings=$(printf '%s\n' "$output" | grep 'binding file')
  for name in $names; do
    elsewhere=$(printf '%s\n' "$bindings" | grep -F " symbol \`$name'" | grep -v ' to [^ ]*/libc\.so\.6 ')
    if [ -n "$elsewhere" ]; then
      echo "FAIL: $name binds outside libc: $elsewhere"
      status=1
    fi
  done
  for name in connect write; do
    if ! printf '%s\n' "$bindings" | grep -F " symbol \`$name'" | grep -q ' to [^ ]*/libc\.so\.6 '; then
      echo "FAIL: no call to $name was seen binding to libc.so.6"
      status=1
    fi
  done
fi

[ "$status" = 0 ] && echo "PASS: no libc interposer in $program $*"
exit "$status"

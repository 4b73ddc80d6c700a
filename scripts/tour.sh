#!/usr/bin/env bash
# The demo tour: installs what is missing, builds, and runs the examples in
# the order of the original gevent notes. Safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

greenev_install_packages
greenev_build release
bin="$GREENEV_ROOT/build/release/examples"

demo() {
  local title=$1; shift
  printf '\n\033[1;36m--- %s\033[0m\n' "$title"
  printf '$ %s\n' "$(basename "$1") ${*:2}"
  "$@"
}

demo "explicit switches between two greenlets (greenlet's func1/func2)" "$bin/greenlet_switch"
demo "a yield-style producer feeding two consumers, on greenlet switches" "$bin/producer_consumer"
demo "the same baozi, with spawned tasks and rendezvous channels" "$bin/producer_consumer" --mode queue
demo "two greenlets interleaving on sleep (gevent.sleep)" "$bin/sleep_order" --delay 0.5
demo "ten tasks sleeping 0.5 s: one after another, then spawned together" "$bin/sync_vs_async" --tasks 10 --delay 0.5
printf '\n\033[1mtour done.\033[0m Sockets, DNS and monkey patching arrive with the IO layers.\n'

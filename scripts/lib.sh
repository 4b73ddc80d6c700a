# Shared by scripts/tour.sh and scripts/test.sh: installs the Debian packages
# greenev needs (only the missing ones, `apt-get update` at most once) and
# builds a CMake preset. Sourced, not run.
set -euo pipefail

GREENEV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GREENEV_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libboost-context-dev libev-dev libc-ares-dev
  libgtest-dev libbenchmark-dev valgrind python3 clang-format
  dnsmasq-base libcurl4-openssl-dev gdb doxygen postgresql libpq-dev
)

greenev_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

greenev_install_packages() {
  local missing=() pkg
  for pkg in "${GREENEV_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    greenev_log "system packages: all present"
    return
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  greenev_log "installing: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# greenev_build PRESET: configure (first time) and build.
greenev_build() {
  local preset=$1
  cd "$GREENEV_ROOT"
  greenev_log "configure + build: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
}

#!/usr/bin/env bash
# Installs the Debian packages the C++ pod builds with; as root with apt-get it installs
# them, otherwise it prints the command to run.
set -euo pipefail
packages=(cmake g++ make pkg-config libcpp-httplib-dev nlohmann-json3-dev)
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${packages[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${packages[@]}"; }
else
  echo "Run as root on Debian/Ubuntu: apt-get install -y ${packages[*]}"
fi

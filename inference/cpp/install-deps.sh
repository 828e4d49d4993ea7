#!/usr/bin/env bash
# Installs the Debian packages the C++ pod builds with, only those missing (never upgrades);
# as root with apt-get it installs them, otherwise it prints the command to run.
set -euo pipefail
packages=(cmake g++ make pkg-config libcpp-httplib-dev nlohmann-json3-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "C++ pod build dependencies: all present"
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
else
  echo "Run as root on Debian/Ubuntu: apt-get install -y ${missing[*]}"
fi

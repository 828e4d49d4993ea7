#!/bin/sh
# Installs the Debian packages the Java pod needs to build and run (see build.sh):
#   openjdk-17-jdk-headless       javac, jar and java (JDK 17)
#   libjackson2-databind-java     Jackson databind, with jackson-core and jackson-annotations
# Run as root where apt-get exists; otherwise it prints the command to run.
set -eu

PACKAGES="openjdk-17-jdk-headless libjackson2-core-java libjackson2-annotations-java libjackson2-databind-java"

if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found; install the equivalents of these Debian packages: $PACKAGES" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root: apt-get install -y --no-install-recommends $PACKAGES"
    exit 1
fi
# Only what is missing: installed packages are left at their version (no upgrades).
missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done
if [ -z "$missing" ]; then
    echo "all present: $PACKAGES"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Try the current package lists first; refresh them only when that fails.
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing \
    || { apt-get update && apt-get install -y --no-install-recommends $missing; }

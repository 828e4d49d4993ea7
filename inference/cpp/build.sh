#!/usr/bin/env bash
# Builds the C++ pod into inference/cpp/build (incrementally): build/aimp-cpp-pod.
# Exits 3, saying what is missing and which Debian package provides it, when the
# toolchain or a library is absent (install-deps.sh installs them).
set -euo pipefail
script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] && cd "${script%/*}"

missing=()
need_command() {  # command, Debian package
  command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package: $2)")
}
need_command cmake cmake
need_command c++ g++
need_command make make
need_command pkg-config pkg-config
if command -v pkg-config >/dev/null 2>&1; then
  pkg-config --exists cpp-httplib ||
    missing+=("cpp-httplib, the HTTP library (Debian package: libcpp-httplib-dev)")
  pkg-config --exists nlohmann_json ||
    missing+=("nlohmann/json, the JSON library (Debian package: nlohmann-json3-dev)")
fi
if ((${#missing[@]})); then
  echo "build.sh: cannot build the C++ pod; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "Install them with: sudo $(pwd)/install-deps.sh" >&2
  exit 3
fi

jobs="$(nproc 2>/dev/null || echo 2)"
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build --parallel "$jobs"
echo "built $(pwd)/build/aimp-cpp-pod"

#!/usr/bin/env bash
# Install the Debian 12 packages moeplan builds with, when any is missing (apt-get; as root or with sudo).
set -euo pipefail
# chromium: only for the test that renders a report in a headless browser (report.chromium; skipped without it).
# libclang-rt-14-dev: clang's sanitizer and libFuzzer runtimes (only recommended by clang on Debian 12, so an install
# without recommends lacks them); scripts/test.sh's clang build needs both.
packages=(cmake ninja-build g++ clang libclang-rt-14-dev ccache libboost-program-options-dev nlohmann-json3-dev libyaml-cpp-dev
          libeigen3-dev catch2 libbenchmark-dev chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null

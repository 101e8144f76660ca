#!/usr/bin/env bash
# Set up a fresh Debian 12 machine, build moeplan, and run the main job: the ranked plan for Llama 4 Maverick.
#   bash scripts/setup.sh            install what is missing (apt-get, as root or with sudo), build, run
# Environment: BUILD_DIR (default build), MOEPLAN_CUDA (AUTO|ON|OFF, default AUTO).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEPLAN_CUDA="${MOEPLAN_CUDA:-AUTO}" -DMOEPLAN_TESTS=OFF \
  -DMOEPLAN_BENCH=OFF
cmake --build "$build" --target moeplan
echo
echo "\$ moeplan plan --model llama4-maverick"
"$build/app/moeplan" plan --model llama4-maverick

#!/usr/bin/env bash
# The main demo on a fresh machine: installs what is missing, builds and
# installs the library, builds examples/ against the installed package and
# runs LongNet attention over a long random sequence. Arguments are passed to
# the demo (e.g. --seq 1048576 --heads 8 --backward; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
deps=$(scripts/install-deps.sh | tail -n1)
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$deps" \
  -DDILATED_ENABLE_TESTS=OFF >/dev/null
cmake --build build/release
cmake --install build/release --prefix build/install >/dev/null
cmake -S examples -B build/examples -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS=-march=native -DCMAKE_PREFIX_PATH="$root/build/install;$deps" >/dev/null
cmake --build build/examples
export OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-threads}
exec build/examples/longnet_demo "$@"

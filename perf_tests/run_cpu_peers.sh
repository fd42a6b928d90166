#!/usr/bin/env bash
# Runs perf_tests/cpu_peers.py: our kernels vs OpenBLAS sgemm peak and PyTorch
# (CPU) on this machine, in one run. Sets up a perf-only Python venv with
# numpy and CPU-capable torch (not a dependency of the library) and builds
# the benchmark with the ci preset. Result JSON: perf_tests/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DILATED_PERF_VENV:-$HOME/.cache/dilated-attention/perf-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "numpy==2.4.6" "torch==2.15.0"
fi
export DILATED_DEPS_PREFIX=$(scripts/install-deps.sh | tail -n1)
cmake --preset ci >/dev/null
cmake --build --preset ci --target bench_attention
out=perf_tests/results/cpu-peers-$(date -u +%Y-%m-%dT%H%M).json
"$venv/bin/python" perf_tests/cpu_peers.py --bench build/ci/perf_tests/bench_attention --out "$out" "$@"

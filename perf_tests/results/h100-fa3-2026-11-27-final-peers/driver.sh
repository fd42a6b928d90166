#!/usr/bin/env bash
# Lead, 2026-11-27: cuda_fa3 forward and backward on the final tree (257ccf1:
# rwl backward, the P V wait fix, the balanced block-sparse schedule) against
# PyTorch's FLASH (FA2) and cuDNN SDPA and the PyTorch LongNet gather-SDPA-
# scatter reference, in one call (perf_tests/h100_fa3_peers.py).
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/peers}; mkdir -p $O
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt
python3 -c 'import torch; print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version())' | tee -a $O/gpu.txt
timeout 240 python3 $B/h100_fa3_peers.py --bench $B/bench_fa3 --out $O/peers.json \
  "--bench-args=--benchmark_filter=BM_Fa3Forward|BM_Fa3Backward" 2>&1 | tee $O/peers.log | grep -vE '^\s*$' | tail -n 16
P=$(dirname $O); tar -czf $P/peers.tar.gz -C $P $(basename $O)

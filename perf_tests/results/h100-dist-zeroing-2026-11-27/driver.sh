#!/usr/bin/env bash
# Lead's A/B of the element-per-thread gradient zeroing / 16-bit rounding on device backends
# (elementwise_kernels.hpp): one rank, bf16 on cuda_fa3, before (commit d1d3336's code) vs after,
# alternating, with the backward by phase; then test_nccl_multi_rank on one rank (after).
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/lz}; mkdir -p $O
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64 PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
one() {  # label binary args...
  local label=$1 bin=$2; shift 2
  DILATED_LAUNCHER=plain DILATED_LAUNCH_TIMEOUT=60 perf_tests/launch_ranks.sh 1 "$B/$bin" --label "$label" "$@" --iters 3 --phases > "$O/$label.log" 2>&1
  echo "$label rc=$? $(tr -d '\n' < "$O/$label.log" | grep -o '{.*}' | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); ph=r.get("backward_phases_ms_max_rank",{}); print("fwd %.2f ms bwd %.2f ms zero_grads %.1f ms" % (1e3*r["forward_s"], 1e3*r["backward_s"], ph.get("zero_grads",-1)))' 2>&1 | tail -n 1)"
}
L="2048:1,4096:2,8192:4,16384:6,32768:12,N:N/16384"
for rep in 1 2; do
  one before-longnet64k-$rep bench_before --dtype bf16 --seq-per-rank 65536 --heads 16 --dim 128 --branches $L
  one after-longnet64k-$rep bench_after --dtype bf16 --seq-per-rank 65536 --heads 16 --dim 128 --branches $L
done
one before-longnet256k bench_before --dtype bf16 --seq-per-rank 262144 --heads 16 --dim 128 --branches ${L/N:N\/16384/N:16}
one after-longnet256k bench_after --dtype bf16 --seq-per-rank 262144 --heads 16 --dim 128 --branches ${L/N:N\/16384/N:16}
one before-float16k bench_before --dtype float --seq-per-rank 16384 --heads 8 --dim 64 --branches 2048:1,4096:2
one after-float16k bench_after --dtype float --seq-per-rank 16384 --heads 8 --dim 64 --branches 2048:1,4096:2
DILATED_LAUNCHER=plain DILATED_LAUNCH_TIMEOUT=150 perf_tests/launch_ranks.sh 1 "$B/test_nccl_multi_rank" --gtest_color=no > $O/test_np1.log 2>&1
echo "test_nccl_multi_rank np1 (after) rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/test_np1.log | tr '\n' ' ')"

#!/usr/bin/env bash
# fa3fwd request 1 (one H100): cuda_fa3 forward variants (issue 4) - correctness
# of every new kernel against float64 (test_fa3_forward / _window / _numerics
# under the variant environment), compute-sanitizer on small shapes, then
# timings of HEAD's forward (bench_fa3_base) and the variants (bench_fa3 with
# DILATED_FA3_EXP / _D64_ROWS / _STAGES), and cuDNN/FA2 peers in the same call.
#   bash .deps/fa3fwd-run/driver1.sh OUT      (run from the repository root)
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3fwd1}; mkdir -p "$O"
B=/tmp/fa3fwd-bin; rm -rf $B; mkdir -p $B; tar xzf "$D/bins.tgz" -C $B   # binaries carried packed (size limit)
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt"
cat "$O/machine.txt"
t0=$(date +%s)
summ() {  # one line per gtest log + failures
  echo "$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -8
}
gt() {  # label envs... -- binary args...
  local label=$1; shift; local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  local bin=$1; shift
  env "${envs[@]}" timeout 150 "$B/$bin" --gtest_color=no "$@" > "$O/$label.log" 2>&1
  echo "$label rc=$? $(summ "$O/$label.log")  [$(( $(date +%s) - t0 )) s]"
}
NEW=(DILATED_FA3_EXP=4 DILATED_FA3_D64_ROWS=192 DILATED_FA3_STAGES=3)
echo "=== 1. correctness vs float64, all new kernels on (${NEW[*]}) ==="
gt fwd_new "${NEW[@]}" -- test_fa3_forward
gt numerics_new "${NEW[@]}" -- test_fa3_numerics
gt window_new "${NEW[@]}" -- test_fa3_window
echo "=== 2. timings: HEAD forward vs variants (bf16, B 1, H 16, N 16K) ==="
bench() {  # label filter envs...
  local label=$1 filter=$2; shift 2
  local bin=bench_fa3; [ "$label" = base ] || [ "${label#base}" != "$label" ] && bin=bench_fa3_base
  env "$@" timeout 90 "$B/$bin" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 N\2 d\3#' \
    | awk -v l="$label" '{printf "%-10s %s %s %s %8s ms %s\n", l, $1, $2, $3, $4, $(NF-2)}'
}
ALL='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:(64|128|256)/'
D64='BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:64/'
C128='BM_Fa3Forward/kind:1/batch:1/seq:16384/heads:16/dim:128/'
bench base "$ALL"
bench new0 "$ALL"
bench exp4 "$ALL" DILATED_FA3_EXP=4
bench r192 "$D64" DILATED_FA3_D64_ROWS=192
bench r192e4 "$D64" DILATED_FA3_D64_ROWS=192 DILATED_FA3_EXP=4
bench r192e2 "$D64" DILATED_FA3_D64_ROWS=192 DILATED_FA3_EXP=2
bench exp2 "$D64" DILATED_FA3_EXP=2
bench st3 "$C128" DILATED_FA3_STAGES=3
bench st3e4 "$C128" DILATED_FA3_STAGES=3 DILATED_FA3_EXP=4
bench base2 "$ALL"
echo "[$(( $(date +%s) - t0 )) s]"
echo "=== 3. peers in the same call (HEAD binary for ours; torch SDPA FLASH = FA2, CUDNN) ==="
timeout 150 python3 perf_tests/h100_fa3_peers.py --bench "$B/bench_fa3_base" --out "$O/peers.json" --no-longnet-peer \
  --bench-args="--benchmark_filter=$ALL" > "$O/peers.log" 2>&1
echo "peers rc=$?"; grep -E '^(dense|causal)' "$O/peers.log"
echo "[$(( $(date +%s) - t0 )) s]"
echo "=== 4. more correctness: defaults, and exp2 at d64 ==="
gt fwd_exp2 DILATED_FA3_EXP=2 -- test_fa3_forward --gtest_filter='*d64*:*d128*'
gt fwd_r192e2 DILATED_FA3_EXP=2 DILATED_FA3_D64_ROWS=192 -- test_fa3_forward --gtest_filter='*d64*'
gt numerics_exp2 DILATED_FA3_EXP=2 DILATED_FA3_D64_ROWS=192 -- test_fa3_numerics
echo "=== 5. compute-sanitizer, all new kernels on, small shapes ==="
F='*dense_d64_bf16:*dense_d64_causal_fp16:*w_mod_r_d64_causal_bf16:*unkept_rows_d128_causal_bf16:*dense_d128_bf16'
for tool in memcheck racecheck; do
  env "${NEW[@]}" timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_forward" --gtest_color=no \
    --gtest_filter="$F" > "$O/san_$tool.log" 2>&1
  echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$O/san_$tool.log" | tail -n 1) $(grep -E '^\[  (PASSED|FAILED) ' "$O/san_$tool.log" | tr '\n' ' ')  [$(( $(date +%s) - t0 )) s]"
done
echo "=== 6. SASS of the new kernels (spills, HGMMA) ==="
timeout 60 cuobjdump -sass "$B/test_fa3_forward" > "$O/sass.txt" 2>/dev/null
# per forward kernel: HGMMA, MUFU.EX2, spill loads/stores (LDL/STL)
awk '/Function :/{f=$3} /HGMMA/{h[f]++} /MUFU.EX2/{m[f]++} /LDL/{l[f]++} /STL/{s[f]++}
  END{for (k in h) if (k ~ /forward_kernel/) printf "HGMMA %d EX2 %d LDL %d STL %d %s\n", h[k], m[k], l[k], s[k], k}' \
  "$O/sass.txt" | sort -k10 > "$O/sass_forward.txt"
sed -E 's/_ZN7dilated8cuda_fa37details14forward_kernelI//; s/EEvNS1_11ForwardArgsE//' "$O/sass_forward.txt"
gzip -f "$O/sass.txt"
echo "total [$(( $(date +%s) - t0 )) s]"

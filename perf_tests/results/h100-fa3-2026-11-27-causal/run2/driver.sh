#!/usr/bin/env bash
# fa3causal request 2 (one H100, <= 150 s): cuda_fa3 causal forward d128 16K vs cuDNN (issue 4), final check.
#   Binaries: branch h/fa3causal 65e3625. Causal head_dim 128/256 launches run the persistent grid with the
#   atomic tile counter (now with a warp-uniform tile index: request 1's consumer step had 991 instead of 896
#   SASS instructions); long causal d128 rows (>= 8192 keys) take 176-key blocks.
#   Env: DILATED_FA3_CAUSAL_GRID=tile (one tile per CTA, main) | dynamic1 (one Q buffer);
#        DILATED_FA3_CAUSAL_KEYS=128 (main's key block) | 176 (forced for every causal d128 launch: tests);
#        DILATED_FA3_CAUSAL_CTAS=n (grid cap: many tiles per CTA in small tests).
#   1. float64 tests concurrently: the whole test_fa3_forward (2 shards), causal cases with KEYS=176 + CTAS=3
#      and with CTAS=3, test_fa3_window causal with CTAS=3 and with KEYS=176 + CTAS=3; racecheck + memcheck on
#      dense_d128_causal bf16 (CTAS=4) with 128 and with 176 keys
#   2. timings: causal d128 tile128 (= main) / dyn128 / dyn176 (default) / tile176 / dyn128 one Q, repeats;
#      d256 tile vs dynamic; dense d128 once
#   3. peers: h100_fa3_peers.py (ours = default) causal + dense d128 with cuDNN/FA2 in this call
#   4. ncu --clock-control none on one causal d128 launch (default) if time is left
#   bash .deps/fa3causal-run/driver2.sh OUT
set -uo pipefail
D=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3causal}; mkdir -p "$O"
B=/tmp/fa3causal-bin; rm -rf $B; mkdir -p $B; tar xJf "$D/bins.tar.xz" -C $B
export LD_LIBRARY_PATH=$B:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
cp "$0" "$O/driver.sh"
T0=$(date +%s); END=$((T0 + 143))
left() { echo $(( END - $(date +%s) )); }
lim() { local l; l=$(left); [ "$l" -lt 1 ] && l=1; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
el() { echo "[$(( $(date +%s) - T0 )) s]"; }
summ() { echo "$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' "$1" | sed 's/, where.*//' | sort -u | head -6; }
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
echo "=== 1. float64 tests (concurrent) + sanitizers ==="
FC='*causal*:-*block_sparse*:*dropout*'
names=(); pids=()
run() {  # name timeout [VAR=value ...] -- binary args...
  local name=$1 to=$2; shift 2; local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  env ${envs[@]+"${envs[@]}"} timeout $to "$@" > "$O/$name.log" 2>&1 & names+=("$name"); pids+=($!)
}
run fwd_all0 68 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=0 -- "$B/test_fa3_forward" --gtest_color=no
run fwd_all1 68 GTEST_TOTAL_SHARDS=2 GTEST_SHARD_INDEX=1 -- "$B/test_fa3_forward" --gtest_color=no
run fwd_k176_cta3 60 DILATED_FA3_CAUSAL_KEYS=176 DILATED_FA3_CAUSAL_CTAS=3 -- "$B/test_fa3_forward" --gtest_color=no --gtest_filter='*causal*:-*block_sparse*'
run fwd_cta3 60 DILATED_FA3_CAUSAL_CTAS=3 -- "$B/test_fa3_forward" --gtest_color=no --gtest_filter="$FC"
run win_cta3 60 DILATED_FA3_CAUSAL_CTAS=3 -- "$B/test_fa3_window" --gtest_color=no --gtest_filter='*causal*:-*dropout*'
run win_k176_cta3 60 DILATED_FA3_CAUSAL_KEYS=176 DILATED_FA3_CAUSAL_CTAS=3 -- "$B/test_fa3_window" --gtest_color=no --gtest_filter='*causal*:-*dropout*'
for k in 128 176; do
  ( for tool in racecheck memcheck; do
      DILATED_FA3_CAUSAL_KEYS=$k DILATED_FA3_CAUSAL_CTAS=4 timeout 28 compute-sanitizer --tool $tool --error-exitcode 9 \
        "$B/test_fa3_forward" --gtest_color=no --gtest_filter='*/dense_d128_causal_bf16' > "$O/san_${tool}_k$k.log" 2>&1
      echo "rc=$?" >> "$O/san_${tool}_k$k.log"
    done ) & names+=("san_k$k"); pids+=($!)
done
for i in "${!pids[@]}"; do
  wait ${pids[$i]}; rc=$?; n=${names[$i]}
  if [ "${n#san_}" != "$n" ]; then
    for tool in racecheck memcheck; do f="$O/san_${tool}_${n#san_}.log"
      echo "$tool ${n#san_} $(tail -n1 "$f") $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -n1) $(grep -E '^\[  (PASSED|FAILED) ' "$f" | tr '\n' ' ')"; done
  else
    echo "$n rc=$rc $(summ "$O/$n.log") $(el)"
  fi
done
el
bench() {  # label filter [env...]
  local label=$1 filter=$2; shift 2
  env "$@" timeout $(lim 25) "$B/bench_fa3" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 d\3#' \
    | awk -v l="$label" '{printf "%-10s %s %s %7s ms %s\n", l, $1, $2, $3, $(NF-2)}'
}
P='BM_Fa3Forward/kind:1/batch:1/seq:16384/heads:16'
echo "=== 2. timings (k1 causal; k0 dense) ==="
bench tile128 "$P/dim:(128|256)/" DILATED_FA3_CAUSAL_GRID=tile DILATED_FA3_CAUSAL_KEYS=128
bench dyn128 "$P/dim:(128|256)/" DILATED_FA3_CAUSAL_KEYS=128
bench dyn176 "$P/dim:128/"
bench tile176 "$P/dim:128/" DILATED_FA3_CAUSAL_GRID=tile
bench dyn128_1q "$P/dim:128/" DILATED_FA3_CAUSAL_GRID=dynamic1 DILATED_FA3_CAUSAL_KEYS=128
bench tile128b "$P/dim:128/" DILATED_FA3_CAUSAL_GRID=tile DILATED_FA3_CAUSAL_KEYS=128
bench dyn176b "$P/dim:128/"
bench dyn128b "$P/dim:128/" DILATED_FA3_CAUSAL_KEYS=128
bench dense 'BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/'
el
echo "=== 3. peers (ours = default) ==="
timeout $(lim 40) python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/" > "$O/peers.log" 2>&1
echo "peers rc=$?"; grep -E '^(dense|causal) ' "$O/peers.log"
el
echo "=== 4. ncu causal d128 (default) ==="
if [ "$(left)" -ge 16 ]; then
  timeout $(lim 30) ncu --clock-control none -k regex:forward_kernel --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section LaunchStats \
    --metrics sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_active.min,dram__bytes_read.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum \
    -f -o "$O/ncu_dyn176" "$B/bench_fa3" --benchmark_filter="$P/dim:128/" > "$O/ncu_dyn176.log" 2>&1
  echo "ncu rc=$? $(el)"
  if [ -f "$O/ncu_dyn176.ncu-rep" ]; then
    ncu -i "$O/ncu_dyn176.ncu-rep" --page details --print-details all > "$O/ncu_dyn176_details.txt" 2>&1
    grep -E 'Duration|SM Frequency|SM Active Cycles|sm__cycles_active|dram__bytes|lts__t_sector_hit|smsp__inst_executed|Pipe Tensor Cycles|Grid Size|Dynamic Shared' "$O/ncu_dyn176_details.txt" | head -14
    rm -f "$O/ncu_dyn176.ncu-rep"
  fi
else echo "ncu skipped"; fi
el
cd "$O" && tar -czf "$O/all.tar.gz" --remove-files $(ls | grep -v '^all.tar.gz$')
ls -la "$O"

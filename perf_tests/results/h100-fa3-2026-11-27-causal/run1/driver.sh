#!/usr/bin/env bash
# fa3causal request 1 (one H100, <= 150 s): cuda_fa3 causal forward d128 16K vs cuDNN (issue 4).
#   One binary set (branch h/fa3causal): causal launches (head_dim 128/256) run the new persistent grid
#   with an atomic tile counter (forward_kernel.cuh produce_dynamic_tiles), 2 Q buffers at d128;
#   DILATED_FA3_CAUSAL_GRID=tile restores one tile per CTA (= main), =dynamic1 one Q buffer.
#   Non-causal kernels are unchanged (separate instantiation).
#   1. float64 tests concurrently: causal forward cases (default grid, and DILATED_FA3_CAUSAL_CTAS=3 so
#      every case runs many tiles per CTA), causal window cases (CTAS=3); racecheck + memcheck on
#      dense_d128_causal bf16 with CTAS=4 (12 tiles per CTA)
#   2. timings: tile / dynamic (default section: 4 heads at d128 16K) / one section / sections of 2, 8 heads /
#      dynamic1 (causal d128; d256 tile vs dynamic), interleaved repeats, dense d128 once (unchanged kernel)
#   3. peers: h100_fa3_peers.py (ours = default dynamic) causal + dense d128 with cuDNN/FA2 in this call
#   4. ncu --clock-control none, one launch of causal d128: dynamic with source counters, then tile (base)
#      without them if time is left (SOL, warp state, per-SM active cycles min/avg/max, DRAM bytes, L2 hit rate)
#   bash .deps/fa3causal-run/driver1.sh OUT
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
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; } > "$O/machine.txt" 2>&1
cat "$O/machine.txt"
echo "=== 1. float64 tests (concurrent) + sanitizers ==="
FC='*causal*:-*block_sparse*:*dropout*'
pids=()
timeout 50 "$B/test_fa3_forward" --gtest_color=no --gtest_filter="$FC:Fa3CausalOrder*" > "$O/t_fwd.log" 2>&1 & pids+=($!)
DILATED_FA3_CAUSAL_CTAS=3 timeout 50 "$B/test_fa3_forward" --gtest_color=no --gtest_filter="$FC" > "$O/t_fwd_cta3.log" 2>&1 & pids+=($!)
DILATED_FA3_CAUSAL_CTAS=3 timeout 50 "$B/test_fa3_window" --gtest_color=no --gtest_filter='*causal*:-*dropout*' > "$O/t_win_cta3.log" 2>&1 & pids+=($!)
( for tool in racecheck memcheck; do
    DILATED_FA3_CAUSAL_CTAS=4 timeout 24 compute-sanitizer --tool $tool --error-exitcode 9 "$B/test_fa3_forward" --gtest_color=no \
      --gtest_filter='*/dense_d128_causal_bf16' > "$O/san_$tool.log" 2>&1
    echo "rc=$?" >> "$O/san_$tool.log"
  done ) & pids+=($!)
i=0
for t in t_fwd t_fwd_cta3 t_win_cta3; do
  wait ${pids[$i]}; echo "$t rc=$? $(summ "$O/$t.log") $(el)"; i=$((i+1))
done
wait ${pids[3]}
for tool in racecheck memcheck; do echo "$tool $(tail -n1 "$O/san_$tool.log") $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$O/san_$tool.log" | tail -n1) $(grep -E '^\[  (PASSED|FAILED) ' "$O/san_$tool.log" | tr '\n' ' ')"; done
el
bench() {  # label filter [env...]
  local label=$1 filter=$2; shift 2
  env "$@" timeout $(lim 25) "$B/bench_fa3" --benchmark_filter="$filter" --benchmark_out="$O/bench_$label.json" \
    --benchmark_out_format=json > "$O/bench_$label.log" 2>&1
  grep -E '^BM_' "$O/bench_$label.log" | sed -E 's#BM_Fa3Forward/kind:([0-9])/batch:1/seq:([0-9]+)/heads:16/dim:([0-9]+)/min_time:1.000/manual_time#k\1 d\3#' \
    | awk -v l="$label" '{printf "%-9s %s %s %7s ms %s\n", l, $1, $2, $3, $(NF-2)}'
}
P='BM_Fa3Forward/kind:1/batch:1/seq:16384/heads:16'
echo "=== 2. timings (k1 causal; k0 dense) ==="
bench tile "$P/dim:(128|256)/" DILATED_FA3_CAUSAL_GRID=tile
bench dyn "$P/dim:(128|256)/"
bench dyn_all "$P/dim:128/" DILATED_FA3_CAUSAL_SECTION=0
bench dyn_s2 "$P/dim:128/" DILATED_FA3_CAUSAL_SECTION=2
bench dyn_s8 "$P/dim:128/" DILATED_FA3_CAUSAL_SECTION=8
bench dyn1 "$P/dim:128/" DILATED_FA3_CAUSAL_GRID=dynamic1
bench tile2 "$P/dim:128/" DILATED_FA3_CAUSAL_GRID=tile
bench dyn2 "$P/dim:128/"
bench dense 'BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/'
el
echo "=== 3. peers (ours = default grid) ==="
timeout $(lim 45) python3 "$B/h100_fa3_peers.py" --bench "$B/bench_fa3" --out "$O/peers.json" --no-longnet-peer \
  "--bench-args=--benchmark_filter=BM_Fa3Forward/kind:[01]/batch:1/seq:16384/heads:16/dim:128/" > "$O/peers.log" 2>&1
echo "peers rc=$?"; grep -E '^(dense|causal) ' "$O/peers.log"
el
ncu_run() {  # label timeout [--section X ...] [VAR=value ...]
  local label=$1 to=$2; shift 2
  local secs=() envs=()
  while [ $# -gt 0 ]; do
    case "$1" in --section) secs+=("$1" "$2"); shift 2;; *) envs+=("$1"); shift;; esac
  done
  [ "$(left)" -lt 12 ] && { echo "ncu $label skipped"; return; }
  env ${envs[@]+"${envs[@]}"} timeout $(lim $to) ncu --clock-control none -k regex:forward_kernel --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section LaunchStats ${secs[@]+"${secs[@]}"} --import-source no \
    --metrics sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_active.min,dram__bytes_read.sum,lts__t_sector_hit_rate.pct \
    -f -o "$O/ncu_$label" "$B/bench_fa3" --benchmark_filter="$P/dim:128/" > "$O/ncu_$label.log" 2>&1
  echo "ncu $label rc=$? $(el)"
  if [ -f "$O/ncu_$label.ncu-rep" ]; then
    ncu -i "$O/ncu_$label.ncu-rep" --page details --print-details all > "$O/ncu_${label}_details.txt" 2>&1
    [ ${#secs[@]} -gt 0 ] && ncu -i "$O/ncu_$label.ncu-rep" --page source --csv --print-source sass > "$O/ncu_${label}_sass.csv" 2>/dev/null && gzip -f "$O/ncu_${label}_sass.csv"
    grep -E 'Duration|SM Frequency|Elapsed Cycles|SM Active Cycles|sm__cycles_active|dram__bytes|lts__t_sector_hit|Pipe Tensor|Warp Cycles Per Issued|Grid Size|Registers Per' "$O/ncu_${label}_details.txt" | head -16
    rm -f "$O/ncu_$label.ncu-rep"
  fi
}
echo "=== 4. ncu causal d128 ==="
ncu_run dyn 30 --section SourceCounters
ncu_run tile 20 DILATED_FA3_CAUSAL_GRID=tile
el
cd "$O" && tar -czf "$O/all.tar.gz" --remove-files $(ls | grep -v '^all.tar.gz$')
ls -la "$O"

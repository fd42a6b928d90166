#!/usr/bin/env bash
# fa3dedup request 2 (2026-11-27): LongNet chains in the cuda_fa3 forward, after
# request 1 (chain 57.4 vs dup 65.0 ms at d128): per-tile multiplicity by bit
# masks instead of divisions, and a second Q buffer for the skipping branches
# (DILATED_FA3_LONGNET_Q=1 keeps one). 1) timings, alternating, same binary:
# dup / chain / chain with one Q buffer, LongNet 1M x 16 bf16 d128 and d64;
# 2) the PyTorch reference (h100_fa3_peers.py) with ours (chain) in the same call;
# 3) ncu per branch kernel, dup vs chain d128, while the remaining tests run
# in the background (forward chain/LongNet/wide/dropout cases, MAX_CTAS=3,
# backward chain cases, window LongNet, memcheck).
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3dedup-out}; mkdir -p $O
T0=$(date +%s); END=$((T0 + 145))
left() { echo $((END - $(date +%s))); }
run() {  # seconds, command...: at most the time left before the global deadline
  local t=$1; shift; local l=$(left); [ $l -lt 4 ] && { echo "SKIPPED (deadline): $*"; return 124; }
  [ $t -gt $l ] && t=$l; timeout $t "$@"
}
B=/tmp/fa3dedup-bin; mkdir -p $B; cp $H/*.py $B/
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" $H/bins.tar.xz $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1 DILATED_BENCH_MIN_TIME=0.3
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ncu --version | tail -1; date -u; } > $O/gpu.txt 2>&1; cat $O/gpu.txt
summ() { echo "$1 rc=$2 $(grep -E '^\[  (PASSED|FAILED) ' $3 | tr '\n' ' ') ok=$(grep -cE '^\[       OK' $3)"; grep -E '^\[  FAILED  \] .*/' $3 | sed 's/, where.*//' | sort -u | head -8; }
echo "== LongNet 1M x 16 bf16 forward, min_time 0.3, alternating"
bench() {  # label, env...
  local l=$1; shift
  (export "$@"; run 20 $B/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/' --benchmark_out=$O/ln_$l.json > $O/ln_$l.log 2>&1)
  grep -E '^BM_' $O/ln_$l.log | awk -v l=$l '{print l, $1, $2, $3, $(NF-2)}' | sed 's/batch:1\/seq:1048576\/heads:16\///; s/\/min_time:0.300\/manual_time//'
}
for round in 1 2; do
  bench dup_$round DILATED_FA3_LONGNET=dup
  bench chain_$round DILATED_FA3_LONGNET=chain
  bench chain1q_$round DILATED_FA3_LONGNET=chain DILATED_FA3_LONGNET_Q=1
done
echo "== PyTorch gather-SDPA-scatter reference, same call (ours: chain, d128)"
run 70 python3 $B/h100_fa3_peers.py --bench $B/bench_fa3 --out $O/peers.json \
  --bench-args="--benchmark_filter=BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128" > $O/peers.log 2>&1
echo "peers rc=$?"
python3 - $O/peers.json <<'PY'
import json,sys
try:
    d=json.load(open(sys.argv[1])); t=d.get("torch_longnet") or {}
    print("torch LongNet bf16 fwd ms", round(t.get("torch_longnet_bf16_fwd_s",0)*1e3,2), "peak GiB", t.get("peak_gib"))
    for r in d["rows"]: print(r["case"], "ours ms", round(r["ours_ms"],2), "ratio", r.get("ratio"))
except Exception as e: print("peers.json:", e)
PY
echo "== background tests + ncu per branch (d128, second call's 5 launches)"
F='*chain*:*longnet*:*nested*:*wide_blocks*:*causal_many*:*dropout*'
( run 60 $B/test_fa3_forward --gtest_color=no --gtest_filter="$F" > $O/test_fa3_forward.log 2>&1; echo $? > $O/rc_fwd ) &
( export DILATED_FA3_MAX_CTAS=3; run 60 $B/test_fa3_forward --gtest_color=no --gtest_filter='*chain*:*longnet*:*nested*' > $O/test_fa3_forward_ctas3.log 2>&1; echo $? > $O/rc_ctas3 ) &
( run 60 $B/test_fa3_backward --gtest_color=no --gtest_filter='*chain*' > $O/test_fa3_backward.log 2>&1; echo $? > $O/rc_bwd ) &
( run 60 $B/test_fa3_window --gtest_color=no --gtest_filter='*longnet*' > $O/test_fa3_window.log 2>&1; echo $? > $O/rc_win ) &
( run 60 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward --gtest_color=no --gtest_filter='*chain_r124_partial_d64_bf16:*longnet_d128_fp16:*chain_r248_d128_bf16' > $O/memcheck.log 2>&1; echo $? > $O/rc_mem ) &
for l in dup chain; do
  (export DILATED_FA3_LONGNET=$l DILATED_BENCH_MIN_TIME=0.05; run 30 ncu --clock-control none -k regex:forward_kernel --launch-skip 5 --launch-count 5 \
    --metrics gpu__time_duration.sum,sm__inst_executed.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__cycles_elapsed.avg.per_second \
    --csv $B/bench_fa3 --benchmark_filter='BM_Fa3Forward/kind:2/.*dim:128' > $O/ncu_$l.csv 2> $O/ncu_$l.err)
  echo "ncu $l rc=$?"
  python3 - $O/ncu_$l.csv $l <<'PY'
import csv,sys
rows=[r for r in csv.reader(open(sys.argv[1])) if len(r)>10]
if not rows: print("no ncu rows"); sys.exit()
h=rows[0]; I=lambda n:h.index(n)
by={}
for r in rows[1:]:
    by.setdefault(r[I("ID")],{})[r[I("Metric Name")]]=(r[I("Metric Value")],r[I("Metric Unit")])
for i,(k,v) in enumerate(sorted(by.items(), key=lambda x:int(x[0]))):
    print(sys.argv[2], "launch", i, " ".join("%s=%s%s"%(m.split("__")[1][:22],v[m][0],v[m][1]) for m in sorted(v)))
PY
done
wait
summ forward_chain_longnet $(cat $O/rc_fwd) $O/test_fa3_forward.log
summ forward_ctas3 $(cat $O/rc_ctas3) $O/test_fa3_forward_ctas3.log
summ backward_chain $(cat $O/rc_bwd) $O/test_fa3_backward.log
summ window_longnet $(cat $O/rc_win) $O/test_fa3_window.log
echo "memcheck rc=$(cat $O/rc_mem) $(grep -E 'ERROR SUMMARY' $O/memcheck.log | tail -n 1) ok=$(grep -cE '^\[       OK' $O/memcheck.log)"
echo "wall $(( $(date +%s) - T0 )) s"
cd $O && tar -czf $O/all.tar.gz --remove-files gpu.txt rc_* *.log *.json *.csv *.err 2>/dev/null; ls $O

#!/usr/bin/env bash
# fa3sched request 1 (2026-11-27): LongNet group schedule (one launch for the
# nested branches, dedup of keys several branches list) and block-sparse
# per-tile counts + run lookahead, against the committed forward (bench_fa3_old,
# HEAD 731ed77) and the PyTorch gather-SDPA-scatter reference in the same call.
H=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/fa3sched}; mkdir -p $O
# The binaries travel xz-compressed (the carry limit); unpack next to the scripts.
B=/tmp/fa3sched-bin; mkdir -p $B; cp $H/*.py $B/
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" $H/bins.tar.xz $B || echo "UNPACK FAILED"
export LD_LIBRARY_PATH=$B PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt
summ() { echo "$1 rc=$2 $(grep -E '^\[  (PASSED|FAILED) ' $3 | tr '\n' ' ')"; grep -E '^\[  FAILED  \] .*/' $3 | sed 's/, where.*//' | sort -u | head -6; }
echo "== correctness (float64 reference)"
for m in dedup group branches; do
  f='*'; [ $m != dedup ] && f='*longnet*:*group_partial*:*group_r0*:*group_then*'
  DILATED_FA3_LONGNET=$m timeout 200 $B/test_fa3_forward --gtest_color=no --gtest_filter="$f" > $O/test_fa3_forward_$m.log 2>&1; summ "forward[$m]" $? $O/test_fa3_forward_$m.log
done
for t in test_fa3_window test_fa3_block_sparse; do
  timeout 200 $B/$t --gtest_color=no > $O/$t.log 2>&1; summ $t $? $O/$t.log
done
echo "== compute-sanitizer memcheck (small shapes)"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_fa3_forward --gtest_filter='*group_r0_2_d64_bf16:*longnet_d128_bf16:*longnet5_d256_fp16:*block_sparse_random90_d128_bf16:*block_sparse_rect_d256_causal_fp16' > $O/memcheck.log 2>&1
echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $O/memcheck.log | tail -n 1) $(grep -cE '^\[       OK' $O/memcheck.log) ok"
echo "== LongNet 1M x 16, bf16: old (committed) vs new schedules, whole forward"
F='BM_Fa3Forward/kind:2/'
bench() {  # label, binary, extra env...
  local l=$1 b=$2; shift 2
  env "$@" timeout 60 $B/$b --benchmark_filter="$F" --benchmark_min_time=0.3 --benchmark_out=$O/ln_$l.json > $O/ln_$l.log 2>&1
  grep -E '^BM_' $O/ln_$l.log | awk -v l=$l '{print l, $1, $2, $3}' | sed 's/batch:1\/seq:1048576\/heads:16\///; s/\/min_time:0.300\/manual_time//'
}
bench old bench_fa3_old
bench new_dedup bench_fa3 DILATED_FA3_LONGNET=dedup
bench new_group bench_fa3 DILATED_FA3_LONGNET=group
bench new_branches bench_fa3 DILATED_FA3_LONGNET=branches
echo "== per launch: skipped by the lead (device budget)"
echo "== block-sparse 90% vs dense x density (old, new, old)"
for l in old new; do
  b=bench_fa3; [ $l != new ] && b=bench_fa3_old
  timeout 90 $B/$b --benchmark_filter='BM_Fa3BlockSparseVsDense' --benchmark_min_time=0.3 --benchmark_out=$O/bs_$l.json > $O/bs_$l.log 2>&1
  grep -E '^BM_' $O/bs_$l.log | sed 's/\/min_time:0.300\/manual_time//' | awk -v l=$l '{print l, $1, $2, $3, $(NF-3), $(NF-2), $(NF-1)}'
done
echo "== dense/causal d128 16K (regression check of the walk refactor)"
for l in old new; do
  b=bench_fa3; [ $l = old ] && b=bench_fa3_old
  timeout 60 $B/$b --benchmark_filter='BM_Fa3Forward/kind:[01]/.*dim:128' --benchmark_min_time=0.3 > $O/dense_$l.log 2>&1
  grep -E '^BM_' $O/dense_$l.log | awk -v l=$l '{print l, $1, $2, $3, $(NF-1)}'
done
echo "== PyTorch reference in the same call (h100_fa3_peers.py, new bench_fa3 LongNet d128)"
timeout 200 python3 $B/h100_fa3_peers.py --bench $B/bench_fa3 --out $O/peers.json \
  --bench-args="--benchmark_filter=BM_Fa3Forward/kind:2/batch:1/seq:1048576/heads:16/dim:128 --benchmark_min_time=0.3" > $O/peers.log 2>&1
echo "peers rc=$?"; grep -iE "longnet|peak|torch" $O/peers.log | tail -5
python3 - $O/peers.json <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); t=d.get("torch_longnet") or {}
print("torch LongNet bf16 fwd ms", round(t.get("torch_longnet_bf16_fwd_s",0)*1e3,2), "peak GiB", t.get("peak_gib"))
for r in d["rows"]: print(r["case"], "ours ms", round(r["ours_ms"],2), "ratio", r.get("ratio"))
PY
date -u

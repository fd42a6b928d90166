#!/usr/bin/env bash
# src/dist on a machine of several GPUs, one process a GPU, in one call
# (issue 7): the NCCL sequence-parallel tests at every power-of-two rank count
# the machine holds, compute-sanitizer over a two-rank run, weak and strong
# scaling series of bench_seq_parallel_nccl (tokens/s, FLOP rate per GPU,
# efficiency, share of the transfers hidden), and cuda_fa3 on every GPU at
# once. Tables on stdout; logs, JSONL and the tables in OUT.
#
#   perf_tests/run_multi_gpu.sh BIN OUT [quick|bf16]
#
# BIN holds test_nccl_multi_rank and bench_seq_parallel_nccl (built against a
# CUDA Kokkos with -DDILATED_ENABLE_NCCL=ON), optionally bench_fa3 and the
# shared libraries they need (libcudart, libbenchmark); NCCL comes from the
# machine (/usr/local/cuda). `quick` runs the tests and one small series.
# `bf16` runs the series with bf16 tensors, which the ranks compute with the
# windowed cuda_fa3 calls (dispatch/window_plan.hpp), sized for H100 rates,
# and compute-sanitizer memcheck and racecheck over a 2-rank bf16 run (BIN
# built with DILATED_ENABLE_CUDA too). SANITIZE=0 skips compute-sanitizer.
# NCCL_NVLS_ENABLE=0 throughout (launch_ranks.sh). BENCH_ARGS are added to
# every bench_seq_parallel_nccl call (e.g. --phases: the backward's time per
# phase, one extra fenced call per point; a table of them follows).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "$1" && pwd)
out=$2
mode=${3:-full}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bin:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0 NCCL_DEBUG=${NCCL_DEBUG:-WARN}
launch=perf_tests/launch_ranks.sh
ngpu=$(nvidia-smi -L | wc -l)

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
  nvidia-smi topo -m
  command -v mpirun > /dev/null && mpirun --version 2>&1 | head -n 1 || echo "no mpirun: plain launcher"
  NCCL_DEBUG=VERSION DILATED_LAUNCH_TIMEOUT=120 $launch 1 "$bin/test_nccl_multi_rank" \
    --gtest_filter='NcclMultiRank.RingStep*' 2>&1 | grep -m1 "NCCL version"
} 2>&1 | tee "$out/machine.txt"

ranks=()
for p in 1 2 4 8; do [ "$p" -le "$ngpu" ] && ranks+=("$p"); done

echo "=== correctness: test_nccl_multi_rank at P = ${ranks[*]} ==="
for p in "${ranks[@]}"; do
  DILATED_LAUNCH_TIMEOUT=600 $launch "$p" "$bin/test_nccl_multi_rank" --gtest_color=no \
    > "$out/test_np$p.log" 2>&1
  rc=$?
  echo "P=$p rc=$rc $(grep -E '^\[  (PASSED|FAILED) |tests ran|SKIPPED \]' "$out/test_np$p.log" \
    | tr '\n' ' ')"
done

if [ -x "$bin/bench_fa3" ] && [ "$mode" != quick ]; then
  echo "=== cuda_fa3 forward on every GPU at once (bf16, d128, N = 16K) ==="
  for ((g = 0; g < ngpu; ++g)); do
    CUDA_VISIBLE_DEVICES=$g "$bin/bench_fa3" --benchmark_filter='BM_Fa3Forward/kind:0/batch:1/seq:16384/heads:16/dim:128/' \
      --benchmark_min_time=0.5 --benchmark_out="$out/fa3_gpu$g.json" \
      --benchmark_out_format=json > "$out/fa3_gpu$g.log" 2>&1 &
  done
  wait
  for ((g = 0; g < ngpu; ++g)); do
    echo "GPU $g: $(grep -E '^BM_Fa3Forward' "$out/fa3_gpu$g.log" | head -n 1 | tr -s ' ' | tr '\n' ' ')"
  done
fi

series=$out/scaling.jsonl
: > "$series"
bench() {  # bench P LABEL ARGS...
  local p=$1 label=$2
  shift 2
  DILATED_LAUNCH_TIMEOUT=600 $launch "$p" "$bin/bench_seq_parallel_nccl" --label "$label" "$@" \
    ${BENCH_ARGS:-} > "$out/bench.tmp" 2> "$out/bench.err"
  local rc=$?
  python3 - "$out/bench.tmp" "$series" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
start = text.find("{")
if start >= 0:
    rec = json.loads(text[start:text.rfind("}") + 1])
    open(sys.argv[2], "a").write(json.dumps(rec) + "\n")
PY
  [ "$rc" -eq 0 ] || { echo "bench P=$p $label failed (rc=$rc):"; tail -n 5 "$out/bench.err"; }
  cat "$out/bench.err" >> "$out/bench_stderr.log"
}

# LongNet's branches (w = 2048..32768, r = 1, 2, 4, 6, 12) plus a branch over
# the whole sequence whose sparsified segment keeps 4096 rows (r = N / 4096):
# it spans every rank, as LongNet's largest segment does at scale.
longnet="2048:1,4096:2,8192:4,16384:6,32768:12,N:N/4096"
if [ "$mode" = bf16 ]; then
  # cuda_fa3 takes dilations up to 16, so the global branch keeps r = N / 16384
  # (<= 16 up to 4 GPUs at 64K tokens each): it spans every rank.
  longnet16="2048:1,4096:2,8192:4,16384:6,32768:12,N:N/16384"
  echo "=== weak scaling, bf16 on cuda_fa3 (fixed tokens per GPU) ==="
  for p in "${ranks[@]}"; do
    bench "$p" weak-longnet-bf16 --dtype bf16 --seq-per-rank 65536 --heads 16 --dim 128 \
      --branches "$longnet16" --iters 3
  done
  for p in "${ranks[@]}"; do
    bench "$p" weak-causal-zigzag-bf16 --dtype bf16 --seq-per-rank 16384 --heads 16 --dim 128 \
      --branches N:1 --causal --zigzag --iters 3
  done
  echo "=== strong scaling, bf16 on cuda_fa3 (fixed length) ==="
  for p in "${ranks[@]}"; do
    bench "$p" strong-longnet-256K-bf16 --dtype bf16 --seq 262144 --heads 16 --dim 128 \
      --branches "2048:1,4096:2,8192:4,16384:6,32768:12,N:16" --iters 3
  done
  for p in "${ranks[@]}"; do
    bench "$p" strong-causal-zigzag-64K-bf16 --dtype bf16 --seq 65536 --heads 16 --dim 128 \
      --branches N:1 --causal --zigzag --iters 3
  done
elif [ "$mode" = quick ]; then
  for p in "${ranks[@]}"; do
    bench "$p" weak-longnet-quick --seq-per-rank 8192 --heads 4 --dim 64 \
      --branches "2048:1,4096:2,8192:4,N:N/2048" --iters 1
  done
else
  echo "=== weak scaling (fixed tokens per GPU) ==="
  for p in "${ranks[@]}"; do
    bench "$p" weak-longnet --seq-per-rank 32768 --heads 16 --dim 128 --branches "$longnet" --iters 2
  done
  for p in "${ranks[@]}"; do
    bench "$p" weak-causal-zigzag --seq-per-rank 8192 --heads 16 --dim 128 --branches N:1 \
      --causal --zigzag --iters 2
  done
  for p in "${ranks[@]}"; do
    bench "$p" weak-causal-contiguous --seq-per-rank 8192 --heads 16 --dim 128 --branches N:1 \
      --causal --iters 2
  done
  echo "=== strong scaling (fixed length, 4M tokens) ==="
  for p in "${ranks[@]}"; do
    bench "$p" strong-longnet-4M --seq 4194304 --heads 2 --dim 64 --branches "$longnet" --iters 1
  done
fi

python3 - "$series" "$out/scaling_tables.md" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lines = []
for label in dict.fromkeys(r["label"] for r in recs):
    rs = sorted((r for r in recs if r["label"] == label), key=lambda r: r["ranks"])
    base = next((r for r in rs if r["ranks"] == 1), None)
    weak = label.startswith("weak")
    lines.append(f"\n{label}: {rs[0]['branches']}, causal={rs[0]['causal']}, "
                 f"zigzag={rs[0]['zigzag']}, H={rs[0]['heads']}, d={rs[0]['dim']}, "
                 f"{rs[0]['dtype']} on {rs[0]['backend']}")
    # Weak series: two efficiencies. By FLOP rate per GPU vs one GPU, and by
    # time (ideal weak scaling: the same time per call at every size). They
    # differ when a series' work per GPU is not constant (LongNet's global
    # branch: (N/r)^2 pairs in all, so less per GPU as GPUs are added; causal
    # dense: more). Strong series: speed-up / GPUs.
    eff_head = "efficiency (FLOP rate) | efficiency (time)" if weak else "efficiency (speed-up / GPUs)"
    lines.append("| GPUs | N | fwd s | bwd s | fwd+bwd tokens/s | fwd+bwd TFLOP/s/GPU | "
                 + eff_head + " | fwd comm exposed/alone ms (hidden) | "
                 "bwd comm exposed/alone ms (hidden) | bwd MB sent/rank |")
    lines.append("|---|---|---|---|---|---|---|" + ("---|" if weak else "") + "---|---|---|")
    for r in rs:
        t = r["forward_s"] + r.get("backward_s", 0)
        tok = r["seq"] * r["batch"] / t
        rate = r.get("fwd_bwd_tflops_per_gpu", r["forward_tflops_per_gpu"])
        eff = ""
        if base:
            bt = base["forward_s"] + base.get("backward_s", 0)
            btok = base["seq"] * base["batch"] / bt
            brate = base.get("fwd_bwd_tflops_per_gpu", base["forward_tflops_per_gpu"])
            # weak: FLOP rate per GPU vs one GPU; strong: speed-up / GPUs
            eff = (f"{rate / brate:.3f} | {bt / t:.3f}" if weak
                   else f"{tok / btok / r['ranks']:.3f}")
        elif weak:
            eff = " | "
        lines.append(f"| {r['ranks']} | {r['seq']} | {r['forward_s']:.4f} | "
                     f"{r.get('backward_s', 0):.4f} | {tok:.4g} | {rate:.4f} | {eff} | "
                     f"{1e3 * r['forward_exposed_comm_s']:.2f}/{1e3 * r['forward_comm_alone_s']:.2f}"
                     f" ({r['forward_hidden_fraction']:.2f}) | "
                     f"{1e3 * r.get('backward_exposed_comm_s', 0):.2f}/"
                     f"{1e3 * r.get('backward_comm_alone_s', 0):.2f}"
                     f" ({r.get('backward_hidden_fraction', 0):.2f}) | "
                     f"{r.get('backward_bytes_sent_max_rank', 0) / 1e6:.1f} |")
phased = [r for r in recs if "backward_phases_ms_max_rank" in r]
if phased:
    names = list(phased[0]["backward_phases_ms_max_rank"])
    lines.append("\nbackward by phase (one extra call with a fence at every phase boundary, "
                 "ms, max over ranks per phase):")
    lines.append("| series | GPUs | bwd ms | fenced call ms | " + " | ".join(names) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(names))
    for r in phased:
        ph = r["backward_phases_ms_max_rank"]
        lines.append(f"| {r['label']} | {r['ranks']} | {1e3 * r['backward_s']:.1f} | "
                     f"{1e3 * r['backward_phased_s']:.1f} | "
                     + " | ".join(f"{ph[n]:.1f}" for n in names) + " |")
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY

if [ "${SANITIZE:-1}" = 0 ]; then
  echo "(compute-sanitizer skipped: SANITIZE=0)"
elif command -v compute-sanitizer > /dev/null && [ "$ngpu" -ge 2 ] && [ "$mode" = bf16 ]; then
  # The bf16 ranks on cuda_fa3 (windowed calls, ring exchange): memory errors
  # (API errors off: NCCL's probes fail by design) and shared-memory races.
  echo "=== compute-sanitizer memcheck and racecheck, 2 ranks, bf16 on cuda_fa3 ==="
  for tool in memcheck racecheck; do
    DILATED_LAUNCH_TIMEOUT=${MEMCHECK_TIMEOUT:-150} $launch 2 compute-sanitizer --tool $tool \
      $( [ $tool = memcheck ] && echo --report-api-errors no ) --error-exitcode 9 \
      "$bin/test_nccl_multi_rank" --gtest_color=no \
      --gtest_filter='NcclMultiRank.RingStep*:NcclMultiRank.Bf16Small*' \
      > "$out/${tool}_np2_bf16.log" 2>&1
    echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/${tool}_np2_bf16.log" \
      | sort | uniq -c | tr '\n' ' ') $(grep -E '^\[  (PASSED|FAILED) ' "$out/${tool}_np2_bf16.log" \
      | sort | uniq -c | tr '\n' ' ')"
    grep -m 8 -E '^========= (Program hit|Invalid|Error|Race|    Saved host|Host Frame)' \
      "$out/${tool}_np2_bf16.log" || true  # (no match: nothing to show, not a failure)
  done
elif command -v compute-sanitizer > /dev/null && [ "$ngpu" -ge 2 ]; then
  # Twice: as is (CUDA API errors count - NCCL probes peer access and the
  # like, which fail by design), and with API errors off (memory errors only).
  echo "=== compute-sanitizer memcheck, 2 ranks (ring step + the small float64 cases) ==="
  for api in yes no; do
    DILATED_LAUNCH_TIMEOUT=${MEMCHECK_TIMEOUT:-150} $launch 2 compute-sanitizer --tool memcheck \
      --report-api-errors "$( [ $api = yes ] && echo explicit || echo no )" --error-exitcode 9 \
      "$bin/test_nccl_multi_rank" --gtest_color=no \
      --gtest_filter='NcclMultiRank.RingStep*:NcclMultiRank.Shards*' \
      > "$out/memcheck_np2_api_$api.log" 2>&1
    echo "api errors reported: $api, rc=$? $(grep -E 'ERROR SUMMARY' "$out/memcheck_np2_api_$api.log" \
      | sort | uniq -c | tr '\n' ' ')"
    grep -m 12 -E '^========= (Program hit|Invalid|Error|    Saved host|Host Frame)' \
      "$out/memcheck_np2_api_$api.log"
  done
fi

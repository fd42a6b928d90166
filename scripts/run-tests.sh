#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, builds
# (CI preset), runs ctest, proves the installed package works for a consumer
# (examples/ built against it, demo run), smoke-runs the benchmarks, then
# builds and runs the suite again under ASan+UBSan, the concurrency tests under
# TSan, and a bounded libFuzzer campaign.
#   DILATED_SKIP_SANITIZERS=1  skip the sanitizer stages (ASan + UBSan, TSan)
#   DILATED_SKIP_FUZZ=1        skip the libFuzzer campaign
#   DILATED_FUZZ_SECONDS=N     its length (default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
deps=$(scripts/install-deps.sh | tail -n1)
export DILATED_DEPS_PREFIX=$deps
export OMP_PROC_BIND=${OMP_PROC_BIND:-false} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
step() { printf '\n=== %s ===\n' "$*"; }

step "configure + build (preset ci)"
cmake --preset ci
cmake --build --preset ci

step "unit tests"
ctest --preset ci

step "install, then build examples/ against the installed package"
rm -rf build/install-ci
cmake --install build/ci --prefix build/install-ci
cmake -S examples -B build/examples-ci -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS=-march=native -DCMAKE_PREFIX_PATH="$root/build/install-ci;$deps"
cmake --build build/examples-ci
OMP_NUM_THREADS=2 build/examples-ci/longnet_demo --seq 16384 --heads 2 --backward

step "benchmark smoke run (JSON out)"
OMP_NUM_THREADS=2 build/ci/perf_tests/bench_attention \
  --benchmark_filter='BM_Attention/kind:2/seq:16384/heads:4/dim:64/bwd:0' \
  --benchmark_min_time=0.01 --benchmark_out=build/ci/bench_smoke.json --benchmark_out_format=json
grep -q '"GFLOP/s"' build/ci/bench_smoke.json
# src/memory: pool latency and the LongNet-trace fragmentation (JSON out, table printed).
build/ci/perf_tests/memory/bench_memory \
  --benchmark_filter='BM_(Malloc|Pool)/4096$|BM_AttentionTraceFragmentation' \
  --benchmark_min_time=0.01 --benchmark_out=build/ci/bench_memory_smoke.json --benchmark_out_format=json
grep -q '"fragmentation"' build/ci/bench_memory_smoke.json
# src/dist: the ring's comm/compute overlap on 2 MPI ranks (JSON out).
OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  mpirun -np 2 --oversubscribe --bind-to none build/ci/perf_tests/dist/bench_dist_overlap \
  --seq 4096 --heads 2 --dim 32 --branches 512:1,4096:4 --iters 1 --progress-thread \
  > build/ci/bench_dist_smoke.json
grep -q '"forward_hidden_fraction"' build/ci/bench_dist_smoke.json
# (the backward with the final accumulator return overlapped, and the earlier schedule)
grep -q '"backward_eager_return_hidden_fraction"' build/ci/bench_dist_smoke.json

# src/dist's NCCL transport and its one-rank tests must compile wherever NCCL is
# installed (they run on the GPU machine: perf_tests/run_h100_nccl.sh).
if [ -f /usr/local/cuda/include/nccl.h ]; then
  step "compile the NCCL transport and its tests (no GPU needed)"
  cmake -S . -B build/ci-nccl -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$deps" \
    -DCUDAToolkit_ROOT=/usr/local/cuda -DDILATED_ENABLE_NCCL=ON -DDILATED_ENABLE_TESTS=ON \
    -DDILATED_ENABLE_BENCHMARKS=ON
  cmake --build build/ci-nccl --target test_nccl_one_rank test_nccl_multi_rank \
    bench_seq_parallel_nccl
  # The multi-GPU entry skips without a GPU; prove the launcher passes ranks
  # and exit codes through (perf_tests/run_multi_gpu.sh uses it on GPU machines).
  DILATED_LAUNCHER=plain perf_tests/launch_ranks.sh 2 bash -c \
    '[ "$DILATED_WORLD_SIZE" = 2 ] && [ -d "$DILATED_NCCL_ID_DIR" ] && [ "$NCCL_NVLS_ENABLE" = 0 ]'
  if DILATED_LAUNCHER=plain perf_tests/launch_ranks.sh 2 bash -c '[ "$DILATED_RANK" = 0 ]' \
    2> /dev/null; then
    echo "launch_ranks.sh hid a failing rank" >&2
    exit 1
  fi
fi

# src/cuda_fa3 (the H100 backend) must compile wherever nvcc is; its tests
# skip themselves without a compute capability 9.x GPU (they run on the H100:
# perf_tests/run_h100_fa3.sh).
if [ -x /usr/local/cuda/bin/nvcc ]; then
  step "compile cuda_fa3 for sm_90a and run its tests (skipped without an H100)"
  cmake -S . -B build/ci-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$deps" \
    -DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DDILATED_ENABLE_CUDA=ON -DDILATED_ENABLE_TESTS=ON \
    -DDILATED_ENABLE_BENCHMARKS=ON
  cmake --build build/ci-cuda --target test_fa3_forward test_fa3_backward test_fa3_support \
    bench_fa3 bench_gpu_reference test_auto_plan
  (cd build/ci-cuda && ctest -L cuda --output-on-failure)
fi

if [ "${DILATED_SKIP_SANITIZERS:-0}" != 1 ]; then
  step "ASan + UBSan build of the suite"
  cmake --preset asan
  cmake --build --preset asan
  ctest --preset asan

  # clang + LLVM libomp/Archer against the clang-built Kokkos of install-deps.sh
  # (libgomp's futex synchronisation is invisible to TSan): the concurrency and
  # plan stress tests, the memory pools' tests (8-thread stress included), the
  # MPI transport's progress thread under mpirun -np 2 (MpiCommunicator and
  # SeqParallelPlan forward/backward), and canary races TSan must report, in
  # one process and under mpirun.
  step "TSan build of the concurrency and stress tests, memory pools, MPI progress thread"
  cmake --preset tsan
  cmake --build --preset tsan
  # (The listing is captured first: `ctest | grep -q` under pipefail fails
  # when grep exits at its match and ctest then dies of SIGPIPE.)
  tsan_listed=$(ctest --preset tsan -N)
  for t in dist_np2_progress_thread Concurrency.TsanCanaryUnderMpirun MemoryStress; do
    grep -q "$t" <<< "$tsan_listed" || { echo "TSan stage lacks $t" >&2; exit 1; }
  done
  ctest --preset tsan
fi

if [ "${DILATED_SKIP_FUZZ:-0}" != 1 ]; then
  # Bounded libFuzzer campaigns (ASan + UBSan) from each target's seed corpus;
  # new inputs go to build/fuzz/<new corpus>, a crash to build/fuzz/crash-*.
  #   campaign TARGET SECONDS SEED_CORPUS NEW_CORPUS
  campaign() {
    local target=$1 seconds=$2 seeds=$3 fresh=build/fuzz/$4 status
    step "libFuzzer campaign: $target for $seconds s (ASan + UBSan)"
    mkdir -p "$fresh"
    set +e
    "build/fuzz/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix=build/fuzz/ "$fresh" "$seeds" \
      > "build/fuzz/campaign-$target.log" 2>&1
    status=$?
    set -e
    grep -E "^Done|$target totals|stat::number_of_executed_units" \
      "build/fuzz/campaign-$target.log" || true
    if [ "$status" != 0 ]; then
      tail -n 40 "build/fuzz/campaign-$target.log"
      echo "$target failed (status $status); reproducer in build/fuzz/" >&2
      exit 1
    fi
  }
  cmake --preset fuzz
  cmake --build --preset fuzz
  # Config/shape validation and small Plan calls (fuzz/fuzz_plan.cpp).
  campaign fuzz_plan "${DILATED_FUZZ_SECONDS:-90}" fuzz/corpus corpus-new
  # src/dist's size rules and the sharding they describe (fuzz/fuzz_shard_layout.cpp).
  campaign fuzz_shard_layout 30 fuzz/corpus_shard_layout corpus-shard-new
  # src/memory: allocate/free/limit/release sequences on the TLSF pool and the
  # tracking adaptor, invariants after every step (fuzz/fuzz_pool.cpp).
  campaign fuzz_pool 30 fuzz/corpus_pool corpus-pool-new
fi
step "all test stages passed"

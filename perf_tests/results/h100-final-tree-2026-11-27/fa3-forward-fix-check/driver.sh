#!/usr/bin/env bash
# Lead, 2026-11-27: the suites that call cuda_fa3's forward on the way to
# something else (backward, numerics, AutoPlan), on 257ccf1 - the P V wait fix
# (0124ce5) was tested by its author on the forward, window, window-numerics
# and block-sparse suites only.
B=$(cd "$(dirname "$0")" && pwd); O=${1:-/tmp/bwdcheck}; mkdir -p $O
D=/tmp/leadbin4; mkdir -p $D; tar -xJf $B/bins.tar.xz -C $D && cp $B/*.so* $D/
export LD_LIBRARY_PATH=$D:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $O/gpu.txt; date -u | tee -a $O/gpu.txt
for t in fa3_backward fa3_numerics auto_plan fa3_support; do
  ( timeout 100 $D/test_$t --gtest_color=no > $O/$t.log 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/$t.log | tr '\n' ' ')" > $O/$t.rc ) &
done; wait; cat $O/*.rc; grep -h -E '^\[  FAILED  \] ' $O/*.log | sort -u | head
P=$(dirname $O); tar -czf $P/bwdcheck.tar.gz -C $P $(basename $O)

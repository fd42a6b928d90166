#!/usr/bin/env bash
# Lead, 2026-11-28 (eleventh session), issue 4, call 3: test_fa3_forward whole (and at 3 CTAs) on the final
# tree's library, alone (call 2 ran them beside every other suite and their 200 s timeout cut them at
# 106 / 107 of 124 cases, none failed).
B=$(cd "$(dirname "$0")" && pwd); OUTD=${1:-/tmp/out3}; mkdir -p $OUTD; O=/tmp/run3; mkdir -p $O
N=/tmp/s11c; mkdir -p $N; tar -xJf $B/final.tar.xz -C $N bin new && cp $B/*.so* $N/bin/
X=$N/bin; export LD_LIBRARY_PATH=$N/new:$X:/usr/local/cuda/lib64
T0=$(date +%s); L=$OUTD/log.txt; { date -u; cat $B/final_commit.txt; } > $L
( s=$(date +%s); timeout 400 $X/test_fa3_forward --gtest_color=no > $O/fa3_forward.log 2>&1; echo "fa3_forward rc=$? $(( $(date +%s)-s ))s" > $O/fa3_forward.rc ) &
( export DILATED_FA3_MAX_CTAS=3; s=$(date +%s); timeout 400 $X/test_fa3_forward --gtest_color=no > $O/fa3_forward_cta3.log 2>&1; echo "fa3_forward_cta3 rc=$? $(( $(date +%s)-s ))s" > $O/fa3_forward_cta3.rc ) &
wait
for n in fa3_forward fa3_forward_cta3; do echo "$(cat $O/$n.rc) $(grep -E '^\[  (PASSED|FAILED) ' $O/$n.log | tr '\n' ' ')"; grep -E '^\[  FAILED  \] ' $O/$n.log | head; done | tee -a $L
echo "total $(( $(date +%s) - T0 ))s" | tee -a $L
tar -czf $OUTD/run3.tar.gz -C /tmp run3

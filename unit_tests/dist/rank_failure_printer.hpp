// The gtest listener of the multi-rank test mains (MPI and NCCL): ranks other
// than 0 drop the default printer and print only their failures, tagged with
// the rank, so a run of P ranks reads like one run.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>

namespace dtest {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                   r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

// Rank 0 keeps gtest's printer; the others print failures only.
inline void quiet_unless_rank_zero(int rank) {
  if (rank == 0) return;
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  delete listeners.Release(listeners.default_result_printer());
  listeners.Append(new RankFailurePrinter(rank));
}

}  // namespace dtest

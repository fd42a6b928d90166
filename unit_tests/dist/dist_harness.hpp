// Helpers of the MPI tests: cutting a rank's shard out of a gathered tensor,
// and checking that every rank saw the same error.
#pragma once

#include <mpi.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_Query_cuda_support (OpenMPI)
#endif

#include "../test_harness.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/seq_parallel_plan.hpp"

namespace dtest {

// Host backends only: the MPI transport is tested with host Views here (the
// CUDA-aware and NCCL paths run on the GPU machine).
using HostBackends =
    typename ToTypes<typename Cat<SerialBackends, OpenMPBackends>::type>::type;

// The rows of a [B, N, H, D] tensor (flattened) that a rank's shard holds,
// as a [B, l, H, D] flattened tensor, in the shard's row order.
inline std::vector<double> shard_of(const std::vector<double>& g, const ProblemShape& s,
                                    const std::vector<dilated::dist::ShardWindow>& wins,
                                    std::int64_t l) {
  std::vector<double> out(static_cast<std::size_t>(s.batch * l * s.heads * s.head_dim));
  const std::int64_t row = s.heads * s.head_dim;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (const auto& w : wins)
      for (std::int64_t i = 0; i < w.len; ++i)
        std::copy_n(&g[static_cast<std::size_t>((b * s.seq_len + w.begin + i) * row)], row,
                    &out[static_cast<std::size_t>((b * l + w.row + i) * row)]);
  return out;
}
// Same for lse [B, H, N] -> [B, H, l].
inline std::vector<double> lse_shard_of(const std::vector<double>& g, const ProblemShape& s,
                                        const std::vector<dilated::dist::ShardWindow>& wins,
                                        std::int64_t l) {
  std::vector<double> out(static_cast<std::size_t>(s.batch * s.heads * l));
  for (std::int64_t bh = 0; bh < s.batch * s.heads; ++bh)
    for (const auto& w : wins)
      for (std::int64_t i = 0; i < w.len; ++i)
        out[static_cast<std::size_t>(bh * l + w.row + i)] =
            g[static_cast<std::size_t>(bh * s.seq_len + w.begin + i)];
  return out;
}

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int r = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &r);
  return r;
}

// true when `text` is the same on every rank.
inline bool same_on_all_ranks(const std::string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  std::uint64_t lo = 0, hi = 0;
  MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

}  // namespace dtest

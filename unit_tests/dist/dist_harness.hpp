// Helpers of the MPI tests: the host backends they run on, and checking that
// every rank saw the same error (shard slicing and the cases are shared with
// the NCCL tests: shard_slices.hpp, dist_cases.hpp).
#pragma once

#include <mpi.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_Query_cuda_support (OpenMPI)
#endif

#include "../test_harness.hpp"
#include "dist_cases.hpp"
#include "shard_slices.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/seq_parallel_plan.hpp"

namespace dtest {

// Host backends only: the MPI transport is tested with host Views here (the
// CUDA-aware and NCCL paths run on the GPU machine).
using HostBackends =
    typename ToTypes<typename Cat<SerialBackends, OpenMPBackends>::type>::type;

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

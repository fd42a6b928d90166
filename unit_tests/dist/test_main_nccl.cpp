// main() of the multi-GPU NCCL tests: joins this process's GPU to the NCCL
// communicator of all launched ranks (nccl_world.hpp), initialises Kokkos on
// that GPU, and runs every test on every rank in the same order, so the
// collective calls inside the tests match up. Only rank 0 prints progress;
// other ranks print their failures, tagged. Every rank's verdict decides the
// exit code. Without a GPU every test skips.
#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "rank_failure_printer.hpp"

#include "dist/nccl_communicator.hpp"
#include "nccl_world.hpp"

namespace dtest {
NcclWorld* g_world = nullptr;
}

namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<dtest::NcclWorld> world;
  if (have_gpu()) {
    try {
      world = std::make_unique<dtest::NcclWorld>();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cannot join the NCCL communicator: %s\n", e.what());
      return 1;
    }
    dtest::g_world = world.get();
  }
  const int rank = world ? world->rank() : 0;
  ::testing::InitGoogleTest(&argc, argv);
  dtest::quiet_unless_rank_zero(rank);
  // Kokkos on this rank's GPU (the flag exists in Kokkos 3.x and 4.x).
  std::vector<std::string> args(argv, argv + argc);
  if (world) args.push_back("--kokkos-device-id=" + std::to_string(world->device()));
  std::vector<char*> kargv;
  for (auto& a : args) kargv.push_back(&a[0]);
  int kargc = static_cast<int>(kargv.size());
  Kokkos::initialize(kargc, kargv.data());
  int rc = RUN_ALL_TESTS();
  Kokkos::finalize();
  if (world) {
    dilated::dist::NcclCommunicator comm(world->comm());
    const std::int64_t mine = rc;
    std::int64_t lo = 0, worst = 0;
    comm.allreduce_min_max(&mine, &lo, &worst, 1);
    if (rank == 0 && worst != 0 && rc == 0) std::fprintf(stderr, "a test failed on another rank\n");
    rc = static_cast<int>(worst);
  }
  return rc;
}

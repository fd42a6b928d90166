// main() of the MPI tests: the test initialises MPI (the library never does),
// then Kokkos, then runs every test on every rank in the same order, so the
// collective calls inside the tests match up. Only rank 0 prints progress;
// failures print on the rank where they happen.
#include <gtest/gtest.h>
#include <mpi.h>

#include <Kokkos_Core.hpp>
#include <cstdio>

#include "rank_failure_printer.hpp"

int main(int argc, char** argv) {
  int provided = 0;  // the progress-thread tests need MPI_THREAD_MULTIPLE
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ::testing::InitGoogleTest(&argc, argv);
  dtest::quiet_unless_rank_zero(rank);
  int rc = 0;
  Kokkos::initialize(argc, argv);
  rc = RUN_ALL_TESTS();
  Kokkos::finalize();
  // Every rank's verdict decides: a failure anywhere fails the run.
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst != 0 && rc == 0) std::fprintf(stderr, "a test failed on another rank\n");
  MPI_Finalize();
  return worst;
}

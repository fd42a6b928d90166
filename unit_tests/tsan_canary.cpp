// A deliberate data race, built only in the TSan preset: proves that the
// TSan + libomp/Archer setup does see races between the host threads the
// concurrency tests use (OpenMP partitions), so a clean TSan run means
// something. Its ctest entry passes only if TSan reports the race.
#include <Kokkos_Core.hpp>

int shared_counter = 0;  // written by every partition without synchronisation

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
  omp_set_max_active_levels(2);  // else Kokkos 3.x runs the partitions one by one
  Kokkos::OpenMP::partition_master([](int, int) { ++shared_counter; }, 2, 1);
#else
  std::thread a([] { ++shared_counter; }), b([] { ++shared_counter; });
  a.join();
  b.join();
#endif
  return shared_counter == 0;
}

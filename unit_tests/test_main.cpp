// GoogleTest main that brings Kokkos up once for the whole suite. When ctest
// only asks for the list of tests, Kokkos is not started: its start-up
// warnings would otherwise be read as test names.
#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::testing::GTEST_FLAG(list_tests)) return RUN_ALL_TESTS();
  Kokkos::ScopeGuard kokkos(argc, argv);
  return RUN_ALL_TESTS();
}

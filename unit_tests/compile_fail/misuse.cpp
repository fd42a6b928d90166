// Compile-time validation: each DILATED_MISUSE_* variant must FAIL to compile
// with the static_assert message its ctest entry expects (see CMakeLists.txt).
#include <dilated_attention.hpp>

using Exec = Kokkos::DefaultHostExecutionSpace;
using V4 = Kokkos::View<float****, Exec::memory_space>;
using L3 = Kokkos::View<float***, Exec::memory_space>;

void misuse(const dilated::Plan<Exec>& plan, V4 q, V4 k, V4 v, V4 out, L3 lse) {
#if defined(DILATED_MISUSE_RANK)
  Kokkos::View<float***, Exec::memory_space> q3("q3", 1, 1, 1);
  plan.forward(q3, k, v, out, lse);
#elif defined(DILATED_MISUSE_MIXED_DTYPES)
  Kokkos::View<double****, Exec::memory_space> qd("qd", 1, 1, 1, 1);
  plan.forward(qd, k, v, out, lse);
#elif defined(DILATED_MISUSE_CONST_OUTPUT)
  Kokkos::View<const float****, Exec::memory_space> co = out;
  plan.forward(q, k, v, co, lse);
#elif defined(DILATED_MISUSE_LSE_TYPE)
  Kokkos::View<double***, Exec::memory_space> lsed("lsed", 1, 1, 1);
  plan.forward(q, k, v, out, lsed);
#elif defined(DILATED_MISUSE_INT_TENSORS)
  Kokkos::View<int****, Exec::memory_space> qi("qi", 1, 1, 1, 1);
  plan.forward(qi, qi, qi, qi, lse);
#else
  plan.forward(q, k, v, out, lse);  // the well-formed call compiles
#endif
}

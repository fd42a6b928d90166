// AutoPlan (dispatch/auto_plan.hpp): which backend runs and why, on every
// enabled backend. float/double tensors run the portable kernels with
// results identical to dilated::Plan's; on a CUDA build of Kokkos with
// cuda_fa3, 16-bit tensors run cuda_fa3 (checked against the float64
// reference on the H100), and problems it does not support fall back to the
// portable kernels' 16-bit storage, with cuda_fa3's reason.
#include "test_harness.hpp"

#include "dispatch/auto_plan.hpp"

namespace dtest {
namespace {

// The AutoPlan's outputs equal the plain Plan's bit for bit, and every lse
// entry was written (they start poisoned with NaN).
template <class O, class L>
void expect_identical(const O& out_auto, const L& lse_auto, const O& out_plan, const L& lse_plan) {
  const auto a = from_view(out_auto), p = from_view(out_plan);
  ASSERT_EQ(a.size(), p.size());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], p[i]) << "element " << i;
  const auto la = lse_from_view(lse_auto), lp = lse_from_view(lse_plan);
  ASSERT_EQ(la.size(), lp.size());
  for (std::size_t i = 0; i < la.size(); ++i) {
    ASSERT_FALSE(std::isnan(la[i])) << "lse " << i << " left unwritten";
    ASSERT_EQ(la[i], lp[i]) << "lse " << i;
  }
}

template <class B>
class AutoPlanTest : public ::testing::Test {};
TYPED_TEST_SUITE(AutoPlanTest, AllBackends);

TYPED_TEST(AutoPlanTest, FloatTensorsRunThePortableKernelsBitwiseLikePlan) {
  using B = TypeParam;
  using T = typename B::value;
  const ProblemShape s{1, 128, 3, 32};
  const AttentionConfig c = make_config({{32, 1}, {64, 2}, {128, 4}}, true);
  auto q = to_view<B>(random_vector(numel(s), 11), s);
  auto k = to_view<B>(random_vector(numel(s), 12), s);
  auto v = to_view<B>(random_vector(numel(s), 13), s);
  typename B::View4 out_auto("oa", 1, 128, 3, 32), out_plan("op", 1, 128, 3, 32);
  typename B::ViewL lse_auto("la", 1, 3, 128), lse_plan("lp", 1, 3, 128);
  poison(out_auto);
  poison(out_plan);
  poison(lse_auto);
  poison(lse_plan);

  dilated::AutoPlan<typename B::exec, T> autoplan(c, s);
  EXPECT_EQ(autoplan.backend(), dilated::Backend::portable);
  EXPECT_NE(autoplan.reason().find("portable"), std::string::npos) << autoplan.reason();
  autoplan.forward(q, k, v, out_auto, lse_auto);
  dilated::Plan<typename B::exec>(c, s).forward(q, k, v, out_plan, lse_plan);
  Kokkos::fence();
  expect_identical(out_auto, lse_auto, out_plan, lse_plan);
}

TEST(AutoPlan, InvalidConfigThrowsFromTheConstructor) {
  AttentionConfig c = make_config({{48, 1}});
  EXPECT_THROW((dilated::AutoPlan<Kokkos::DefaultHostExecutionSpace, float>(c, {1, 100, 1, 8})),
               dilated::Error);
}

#if DILATED_AUTO_PLAN_HAS_FA3 && KOKKOS_VERSION >= 40000
// bf16 Views on the device: cuda_fa3 runs them when the GPU is a 9.x.
TEST(AutoPlan, Bf16ViewsRunCudaFa3OnHopper) {
  using bf16 = Kokkos::Experimental::bhalf_t;
  const ProblemShape s{1, 512, 2, 128};
  const AttentionConfig c = make_config({{128, 1}, {256, 2}, {512, 4}}, true);
  int dev = 0;
  cudaDeviceProp prop{};
  cudaGetDevice(&dev);
  cudaGetDeviceProperties(&prop, dev);
  if (prop.major != 9) {
    EXPECT_EQ((dilated::AutoPlan<Kokkos::Cuda, bf16>(c, s).backend()), dilated::Backend::portable);
    return;
  }
  dilated::AutoPlan<Kokkos::Cuda, bf16> plan(c, s);
  EXPECT_EQ(plan.backend(), dilated::Backend::cuda_fa3) << plan.reason();
  std::vector<double> qd = random_vector(numel(s), 21), kd = random_vector(numel(s), 22),
                      vd = random_vector(numel(s), 23);
  using V4 = Kokkos::View<bf16****, Kokkos::LayoutRight, Kokkos::CudaSpace>;
  V4 q("q", 1, 512, 2, 128), k("k", 1, 512, 2, 128), v("v", 1, 512, 2, 128), out("o", 1, 512, 2, 128);
  Kokkos::View<float***, Kokkos::LayoutRight, Kokkos::CudaSpace> lse("lse", 1, 2, 512);
  auto fill = [&](const V4& dst, std::vector<double>& src) {
    auto h = Kokkos::create_mirror_view(dst);
    for (std::size_t i = 0; i < src.size(); ++i) {
      h.data()[i] = bf16(float(src[i]));
      src[i] = double(float(h.data()[i]));  // the reference sees the rounded value
    }
    Kokkos::deep_copy(dst, h);
  };
  fill(q, qd);
  fill(k, kd);
  fill(v, vd);
  plan.forward(q, k, v, out, lse);
  Kokkos::fence();
  auto ho = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  std::vector<double> want(numel(s)), want_lse(2 * 512);
  dilated::reference::forward(c, s, qd.data(), kd.data(), vd.data(), want.data(), want_lse.data());
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(double(float(ho.data()[i])) - want[i]));
  EXPECT_LE(worst, 2e-2);  // bf16 output tolerance (see unit_tests/cuda_fa3)
  auto hl = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lse);
  double worst_lse = 0;  // relative, as unit_tests/cuda_fa3 (fp32 LSE from exact fp32 scores)
  for (std::size_t i = 0; i < want_lse.size(); ++i) {
    const double e = std::abs(double(hl.data()[i]) - want_lse[i]) / std::max(1.0, std::abs(want_lse[i]));
    worst_lse = std::isnan(e) ? INFINITY : std::max(worst_lse, e);
  }
  EXPECT_LE(worst_lse, 2e-3);

  // Windowed calls (src/dist): cuda_fa3's window rules, asked without throwing.
  EXPECT_EQ(plan.window_refusal(false), "");
  EXPECT_EQ(plan.window_refusal(true), "");
  const std::int64_t huge = std::int64_t(1) << 31;  // the windowed kernels' arithmetic is 32-bit
  dilated::AutoPlan<Kokkos::Cuda, bf16> long_plan(AttentionConfig::dense(huge), {1, huge, 1, 64});
  EXPECT_EQ(long_plan.backend(), dilated::Backend::cuda_fa3) << long_plan.reason();
  EXPECT_NE(long_plan.window_refusal(false).find("2^31"), std::string::npos) << long_plan.window_refusal(false);
  EXPECT_NE(long_plan.window_refusal(true).find("2^31"), std::string::npos);

  // Problems cuda_fa3 cannot run fall back to the portable kernels, with its reason.
  dilated::AutoPlan<Kokkos::Cuda, bf16> fallback(c, {1, 512, 2, 96});
  EXPECT_EQ(fallback.backend(), dilated::Backend::portable);
  EXPECT_NE(fallback.reason().find("head_dim 96"), std::string::npos) << fallback.reason();
}
#endif

// 16-bit tensors on every backend where the portable kernels store them:
// whichever backend AutoPlan picks runs; when it is the portable one, the
// result is bitwise Plan's (and on host spaces it always is).
template <class B>
class AutoPlan16Test : public ::testing::Test {};
using Storage16Backends = typename ToTypes<
    typename Cat<SerialBackends16, OpenMPBackends16, CudaBackends16>::type>::type;
TYPED_TEST_SUITE(AutoPlan16Test, Storage16Backends);

TYPED_TEST(AutoPlan16Test, FallsBackToThePortableKernelsBitwiseLikePlan) {
  using B = TypeParam;
  using T = typename B::value;
  const ProblemShape s{1, 96, 2, 24};  // head_dim 24: not a cuda_fa3 size
  const AttentionConfig c = make_config({{32, 1}, {96, 3}}, true);
  auto q = to_view<B>(random_vector(numel(s), 31), s);
  auto k = to_view<B>(random_vector(numel(s), 32), s);
  auto v = to_view<B>(random_vector(numel(s), 33), s);
  typename B::View4 out_auto("oa", 1, 96, 2, 24), out_plan("op", 1, 96, 2, 24);
  typename B::ViewL lse_auto("la", 1, 2, 96), lse_plan("lp", 1, 2, 96);
  poison(out_auto);
  poison(out_plan);
  poison(lse_auto);
  poison(lse_plan);
  dilated::AutoPlan<typename B::exec, T> autoplan(c, s);
  EXPECT_FALSE(autoplan.reason().empty());
  if (dilated::details::is_host_space<typename B::exec>()) {
    EXPECT_EQ(autoplan.backend(), dilated::Backend::portable) << autoplan.reason();
  }
  if (autoplan.backend() != dilated::Backend::portable) return;
  EXPECT_NE(autoplan.reason().find("16-bit storage"), std::string::npos) << autoplan.reason();
  // The portable kernels take no 16-bit windows: src/dist refuses up front.
  EXPECT_NE(autoplan.window_refusal(true).find("cuda_fa3 only"), std::string::npos)
      << autoplan.window_refusal(true);
  autoplan.forward(q, k, v, out_auto, lse_auto);
  dilated::Plan<typename B::exec>(c, s).forward(q, k, v, out_plan, lse_plan);
  Kokkos::fence();
  expect_identical(out_auto, lse_auto, out_plan, lse_plan);
}

}  // namespace
}  // namespace dtest

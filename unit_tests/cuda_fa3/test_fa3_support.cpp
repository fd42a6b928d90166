// cuda_fa3 dispatch rules and argument checks: unsupported problems are
// reported with a reason (never run), bad pointers/strides raise
// dilated::Error before any launch and leave the output untouched.
#include <gtest/gtest.h>

#include <vector>

#include "fa3_test_support.hpp"
#include "dilated/error.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::ProblemShape;
using dilated::cuda_fa3::DType;
using dilated::cuda_fa3::LseTensor;
using dilated::cuda_fa3::MutableTensor;
using dilated::cuda_fa3::Plan;
using dilated::cuda_fa3::Tensor;
using namespace fa3test;

TEST(Fa3Support, ReportsWhyAProblemIsNotSupported) {
  if (!have_sm90()) {
    Plan plan(AttentionConfig::dense(256), {1, 256, 2, 128}, DType::bf16);
    EXPECT_FALSE(plan.support().ok);
    EXPECT_FALSE(plan.support().reason.empty());
    return;
  }
  EXPECT_TRUE(Plan(AttentionConfig::dense(256), {1, 256, 2, 128}, DType::bf16).support().ok);
  const auto odd = Plan(AttentionConfig::dense(256), {1, 256, 2, 96}, DType::bf16).support();
  EXPECT_FALSE(odd.ok);
  EXPECT_NE(odd.reason.find("head_dim 96"), std::string::npos) << odd.reason;
  AttentionConfig drop = AttentionConfig::dense(256);
  drop.dropout_p = 0.1;
  EXPECT_TRUE(Plan(drop, {1, 256, 2, 64}, DType::fp16).support().ok);
  AttentionConfig wide = AttentionConfig::dense(256);
  wide.branches = {{128, 1}, {256, 17}};
  const auto w = Plan(wide, {1, 256, 2, 64}, DType::bf16).support();
  EXPECT_FALSE(w.ok);
  EXPECT_NE(w.reason.find("dilation 17"), std::string::npos) << w.reason;
}

TEST(Fa3Support, InvalidConfigThrowsBeforeAnything) {
  AttentionConfig c = AttentionConfig::dense(256);
  EXPECT_THROW(Plan(c, {1, 300, 2, 64}, DType::bf16), dilated::Error);  // seq_len != segment
}

TEST(Fa3Support, BadTensorsThrowAndLeaveOutputUntouched) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const ProblemShape s{1, 256, 2, 64};
  Plan plan(AttentionConfig::dense(256), s, DType::bf16);
  const std::size_t n = 256 * 2 * 64;
  DeviceBuffer<std::uint16_t> q(n), out(n);
  DeviceBuffer<float> lse(512);
  ASSERT_EQ(cudaMemset(out.ptr, 0x3C, n * 2), cudaSuccess);
  const std::int64_t sb = 256 * 128, ss = 128, sh = 64;
  Tensor good{q.ptr, sb, ss, sh, 1};
  MutableTensor o{out.ptr, sb, ss, sh, 1};
  LseTensor l{lse.ptr, 512, 256, 1};
  Tensor misaligned{reinterpret_cast<char*>(q.ptr) + 2, sb, ss, sh, 1};
  EXPECT_THROW(plan.forward(misaligned, good, good, o, l, nullptr), dilated::Error);
  Tensor strided_d{q.ptr, sb, ss, sh, 2};
  EXPECT_THROW(plan.forward(good, strided_d, good, o, l, nullptr), dilated::Error);
  Tensor odd_stride{q.ptr, sb, 100, sh, 1};
  EXPECT_THROW(plan.forward(good, good, odd_stride, o, l, nullptr), dilated::Error);
  MutableTensor aliased{q.ptr, sb, ss, sh, 1};
  EXPECT_THROW(plan.forward(good, good, good, aliased, l, nullptr), dilated::Error);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (std::uint16_t x : out.download()) ASSERT_EQ(x, 0x3C3C);
}

}  // namespace

// Every validation rule: a clear dilated::Error naming the value and the rule,
// and caller data left untouched.
#include "test_harness.hpp"

namespace dtest {
namespace {

// Runs `f`, expects dilated::Error with `rule`, and that the message mentions
// `needle` (the offending value or name).
template <class F>
void expect_rule(F&& f, const std::string& rule, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected dilated::Error with rule " << rule;
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), rule) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not mention '" << needle << "'";
    EXPECT_NE(std::string(e.what()).find(rule), std::string::npos) << e.what();
  }
}

const ProblemShape kShape{2, 64, 4, 16};

AttentionConfig good() { return make_config({{16, 1}, {32, 2}, {64, 4}}); }

void construct(const AttentionConfig& c, const ProblemShape& s = kShape) {
  dilated::Plan<Kokkos::DefaultHostExecutionSpace> plan(c, s);
}

TEST(Validation, ShapeRules) {
  expect_rule([] { construct(good(), {0, 64, 4, 16}); }, "shape.positive", "batch = 0");
  expect_rule([] { construct(good(), {1, 64, -3, 16}); }, "shape.positive", "heads = -3");
  expect_rule([] { construct(good(), {1, 64, 4, 0}); }, "shape.positive", "head_dim = 0");
  expect_rule([] { construct(good(), {1, 64, 4, 257}); }, "shape.head_dim_max", "257");
  expect_rule([] { construct(AttentionConfig::dense(1 << 30), {1 << 30, 1 << 30, 1 << 30, 64}); },
              "shape.size_overflow", "overflows");
  expect_rule([] { construct(good(), {1, 96, 4, 16}); }, "shape.seq_len_divisible_by_segment",
              "seq_len = 96");
}

TEST(Validation, ConfigScalarRules) {
  for (double bad : {std::nan(""), -1.0, std::numeric_limits<double>::infinity()}) {
    AttentionConfig c = good();
    c.softmax_scale = bad;
    expect_rule([&] { construct(c); }, "config.softmax_scale", "softmax_scale");
  }
  for (double bad : {std::nan(""), -0.1, 1.0, 7.0}) {
    AttentionConfig c = good();
    c.dropout_p = bad;
    expect_rule([&] { construct(c); }, "config.dropout_p", "dropout_p");
  }
  AttentionConfig c = good();
  c.head_mode = static_cast<HeadMode>(7);
  expect_rule([&] { construct(c); }, "config.head_mode", "7");
}

TEST(Validation, DropoutIndexRange) {
  AttentionConfig c = AttentionConfig::dense(std::int64_t(1) << 33);
  c.dropout_p = 0.1;
  expect_rule([&] { construct(c, {1, std::int64_t(1) << 33, 1, 8}); },
              "config.dropout_index_range", "seq_len = 8589934592");
}

TEST(Validation, CostFunctionsValidateToo) {
  expect_rule([] { dilated::forward_flops(make_config({{0, 1}}), kShape); },
              "config.segment_length_positive", "segment_length=0");
}

// The paper's default schedule is valid for any length (partial segments on).
TEST(Validation, LongNetDefaultAlwaysValid) {
  for (std::int64_t n : {100, 3000, 6144, 10240, 65536})
    EXPECT_NO_THROW(construct(AttentionConfig::longnet_default(n), {1, n, 2, 8})) << n;
}

TEST(Validation, BranchRules) {
  expect_rule([] { construct(make_config({})); }, "config.branches_nonempty", "no branches");
  expect_rule([] { construct(make_config(std::vector<Branch>(17, Branch{16, 1}))); },
              "config.branches_max", "17");
  expect_rule([] { construct(make_config({{16, 1}, {0, 1}})); },
              "config.segment_length_positive", "branch 1 (segment_length=0");
  expect_rule([] { construct(make_config({{16, 0}})); }, "config.dilation_positive",
              "dilation=0");
  expect_rule([] { construct(make_config({{16, 32}})); }, "config.dilation_le_segment",
              "dilation=32");
  expect_rule([] { construct(make_config({{16, 1}, {32, 2}, {64, 4}}, false, HeadMode::HeadGroups),
                             {1, 64, 2, 16}); },
              "config.head_groups_need_heads", "heads = 2");
  // ...and what the rules allow: w % r != 0, partial segments when asked.
  EXPECT_NO_THROW(construct(make_config({{64, 6}})));
  AttentionConfig partial = make_config({{48, 1}});
  partial.allow_partial_segments = true;
  EXPECT_NO_THROW(construct(partial));
}

template <class B>
class ViewValidation : public ::testing::Test {};
TYPED_TEST_SUITE(ViewValidation, AllBackends);

// Builds valid inputs and poisoned outputs, then checks that a bad call
// throws and leaves every output exactly as poisoned.
template <class B>
struct Io {
  using V = typename B::View4;
  using L = typename B::ViewL;
  const ProblemShape s = kShape;
  V q = to_view<B>(random_vector(numel(s), 1), s), k = to_view<B>(random_vector(numel(s), 2), s),
    v = to_view<B>(random_vector(numel(s), 3), s), dout = to_view<B>(random_vector(numel(s), 4), s);
  V out{"out", 2, 64, 4, 16}, dq{"dq", 2, 64, 4, 16}, dk{"dk", 2, 64, 4, 16},
      dv{"dv", 2, 64, 4, 16};
  L lse{"lse", 2, 4, 64};
  static constexpr double kPoison = 4242.0;
  Io() {
    for (const V& t : {out, dq, dk, dv}) poison(t, kPoison);
    poison(lse, kPoison);
  }
  bool untouched() const {
    for (const V& t : {out, dq, dk, dv})
      for (double x : from_view(t))
        if (x != kPoison) return false;
    for (double x : lse_from_view(lse))
      if (x != kPoison) return false;
    return true;
  }
};

TYPED_TEST(ViewValidation, WrongShapesThrowAndWriteNothing) {
  using B = TypeParam;
  Io<B> io;
  dilated::Plan<typename B::exec> plan(good(), io.s);
  typename B::View4 short_q("q", 2, 32, 4, 16), wide_k("k", 2, 64, 4, 32);
  expect_rule([&] { plan.forward(short_q, io.k, io.v, io.out, io.lse); }, "view.shape",
              "q.extent(1) = 32");
  expect_rule([&] { plan.forward(io.q, wide_k, io.v, io.out, io.lse); }, "view.shape",
              "k.extent(3) = 32");
  typename B::ViewL lse_bnh("lse", 2, 64, 4);  // [b, seq, heads]: wrong order
  expect_rule([&] { plan.forward(io.q, io.k, io.v, io.out, lse_bnh); }, "view.shape",
              "lse.extent(1) = 64");
  typename B::View4 bad_dout("dout", 1, 64, 4, 16);
  expect_rule([&] {
    plan.backward(io.q, io.k, io.v, io.out, io.lse, bad_dout, io.dq, io.dk, io.dv);
  }, "view.shape", "dout.extent(0) = 1");
  EXPECT_TRUE(io.untouched());
}

TYPED_TEST(ViewValidation, UnallocatedViewThrows) {
  using B = TypeParam;
  Io<B> io;
  dilated::Plan<typename B::exec> plan(good(), io.s);
  Kokkos::View<typename B::value****, Kokkos::LayoutRight, typename B::mem,
               Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      null_v(nullptr, 2, 64, 4, 16);
  expect_rule([&] { plan.forward(io.q, io.k, null_v, io.out, io.lse); }, "view.allocated",
              "v has no data");
  EXPECT_TRUE(io.untouched());
}

TYPED_TEST(ViewValidation, SelfOverlappingOutputThrows) {
  using B = TypeParam;
  using T = typename B::value;
  Io<B> io;
  dilated::Plan<typename B::exec> plan(good(), io.s);
  // Heads dimension with stride 0: all heads write the same memory.
  Kokkos::LayoutStride layout;
  layout.dimension[0] = 2;  layout.stride[0] = 64 * 16;
  layout.dimension[1] = 64; layout.stride[1] = 16;
  layout.dimension[2] = 4;  layout.stride[2] = 0;
  layout.dimension[3] = 16; layout.stride[3] = 1;
  Kokkos::View<T*, typename B::mem> buf("buf", 2 * 64 * 16);
  Kokkos::View<T****, Kokkos::LayoutStride, typename B::mem,
               Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      broadcast(buf.data(), layout);
  expect_rule([&] { plan.forward(io.q, io.k, io.v, broadcast, io.lse); }, "view.self_overlap",
              "output out has stride 0 in dimension 2");
  EXPECT_TRUE(io.untouched());
}

TYPED_TEST(ViewValidation, AliasedOutputsThrowAndWriteNothing) {
  using B = TypeParam;
  using T = typename B::value;
  Io<B> io;
  dilated::Plan<typename B::exec> plan(good(), io.s);
  // out is q itself.
  expect_rule([&] { plan.forward(io.out, io.k, io.v, io.out, io.lse); }, "view.aliasing",
              "output out overlaps q");
  // lse lives inside out's memory.
  Kokkos::View<typename B::acc***, Kokkos::LayoutRight, typename B::mem,
               Kokkos::MemoryTraits<Kokkos::Unmanaged>>
      lse_in_out(reinterpret_cast<typename B::acc*>(io.out.data()), 2, 4, 64);
  expect_rule([&] { plan.forward(io.q, io.k, io.v, io.out, lse_in_out); }, "view.aliasing",
              "overlaps lse");
  // dk and dv share memory.
  expect_rule([&] {
    plan.backward(io.q, io.k, io.v, io.out, io.lse, io.dout, io.dq, io.dk, io.dk);
  }, "view.aliasing", "output dk overlaps dv");
  // dq overlaps the incoming gradient.
  expect_rule([&] {
    plan.backward(io.q, io.k, io.v, io.out, io.lse, io.dq, io.dq, io.dk, io.dv);
  }, "view.aliasing", "output dq overlaps dout");
  // Interleaved strided halves of one buffer are rejected too: the check
  // compares address ranges, which is conservative.
  Kokkos::View<T*****, Kokkos::LayoutRight, typename B::mem> both("both", 2, 64, 4, 16, 2);
  auto even = Kokkos::subview(both, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, 0);
  auto odd = Kokkos::subview(both, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, 1);
  expect_rule([&] { plan.forward(even, io.k, io.v, odd, io.lse); }, "view.aliasing",
              "output out overlaps q");
  EXPECT_TRUE(io.untouched());
}

}  // namespace
}  // namespace dtest

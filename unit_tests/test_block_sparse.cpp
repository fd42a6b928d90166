// Block-sparse attention (block_sparse.hpp, pattern.hpp's BlockSparseRule):
// the run layout the kernels walk, forward and backward (fused and two-kernel
// schemes) against the float64 reference on every backend x dtype with
// outputs poisoned first, rows that attend to nothing, and every validation
// rule. Tolerances are the suite's per-dtype ones (test_harness.hpp Tol<T>:
// float out 3e-5, lse 1e-5, grad 3e-4; double 1e-11, 1e-11, 1e-10), relative
// to max(1, max|ref|).
#include <set>

#include "dist/shard_layout.hpp"
#include "test_harness.hpp"
#include "error_rule.hpp"

namespace dtest {
namespace {

using dilated::BlockIndex;
using dilated::BlockSparsePattern;

AttentionConfig block_config(BlockSparsePattern p, bool causal) {
  AttentionConfig c;
  c.block_sparse = std::move(p);
  c.causal = causal;
  return c;
}

// A random mask over `layouts` layouts keeping `density` of the blocks
// (exactly round(density * blocks) per layout), with query block
// `empty_row` (if >= 0) given no blocks at all.
BlockSparsePattern random_pattern(std::int64_t seq_len, std::int64_t bq, std::int64_t bk,
                                  std::int64_t layouts, double density, std::uint64_t seed,
                                  std::int64_t empty_row) {
  BlockSparsePattern p;
  p.block_q = bq;
  p.block_k = bk;
  p.layouts = layouts;
  const std::int64_t nq = p.num_q_blocks(seq_len), nk = p.num_k_blocks(seq_len);
  p.mask.assign(static_cast<std::size_t>(layouts * nq * nk), 0);
  std::mt19937_64 gen(seed);
  for (std::int64_t l = 0; l < layouts; ++l) {
    std::vector<std::int64_t> cells;
    for (std::int64_t i = 0; i < nq; ++i)
      if (i != empty_row)
        for (std::int64_t j = 0; j < nk; ++j) cells.push_back(i * nk + j);
    std::shuffle(cells.begin(), cells.end(), gen);
    const auto keep = static_cast<std::size_t>(std::llround(density * double(nq * nk)));
    for (std::size_t t = 0; t < keep && t < cells.size(); ++t)
      p.mask[static_cast<std::size_t>(l * nq * nk + cells[t])] = 1;
  }
  return p;
}

// The block-sparse correctness matrix, causal and not.
std::vector<Case> block_sparse_cases() {
  std::vector<Case> cs;
  for (bool causal : {false, true}) {
    auto add = [&](BlockSparsePattern p, ProblemShape s) {
      cs.push_back(Case{block_config(std::move(p), causal), s});
    };
    // Local window, block size not dividing N (last block 4 rows).
    add(BlockSparsePattern::local_window(100, 16, 1), {1, 100, 2, 16});
    // Global + local: 1 global block, radius 1, two query tiles per block (block 160 > 128).
    add(BlockSparsePattern::global_local(480, 160, 1, 0), {1, 480, 1, 32});
    add(BlockSparsePattern::global_local(256, 32, 1, 1), {2, 256, 2, 24});
    // 90% block sparsity, one layout per head, query block 3 visits nothing.
    add(random_pattern(320, 16, 16, 3, 0.1, 11 + causal, 3), {1, 320, 3, 16});
    // Rectangular blocks that divide neither N nor the kernels' tiles.
    add(random_pattern(200, 48, 20, 1, 0.3, 17 + causal, -1), {1, 200, 2, 20});
    // LongNet at block granularity, head_dim 64.
    add(BlockSparsePattern::dilated_blocks(192, 16, 4, 2), {1, 192, 2, 64});
    // Dropout on a block-sparse pattern.
    AttentionConfig drop = block_config(BlockSparsePattern::local_window(96, 16, 2), causal);
    drop.dropout_p = 0.3;
    drop.dropout_seed = 99;
    cs.push_back(Case{drop, {1, 96, 2, 16}});
  }
  return cs;
}

template <class B>
class BlockSparse : public ::testing::Test {};
TYPED_TEST_SUITE(BlockSparse, AllBackends);

template <class B>
void check_forward_backward(const Case& c, std::uint64_t seed, bool two_kernel) {
  SCOPED_TRACE(case_name(c.config, c.shape) + " on " + B::exec::name() +
               (two_kernel ? " (two-kernel backward)" : ""));
  using T = typename B::value;
  const ProblemShape& s = c.shape;
  const RandomInputs<B> in(s, seed);
  const auto &q = in.q, &k = in.k, &v = in.v, &dout = in.dout;
  const auto &qd = in.qd, &kd = in.kd, &vd = in.vd;
  typename B::View4 out("out", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len);
  typename B::View4 dq("dq", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dk("dk", s.batch, s.seq_len, s.heads, s.head_dim);
  typename B::View4 dv("dv", s.batch, s.seq_len, s.heads, s.head_dim);
  for (const auto& t : {out, dq, dk, dv}) poison(t);
  poison(lse);

  dilated::Plan<typename B::exec> plan(c.config, s);
  plan.forward(q, k, v, out, lse);
  if (two_kernel)
    dilated::details::PlanTestAccess::backward_two_kernel(plan, q, k, v, out, lse, dout, dq, dk,
                                                          dv);
  else
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
  Kokkos::fence();

  std::vector<double> ro(numel(s)), rl(s.batch * s.heads * s.seq_len);
  dilated::reference::forward(c.config, s, qd.data(), kd.data(), vd.data(), ro.data(), rl.data());
  EXPECT_LE(scaled_error(from_view(out), ro), Tol<T>::out) << "out";
  EXPECT_LE(scaled_error(lse_from_view(lse), rl), Tol<T>::lse) << "lse";
  expect_reference_gradients(c.config, s, in, dq, dk, dv);
}

TYPED_TEST(BlockSparse, MatchesFloat64Reference) {
  std::uint64_t seed = 9000;
  for (const Case& c : block_sparse_cases()) check_forward_backward<TypeParam>(c, seed += 10, false);
}

TYPED_TEST(BlockSparse, TwoKernelBackwardMatchesFloat64Reference) {
  std::uint64_t seed = 9500;
  for (const Case& c : block_sparse_cases()) check_forward_backward<TypeParam>(c, seed += 10, true);
}

// Rows whose query block lists no key block (and, causal, rows whose only
// block lies in their future) get out 0 and lse -inf, and no gradient.
TYPED_TEST(BlockSparse, RowsWithoutBlocksAreZeroWithMinusInfLse) {
  using B = TypeParam;
  const ProblemShape s{1, 64, 1, 8};
  // Query block 0 visits nothing; block 1 visits only key block 3 (all future
  // under causal); blocks 2, 3 visit key block 0.
  const BlockSparsePattern p =
      BlockSparsePattern::from_block_list(64, 16, 16, 1, {{0, 1, 3}, {0, 2, 0}, {0, 3, 0}});
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    const AttentionConfig c = block_config(p, causal);
    auto q = to_view<B>(random_vector(numel(s), 1), s);
    auto k = to_view<B>(random_vector(numel(s), 2), s);
    auto v = to_view<B>(random_vector(numel(s), 3), s);
    auto dout = to_view<B>(random_vector(numel(s), 4), s);
    typename B::View4 out("out", 1, 64, 1, 8), dq("dq", 1, 64, 1, 8), dk("dk", 1, 64, 1, 8),
        dv("dv", 1, 64, 1, 8);
    typename B::ViewL lse("lse", 1, 1, 64);
    for (const auto& t : {out, dq, dk, dv}) poison(t);
    poison(lse);
    dilated::Plan<typename B::exec> plan(c, s);
    plan.forward(q, k, v, out, lse);
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
    Kokkos::fence();
    auto oh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
    auto lh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lse);
    auto dqh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dq);
    auto dkh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), dk);
    int empty = 0;
    for (int pos = 0; pos < 64; ++pos) {
      const bool none = pos < 16 || (causal && pos < 32);
      if (!none) {
        EXPECT_TRUE(std::isfinite(lh(0, 0, pos))) << "pos " << pos;
        continue;
      }
      ++empty;
      EXPECT_EQ(lh(0, 0, pos), -std::numeric_limits<double>::infinity()) << "pos " << pos;
      for (int x = 0; x < 8; ++x) {
        EXPECT_EQ(oh(0, pos, 0, x), 0.0) << "pos " << pos;
        EXPECT_EQ(dqh(0, pos, 0, x), 0.0) << "pos " << pos;
      }
    }
    EXPECT_EQ(empty, causal ? 32 : 16);
    // Key block 3 is attended only non-causally (by query block 1).
    if (causal) {
      for (int pos = 48; pos < 64; ++pos)
        for (int x = 0; x < 8; ++x) EXPECT_EQ(dkh(0, pos, 0, x), 0.0) << "pos " << pos;
    }
  }
}

// The run layout: consecutive blocks merge into one run, the transpose lists
// the same blocks, and tiles never cross a block.
TEST(BlockSparseLayout, RunsAndTransposeMatchTheMask) {
  const std::int64_t N = 100;
  const BlockSparsePattern p = random_pattern(N, 12, 7, 2, 0.4, 5, 2);
  const dilated::BlockSparseLayout l = dilated::build_block_sparse_layout(p, N);
  ASSERT_EQ(l.num_q_blocks, 9);
  ASSERT_EQ(l.num_k_blocks, 15);
  std::set<std::tuple<std::int64_t, std::int64_t, std::int64_t>> rows, cols, mask;
  for (std::int64_t lay = 0; lay < 2; ++lay) {
    for (std::int64_t i = 0; i < 9; ++i) {
      std::int32_t prev_end = -1;
      for (std::int64_t r = l.row_offsets[lay * 9 + i]; r < l.row_offsets[lay * 9 + i + 1]; ++r) {
        EXPECT_LT(l.row_runs[2 * r], l.row_runs[2 * r + 1]);
        EXPECT_GT(l.row_runs[2 * r], prev_end) << "runs must be maximal and ordered";
        prev_end = l.row_runs[2 * r + 1];
        for (std::int32_t j = l.row_runs[2 * r]; j < l.row_runs[2 * r + 1]; ++j) rows.insert({lay, i, j});
      }
      for (std::int64_t j = 0; j < 15; ++j)
        if (p.visits(lay, i, j, N)) mask.insert({lay, i, j});
    }
    for (std::int64_t j = 0; j < 15; ++j)
      for (std::int64_t r = l.col_offsets[lay * 15 + j]; r < l.col_offsets[lay * 15 + j + 1]; ++r)
        for (std::int32_t i = l.col_runs[2 * r]; i < l.col_runs[2 * r + 1]; ++i) cols.insert({lay, i, j});
  }
  EXPECT_FALSE(mask.empty());
  EXPECT_EQ(rows, mask);
  EXPECT_EQ(cols, mask);
  // A local window of radius 2 is one run per query block.
  const auto lw = dilated::build_block_sparse_layout(BlockSparsePattern::local_window(N, 10, 2), N);
  for (std::int64_t i = 0; i < 10; ++i) EXPECT_EQ(lw.row_offsets[i + 1] - lw.row_offsets[i], 1);

  dilated::BlockSparseRule rule;
  rule.block_q = 200;
  rule.block_k = 48;
  rule.seq_len = 300;
  rule.num_q_blocks = 2;
  rule.num_k_blocks = 7;
  EXPECT_EQ(rule.tiles_per_block(false, 128), 2);
  EXPECT_EQ(rule.num_tiles(false, 128), 4);
  std::int64_t b, n;
  rule.tile_range(false, 128, 1, &b, &n);
  EXPECT_EQ(b, 128);
  EXPECT_EQ(n, 72);  // up to the block's end, 200
  rule.tile_range(false, 128, 2, &b, &n);
  EXPECT_EQ(b, 200);
  EXPECT_EQ(n, 100);  // the short last block
  rule.tile_range(false, 128, 3, &b, &n);
  EXPECT_EQ(n, 0);    // the spare tile of the short last block
  rule.tile_range(true, 64, 6, &b, &n);
  EXPECT_EQ(b, 288);
  EXPECT_EQ(n, 12);
}

// Whether every query row sees a key (cuda_fa3 then skips its fill kernel),
// against a brute-force count.
TEST(BlockSparseLayout, RowsAllAttendMatchesBruteForce) {
  auto brute = [](const BlockSparsePattern& p, std::int64_t n, bool causal) {
    for (std::int64_t l = 0; l < p.layouts; ++l)
      for (std::int64_t q = 0; q < n; ++q) {
        bool any = false;
        for (std::int64_t k = 0; k < n && !any; ++k)
          any = (!causal || k <= q) && p.visits(l, q / p.block_q, k / p.block_k, n);
        if (!any) return false;
      }
    return true;
  };
  const std::int64_t n = 96;
  std::vector<BlockSparsePattern> ps = {
      BlockSparsePattern::local_window(n, 16, 1), BlockSparsePattern::global_local(n, 32, 1, 0),
      BlockSparsePattern::dilated_blocks(n, 16, 3, 2), random_pattern(n, 16, 16, 2, 0.3, 4, 2),
      BlockSparsePattern::from_block_list(n, 32, 16, 1, {{0, 0, 1}, {0, 1, 1}, {0, 2, 0}}),
      BlockSparsePattern::from_block_list(n, 32, 16, 1, {{0, 0, 0}, {0, 1, 1}, {0, 2, 3}})};
  int seen[2] = {0, 0};
  for (const BlockSparsePattern& p : ps)
    for (bool causal : {false, true}) {
      const bool want = brute(p, n, causal);
      EXPECT_EQ(dilated::block_sparse_rows_all_attend(p, n, causal), want);
      EXPECT_EQ(dilated::make_pattern(block_config(p, causal), {1, n, 2, 8}).block_sparse.rows_all_attend,
                want);
      ++seen[want];
    }
  EXPECT_GT(seen[0], 0);  // both answers occur
  EXPECT_GT(seen[1], 0);
}

TEST(BlockSparseLayout, CostCountsAttendedPairsExactly) {
  const ProblemShape s{2, 50, 3, 8};
  const BlockSparsePattern p = random_pattern(50, 8, 6, 3, 0.3, 3, -1);
  for (bool causal : {false, true}) {
    double brute = 0;
    for (std::int64_t h = 0; h < 3; ++h)
      for (std::int64_t q = 0; q < 50; ++q)
        for (std::int64_t k = 0; k < 50; ++k)
          brute += (!causal || k <= q) && p.visits(h, q / 8, k / 6, 50);
    EXPECT_EQ(dilated::attended_pairs(block_config(p, causal), s), 2 * brute);
  }
}

// Every rule, named; the constructor throws before anything exists to write.
void expect_rule(const std::string& rule, const AttentionConfig& c, const ProblemShape& s) {
  try {
    dilated::Plan<Kokkos::DefaultHostExecutionSpace> plan(c, s);
    ADD_FAILURE() << "expected " << rule;
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), rule) << e.what();
  }
}

TEST(BlockSparseValidation, EveryRuleHasANamedError) {
  const ProblemShape s{1, 64, 3, 16};
  const BlockSparsePattern good = BlockSparsePattern::local_window(64, 16, 1);
  EXPECT_NO_THROW(dilated::validate(block_config(good, false), s));

  AttentionConfig with_branches = block_config(good, false);
  with_branches.branches = {{64, 1}};
  expect_rule("block_sparse.with_branches", with_branches, s);
  AttentionConfig groups = block_config(good, false);
  groups.head_mode = HeadMode::HeadGroups;
  expect_rule("block_sparse.head_mode", groups, s);
  for (std::int64_t bad : {std::int64_t(0), std::int64_t(-4), std::int64_t(65)}) {
    BlockSparsePattern b = good;
    b.block_k = bad;
    expect_rule("block_sparse.block_size", block_config(b, false), s);
  }
  BlockSparsePattern layouts = good;
  layouts.layouts = 2;  // neither 1 nor heads = 3
  expect_rule("block_sparse.layouts", block_config(layouts, false), s);
  BlockSparsePattern shape = good;
  shape.mask.pop_back();
  expect_rule("block_sparse.mask_shape", block_config(shape, false), s);
  BlockSparsePattern per_head = good;
  per_head.layouts = 3;  // the mask still holds one layout
  expect_rule("block_sparse.mask_shape", block_config(per_head, false), s);
  BlockSparsePattern other_n = BlockSparsePattern::local_window(80, 16, 1);  // built for N = 80
  expect_rule("block_sparse.mask_shape", block_config(other_n, false), s);

  EXPECT_EQ(dilated_test::rule_of([] { BlockSparsePattern::from_block_list(64, 16, 16, 1, {{0, 4, 0}}); }),
            "block_sparse.list_index");
  EXPECT_EQ(dilated_test::rule_of([] { BlockSparsePattern::from_block_list(64, 16, 16, 2, {{2, 0, 0}}); }),
            "block_sparse.list_index");
  EXPECT_EQ(dilated_test::rule_of([] { BlockSparsePattern::from_block_list(64, 16, 16, 0, {}); }),
            "block_sparse.layouts");
  EXPECT_EQ(dilated_test::rule_of([] { BlockSparsePattern::local_window(64, 0, 1); }), "block_sparse.block_size");
  EXPECT_EQ(dilated_test::rule_of([] { BlockSparsePattern::local_window(64, 16, -1); }),
            "block_sparse.helper_argument");
  EXPECT_EQ(dilated_test::rule_of([] { BlockSparsePattern::dilated_blocks(64, 16, 0, 1); }),
            "block_sparse.helper_argument");
  // 2^31 one-row blocks: more than the int32 run bounds hold (checked before
  // the mask, so no 2^62-entry mask is needed to see it).
  BlockSparsePattern tiny;
  tiny.block_q = tiny.block_k = 1;
  EXPECT_EQ(dilated_test::rule_of([&] {
              dilated::validate(block_config(tiny, false), {1, std::int64_t(1) << 31, 1, 1});
            }),
            "block_sparse.block_count");
  // Sequence parallelism runs LongNet branches only.
  EXPECT_EQ(dilated_test::rule_of([&] {
              dilated::dist::check_size_rules(block_config(good, false), s, 2,
                                              dilated::dist::Layout::Contiguous);
            }),
            "dist.block_sparse_unsupported");
}

// Windowed calls (sequence parallelism) reject block-sparse plans before
// writing anything.
TYPED_TEST(BlockSparse, WindowedCallsAreRejectedAndWriteNothing) {
  using B = TypeParam;
  const ProblemShape s{1, 32, 1, 8};
  dilated::Plan<typename B::exec> plan(
      block_config(BlockSparsePattern::local_window(32, 8, 1), false), s);
  auto q = to_view<B>(random_vector(numel(s), 1), s);
  typename B::View4 out("out", 1, 32, 1, 8);
  typename B::ViewL lse("lse", 1, 1, 32);
  poison(out, 7.0);
  try {
    plan.forward_window(typename B::exec(), 0, 0, q, out, lse, 0, q, q);
    ADD_FAILURE() << "expected window.block_sparse";
  } catch (const dilated::Error& e) {
    EXPECT_EQ(e.rule(), "window.block_sparse");
  }
  auto oh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  for (int p = 0; p < 32; ++p)
    for (int x = 0; x < 8; ++x) ASSERT_EQ(oh(0, p, 0, x), 7.0);
}

}  // namespace
}  // namespace dtest

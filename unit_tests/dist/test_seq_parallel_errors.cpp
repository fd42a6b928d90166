// Validation of sequence parallelism under mpirun: every size rule, a
// disagreement between ranks, and a bad tensor on one rank raise the same
// dilated::Error (same rule, same text) on every rank, before any data moves
// or any output is written - and nothing hangs.
#include "dist_harness.hpp"

namespace dtest {
namespace {

using dilated::dist::Layout;
using Exec = Kokkos::DefaultHostExecutionSpace;

// Builds a plan on every rank and returns the rule of the Error it threw
// ("none" if it did not); checks that the error text is identical on all ranks.
std::string plan_rule(const AttentionConfig& c, const ProblemShape& s,
                      Layout layout = Layout::Contiguous) {
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);
  std::string rule = "none", text;
  try {
    dilated::dist::SeqParallelPlan<Exec> plan(c, s, comm, layout);
  } catch (const dilated::Error& e) {
    rule = e.rule();
    text = e.what();
  }
  EXPECT_TRUE(same_on_all_ranks(text)) << "rank " << world_rank() << ": " << text;
  return rule;
}

// A segment length w in [lo, hi] with pred(w), for this P.
template <class Pred>
std::int64_t find_w(std::int64_t lo, std::int64_t hi, Pred pred) {
  for (std::int64_t w = lo; w <= hi; ++w)
    if (pred(w)) return w;
  ADD_FAILURE() << "no segment length fits the rule's precondition";
  return lo;
}

TEST(SeqParallelErrors, EverySizeRuleOnEveryRank) {
  const std::int64_t P = world_size(), l = 24, N = l * P;
  // N % P == 0
  EXPECT_EQ(plan_rule(AttentionConfig::dense(N + 1), {1, N + 1, 2, 16}),
            "dist.seq_len_divisible_by_ranks");
  // w <= l: l % w == 0 (w divides N, so only the distributed rule is broken)
  const std::int64_t w1 = find_w(2, l, [&](std::int64_t w) { return N % w == 0 && l % w != 0; });
  EXPECT_EQ(plan_rule(make_config({{w1, 1}}), {1, N, 2, 16}),
            "dist.local_len_divisible_by_segment");
  // w > l: w % l == 0 (partial segments allowed, so the core accepts N % w != 0)
  AttentionConfig c2 = make_config({{l + 12, 2}});
  c2.allow_partial_segments = true;
  EXPECT_EQ(plan_rule(c2, {1, N, 2, 16}), "dist.segment_divisible_by_local_len");
  // w > l: N % w == 0
  AttentionConfig c3 = make_config({{l * (P + 1), 2}});
  c3.allow_partial_segments = true;
  EXPECT_EQ(plan_rule(c3, {1, N, 2, 16}), "dist.seq_len_divisible_by_segment");
  // the sizes that satisfy the rules are accepted, with a branch of each kind
  EXPECT_EQ(plan_rule(make_config({{8, 1}, {N, 2}}), {1, N, 2, 16}), "none");
  // the core's own rules still apply to the gathered shape
  EXPECT_EQ(plan_rule(make_config({{8, 9}}), {1, N, 2, 16}), "config.dilation_le_segment");
}

TEST(SeqParallelErrors, ZigzagSizeRules) {
  const std::int64_t P = world_size(), l = 24, N = l * P;
  // N % 2P == 0 (N % P == 0 holds: l = 13 is odd)
  EXPECT_EQ(plan_rule(AttentionConfig::dense(13 * P, true), {1, 13 * P, 2, 16}, Layout::Zigzag),
            "dist.zigzag_seq_len_divisible_by_2ranks");
  // a local branch must fit whole segments into a chunk of N / 2P = 12
  AttentionConfig c1 = make_config({{8, 1}});
  c1.allow_partial_segments = true;
  EXPECT_EQ(plan_rule(c1, {1, N, 2, 16}, Layout::Zigzag), "dist.zigzag_chunk_divisible_by_segment");
  // a longer branch must span the whole sequence
  EXPECT_EQ(plan_rule(make_config({{24, 1}, {N, 2}}), {1, N, 2, 16}, Layout::Zigzag),
            "dist.zigzag_segment_is_sequence");
  EXPECT_EQ(plan_rule(make_config({{12, 1}, {N, 2}}, true), {1, N, 2, 16}, Layout::Zigzag),
            "none");
}

TEST(SeqParallelErrors, RanksThatDisagreeAllThrow) {
  const int rank = world_rank();
  const std::int64_t P = world_size(), N = 24 * P;
  // one rank asks for causal attention, the others do not
  EXPECT_EQ(plan_rule(AttentionConfig::dense(N, rank == static_cast<int>(P) - 1), {1, N, 2, 16}),
            "dist.ranks_disagree");
  // one rank passes a different head count
  EXPECT_EQ(plan_rule(AttentionConfig::dense(N), {1, N, rank == 0 ? 3 : 2, 16}),
            "dist.ranks_disagree");
  // one rank's config fails the core's rules, the others' is fine: the hash
  // differs, so they disagree (rather than one rank throwing alone)
  EXPECT_EQ(plan_rule(make_config({{N, rank == 0 ? N + 1 : 1}}), {1, N, 2, 16}),
            "dist.ranks_disagree");
}

// A wrong shard on one rank: every rank throws that rank's error, and no
// rank has written its outputs.
TEST(SeqParallelErrors, BadShardOnOneRankStopsEveryRankBeforeWriting) {
  using V4 = Kokkos::View<float****, Kokkos::LayoutRight, Kokkos::HostSpace>;
  using VL = Kokkos::View<float***, Kokkos::LayoutRight, Kokkos::HostSpace>;
  const int rank = world_rank(), P = world_size();
  const std::int64_t N = 24 * P, l = 24;
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);
  dilated::dist::SeqParallelPlan<Exec> plan(make_config({{8, 1}, {N, 2}}), {1, N, 2, 16}, comm);
  const std::int64_t bad = rank == P - 1 ? l + 1 : l;  // the last rank's q is one row too long
  V4 q("q", 1, bad, 2, 16), k("k", 1, l, 2, 16), v("v", 1, l, 2, 16), out("out", 1, l, 2, 16);
  V4 dout("dout", 1, l, 2, 16), dq("dq", 1, l, 2, 16), dk("dk", 1, l, 2, 16), dv("dv", 1, l, 2, 16);
  VL lse("lse", 1, 2, l);
  Kokkos::deep_copy(k, 0.5f);
  Kokkos::deep_copy(v, 0.25f);
  poison(out);
  poison(lse);
  std::string rule, text;
  try {
    plan.forward(q, k, v, out, lse);
  } catch (const dilated::Error& e) {
    rule = e.rule();
    text = e.what();
  }
  EXPECT_EQ(rule, "view.shape");
  EXPECT_NE(text.find("rank " + std::to_string(P - 1) + " of " + std::to_string(P)),
            std::string::npos)
      << text;
  EXPECT_TRUE(same_on_all_ranks(text));
  EXPECT_TRUE(std::isnan(out(0, 0, 0, 0)) && std::isnan(lse(0, 0, 0)));  // nothing written

  poison(dq);
  poison(dk);
  poison(dv);
  rule.clear();
  text.clear();
  try {  // backward with the same bad q
    plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
  } catch (const dilated::Error& e) {
    rule = e.rule();
    text = e.what();
  }
  EXPECT_EQ(rule, "view.shape");
  EXPECT_TRUE(same_on_all_ranks(text)) << text;
  EXPECT_TRUE(std::isnan(dq(0, 0, 0, 0)) && std::isnan(dk(0, 0, 0, 0)) && std::isnan(dv(0, 0, 0, 0)));

  // And the plan still works afterwards: a good call on every rank goes through.
  V4 q2("q", 1, l, 2, 16);
  Kokkos::deep_copy(q2, 0.1f);
  EXPECT_NO_THROW(plan.forward(q2, k, v, out, lse));
  EXPECT_FALSE(std::isnan(out(0, 0, 0, 0)));
}

// Rank 0 calls backward while the others call forward: a collective
// mismatch, caught by the call's agreement step on every rank (no hang).
TEST(SeqParallelErrors, MismatchedCallsFailOnEveryRank) {
  using V4 = Kokkos::View<double****, Kokkos::LayoutRight, Kokkos::HostSpace>;
  using VL = Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace>;
  const int rank = world_rank(), P = world_size();
  const std::int64_t N = 24 * P, l = 24;
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);
  dilated::dist::SeqParallelPlan<Exec> plan(make_config({{8, 1}, {N, 2}}), {1, N, 2, 16}, comm);
  V4 q("q", 1, l, 2, 16), k("k", 1, l, 2, 16), v("v", 1, l, 2, 16), out("out", 1, l, 2, 16);
  V4 dout("dout", 1, l, 2, 16), dq("dq", 1, l, 2, 16), dk("dk", 1, l, 2, 16), dv("dv", 1, l, 2, 16);
  VL lse("lse", 1, 2, l);
  for (const auto& t : {out, dq, dk, dv}) poison(t);
  poison(lse);
  std::string rule, text;
  try {
    if (rank == 0)
      plan.backward(q, k, v, out, lse, dout, dq, dk, dv);
    else
      plan.forward(q, k, v, out, lse);
  } catch (const dilated::Error& e) {
    rule = e.rule();
    text = e.what();
  }
  EXPECT_EQ(rule, "dist.ranks_disagree");
  EXPECT_TRUE(same_on_all_ranks(text)) << text;
  EXPECT_TRUE(std::isnan(out(0, 0, 0, 0)) && std::isnan(dq(0, 0, 0, 0)) && std::isnan(lse(0, 0, 0)));
}

}  // namespace
}  // namespace dtest

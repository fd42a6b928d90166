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
std::string plan_rule(dilated::dist::Communicator& comm, const AttentionConfig& c,
                      const ProblemShape& s, Layout layout = Layout::Contiguous,
                      std::string* what = nullptr) {
  std::string rule = "none", text;
  try {
    dilated::dist::SeqParallelPlan<Exec> plan(c, s, comm, layout);
  } catch (const dilated::Error& e) {
    rule = e.rule();
    text = e.what();
  }
  EXPECT_TRUE(same_on_all_ranks(text)) << "rank " << world_rank() << ": " << text;
  if (what) *what = text;
  return rule;
}
std::string plan_rule(const AttentionConfig& c, const ProblemShape& s,
                      Layout layout = Layout::Contiguous) {
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);
  return plan_rule(comm, c, s, layout);
}

// One way to break a size rule: the config, global shape and layout.
struct Violation {
  AttentionConfig config;
  ProblemShape shape;
  Layout layout;
  const char* rule;
};

// Every size rule of shard_layout.hpp, broken for this P (l = 24, N = 24 P).
std::vector<Violation> size_rule_violations(std::int64_t P);

// A segment length w in [lo, hi] with pred(w), for this P.
template <class Pred>
std::int64_t find_w(std::int64_t lo, std::int64_t hi, Pred pred) {
  for (std::int64_t w = lo; w <= hi; ++w)
    if (pred(w)) return w;
  ADD_FAILURE() << "no segment length fits the rule's precondition";
  return lo;
}

std::vector<Violation> size_rule_violations(std::int64_t P) {
  const std::int64_t l = 24, N = l * P;
  std::vector<Violation> vs;
  // N % P == 0
  vs.push_back({AttentionConfig::dense(N + 1), {1, N + 1, 2, 16}, Layout::Contiguous,
                "dist.seq_len_divisible_by_ranks"});
  // w <= l: l % w == 0 (w divides N, so only the distributed rule is broken)
  const std::int64_t w1 = find_w(2, l, [&](std::int64_t w) { return N % w == 0 && l % w != 0; });
  vs.push_back({make_config({{w1, 1}}), {1, N, 2, 16}, Layout::Contiguous,
                "dist.local_len_divisible_by_segment"});
  // w > l: w % l == 0 (partial segments allowed, so the core accepts N % w != 0)
  AttentionConfig c2 = make_config({{l + 12, 2}});
  c2.allow_partial_segments = true;
  vs.push_back({c2, {1, N, 2, 16}, Layout::Contiguous, "dist.segment_divisible_by_local_len"});
  // w > l: N % w == 0
  AttentionConfig c3 = make_config({{l * (P + 1), 2}});
  c3.allow_partial_segments = true;
  vs.push_back({c3, {1, N, 2, 16}, Layout::Contiguous, "dist.seq_len_divisible_by_segment"});
  // zigzag: N % 2P == 0 (N % P == 0 holds: l = 13 is odd)
  vs.push_back({AttentionConfig::dense(13 * P, true), {1, 13 * P, 2, 16}, Layout::Zigzag,
                "dist.zigzag_seq_len_divisible_by_2ranks"});
  // zigzag: a local branch must fit whole segments into a chunk of N / 2P = 12
  AttentionConfig c5 = make_config({{8, 1}});
  c5.allow_partial_segments = true;
  vs.push_back({c5, {1, N, 2, 16}, Layout::Zigzag, "dist.zigzag_chunk_divisible_by_segment"});
  // zigzag: a longer branch must span the whole sequence
  vs.push_back({make_config({{24, 1}, {N, 2}}), {1, N, 2, 16}, Layout::Zigzag,
                "dist.zigzag_segment_is_sequence"});
  return vs;
}

// Every rank passes the same sizes, which break the rule: every rank throws
// that rule, with the same text.
TEST(SeqParallelErrors, EverySizeRuleOnEveryRank) {
  const std::int64_t P = world_size(), l = 24, N = l * P;
  for (const Violation& v : size_rule_violations(P))
    EXPECT_EQ(plan_rule(v.config, v.shape, v.layout), v.rule) << v.rule;
  // the sizes that satisfy the rules are accepted, with a branch of each kind
  EXPECT_EQ(plan_rule(make_config({{8, 1}, {N, 2}}), {1, N, 2, 16}), "none");
  EXPECT_EQ(plan_rule(make_config({{12, 1}, {N, 2}}, true), {1, N, 2, 16}, Layout::Zigzag),
            "none");
  // the core's own rules still apply to the gathered shape
  EXPECT_EQ(plan_rule(make_config({{8, 9}}), {1, N, 2, 16}), "config.dilation_le_segment");
}

// One rank at a time passes the sizes that break a rule while the others pass
// good ones: the values differ, so every rank throws dist.ranks_disagree with
// the same text (rather than the one rank throwing alone and the others
// waiting for it in the ring).
TEST(SeqParallelErrors, EverySizeRuleBrokenOnOneRankAtATime) {
  const int rank = world_rank(), P = world_size();
  const std::int64_t N = 24 * P;
  for (const Violation& v : size_rule_violations(P))
    for (int bad = 0; bad < P; ++bad) {
      const bool me = rank == bad;
      EXPECT_EQ(plan_rule(me ? v.config : make_config({{8, 1}, {N, 2}}),
                          me ? v.shape : ProblemShape{1, N, 2, 16},
                          me ? v.layout : Layout::Contiguous),
                P == 1 ? v.rule : "dist.ranks_disagree")
          << v.rule << " broken on rank " << bad;
    }
}

// The MPI transport, except that on rank `refuse` it reports that it cannot
// reach host memory: a plan's local check that fails on one rank only, with
// every agreed value equal.
class RefusingCommunicator final : public dilated::dist::Communicator {
 public:
  RefusingCommunicator(dilated::dist::Communicator& inner, int refuse)
      : inner_(inner), refuse_(refuse) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const char* name() const override { return inner_.name(); }
  void allreduce_min_max(const std::int64_t* in, std::int64_t* mn, std::int64_t* mx,
                         int n) override {
    inner_.allreduce_min_max(in, mn, mx, n);
  }
  void start_exchange(const void* send, std::size_t sb, int dest, void* recv, std::size_t rb,
                      int src) override {
    inner_.start_exchange(send, sb, dest, recv, rb, src);
  }
  void wait() override { inner_.wait(); }
  bool stream_ordered() const override { return inner_.stream_ordered(); }
  bool accepts_host_memory() const override { return inner_.rank() != refuse_; }
  bool accepts_device_memory() const override { return inner_.accepts_device_memory(); }

 private:
  dilated::dist::Communicator& inner_;
  int refuse_;
};

TEST(SeqParallelErrors, LocalCheckFailingOnOneRankAtATimeStopsEveryRank) {
  const int P = world_size();
  const std::int64_t N = 24 * P;
  dilated::dist::MpiCommunicator mpi(MPI_COMM_WORLD);
  for (int bad = 0; bad < P; ++bad) {
    RefusingCommunicator comm(mpi, bad);
    std::string text;
    EXPECT_EQ(plan_rule(comm, make_config({{8, 1}, {N, 2}}), {1, N, 2, 16}, Layout::Contiguous,
                        &text),
              "dist.transport_memory")
        << "refused on rank " << bad;
    EXPECT_NE(text.find("rank " + std::to_string(bad) + " of " + std::to_string(P)),
              std::string::npos)
        << text;
  }
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

// A wrong shard on one rank (each rank in turn): every rank throws that
// rank's error, and no rank has written its outputs; the plan stays usable.
TEST(SeqParallelErrors, BadShardOnOneRankStopsEveryRankBeforeWriting) {
  using V4 = Kokkos::View<float****, Kokkos::LayoutRight, Kokkos::HostSpace>;
  using VL = Kokkos::View<float***, Kokkos::LayoutRight, Kokkos::HostSpace>;
  const int rank = world_rank(), P = world_size();
  const std::int64_t N = 24 * P, l = 24;
  dilated::dist::MpiCommunicator comm(MPI_COMM_WORLD);
  dilated::dist::SeqParallelPlan<Exec> plan(make_config({{8, 1}, {N, 2}}), {1, N, 2, 16}, comm);
  for (int bad_rank = 0; bad_rank < P; ++bad_rank) {
    SCOPED_TRACE("q one row too long on rank " + std::to_string(bad_rank));
    const std::int64_t bad = rank == bad_rank ? l + 1 : l;
    V4 q("q", 1, bad, 2, 16), k("k", 1, l, 2, 16), v("v", 1, l, 2, 16), out("out", 1, l, 2, 16);
    V4 dout("dout", 1, l, 2, 16), dq("dq", 1, l, 2, 16), dk("dk", 1, l, 2, 16),
        dv("dv", 1, l, 2, 16);
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
    EXPECT_NE(text.find("rank " + std::to_string(bad_rank) + " of " + std::to_string(P)),
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
    EXPECT_TRUE(std::isnan(dq(0, 0, 0, 0)) && std::isnan(dk(0, 0, 0, 0)) &&
                std::isnan(dv(0, 0, 0, 0)));

    // And the plan still works afterwards: a good call on every rank goes through.
    V4 q2("q", 1, l, 2, 16);
    Kokkos::deep_copy(q2, 0.1f);
    EXPECT_NO_THROW(plan.forward(q2, k, v, out, lse));
    EXPECT_FALSE(std::isnan(out(0, 0, 0, 0)));
  }
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

// src/offload's chunked layer on the portable plans (offload/chunked_plan.hpp):
// running a layer chunk by chunk with chunk-sized plans must give the float64
// reference's forward, LSE and gradients, like the un-chunked plan, for every
// config whose branches are chunk-local; everything else is refused by name
// before anything is written.
#include <limits>

#include "offload/chunked_plan.hpp"
#include "test_harness.hpp"
#include "error_rule.hpp"

namespace dtest {
namespace {

template <class B>
class Offload : public ::testing::Test {};
TYPED_TEST_SUITE(Offload, AllStorageBackends);

struct ChunkCase {
  AttentionConfig config;
  ProblemShape shape;
  std::int64_t chunk_len;
};

// Chunk-local configs: several chunks, batch > 1, causal, head groups,
// w % r != 0, r = 16 with heads that keep nothing in a chunk, a short last
// chunk holding partial segments, and a chunk longer than the sequence.
std::vector<ChunkCase> chunk_cases() {
  std::vector<ChunkCase> cs;
  cs.push_back({make_config({{16, 1}, {32, 2}, {64, 4}}), {2, 256, 3, 16}, 64});
  cs.push_back({make_config({{16, 1}, {32, 2}, {64, 4}}, true), {1, 256, 2, 16}, 128});
  AttentionConfig partial = make_config({{32, 1}, {48, 3}});
  partial.allow_partial_segments = true;
  cs.push_back({partial, {2, 200, 3, 16}, 96});  // chunks 96, 96, 8: the tail holds partial segments
  AttentionConfig partial_causal = partial;
  partial_causal.causal = true;
  cs.push_back({partial_causal, {1, 230, 2, 16}, 96});  // tail 38: w = 48 partial, w = 32 one whole + 6
  cs.push_back({make_config({{16, 1}, {32, 2}, {64, 4}}, true, HeadMode::HeadGroups), {1, 192, 5, 16}, 64});
  cs.push_back({make_config({{12, 5}, {24, 6}}), {1, 96, 5, 8}, 24});
  cs.push_back({make_config({{32, 1}, {64, 16}}), {1, 128, 17, 16}, 64});
  cs.push_back({make_config({{100, 1}}), {1, 100, 2, 16}, 1000});  // one chunk: the whole (dense) layer
  return cs;
}

template <class B>
void check_chunked(const ChunkCase& c, std::uint64_t seed) {
  using T = typename B::value;
  const ProblemShape& s = c.shape;
  SCOPED_TRACE(case_name(c.config, s) + " chunk_len " + std::to_string(c.chunk_len) + " on " + B::exec::name());
  const RandomInputs<B> in(s, seed);
  auto make4 = [&](const char* n) { return typename B::View4(std::string(n), s.batch, s.seq_len, s.heads, s.head_dim); };
  auto out = make4("out"), dq = make4("dq"), dk = make4("dk"), dv = make4("dv");
  auto out1 = make4("out1"), dq1 = make4("dq1"), dk1 = make4("dk1"), dv1 = make4("dv1");
  typename B::ViewL lse("lse", s.batch, s.heads, s.seq_len), lse1("lse1", s.batch, s.heads, s.seq_len);
  for (const auto& v : std::initializer_list<typename B::View4>{out, dq, dk, dv, out1, dq1, dk1, dv1}) poison(v);
  poison(lse);
  poison(lse1);
  typename B::exec space;

  const dilated::offload::ChunkedPlan<typename B::exec> chunked(c.config, s, c.chunk_len);
  chunked.forward(space, in.q, in.k, in.v, out, lse);
  chunked.backward(space, in.q, in.k, in.v, out, lse, in.dout, dq, dk, dv);
  const dilated::Plan<typename B::exec> whole(c.config, s);  // the un-chunked plan
  whole.forward(space, in.q, in.k, in.v, out1, lse1);
  whole.backward(space, in.q, in.k, in.v, out1, lse1, in.dout, dq1, dk1, dv1);
  space.fence();

  std::vector<double> rout(numel(s)), rlse(std::size_t(s.batch * s.heads * s.seq_len));
  dilated::reference::forward(c.config, s, in.qd.data(), in.kd.data(), in.vd.data(), rout.data(), rlse.data());
  EXPECT_LE(scaled_error(from_view(out), rout), Tol<T>::out) << "out";
  EXPECT_LE(scaled_error(lse_from_view(lse), rlse), Tol<T>::lse) << "lse";
  expect_reference_gradients(c.config, s, in, dq, dk, dv);
  // Chunked vs un-chunked: the same kernels on the same rows; only the
  // order of additions may differ (e.g. 16-bit storage merges in float over
  // row windows sized by seq_len), so within the reference tolerance.
  EXPECT_LE(scaled_error(from_view(out), from_view(out1)), Tol<T>::out) << "out vs un-chunked";
  EXPECT_LE(scaled_error(lse_from_view(lse), lse_from_view(lse1)), Tol<T>::lse) << "lse vs un-chunked";
  EXPECT_LE(scaled_error(from_view(dq), from_view(dq1)), Tol<T>::grad) << "dq vs un-chunked";
  EXPECT_LE(scaled_error(from_view(dk), from_view(dk1)), Tol<T>::grad) << "dk vs un-chunked";
  EXPECT_LE(scaled_error(from_view(dv), from_view(dv1)), Tol<T>::grad) << "dv vs un-chunked";
}

TYPED_TEST(Offload, ChunksMatchWholePlanAndFloat64Reference) {
  std::uint64_t seed = 44100;
  for (const ChunkCase& c : chunk_cases()) check_chunked<TypeParam>(c, seed += 10);
}

std::string rule_of_layout(const AttentionConfig& c, const ProblemShape& s, std::int64_t chunk_len) {
  try {
    dilated::offload::ChunkLayout layout(c, s, chunk_len);
  } catch (const dilated::Error& e) {
    return e.rule();
  }
  return "none";
}

// Chunkings that would change the layer are refused by name.
TEST(OffloadLayout, RefusesConfigsThatDoNotSplit) {
  const ProblemShape s{1, 256, 2, 16};
  const AttentionConfig longnet = make_config({{16, 1}, {32, 2}, {64, 4}});
  EXPECT_EQ(rule_of_layout(longnet, s, 64), "none");
  EXPECT_EQ(rule_of_layout(longnet, s, 48), "offload.chunk_not_multiple_of_segment");  // 48 % 32
  EXPECT_EQ(rule_of_layout(longnet, s, 96), "offload.chunk_not_multiple_of_segment");  // 96 % 64
  EXPECT_EQ(rule_of_layout(longnet, s, 32), "offload.segment_longer_than_chunk");     // w = 64 > 32
  EXPECT_EQ(rule_of_layout(AttentionConfig::dense(256), s, 128), "offload.segment_longer_than_chunk");
  EXPECT_EQ(rule_of_layout(longnet, s, 0), "offload.chunk_len_positive");
  EXPECT_EQ(rule_of_layout(longnet, s, -64), "offload.chunk_len_positive");
  AttentionConfig drop = longnet;
  drop.dropout_p = 0.1;
  EXPECT_EQ(rule_of_layout(drop, s, 64), "offload.dropout");
  EXPECT_EQ(rule_of_layout(drop, s, 256), "none");  // one chunk: positions are the layer's
  AttentionConfig bs;
  bs.block_sparse = dilated::BlockSparsePattern::local_window(256, 16, 1);
  EXPECT_EQ(rule_of_layout(bs, s, 64), "offload.block_sparse");
  EXPECT_EQ(rule_of_layout(longnet, ProblemShape{1, 0, 2, 16}, 64), "shape.positive");  // the layer's own rules first
  EXPECT_EQ(rule_of_layout(longnet, ProblemShape{1, 200, 2, 16}, 64), "shape.seq_len_divisible_by_segment");
}

TEST(OffloadLayout, ChunksCoverTheSequence) {
  AttentionConfig partial = make_config({{32, 1}, {48, 3}});
  partial.allow_partial_segments = true;
  const dilated::offload::ChunkLayout l(partial, {1, 200, 1, 16}, 96);
  ASSERT_EQ(l.num_chunks(), 3);
  EXPECT_EQ(l.chunk(0).begin, 0);
  EXPECT_EQ(l.chunk(1).begin, 96);
  EXPECT_EQ(l.chunk(2).begin, 192);
  EXPECT_EQ(l.chunk(2).len, 8);
  EXPECT_EQ(l.tail_len(), 8);
  EXPECT_THROW(l.chunk(3), dilated::Error);
  const dilated::offload::ChunkLayout one(partial, {1, 200, 1, 16}, 5000);
  EXPECT_EQ(one.num_chunks(), 1);
  EXPECT_EQ(one.chunk_len(), 200);
  // The LongNet schedule of the 4M benchmark: granule 32768.
  const AttentionConfig ln = AttentionConfig::longnet_default(std::int64_t(1) << 22);
  EXPECT_EQ(dilated::offload::chunk_granularity(ln), 32768);
  EXPECT_EQ(dilated::offload::chunk_len_for(ln, std::int64_t(1) << 22, 100000), 98304);
  EXPECT_EQ(dilated::offload::chunk_len_for(ln, std::int64_t(1) << 22, 1000), 32768);
  EXPECT_EQ(dilated::offload::chunk_len_for(ln, 20000, 100000), 20000);
  EXPECT_EQ(dilated::offload::chunk_granularity(make_config({{12, 1}, {18, 2}})), 36);
}

// Bad tensors: refused before any chunk runs, outputs untouched - including
// an output that overlaps an input only in a later chunk, which no chunk
// plan's own check would see.
TYPED_TEST(Offload, RefusesBadTensorsBeforeWriting) {
  using B = TypeParam;
  const ProblemShape s{1, 128, 2, 16};
  const AttentionConfig c = make_config({{16, 1}, {32, 2}});
  const dilated::offload::ChunkedPlan<typename B::exec> cp(c, s, 32);
  const RandomInputs<B> in(s, 77);
  typename B::View4 out("out", 1, 128, 2, 16), short_out("short", 1, 96, 2, 16);
  typename B::ViewL lse("lse", 1, 2, 128);
  poison(out);
  poison(lse);
  poison(short_out);
  EXPECT_EQ(dilated_test::rule_of([&] { cp.forward(in.q, in.k, in.v, short_out, lse); }), "view.shape");
  typename B::ViewL short_lse("lse", 1, 2, 96);
  EXPECT_EQ(dilated_test::rule_of([&] { cp.forward(in.q, in.k, in.v, out, short_lse); }), "view.shape");
  EXPECT_EQ(dilated_test::rule_of([&] { cp.forward(in.q, in.k, in.v, in.q, lse); }), "view.aliasing");
  // One buffer of 160 rows: q = rows [32, 160), out = rows [0, 128). Chunk i
  // of out ([32i, 32i + 32)) never overlaps chunk i of q ([32i + 32, ...)),
  // but out's chunk 1 is q's chunk 0.
  typename B::View4 buf("buf", 1, 160, 2, 16);
  poison(buf);
  const auto q_view = Kokkos::subview(buf, Kokkos::ALL, std::make_pair(32, 160), Kokkos::ALL, Kokkos::ALL);
  const auto out_view = Kokkos::subview(buf, Kokkos::ALL, std::make_pair(0, 128), Kokkos::ALL, Kokkos::ALL);
  EXPECT_EQ(dilated_test::rule_of([&] { cp.forward(q_view, in.k, in.v, out_view, lse); }), "view.aliasing");
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), out);
  const auto hl = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), lse);
  const auto hb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), buf);
  for (std::size_t p = 0; p < 128; ++p) {  // nothing written anywhere
    EXPECT_TRUE(std::isnan(static_cast<double>(h(0, p, 1, 3))));
    EXPECT_TRUE(std::isnan(static_cast<double>(hl(0, 1, p))));
    EXPECT_TRUE(std::isnan(static_cast<double>(hb(0, p, 1, 3))));
  }
}

}  // namespace
}  // namespace dtest

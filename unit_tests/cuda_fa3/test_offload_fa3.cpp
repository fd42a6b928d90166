// src/offload's StreamedPlan on the H100: the layer run chunk by chunk with
// tensors in host pinned memory (staged through device buffers on copy
// streams) must equal the resident cuda_fa3 call on the whole sequence:
// bitwise for the forward (the chunk plan runs the same tiles: a branch's
// tiles never leave their segment, and chunks hold whole segments), and for
// the backward within one bf16 rounding (dQ is reduce-added in fp32 by
// several CTAs in any order, so a sum may round differently; stated below).
// The chunk decomposition itself is checked against the float64 reference on
// the CPU (unit_tests/test_offload.cpp), the resident kernels by the
// cuda_fa3 suites.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dilated/error.hpp"
#include "fa3_test_support.hpp"
#include "offload/streamed_fa3.hpp"
#include "../error_rule.hpp"

namespace {

using dilated::AttentionConfig;
using dilated::ProblemShape;
using dilated::cuda_fa3::DType;
using dilated::cuda_fa3::LseTensor;
using dilated::cuda_fa3::MutableTensor;
using dilated::cuda_fa3::Tensor;
using dilated::offload::StreamedPlan;
using namespace fa3test;

template <class T>
struct Pinned {
  T* ptr = nullptr;
  std::size_t count = 0;
  explicit Pinned(std::size_t n) : count(n) { EXPECT_EQ(cudaMallocHost(&ptr, n * sizeof(T)), cudaSuccess); }
  ~Pinned() { cudaFreeHost(ptr); }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
};

// Non-periodic bf16 values in (-1, 1) from a hash of the index (fast enough
// for 10^8 elements; a repeated pattern would hide a chunk copied to the
// wrong place).
void fill_random(std::uint16_t* p, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = 0; i < n; i += 4) {
    std::uint64_t x = (i + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    for (std::size_t j = 0; j < 4 && i + j < n; ++j) {
      const float f = float(std::int16_t(x >> (16 * j))) * (1.0f / 32768.0f);
      p[i + j] = to_half_bits(f, DType::bf16);
    }
  }
}

std::size_t differing(const std::uint16_t* a, const std::uint16_t* b, std::size_t n) {
  std::size_t d = 0;
  for (std::size_t i = 0; i < n; ++i) d += a[i] != b[i];
  return d;
}

// Elements of `got` outside |got - ref| <= 2^-7 |ref| + 2^-10 max|ref|: one
// bf16 rounding step of the element (2^-8 relative, doubled for a tie on
// the other side) plus fp32 cancellation in dQ's sum (orders of magnitude
// below 2^-10 of the largest gradient at these sizes).
std::size_t outside_bf16_tolerance(const std::uint16_t* got, const std::uint16_t* ref, std::size_t n) {
  double scale = 0;
  for (std::size_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(from_half_bits(ref[i], DType::bf16)));
  const double rel = 1.0 / 128, abs = scale / 1024;  // (std::ldexp per element took seconds at 10^8)
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (got[i] == ref[i]) continue;
    const double g = from_half_bits(got[i], DType::bf16), r = from_half_bits(ref[i], DType::bf16);
    if (!(std::fabs(g - r) <= rel * std::fabs(r) + abs)) ++bad;
  }
  return bad;
}

struct Layout {
  std::int64_t sb, ss, sh;
};
Layout dense_layout(const ProblemShape& s) {
  return {s.seq_len * s.heads * s.head_dim, s.heads * s.head_dim, s.head_dim};
}
Tensor in(const void* p, const Layout& l) { return Tensor{p, l.sb, l.ss, l.sh, 1}; }
MutableTensor io(void* p, const Layout& l) { return MutableTensor{p, l.sb, l.ss, l.sh, 1}; }

// Which tensors of the streamed calls live in host pinned memory.
struct Placement {
  bool qkv, out_lse, dout, grads;
  const char* name;
};

// Resident whole-sequence cuda_fa3 vs StreamedPlan with `place`.
// `two_streams`: the backward on another stream than the forward, with no
// host synchronisation between them: the backward's H2D copies of out and
// lse must still wait for the forward's D2H copies (StreamedPlan orders a
// call after the previous one).
void compare_with_resident(const AttentionConfig& config, const ProblemShape& s, std::int64_t chunk_len,
                           const Placement& place, bool two_streams = false) {
  SCOPED_TRACE(dilated::describe(config) + " N=" + std::to_string(s.seq_len) + " H=" + std::to_string(s.heads) +
               " d=" + std::to_string(s.head_dim) + " chunk " + std::to_string(chunk_len) + " " + place.name);
  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  const Layout l = dense_layout(s);
  const LseTensor lse_layout{nullptr, s.heads * s.seq_len, s.seq_len, 1};
  // Inputs on the host (the source of truth), uploaded for the resident call.
  Pinned<std::uint16_t> hq(n), hk(n), hv(n), hdout(n);
  fill_random(hq.ptr, n, 1);
  fill_random(hk.ptr, n, 2);
  fill_random(hv.ptr, n, 3);
  fill_random(hdout.ptr, n, 4);
  DeviceBuffer<std::uint16_t> q(n), k(n), v(n), dout(n), out(n), dq(n), dk(n), dv(n);
  DeviceBuffer<float> lse(nl);
  for (auto [d, h] : {std::make_pair(q.ptr, hq.ptr), std::make_pair(k.ptr, hk.ptr), std::make_pair(v.ptr, hv.ptr),
                       std::make_pair(dout.ptr, hdout.ptr)})
    ASSERT_EQ(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice), cudaSuccess);

  // Resident, whole sequence.
  dilated::cuda_fa3::Plan whole(config, s, DType::bf16);
  ASSERT_TRUE(whole.support().ok) << whole.support().reason;
  LseTensor wl = lse_layout;
  wl.data = lse.ptr;
  whole.forward(in(q.ptr, l), in(k.ptr, l), in(v.ptr, l), io(out.ptr, l), wl, nullptr);
  whole.backward(in(q.ptr, l), in(k.ptr, l), in(v.ptr, l), in(out.ptr, l), wl, in(dout.ptr, l), io(dq.ptr, l),
                 io(dk.ptr, l), io(dv.ptr, l), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<std::uint16_t> rout = out.download(), rdq = dq.download(), rdk = dk.download(),
                                   rdv = dv.download();
  const std::vector<float> rlse = lse.download();

  // Streamed: each tensor where `place` puts it; outputs poisoned (NaN).
  Pinned<std::uint16_t> hout(n), hdq(n), hdk(n), hdv(n);
  Pinned<float> hlse(nl);
  DeviceBuffer<std::uint16_t> d_out(n), d_dq(n), d_dk(n), d_dv(n);
  DeviceBuffer<float> d_lse(nl);
  for (auto* p : {hout.ptr, hdq.ptr, hdk.ptr, hdv.ptr}) std::memset(p, 0xFF, n * 2);
  std::memset(hlse.ptr, 0xFF, nl * 4);
  for (auto* p : {d_out.ptr, d_dq.ptr, d_dk.ptr, d_dv.ptr}) ASSERT_EQ(cudaMemset(p, 0xFF, n * 2), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_lse.ptr, 0xFF, nl * 4), cudaSuccess);
  const void* sq = place.qkv ? (const void*)hq.ptr : q.ptr;
  const void* sk = place.qkv ? (const void*)hk.ptr : k.ptr;
  const void* sv = place.qkv ? (const void*)hv.ptr : v.ptr;
  void* so = place.out_lse ? (void*)hout.ptr : d_out.ptr;
  float* slse = place.out_lse ? hlse.ptr : d_lse.ptr;
  const void* sdout = place.dout ? (const void*)hdout.ptr : dout.ptr;
  void* sdq = place.grads ? (void*)hdq.ptr : d_dq.ptr;
  void* sdk = place.grads ? (void*)hdk.ptr : d_dk.ptr;
  void* sdv = place.grads ? (void*)hdv.ptr : d_dv.ptr;
  StreamedPlan sp(config, s, chunk_len, DType::bf16);
  cudaStream_t stream = nullptr, stream2 = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream2, cudaStreamNonBlocking), cudaSuccess);
  LseTensor sl = lse_layout;
  sl.data = slse;
  sp.forward(in(sq, l), in(sk, l), in(sv, l), io(so, l), sl, stream);
  sp.backward(in(sq, l), in(sk, l), in(sv, l), in(so, l), sl, in(sdout, l), io(sdq, l), io(sdk, l), io(sdv, l),
              two_streams ? stream2 : stream);
  ASSERT_EQ(cudaStreamSynchronize(two_streams ? stream2 : stream), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaStreamDestroy(stream);
  cudaStreamDestroy(stream2);
  auto fetch16 = [&](void* p, bool host) {
    if (host) return std::vector<std::uint16_t>(static_cast<std::uint16_t*>(p), static_cast<std::uint16_t*>(p) + n);
    std::vector<std::uint16_t> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  };
  const auto gout = fetch16(so, place.out_lse), gdq = fetch16(sdq, place.grads), gdk = fetch16(sdk, place.grads),
             gdv = fetch16(sdv, place.grads);
  std::vector<float> glse(nl);
  ASSERT_EQ(cudaMemcpy(glse.data(), slse, nl * 4, cudaMemcpyDefault), cudaSuccess);
  const std::size_t diff_out = differing(gout.data(), rout.data(), n);
  EXPECT_EQ(diff_out, 0u) << "out: bitwise";
  EXPECT_EQ(std::memcmp(glse.data(), rlse.data(), nl * 4), 0) << "lse: bitwise";
  const std::size_t bad_dq = outside_bf16_tolerance(gdq.data(), rdq.data(), n);
  const std::size_t bad_dk = outside_bf16_tolerance(gdk.data(), rdk.data(), n);
  const std::size_t bad_dv = outside_bf16_tolerance(gdv.data(), rdv.data(), n);
  EXPECT_EQ(bad_dq, 0u) << "dq";
  EXPECT_EQ(bad_dk, 0u) << "dk";
  EXPECT_EQ(bad_dv, 0u) << "dv";
  std::printf("[ offload ] %s: differing elements vs resident: out %zu, dq %zu, dk %zu, dv %zu of %zu\n", place.name,
              diff_out, differing(gdq.data(), rdq.data(), n),
              differing(gdk.data(), rdk.data(), n), differing(gdv.data(), rdv.data(), n), n);
}

constexpr Placement kAllHost{true, true, true, true, "all tensors in host memory"};
constexpr Placement k4M{false, false, true, true, "q, k, v, out, lse on the device; dout, dq, dk, dv in host memory"};

// The LongNet schedule of the 1M/4M benchmarks at 256K tokens, 4 heads
// (256 MiB a tensor; the 4M driver runs 16 heads).
TEST(OffloadFa3, LongNet256KAllHostMatchesResident) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const std::int64_t n = 262144;
  compare_with_resident(AttentionConfig::longnet_default(n), {1, n, 4, 128}, 65536, kAllHost);
}

TEST(OffloadFa3, LongNet256KLayoutOf4MRunMatchesResident) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const std::int64_t n = 262144;
  compare_with_resident(AttentionConfig::longnet_default(n), {1, n, 4, 128}, 65536, k4M);
}

// A short last chunk (20480 < the largest segment, 32768): partial
// segments, run by the tail plan; batch 2 and causal.
TEST(OffloadFa3, PartialTailBatch2CausalMatchesResident) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  const std::int64_t n = 3 * 65536 + 20480;
  AttentionConfig c = AttentionConfig::longnet_default(n);
  ASSERT_TRUE(c.allow_partial_segments);
  c.causal = true;
  compare_with_resident(c, {2, n, 2, 128}, 65536, kAllHost);
}

// Small enough for compute-sanitizer (memcheck): 4 chunks, every tensor staged.
TEST(OffloadFa3, SmallAllHostMatchesResident) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  AttentionConfig c;
  c.branches = {{2048, 1}, {4096, 2}};
  compare_with_resident(c, {1, 16384, 2, 64}, 4096, kAllHost);
}

// 64 chunks of 2048 tokens, every tensor staged: short kernels between the
// copies, so a slot reused too early would show; forward and backward on
// different streams with no host synchronisation in between.
TEST(OffloadFa3, ManySmallChunksTwoStreamsMatchesResident) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  AttentionConfig c;
  c.branches = {{1024, 1}, {2048, 2}};
  compare_with_resident(c, {1, 131072, 4, 128}, 2048, kAllHost, /*two_streams=*/true);
}

// Pageable host memory and host tensors not dense within a batch are
// refused before any copy or launch; outputs stay untouched.
TEST(OffloadFa3, RefusesPageableAndStridedHostTensors) {
  if (!have_sm90()) GTEST_SKIP() << "needs a compute capability 9.x GPU";
  AttentionConfig c;
  c.branches = {{2048, 1}, {4096, 2}};
  const ProblemShape s{1, 8192, 2, 64};
  const std::size_t n = 8192 * 2 * 64;
  const Layout l = dense_layout(s);
  Pinned<std::uint16_t> q(n), out(2 * n);
  Pinned<float> lse(2 * 8192);
  std::memset(q.ptr, 0, n * 2);
  std::memset(out.ptr, 0x3C, 4 * n);
  std::vector<std::uint16_t> pageable(n);
  StreamedPlan sp(c, s, 4096, DType::bf16);
  const LseTensor sl{lse.ptr, 2 * 8192, 8192, 1};
  EXPECT_EQ(dilated_test::rule_of([&] { sp.forward(in(pageable.data(), l), in(q.ptr, l), in(q.ptr, l), io(out.ptr, l), sl, nullptr); }),
            "offload.pageable");
  const Layout interleaved{2 * 8192 * 128, 2 * 128, 128};  // rows of a [.., 2H, d] buffer: not dense
  EXPECT_EQ(dilated_test::rule_of([&] { sp.forward(in(q.ptr, l), in(q.ptr, l), in(q.ptr, l), io(out.ptr, interleaved), sl, nullptr); }),
            "offload.host_layout");
  EXPECT_EQ(dilated_test::rule_of([&] { sp.forward(in(q.ptr, l), in(q.ptr, l), in(q.ptr, l), io(q.ptr, l), sl, nullptr); }),
            "offload.aliasing");
  const LseTensor strided_lse{lse.ptr, 2 * 8192, 1, 2};  // [b, s, h] order: stride_s 2
  EXPECT_EQ(dilated_test::rule_of([&] { sp.forward(in(q.ptr, l), in(q.ptr, l), in(q.ptr, l), io(out.ptr, l), strided_lse, nullptr); }),
            "offload.host_layout");
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (std::size_t i = 0; i < 2 * n; ++i) ASSERT_EQ(out.ptr[i], 0x3C3C);
  EXPECT_EQ(sp.staging_bytes_held(), 0u);  // refused before staging was allocated
}

}  // namespace

// bench_offload: issue 4's "forward plus backward at N = 4M tokens (head_dim
// 128, 16 heads) on the 80 GB H100", bf16, LongNet w = 2048..32768, r = 1, 2,
// 4, 6, 12 (the schedule of bench_fa3's LongNet 1M case), run by src/offload's
// StreamedPlan: chunk-sized cuda_fa3 plans over a sequence whose eight
// tensors (128 GiB) do not fit the GPU.
//
// Placement (what fits 80 GB): q, k, v, out (4 x 16 GiB) and lse (256 MiB) on
// the device; dout, dq, dk, dv (4 x 16 GiB) in host pinned memory, staged
// through two device slots per tensor and chunk. For each chunk length:
// forward (no copies), backward (dout in, dq/dk/dv out, overlapped with the
// kernels), wall time, tokens/s, per-stream busy time, device memory (used
// memory by cudaMemGetInfo: cuda_fa3's workspace pool keeps its peak
// reservation and the staging stays allocated, so the reading after a run is
// the run's peak), then the whole-sequence resident forward for comparison,
// spot checks of chunks against a resident chunk-sized call, a scan that every
// gradient element was written, and a forward with q, k, v, out in host memory.
//
//   bench_offload [--seq N] [--heads H] [--dim D] [--chunks 32768,65536,131072]
//                 [--reps R] [--json FILE] [--host-forward 0|1]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cuda_fa3/fa3.hpp"
#include "dilated/cost.hpp"
#include "offload/streamed_fa3.hpp"

namespace {

namespace fa3 = dilated::cuda_fa3;
using dilated::offload::StreamedPlan;
using dilated::offload::StreamProfile;

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error at %s: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

__device__ __forceinline__ std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return x;
}
// Non-periodic bf16 in (-1, 1) from a hash of the global index.
__global__ void fill_bf16(__nv_bfloat16* p, std::size_t n, std::size_t first, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::uint64_t x = mix((first + i + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull);
    p[i] = __float2bfloat16_rn(float(std::int32_t(x >> 32)) * (1.0f / 2147483648.0f));
  }
}
__global__ void max_abs_bf16(const __nv_bfloat16* p, std::size_t n, unsigned* out) {
  float m = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    m = fmaxf(m, fabsf(__bfloat162float(p[i])));
  atomicMax(out, __float_as_uint(m));  // non-negative floats order like their bits
}
// counts[0]: elements that differ at all; counts[1]: outside
// |g - r| <= 2^-7 |r| + 2^-10 max|r| (one bf16 rounding step; NaN counts).
// counts[2]: the first differing index (initialise to ~0).
__global__ void compare_bf16(const __nv_bfloat16* got, const __nv_bfloat16* ref, std::size_t n, float scale,
                             unsigned long long* counts) {
  unsigned long long diff = 0, bad = 0, first = ~0ull;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float g = __bfloat162float(got[i]), r = __bfloat162float(ref[i]);
    const bool d = __bfloat16_as_ushort(got[i]) != __bfloat16_as_ushort(ref[i]);
    diff += d;
    if (d && i < first) first = i;
    bad += !(fabsf(g - r) <= ldexpf(fabsf(r), -7) + ldexpf(scale, -10));
  }
  atomicAdd(&counts[0], diff);
  atomicAdd(&counts[1], bad);
  atomicMin(&counts[2], first);
}

struct Args {
  std::int64_t seq = std::int64_t(1) << 22, heads = 16, dim = 128;
  // The first is the headline run: its device memory is measured exactly.
  // Later runs read the memory with the earlier runs' workspace still
  // reserved by cuda_fa3's pool (it keeps its peak), so theirs is computed.
  std::vector<std::int64_t> chunks{32768, 65536, 131072};
  int reps = 2;
  bool host_forward = true;
  std::string json;
};
Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--seq") a.seq = std::atoll(v.c_str());
    else if (k == "--heads") a.heads = std::atoll(v.c_str());
    else if (k == "--dim") a.dim = std::atoll(v.c_str());
    else if (k == "--reps") a.reps = std::atoi(v.c_str());
    else if (k == "--json") a.json = v;
    else if (k == "--host-forward") a.host_forward = v != "0";
    else if (k == "--chunks") {
      a.chunks.clear();
      std::stringstream ss(v);
      std::string t;
      while (std::getline(ss, t, ',')) a.chunks.push_back(std::atoll(t.c_str()));
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(1);
    }
  }
  return a;
}

std::size_t used_bytes() {
  std::size_t f = 0, t = 0;
  ck(cudaMemGetInfo(&f, &t), "cudaMemGetInfo");
  return t - f;
}

// memset / scan of big host buffers on all cores.
template <class F>
void parallel_ranges(std::size_t n, const F& f) {
  const unsigned t = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> th;
  for (unsigned i = 0; i < t; ++i)
    th.emplace_back([&, i] { f(n * i / t, n * (i + 1) / t); });
  for (auto& x : th) x.join();
}

struct Row {
  std::int64_t chunk = 0, chunks = 0;
  double fwd_ms = 0, bwd_ms = 0;
  StreamProfile bwd_prof;
  double staging_gib = 0, workspace_gib = 0, used_gib = 0, extra_gib = 0;
  const char* bwd_kernel = "";
  bool measured = false;
};

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const dilated::ProblemShape s{1, a.seq, a.heads, a.dim};
  const dilated::AttentionConfig config = dilated::AttentionConfig::longnet_default(a.seq);
  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = std::size_t(s.batch * s.heads * s.seq_len);
  cudaDeviceProp prop{};
  ck(cudaGetDeviceProperties(&prop, 0), "props");
  const std::size_t used0 = used_bytes();
  std::printf("device %s, %.1f GiB; %s, N=%lld H=%lld d=%lld bf16\n", prop.name, prop.totalGlobalMem / kGiB,
              dilated::describe(config).c_str(), (long long)s.seq_len, (long long)s.heads, (long long)s.head_dim);
  std::printf("tensor [1, N, H, d] bf16 = %.2f GiB, lse = %.3f GiB; used before allocating: %.2f GiB\n",
              n * 2 / kGiB, nl * 4 / kGiB, used0 / kGiB);

  // Device: q, k, v, out, lse.
  double t0 = now_s();
  __nv_bfloat16 *q, *k, *v, *out;
  float* lse;
  ck(cudaMalloc(&q, n * 2), "malloc q");
  ck(cudaMalloc(&k, n * 2), "malloc k");
  ck(cudaMalloc(&v, n * 2), "malloc v");
  ck(cudaMalloc(&out, n * 2), "malloc out");
  ck(cudaMalloc(&lse, nl * 4), "malloc lse");
  fill_bf16<<<1024, 256>>>(q, n, 0, 1);
  fill_bf16<<<1024, 256>>>(k, n, 0, 2);
  fill_bf16<<<1024, 256>>>(v, n, 0, 3);
  ck(cudaDeviceSynchronize(), "fill");
  const std::size_t used_tensors = used_bytes();
  const double resident_gib = (4.0 * n * 2 + nl * 4) / kGiB;
  std::printf("device tensors q, k, v, out, lse: %.2f GiB (used now %.2f GiB), %.1f s\n", resident_gib,
              used_tensors / kGiB, now_s() - t0);

  // Host pinned: dout, dq, dk, dv.
  std::uint16_t* host[4];
  const char* host_names[4] = {"dout", "dq", "dk", "dv"};
  double pin_s = 0;
  for (int i = 0; i < 4; ++i) {
    t0 = now_s();
    ck(cudaHostAlloc(reinterpret_cast<void**>(&host[i]), n * 2, cudaHostAllocDefault), "cudaHostAlloc");
    const double dt = now_s() - t0;
    pin_s += dt;
    std::printf("pinned %s: %.2f GiB in %.2f s\n", host_names[i], n * 2 / kGiB, dt);
  }
  {  // dout: generated on the device in 1 GiB pieces, copied out.
    t0 = now_s();
    const std::size_t piece = std::size_t(1) << 29;
    __nv_bfloat16* tmp;
    ck(cudaMalloc(&tmp, piece * 2), "malloc tmp");
    for (std::size_t off = 0; off < n; off += piece) {
      const std::size_t m = std::min(piece, n - off);
      fill_bf16<<<1024, 256>>>(tmp, m, off, 4);
      ck(cudaMemcpy(host[0] + off, tmp, m * 2, cudaMemcpyDeviceToHost), "dout D2H");
    }
    ck(cudaFree(tmp), "free tmp");
    std::printf("dout filled in %.2f s\n", now_s() - t0);
  }
  std::uint16_t *hdout = host[0], *hdq = host[1], *hdk = host[2], *hdv = host[3];
  const std::int64_t sb = s.seq_len * s.heads * s.head_dim, ss = s.heads * s.head_dim, sh = s.head_dim;
  auto T = [&](const void* p) { return fa3::Tensor{p, sb, ss, sh, 1}; };
  auto M = [&](void* p) { return fa3::MutableTensor{p, sb, ss, sh, 1}; };
  const fa3::LseTensor L{lse, s.heads * s.seq_len, s.seq_len, 1};
  const double fwd_flops = dilated::forward_flops(config, s), bwd_flops = dilated::backward_flops(config, s);

  cudaStream_t stream;
  ck(cudaStreamCreate(&stream), "stream");
  cudaEvent_t e0, e1;
  ck(cudaEventCreate(&e0), "event");
  ck(cudaEventCreate(&e1), "event");
  auto time_ms = [&](const auto& call) {
    ck(cudaEventRecord(e0, stream), "record");
    call();
    ck(cudaEventRecord(e1, stream), "record");
    ck(cudaEventSynchronize(e1), "sync");
    float ms = 0;
    ck(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
    return double(ms);
  };

  std::vector<Row> rows;
  std::unique_ptr<StreamedPlan> last;
  for (std::size_t ci = 0; ci < a.chunks.size(); ++ci) {
    last.reset();  // the previous plan's staging goes back first
    Row r;
    r.chunk = a.chunks[ci];
    last.reset(new StreamedPlan(config, s, r.chunk, fa3::DType::bf16));
    StreamedPlan& sp = *last;
    r.chunks = sp.layout().num_chunks();
    r.bwd_kernel = sp.chunk_plan().backward_kernel_name();
    auto fwd = [&] { sp.forward(T(q), T(k), T(v), M(out), L, stream); };
    auto bwd = [&] { sp.backward(T(q), T(k), T(v), T(out), L, T(hdout), M(hdq), M(hdk), M(hdv), stream); };
    time_ms(fwd);  // warm-up
    r.fwd_ms = 1e30;
    for (int i = 0; i < a.reps; ++i) r.fwd_ms = std::min(r.fwd_ms, time_ms(fwd));
    time_ms(bwd);
    sp.set_profile(true);
    r.bwd_ms = 1e30;
    for (int i = 0; i < a.reps; ++i) {
      const double ms = time_ms(bwd);
      if (ms < r.bwd_ms) {
        r.bwd_ms = ms;
        r.bwd_prof = sp.last_profile();
      }
    }
    sp.set_profile(false);
    ck(cudaDeviceSynchronize(), "sync");
    r.staging_gib = sp.staging_bytes_held() / kGiB;
    r.workspace_gib = sp.backward_workspace_bytes() / kGiB;
    r.used_gib = used_bytes() / kGiB;
    r.extra_gib = (used_bytes() - used_tensors) / kGiB;
    r.measured = ci == 0;  // later rows include earlier runs' pool reservation
    const auto& p = r.bwd_prof;
    std::printf(
        "chunk %7lld (%4lld chunks, bwd %s): fwd %8.1f ms  bwd %8.1f ms (compute busy %.1f, H2D %.1f ms %.1f GB/s, "
        "D2H %.1f ms %.1f GB/s)  staging %.2f GiB + workspace %.2f GiB; used %.2f GiB = tensors + %.2f GiB "
        "(%.1f%%)\n",
        (long long)r.chunk, (long long)r.chunks, r.bwd_kernel, r.fwd_ms, r.bwd_ms, p.compute_ms, p.h2d_ms,
        p.h2d_bytes / (p.h2d_ms * 1e6), p.d2h_ms, p.d2h_bytes / (p.d2h_ms * 1e6), r.staging_gib, r.workspace_gib,
        r.used_gib, r.extra_gib, 100.0 * r.extra_gib / resident_gib);
    std::fflush(stdout);
    rows.push_back(r);
  }
  StreamedPlan& sp = *last;
  const std::int64_t C = sp.layout().chunk_len();

  // Every gradient element written: poison, run once more, scan for the poison.
  parallel_ranges(n, [&](std::size_t b, std::size_t e) {
    for (std::uint16_t* h : {hdq, hdk, hdv}) std::memset(h + b, 0xFF, (e - b) * 2);
  });
  sp.backward(T(q), T(k), T(v), T(out), L, T(hdout), M(hdq), M(hdk), M(hdv), stream);
  ck(cudaStreamSynchronize(stream), "sync");
  std::vector<unsigned long long> poisoned(64, 0);
  {
    std::size_t total = 0;
    parallel_ranges(n, [&](std::size_t b, std::size_t e) {
      std::size_t c = 0;
      for (const std::uint16_t* h : {hdq, hdk, hdv})
        for (std::size_t i = b; i < e; ++i) c += h[i] == 0xFFFF;
      static std::mutex m;
      std::lock_guard<std::mutex> g(m);
      total += c;
    });
    poisoned[0] = total;
    std::printf("gradient elements left unwritten (poison 0xFFFF) after the backward: %zu of %zu\n", total, 3 * n);
  }

  // Spot checks: chunks 0, middle, last against a resident chunk-sized call.
  sp.release_staging();
  struct Spot {
    std::int64_t chunk;
    unsigned long long out_diff, lse_diff, g_diff[3], g_bad[3];
  };
  std::vector<Spot> spots;
  {
    fa3::Plan cp(config, {1, C, s.heads, s.head_dim}, fa3::DType::bf16);
    const std::size_t cn = std::size_t(C * s.heads * s.head_dim), cl = std::size_t(C * s.heads);
    __nv_bfloat16 *c_out, *c_dout, *c_g[3], *c_got;
    float* c_lse;
    unsigned long long* counts;
    unsigned* maxabs;
    ck(cudaMalloc(&c_out, cn * 2), "m");
    ck(cudaMalloc(&c_dout, cn * 2), "m");
    ck(cudaMalloc(&c_got, cn * 2), "m");
    for (auto*& g : c_g) ck(cudaMalloc(&g, cn * 2), "m");
    ck(cudaMalloc(&c_lse, cl * 4), "m");
    ck(cudaMalloc(&counts, 24), "m");
    ck(cudaMalloc(&maxabs, 4), "m");
    const std::int64_t csb = C * ss;
    auto cT = [&](const void* p) { return fa3::Tensor{p, csb, ss, sh, 1}; };
    auto cM = [&](void* p) { return fa3::MutableTensor{p, csb, ss, sh, 1}; };
    auto compare = [&](const __nv_bfloat16* got, const __nv_bfloat16* ref, unsigned long long* diff,
                       unsigned long long* bad) {
      ck(cudaMemset(counts, 0, 16), "memset");
      ck(cudaMemset(counts + 2, 0xFF, 8), "memset");
      ck(cudaMemset(maxabs, 0, 4), "memset");
      max_abs_bf16<<<528, 256>>>(ref, cn, maxabs);
      unsigned mb = 0;
      ck(cudaMemcpy(&mb, maxabs, 4, cudaMemcpyDeviceToHost), "copy");
      float scale;
      std::memcpy(&scale, &mb, 4);
      compare_bf16<<<528, 256>>>(got, ref, cn, scale, counts);
      unsigned long long h[2];
      ck(cudaMemcpy(h, counts, 16, cudaMemcpyDeviceToHost), "copy");
      *diff = h[0];
      if (bad) *bad = h[1];
    };
    const std::int64_t nc = sp.layout().num_chunks();
    for (std::int64_t ch : {std::int64_t(0), nc / 2, nc - 1}) {
      if (sp.layout().chunk(ch).len != C) continue;  // (a short tail would need the tail plan)
      Spot sp_{ch, 0, 0, {0, 0, 0}, {0, 0, 0}};
      const std::size_t off = std::size_t(ch * C) * std::size_t(ss);
      const fa3::LseTensor cL{c_lse, s.heads * C, C, 1};
      const fa3::LseTensor wL{lse + ch * C, s.heads * s.seq_len, s.seq_len, 1};  // the streamed lse, in place
      cp.forward(cT(q + off), cT(k + off), cT(v + off), cM(c_out), cL, stream);
      ck(cudaStreamSynchronize(stream), "sync");
      compare(out + off, c_out, &sp_.out_diff, nullptr);
      {  // lse: bitwise, [h, C] rows of the chunk vs [h, N] rows
        std::vector<float> a1(cl), a2(cl);
        ck(cudaMemcpy(a1.data(), c_lse, cl * 4, cudaMemcpyDeviceToHost), "copy");
        ck(cudaMemcpy2D(a2.data(), C * 4, wL.data, s.seq_len * 4, C * 4, s.heads, cudaMemcpyDeviceToHost), "copy");
        for (std::size_t i = 0; i < cl; ++i) sp_.lse_diff += std::memcmp(&a1[i], &a2[i], 4) != 0;
      }
      ck(cudaMemcpy(c_dout, hdout + off, cn * 2, cudaMemcpyHostToDevice), "copy");
      cp.backward(cT(q + off), cT(k + off), cT(v + off), cT(out + off), wL, cT(c_dout), cM(c_g[0]), cM(c_g[1]),
                  cM(c_g[2]), stream);
      ck(cudaStreamSynchronize(stream), "sync");
      const std::uint16_t* hg[3] = {hdq, hdk, hdv};
      for (int g = 0; g < 3; ++g) {
        ck(cudaMemcpy(c_got, hg[g] + off, cn * 2, cudaMemcpyHostToDevice), "copy");
        compare(c_got, c_g[g], &sp_.g_diff[g], &sp_.g_bad[g]);
      }
      std::printf("spot chunk %lld: out differing %llu, lse differing %llu; dq/dk/dv differing %llu/%llu/%llu, "
                  "outside one bf16 rounding %llu/%llu/%llu (of %zu each)\n",
                  (long long)ch, sp_.out_diff, sp_.lse_diff, sp_.g_diff[0], sp_.g_diff[1], sp_.g_diff[2],
                  sp_.g_bad[0], sp_.g_bad[1], sp_.g_bad[2], cn);
      spots.push_back(sp_);
    }
    for (void* p : {(void*)c_out, (void*)c_dout, (void*)c_got, (void*)c_g[0], (void*)c_g[1], (void*)c_g[2],
                    (void*)c_lse, (void*)counts, (void*)maxabs})
      cudaFree(p);
  }

  // Forward with q, k, v, out in host memory (the gradient buffers reused as
  // inputs, dout as out; timing only): bound by PCIe, 3 tensors in, 1 out.
  double host_fwd_ms = 0;
  StreamProfile host_fwd_prof;
  if (a.host_forward) {
    // lse in host memory too (the device lse keeps the chunked forward's).
    float* hlse = nullptr;
    ck(cudaHostAlloc(reinterpret_cast<void**>(&hlse), nl * 4, cudaHostAllocDefault), "cudaHostAlloc lse");
    const fa3::LseTensor HL{hlse, s.heads * s.seq_len, s.seq_len, 1};
    auto f = [&] { sp.forward(T(hdq), T(hdk), T(hdv), M(hdout), HL, stream); };
    time_ms(f);
    sp.set_profile(true);
    host_fwd_ms = time_ms(f);
    host_fwd_prof = sp.last_profile();
    sp.set_profile(false);
    ck(cudaStreamSynchronize(stream), "sync");
    ck(cudaFreeHost(hlse), "cudaFreeHost");
    std::printf("forward with q, k, v, out in host memory (chunk %lld): %.1f ms (compute busy %.1f, H2D %.1f ms "
                "%.1f GB/s, D2H %.1f ms)\n",
                (long long)C, host_fwd_ms, host_fwd_prof.compute_ms, host_fwd_prof.h2d_ms,
                host_fwd_prof.h2d_bytes / (host_fwd_prof.h2d_ms * 1e6), host_fwd_prof.d2h_ms);
  }

  // Table and JSON.
  std::printf("\n| chunk | chunks | fwd ms | fwd Mtok/s | bwd ms | bwd Mtok/s | fwd+bwd ms | bwd compute busy ms | "
              "H2D ms | D2H ms | copy hidden | staging GiB | workspace GiB | device used GiB | over tensors |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::ostringstream js;
  js << "{\n  \"device\": \"" << prop.name << "\", \"config\": \"" << dilated::describe(config) << "\", \"seq\": "
     << s.seq_len << ", \"heads\": " << s.heads << ", \"dim\": " << s.head_dim << ",\n  \"pin_seconds\": " << pin_s
     << ", \"resident_tensors_gib\": " << resident_gib
     << ", \"unwritten_gradient_elements\": " << poisoned[0] << ",\n  \"runs\": [";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const auto& p = r.bwd_prof;
    const double copy = p.h2d_ms + p.d2h_ms;
    // Copy time that ran under the kernels: busy work that does not add to the wall time.
    const double hidden = copy > 0 ? std::min(1.0, std::max(0.0, (p.compute_ms + copy - p.wall_ms) / copy)) : 0;
    std::printf("| %lld | %lld | %.1f | %.2f | %.1f | %.2f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.2f | %.2f | %.2f | "
                "%.1f%% |\n",
                (long long)r.chunk, (long long)r.chunks, r.fwd_ms, s.seq_len / r.fwd_ms * 1e-3, r.bwd_ms,
                s.seq_len / r.bwd_ms * 1e-3, r.fwd_ms + r.bwd_ms, p.compute_ms, p.h2d_ms, p.d2h_ms, 100 * hidden,
                r.staging_gib, r.workspace_gib, r.used_gib, 100.0 * r.extra_gib / resident_gib);
    js << (i ? ",\n" : "\n") << "    {\"chunk\": " << r.chunk << ", \"chunks\": " << r.chunks << ", \"bwd_kernel\": \""
       << r.bwd_kernel << "\", \"fwd_ms\": " << r.fwd_ms << ", \"bwd_ms\": " << r.bwd_ms
       << ", \"fwd_tokens_per_s\": " << s.seq_len / r.fwd_ms * 1e3 << ", \"bwd_tokens_per_s\": "
       << s.seq_len / r.bwd_ms * 1e3 << ", \"fwd_tflops\": " << fwd_flops / r.fwd_ms * 1e-9
       << ", \"bwd_tflops\": " << bwd_flops / r.bwd_ms * 1e-9 << ", \"bwd_wall_ms_profiled\": " << p.wall_ms
       << ", \"bwd_compute_busy_ms\": " << p.compute_ms << ", \"bwd_h2d_ms\": " << p.h2d_ms
       << ", \"bwd_d2h_ms\": " << p.d2h_ms << ", \"bwd_h2d_bytes\": " << p.h2d_bytes << ", \"bwd_d2h_bytes\": "
       << p.d2h_bytes << ", \"copy_hidden_fraction\": " << hidden << ", \"staging_gib\": " << r.staging_gib
       << ", \"workspace_gib\": " << r.workspace_gib << ", \"device_used_gib\": " << r.used_gib
       << ", \"over_tensors_gib\": " << r.extra_gib << ", \"memory_measured_alone\": " << (r.measured ? "true" : "false")
       << "}";
  }
  js << "\n  ],\n  \"spot_checks\": [";
  for (std::size_t i = 0; i < spots.size(); ++i) {
    const Spot& p = spots[i];
    js << (i ? ", " : "") << "{\"chunk\": " << p.chunk << ", \"out_differing\": " << p.out_diff
       << ", \"lse_differing\": " << p.lse_diff << ", \"grad_differing\": [" << p.g_diff[0] << ", " << p.g_diff[1]
       << ", " << p.g_diff[2] << "], \"grad_outside_tol\": [" << p.g_bad[0] << ", " << p.g_bad[1] << ", "
       << p.g_bad[2] << "]}";
  }
  js << "],\n  \"host_forward_ms\": " << host_fwd_ms << ", \"host_forward_h2d_ms\": " << host_fwd_prof.h2d_ms
     << ", \"host_forward_compute_ms\": " << host_fwd_prof.compute_ms << "\n}\n";
  std::printf("pinning the 4 host tensors took %.1f s\n", pin_s);
  if (!a.json.empty()) {
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (f) {
      std::fputs(js.str().c_str(), f);
      std::fclose(f);
    }
  }
  std::printf("JSON %s\n", js.str().c_str());
  last.reset();
  bool ok = poisoned[0] == 0;
  for (const Spot& p : spots) ok = ok && p.out_diff == 0 && p.lse_diff == 0 && !p.g_bad[0] && !p.g_bad[1] && !p.g_bad[2];
  std::printf("%s\n", ok ? "CHECKS PASSED" : "CHECKS FAILED");
  std::fflush(stdout);
  // The chunked forward's out (device, from the last chunk length's run) and
  // lse, kept on the host to compare with the whole-sequence call's.
  ck(cudaStreamSynchronize(stream), "sync");
  ck(cudaMemcpy(hdq, out, n * 2, cudaMemcpyDeviceToHost), "save out");
  std::vector<float> lse_chunked(nl), lse_whole(nl);
  ck(cudaMemcpy(lse_chunked.data(), lse, nl * 4, cudaMemcpyDeviceToHost), "save lse");
  // Whole-sequence resident forward (the plan of N; it allocates nothing).
  double whole_fwd_ms = 1e30;
  {
    fa3::Plan whole(config, s, fa3::DType::bf16);
    auto f = [&] { whole.forward(T(q), T(k), T(v), M(out), L, stream); };
    time_ms(f);
    for (int i = 0; i < a.reps; ++i) whole_fwd_ms = std::min(whole_fwd_ms, time_ms(f));
  }
  ck(cudaStreamSynchronize(stream), "sync");
  // out: piecewise on the device (2^28 elements a piece; tolerance scale = the
  // piece's max |chunked|); lse on the host.
  unsigned long long out_diff = 0, out_bad = 0, out_first = ~0ull;
  {
    const std::size_t piece = std::size_t(1) << 28;
    __nv_bfloat16* ref;
    unsigned long long* counts;
    unsigned* maxabs;
    ck(cudaMalloc(&ref, piece * 2), "m");
    ck(cudaMalloc(&counts, 24), "m");
    ck(cudaMalloc(&maxabs, 4), "m");
    for (std::size_t off = 0; off < n; off += piece) {
      const std::size_t m = std::min(piece, n - off);
      ck(cudaMemcpy(ref, hdq + off, m * 2, cudaMemcpyHostToDevice), "upload");
      ck(cudaMemset(counts, 0, 16), "memset");
      ck(cudaMemset(counts + 2, 0xFF, 8), "memset");
      ck(cudaMemset(maxabs, 0, 4), "memset");
      max_abs_bf16<<<528, 256>>>(ref, m, maxabs);
      unsigned mb = 0;
      ck(cudaMemcpy(&mb, maxabs, 4, cudaMemcpyDeviceToHost), "copy");
      float scale;
      std::memcpy(&scale, &mb, 4);
      compare_bf16<<<528, 256>>>(out + off, ref, m, scale, counts);
      unsigned long long h[3];
      ck(cudaMemcpy(h, counts, 24, cudaMemcpyDeviceToHost), "copy");
      out_diff += h[0];
      out_bad += h[1];
      if (h[2] != ~0ull && out_first == ~0ull) out_first = off + h[2];
    }
    for (void* p : {(void*)ref, (void*)counts, (void*)maxabs}) cudaFree(p);
  }
  ck(cudaMemcpy(lse_whole.data(), lse, nl * 4, cudaMemcpyDeviceToHost), "copy lse");
  std::size_t lse_diff = 0;
  double lse_max = 0;
  for (std::size_t i = 0; i < nl; ++i)
    if (std::memcmp(&lse_whole[i], &lse_chunked[i], 4) != 0) {
      ++lse_diff;
      lse_max = std::max(lse_max, double(std::fabs(lse_whole[i] - lse_chunked[i])));
    }
  std::printf("whole-sequence resident forward: %.1f ms; vs the chunked forward: out differing %llu, outside one "
              "bf16 rounding %llu of %zu", whole_fwd_ms, out_diff, out_bad, n);
  if (out_first != ~0ull)
    std::printf(" (first at position %llu, head %llu)", out_first / std::size_t(ss),
                (out_first % std::size_t(ss)) / std::size_t(sh));
  std::printf("; lse differing %zu of %zu (max |diff| %.3g)\n", lse_diff, nl, lse_max);
  std::printf("WHOLE_JSON {\"whole_forward_ms\": %.3f, \"whole_vs_chunked_out_differing\": %llu, "
              "\"whole_vs_chunked_out_outside_tol\": %llu, \"whole_vs_chunked_lse_differing\": %zu}\n",
              whole_fwd_ms, out_diff, out_bad, lse_diff);

  for (std::uint16_t* h : host) cudaFreeHost(h);
  for (void* p : {(void*)q, (void*)k, (void*)v, (void*)out, (void*)lse}) cudaFree(p);
  return ok ? 0 : 3;
}

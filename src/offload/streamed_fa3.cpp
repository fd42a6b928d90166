// offload/streamed_fa3.cpp - see streamed_fa3.hpp.
#include "offload/streamed_fa3.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "dilated/error.hpp"

namespace dilated {
namespace offload {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error("cuda.runtime", std::string("offload::StreamedPlan: ") + what + ": " + cudaGetErrorString(e));
}

constexpr std::size_t kSlotAlign = 256;
std::size_t align_up(std::size_t x) { return (x + kSlotAlign - 1) / kSlotAlign * kSlotAlign; }

}  // namespace

const char* to_string(Residence r) { return r == Residence::device ? "device" : "host"; }

Residence residence_of(const void* p) {
  cudaPointerAttributes a{};
  const cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    cudaGetLastError();  // older runtimes flag unknown host pointers as an error
    a.type = cudaMemoryTypeUnregistered;
  }
  if (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) return Residence::device;
  if (a.type == cudaMemoryTypeHost) return Residence::host;
  throw Error("offload.pageable",
              "a tensor is in pageable host memory, which CUDA cannot copy asynchronously; allocate it with "
              "cudaMallocHost/cudaHostAlloc or register it with cudaHostRegister");
}

// One tensor of a call: where it is, its layout, its staging slots.
struct StreamedPlan::Operand {
  const char* name = "";
  bool output = false;
  bool lse = false;  // [b, h, s] float; else [b, s, h, d] 16-bit
  const void* data = nullptr;
  std::int64_t sb = 0, ss = 0, sh = 0, sd = 1;
  Residence where = Residence::device;
  char* slot[2] = {nullptr, nullptr};
};

struct StreamedPlan::Impl {
  int device = 0;
  cudaStream_t h2d = nullptr, d2h = nullptr;
  // Slot s: in_ready (inputs of its chunk copied), compute_done (its chunk's
  // kernels done: inputs free, outputs ready), out_drained (outputs copied out).
  cudaEvent_t in_ready[2] = {}, compute_done[2] = {}, out_drained[2] = {};
  cudaEvent_t start = nullptr, h2d_end = nullptr, d2h_end = nullptr, last_done = nullptr;
  void* staging = nullptr;
  std::size_t staging_bytes = 0;
  bool profile = false;
  // Profiling: begin/end of a call, and per chunk (h2d, compute, d2h) x (begin, end).
  cudaEvent_t prof_begin = nullptr, prof_end = nullptr;
  std::vector<cudaEvent_t> prof;
  StreamProfile last;
  bool last_profiled = false, last_in = false, last_out = false;

  cudaEvent_t prof_event(std::size_t i) {
    while (prof.size() <= i) {
      cudaEvent_t e = nullptr;
      check(cudaEventCreate(&e), "cudaEventCreate");
      prof.push_back(e);
    }
    return prof[i];
  }
};

StreamedPlan::StreamedPlan(const AttentionConfig& config, const ProblemShape& shape, std::int64_t chunk_len,
                           cuda_fa3::DType dtype, int device)
    : layout_(config, shape, chunk_len), shape_(shape), dtype_(dtype), impl_(new Impl) {
  plan_.reset(new cuda_fa3::Plan(config, layout_.chunk_shape(layout_.chunk_len()), dtype, device));
  if (layout_.tail_len() != layout_.chunk_len())
    tail_.reset(new cuda_fa3::Plan(config, layout_.chunk_shape(layout_.tail_len()), dtype, device));
  Impl& m = *impl_;
  int prev = 0;
  check(cudaGetDevice(&prev), "cudaGetDevice");
  m.device = device < 0 ? prev : device;
  if (m.device != prev) check(cudaSetDevice(m.device), "cudaSetDevice");
  auto make_event = [](cudaEvent_t* e, bool timing) {
    check(cudaEventCreateWithFlags(e, timing ? cudaEventDefault : cudaEventDisableTiming), "cudaEventCreate");
  };
  check(cudaStreamCreateWithFlags(&m.h2d, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaStreamCreateWithFlags(&m.d2h, cudaStreamNonBlocking), "cudaStreamCreate");
  for (int s = 0; s < 2; ++s) {
    make_event(&m.in_ready[s], false);
    make_event(&m.compute_done[s], false);
    make_event(&m.out_drained[s], false);
  }
  make_event(&m.start, false);
  make_event(&m.h2d_end, false);
  make_event(&m.d2h_end, false);
  make_event(&m.last_done, false);
  make_event(&m.prof_begin, true);
  make_event(&m.prof_end, true);
  if (m.device != prev) cudaSetDevice(prev);
}

StreamedPlan::~StreamedPlan() {
  Impl& m = *impl_;
  cudaEventSynchronize(m.last_done);  // never-recorded events return at once
  if (m.staging) cudaFree(m.staging);
  for (cudaEvent_t e : {m.in_ready[0], m.in_ready[1], m.compute_done[0], m.compute_done[1], m.out_drained[0],
                        m.out_drained[1], m.start, m.h2d_end, m.d2h_end, m.last_done, m.prof_begin, m.prof_end})
    if (e) cudaEventDestroy(e);
  for (cudaEvent_t e : m.prof) cudaEventDestroy(e);
  if (m.h2d) cudaStreamDestroy(m.h2d);
  if (m.d2h) cudaStreamDestroy(m.d2h);
}

std::size_t StreamedPlan::staging_bytes_for(int host_tensors, int host_lse) const {
  const ProblemShape& s = shape_;
  const std::size_t c = std::size_t(layout_.chunk_len());
  const std::size_t t16 = align_up(std::size_t(s.batch) * c * std::size_t(s.heads * s.head_dim) * 2);
  const std::size_t tl = align_up(std::size_t(s.batch * s.heads) * c * 4);
  return 2 * (std::size_t(host_tensors) * t16 + std::size_t(host_lse) * tl);
}

std::size_t StreamedPlan::backward_workspace_bytes() const {
  const ProblemShape s = layout_.chunk_shape(layout_.chunk_len());
  const std::size_t n = std::size_t(s.batch * s.seq_len * s.heads * s.head_dim);
  return (3 * n + std::size_t(s.batch * s.seq_len * s.heads)) * sizeof(float);
}

std::size_t StreamedPlan::staging_bytes_held() const { return impl_->staging_bytes; }

void StreamedPlan::release_staging() {
  Impl& m = *impl_;
  check(cudaEventSynchronize(m.last_done), "cudaEventSynchronize");
  if (m.staging) check(cudaFree(m.staging), "cudaFree(staging)");
  m.staging = nullptr;
  m.staging_bytes = 0;
}

void StreamedPlan::set_profile(bool on) { impl_->profile = on; }

StreamProfile StreamedPlan::last_profile() const {
  Impl& m = *impl_;
  if (!m.last_profiled) return StreamProfile{};
  check(cudaEventSynchronize(m.prof_end), "cudaEventSynchronize");
  StreamProfile p = m.last;
  auto ms = [](cudaEvent_t a, cudaEvent_t b) {
    float t = 0;
    check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    return double(t);
  };
  p.wall_ms = ms(m.prof_begin, m.prof_end);
  for (int i = 0; i < p.chunks; ++i) {
    const std::size_t e = std::size_t(i) * 6;
    if (m.last_in) p.h2d_ms += ms(m.prof[e], m.prof[e + 1]);
    p.compute_ms += ms(m.prof[e + 2], m.prof[e + 3]);
    if (m.last_out) p.d2h_ms += ms(m.prof[e + 4], m.prof[e + 5]);
  }
  return p;
}

namespace {

// Largest element offset + 1 of a tensor (its span in elements).
std::int64_t span_elems(const ProblemShape& s, bool lse, std::int64_t sb, std::int64_t ss, std::int64_t sh,
                        std::int64_t sd) {
  if (lse) return (s.batch - 1) * sb + (s.heads - 1) * sh + (s.seq_len - 1) * ss + 1;
  return (s.batch - 1) * sb + (s.seq_len - 1) * ss + (s.heads - 1) * sh + (s.head_dim - 1) * sd + 1;
}

}  // namespace

void StreamedPlan::run(Operand* ops, int count, bool backward, cudaStream_t stream) {
  const cuda_fa3::Support& sup = backward ? plan_->backward_support() : plan_->support();
  if (!sup.ok) throw Error("cuda.unsupported", "offload::StreamedPlan: cuda_fa3 cannot run the chunk plan: " + sup.reason);
  const ProblemShape& s = shape_;
  const std::int64_t hd = s.heads * s.head_dim;
  // --- every check before any copy or launch ---
  for (int i = 0; i < count; ++i) {
    Operand& o = ops[i];
    const std::string n = o.name;
    if (!o.data) throw Error("offload.null", "offload::StreamedPlan: " + n + " is null");
    o.where = residence_of(o.data);
    if (o.lse) {
      if (o.sb <= 0 || o.sh <= 0 || o.ss <= 0)
        throw Error("offload.strides", "offload::StreamedPlan: " + n + " needs positive strides");
      if (o.where == Residence::host && o.ss != 1)
        throw Error("offload.host_layout", "offload::StreamedPlan: " + n +
                                               " in host memory needs stride_s = 1 (got " + std::to_string(o.ss) + ")");
      continue;
    }
    if (o.sd != 1)
      throw Error("offload.strides", "offload::StreamedPlan: " + n + " must have a contiguous head_dim (stride_d = " +
                                         std::to_string(o.sd) + ")");
    for (std::int64_t st : {o.sb, o.ss, o.sh})
      if (st <= 0 || st % 8 != 0)
        throw Error("offload.strides", "offload::StreamedPlan: " + n +
                                           " strides must be positive multiples of 8 elements; got " +
                                           std::to_string(st));
    if (reinterpret_cast<std::uintptr_t>(o.data) % 16)
      throw Error("offload.alignment", "offload::StreamedPlan: " + n + " must be 16-byte aligned");
    if (o.where == Residence::host && (o.sh != s.head_dim || o.ss != hd || (s.batch > 1 && o.sb < s.seq_len * hd)))
      throw Error("offload.host_layout",
                  "offload::StreamedPlan: " + n + " in host memory needs the dense layout within a batch (stride_h = " +
                      std::to_string(s.head_dim) + ", stride_s = " + std::to_string(hd) + ", stride_b >= " +
                      std::to_string(s.seq_len * hd) + "); got stride_b " + std::to_string(o.sb) + ", stride_s " +
                      std::to_string(o.ss) + ", stride_h " + std::to_string(o.sh));
  }
  const std::size_t esize16 = 2;
  auto bytes_of = [&](const Operand& o) {
    return std::uintptr_t(span_elems(s, o.lse, o.sb, o.ss, o.sh, o.sd)) * (o.lse ? 4 : esize16);
  };
  for (int i = 0; i < count; ++i) {
    if (!ops[i].output) continue;
    const auto a = reinterpret_cast<std::uintptr_t>(ops[i].data), ae = a + bytes_of(ops[i]);
    for (int j = 0; j < count; ++j) {
      if (j == i) continue;
      const auto b = reinterpret_cast<std::uintptr_t>(ops[j].data), be = b + bytes_of(ops[j]);
      if (a < be && b < ae)
        throw Error("offload.aliasing", std::string("offload::StreamedPlan: output ") + ops[i].name + " overlaps " +
                                            ops[j].name + " in memory");
    }
  }

  // --- staging: two slots per host-resident tensor ---
  Impl& m = *impl_;
  int n16 = 0, nl = 0;
  bool any_in = false, any_out = false;
  for (int i = 0; i < count; ++i)
    if (ops[i].where == Residence::host) {
      (ops[i].lse ? nl : n16) += 1;
      (ops[i].output ? any_out : any_in) = true;
    }
  const std::size_t need = staging_bytes_for(n16, nl);
  if (need > m.staging_bytes) {
    release_staging();  // waits for the previous call, which may still read it
    void* p = nullptr;
    check(cudaMalloc(&p, need), "cudaMalloc(staging)");
    m.staging = p;
    m.staging_bytes = need;
  }
  const std::int64_t C = layout_.chunk_len();
  const std::size_t t16 = align_up(std::size_t(s.batch * C * hd) * esize16);
  const std::size_t tl = align_up(std::size_t(s.batch * s.heads * C) * 4);
  char* cursor = static_cast<char*>(m.staging);
  for (int i = 0; i < count; ++i)
    if (ops[i].where == Residence::host)
      for (int sl = 0; sl < 2; ++sl) {
        ops[i].slot[sl] = cursor;
        cursor += ops[i].lse ? tl : t16;
      }

  // --- the pipeline ---
  auto copy = [&](const Operand& o, const Chunk& c, int sl, bool in, cudaStream_t st) {
    const cudaMemcpyKind kind = in ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    char* host = static_cast<char*>(const_cast<void*>(o.data));
    if (!o.lse) {  // per batch, one contiguous run of c.len rows
      const std::size_t bytes = std::size_t(c.len * hd) * esize16;
      for (std::int64_t b = 0; b < s.batch; ++b) {
        char* h = host + std::size_t(b * o.sb + c.begin * o.ss) * esize16;
        char* d = o.slot[sl] + std::size_t(b * C * hd) * esize16;
        check(cudaMemcpyAsync(in ? d : h, in ? h : d, bytes, kind, st), "cudaMemcpyAsync");
      }
      if (in) m.last.h2d_bytes += std::int64_t(bytes) * s.batch;
      else m.last.d2h_bytes += std::int64_t(bytes) * s.batch;
      return;
    }
    // lse: per batch, `heads` runs of c.len floats; staged as [b, h, C].
    const std::size_t width = std::size_t(c.len) * 4, hpitch = std::size_t(o.sh) * 4, dpitch = std::size_t(C) * 4;
    for (std::int64_t b = 0; b < s.batch; ++b) {
      char* h = host + std::size_t(b * o.sb + c.begin) * 4;
      char* d = o.slot[sl] + std::size_t(b * s.heads * C) * 4;
      if (hpitch <= std::size_t(INT_MAX)) {
        check(cudaMemcpy2DAsync(in ? d : h, in ? dpitch : hpitch, in ? h : d, in ? hpitch : dpitch, width,
                                std::size_t(s.heads), kind, st),
              "cudaMemcpy2DAsync");
      } else {
        for (std::int64_t hh = 0; hh < s.heads; ++hh)
          check(cudaMemcpyAsync(in ? d + hh * dpitch : h + hh * hpitch, in ? h + hh * hpitch : d + hh * dpitch,
                                width, kind, st),
                "cudaMemcpyAsync");
      }
    }
    if (in) m.last.h2d_bytes += std::int64_t(width) * s.batch * s.heads;
    else m.last.d2h_bytes += std::int64_t(width) * s.batch * s.heads;
  };
  // The chunk's view of an operand: its staging slot, or the device tensor
  // at the chunk's first row with the caller's strides.
  auto view16 = [&](const Operand& o, const Chunk& c, int sl) {
    if (o.where == Residence::host) return cuda_fa3::MutableTensor{o.slot[sl], C * hd, hd, s.head_dim, 1};
    char* p = static_cast<char*>(const_cast<void*>(o.data)) + std::size_t(c.begin * o.ss) * esize16;
    return cuda_fa3::MutableTensor{p, o.sb, o.ss, o.sh, o.sd};
  };
  auto in16 = [&](const Operand& o, const Chunk& c, int sl) {
    const cuda_fa3::MutableTensor t = view16(o, c, sl);
    return cuda_fa3::Tensor{t.data, t.stride_b, t.stride_s, t.stride_h, t.stride_d};
  };
  auto view_lse = [&](const Operand& o, const Chunk& c, int sl) {
    if (o.where == Residence::host)
      return cuda_fa3::LseTensor{reinterpret_cast<float*>(o.slot[sl]), s.heads * C, C, 1};
    float* p = static_cast<float*>(const_cast<void*>(o.data)) + c.begin * o.ss;
    return cuda_fa3::LseTensor{p, o.sb, o.sh, o.ss};
  };

  const bool prof = m.profile;
  m.last = StreamProfile{};
  m.last.chunks = int(layout_.num_chunks());
  m.last_profiled = prof;
  m.last_in = any_in;
  m.last_out = any_out;
  if (prof) m.prof_event(std::size_t(layout_.num_chunks()) * 6 - 1);  // create them before the first record
  auto mark = [&](std::int64_t chunk, int which, cudaStream_t st) {
    if (prof) check(cudaEventRecord(m.prof[std::size_t(chunk) * 6 + std::size_t(which)], st), "cudaEventRecord");
  };
  // After the previous call (it may have used other streams and the staging).
  check(cudaStreamWaitEvent(stream, m.last_done, 0), "cudaStreamWaitEvent");
  if (prof) check(cudaEventRecord(m.prof_begin, stream), "cudaEventRecord");
  check(cudaEventRecord(m.start, stream), "cudaEventRecord");
  check(cudaStreamWaitEvent(m.h2d, m.start, 0), "cudaStreamWaitEvent");
  check(cudaStreamWaitEvent(m.d2h, m.start, 0), "cudaStreamWaitEvent");
  auto finish = [&] {  // the caller's stream waits for both copy streams
    cudaEventRecord(m.h2d_end, m.h2d);
    cudaEventRecord(m.d2h_end, m.d2h);
    cudaStreamWaitEvent(stream, m.h2d_end, 0);
    cudaStreamWaitEvent(stream, m.d2h_end, 0);
    if (prof) cudaEventRecord(m.prof_end, stream);
    cudaEventRecord(m.last_done, stream);
  };
  try {
    for (std::int64_t i = 0; i < layout_.num_chunks(); ++i) {
      const int sl = int(i & 1);
      const Chunk c = layout_.chunk(i);
      if (any_in) {  // slot sl's previous chunk (i - 2) must be done reading it
        check(cudaStreamWaitEvent(m.h2d, m.compute_done[sl], 0), "cudaStreamWaitEvent");
        mark(i, 0, m.h2d);
        for (int k = 0; k < count; ++k)
          if (ops[k].where == Residence::host && !ops[k].output) copy(ops[k], c, sl, true, m.h2d);
        mark(i, 1, m.h2d);
        check(cudaEventRecord(m.in_ready[sl], m.h2d), "cudaEventRecord");
        check(cudaStreamWaitEvent(stream, m.in_ready[sl], 0), "cudaStreamWaitEvent");
      }
      if (any_out)  // chunk i - 2's outputs must be out of slot sl
        check(cudaStreamWaitEvent(stream, m.out_drained[sl], 0), "cudaStreamWaitEvent");
      mark(i, 2, stream);
      const cuda_fa3::Plan& p = c.len == C ? *plan_ : *tail_;
      if (!backward) {
        p.forward(in16(ops[0], c, sl), in16(ops[1], c, sl), in16(ops[2], c, sl), view16(ops[3], c, sl),
                  view_lse(ops[4], c, sl), stream);
      } else {
        p.backward(in16(ops[0], c, sl), in16(ops[1], c, sl), in16(ops[2], c, sl), in16(ops[3], c, sl),
                   view_lse(ops[4], c, sl), in16(ops[5], c, sl), view16(ops[6], c, sl), view16(ops[7], c, sl),
                   view16(ops[8], c, sl), stream);
      }
      mark(i, 3, stream);
      check(cudaEventRecord(m.compute_done[sl], stream), "cudaEventRecord");
      if (any_out) {
        check(cudaStreamWaitEvent(m.d2h, m.compute_done[sl], 0), "cudaStreamWaitEvent");
        mark(i, 4, m.d2h);
        for (int k = 0; k < count; ++k)
          if (ops[k].where == Residence::host && ops[k].output) copy(ops[k], c, sl, false, m.d2h);
        mark(i, 5, m.d2h);
        check(cudaEventRecord(m.out_drained[sl], m.d2h), "cudaEventRecord");
      }
    }
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

void StreamedPlan::forward(cuda_fa3::Tensor q, cuda_fa3::Tensor k, cuda_fa3::Tensor v, cuda_fa3::MutableTensor out,
                           cuda_fa3::LseTensor lse, cudaStream_t stream) {
  auto in = [](const char* n, const cuda_fa3::Tensor& t) {
    Operand o;
    o.name = n;
    o.data = t.data;
    o.sb = t.stride_b, o.ss = t.stride_s, o.sh = t.stride_h, o.sd = t.stride_d;
    return o;
  };
  Operand ops[5] = {in("q", q), in("k", k), in("v", v),
                    in("out", cuda_fa3::Tensor{out.data, out.stride_b, out.stride_s, out.stride_h, out.stride_d}),
                    Operand{}};
  ops[3].output = true;
  ops[4].name = "lse";
  ops[4].output = true;
  ops[4].lse = true;
  ops[4].data = lse.data;
  ops[4].sb = lse.stride_b, ops[4].sh = lse.stride_h, ops[4].ss = lse.stride_s;
  run(ops, 5, false, stream);
}

void StreamedPlan::backward(cuda_fa3::Tensor q, cuda_fa3::Tensor k, cuda_fa3::Tensor v, cuda_fa3::Tensor out,
                            cuda_fa3::LseTensor lse, cuda_fa3::Tensor dout, cuda_fa3::MutableTensor dq,
                            cuda_fa3::MutableTensor dk, cuda_fa3::MutableTensor dv, cudaStream_t stream) {
  auto in = [](const char* n, const void* d, std::int64_t sb, std::int64_t ss, std::int64_t sh, std::int64_t sd,
               bool output) {
    Operand o;
    o.name = n;
    o.data = d;
    o.sb = sb, o.ss = ss, o.sh = sh, o.sd = sd;
    o.output = output;
    return o;
  };
  Operand ops[9] = {in("q", q.data, q.stride_b, q.stride_s, q.stride_h, q.stride_d, false),
                    in("k", k.data, k.stride_b, k.stride_s, k.stride_h, k.stride_d, false),
                    in("v", v.data, v.stride_b, v.stride_s, v.stride_h, v.stride_d, false),
                    in("out", out.data, out.stride_b, out.stride_s, out.stride_h, out.stride_d, false),
                    in("lse", lse.data, lse.stride_b, lse.stride_s, lse.stride_h, 1, false),
                    in("dout", dout.data, dout.stride_b, dout.stride_s, dout.stride_h, dout.stride_d, false),
                    in("dq", dq.data, dq.stride_b, dq.stride_s, dq.stride_h, dq.stride_d, true),
                    in("dk", dk.data, dk.stride_b, dk.stride_s, dk.stride_h, dk.stride_d, true),
                    in("dv", dv.data, dv.stride_b, dv.stride_s, dv.stride_h, dv.stride_d, true)};
  ops[4].lse = true;
  run(ops, 9, true, stream);
}

}  // namespace offload
}  // namespace dilated

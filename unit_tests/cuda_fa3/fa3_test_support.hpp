// Helpers of the cuda_fa3 tests: 16-bit conversions, device buffers, random
// inputs rounded to the storage type (so the float64 reference sees exactly
// what the kernel sees), poisoning, and per-dtype tolerances.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_fa3/fa3.hpp"
#include "dilated/config.hpp"

namespace fa3test {

using dilated::cuda_fa3::DType;

// One named problem of the parameterised suites.
struct Case {
  std::string name;
  dilated::AttentionConfig config;
  dilated::ProblemShape shape;
};

inline dilated::AttentionConfig make(std::vector<dilated::Branch> b, bool causal,
                                     dilated::HeadMode mode = dilated::HeadMode::LongNet,
                                     bool partial = false) {
  dilated::AttentionConfig c;
  c.branches = std::move(b);
  c.causal = causal;
  c.head_mode = mode;
  c.allow_partial_segments = partial;
  return c;
}

inline std::uint16_t to_half_bits(float f, DType t) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if (t == DType::bf16) {
    if (std::isnan(f)) return 0x7FC0;
    const std::uint32_t rounding = 0x7FFF + ((u >> 16) & 1);  // round to nearest even
    return static_cast<std::uint16_t>((u + rounding) >> 16);
  }
  // fp16 through the compiler's conversion (IEEE round to nearest even).
  const _Float16 h = static_cast<_Float16>(f);
  std::uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}
inline double from_half_bits(std::uint16_t b, DType t) {
  if (t == DType::bf16) {
    const std::uint32_t u = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<double>(h);
}

template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t count = 0;
  explicit DeviceBuffer(std::size_t n) : count(n) {
    EXPECT_EQ(cudaMalloc(&ptr, n * sizeof(T) + 64), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(cudaMemcpy(ptr, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> h(count);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

// Uniform(-1, 1) values rounded to the 16-bit type; `exact` gets them as doubles.
inline std::vector<std::uint16_t> random_tensor(std::size_t n, DType t, std::mt19937_64& rng,
                                                std::vector<double>* exact, double amplitude = 1.0) {
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<std::uint16_t> bits(n);
  exact->resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    bits[i] = to_half_bits(dist(rng), t);
    (*exact)[i] = from_half_bits(bits[i], t);
  }
  return bits;
}

// Tolerances against the float64 reference on the same (rounded) inputs. The
// kernel rounds P to the 16-bit type before P V and rounds O once per branch
// merge; LSE is computed in fp32 from exact fp32 scores.
struct Tol {
  double out, lse;
};
inline Tol tolerance(DType t) { return t == DType::bf16 ? Tol{2e-2, 2e-3} : Tol{4e-3, 2e-3}; }

inline bool have_sm90() {
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return false;
  return prop.major == 9;
}

}  // namespace fa3test

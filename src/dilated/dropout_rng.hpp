// dilated/dropout_rng.hpp - counter-based dropout mask.
//
// The mask of a (batch, head, query position, key position, branch) entry is
// a pure function of those coordinates and the seed, so forward and backward
// (and every backend, in any tile order) see the same mask without storing it.
// Generator: Philox-4x32-10 (Salmon et al., SC'11), the counter-based RNG
// used by cuRAND and PyTorch's CUDA dropout.
#pragma once

#include <cstdint>

#include "dilated/host_device.hpp"

namespace dilated {

struct Philox4x32 {
  std::uint32_t v[4];
};

DILATED_INLINE void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t* hi,
                                   std::uint32_t* lo) {
  const std::uint64_t prod = static_cast<std::uint64_t>(a) * b;
  *hi = static_cast<std::uint32_t>(prod >> 32);
  *lo = static_cast<std::uint32_t>(prod);
}

// Philox-4x32 with 10 rounds on a 128-bit counter and 64-bit key.
DILATED_INLINE Philox4x32 philox4x32_10(Philox4x32 ctr, std::uint32_t k0, std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, ctr.v[0], &hi0, &lo0);
    philox_mulhilo(0xCD9E8D57u, ctr.v[2], &hi1, &lo1);
    ctr = Philox4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

// Parameters of dropout as seen by kernels.
struct DropoutParams {
  double p = 0.0;              // drop probability in [0, 1)
  std::uint64_t seed = 0;
  std::uint32_t threshold = 0;  // drop when the 32-bit draw < threshold
  double keep_scale = 1.0;     // 1 / (1 - p)

  DILATED_INLINE bool enabled() const { return threshold != 0; }

  // Multiplier of the probability of key `kpos` for query `qpos` in branch
  // `branch` of (batch b, head h): 0 (dropped) or 1/(1-p) (kept).
  // Counter = (qpos, kpos, head/branch, batch), key = a mix of the seed, so
  // distinct coordinates or seeds give independent draws. The counter words
  // are 32-bit: validate() bounds seq_len, heads and batch when dropout is on.
  DILATED_INLINE double factor(std::int64_t b, std::int64_t h, std::int64_t qpos,
                               std::int64_t kpos, int branch) const {
    return keeps(b, h, qpos, kpos, branch) ? keep_scale : 0.0;
  }
  // The rule itself (also called directly by the CUDA backend, which applies
  // keep_scale in float).
  DILATED_INLINE bool keeps(std::int64_t b, std::int64_t h, std::int64_t qpos, std::int64_t kpos,
                            int branch) const {
    const Philox4x32 ctr{{static_cast<std::uint32_t>(qpos), static_cast<std::uint32_t>(kpos),
                          static_cast<std::uint32_t>((static_cast<std::uint64_t>(h) << 4) |
                                                     static_cast<std::uint64_t>(branch)),
                          static_cast<std::uint32_t>(b)}};
    const Philox4x32 r = philox4x32_10(ctr, key0, key1);
    return r.v[0] >= threshold;
  }
  std::uint32_t key0 = 0, key1 = 0;  // splitmix64(seed)
};

// SplitMix64 finaliser: decorrelates nearby seeds (0, 1, 2, ... = training steps).
inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Dropout RNG index limits (32-bit counter words; branch takes 4 bits of head's word).
inline constexpr std::int64_t kDropoutMaxSeq = std::int64_t(1) << 32;
inline constexpr std::int64_t kDropoutMaxHeads = std::int64_t(1) << 28;
inline constexpr std::int64_t kDropoutMaxBatch = std::int64_t(1) << 32;

inline DropoutParams make_dropout(double p, std::uint64_t seed) {
  DropoutParams d;
  d.p = p;
  d.seed = seed;
  const std::uint64_t key = splitmix64(seed);
  d.key0 = static_cast<std::uint32_t>(key);
  d.key1 = static_cast<std::uint32_t>(key >> 32);
  // threshold = round(p * 2^32), at least 1 when p > 0 so that enabled() is
  // exact: p == 0 takes the no-dropout path everywhere (bit-identical).
  if (p > 0.0) {
    const double t = p * 4294967296.0;
    d.threshold = t >= 4294967295.0 ? 4294967295u
                                    : (t < 1.0 ? 1u : static_cast<std::uint32_t>(t + 0.5));
    d.keep_scale = 1.0 / (1.0 - p);
  }
  return d;
}

}  // namespace dilated

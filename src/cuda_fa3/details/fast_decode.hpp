// cuda_fa3/details/fast_decode.hpp - a forward tile's (batch, head, segment,
// query tile, offset) from its index without 64-bit divisions. Host and
// device (no CUDA needed: unit_tests/test_fast_decode.cpp checks it on the CPU).
//
// Why: decode_tile (tile_scheduler.cuh) ran nine 64-bit divisions and
// remainders per tile (a called subroutine each in the SASS) in every consumer
// warp at every tile start, where both consumer warpgroups stop issuing
// matrix work. LongNet's tiles visit 8-21 key blocks, so that start is a
// visible share of each tile: block-sparse tiles, decoded on the host
// instead, got 5% faster (perf_tests/results/h100-fa3-2026-11-27-bs2). Here the
// plan precomputes round-up multipliers (the method of CUTLASS's FastDivmod)
// for the launch's few divisors, and a division is a multiply-high and a shift.
#pragma once

#include <cstdint>

#include "dilated/host_device.hpp"

namespace dilated::cuda_fa3::details {

// n / d and n % d for 0 <= n < 2^31 and 1 <= d < 2^31.
struct FastDiv {
  std::uint32_t d = 1, mul = 0, shift = 0;

  static FastDiv make(std::uint32_t divisor) {
    FastDiv f;
    f.d = divisor;
    if (divisor > 1) {
      std::uint32_t log2_ceil = 0;
      while ((std::uint64_t(1) << log2_ceil) < divisor) ++log2_ceil;
      const std::uint32_t p = 31 + log2_ceil;  // 2^p / d lies in [2^31, 2^32)
      f.mul = std::uint32_t(((std::uint64_t(1) << p) + divisor - 1) / divisor);
      f.shift = p - 32;
    }
    return f;
  }
  DILATED_INLINE std::uint32_t div(std::uint32_t n) const {
    if (d == 1) return n;
#if defined(__CUDA_ARCH__)
    return __umulhi(n, mul) >> shift;
#else
    return std::uint32_t((std::uint64_t(n) * mul) >> 32) >> shift;
#endif
  }
  DILATED_INLINE std::uint32_t mod(std::uint32_t n) const { return n - div(n) * d; }
};

// The divisors of one forward launch (ForwardParams::decode). enabled: every
// number the decode divides fits 31 bits and the launch is a whole-sequence,
// LongNet-mode, non-block-sparse one (plan.cu); otherwise decode_tile keeps
// its 64-bit arithmetic.
struct TileDivisors {
  FastDiv tiles;     // query tiles per segment
  FastDiv groups;    // batch x heads x segments (causal order)
  FastDiv segments;  // segments of the launch
  FastDiv heads;
  FastDiv dilation;  // r of the launch's branch
  bool enabled = false;
};

// What decode_tile derives from a tile index before its per-tile logic.
struct TileCoords {
  std::int64_t qt, segment, offset, kept, first;
  int b, h;
};

// decode_tile's index order (causal: last query tiles first, then groups;
// otherwise tiles innermost) and LongNet offsets (o = h mod r), for a launch
// over segments [first_segment, first_segment + segments) of a sequence of
// seq_len positions with segment length w.
DILATED_INLINE TileCoords fast_tile_coords(const TileDivisors& d, std::uint32_t idx, bool causal,
                                           std::int64_t tiles_per_segment, std::int64_t first_segment,
                                           std::int64_t w, std::int64_t seq_len) {
  TileCoords c;
  std::uint32_t g;
  if (causal) {
    const std::uint32_t q = d.groups.div(idx);
    c.qt = tiles_per_segment - 1 - std::int64_t(q);
    g = idx - q * d.groups.d;
  } else {
    g = d.tiles.div(idx);
    c.qt = std::int64_t(idx - g * d.tiles.d);
  }
  const std::uint32_t gs = d.segments.div(g);
  c.segment = first_segment + std::int64_t(g - gs * d.segments.d);
  const std::uint32_t bh = d.heads.div(gs);
  c.h = int(gs - bh * d.heads.d);
  c.b = int(bh);
  const std::uint32_t r = d.dilation.d;
  c.offset = std::int64_t(d.dilation.mod(std::uint32_t(c.h)));
  const std::int64_t begin = c.segment * w, end = begin + w < seq_len ? begin + w : seq_len;
  const std::int64_t len = end - begin;
  c.kept = len > c.offset ? std::int64_t(d.dilation.div(std::uint32_t(len - c.offset + r - 1))) : 0;
  c.first = begin + c.offset;
  return c;
}

}  // namespace dilated::cuda_fa3::details

// cuda_fa3/details/causal_order.hpp - the order in which the causal
// persistent forward grid hands out its tiles (forward_kernel.cuh
// produce_dynamic_tiles): ticket j (0, 1, ... as the tile counter hands them
// out) -> decode_tile's causal tile index (tile_scheduler.cuh: index
// qt_rev * groups + g is query tile tiles - 1 - qt_rev of group g, a group
// being one (batch, head, segment)).
//
// Within a section of `section` groups the tiles go heaviest first (the last
// query tiles of a segment visit the most key blocks), groups innermost, as
// decode_tile orders all of them; sections go one after another, so the CTAs
// running at one time read the K/V of one section's groups, which
// forward_launch.cu sizes to fit L2 (FA3's sections). With all 16 heads of
// N = 16K, d = 128 at once (128 MB of K/V), the one-tile-per-CTA causal
// kernel read 7.6x the dense kernel's DRAM bytes per second (ncu,
// perf_tests/results/h100-fa3-2026-11-27-fwd5/run1). The grid's tail stays
// short: the last section ends with its one-block tiles.
//
// Host and device (unit_tests/cuda_fa3/test_fa3_forward.cpp checks that it
// is a permutation with these properties). 32-bit: tickets < 2^30.
#pragma once

#include <cstdint>

#include "dilated/host_device.hpp"

namespace dilated::cuda_fa3::details {

// per_section = section * tiles (query tiles per group); 1 <= section <= groups.
DILATED_INLINE std::uint32_t causal_ticket_tile(std::uint32_t j, std::uint32_t groups, std::uint32_t section,
                                                std::uint32_t per_section) {
  const std::uint32_t sec = j / per_section, r = j - sec * per_section;
  const std::uint32_t first = sec * section;
  const std::uint32_t width = groups - first < section ? groups - first : section;  // the last may be narrower
  const std::uint32_t qt_rev = r / width;
  return qt_rev * groups + first + (r - qt_rev * width);
}

}  // namespace dilated::cuda_fa3::details

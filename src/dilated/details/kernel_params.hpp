// dilated/details/kernel_params.hpp - what every portable kernel needs to know
// besides its tensors, and the league decomposition they share.
#pragma once

#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "dilated/details/storage_types.hpp"
#include "dilated/dropout_rng.hpp"
#include "dilated/pattern.hpp"

namespace dilated {
namespace details {

// Accumulation type: float for float and 16-bit storage (storage_types.hpp),
// double for double.
template <class T>
struct accum {
  using type = float;
};
template <>
struct accum<double> {
  using type = double;
};
template <class T>
using accum_t = typename accum<T>::type;

// exp/log/log1p in the accumulation type, callable on host and device without
// depending on a Kokkos-version-specific math namespace.
KOKKOS_INLINE_FUNCTION float math_exp(float x) { return ::expf(x); }
KOKKOS_INLINE_FUNCTION double math_exp(double x) { return ::exp(x); }
KOKKOS_INLINE_FUNCTION float math_log(float x) { return ::logf(x); }
KOKKOS_INLINE_FUNCTION double math_log(double x) { return ::log(x); }
KOKKOS_INLINE_FUNCTION float math_log1p(float x) { return ::log1pf(x); }
KOKKOS_INLINE_FUNCTION double math_log1p(double x) { return ::log1p(x); }

// Key rows per inner step of the forward kernel (compile-time so score rows
// live in registers), and the head_dim chunk accumulated in registers.
constexpr int kKeyTile = 64;
constexpr int kDimChunk = 32;

struct KernelParams {
  PatternParams pattern;
  DropoutParams dropout;
  double scale = 1.0;         // softmax scale
  double output_scale = 1.0;  // 1, or 1/k in head-group mode
  bool causal = false;
  std::int64_t batch = 0, heads = 0, head_dim = 0;
  int branch = 0;             // the branch a launch processes
  std::int64_t tile_q = 128;  // query rows per team (sparse indices)
  std::int64_t tile_k = 64;   // key rows per inner step (backward; forward uses kKeyTile)
  std::int64_t tiles_per_segment = 0;
  std::int64_t segments = 0;
  int scratch_level = 0;      // 0: fast team scratch (shared memory on GPUs); 1: larger, slower
  // Windows of the sequence that the launch's tensors hold: query-side
  // tensors (q, out, lse, dout, delta, dq) hold positions [q_begin, q_end),
  // key-side tensors (k, v, dk, dv) hold [k_begin, k_end); a tensor's row is
  // position - begin. A plain Plan call uses [0, N) for both; sequence
  // parallelism (src/dist) passes a rank's shard and a peer's shard. Only
  // segments [first_segment, first_segment + segments) are visited.
  std::int64_t q_begin = 0, q_end = 0, k_begin = 0, k_end = 0;
  std::int64_t first_segment = 0;
  KOKKOS_INLINE_FUNCTION std::int64_t q_row(std::int64_t pos) const { return pos - q_begin; }
  KOKKOS_INLINE_FUNCTION std::int64_t k_row(std::int64_t pos) const { return pos - k_begin; }
};

// One team per (batch, head, segment, tile of the branch's sparse segment).
struct TileCoord {
  std::int64_t b, h, s, t;
};
KOKKOS_INLINE_FUNCTION TileCoord decode_tile(const KernelParams& p, std::int64_t r) {
  TileCoord c;
  c.t = r % p.tiles_per_segment;
  r /= p.tiles_per_segment;
  c.s = r % p.segments + p.first_segment;
  r /= p.segments;
  c.h = r % p.heads;
  c.b = r / p.heads;
  return c;
}

// The rows a team owns: sparse indices [begin, begin + count) of its segment
// for the head's offset in the launch's branch, inside the query window (or
// the key window when `own_keys`), and the other side's window in sparse
// indices, [other_begin, other_end). count == 0 when the head does not run
// the branch or the tile lies past the window's kept positions.
struct TileRows {
  std::int64_t offset, begin, count, other_begin, other_end;
};
KOKKOS_INLINE_FUNCTION TileRows tile_rows(const KernelParams& p, const TileCoord& c,
                                          std::int64_t tile, bool own_keys = false) {
  TileRows r{0, 0, 0, 0, 0};
  if (!p.pattern.active(c.h, p.branch)) return r;
  r.offset = p.pattern.offset(c.h, p.branch);
  std::int64_t q0, q1, k0, k1;
  p.pattern.window_range(p.branch, c.s, r.offset, p.q_begin, p.q_end, &q0, &q1);
  p.pattern.window_range(p.branch, c.s, r.offset, p.k_begin, p.k_end, &k0, &k1);
  const std::int64_t end = own_keys ? k1 : q1;
  r.begin = (own_keys ? k0 : q0) + c.t * tile;
  r.other_begin = own_keys ? q0 : k0;
  r.other_end = own_keys ? q1 : k1;
  if (p.pattern.block_sparse.enabled()) {
    // Tiles never cross a block (pattern.hpp); block-sparse plans run on the
    // whole sequence only, so the windows are [0, N).
    p.pattern.block_sparse.tile_range(own_keys, tile, c.t, &r.begin, &r.count);
    return r;
  }
  if (r.begin < end) r.count = end - r.begin < tile ? end - r.begin : tile;
  return r;
}

inline std::int64_t league_size(const KernelParams& p) {
  return p.batch * p.heads * p.segments * p.tiles_per_segment;
}

// Host backends run one thread per team and let the compiler vectorise the
// contiguous head_dim loops; device backends use a full team.
template <class ExecSpace>
constexpr bool is_host_space() {
  return std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value;
}

// Launches `functor` over `total` league entries in chunks that fit the int
// league size of Kokkos' TeamPolicy; the functor adds `league_offset`.
constexpr int kDeviceTeamSize = 64;

// Picks the scratch level for a kernel needing `bytes` per team: level 0 when
// it fits the backend's limit, else level 1. Returns -1 when neither fits.
template <class ExecSpace>
int choose_scratch_level(std::size_t bytes) {
  using Policy = Kokkos::TeamPolicy<ExecSpace>;
  if (bytes <= static_cast<std::size_t>(Policy::scratch_size_max(0))) return 0;
  if (bytes <= static_cast<std::size_t>(Policy::scratch_size_max(1))) return 1;
  return -1;
}

template <class ExecSpace, class Functor>
void launch_teams(const ExecSpace& space, const char* label, Functor functor, std::int64_t total,
                  std::size_t scratch_bytes) {
  const std::int64_t chunk = std::numeric_limits<int>::max() / 2;
  for (std::int64_t begin = 0; begin < total; begin += chunk) {
    const std::int64_t n = total - begin < chunk ? total - begin : chunk;
    functor.league_offset = begin;
    const int team = is_host_space<ExecSpace>() ? 1 : kDeviceTeamSize;
    Kokkos::TeamPolicy<ExecSpace> policy(space, static_cast<int>(n), team);
    policy.set_scratch_size(functor.p.scratch_level, Kokkos::PerTeam(scratch_bytes));
    Kokkos::parallel_for(label, policy, functor);
  }
}

template <class ExecSpace, class Acc>
using ScratchArray = Kokkos::View<Acc*, typename ExecSpace::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

}  // namespace details
}  // namespace dilated

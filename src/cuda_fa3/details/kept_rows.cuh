// cuda_fa3/details/kept_rows.cuh - zeroing and adding back only the rows a
// branch keeps in a window, for the windowed backward's fp32 accumulators.
//
// A window pair's accumulators are [batch, window rows, heads, d], but the
// kernel writes only the rows a head keeps (1/r of them, in the segments both
// windows share). Zeroing and adding back whole windows made the memory
// traffic of every src/dist ring step scale with the shard instead of with
// the shard / r. Both calls below visit the same rows (every kept row of every
// active head in the window), a superset of those the kernel writes, so the
// result is that of the whole-window memset + add. DILATED_FA3_WINDOW_ACC=whole
// restores the whole-window memset and add (A/B).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_fa3/fa3.hpp"
#include "dilated/pattern.hpp"

namespace dilated::cuda_fa3::details {

// True unless DILATED_FA3_WINDOW_ACC=whole (read once).
bool kept_rows_enabled();

// acc[b, x, h, :] = 0 for every row x of the window [begin, begin + rows)
// that head h keeps in branch i.
void launch_zero_kept(float* acc, const PatternParams& pat, int i, std::int64_t begin, std::int64_t batch,
                      std::int64_t rows, std::int64_t heads, std::int64_t dim, cudaStream_t stream);

// dst[b, x, h, :] += acc[b, x, h, :] for the same rows (rounded like
// launch_store_gradient).
template <class T>
void launch_add_kept(const float* acc, const MutableTensor& dst, const PatternParams& pat, int i,
                     std::int64_t begin, std::int64_t batch, std::int64_t rows, std::int64_t heads,
                     std::int64_t dim, cudaStream_t stream);

}  // namespace dilated::cuda_fa3::details

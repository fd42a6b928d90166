// cuda_fa3/details/workspace.hpp - stream-ordered workspace for the backward's
// fp32 accumulators, from a per-device memory pool that keeps what it has
// reserved across synchronisations.
//
// Why not plain cudaMallocAsync: the device's default pool has a release
// threshold of 0, so every stream/event/device synchronisation hands its free
// memory back to the driver, and the next call maps (and the driver clears)
// it again. The accumulators are GBs at long sequences (3 x [B, N, H, d] fp32),
// and src/dist synchronises at every ring step: the 4-H100 bf16 run of
// 2026-11-27 spent about 20 ms per backward ring step that the forward (no
// workspace) did not. This pool's threshold is unlimited: it keeps its peak
// reservation (the largest backward's accumulators) for the life of the process.
// DILATED_FA3_WORKSPACE=async restores the default pool (A/B runs). Measured on
// 4 H100s (perf_tests/results/multi-gpu-h100x4-bf16-2026-11-27/run2-after-fix):
// the weak LongNet backward at 4 GPUs 76 ms with this pool, 154 ms without.
//
// Why not src/memory's pool (a TLSF pool over CudaAsyncResource): it does not
// order reuse by stream (docs/memory.md, "Streams"), so a block may only go
// back after a fence, and cuda_fa3's backward is asynchronous (it frees its
// workspace in stream order and returns before the kernels finish). Once
// src/memory has stream-tagged blocks (docs/memory.md, Open), this file can
// become a MemoryResource taken from the caller.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace dilated::cuda_fa3::details {

// Asynchronous on `stream`; throws dilated::Error on failure.
void* workspace_alloc(std::size_t bytes, cudaStream_t stream);
// Stream-ordered free of a workspace_alloc block (never throws).
void workspace_free(void* p, cudaStream_t stream);

}  // namespace dilated::cuda_fa3::details

// cuda_fa3/details/ptx_sm90.cuh - the Hopper primitives the kernels are built
// from, each a one-line inline-PTX wrapper: mbarriers, TMA bulk-tensor loads,
// warpgroup MMA ordering, shared-memory matrix descriptors, register
// reallocation. Kept apart so the kernel files read as algorithm, not PTX.
#pragma once

#include <cuda.h>
#include <cstdint>

namespace dilated::cuda_fa3::details {

__device__ __forceinline__ std::uint32_t smem_u32(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarrier ---------------------------------------------------------------
__device__ __forceinline__ void mbar_init(std::uint64_t* bar, std::uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
// Makes initialised barriers visible to the async (TMA) proxy.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive(std::uint64_t* bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}" ::"r"(smem_u32(bar))
               : "memory");
}
// One arrival that also announces how many bytes the TMA will deliver.
__device__ __forceinline__ void mbar_arrive_expect_tx(std::uint64_t* bar, std::uint32_t bytes) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}" ::"r"(
                   smem_u32(bar)),
               "r"(bytes)
               : "memory");
}
// Blocks until the barrier's phase with the given parity has completed.
__device__ __forceinline__ void mbar_wait(std::uint64_t* bar, std::uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

// ---- TMA --------------------------------------------------------------------
__device__ __forceinline__ void prefetch_tensormap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}
// Copies one box of a rank-4 tensor (coordinates innermost first) into shared
// memory; completion is counted in bytes on `bar`.
__device__ __forceinline__ void tma_load_4d(void* dst, const CUtensorMap* map, std::uint64_t* bar,
                                            int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4, %5, %6}], [%2];" ::"r"(smem_u32(dst)),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2),
      "r"(c3)
      : "memory");
}

// Adds a shared-memory box into a rank-4 fp32 tensor element-wise
// (cp.reduce.async.bulk.tensor ... .add): the backward's dQ path. Rows past the
// tensor's bounds are dropped. Writers of the box must run fence_proxy_async()
// and synchronise with the issuing thread first; the issuing thread tracks
// completion with bulk_commit_group() / bulk_wait_group_read<N>().
__device__ __forceinline__ void tma_reduce_add_4d(const CUtensorMap* map, const void* src, int c0,
                                                  int c1, int c2, int c3) {
  asm volatile(
      "cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group"
      " [%0, {%2, %3, %4, %5}], [%1];" ::"l"(reinterpret_cast<std::uint64_t>(map)),
      "r"(smem_u32(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void bulk_commit_group() {
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}
// Waits until at most N committed bulk groups still read their shared memory
// source (the buffer may then be rewritten).
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}
// Waits until at most N committed bulk groups are incomplete (writes done).
template <int N>
__device__ __forceinline__ void bulk_wait_group() {
  asm volatile("cp.async.bulk.wait_group %0;" ::"n"(N) : "memory");
}
// Orders this thread's generic-proxy shared-memory writes before later
// async-proxy accesses (wgmma operand reads, TMA stores/reductions).
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// ---- cp.async (per-thread asynchronous copies to shared memory) -------------
// Any row stride and 4- or 16-byte pieces, with no descriptor: the forward's
// merge prefetches the rows of O and LSE it will combine with (merge_stage.cuh),
// whose dilated rows and LSE strides TMA could not address in general.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits for every cp.async group this thread committed.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

// ---- warpgroup MMA ordering ---------------------------------------------------
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(Pending) : "memory");
}
// Register arrays handed to wgmma must not be touched by ordinary code while
// the MMA is in flight; this makes the compiler treat them as live here.
template <int N>
__device__ __forceinline__ void fence_registers(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Keeps register operands of an in-flight wgmma alive (and unchanged) until
// this point: call it after the wait that retires the MMA reading them.
template <int N, int M>
__device__ __forceinline__ void keep_alive(const std::uint32_t (&r)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < M; ++j) asm volatile("" ::"r"(r[i][j]) : "memory");
}

// ---- shared-memory matrix descriptors (128-byte swizzle) --------------------
// Operand tiles live in "panels" of 64 16-bit elements (128 bytes) per row,
// written by TMA with CU_TENSOR_MAP_SWIZZLE_128B, each panel 1024-byte aligned.
//
// K-major operand (contiguous along the reduction dim, e.g. Q and K for S=QK^T):
// 8-row groups of 1024 bytes follow each other (stride byte offset = 1024);
// the leading byte offset is unused with swizzling. A 16-element k-step inside
// a 128-byte row is reached by advancing the start address by 32 bytes.
__device__ __forceinline__ std::uint64_t desc_k_major_sw128(const void* smem) {
  const std::uint64_t addr = smem_u32(smem);
  return ((addr & 0x3FFFF) >> 4) | (std::uint64_t(1) << 16) | (std::uint64_t(1024 >> 4) << 32) |
         (std::uint64_t(1) << 62);
}
// MN-major operand (contiguous along the output dim, e.g. V for O=PV): a
// swizzle atom is 64 columns x 8 reduction rows (1024 bytes); atoms along the
// columns are `panel_bytes` apart (leading byte offset), 8-row groups along the
// reduction dim are 1024 bytes apart (stride byte offset).
__device__ __forceinline__ std::uint64_t desc_mn_major_sw128(const void* smem,
                                                             std::uint32_t panel_bytes) {
  const std::uint64_t addr = smem_u32(smem);
  return ((addr & 0x3FFFF) >> 4) | (std::uint64_t((panel_bytes >> 4) & 0x3FFF) << 16) |
         (std::uint64_t(1024 >> 4) << 32) | (std::uint64_t(1) << 62);
}

// ---- named barriers (ids 1.. ; 0 is __syncthreads) ------------------------------
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

// True on every thread iff `pred` holds on all `threads` threads arriving at
// barrier `id` (bar.red.and).
__device__ __forceinline__ bool named_all(int id, int threads, bool pred) {
  std::uint32_t r;
  asm volatile(
      "{\n .reg .pred p, q;\n setp.ne.u32 p, %1, 0;\n bar.red.and.pred q, %2, %3, p;\n selp.u32 %0, 1, 0, q;\n}"
      : "=r"(r)
      : "r"(std::uint32_t(pred)), "r"(id), "r"(threads)
      : "memory");
  return r != 0;
}

// ---- register reallocation between warpgroups ---------------------------------
template <int Regs>
__device__ __forceinline__ void regs_release() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(Regs));
}
template <int Regs>
__device__ __forceinline__ void regs_acquire() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(Regs));
}

__device__ __forceinline__ void st_shared_f32(std::uint32_t addr, float x) {
  asm volatile("st.shared.f32 [%0], %1;" ::"r"(addr), "f"(x) : "memory");
}

// ---- small numeric helpers ---------------------------------------------------
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace dilated::cuda_fa3::details

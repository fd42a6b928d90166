// cuda_fa3/details/tensor_maps.cpp - see tensor_maps.hpp.
#include "cuda_fa3/details/tensor_maps.hpp"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <mutex>
#include <string>

#include "dilated/error.hpp"

namespace dilated::cuda_fa3::details {
namespace {

// The driver's encoder, found through the runtime so the library needs no
// -lcuda at link time.
PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  });
  if (!fn) throw Error("cuda.driver_entry_point", "cuda_fa3: the CUDA driver does not provide cuTensorMapEncodeTiled");
  return fn;
}

}  // namespace

void encode_dilated_map(CUtensorMap* map, DType dtype, const void* data, const Tensor& t,
                        std::int64_t batch, std::int64_t seq_len, std::int64_t heads,
                        std::int64_t head_dim, std::int64_t dilation, std::int64_t phase,
                        int box_rows) {
  constexpr std::int64_t kElem = 2;
  const char* base = static_cast<const char*>(data) + phase * t.stride_s * kElem;
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t((seq_len - phase + dilation - 1) / dilation),
                              cuuint64_t(heads), cuuint64_t(batch)};
  const cuuint64_t strides[3] = {cuuint64_t(t.stride_s * dilation * kElem), cuuint64_t(t.stride_h * kElem),
                                 cuuint64_t(t.stride_b * kElem)};
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  const CUresult rc = encoder()(
      map, dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
      const_cast<char*>(base), dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (rc != CUDA_SUCCESS)
    throw Error("cuda.tma_descriptor",
                "cuda_fa3: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(int(rc)) +
                    ") for dilation " + std::to_string(dilation) + ", phase " + std::to_string(phase));
}

void encode_dilated_map_f32(CUtensorMap* map, float* data, std::int64_t batch, std::int64_t seq_len,
                            std::int64_t heads, std::int64_t head_dim, std::int64_t dilation,
                            std::int64_t phase, int box_rows) {
  constexpr std::int64_t kElem = 4;
  const std::int64_t stride_s = heads * head_dim, stride_b = seq_len * stride_s;
  char* base = reinterpret_cast<char*>(data) + phase * stride_s * kElem;
  const cuuint64_t dims[4] = {cuuint64_t(head_dim), cuuint64_t((seq_len - phase + dilation - 1) / dilation),
                              cuuint64_t(heads), cuuint64_t(batch)};
  const cuuint64_t strides[3] = {cuuint64_t(stride_s * dilation * kElem), cuuint64_t(head_dim * kElem),
                                 cuuint64_t(stride_b * kElem)};
  const cuuint32_t box[4] = {32, cuuint32_t(box_rows), 1, 1};  // 32 floats = the 128-byte swizzle span
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  const CUresult rc = encoder()(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 4, base, dims, strides, box, elem_strides,
                                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (rc != CUDA_SUCCESS)
    throw Error("cuda.tma_descriptor",
                "cuda_fa3: cuTensorMapEncodeTiled (fp32 accumulator) failed (CUresult " + std::to_string(int(rc)) +
                    ") for dilation " + std::to_string(dilation) + ", phase " + std::to_string(phase));
}

}  // namespace dilated::cuda_fa3::details

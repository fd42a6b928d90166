// dilated/details/block_sparse_storage.hpp - a plan's device copy of a
// block-sparse layout (the runs of block_sparse.hpp), and the pointers the
// kernels' BlockSparseRule reads. Views are reference-counted, so copies of a
// plan share one copy and the rule's pointers stay valid while any lives.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "dilated/block_sparse.hpp"
#include "dilated/pattern.hpp"

namespace dilated {
namespace details {

template <class MemorySpace>
struct BlockSparseStorage {
  Kokkos::View<std::int64_t*, MemorySpace> row_offsets, col_offsets;
  Kokkos::View<std::int32_t*, MemorySpace> row_runs, col_runs;

  // Builds the layout of `pattern`, copies it to MemorySpace and points
  // `rule` (already sized by make_pattern) at it.
  void attach(const BlockSparsePattern& pattern, std::int64_t seq_len, BlockSparseRule* rule) {
    const BlockSparseLayout l = build_block_sparse_layout(pattern, seq_len);
    row_offsets = copy<std::int64_t>("dilated::block_sparse_row_offsets", l.row_offsets);
    col_offsets = copy<std::int64_t>("dilated::block_sparse_col_offsets", l.col_offsets);
    row_runs = copy<std::int32_t>("dilated::block_sparse_row_runs", l.row_runs);
    col_runs = copy<std::int32_t>("dilated::block_sparse_col_runs", l.col_runs);
    rule->row_offsets = row_offsets.data();
    rule->col_offsets = col_offsets.data();
    rule->row_runs = row_runs.data();
    rule->col_runs = col_runs.data();
  }

 private:
  template <class I>
  static Kokkos::View<I*, MemorySpace> copy(const char* label, const std::vector<I>& src) {
    Kokkos::View<I*, MemorySpace> dst(std::string(label), src.size());
    Kokkos::View<const I*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> h(
        src.data(), src.size());
    Kokkos::deep_copy(dst, h);
    return dst;
  }
};

}  // namespace details
}  // namespace dilated

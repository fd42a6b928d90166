// memory/size_histogram.hpp - request sizes in power-of-two-and-halves buckets.
//
// Bucket k covers [2^(k/2), ...) for even k and [1.5 * 2^(k/2), ...) for odd
// k: fine enough to see which sizes dominate, coarse enough to print.
#pragma once

#include <cstddef>
#include <string>

namespace dilated {
namespace memory {

inline constexpr int kSizeBuckets = 2 * 64;

inline int size_bucket(std::size_t bytes) {
  if (bytes < 2) return 0;
  const int log2 = 63 - __builtin_clzll(static_cast<unsigned long long>(bytes));
  const int half = static_cast<int>((bytes >> (log2 - 1)) & 1);
  return 2 * log2 + half;
}
// Lower bound of bucket k in bytes.
inline std::size_t bucket_floor(int k) {
  const std::size_t p = std::size_t(1) << (k / 2);
  return (k % 2) ? p + p / 2 : p;
}
// "1.5 MiB", "256 B": for tables.
std::string format_bytes(double bytes);

}  // namespace memory
}  // namespace dilated

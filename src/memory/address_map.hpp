// memory/address_map.hpp - address -> block lookup for the pool's arenas.
//
// The pool keeps its bookkeeping out of band (device memory cannot hold
// headers), so every free and every split needs "which block starts here?".
// std::unordered_map allocates a node per insert - a malloc inside our
// malloc - so this is a flat open-addressing table (linear probing,
// backward-shift deletion, no tombstones) that only allocates when it grows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dilated {
namespace memory {
namespace details {

template <class V>
class AddressMap {
 public:
  AddressMap() { rehash(64); }

  V* find(std::uintptr_t key) {
    for (std::size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == 0) return nullptr;
    }
  }
  // key must be non-zero and not present.
  void insert(std::uintptr_t key, V value) {
    if (2 * (size_ + 1) > keys_.size()) rehash(2 * keys_.size());
    std::size_t i = slot(key);
    while (keys_[i] != 0) i = (i + 1) & mask_;
    keys_[i] = key;
    values_[i] = value;
    ++size_;
  }
  bool erase(std::uintptr_t key) {
    std::size_t i = slot(key);
    while (keys_[i] != key) {
      if (keys_[i] == 0) return false;
      i = (i + 1) & mask_;
    }
    // Backward shift: pull later members of the probe run into the hole.
    for (std::size_t j = (i + 1) & mask_; keys_[j] != 0; j = (j + 1) & mask_) {
      const std::size_t home = slot(keys_[j]);
      // Move j into the hole i when its home is not cyclically in (i, j].
      const bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!in_range) {
        keys_[i] = keys_[j];
        values_[i] = values_[j];
        i = j;
      }
    }
    keys_[i] = 0;
    --size_;
    return true;
  }
  std::size_t size() const { return size_; }

 private:
  std::size_t slot(std::uintptr_t key) const {
    // Blocks are 256-byte aligned: drop the zero bits, then Fibonacci-hash.
    return static_cast<std::size_t>(((key >> 8) * 0x9E3779B97F4A7C15ull) >> shift_) & mask_;
  }
  void rehash(std::size_t capacity) {
    std::vector<std::uintptr_t> old_keys(capacity, 0);
    std::vector<V> old_values(capacity);
    old_keys.swap(keys_);
    old_values.swap(values_);
    mask_ = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (std::size_t i = 0; i < old_keys.size(); ++i)
      if (old_keys[i] != 0) insert(old_keys[i], old_values[i]);
  }

  std::vector<std::uintptr_t> keys_;
  std::vector<V> values_;
  std::size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace details
}  // namespace memory
}  // namespace dilated

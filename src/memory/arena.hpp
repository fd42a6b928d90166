// memory/arena.hpp - block bookkeeping of one pool arena: size bins, splitting
// and coalescing over address ranges ("segments") it is given.
//
// A two-level segregated fit (TLSF, Masmano et al. 2004): bins are powers of
// two each cut into 16 classes (finer than PyTorch's power-of-two-and-halves),
// a bitmap finds the first non-empty bin that surely fits in O(1), and before
// that the request's own class is scanned for a block that fits as is, so a
// workload that repeats its sizes reuses blocks without splitting. Free
// neighbours are merged at once, so no two adjacent blocks are ever both free.
//
// Oversize blocks (>= `oversize`, as PyTorch's max_split_size) serve only
// oversize requests: otherwise one mid-size block parked in a cached
// multi-GiB block pins it, the next multi-GiB request grows the pool, and a
// long trace ratchets reserved memory up.
//
// Freed blocks below the oversize threshold first go to a per-bin LIFO
// "quick list" without merging (as glibc's tcache/fastbins): a workload that
// frees and re-asks the same size - workspaces do - then costs a list pop and
// push, no split, no merge, no table update. Quick lists are merged back
// (flush_quick_lists) whenever a request finds no fit, before the pool grows
// and before segments are released, so they never make the pool larger.
//
// The arena only keeps books: no locking (the pool locks), no upstream calls,
// no memory access (block headers live out of band, so device memory works).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "memory/address_map.hpp"
#include "memory/resource.hpp"

namespace dilated {
namespace memory {
namespace details {

// Every block starts and ends on this granule.
inline constexpr std::size_t kGranule = 256;

struct Segment;

struct Block {
  std::uintptr_t addr = 0;
  std::size_t size = 0;        // bytes, a multiple of kGranule
  std::size_t requested = 0;   // bytes the caller asked for; 0 while free
  Block* prev_phys = nullptr;  // address neighbours inside the segment
  Block* next_phys = nullptr;
  Block* prev_free = nullptr;  // links of the bin list while free
  Block* next_free = nullptr;
  Segment* segment = nullptr;
  int bin = -1;
  bool free = false;    // in a bin (merged with its free neighbours)
  bool quick = false;   // in a quick list: free to callers, not merged yet
};

// One range obtained from the upstream.
struct Segment {
  void* base = nullptr;            // what the upstream returned
  std::size_t upstream_bytes = 0;  // what was asked of the upstream
  std::size_t upstream_alignment = 0;
  Stream stream;
  std::uintptr_t begin = 0;  // first granule-aligned byte used
  std::size_t size = 0;      // usable bytes from begin
};

class Arena {
 public:
  explicit Arena(std::size_t oversize);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A fitting block, carved to `bytes` (rounded to the granule) and marked in
  // use, or nullptr when no free block fits.
  Block* take(std::size_t bytes, std::size_t alignment);
  // Adopts a new segment as one free block.
  void add_segment(std::unique_ptr<Segment> segment);
  // The live block starting at addr, or nullptr.
  Block* find_live(std::uintptr_t addr);
  // Frees a live block: onto its quick list, or merged with free neighbours.
  void give_back(Block* b);
  // Merges every quick-listed block into the bins; true if there were any.
  bool flush_quick_lists();
  // Unlinks and returns segments that are entirely free: all of them, or the
  // smallest ones until they add up to at least `enough` bytes.
  std::vector<std::unique_ptr<Segment>> remove_free_segments(
      std::size_t enough = ~std::size_t(0));
  // Unlinks and returns all segments (pool destruction).
  std::vector<std::unique_ptr<Segment>> remove_all_segments();

  // (begin, usable bytes) of every segment, for placement reports.
  std::vector<std::pair<std::uintptr_t, std::size_t>> segment_ranges() const;

  // Why addr is not a live block start, for error messages.
  enum class Miss { Foreign, InsideFreeBlock, InsideLiveBlock };
  Miss classify(std::uintptr_t addr) const;

  // Bookkeeping figures (the pool aggregates them under its lock).
  std::size_t reserved() const { return reserved_; }
  std::size_t used() const { return used_; }  // bytes of live blocks
  std::size_t live_blocks() const { return live_blocks_; }
  std::uint64_t allocations() const { return allocations_; }
  std::uint64_t deallocations() const { return deallocations_; }
  std::size_t free_blocks() const { return free_blocks_ + quick_blocks_; }
  std::size_t segments() const { return segments_.size(); }
  std::size_t largest_free() const;
  std::size_t free_bytes() const { return reserved_ - used_; }

 private:
  static constexpr int kBins = 512;
  // Units (granules) below 16 get one bin each; above, bin = (power of two,
  // sixteenth within it).
  static int bin_of(std::size_t units) {
    if (units < 16) return static_cast<int>(units);
    const int fl = 63 - __builtin_clzll(static_cast<unsigned long long>(units));
    const int b = 16 + (fl - 4) * 16 + static_cast<int>((units >> (fl - 4)) & 15);
    return b < kBins ? b : kBins - 1;
  }
  static int bin_surely_fitting(std::size_t units);

  void bin_insert(Block* b);
  void bin_remove(Block* b);
  int first_nonempty_bin_from(int bin) const;
  Block* split_off_tail(Block* b, std::size_t keep);  // returns the new tail block
  void merge_and_bin(Block* b);
  bool acceptable(const Block* b, std::size_t search) const;
  Block* new_block();
  void recycle(Block* b);

  Block* bins_[kBins] = {};
  Block* quick_[kBins] = {};  // linked by next_free
  std::size_t quick_blocks_ = 0;
  std::uint64_t allocations_ = 0, deallocations_ = 0;
  std::uint64_t bitmap_[kBins / 64] = {};
  AddressMap<Block*> starts_;  // every block start, free or live
  std::map<std::uintptr_t, std::unique_ptr<Segment>> segments_;  // by begin
  std::vector<std::unique_ptr<Block[]>> block_chunks_;
  Block* spare_blocks_ = nullptr;  // recycled Block records (linked by next_free)
  std::size_t oversize_;
  std::size_t reserved_ = 0, used_ = 0, live_blocks_ = 0, free_blocks_ = 0;
};

}  // namespace details
}  // namespace memory
}  // namespace dilated

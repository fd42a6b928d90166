#include "memory/arena.hpp"

#include <algorithm>
#include <cassert>

namespace dilated {
namespace memory {
namespace details {

namespace {
constexpr int kSubBinsLog2 = 4;  // 16 classes per power of two
constexpr std::size_t kSubBins = std::size_t(1) << kSubBinsLog2;
// How many entries of the request's own bin are scanned for a block that fits
// as is: bounded, so a long bin never makes allocation slow.
constexpr int kExactScan = 8;

int floor_log2(std::size_t x) { return 63 - __builtin_clzll(static_cast<unsigned long long>(x)); }
std::uintptr_t align_up(std::uintptr_t x, std::size_t a) { return (x + a - 1) & ~(std::uintptr_t(a) - 1); }
}  // namespace

Arena::Arena(std::size_t oversize) : oversize_(oversize) {}

bool Arena::acceptable(const Block* b, std::size_t search) const {
  return b->size >= search && (b->size < oversize_ || search >= oversize_);
}
Arena::~Arena() = default;

// The lowest bin all of whose blocks are >= units.
int Arena::bin_surely_fitting(std::size_t units) {
  if (units < kSubBins) return static_cast<int>(units);
  const int fl = floor_log2(units);
  const std::size_t step = std::size_t(1) << (fl - kSubBinsLog2);
  const std::size_t lower = units & ~(step - 1);
  return lower == units ? bin_of(units) : bin_of(lower + step);
}

void Arena::bin_insert(Block* b) {
  const int i = bin_of(b->size / kGranule);
  b->bin = i;
  b->free = true;
  b->prev_free = nullptr;
  b->next_free = bins_[i];
  if (bins_[i]) bins_[i]->prev_free = b;
  bins_[i] = b;
  bitmap_[i / 64] |= std::uint64_t(1) << (i % 64);
  ++free_blocks_;
}

void Arena::bin_remove(Block* b) {
  const int i = b->bin;
  if (b->prev_free) b->prev_free->next_free = b->next_free;
  else bins_[i] = b->next_free;
  if (b->next_free) b->next_free->prev_free = b->prev_free;
  if (!bins_[i]) bitmap_[i / 64] &= ~(std::uint64_t(1) << (i % 64));
  b->prev_free = b->next_free = nullptr;
  b->free = false;
  b->bin = -1;
  --free_blocks_;
}

int Arena::first_nonempty_bin_from(int bin) const {
  int w = bin / 64;
  if (w >= kBins / 64) return -1;
  std::uint64_t bits = bitmap_[w] & (~std::uint64_t(0) << (bin % 64));
  while (true) {
    if (bits) return w * 64 + __builtin_ctzll(bits);
    if (++w == kBins / 64) return -1;
    bits = bitmap_[w];
  }
}

Block* Arena::new_block() {
  if (!spare_blocks_) {
    constexpr int kChunk = 256;
    block_chunks_.emplace_back(new Block[kChunk]);
    Block* chunk = block_chunks_.back().get();
    for (int i = 0; i < kChunk; ++i) {
      chunk[i].next_free = spare_blocks_;
      spare_blocks_ = &chunk[i];
    }
  }
  Block* b = spare_blocks_;
  spare_blocks_ = b->next_free;
  *b = Block{};
  return b;
}

void Arena::recycle(Block* b) {
  *b = Block{};
  b->next_free = spare_blocks_;
  spare_blocks_ = b;
}

Block* Arena::split_off_tail(Block* b, std::size_t keep) {
  Block* t = new_block();
  t->addr = b->addr + keep;
  t->size = b->size - keep;
  t->segment = b->segment;
  t->prev_phys = b;
  t->next_phys = b->next_phys;
  if (b->next_phys) b->next_phys->prev_phys = t;
  b->next_phys = t;
  b->size = keep;
  starts_.insert(t->addr, t);
  return t;
}

Block* Arena::take(std::size_t bytes, std::size_t alignment) {
  const std::size_t need = (bytes + kGranule - 1) & ~(kGranule - 1);
  // 0. A quick-listed block of the same class: the steady-state path.
  if (alignment <= kGranule) {
    const int q = bin_of(need / kGranule);
    Block* c = quick_[q];
    if (c && c->size >= need) {
      quick_[q] = c->next_free;
      c->next_free = nullptr;
      c->quick = false;
      --quick_blocks_;
      c->requested = bytes;
      used_ += c->size;
      ++live_blocks_;
      ++allocations_;
      return c;
    }
  }
  const std::size_t slack = alignment > kGranule ? alignment - kGranule : 0;
  const std::size_t search = need + slack;
  Block* b = nullptr;
  // 1. The request's own class: a block that fits as is (no split needed
  //    when sizes repeat, which is what workspaces do).
  const int own = bin_of(search / kGranule);
  int scanned = 0;
  for (Block* c = bins_[own]; c && scanned < kExactScan; c = c->next_free, ++scanned)
    if (acceptable(c, search)) {
      b = c;
      break;
    }
  // 2. The first non-empty bin whose every block fits (bins above it hold
  //    only larger blocks, so if none here is acceptable none is).
  if (!b) {
    const int bin = first_nonempty_bin_from(bin_surely_fitting(search / kGranule));
    if (bin < 0) return nullptr;
    scanned = 0;
    for (Block* c = bins_[bin]; c && scanned < kExactScan; c = c->next_free, ++scanned)
      if (acceptable(c, search)) {
        b = c;
        break;
      }
    if (!b) return nullptr;
  }
  bin_remove(b);
  // Alignment above the granule: the bytes before the aligned address stay free.
  if (alignment > kGranule) {
    const std::size_t gap = align_up(b->addr, alignment) - b->addr;
    if (gap) {
      Block* rest = split_off_tail(b, gap);
      bin_insert(b);  // its previous neighbour is live: no merge possible
      b = rest;
    }
  }
  if (b->size - need >= kGranule) bin_insert(split_off_tail(b, need));
  b->requested = bytes;
  used_ += b->size;
  ++live_blocks_;
  ++allocations_;
  return b;
}

bool Arena::flush_quick_lists() {
  if (!quick_blocks_) return false;
  for (Block*& head : quick_)
    while (head) {
      Block* b = head;
      head = b->next_free;
      b->next_free = nullptr;
      b->quick = false;
      merge_and_bin(b);
    }
  quick_blocks_ = 0;
  return true;
}

void Arena::add_segment(std::unique_ptr<Segment> segment) {
  Block* b = new_block();
  b->addr = segment->begin;
  b->size = segment->size;
  b->segment = segment.get();
  starts_.insert(b->addr, b);
  reserved_ += segment->size;
  const std::uintptr_t key = segment->begin;
  segments_.emplace(key, std::move(segment));
  bin_insert(b);
}

Block* Arena::find_live(std::uintptr_t addr) {
  Block** b = starts_.find(addr);
  return (b && !(*b)->free && !(*b)->quick) ? *b : nullptr;
}

void Arena::give_back(Block* b) {
  assert(!b->free && !b->quick);
  used_ -= b->size;
  --live_blocks_;
  ++deallocations_;
  b->requested = 0;
  if (b->size < oversize_) {
    const int q = bin_of(b->size / kGranule);
    b->quick = true;
    b->next_free = quick_[q];
    quick_[q] = b;
    ++quick_blocks_;
    return;
  }
  merge_and_bin(b);
}

void Arena::merge_and_bin(Block* b) {
  if (Block* n = b->next_phys; n && n->free) {
    bin_remove(n);
    b->size += n->size;
    b->next_phys = n->next_phys;
    if (n->next_phys) n->next_phys->prev_phys = b;
    starts_.erase(n->addr);
    recycle(n);
  }
  if (Block* p = b->prev_phys; p && p->free) {
    bin_remove(p);
    p->size += b->size;
    p->next_phys = b->next_phys;
    if (b->next_phys) b->next_phys->prev_phys = p;
    starts_.erase(b->addr);
    recycle(b);
    b = p;
  }
  bin_insert(b);
}

std::vector<std::unique_ptr<Segment>> Arena::remove_free_segments(std::size_t enough) {
  flush_quick_lists();
  std::vector<std::pair<std::size_t, std::uintptr_t>> candidates;  // (size, begin)
  for (const auto& s : segments_) {
    Block** first = starts_.find(s.first);
    if (first && (*first)->free && (*first)->size == s.second->size)
      candidates.emplace_back(s.second->size, s.first);
  }
  std::sort(candidates.begin(), candidates.end());  // smallest first
  std::vector<std::unique_ptr<Segment>> out;
  std::size_t released = 0;
  for (const auto& c : candidates) {
    if (released >= enough) break;
    auto it = segments_.find(c.second);
    Block* b = *starts_.find(c.second);
    bin_remove(b);
    starts_.erase(b->addr);
    recycle(b);
    reserved_ -= c.first;
    released += c.first;
    out.push_back(std::move(it->second));
    segments_.erase(it);
  }
  return out;
}

std::vector<std::unique_ptr<Segment>> Arena::remove_all_segments() {
  std::vector<std::unique_ptr<Segment>> out;
  for (auto& s : segments_) out.push_back(std::move(s.second));
  segments_.clear();
  starts_ = AddressMap<Block*>();
  for (Block*& b : bins_) b = nullptr;
  for (std::uint64_t& w : bitmap_) w = 0;
  for (Block*& b : quick_) b = nullptr;
  block_chunks_.clear();
  spare_blocks_ = nullptr;
  reserved_ = used_ = live_blocks_ = free_blocks_ = quick_blocks_ = 0;
  return out;
}

Arena::Miss Arena::classify(std::uintptr_t addr) const {
  auto it = segments_.upper_bound(addr);
  if (it == segments_.begin()) return Miss::Foreign;
  --it;
  const Segment& s = *it->second;
  if (addr >= s.begin + s.size) return Miss::Foreign;
  // Walk the segment's blocks (error path only).
  Block* const* first = const_cast<AddressMap<Block*>&>(starts_).find(s.begin);
  for (const Block* b = first ? *first : nullptr; b; b = b->next_phys)
    if (addr >= b->addr && addr < b->addr + b->size)
      return (b->free || b->quick) ? Miss::InsideFreeBlock : Miss::InsideLiveBlock;
  return Miss::Foreign;
}

std::vector<std::pair<std::uintptr_t, std::size_t>> Arena::segment_ranges() const {
  std::vector<std::pair<std::uintptr_t, std::size_t>> out;
  for (const auto& s : segments_) out.emplace_back(s.second->begin, s.second->size);
  return out;
}

std::size_t Arena::largest_free() const {
  const int top = [&] {
    for (int w = kBins / 64 - 1; w >= 0; --w)
      if (bitmap_[w]) return w * 64 + floor_log2(bitmap_[w]);
    return -1;
  }();
  std::size_t best = 0;
  if (top >= 0)
    for (const Block* b = bins_[top]; b; b = b->next_free) best = b->size > best ? b->size : best;
  return best;
}

}  // namespace details
}  // namespace memory
}  // namespace dilated

// CPU check of the LongNet group walk in longnet_group_measured.patch (apply it to
// 731ed77 first): every (query, key) pair of branches [0, count) must be listed
// with the multiplicity the float64 reference gives it (group: as often as its
// branches list it; dedup: once, weighted by that count). Build:
//   g++ -std=c++17 -O2 -Isrc longnet_group_walk_check.cpp src/dilated/config.cpp src/dilated/block_sparse.cpp
// Ran 2026-11-27 on 8 configs x {group, dedup}: 0 mismatches.
// CPU simulation of the LongNet group walk: every (row, key) pair's listing
// count must equal the number of branches that list it (reference rule).
#include <cstdio>
#include <map>
#include <vector>
#include "cuda_fa3/details/longnet_group.hpp"
#include "dilated/config.hpp"
#include "dilated/pattern.hpp"
using namespace dilated;
using namespace dilated::cuda_fa3::details;
int check(std::vector<Branch> br, std::int64_t N, std::int64_t H, bool dedup, int Block) {
  AttentionConfig c; c.branches = br; c.allow_partial_segments = true;
  ProblemShape s{1, N, H, 64};
  PatternParams p = make_pattern(c, s);
  setenv("DILATED_FA3_LONGNET", dedup ? "dedup" : "group", 1);
  LongNetGroup g = plan_longnet_group(p, false, false);
  g.dedup = dedup && 8 % (g.stride / p.dilation[0]) == 0;
  if (g.count == 0) { printf("no group\n"); return 0; }
  // reference: for each head, row: multiset count of keys over branches [0,count)
  long bad = 0, tiles = 0, visited = 0, pairs = 0;
  for (int h = 0; h < H; ++h) {
    std::map<std::pair<long,long>, double> ref, got;
    for (int b = 0; b < g.count; ++b) {
      std::int64_t o = p.offset(h, b);
      for (std::int64_t q = 0; q < N; ++q) { std::int64_t sq, jq; if (!p.keeps(b, o, q, &sq, &jq)) continue;
        for (std::int64_t k = p.segment_begin(b, sq); k < p.segment_end(b, sq); ++k) { std::int64_t sk, jk; if (p.keeps(b, o, k, &sk, &jk)) ref[{q,k}] += 1; } }
    }
    // simulate tiles
    for (int rank = 0; rank < g.classes; ++rank) for (std::int64_t seg = 0; seg < g.segments; ++seg) for (std::int64_t qt = 0; qt < g.tiles_per_class; ++qt) {
      int R = g.stride, d = g.class_order[rank], cc = (h + d) % R;
      int seg0 = int(seg * p.segment_length[0]);
      int len = int(p.segment_end(0, seg)) - seg0;
      int q_end = group_ceil(len - cc, R);
      int q_begin = qt * 128; if (q_begin >= q_end) continue;
      int q_count = std::min(128, q_end - q_begin);
      ++tiles;
      // walk
      int blocks = 0;
      for (int b = 0, prev = -1; b < g.count; ++b) { if (!group_member(p, b, d)) continue;
        for (int part = 0; part < 2; ++part) { int lo, hi, r0; group_span(p, b, g.dedup ? prev : -1, part, h, seg0, &lo, &hi, &r0); if (hi > lo) blocks += (hi - lo + Block - 1) / Block; }
        prev = b; }
      int branch = -1, prev = -1, part = 0, key = 0, end = 0, row0 = 0, map = 0;
      for (int kb = 0; kb < blocks; ++kb) {
        while (key >= end) {
          if (part == 0 && g.dedup && prev >= 0) { part = 1; group_span(p, branch, prev, 1, h, seg0, &key, &end, &row0); continue; }
          if (branch >= 0) prev = branch;
          do ++branch; while (branch < g.count && !group_member(p, branch, d));
          if (branch >= g.count) { printf("WALK PAST END\n"); return 1; }
          part = 0; group_span(p, branch, g.dedup ? prev : -1, 0, h, seg0, &key, &end, &row0);
          map = g.slot[branch] + h % int(p.dilation[branch]);
        }
        int r = int(p.dilation[branch]); int phase = map - g.slot[branch];
        for (int col = 0; col < Block; ++col) { int j = key + col; if (j >= end) continue;
          long kpos = phase + (long)(row0 + j) * r;   // descriptor row -> position
          int m = 1 + (g.dedup ? group_extra_listings(p, g.count, branch, d, h, j) : 0);
          for (int i = 0; i < q_count; ++i) { long qpos = seg0 + cc + (long)(q_begin + i) * R; got[{qpos, kpos}] += m; ++visited; } }
        key += Block;
      }
    }
    for (auto& [k, v] : ref) { auto it = got.find(k); if (it == got.end() || it->second != v) { if (bad < 5) printf("h%d q%ld k%ld ref %g got %g\n", h, k.first, k.second, v, it == got.end() ? 0 : it->second); ++bad; } }
    for (auto& [k, v] : got) if (!ref.count(k)) { if (bad < 5) printf("extra h%d q%ld k%ld\n", h, k.first, k.second); ++bad; }
    pairs += ref.size();
  }
  printf("count %d R %d dedup %d classes %d tiles %ld pairs %ld visited %ld bad %ld\n", g.count, g.stride, g.dedup, g.classes, tiles, pairs, visited, bad);
  return bad != 0;
}
int main() {
  int f = 0;
  for (int dd = 0; dd < 2; ++dd) {
    f |= check({{256,1},{512,2},{1024,4}}, 2048, 4, dd, 128);
    f |= check({{64,1},{128,2},{256,4},{512,6},{1024,12}}, 1024, 3, dd, 64);
    f |= check({{64,1},{128,2},{256,4}}, 1000, 5, dd, 128);   // partial segments
    f |= check({{128,2},{256,4},{512,8}}, 1500, 5, dd, 64);    // r0 > 1
    f |= check({{256,1},{512,2},{1024,4},{2048,6},{4096,12}}, 4096, 4, dd, 128);  // LongNet's shape, scaled
    f |= check({{256,1},{512,2},{1024,4}}, 1700, 5, dd, 128);
    f |= check({{128,2},{256,4},{512,8}}, 1536, 5, dd, 64);
    f |= check({{128,1},{256,2},{768,6}}, 1536, 7, dd, 64);
  }
  printf(f ? "FAIL\n" : "OK\n");
  return f;
}

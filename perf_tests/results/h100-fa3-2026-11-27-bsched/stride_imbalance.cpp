// CPU check behind results 2026-11-27 (k): how unevenly the persistent
// forward's static stride (CTA c runs tiles c, c + 132, ...) spreads
// bench_fa3's 90% block-sparse mask (its random_blocks: std::shuffle with
// mt19937_64(42), 10% of 128 x 128 blocks, one layout for 16 heads) over 132
// CTAs, and what list scheduling in other orders would give. Cost of a tile =
// its key blocks + alpha (a per-tile fixed cost in blocks). Prints max/mean
// of the per-CTA sums: "static" = the stride, "dyn-order" = greedy in the
// kernel's order, "LPT" = greedy in globally descending cost, "head-major-desc"
// = greedy, heads in order, each head's tiles descending (tile_schedule.hpp).
// Build: g++ -O2 -o imb stride_imbalance.cpp && ./imb
#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <queue>
#include <random>
#include <vector>
#include <functional>
int main(int argc, char** argv) {
  for (long n : {16384L, 65536L}) for (int causal : {0, 1}) {
    const long nb = n / 128;
    std::vector<uint8_t> mask(nb * nb, 0);
    std::vector<size_t> cells(mask.size());
    for (size_t i = 0; i < cells.size(); ++i) cells[i] = i;
    std::mt19937_64 rng(42);
    std::shuffle(cells.begin(), cells.end(), rng);
    for (size_t i = 0; i < size_t(0.1 * double(cells.size())); ++i) mask[cells[i]] = 1;
    std::vector<int> cnt(nb);
    for (long q = 0; q < nb; ++q) { int c = 0; for (long k = 0; k < nb; ++k) if (mask[q*nb+k] && (!causal || k <= q)) ++c; cnt[q] = c; }
    const int heads = 16, sms = 132; const long tiles = heads * nb;
    long tot = 0; int mx = 0, mn = 1 << 30, empty = 0; for (int c : cnt) { tot += c; mx = std::max(mx, c); mn = std::min(mn, c); empty += c == 0; }
    printf("N=%ld causal=%d blocks/tile mean %.2f min %d max %d empty %d\n", n, causal, double(tot)/nb, mn, mx, empty);
    for (double alpha : {0.0, 2.0, 4.0, 6.0}) {
      auto cost = [&](long idx) { long qt, g; if (causal) { qt = nb - 1 - idx / heads; g = idx % heads; } else { qt = idx % nb; g = idx / nb; } return cnt[qt] ? cnt[qt] + alpha : 0.0; };
      std::vector<double> load(sms, 0); double sum = 0;
      for (long idx = 0; idx < tiles; ++idx) { load[idx % sms] += cost(idx); sum += cost(idx); }
      double mean = sum / sms, m = *std::max_element(load.begin(), load.end());
      // greedy in given order (dynamic counter, same order)
      auto greedy = [&](std::vector<long> order) { std::priority_queue<double, std::vector<double>, std::greater<double>> pq; for (int i=0;i<sms;++i) pq.push(0); for (long idx : order) { double l = pq.top(); pq.pop(); pq.push(l + cost(idx)); } double M=0; while(!pq.empty()){M=std::max(M,pq.top());pq.pop();} return M; };
      std::vector<long> ord(tiles); for (long i=0;i<tiles;++i) ord[i]=i;
      double gdyn = greedy(ord);
      std::vector<long> lpt = ord; std::stable_sort(lpt.begin(), lpt.end(), [&](long a, long b){ return cost(a) > cost(b);});
      double glpt = greedy(lpt);
      // head-major, within head descending
      std::vector<long> hd = ord; std::stable_sort(hd.begin(), hd.end(), [&](long a, long b){ long ga=a/nb, gb=b/nb; if (causal) {ga = a%heads; gb=b%heads;} if (ga!=gb) return ga<gb; return cost(a)>cost(b);});
      double ghd = greedy(hd);
      printf("  alpha %.0f: mean %.1f static max/mean %.3f  dyn-order %.3f  LPT %.3f  head-major-desc greedy %.3f\n", alpha, mean, m/mean, gdyn/mean, glpt/mean, ghd/mean);
    }
  }
}

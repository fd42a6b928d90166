// One-off (kept with the results, 2026-11-27, this 2-core CPU): what per-branch
// read-modify-write rounding of a 16-bit `out` would cost against one rounding
// after a float merge. Per-branch outputs and LSEs come from the float64
// reference (one-branch configs; in LongNet mode a head's offset in a branch
// does not depend on the others). Error: max |got - exact merge| / max(1, max|exact|), in u.
// Build: g++ -O2 -std=c++17 -Isrc rmw_rounding.cpp src/dilated/{reference,config,block_sparse}.cpp
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "dilated/reference.hpp"
using namespace dilated;
static double rnd(double x, int p) {  // round to p significant bits, nearest-even
  if (x == 0 || !std::isfinite(x)) return x;
  int e; std::frexp(x, &e);
  const double sc = std::ldexp(1.0, p - e);
  return std::nearbyint(x * sc) / sc;
}
int main() {
  struct C { std::vector<Branch> br; ProblemShape s; bool causal; };
  std::vector<C> cases = {
    {{{8, 1}, {16, 2}, {32, 4}, {64, 6}, {128, 12}}, {3, 128, 3, 128}, false},
    {{{8, 1}, {16, 2}, {32, 4}, {64, 6}, {128, 12}}, {3, 128, 3, 128}, true},
    {{{256, 1}, {512, 2}, {1024, 4}, {2048, 6}, {4096, 12}}, {1, 4096, 4, 64}, true},
    {{{256, 1}, {512, 2}, {1024, 4}, {2048, 6}, {4096, 12}}, {1, 4096, 4, 64}, false},
  };
  for (const C& c : cases) {
    const ProblemShape& s = c.s;
    const std::size_t n = s.batch * s.seq_len * s.heads * s.head_dim, nl = s.batch * s.heads * s.seq_len;
    std::mt19937_64 g(7); std::uniform_real_distribution<double> U(-1, 1);
    std::vector<double> q(n), k(n), v(n);
    for (auto* t : {&q, &k, &v}) for (auto& x : *t) x = rnd(U(g), 8);
    const int nb = c.br.size();
    std::vector<std::vector<double>> o(nb, std::vector<double>(n)), l(nb, std::vector<double>(nl));
    for (int i = 0; i < nb; ++i) {
      AttentionConfig cfg; cfg.branches = {c.br[i]}; cfg.causal = c.causal;
      reference::forward(cfg, s, q.data(), k.data(), v.data(), o[i].data(), l[i].data());
    }
    for (int p : {8, 11}) {
      double e_once = 0, e_rmw = 0, scale = 1;
      for (std::int64_t b = 0; b < s.batch; ++b)
        for (std::int64_t t = 0; t < s.seq_len; ++t)
          for (std::int64_t h = 0; h < s.heads; ++h) {
            const std::size_t li = (b * s.heads + h) * s.seq_len + t;
            std::vector<double> exact(s.head_dim, 0.0), rmw(s.head_dim, 0.0);
            double lse = -INFINITY;
            for (int i = 0; i < nb; ++i) {
              const double lb = l[i][li];
              if (lb == -INFINITY) continue;
              const double hi = std::max(lse, lb), lo = std::min(lse, lb);
              const double ln = lse == -INFINITY ? lb : hi + std::log1p(std::exp(lo - hi));
              const double wo = lse == -INFINITY ? 0 : std::exp(lse - ln), wn = std::exp(lb - ln);
              for (std::int64_t x = 0; x < s.head_dim; ++x) {
                const double oi = o[i][((b * s.seq_len + t) * s.heads + h) * s.head_dim + x];
                exact[x] = exact[x] * wo + wn * oi;
                rmw[x] = rnd(float(rmw[x] * wo + wn * oi), p);
              }
              lse = ln;
            }
            for (std::int64_t x = 0; x < s.head_dim; ++x) {
              scale = std::max(scale, std::fabs(exact[x]));
              e_once = std::max(e_once, std::fabs(rnd(exact[x], p) - exact[x]));
              e_rmw = std::max(e_rmw, std::fabs(rmw[x] - exact[x]));
            }
          }
      const double u = std::ldexp(1.0, -p);
      std::printf("%d branches B=%lld N=%lld H=%lld d=%lld%s  %s: max error one rounding %.3f u, per-branch RMW %.3f u\n",
                  nb, (long long)s.batch, (long long)s.seq_len, (long long)s.heads, (long long)s.head_dim,
                  c.causal ? " causal" : "", p == 8 ? "bf16" : "fp16", e_once / scale / u, e_rmw / scale / u);
    }
  }
}

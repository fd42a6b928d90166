// Performance model of src/dist's sequence parallelism: predicted time per
// attention layer (forward, backward) from the compute rate, link bandwidth
// and latency, for P = 1 .. 1024 ranks. The formula is the schedule that
// ring_forward.hpp / ring_backward.hpp run, step by step (docs/dist.md,
// "Performance model"):
//
//   per rank, l = N / P; branch i (w, r), kept rows per head n = l / r:
//   local  (w <= l): F_i = B H (l / w) pairs(w / r) 4 d, forward F_i / R,
//                    backward 2.5 F_i / R (the local branches' sum: L)
//   cross  (w  > l): g = w / l ranks (zigzag: g = P); one block: c = B H n^2 4 d / R;
//                    own (diagonal) block c0, other blocks cs; one transfer
//                    (a K/V block or a dK/dV accumulator) t = alpha + 2 B H n d s / beta
//     forward  max(c0, t) + (g - 2) max(cs, t) + cs      (the last block is not passed on)
//     backward, with b0 = 2.5 c0, bs = 2.5 cs, cross-rank branches first:
//       step 0      max(e, t + p)    own block part e (K/V hop; p: the previous
//                                    cross-rank branch's return, travelling too)
//       step 1      max(bs, t [g > 2])           (K/V prefetch)
//       step s      max(bs, t [s + 1 < g] + t)   (2 <= s < g: prefetch + accumulator)
//       return      t, started at the branch's end; it travels during the next
//                   cross-rank branch's step 0 (p above) or, for the last one,
//                   during its late part b0 - e plus the local branches L:
//                   exposed max(0, t - (b0 - e) - L)
//     e = b0, except for the last cross-rank branch when L < b0 / 2: its own
//     block is split by query rows, e = b0 / 2 (causal contiguous b0 / 4, causal
//     zigzag 3 b0 / 8: the first rows see fewer keys).
//     --eager-return: the earlier schedule (each return waited for, exposed t).
//   causal: c0 = c / 2 on the diagonal block; the contiguous layout's last rank
//   of a group does all g steps (it sets the time); zigzag halves every step.
//   layer time = sum over branches (they run one after another).
//   Bytes sent by the busiest rank: (g - 1) 2 B H n d s forward, twice that backward.
//
//   dist_perf_model [--seq N] [--heads H] [--dim d] [--batch B] [--bytes s]
//     [--branches w:r,...] [--causal] [--zigzag] [--tflops R] [--link-gbs b]
//     [--net-gbs b] [--latency-us a] [--gpus-per-node 8] [--ranks 1,2,4,...]
//     [--mem-gib 80] [--eager-return]
// Defaults: a 1B-token (2^30) LongNet layer, H = 16, d = 128, bf16, on H100s:
// R = 400 TFLOP/s (an FA3-class kernel), NVLink 450 GB/s inside a node of 8,
// 50 GB/s (400 Gb/s InfiniBand) between nodes, 10 us latency.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "dilated/error.hpp"
#include "dist/shard_layout.hpp"

namespace {

struct Model {
  double N = 1073741824.0, H = 16, d = 128, B = 1, s = 2;
  std::vector<dilated::Branch> branches;
  bool causal = false, zigzag = false;
  double R = 400e12, link = 450e9, net = 50e9, alpha = 10e-6, mem_gib = 80;
  int gpus_per_node = 8;
  std::vector<long long> ranks = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  bool eager_return = false;  // the earlier backward schedule (each return waited for)
};

struct Time {
  double fwd = 0, bwd = 0, fwd_compute = 0, bwd_compute = 0;
  double fwd_bytes = 0, bwd_bytes = 0;  // sent by the busiest rank
  int local = 0, cross = 0;
};

double pairs(double n, bool causal) { return causal ? n * (n + 1) / 2 : n * n; }

// One cross-rank branch as the backward schedule sees it.
struct CrossBranch {
  double g, b0, bs, t, early;  // early: the own block's first part when split
};

// Steps 0 .. g-1 of a cross-rank branch's backward: own block part e with the
// K/V hop (and a pending return p), then the other blocks.
double backward_steps(const CrossBranch& x, double e, double p) {
  if (x.g < 2) return x.b0;  // a ring of one: no transfer
  double time = std::max(e, x.t + p);
  time += std::max(x.bs, x.g > 2 ? x.t : 0.0);
  for (double s = 2; s < x.g; ++s) time += std::max(x.bs, (s + 1 < x.g ? x.t : 0.0) + x.t);
  return time;
}

Time layer_time(const Model& m, long long P) {
  Time t;
  const double l = m.N / static_cast<double>(P);
  double local_bwd = 0;
  std::vector<CrossBranch> cross;
  for (const auto& br : m.branches) {
    const double w = static_cast<double>(br.segment_length), r = static_cast<double>(br.dilation);
    if (w <= (m.zigzag ? l / 2 : l)) {  // local: l / w segments per rank
      const double f = m.B * m.H * (l / w) * pairs(w / r, m.causal) * 4 * m.d;
      t.fwd += f / m.R;
      t.fwd_compute += f / m.R;
      local_bwd += 2.5 * f / m.R;
      ++t.local;
      continue;
    }
    ++t.cross;
    const double g = m.zigzag ? static_cast<double>(P) : w / l;
    const double n = l / r;
    const double c = m.B * m.H * n * n * 4 * m.d / m.R;
    // The ring's slowest hop: inside a node when the group fits in one.
    const double beta = g <= m.gpus_per_node ? m.link : m.net;
    const double kv_bytes = 2 * m.B * m.H * n * m.d * m.s;
    const double tr = m.alpha + kv_bytes / beta;
    double c0 = c, cs = c, early = 0.5;  // diagonal step, other steps, split share
    if (m.causal) {
      c0 = c / 2;
      early = 0.25;
      if (m.zigzag) cs = c / 2, early = 0.375;  // balanced: every rank half of each block pair
    }
    t.fwd += g < 2 ? c0 : std::max(c0, tr) + (g - 2) * std::max(cs, tr) + cs;
    t.fwd_compute += c0 + (g - 1) * cs;
    t.bwd_compute += 2.5 * (c0 + (g - 1) * cs);
    t.fwd_bytes += (g - 1) * kv_bytes;
    t.bwd_bytes += 2 * (g - 1) * kv_bytes;
    cross.push_back({g, 2.5 * c0, 2.5 * cs, g < 2 ? 0.0 : tr, early});
  }
  t.bwd_compute += local_bwd;
  t.bwd = local_bwd;
  if (m.eager_return) {
    for (const CrossBranch& x : cross) t.bwd += backward_steps(x, x.b0, 0) + x.t;
    return t;
  }
  // ring_backward.hpp: cross-rank branches first, each return travelling
  // during the next one's step 0; the last one's own block split when the
  // local branches are too light to hide its return.
  const bool split = !cross.empty() && local_bwd < 0.5 * cross.back().b0;
  double pending = 0, late = 0;
  for (std::size_t j = 0; j < cross.size(); ++j) {
    const CrossBranch& x = cross[j];
    const double e = split && j + 1 == cross.size() && x.g >= 2 ? x.early * x.b0 : x.b0;
    late = x.b0 - e;
    t.bwd += backward_steps(x, e, pending) + late;
    pending = x.t;
  }
  t.bwd += std::max(0.0, pending - late - local_bwd);  // the last return
  return t;
}

std::vector<dilated::Branch> parse_branches(const std::string& text) {
  std::vector<dilated::Branch> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto colon = item.find(':');
    out.push_back({std::stoll(item.substr(0, colon)), std::stoll(item.substr(colon + 1))});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Model m;
  std::string branches;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string("0"); };
    if (k == "--seq") m.N = std::stod(next());
    else if (k == "--heads") m.H = std::stod(next());
    else if (k == "--dim") m.d = std::stod(next());
    else if (k == "--batch") m.B = std::stod(next());
    else if (k == "--bytes") m.s = std::stod(next());
    else if (k == "--branches") branches = next();
    else if (k == "--causal") m.causal = true;
    else if (k == "--zigzag") m.zigzag = true;
    else if (k == "--tflops") m.R = std::stod(next()) * 1e12;
    else if (k == "--link-gbs") m.link = std::stod(next()) * 1e9;
    else if (k == "--net-gbs") m.net = std::stod(next()) * 1e9;
    else if (k == "--latency-us") m.alpha = std::stod(next()) * 1e-6;
    else if (k == "--gpus-per-node") m.gpus_per_node = std::stoi(next());
    else if (k == "--mem-gib") m.mem_gib = std::stod(next());
    else if (k == "--eager-return") m.eager_return = true;
    else if (k == "--ranks") {
      m.ranks.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) m.ranks.push_back(std::stoll(x));
    } else {
      std::fprintf(stderr, "unknown argument %s (see the file comment)\n", k.c_str());
      return 2;
    }
  }
  if (branches.empty()) {
    // w = 2048 * 4^i with r = 4^i (w / r = 2048 rows per segment and head,
    // LongNet's geometric schedule) up to 2^29, then w = N with w / r = 2048.
    for (long long w = 2048, r = 1; w < static_cast<long long>(m.N) && w <= (1ll << 29);
         w *= 4, r *= 4)
      m.branches.push_back({w, r});
    m.branches.push_back({static_cast<long long>(m.N), std::max(1ll, static_cast<long long>(m.N) / 2048)});
  } else {
    m.branches = parse_branches(branches);
  }
  dilated::AttentionConfig cfg;
  cfg.branches = m.branches;
  cfg.causal = m.causal;
  const dilated::ProblemShape shape{static_cast<long long>(m.B), static_cast<long long>(m.N),
                                    static_cast<long long>(m.H), static_cast<long long>(m.d)};
  std::printf("# N = %.0f, H = %.0f, d = %.0f, B = %.0f, %.0f-byte elements, %zu branches%s%s\n",
              m.N, m.H, m.d, m.B, m.s, m.branches.size(), m.causal ? ", causal" : "",
              m.zigzag ? ", zigzag" : "");
  std::printf("# R = %.3g TFLOP/s per rank, link %.3g GB/s (nodes of %d), network %.3g GB/s, "
              "latency %.3g us\n",
              m.R / 1e12, m.link / 1e9, m.gpus_per_node, m.net / 1e9, m.alpha * 1e6);
  const Time one = layer_time(m, 1);
  std::printf("# backward: %s; exposed = time not hidden behind compute; bytes: sent by the "
              "busiest rank\n",
              m.eager_return ? "the earlier schedule (--eager-return: each return waited for)"
                             : "ring_backward.hpp's (returns overlapped)");
  std::printf("%6s %12s %6s %6s %11s %11s %11s %11s %12s %12s %8s %9s\n", "ranks",
              "tokens/rank", "local", "cross", "fwd_s", "bwd_s", "fwd_exp_s", "bwd_exp_s",
              "fwd_bytes", "bwd_bytes", "eff", "GiB/rank");
  for (long long P : m.ranks) {
    try {
      dilated::dist::ShardLayout(cfg, shape, static_cast<int>(P),
                                 m.zigzag ? dilated::dist::Layout::Zigzag
                                          : dilated::dist::Layout::Contiguous);
    } catch (const dilated::Error& e) {
      std::printf("%6lld  size rules fail: %s\n", P, e.rule().c_str());
      continue;
    }
    const Time t = layer_time(m, P);
    // q, k, v, out, dout, dq, dk, dv shards + 4 exchange blocks (K, V, dK, dV).
    const double gib = 12 * m.B * (m.N / P) * m.H * m.d * m.s / 1073741824.0;
    const double eff = (one.fwd + one.bwd) / (P * (t.fwd + t.bwd));
    std::printf("%6lld %12.0f %6d %6d %11.4g %11.4g %11.4g %11.4g %12.0f %12.0f %7.1f%% %8.1f%s\n",
                P, m.N / P, t.local, t.cross, t.fwd, t.bwd,
                std::max(0.0, t.fwd - t.fwd_compute), std::max(0.0, t.bwd - t.bwd_compute), t.fwd_bytes, t.bwd_bytes, 100 * eff, gib,
                gib > m.mem_gib ? " (does not fit)" : "");
  }
  return 0;
}

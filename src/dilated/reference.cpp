#include "dilated/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dilated/dropout_rng.hpp"
#include "dilated/pattern.hpp"

namespace dilated {
namespace reference {
namespace {

struct Layout {
  std::int64_t N, H, D;
  std::int64_t at(std::int64_t b, std::int64_t p, std::int64_t h) const {
    return ((b * N + p) * H + h) * D;
  }
};

template <class A, class B>
double dot(const A* a, const B* b, std::int64_t n) {
  double s = 0;
  for (std::int64_t x = 0; x < n; ++x) s += static_cast<double>(a[x]) * static_cast<double>(b[x]);
  return s;
}

// One (query, key) entry of the union softmax of a row.
struct Entry {
  int branch;
  std::int64_t key_pos;
  double score;  // scale * q.k
};

// All entries of row (b, p, h): for every branch the head runs and that keeps
// p, the keys of p's sparse segment (causal: up to p).
template <class In>
std::vector<Entry> row_entries(const AttentionConfig& c, const ProblemShape& s,
                               const PatternParams& pat, const In* q, const In* k,
                               std::int64_t b, std::int64_t p, std::int64_t h) {
  const Layout L{s.seq_len, s.heads, s.head_dim};
  const double scale = effective_softmax_scale(c, s.head_dim);
  std::vector<Entry> e;
  if (c.block_sparse) {
    // Block-sparse: key kp is attended iff the user's mask lists block
    // (p / block_q, kp / block_k) for the head's layout (and, causal, kp <= p).
    // Read from the mask itself, not the kernels' run lists.
    const BlockSparsePattern& bs = *c.block_sparse;
    const std::int64_t layout = bs.layouts == 1 ? 0 : h;
    for (std::int64_t kp = 0; kp < s.seq_len; ++kp) {
      if (c.causal && kp > p) break;
      if (!bs.visits(layout, p / bs.block_q, kp / bs.block_k, s.seq_len)) continue;
      e.push_back(Entry{0, kp, scale * dot(q + L.at(b, p, h), k + L.at(b, kp, h), s.head_dim)});
    }
    return e;
  }
  for (int i = 0; i < pat.num_branches; ++i) {
    if (!pat.active(h, i)) continue;
    const std::int64_t o = pat.offset(h, i);
    std::int64_t seg, j;
    if (!pat.keeps(i, o, p, &seg, &j)) continue;
    const std::int64_t n = pat.kept_count(i, seg, o);
    const std::int64_t last = c.causal ? j : n - 1;
    for (std::int64_t jj = 0; jj <= last; ++jj) {
      const std::int64_t kp = pat.position(i, seg, o, jj);
      e.push_back(Entry{i, kp, scale * dot(q + L.at(b, p, h), k + L.at(b, kp, h), s.head_dim)});
    }
  }
  return e;
}

template <class In>
void forward_row_impl(const AttentionConfig& c, const ProblemShape& s, const In* q, const In* k,
                      const In* v, std::int64_t b, std::int64_t p, std::int64_t h,
                      double* out_row, double* lse) {
  validate(c, s);
  const PatternParams pat = make_pattern(c, s);
  const DropoutParams drop = make_dropout(c.dropout_p, c.dropout_seed);
  const Layout L{s.seq_len, s.heads, s.head_dim};
  const std::vector<Entry> all = row_entries(c, s, pat, q, k, b, p, h);

  // Eq. 10 literally: per-branch softmax attention, then the s_i-weighted merge.
  std::vector<double> branch_lse;
  std::vector<std::vector<double>> branch_out;
  for (int i = 0; i < pat.num_branches; ++i) {
    bool keeps = false;
    double m = -std::numeric_limits<double>::infinity();
    for (const Entry& e : all)
      if (e.branch == i) {
        keeps = true;
        m = std::max(m, e.score);  // NaN scores are skipped here and caught by denom
      }
    if (!keeps) continue;  // branch does not keep p
    // m is -inf when every score is -inf or NaN: use 0 then, so that NaN
    // scores still give a NaN denominator (as in the kernels).
    if (m == -std::numeric_limits<double>::infinity()) m = 0;
    double denom = 0;
    for (const Entry& e : all)
      if (e.branch == i) denom += std::exp(e.score - m);
    if (denom == 0) continue;  // every score -inf: the branch adds nothing (as in the kernels)
    const double lse_i = m + std::log(denom);
    std::vector<double> o(s.head_dim, 0.0);
    for (const Entry& e : all) {
      if (e.branch != i) continue;
      double prob = std::exp(e.score - lse_i);
      if (drop.enabled()) prob *= drop.factor(b, h, p, e.key_pos, i);
      const In* vrow = v + L.at(b, e.key_pos, h);
      for (std::int64_t x = 0; x < s.head_dim; ++x) o[x] += prob * static_cast<double>(vrow[x]);
    }
    branch_lse.push_back(lse_i);
    branch_out.push_back(std::move(o));
  }
  if (branch_lse.empty()) {  // no branch keeps (p, h)
    std::fill(out_row, out_row + s.head_dim, 0.0);
    *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  const double mx = *std::max_element(branch_lse.begin(), branch_lse.end());
  double total = 0;
  for (double l : branch_lse) total += std::exp(l - mx);
  const double lse_all = mx + std::log(total);
  const double c_out = pat.output_scale();
  std::fill(out_row, out_row + s.head_dim, 0.0);
  for (std::size_t i = 0; i < branch_lse.size(); ++i) {
    const double w = std::exp(branch_lse[i] - lse_all);  // s_i / sum_j s_j
    for (std::int64_t x = 0; x < s.head_dim; ++x) out_row[x] += c_out * w * branch_out[i][x];
  }
  *lse = lse_all;
}

}  // namespace

void forward_row(const AttentionConfig& c, const ProblemShape& s, const double* q,
                 const double* k, const double* v, std::int64_t b, std::int64_t p,
                 std::int64_t h, double* out_row, double* lse) {
  forward_row_impl(c, s, q, k, v, b, p, h, out_row, lse);
}

void forward_row(const AttentionConfig& c, const ProblemShape& s, const float* q,
                 const float* k, const float* v, std::int64_t b, std::int64_t p,
                 std::int64_t h, double* out_row, double* lse) {
  forward_row_impl(c, s, q, k, v, b, p, h, out_row, lse);
}

void forward(const AttentionConfig& c, const ProblemShape& s, const double* q, const double* k,
             const double* v, double* out, double* lse) {
  const Layout L{s.seq_len, s.heads, s.head_dim};
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t p = 0; p < s.seq_len; ++p)
      for (std::int64_t h = 0; h < s.heads; ++h)
        forward_row(c, s, q, k, v, b, p, h, out + L.at(b, p, h),
                    lse + (b * s.heads + h) * s.seq_len + p);
}

void backward(const AttentionConfig& c, const ProblemShape& s, const double* q, const double* k,
              const double* v, const double* dout, double* dq, double* dk, double* dv) {
  validate(c, s);
  const PatternParams pat = make_pattern(c, s);
  const DropoutParams drop = make_dropout(c.dropout_p, c.dropout_seed);
  const double scale = effective_softmax_scale(c, s.head_dim);
  const double c_out = pat.output_scale();
  const Layout L{s.seq_len, s.heads, s.head_dim};
  const std::int64_t D = s.head_dim;
  const std::int64_t total = s.batch * s.seq_len * s.heads * D;
  std::fill(dq, dq + total, 0.0);
  std::fill(dk, dk + total, 0.0);
  std::fill(dv, dv + total, 0.0);
  std::vector<double> o(D), dO(D);
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t p = 0; p < s.seq_len; ++p)
      for (std::int64_t h = 0; h < s.heads; ++h) {
        const std::vector<Entry> e = row_entries(c, s, pat, q, k, b, p, h);
        if (e.empty()) continue;
        double mx = -std::numeric_limits<double>::infinity();
        for (const Entry& x : e) mx = std::max(mx, x.score);
        double sum = 0;
        for (const Entry& x : e) sum += std::exp(x.score - mx);
        const double lse = mx + std::log(sum);
        // Recompute the (undivided) output and the upstream gradient of it.
        std::vector<double> prob(e.size()), z(e.size(), 1.0);
        std::fill(o.begin(), o.end(), 0.0);
        for (std::size_t t = 0; t < e.size(); ++t) {
          prob[t] = std::exp(e[t].score - lse);
          if (drop.enabled()) z[t] = drop.factor(b, h, p, e[t].key_pos, e[t].branch);
          const double* vrow = v + L.at(b, e[t].key_pos, h);
          for (std::int64_t x = 0; x < D; ++x) o[x] += prob[t] * z[t] * vrow[x];
        }
        for (std::int64_t x = 0; x < D; ++x) dO[x] = c_out * dout[L.at(b, p, h) + x];
        const double delta = dot(dO.data(), o.data(), D);
        const double* qrow = q + L.at(b, p, h);
        for (std::size_t t = 0; t < e.size(); ++t) {
          const std::int64_t kp = e[t].key_pos;
          const double dp = dot(dO.data(), v + L.at(b, kp, h), D);
          const double ds = prob[t] * (z[t] * dp - delta);
          for (std::int64_t x = 0; x < D; ++x) {
            dq[L.at(b, p, h) + x] += scale * ds * k[L.at(b, kp, h) + x];
            dk[L.at(b, kp, h) + x] += scale * ds * qrow[x];
            dv[L.at(b, kp, h) + x] += prob[t] * z[t] * dO[x];
          }
        }
      }
}

}  // namespace reference
}  // namespace dilated

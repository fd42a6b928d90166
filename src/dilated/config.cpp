// Validation of configs and shapes, and the small helpers around them.
#include <cmath>
#include <limits>
#include <sstream>

#include "dilated/config.hpp"
#include "dilated/dropout_rng.hpp"
#include "dilated/error.hpp"
#include "dilated/pattern.hpp"

namespace dilated {
namespace {

std::string branch_name(std::size_t i, const Branch& b) {
  std::ostringstream os;
  os << "branch " << i << " (segment_length=" << b.segment_length << ", dilation=" << b.dilation
     << ")";
  return os.str();
}

// a * b * ... fits in int64 (all factors >= 1)?
bool product_fits(std::initializer_list<std::int64_t> xs) {
  std::int64_t p = 1;
  for (std::int64_t x : xs) {
    if (x > std::numeric_limits<std::int64_t>::max() / p) return false;
    p *= x;
  }
  return true;
}

}  // namespace

void validate(const AttentionConfig& c, const ProblemShape& s) {
  auto fail = [](const char* rule, const std::string& msg) { throw Error(rule, msg); };
  // --- shape ---
  const std::pair<const char*, std::int64_t> dims[] = {
      {"batch", s.batch}, {"seq_len", s.seq_len}, {"heads", s.heads}, {"head_dim", s.head_dim}};
  for (auto& d : dims)
    if (d.second < 1)
      fail("shape.positive", std::string(d.first) + " = " + std::to_string(d.second) +
                                 " must be >= 1");
  if (s.head_dim > kMaxHeadDim)
    fail("shape.head_dim_max", "head_dim = " + std::to_string(s.head_dim) +
                                   " exceeds the supported maximum " + std::to_string(kMaxHeadDim));
  if (!product_fits({s.batch, s.seq_len, s.heads, s.head_dim, 2}))
    fail("shape.size_overflow", "batch*seq_len*heads*head_dim overflows 64-bit indexing");
  // --- config scalars (NaN fails every comparison, so test the good range) ---
  if (!(std::isfinite(c.softmax_scale) && c.softmax_scale >= 0.0))
    fail("config.softmax_scale",
         "softmax_scale = " + std::to_string(c.softmax_scale) +
             " must be finite and > 0 (or 0 for the default 1/sqrt(head_dim))");
  if (!(c.dropout_p >= 0.0 && c.dropout_p < 1.0))
    fail("config.dropout_p",
         "dropout_p = " + std::to_string(c.dropout_p) + " must be in [0, 1)");
  if (c.dropout_p > 0.0 && (s.seq_len > kDropoutMaxSeq || s.heads > kDropoutMaxHeads ||
                           s.batch > kDropoutMaxBatch))
    fail("config.dropout_index_range",
         "dropout needs seq_len <= 2^32, heads <= 2^28 and batch <= 2^32 (its RNG counter is "
         "32-bit per coordinate); got seq_len = " + std::to_string(s.seq_len) + ", heads = " +
             std::to_string(s.heads) + ", batch = " + std::to_string(s.batch));
  if (c.head_mode != HeadMode::LongNet && c.head_mode != HeadMode::HeadGroups)
    fail("config.head_mode", "head_mode = " + std::to_string(static_cast<int>(c.head_mode)) +
                                 " is not a HeadMode value");
  // --- block-sparse: its own attention kind ---
  if (c.block_sparse) {
    if (!c.branches.empty())
      fail("block_sparse.with_branches",
           "block-sparse attention is its own attention kind and cannot be combined with "
           "LongNet branches; leave branches empty (use BlockSparsePattern::dilated_blocks for "
           "a dilated block layout)");
    if (c.head_mode != HeadMode::LongNet)
      fail("block_sparse.head_mode",
           "block-sparse attention has no branches to group heads by; leave head_mode LongNet");
    validate_block_sparse(*c.block_sparse, s.seq_len, s.heads);
    return;
  }
  // --- branches ---
  if (c.branches.empty()) fail("config.branches_nonempty", "the config has no branches");
  if (c.branches.size() > static_cast<std::size_t>(kMaxBranches))
    fail("config.branches_max", std::to_string(c.branches.size()) +
                                    " branches exceed the maximum " + std::to_string(kMaxBranches));
  for (std::size_t i = 0; i < c.branches.size(); ++i) {
    const Branch& b = c.branches[i];
    if (b.segment_length < 1)
      fail("config.segment_length_positive", branch_name(i, b) + ": segment_length must be >= 1");
    if (b.dilation < 1)
      fail("config.dilation_positive", branch_name(i, b) + ": dilation must be >= 1");
    if (b.dilation > b.segment_length)
      fail("config.dilation_le_segment",
           branch_name(i, b) + ": dilation must not exceed segment_length");
    if (!c.allow_partial_segments && s.seq_len % b.segment_length != 0)
      fail("shape.seq_len_divisible_by_segment",
           branch_name(i, b) + ": seq_len = " + std::to_string(s.seq_len) +
               " is not a multiple of segment_length (set allow_partial_segments to let the "
               "last segment be shorter)");
  }
  if (c.head_mode == HeadMode::HeadGroups &&
      s.heads < static_cast<std::int64_t>(c.branches.size()))
    fail("config.head_groups_need_heads",
         "head_mode HeadGroups needs heads >= number of branches; heads = " +
             std::to_string(s.heads) + ", branches = " + std::to_string(c.branches.size()));
}

double effective_softmax_scale(const AttentionConfig& c, std::int64_t head_dim) {
  return c.softmax_scale > 0.0 ? c.softmax_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

PatternParams make_pattern(const AttentionConfig& c, const ProblemShape& s) {
  PatternParams p;
  if (c.block_sparse) {
    // One dense branch over the whole sequence (w = N, r = 1, sparse index =
    // position); the rule restricts it to the listed blocks. The layout's
    // pointers are attached by the plan that owns its device copy.
    p.num_branches = 1;
    p.seq_len = s.seq_len;
    p.heads = s.heads;
    p.segment_length[0] = s.seq_len;
    p.dilation[0] = 1;
    const BlockSparsePattern& b = *c.block_sparse;
    p.block_sparse.block_q = b.block_q;
    p.block_sparse.block_k = b.block_k;
    p.block_sparse.num_q_blocks = b.num_q_blocks(s.seq_len);
    p.block_sparse.num_k_blocks = b.num_k_blocks(s.seq_len);
    p.block_sparse.layouts = b.layouts;
    p.block_sparse.seq_len = s.seq_len;
    p.block_sparse.rows_all_attend = block_sparse_rows_all_attend(b, s.seq_len, c.causal);
    return p;
  }
  p.num_branches = static_cast<int>(c.branches.size());
  p.head_mode = c.head_mode == HeadMode::LongNet ? 0 : 1;
  p.seq_len = s.seq_len;
  p.heads = s.heads;
  for (int i = 0; i < p.num_branches; ++i) {
    p.segment_length[i] = c.branches[i].segment_length;
    p.dilation[i] = c.branches[i].dilation;
  }
  return p;
}

AttentionConfig AttentionConfig::dense(std::int64_t seq_len, bool causal) {
  AttentionConfig c;
  c.branches = {Branch{seq_len, 1}};
  c.causal = causal;
  return c;
}

AttentionConfig AttentionConfig::longnet_default(std::int64_t seq_len) {
  AttentionConfig c;
  const std::int64_t rates[] = {1, 2, 4, 6, 12};
  std::int64_t w = 2048;
  for (std::int64_t r : rates) {
    if (w > seq_len) break;
    c.branches.push_back(Branch{w, r});
    // A sequence that is not a multiple of w gets a shorter last segment.
    if (seq_len % w != 0) c.allow_partial_segments = true;
    w *= 2;
  }
  if (c.branches.empty()) c.branches.push_back(Branch{seq_len, 1});
  return c;
}

std::string describe(const AttentionConfig& c) {
  std::ostringstream os;
  if (c.block_sparse) {
    const BlockSparsePattern& b = *c.block_sparse;
    os << "BlockSparse {" << b.block_q << "x" << b.block_k << " blocks, " << b.layouts
       << (b.layouts == 1 ? " shared layout" : " layouts") << ", density " << b.block_density()
       << "}" << (c.causal ? " causal" : "");
    if (c.dropout_p > 0) os << " dropout=" << c.dropout_p;
    return os.str();
  }
  os << (c.head_mode == HeadMode::LongNet ? "LongNet" : "HeadGroups") << " {";
  for (std::size_t i = 0; i < c.branches.size(); ++i)
    os << (i ? ", " : "") << "(w=" << c.branches[i].segment_length
       << ", r=" << c.branches[i].dilation << ")";
  os << "}" << (c.causal ? " causal" : "");
  if (c.dropout_p > 0) os << " dropout=" << c.dropout_p;
  if (c.allow_partial_segments) os << " partial-segments";
  return os.str();
}

}  // namespace dilated

// libFuzzer target over src/dist's size rules (issue 8): for any config,
// global shape, rank count and layout, dist::ShardLayout either throws
// dilated::Error (nothing else may escape) or describes a sharding that is
// exactly right:
//   * every rank holds local_len() = N / P rows, as windows that tile its
//     shard rows [0, local_len) and, over all ranks, tile [0, N) once;
//   * a local branch's segments lie inside one rank's window;
//   * a cross-rank branch's group (group_first .. + group_size) contains the
//     rank, and for the contiguous layout covers exactly the ranks of the
//     rank's segment (w / l of them).
// Runs without MPI (the layout is pure arithmetic); ASan + UBSan catch
// overflow in the rules. Built by the `fuzz` preset; run by scripts/run-tests.sh.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "dilated/config.hpp"
#include "dilated/error.hpp"
#include "dist/shard_layout.hpp"

namespace {

long inputs = 0, rejected = 0, accepted = 0;
struct Totals {
  ~Totals() {
    std::fprintf(stderr, "fuzz_shard_layout totals: %ld inputs, %ld rejected with dilated::Error, %ld layouts checked\n",
                 inputs, rejected, accepted);
  }
} totals;

[[noreturn]] void fail(const char* what, const dilated::AttentionConfig& c, std::int64_t n, int p) {
  std::fprintf(stderr, "fuzz_shard_layout: %s\n  config: %s\n  N=%lld P=%d\n", what,
               dilated::describe(c).c_str(), (long long)n, p);
  std::abort();
}

std::int64_t some_int(FuzzedDataProvider& in, std::int64_t lo, std::int64_t hi) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return in.ConsumeIntegral<std::int64_t>();
    case 1: return in.ConsumeIntegralInRange<std::int64_t>(-4, 4);
    default: return in.ConsumeIntegralInRange<std::int64_t>(lo, hi);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  ++inputs;
  using dilated::dist::Layout;
  const int ranks = static_cast<int>(some_int(in, 1, 64));
  const Layout layout = in.ConsumeBool() ? Layout::Zigzag : Layout::Contiguous;
  dilated::AttentionConfig c;
  c.causal = in.ConsumeBool();
  c.allow_partial_segments = in.ConsumeBool();
  const std::int64_t n = some_int(in, 1, 1 << 16);
  const int branches = in.ConsumeIntegralInRange<int>(0, 5);
  for (int i = 0; i < branches; ++i) {
    // Segment lengths near the shard and sequence sizes matter most.
    std::int64_t w = some_int(in, 1, 1 << 16);
    if (in.ConsumeBool() && ranks > 0 && n > 0 && n < (std::int64_t(1) << 40))
      w = n / ranks * in.ConsumeIntegralInRange<int>(1, 8);
    c.branches.push_back({w, some_int(in, 1, 16)});
  }
  const dilated::ProblemShape shape{1, n, some_int(in, 1, 8), 8};
  try {
    const dilated::dist::ShardLayout sl(c, shape, ranks, layout);
    ++accepted;
    const std::int64_t l = sl.local_len();
    if (l <= 0 || n / ranks != l || n % ranks != 0) fail("local_len * ranks != N", c, n, ranks);
    if (n > (std::int64_t(1) << 20)) return 0;  // accepted; too long to walk position by position
    std::vector<int> owner(static_cast<std::size_t>(n), -1);
    for (int r = 0; r < ranks; ++r) {
      std::vector<char> row_used(static_cast<std::size_t>(l), 0);
      std::int64_t rows = 0;
      for (const auto& win : sl.windows(r)) {
        if (win.len <= 0 || win.begin < 0 || win.begin + win.len > n || win.row < 0 || win.row + win.len > l)
          fail("window out of range", c, n, ranks);
        for (std::int64_t i = 0; i < win.len; ++i) {
          if (owner[static_cast<std::size_t>(win.begin + i)] != -1) fail("position held twice", c, n, ranks);
          owner[static_cast<std::size_t>(win.begin + i)] = r;
          if (row_used[static_cast<std::size_t>(win.row + i)]) fail("shard row used twice", c, n, ranks);
          row_used[static_cast<std::size_t>(win.row + i)] = 1;
        }
        rows += win.len;
      }
      if (rows != l) fail("a rank's windows do not fill its shard", c, n, ranks);
    }
    for (int i = 0; i < sl.num_branches(); ++i) {
      const std::int64_t w = c.branches[static_cast<std::size_t>(i)].segment_length;
      const auto& b = sl.branch(i);
      for (int r = 0; r < ranks; ++r) {
        if (!b.cross_rank) {
          // Every segment that starts in one of r's windows ends in it.
          for (const auto& win : sl.windows(r))
            for (std::int64_t s = (win.begin + w - 1) / w * w; s < win.begin + win.len; s += w)
              if (s + (w < n - s ? w : n - s) > win.begin + win.len)
                fail("a local branch's segment crosses a window", c, n, ranks);
          continue;
        }
        const int first = sl.group_first(i, r);
        if (first < 0 || r < first || r >= first + b.group_size || first + b.group_size > ranks)
          fail("rank outside its own group", c, n, ranks);
        if (layout == Layout::Contiguous) {
          if (w % l != 0 || b.group_size != w / l) fail("contiguous group is not w / l ranks", c, n, ranks);
          if (first != r / b.group_size * b.group_size) fail("contiguous group does not start at the segment", c, n, ranks);
        }
      }
    }
  } catch (const dilated::Error&) {
    ++rejected;
  }
  return 0;
}

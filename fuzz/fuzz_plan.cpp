// libFuzzer target over config + shape validation and small Plan calls on the
// Serial backend (issue 8). For every input:
//   * validate() and the Plan constructor either both accept or both throw
//     dilated::Error (nothing else may escape: libFuzzer reports it);
//   * an accepted problem small enough for the float64 reference runs
//     forward (and, if the input asks, backward) in float or double on random
//     finite inputs; outputs sit between guard regions that must come back
//     untouched, must be fully written (poisoned with NaN before), and must
//     match the reference within the unit tests' tolerances.
// Crashes, hangs (-timeout), sanitizer reports (built with ASan + UBSan) and
// aborts below are all failures. Built by the `fuzz` preset (clang); run by
// scripts/run-tests.sh on the seed corpus fuzz/corpus for a bounded time.
#include <fuzzer/FuzzedDataProvider.h>

#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <dilated_attention.hpp>

namespace {

using Exec = Kokkos::Serial;
constexpr std::size_t kGuard = 64;          // elements of guard on each side of an output
constexpr double kMaxReferenceFlops = 4e6;  // keeps an input to milliseconds

// Totals printed at exit (scripts/run-tests.sh reports them).
struct Totals {
  long inputs = 0, rejected = 0, forward = 0, backward = 0;
  ~Totals() {
    std::fprintf(stderr,
                 "fuzz_plan totals: %ld inputs, %ld rejected with dilated::Error, %ld run "
                 "forward against the reference, %ld also backward\n",
                 inputs, rejected, forward, backward);
  }
} totals;

[[noreturn]] void fail(const char* what, const dilated::AttentionConfig& c,
                       const dilated::ProblemShape& s) {
  std::fprintf(stderr, "fuzz_plan: %s\n  config: %s\n  shape: B=%lld N=%lld H=%lld D=%lld\n",
               what, dilated::describe(c).c_str(), (long long)s.batch, (long long)s.seq_len,
               (long long)s.heads, (long long)s.head_dim);
  std::abort();
}

// Integers mostly in the range that matters (small, around segment sizes),
// sometimes anything at all (overflow, negatives).
std::int64_t some_int(FuzzedDataProvider& in, std::int64_t lo, std::int64_t hi) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return in.ConsumeIntegral<std::int64_t>();
    case 1: return in.ConsumeIntegralInRange<std::int64_t>(-4, 4);
    default: return in.ConsumeIntegralInRange<std::int64_t>(lo, hi);
  }
}

double some_double(FuzzedDataProvider& in, double lo, double hi) {
  const double special[] = {0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, 1e-300, 1e300,
                            std::numeric_limits<double>::quiet_NaN(),
                            std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity(),
                            std::numeric_limits<double>::denorm_min()};
  if (in.ConsumeBool()) return special[in.ConsumeIntegralInRange<int>(0, 11)];
  return in.ConsumeFloatingPointInRange<double>(lo, hi);
}

// A host buffer with guard regions around `n` elements.
template <class T>
struct Guarded {
  std::vector<T> buf;
  std::size_t n;
  explicit Guarded(std::size_t count) : buf(count + 2 * kGuard), n(count) {
    for (std::size_t i = 0; i < kGuard; ++i) buf[i] = buf[kGuard + n + i] = sentinel(i);
  }
  static T sentinel(std::size_t i) { return static_cast<T>(-12345.25) - static_cast<T>(i); }
  T* data() { return buf.data() + kGuard; }
  bool guards_intact() const {
    for (std::size_t i = 0; i < kGuard; ++i)
      if (!(buf[i] == sentinel(i)) || !(buf[kGuard + n + i] == sentinel(i))) return false;
    return true;
  }
};

template <class T>
using View4 = Kokkos::View<T****, Kokkos::LayoutRight, Kokkos::HostSpace,
                           Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class T>
using View3 = Kokkos::View<T***, Kokkos::LayoutRight, Kokkos::HostSpace,
                           Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

// max |got - want| / max(1, max |want|), infinite on NaN or an unmatched inf.
template <class T>
double scaled_error(const T* got, const std::vector<double>& want) {
  double scale = 1, err = 0;
  for (double w : want)
    if (std::isfinite(w)) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    if (std::isnan(g)) return std::numeric_limits<double>::infinity();
    if (std::isinf(want[i]) || std::isinf(g)) {
      if (g != want[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    err = std::max(err, std::fabs(g - want[i]));
  }
  return err / scale;
}

template <class T>
void run_small(const dilated::Plan<Exec>& plan, bool backward, std::uint64_t seed) {
  using Acc = dilated::details::accum_t<T>;
  const dilated::AttentionConfig& c = plan.config();
  const dilated::ProblemShape& s = plan.shape();
  const std::size_t n = static_cast<std::size_t>(s.batch * s.seq_len * s.heads * s.head_dim);
  const std::size_t nl = static_cast<std::size_t>(s.batch * s.heads * s.seq_len);
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::vector<T> q(n), k(n), v(n), dout(n);
  std::vector<double> qd(n), kd(n), vd(n), doutd(n);
  for (std::size_t i = 0; i < n; ++i) {
    qd[i] = q[i] = static_cast<T>(uniform(gen));
    kd[i] = k[i] = static_cast<T>(uniform(gen));
    vd[i] = v[i] = static_cast<T>(uniform(gen));
    doutd[i] = dout[i] = static_cast<T>(uniform(gen));
  }
  Guarded<T> out(n), dq(n), dk(n), dv(n);
  Guarded<Acc> lse(nl);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (Guarded<T>* g : {&out, &dq, &dk, &dv}) std::fill(g->data(), g->data() + n, nan);
  std::fill(lse.data(), lse.data() + nl, std::numeric_limits<Acc>::quiet_NaN());
  auto view = [&](T* p) { return View4<T>(p, s.batch, s.seq_len, s.heads, s.head_dim); };
  const View3<Acc> lse_v(lse.data(), s.batch, s.heads, s.seq_len);

  ++totals.forward;
  plan.forward(view(q.data()), view(k.data()), view(v.data()), view(out.data()), lse_v);
  Exec().fence();
  if (!out.guards_intact() || !lse.guards_intact()) fail("forward wrote outside out/lse", c, s);
  std::vector<double> ref_out(n), ref_lse(nl);
  dilated::reference::forward(c, s, qd.data(), kd.data(), vd.data(), ref_out.data(),
                              ref_lse.data());
  // Tolerances of the unit tests, widened by the score-error term of
  // unit_tests/numerics_harness.hpp: delta bounds one scaled score's error
  // (inputs in [-1, 1]); a softmax moves by at most e^{2 delta} - 1. Huge
  // scales overflow T by design (IEEE): then only guards are checked.
  const bool is_float = sizeof(T) == 4;
  const double u = std::numeric_limits<T>::epsilon() / 2, d = static_cast<double>(s.head_dim);
  const double delta = (d + 2) * u * plan.softmax_scale() * d;
  if (!(delta < 0.25)) return;
  const double tol_out = (is_float ? 3e-5 : 1e-11) + std::expm1(2 * delta);
  const double tol_lse = (is_float ? 1e-5 : 1e-11) + delta;
  if (scaled_error(out.data(), ref_out) > tol_out)
    fail("forward out differs from the float64 reference", c, s);
  if (scaled_error(lse.data(), ref_lse) > tol_lse)
    fail("forward lse differs from the float64 reference", c, s);
  if (!backward) return;

  ++totals.backward;
  plan.backward(view(q.data()), view(k.data()), view(v.data()), view(out.data()), lse_v,
                view(dout.data()), view(dq.data()), view(dk.data()), view(dv.data()));
  for (const Guarded<T>* g : {&out, &dq, &dk, &dv})
    if (!g->guards_intact()) fail("backward wrote outside its outputs", c, s);
  if (delta > 1e-6) return;  // gradients of a near-saturated softmax: see numerics tests
  std::vector<double> rdq(n), rdk(n), rdv(n);
  dilated::reference::backward(c, s, qd.data(), kd.data(), vd.data(), doutd.data(), rdq.data(),
                               rdk.data(), rdv.data());
  const double tol = is_float ? 3e-4 : 1e-10;
  if (scaled_error(dq.data(), rdq) > tol || scaled_error(dk.data(), rdk) > tol ||
      scaled_error(dv.data(), rdv) > tol)
    fail("backward differs from the float64 reference", c, s);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Kokkos::InitArguments args;
  args.num_threads = 1;
  args.disable_warnings = true;
  Kokkos::initialize(args);
  std::atexit([] { Kokkos::finalize(); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  ++totals.inputs;
  dilated::AttentionConfig c;
  const int nb = in.ConsumeIntegralInRange<int>(0, dilated::kMaxBranches + 1);
  for (int i = 0; i < nb; ++i) {
    dilated::Branch b;
    b.segment_length = some_int(in, 1, 160);
    b.dilation = some_int(in, 1, 17);
    c.branches.push_back(b);
  }
  c.causal = in.ConsumeBool();
  c.allow_partial_segments = in.ConsumeBool();
  c.head_mode = static_cast<dilated::HeadMode>(some_int(in, 0, 1));
  c.softmax_scale = in.ConsumeBool() ? 0.0 : some_double(in, 0.0, 4.0);
  c.dropout_p = in.ConsumeIntegralInRange<int>(0, 3) == 0 ? some_double(in, 0.0, 0.9) : 0.0;
  c.dropout_seed = in.ConsumeIntegral<std::uint64_t>();
  dilated::ProblemShape s;
  s.batch = some_int(in, 1, 3);
  s.seq_len = some_int(in, 1, 320);
  s.heads = some_int(in, 1, 5);
  s.head_dim = some_int(in, 1, 72);
  const bool use_double = in.ConsumeBool();
  const bool backward = in.ConsumeBool();
  const std::uint64_t seed = in.ConsumeIntegral<std::uint64_t>();

  bool valid = true;
  try {
    dilated::validate(c, s);
  } catch (const dilated::Error&) {
    valid = false;
    ++totals.rejected;
  }
  try {
    const dilated::Plan<Exec> plan(c, s);
    if (!valid) fail("validate() threw but the Plan accepted the config", c, s);
    // Small enough for the reference? (forward_flops counts attended pairs
    // exactly, with a loop over heads: only asked once the tensors are small.)
    const double elements = static_cast<double>(s.batch) * static_cast<double>(s.seq_len) *
                            static_cast<double>(s.heads) * static_cast<double>(s.head_dim);
    if (elements > 1 << 16) return 0;
    const double flops = dilated::forward_flops(c, s);
    if (flops * (backward ? 3.5 : 1.0) > kMaxReferenceFlops) return 0;
    if (use_double)
      run_small<double>(plan, backward, seed);
    else
      run_small<float>(plan, backward, seed);
  } catch (const dilated::Error& e) {
    if (valid && e.rule() != "backend.scratch")
      fail("the Plan threw although validate() accepted the config", c, s);
  }
  return 0;
}

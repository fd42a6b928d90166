// dist/agreement.cpp - see agreement.hpp.
#include "dist/agreement.hpp"

#include <cstring>
#include <exception>

#include "dilated/error.hpp"

namespace dilated {
namespace dist {
namespace {

constexpr std::size_t kRuleChars = 64, kMessageChars = 960;

void mix(std::uint64_t* h, const void* data, std::size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    *h ^= p[i];
    *h *= 1099511628211ull;
  }
}
template <class T>
void mix_value(std::uint64_t* h, T v) {
  mix(h, &v, sizeof v);
}

// Error::what() is "dilated-attention: <message> [rule: <rule>]"; recover the message.
std::string message_of(const Error& e) {
  std::string s = e.what();
  const std::string head = "dilated-attention: ", tail = " [rule: " + e.rule() + "]";
  if (s.compare(0, head.size(), head) == 0) s.erase(0, head.size());
  if (s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0)
    s.erase(s.size() - tail.size());
  return s;
}

}  // namespace

std::int64_t config_hash(const AttentionConfig& c) {
  std::uint64_t h = 1469598103934665603ull;
  mix_value(&h, c.branches.size());
  for (const Branch& b : c.branches) {
    mix_value(&h, b.segment_length);
    mix_value(&h, b.dilation);
  }
  mix_value(&h, c.causal);
  mix_value(&h, c.softmax_scale);
  mix_value(&h, c.dropout_p);
  mix_value(&h, c.dropout_seed);
  mix_value(&h, static_cast<int>(c.head_mode));
  mix_value(&h, c.allow_partial_segments);
  return static_cast<std::int64_t>(h >> 2);  // non-negative, so min/max are plain
}

void agree(Communicator& comm, const std::vector<AgreedValue>& agreed,
           const std::function<void()>& local_checks) {
  std::string rule, message;
  bool failed = false;
  try {
    local_checks();
  } catch (const Error& e) {
    failed = true;
    rule = e.rule();
    message = message_of(e);
  } catch (const std::exception& e) {  // e.g. bad_alloc: still must not strand the others
    failed = true;
    rule = "dist.local_failure";
    message = e.what();
  }
  const int n = static_cast<int>(agreed.size());
  std::vector<std::int64_t> in(n + 1), lo(n + 1), hi(n + 1);
  for (int i = 0; i < n; ++i) in[i] = agreed[i].value;
  in[n] = failed ? comm.rank() : comm.size();
  comm.allreduce_min_max(in.data(), lo.data(), hi.data(), n + 1);
  for (int i = 0; i < n; ++i)
    if (lo[i] != hi[i])
      throw Error("dist.ranks_disagree",
                  std::string("ranks disagree on ") + agreed[i].name + ": values range from " +
                      std::to_string(lo[i]) + " to " + std::to_string(hi[i]) +
                      " across the " + std::to_string(comm.size()) +
                      " ranks; every rank must pass the same config and global shape");
  if (lo[n] >= comm.size()) return;
  // Some rank failed: the lowest one publishes its rule and message.
  const int bad = static_cast<int>(lo[n]);
  std::vector<std::int64_t> text(kRuleChars + kMessageChars, 0), tmin(text.size()),
      tmax(text.size());
  if (comm.rank() == bad) {
    for (std::size_t i = 0; i < rule.size() && i < kRuleChars; ++i)
      text[i] = static_cast<unsigned char>(rule[i]);
    for (std::size_t i = 0; i < message.size() && i < kMessageChars; ++i)
      text[kRuleChars + i] = static_cast<unsigned char>(message[i]);
  }
  comm.allreduce_min_max(text.data(), tmin.data(), tmax.data(), static_cast<int>(text.size()));
  std::string r, m;
  for (std::size_t i = 0; i < kRuleChars && tmax[i] != 0; ++i) r += static_cast<char>(tmax[i]);
  for (std::size_t i = kRuleChars; i < text.size() && tmax[i] != 0; ++i)
    m += static_cast<char>(tmax[i]);
  throw Error(r, "rank " + std::to_string(bad) + " of " + std::to_string(comm.size()) + ": " + m);
}

}  // namespace dist
}  // namespace dilated

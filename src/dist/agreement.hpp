// dist/agreement.hpp - collective validation: every rank reaches the same
// verdict, so a bad input raises the same dilated::Error on every rank and no
// rank is left waiting in a collective the others never enter.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dilated/config.hpp"
#include "dist/communicator.hpp"
#include "dist/shard_layout.hpp"

namespace dilated {
namespace dist {

// A value every rank must pass identically, with a name for the error.
struct AgreedValue {
  const char* name;
  std::int64_t value;
};

// Hash of everything in a config that changes the function computed (FNV-1a).
std::int64_t config_hash(const AttentionConfig& config);

// Collective. Runs `local_checks` (which may throw dilated::Error) on this
// rank, then one allreduce (min and max of `agreed` plus a failure flag):
//  * if ranks disagree on any agreed value, every rank throws
//    "dist.ranks_disagree" naming it and its range;
//  * else if any rank's checks failed, every rank throws that rank's Error
//    (the lowest failing rank's rule and message, prefixed with its rank;
//    a second allreduce carries the text, on this error path only).
// Nothing is communicated besides these reductions.
void agree(Communicator& comm, const std::vector<AgreedValue>& agreed,
           const std::function<void()>& local_checks);

}  // namespace dist
}  // namespace dilated
